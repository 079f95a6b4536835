//! Waiting for a connection to go quiet: the idle bounds of copied tunnels and of HTTP/2
//! served inside intercepted ones.

use std::time::{Duration, Instant};

/// Returns once `activity` (a count that grows with activity, `None` while busy) has stayed
/// the same for `idle`; looked at four times per `idle`.
pub(super) async fn quiet_for(idle: Duration, activity: impl Fn() -> Option<u64>) {
    let tick = (idle / 4).max(Duration::from_millis(10));
    let (mut seen, mut since) = (activity(), Instant::now());
    loop {
        tokio::time::sleep(tick).await;
        let now = activity();
        if now.is_none() || now != seen {
            (seen, since) = (now, Instant::now());
        } else if since.elapsed() >= idle {
            return;
        }
    }
}
