//! Rollback floors removed on purpose (`warden policy floor reset`), as each gateway applies
//! them. The command removes the fleet's floor in the state store and records who removed it,
//! why and when; it cannot reach the gateways' own floors (the running sets' times and
//! `<data_dir>/policy-bundle-signed`) nor append to their audit logs. So each gateway, when it
//! next checks the floors (at start, on each reload):
//!
//! - reads the resets recorded for its trusted keys, and writes one `system` record
//!   (`event: policy_floor_reset`) for each it has not named yet (the highest named is kept in
//!   `<data_dir>/policy-floor-resets-named`);
//! - lifts its own floor of a set when that floor is no later than the floor a reset removed:
//!   it is this gateway's copy of what the operator reset (a floor it raised past the removed
//!   one since stays);
//! - names, in the record of the start or reload, the reset each set it loads is signed below.
//!
//! A store that does not answer lifts nothing (the gateway's own floors hold).

use std::io::Write as _;
use std::path::Path;

use super::PolicyEngine;
use super::bundle::BundleError;
use super::config::PolicyConfig;
use super::fleet_floor;
use super::rollback::{self, Floors};
use crate::audit::AuditLog;
use crate::audit::event::{AuditEvent, EventKind};
use crate::state::bundle_floors::{BundleFloorRepository, BundleSet, FloorReset};

/// The file in `data_dir` that keeps the number of the newest reset this gateway's audit log
/// named.
pub const NAMED_FILE: &str = "policy-floor-resets-named";

/// The resets recorded of the floors `policy`'s trusted keys are kept under, oldest first
/// (none without `policy.bundle.public_keys`: unsigned sets have no floors).
pub async fn read(
    policy: &PolicyConfig,
    floors: &dyn BundleFloorRepository,
) -> Result<Vec<FloorReset>, BundleError> {
    if policy.bundle.public_keys.is_empty() {
        return Ok(Vec::new());
    }
    let keys = fleet_floor::trusted_keys(policy)?;
    floors
        .resets(&keys)
        .await
        .map_err(|e| BundleError::FleetFloor {
            dir: policy.dir.display().to_string(),
            reason: e.to_string(),
        })
}

/// `floors` with each set's floor lifted when a reset removed a fleet floor at or after it.
pub fn lift(floors: Floors, resets: &[FloorReset]) -> Floors {
    let lifted = |set: BundleSet, floor: Option<std::time::SystemTime>| {
        floor.filter(|floor| {
            !resets.iter().any(|reset| {
                reset.floor.set == set && fleet_floor::time(reset.floor.signed_ns) >= *floor
            })
        })
    };
    Floors {
        enforced: lifted(BundleSet::Enforced, floors.enforced),
        shadow: lifted(BundleSet::Shadow, floors.shadow),
    }
}

/// For each set `engine` runs (loaded with `policy`), the newest reset that removed a floor
/// after the set's time of signing: the reset that let it load.
pub fn loaded_below(
    policy: &PolicyConfig,
    engine: &PolicyEngine,
    resets: &[FloorReset],
) -> Vec<FloorReset> {
    [BundleSet::Enforced, BundleSet::Shadow]
        .into_iter()
        .filter_map(|set| {
            let signed = rollback::signed(policy, engine, set)?;
            resets
                .iter()
                .rev()
                .find(|reset| {
                    reset.floor.set == set && fleet_floor::time(reset.floor.signed_ns) > signed
                })
                .cloned()
        })
        .collect()
}

/// What a start or reload record says of the resets its sets were loaded below
/// (`floor_resets`), or `None` when there are none.
pub fn detail(below: &[FloorReset]) -> Option<serde_json::Value> {
    (!below.is_empty()).then(|| below.iter().map(FloorReset::detail).collect())
}

/// Writes a `policy_floor_reset` record in `audit` for each of `resets` this gateway's log has
/// not named yet, then remembers the newest named in `data_dir`. A failure to remember is
/// logged: the reset is named again at the next check rather than never.
pub fn name_new(data_dir: &Path, resets: &[FloorReset], audit: &AuditLog) {
    let named = named(data_dir);
    let mut newest = None;
    for reset in resets.iter().filter(|reset| reset.id > named) {
        let mut event = AuditEvent::now(EventKind::System);
        let mut detail = reset.detail();
        detail["event"] = serde_json::Value::from("policy_floor_reset");
        event.detail = Some(detail);
        audit.append_detached(event);
        tracing::warn!(
            reset = reset.id,
            set = reset.floor.set.as_str(),
            by = %crate::text::bounded(&reset.by.by, crate::text::QUOTE_MAX),
            "a policy bundle's rollback floor was reset with `warden policy floor reset`"
        );
        newest = Some(reset.id);
    }
    if let Some(id) = newest
        && let Err(e) = remember_named(data_dir, id)
    {
        tracing::warn!(error = %e, file = NAMED_FILE, "cannot remember which floor resets the audit log named; they are named again at the next check");
    }
}

/// The number of the newest reset named in this gateway's log (0: none).
fn named(data_dir: &Path) -> i64 {
    std::fs::read_to_string(data_dir.join(NAMED_FILE))
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0)
}

/// Remembers `id` as the newest reset named, written whole (a temporary file renamed over it).
fn remember_named(data_dir: &Path, id: i64) -> std::io::Result<()> {
    let temporary = data_dir.join(format!("{NAMED_FILE}.tmp"));
    crate::private_files::create_dir_all(data_dir)?;
    let mut file = crate::private_files::options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temporary)?;
    writeln!(file, "{id}")?;
    file.sync_all()?;
    std::fs::rename(&temporary, data_dir.join(NAMED_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::rollback::signed_sets::at;
    use crate::state::bundle_floors::{Resetter, StoredFloor};

    fn reset(id: i64, set: BundleSet, seconds: i64) -> FloorReset {
        FloorReset {
            id,
            floor: StoredFloor {
                trusted_keys: "sha256:k".into(),
                set,
                signed_ns: seconds * 1_000_000_000,
                raised_ms: 0,
            },
            by: Resetter {
                by: "alice".into(),
                reason: "bad release".into(),
                at_ms: 0,
            },
        }
    }

    #[test]
    fn a_reset_lifts_a_floor_at_or_before_the_one_it_removed_and_only_of_its_set() {
        let floors = Floors {
            enforced: Some(at(2_000)),
            shadow: Some(at(2_000)),
        };
        assert_eq!(lift(floors, &[]), floors);
        let lifted = lift(floors, &[reset(1, BundleSet::Enforced, 2_000)]);
        assert_eq!(lifted.enforced, None);
        assert_eq!(lifted.shadow, Some(at(2_000)));
        // A floor raised past the removed one since stays.
        let later = Floors {
            enforced: Some(at(3_000)),
            shadow: None,
        };
        assert_eq!(lift(later, &[reset(1, BundleSet::Enforced, 2_000)]), later);
    }

    #[test]
    fn each_reset_is_named_once_per_data_dir() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(named(tmp.path()), 0);
        remember_named(tmp.path(), 7).unwrap();
        assert_eq!(named(tmp.path()), 7);
    }
}
