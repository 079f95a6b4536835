//! What a limiter that shares its counts remembers between ticks (`sync/`); the request path
//! reads only `owed`, when it makes a bucket.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use dashmap::DashMap;

/// What sharing counts needs to remember between ticks.
pub(crate) struct Sharing {
    /// This process among the replicas (random).
    pub(super) replica: String,
    /// Theoretical arrival times of buckets this replica has not used yet, by name: what other
    /// replicas admitted in them.
    pub(super) owed: DashMap<Arc<str>, u64>,
    /// What this replica last published per bucket, and when.
    pub(super) published: Mutex<HashMap<Arc<str>, (u64, i64)>>,
    /// What each other replica's count of each bucket was when last read.
    pub(super) seen: Mutex<HashMap<(String, String), i64>>,
    /// Whether the counts have been read once (the first read is taken as the start).
    pub(super) started: AtomicBool,
}

impl Sharing {
    pub(super) fn new() -> Sharing {
        Sharing {
            replica: uuid::Uuid::now_v7().simple().to_string(),
            owed: DashMap::new(),
            published: Mutex::new(HashMap::new()),
            seen: Mutex::new(HashMap::new()),
            started: AtomicBool::new(false),
        }
    }
}
