//! Verified tokens, remembered by the SHA-256 of the token (never the token itself) until
//! they expire, so a busy agent's token is verified once, not on every request.

use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;

use dashmap::DashMap;
use sha2::{Digest, Sha256};

use super::refresh::KeyInUse;
use super::revocation::TokenStamp;
use crate::action::Principal;

/// SHA-256 of a token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct TokenKey([u8; 32]);

impl TokenKey {
    /// The key of `token`.
    pub(crate) fn of(token: &str) -> TokenKey {
        TokenKey(Sha256::digest(token.as_bytes()).into())
    }
}

impl Hash for TokenKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(first));
    }
}

/// The key already is a uniform hash: use its first 8 bytes as is.
#[derive(Default)]
struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

struct Entry {
    principal: Arc<Principal>,
    /// A Warden token's id and issue time: revocations are judged on every hit.
    stamp: Option<TokenStamp>,
    expires_at: u64,
    /// The remote issuer's key that verified it: the entry stands while it is published.
    key: Option<KeyInUse>,
}

/// A token verified earlier: its principal, and for a Warden token its stamp.
pub(crate) type Verified = (Arc<Principal>, Option<TokenStamp>);

/// A bounded map from token digest to the principal it proved.
pub(crate) struct TokenCache {
    map: DashMap<TokenKey, Entry, BuildHasherDefault<PrehashedHasher>>,
    capacity: usize,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens (0 disables caching).
    pub(crate) fn new(capacity: usize) -> TokenCache {
        TokenCache {
            map: DashMap::with_hasher(BuildHasherDefault::default()),
            capacity,
        }
    }

    /// The principal (and stamp) of a token verified earlier, if it has not expired at `now`
    /// and the key that verified it is still its issuer's. An entry whose key was withdrawn
    /// is forgotten: the token is verified again, and refused.
    pub(crate) fn get(&self, key: &TokenKey, now: u64) -> Option<Verified> {
        let entry = self.map.get(key)?;
        if entry.key.as_ref().is_some_and(|k| !k.still_published()) {
            drop(entry);
            self.map.remove(key);
            return None;
        }
        (now < entry.expires_at).then(|| (Arc::clone(&entry.principal), entry.stamp.clone()))
    }

    /// Remembers a verified token until its principal's expiry. When full, expired entries
    /// go first, then arbitrary ones down to 90% of capacity.
    pub(crate) fn insert(
        &self,
        key: TokenKey,
        principal: Arc<Principal>,
        stamp: Option<TokenStamp>,
        verified_by: Option<KeyInUse>,
        now: u64,
    ) {
        let Some(expires_at) = principal.expires_at else {
            return;
        };
        if self.capacity == 0 || expires_at <= now {
            return;
        }
        if self.map.len() >= self.capacity {
            self.evict(now);
        }
        self.map.insert(
            key,
            Entry {
                principal,
                stamp,
                expires_at,
                key: verified_by,
            },
        );
    }

    /// Number of cached tokens.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    fn evict(&self, now: u64) {
        self.map.retain(|_, entry| entry.expires_at > now);
        let excess = self
            .map
            .len()
            .saturating_sub(self.capacity - self.capacity / 10);
        if excess > 0 {
            let victims: Vec<TokenKey> = self.map.iter().take(excess).map(|e| *e.key()).collect();
            for key in victims {
                self.map.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(id: &str, expires_at: u64) -> Arc<Principal> {
        Arc::new(Principal {
            id: Arc::from(id),
            expires_at: Some(expires_at),
            ..Principal::anonymous()
        })
    }

    #[test]
    fn returns_the_same_principal_until_expiry() {
        let cache = TokenCache::new(10);
        let key = TokenKey::of("token-a");
        let p = principal("a", 100);
        cache.insert(key, p.clone(), None, None, 50);
        assert!(Arc::ptr_eq(&cache.get(&key, 99).unwrap().0, &p));
        assert!(cache.get(&key, 100).is_none());
        assert!(cache.get(&TokenKey::of("token-b"), 50).is_none());
    }

    #[test]
    fn stays_within_capacity_dropping_expired_first() {
        let cache = TokenCache::new(10);
        for i in 0..5 {
            cache.insert(
                TokenKey::of(&format!("old-{i}")),
                principal("o", 60),
                None,
                None,
                50,
            );
        }
        for i in 0..5 {
            cache.insert(
                TokenKey::of(&format!("new-{i}")),
                principal("n", 1000),
                None,
                None,
                50,
            );
        }
        cache.insert(TokenKey::of("latest"), principal("l", 1000), None, None, 70);
        assert_eq!(cache.len(), 6, "the five expired entries were evicted");
        for i in 0..100 {
            cache.insert(
                TokenKey::of(&format!("more-{i}")),
                principal("m", 1000),
                None,
                None,
                70,
            );
        }
        assert!(cache.len() <= 10, "{}", cache.len());
        assert!(cache.get(&TokenKey::of("more-99"), 70).is_some());
    }

    #[test]
    fn caches_nothing_with_zero_capacity_or_past_expiry() {
        let cache = TokenCache::new(0);
        cache.insert(TokenKey::of("t"), principal("a", 100), None, None, 50);
        assert_eq!(cache.len(), 0);
        let cache = TokenCache::new(5);
        cache.insert(TokenKey::of("t"), principal("a", 40), None, None, 50);
        assert_eq!(cache.len(), 0);
    }
}
