//! The addresses of this host: every address of its network interfaces, and the addresses
//! Warden's listeners are bound to. A connection to one of them reaches Warden itself (its
//! admin API, metrics, approval console) or another service on its host, however globally
//! reachable the address is, so `classify` gives them the class `AddressClass::ThisHost`
//! and egress reaches them only with an `@egress("internal")` permit, as it reaches
//! loopback.
//!
//! The interfaces are read (`getifaddrs(3)`) at start, on every reload and every
//! [`REFRESH`] in the background; a worker only ever reads the last list.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;

/// How often the interfaces are read again (an address added by DHCP or a new interface).
pub const REFRESH: Duration = Duration::from_secs(30);

/// The addresses of this host as last read.
static ADDRESSES: ArcSwapOption<Vec<IpAddr>> = ArcSwapOption::const_empty();

/// The addresses Warden's listeners are bound to (an unspecified one left out: the
/// interfaces hold what it stands for).
static LISTENERS: Mutex<Vec<IpAddr>> = Mutex::new(Vec::new());

/// The addresses of this host as last read (empty before the first [`refresh`]).
pub fn addresses() -> Arc<Vec<IpAddr>> {
    ADDRESSES.load_full().unwrap_or_default()
}

/// Reads the interfaces at once, keeps `listeners` among this host's addresses, and reads the
/// interfaces again every [`REFRESH`] (off the workers, on a blocking thread) until
/// `stop` is ready.
pub fn watch(listeners: &[SocketAddr], stop: impl Future<Output = ()> + Send + 'static) {
    if let Ok(mut bound) = LISTENERS.lock() {
        for ip in listeners.iter().map(SocketAddr::ip) {
            if !ip.is_unspecified() && !bound.contains(&ip) {
                bound.push(ip);
            }
        }
    }
    refresh();
    tokio::spawn(async move {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(REFRESH);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = &mut stop => return,
            }
            let _ = tokio::task::spawn_blocking(refresh).await;
        }
    });
}

/// Reads the interfaces again; on failure the last list stays (with a warning).
pub fn refresh() {
    let mut found = match interfaces() {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read this host's interface addresses; keeping the last list");
            return;
        }
    };
    if let Ok(bound) = LISTENERS.lock() {
        for ip in bound.iter() {
            if !found.contains(ip) {
                found.push(*ip);
            }
        }
    }
    ADDRESSES.store(Some(Arc::new(found)));
}

/// Every address of every interface, each once (`getifaddrs(3)`).
fn interfaces() -> std::io::Result<Vec<IpAddr>> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list it allocated into `list`, freed below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut found = Vec::new();
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: `entry` is a node of the list getifaddrs returned, not freed yet.
        let ifa = unsafe { &*entry };
        if let Some(ip) = unsafe { address(ifa.ifa_addr) }
            && !found.contains(&ip)
        {
            found.push(ip);
        }
        entry = ifa.ifa_next;
    }
    // SAFETY: `list` is what getifaddrs returned, freed once.
    unsafe { libc::freeifaddrs(list) };
    Ok(found)
}

/// The IP address in `addr`, if it is an IPv4 or IPv6 socket address.
///
/// # Safety
/// `addr` is null or points at a socket address as long as its family says.
unsafe fn address(addr: *const libc::sockaddr) -> Option<IpAddr> {
    if addr.is_null() {
        return None;
    }
    // SAFETY: the family says which struct `addr` points at.
    match i32::from(unsafe { (*addr).sa_family }) {
        libc::AF_INET => {
            let v4 = unsafe { &*addr.cast::<libc::sockaddr_in>() };
            Some(IpAddr::from(u32::from_be(v4.sin_addr.s_addr).to_be_bytes()))
        }
        libc::AF_INET6 => {
            let v6 = unsafe { &*addr.cast::<libc::sockaddr_in6>() };
            Some(IpAddr::from(v6.sin6_addr.s6_addr))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interfaces_include_loopback() {
        let found = interfaces().unwrap();
        assert!(found.contains(&IpAddr::from([127, 0, 0, 1])), "{found:?}");
    }
}
