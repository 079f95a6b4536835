//! How many requests one MCP server may send the agent in one session
//! (`mcp.servers[].requests_to_agent_per_minute`): a bucket of that many, refilled evenly over a
//! minute. Past it, the server's request is refused before it is judged (no decision record, no
//! approval, nothing the agent sees), counted in `warden_mcp_server_requests_refused_total`, and
//! logged once while the server stays over it.

use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// The server's requests to the agent allowed per minute and session when its configuration
/// sets none.
pub const DEFAULT_PER_MINUTE: u32 = 60;

/// `warden_mcp_server_requests_refused_total{server,reason}`: requests MCP servers sent agents
/// that Warden refused before judging them (`rate`: past `requests_to_agent_per_minute`;
/// `held`: too many already wait for an approval; `ended`: the agent's session had ended).
pub static REFUSED: LazyLock<prometheus::IntCounterVec> = LazyLock::new(|| {
    prometheus::IntCounterVec::new(
        prometheus::Opts::new(
            "warden_mcp_server_requests_refused_total",
            "Requests MCP servers sent agents refused before they were judged, by server and reason (rate, held, ended)",
        ),
        &["server", "reason"],
    )
    .expect("static metric definition")
});

/// `warden_mcp_server_requests_denied_total{server}`: requests MCP servers sent agents that
/// were judged and refused (policy denied them, an approver denied them, the agent's token was
/// revoked...). Counted against the server: a server's request is never the agent's own
/// doing, so it never feeds the agent's quarantine triggers (`fleet.quarantine.triggers`).
pub static DENIED: LazyLock<prometheus::IntCounterVec> = LazyLock::new(|| {
    prometheus::IntCounterVec::new(
        prometheus::Opts::new(
            "warden_mcp_server_requests_denied_total",
            "Requests MCP servers sent agents refused when judged, by server",
        ),
        &["server"],
    )
    .expect("static metric definition")
});

/// One server's rate of requests to the agent, in one session.
#[derive(Debug)]
pub struct AskRate {
    per_minute: u32,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Requests it may still send now.
    left: f64,
    /// When `left` was counted.
    at: Instant,
    /// Whether its last request was refused (the next refusal is not logged again).
    over: bool,
}

/// Whether a request may go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    /// It may.
    Yes,
    /// It may not; `first`: the first refused since the server was last within its rate.
    No { first: bool },
}

impl AskRate {
    /// At most `per_minute` requests a minute (a burst of that many, then evenly).
    pub fn new(per_minute: u32) -> AskRate {
        AskRate {
            per_minute,
            bucket: Mutex::new(Bucket {
                left: f64::from(per_minute),
                at: Instant::now(),
                over: false,
            }),
        }
    }

    /// Its limit, per minute.
    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    /// Whether one more request may go on now (it is counted when it may).
    pub fn admit(&self) -> Admitted {
        self.admit_at(Instant::now())
    }

    /// Whether one more request may go on at `now`.
    fn admit_at(&self, now: Instant) -> Admitted {
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let per_minute = f64::from(self.per_minute);
        let refilled = now.saturating_duration_since(bucket.at).as_secs_f64() / MINUTE * per_minute;
        bucket.left = (bucket.left + refilled).min(per_minute);
        bucket.at = now;
        if bucket.left >= 1.0 {
            bucket.left -= 1.0;
            bucket.over = false;
            return Admitted::Yes;
        }
        let first = !bucket.over;
        bucket.over = true;
        Admitted::No { first }
    }
}

const MINUTE: f64 = Duration::from_secs(60).as_secs_f64();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_may_ask_its_rate_a_minute_in_a_burst_then_evenly_and_is_told_once() {
        let rate = AskRate::new(3);
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        for _ in 0..3 {
            assert_eq!(rate.admit_at(at(0)), Admitted::Yes);
        }
        assert_eq!(rate.admit_at(at(0)), Admitted::No { first: true });
        assert_eq!(rate.admit_at(at(0)), Admitted::No { first: false });
        // One more every 20 s.
        assert_eq!(rate.admit_at(at(20)), Admitted::Yes);
        assert_eq!(rate.admit_at(at(20)), Admitted::No { first: true });
        // Never more than a minute's worth saved up.
        for _ in 0..3 {
            assert_eq!(rate.admit_at(at(3600)), Admitted::Yes);
        }
        assert!(matches!(rate.admit_at(at(3600)), Admitted::No { .. }));
        assert!(matches!(AskRate::new(0).admit(), Admitted::No { .. }));
    }
}
