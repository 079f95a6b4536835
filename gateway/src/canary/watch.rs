//! The canaries this replica looks for: one Aho-Corasick automaton over every live canary's
//! needles, rebuilt when the state store's list changes (read every
//! `canaries.refresh_interval`), swapped in whole so a request never waits for it.

use std::sync::{Arc, Weak};
use std::time::Duration;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use arc_swap::ArcSwap;

use crate::state::canaries::{CanaryRecord, CanaryRepository};
use crate::state::error::StateError;

/// What a hit names: the canary, never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planted {
    pub id: Arc<str>,
    pub kind: Arc<str>,
    pub label: Arc<str>,
}

/// The live canaries, compiled.
#[derive(Default)]
pub(super) struct CanarySet {
    automaton: Option<AhoCorasick>,
    /// For each needle (the automaton's pattern index), its canary.
    owners: Vec<Arc<Planted>>,
    /// The live canaries' ids, sorted: a new list that names the same ones changes nothing.
    ids: Vec<String>,
}

/// Shortest needle looked for: shorter ones would match ordinary text.
const MIN_NEEDLE: usize = 12;

impl CanarySet {
    /// The set of the live canaries among `records`.
    pub(super) fn build(records: &[CanaryRecord]) -> CanarySet {
        let mut owners = Vec::new();
        let mut needles = Vec::new();
        let mut ids = Vec::new();
        for record in records.iter().filter(|r| r.revoked_ms.is_none()) {
            ids.push(record.id.clone());
            let planted = Arc::new(Planted {
                id: Arc::from(record.id.as_str()),
                kind: Arc::from(record.kind.as_str()),
                label: Arc::from(record.label.as_str()),
            });
            for needle in record.needles.iter().filter(|n| n.len() >= MIN_NEEDLE) {
                needles.push(needle.as_bytes());
                owners.push(Arc::clone(&planted));
            }
        }
        ids.sort();
        let automaton = (!needles.is_empty())
            .then(|| {
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(&needles)
                    .ok()
            })
            .flatten();
        CanarySet {
            automaton,
            owners,
            ids,
        }
    }

    /// Each canary found in `haystack` (once), with the byte its first needle starts at.
    pub(super) fn find(&self, haystack: &[u8]) -> Vec<(Arc<Planted>, usize)> {
        let Some(automaton) = &self.automaton else {
            return Vec::new();
        };
        let mut found: Vec<(Arc<Planted>, usize)> = Vec::new();
        for m in automaton.find_iter(haystack) {
            let owner = &self.owners[m.pattern().as_usize()];
            if !found.iter().any(|(p, _)| Arc::ptr_eq(p, owner)) {
                found.push((Arc::clone(owner), m.start()));
            }
        }
        found
    }

    /// How many canaries are live.
    pub(super) fn len(&self) -> usize {
        self.ids.len()
    }
}

/// The live set, kept up to date from the store.
pub(super) struct Watch {
    pub(super) set: ArcSwap<CanarySet>,
    repo: Arc<dyn CanaryRepository>,
}

impl Watch {
    /// The set as the store has it now.
    pub(super) async fn load(repo: Arc<dyn CanaryRepository>) -> Result<Watch, StateError> {
        let set = CanarySet::build(&repo.list().await?);
        Ok(Watch {
            set: ArcSwap::from_pointee(set),
            repo,
        })
    }

    /// Reads the store; swaps in a new set when the live canaries changed.
    pub(super) async fn refresh(&self) -> Result<(), StateError> {
        let records = self.repo.list().await?;
        let mut ids: Vec<&str> = records
            .iter()
            .filter(|r| r.revoked_ms.is_none())
            .map(|r| r.id.as_str())
            .collect();
        ids.sort_unstable();
        if ids
            != self
                .set
                .load()
                .ids
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
        {
            let set = CanarySet::build(&records);
            tracing::info!(
                live = set.len(),
                "canary tokens: the set looked for changed"
            );
            self.set.store(Arc::new(set));
        }
        Ok(())
    }

    /// Refreshes every `every` while `watch` lives. A store that cannot be read keeps the
    /// set in memory (still looked for) and says so.
    pub(super) fn spawn(watch: Weak<Watch>, every: Duration) {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(watch) = watch.upgrade() else { return };
                if let Err(error) = watch.refresh().await {
                    tracing::warn!(%error, "canary tokens: cannot read the state store; still looking for the canaries in memory");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, needles: &[&str], revoked: bool) -> CanaryRecord {
        CanaryRecord {
            id: id.into(),
            kind: "api-token".into(),
            label: "test".into(),
            needles: needles.iter().map(|n| (*n).to_owned()).collect(),
            created_ms: 1,
            revoked_ms: revoked.then_some(2),
        }
    }

    #[test]
    fn live_canaries_are_found_once_each_where_they_first_appear_in_any_case() {
        let set = CanarySet::build(&[
            record("cn_a", &["ghp_AAAAbbbbCCCCdddd1234", "short"], false),
            record("cn_b", &["d0123456789abc.assets.acme.com"], false),
            record("cn_c", &["ghp_revokedrevoked0000"], true),
        ]);
        assert_eq!(set.len(), 2);
        let body = b"x ghp_AAAAbbbbCCCCdddd1234 y ghp_AAAAbbbbCCCCdddd1234 CONNECT D0123456789ABC.assets.acme.com:443 ghp_revokedrevoked0000 short";
        let found: Vec<(String, usize)> = set
            .find(body)
            .into_iter()
            .map(|(p, at)| (p.id.to_string(), at))
            .collect();
        assert_eq!(found, [("cn_a".to_owned(), 2), ("cn_b".to_owned(), 62)]);
        assert!(CanarySet::default().find(body).is_empty());
    }
}
