//! Leaf certificates minted per host name and kept, as ready TLS server configurations: at
//! most `egress.intercept.leaf_cache_size` hosts (the least recently used dropped first),
//! each replaced once half its validity has passed. One host's leaf is minted once however
//! many first connections arrive together: they wait on its cell, while the map's lock is
//! held only to find or place that cell, never across the signature.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::ServerConfig;
use tokio::sync::OnceCell;

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

/// One host's leaf: minted once into its cell, by the first connection that needs it.
struct Entry {
    leaf: Arc<OnceCell<Minted>>,
    used: u64,
}

struct Minted {
    config: Arc<ServerConfig>,
    renew_at: Instant,
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
    /// one minted now (once, for every connection that asks meanwhile).
    pub async fn for_host(&self, name: &str) -> Result<Arc<ServerConfig>, InterceptError> {
        let now = Instant::now();
        let cell = self.cell(name, now);
        let minted = cell
            .get_or_try_init(|| async {
                let config = self.mint(name)?;
                Ok::<_, InterceptError>(Minted {
                    config,
                    renew_at: Instant::now() + self.validity / 2,
                })
            })
            .await?;
        Ok(Arc::clone(&minted.config))
    }

    /// The cell of `name`'s leaf: the kept one while it is fresh or still being minted, else
    /// a new empty one put in its place (the least recently used host dropped when full).
    fn cell(&self, name: &str, now: Instant) -> Arc<OnceCell<Minted>> {
        let mut cache = self.lock();
        cache.clock += 1;
        let used = cache.clock;
        if let Some(entry) = cache.entries.get_mut(name)
            && entry.leaf.get().is_none_or(|m| now < m.renew_at)
        {
            entry.used = used;
            return Arc::clone(&entry.leaf);
        }
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
        let leaf = Arc::new(OnceCell::new());
        cache.entries.insert(
            name.to_owned(),
            Entry {
                leaf: Arc::clone(&leaf),
                used,
            },
        );
        leaf
    }

    /// A new leaf for `name`, as a server configuration.
    fn mint(&self, name: &str) -> Result<Arc<ServerConfig>, InterceptError> {
        let leaf = self.ca.mint(name, self.validity)?;
        let mut config = ServerConfig::builder_with_provider(crate::listener::crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![leaf.cert], leaf.key)?;
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
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

    #[tokio::test]
    async fn keeps_one_leaf_per_host_and_drops_the_least_recently_used() {
        let (_dir, leaves) = leaves(2);
        let a = leaves.for_host("a.example").await.unwrap();
        assert!(Arc::ptr_eq(
            &a,
            &leaves.for_host("a.example").await.unwrap()
        ));
        leaves.for_host("b.example").await.unwrap();
        // a is used again after b: b becomes the least recently used.
        leaves.for_host("a.example").await.unwrap();
        leaves.for_host("c.example").await.unwrap();
        assert_eq!(leaves.len(), 2);
        // b, the least recently used, went; a stayed.
        assert!(Arc::ptr_eq(
            &a,
            &leaves.for_host("a.example").await.unwrap()
        ));
        let cache = leaves.lock();
        assert!(cache.entries.contains_key("c.example"));
        assert!(!cache.entries.contains_key("b.example"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_first_connections_to_one_host_mint_one_leaf() {
        let (_dir, leaves) = leaves(8);
        let leaves = Arc::new(leaves);
        let start = Arc::new(tokio::sync::Barrier::new(16));
        let firsts: Vec<_> = (0..16)
            .map(|_| {
                let (leaves, start) = (Arc::clone(&leaves), Arc::clone(&start));
                tokio::spawn(async move {
                    start.wait().await;
                    leaves.for_host("api.example").await.unwrap()
                })
            })
            .collect();
        let mut served = Vec::new();
        for first in firsts {
            served.push(first.await.unwrap());
        }
        // Every connection got the one leaf minted, and it is the one kept.
        let minted: std::collections::HashSet<_> = served.iter().map(Arc::as_ptr).collect();
        assert_eq!(
            minted.len(),
            1,
            "{} leaves minted for one host",
            minted.len()
        );
        let kept = leaves.for_host("api.example").await.unwrap();
        assert!(Arc::ptr_eq(&kept, &served[0]));
        assert_eq!(leaves.len(), 1);
    }

    #[tokio::test]
    async fn a_leaf_past_half_its_validity_is_minted_again() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(&InterceptConfig::default(), dir.path()).unwrap();
        let leaves = Leaves::new(ca, Duration::from_millis(200), 4);
        let first = leaves.for_host("a.example").await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        let renewed = leaves.for_host("a.example").await.unwrap();
        assert!(!Arc::ptr_eq(&first, &renewed));
        assert!(Arc::ptr_eq(
            &renewed,
            &leaves.for_host("a.example").await.unwrap()
        ));
    }

    #[tokio::test]
    async fn offers_h2_and_http1() {
        let (_dir, leaves) = leaves(4);
        let config = leaves.for_host("a.example").await.unwrap();
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }
}
