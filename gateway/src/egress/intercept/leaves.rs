//! Leaf certificates minted per host name and kept, as ready TLS server configurations: at
//! most `egress.intercept.leaf_cache_size` hosts (the least recently used dropped first),
//! each replaced once half its validity has passed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::ServerConfig;

use super::ca::Ca;
use super::error::InterceptError;

/// The protocols offered to agents, in Warden's order of preference.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Minted leaves by host name.
pub struct Leaves {
    ca: Ca,
    validity: Duration,
    capacity: usize,
    cached: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    entries: HashMap<String, Entry>,
    /// A counter that orders uses, for eviction.
    clock: u64,
}

struct Entry {
    config: Arc<ServerConfig>,
    renew_at: Instant,
    used: u64,
}

impl Leaves {
    pub fn new(ca: Ca, validity: Duration, capacity: usize) -> Leaves {
        Leaves {
            ca,
            validity,
            capacity: capacity.max(1),
            cached: Mutex::new(Cache::default()),
        }
    }

    /// The CA the leaves are signed with.
    pub fn ca(&self) -> &Ca {
        &self.ca
    }

    /// A TLS server configuration presenting a certificate for `name`: the cached one, or
    /// one minted now.
    pub fn for_host(&self, name: &str) -> Result<Arc<ServerConfig>, InterceptError> {
        let now = Instant::now();
        {
            let mut cache = self.lock();
            cache.clock += 1;
            let clock = cache.clock;
            if let Some(entry) = cache.entries.get_mut(name)
                && now < entry.renew_at
            {
                entry.used = clock;
                return Ok(Arc::clone(&entry.config));
            }
        }
        // Minted outside the lock: other hosts' handshakes do not wait for it.
        let leaf = self.ca.mint(name, self.validity)?;
        let mut config = ServerConfig::builder_with_provider(crate::listener::crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![leaf.cert], leaf.key)?;
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        let config = Arc::new(config);
        let mut cache = self.lock();
        cache.clock += 1;
        let used = cache.clock;
        if !cache.entries.contains_key(name) && cache.entries.len() >= self.capacity {
            let oldest = cache
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(host, _)| host.clone());
            if let Some(oldest) = oldest {
                cache.entries.remove(&oldest);
            }
        }
        cache.entries.insert(
            name.to_owned(),
            Entry {
                config: Arc::clone(&config),
                renew_at: now + self.validity / 2,
                used,
            },
        );
        Ok(config)
    }

    /// How many hosts' leaves are kept.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no leaf is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cached.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::intercept::InterceptConfig;

    fn leaves(capacity: usize) -> (tempfile::TempDir, Leaves) {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(&InterceptConfig::default(), dir.path()).unwrap();
        (dir, Leaves::new(ca, Duration::from_secs(3600), capacity))
    }

    #[test]
    fn keeps_one_leaf_per_host_and_drops_the_least_recently_used() {
        let (_dir, leaves) = leaves(2);
        let a = leaves.for_host("a.example").unwrap();
        assert!(Arc::ptr_eq(&a, &leaves.for_host("a.example").unwrap()));
        leaves.for_host("b.example").unwrap();
        // a is used again after b: b becomes the least recently used.
        leaves.for_host("a.example").unwrap();
        leaves.for_host("c.example").unwrap();
        assert_eq!(leaves.len(), 2);
        // b, the least recently used, went; a stayed.
        assert!(Arc::ptr_eq(&a, &leaves.for_host("a.example").unwrap()));
        let cache = leaves.lock();
        assert!(cache.entries.contains_key("c.example"));
        assert!(!cache.entries.contains_key("b.example"));
    }

    #[test]
    fn offers_h2_and_http1() {
        let (_dir, leaves) = leaves(4);
        let config = leaves.for_host("a.example").unwrap();
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }
}
