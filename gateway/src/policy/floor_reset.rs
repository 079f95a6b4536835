//! Rollback floors removed on purpose (`warden policy floor reset`), as each gateway applies
//! them. The command removes the fleet's floor in the state store and records who removed it,
//! why and when, and, with `--sign-key`, a signature of that statement by a key of
//! `policy.bundle.public_keys`; it cannot reach the gateways' own floors (the running sets'
//! times and `<data_dir>/policy-bundle-signed`) nor append to their audit logs. So each
//! gateway, when it next checks the floors (at start, on each reload):
//!
//! - reads the newest resets recorded for its trusted keys, and writes one `system` record
//!   (`event: policy_floor_reset`) for each it has not named yet (those named are kept in
//!   `<data_dir>/policy-floor-resets-named`, by number, time and floor, so that a new
//!   database whose numbers start again is not mistaken for the old one);
//! - lifts its own floor of a set when a SIGNED reset of exactly its trusted keys and that set
//!   removed a floor at or after it: it is this gateway's copy of what the operator reset (a
//!   floor it raised past the removed one since stays). An unsigned reset (or a row written
//!   into the store by hand) lowers the fleet's floor only: whoever can write the store cannot
//!   lower a gateway's own floor, as they cannot sign a bundle;
//! - names, in the record of the start or reload, the reset each set it loads is signed below.
//!
//! A store that does not answer lifts nothing (the gateway's own floors hold).

use std::io::Write as _;
use std::path::Path;

use super::PolicyEngine;
use super::bundle::{self, BundleError, Trust};
use super::config::PolicyConfig;
use super::fleet_floor;
use super::rollback::{self, Floors};
use crate::audit::AuditLog;
use crate::audit::event::{AuditEvent, EventKind};
use crate::state::bundle_floors::{
    BundleFloorRepository, BundleSet, FloorReset, Resetter, StoredFloor,
};

/// The file in `data_dir` that keeps which resets this gateway's audit log named.
pub const NAMED_FILE: &str = "policy-floor-resets-named";

/// The newest resets recorded of the floors `policy`'s trusted keys are kept under, oldest
/// first (none without `policy.bundle.public_keys`: unsigned sets have no floors).
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

/// The text a reset's signature is over: what it resets (the trusted keys' fingerprint, the
/// set, the removed floor's time of signing), when, by whom and why, as a JSON array (no
/// field can run into another).
pub fn statement(floor: &StoredFloor, by: &Resetter) -> String {
    serde_json::json!([
        "warden policy floor reset v1",
        floor.trusted_keys,
        floor.set.as_str(),
        floor.signed_ns,
        by.at_ms,
        by.by,
        by.reason,
    ])
    .to_string()
}

/// The signature of `floor`'s reset by `by` with `key`, for [`Resetter::signature`].
pub fn sign(floor: &StoredFloor, by: &Resetter, key: &ed25519_dalek::SigningKey) -> String {
    bundle::sign_statement(&statement(floor, by), key)
}

/// The keys `policy` trusts and their fingerprint (`None`: none, or unreadable: nothing is
/// lifted).
fn trusted(policy: &PolicyConfig) -> Option<(Trust, String)> {
    if policy.bundle.public_keys.is_empty() {
        return None;
    }
    let trust = Trust::load(&policy.bundle.public_keys).ok()?;
    let keys = trust.fingerprint();
    Some((trust, keys))
}

/// Whether `reset` is of a floor of exactly `keys` and signed by a key of `trust`.
fn signed_for(trust: &Trust, keys: &str, reset: &FloorReset) -> bool {
    reset.floor.trusted_keys == keys
        && reset.by.signature.as_deref().is_some_and(|signature| {
            bundle::verify_statement(&statement(&reset.floor, &reset.by), signature, trust)
        })
}

/// `floors` with each set's floor lifted when a reset signed by a key `policy` trusts removed
/// the fleet floor of exactly those keys and that set at or after it. Unsigned resets, and
/// resets whose signature does not verify, lift nothing.
pub fn lift(policy: &PolicyConfig, floors: Floors, resets: &[FloorReset]) -> Floors {
    let Some((trust, keys)) = trusted(policy) else {
        return floors;
    };
    let signed: Vec<&FloorReset> = resets
        .iter()
        .filter(|reset| signed_for(&trust, &keys, reset))
        .collect();
    let lifted = |set: BundleSet, floor: Option<std::time::SystemTime>| {
        floor.filter(|floor| {
            !signed.iter().any(|reset| {
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

/// What a gateway does with its own floor for `reset`.
const OWN_FLOOR_LIFTED: &str = "signed: own floor lifted if at or below the old floor";
const OWN_FLOOR_KEPT: &str = "unsigned: own floor kept";

/// Writes a `policy_floor_reset` record in `audit` for each of `resets` this gateway's log has
/// not named yet, saying whether it is signed (and so lifts this gateway's own floor), then
/// remembers those named in `data_dir`. A failure to remember is logged: the reset is named
/// again at the next check rather than never.
pub fn name_new(data_dir: &Path, policy: &PolicyConfig, resets: &[FloorReset], audit: &AuditLog) {
    let named = named(data_dir);
    let trusted = trusted(policy);
    let mut any = false;
    for reset in resets
        .iter()
        .filter(|reset| !named.contains(&marker(reset)))
    {
        let signed = trusted
            .as_ref()
            .is_some_and(|(trust, keys)| signed_for(trust, keys, reset));
        let own_floor = if signed {
            OWN_FLOOR_LIFTED
        } else {
            OWN_FLOOR_KEPT
        };
        let mut event = AuditEvent::now(EventKind::System);
        let mut detail = reset.detail();
        detail["event"] = serde_json::Value::from("policy_floor_reset");
        detail["signed"] = serde_json::Value::from(signed);
        detail["own_floor"] = serde_json::Value::from(own_floor);
        event.detail = Some(detail);
        audit.append_detached(event);
        tracing::warn!(
            reset = reset.id,
            set = reset.floor.set.as_str(),
            by = %crate::text::bounded(&reset.by.by, crate::text::QUOTE_MAX),
            own_floor,
            "a policy bundle's rollback floor was reset with `warden policy floor reset`"
        );
        any = true;
    }
    if any {
        let all: Vec<String> = resets.iter().map(marker).collect();
        if let Err(e) = remember_named(data_dir, &all) {
            tracing::warn!(error = %e, file = NAMED_FILE, "cannot remember which floor resets the audit log named; they are named again at the next check");
        }
    }
}

/// What marks `reset` as named: its number, when it was made and the floor it removed, so that
/// a reset of another database that happens to have the same number is named too.
fn marker(reset: &FloorReset) -> String {
    format!(
        "{} {} {} {}",
        reset.id,
        reset.by.at_ms,
        reset.floor.set.as_str(),
        reset.floor.signed_ns
    )
}

/// The resets named in this gateway's log (as [`marker`] writes them); a file from before
/// markers, or none, names none (they are named again, once).
fn named(data_dir: &Path) -> Vec<String> {
    std::fs::read_to_string(data_dir.join(NAMED_FILE))
        .map(|text| text.lines().map(|line| line.trim().to_owned()).collect())
        .unwrap_or_default()
}

/// Remembers `markers` as the resets named (those the store still lists: the file stays as
/// bounded as the resets read), written whole (a temporary file renamed over it).
fn remember_named(data_dir: &Path, markers: &[String]) -> std::io::Result<()> {
    let temporary = data_dir.join(format!("{NAMED_FILE}.tmp"));
    crate::private_files::create_dir_all(data_dir)?;
    let mut file = crate::private_files::options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temporary)?;
    for marker in markers {
        writeln!(file, "{marker}")?;
    }
    file.sync_all()?;
    std::fs::rename(&temporary, data_dir.join(NAMED_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::rollback::signed_sets::{self, at};

    /// Policy settings trusting the test signer's key (written in `dir`), and their
    /// fingerprint.
    fn trusting(dir: &Path) -> (PolicyConfig, String) {
        let mut policy = PolicyConfig::default();
        policy.bundle.public_keys = vec![signed_sets::trusted_key(dir)];
        let keys = fleet_floor::trusted_keys(&policy).unwrap();
        (policy, keys)
    }

    fn reset(id: i64, keys: &str, set: BundleSet, seconds: i64) -> FloorReset {
        FloorReset {
            id,
            floor: StoredFloor {
                trusted_keys: keys.into(),
                set,
                signed_ns: seconds * 1_000_000_000,
                raised_ms: 0,
            },
            by: Resetter {
                by: "alice".into(),
                reason: "bad release".into(),
                at_ms: 0,
                signature: None,
            },
        }
    }

    /// `reset` signed with `key`.
    fn signed_with(mut reset: FloorReset, key: &ed25519_dalek::SigningKey) -> FloorReset {
        reset.by.signature = Some(sign(&reset.floor, &reset.by, key));
        reset
    }

    /// Both sets' floors at 2 000 s.
    fn both() -> Floors {
        Floors {
            enforced: Some(at(2_000)),
            shadow: Some(at(2_000)),
        }
    }

    #[test]
    fn a_signed_reset_lifts_a_floor_at_or_before_the_one_it_removed_and_only_of_its_set() {
        let tmp = tempfile::tempdir().unwrap();
        let (policy, keys) = trusting(tmp.path());
        let key = signed_sets::key();
        assert_eq!(lift(&policy, both(), &[]), both());
        let enforced = signed_with(reset(1, &keys, BundleSet::Enforced, 2_000), &key);
        let lifted = lift(&policy, both(), std::slice::from_ref(&enforced));
        assert_eq!(lifted.enforced, None);
        assert_eq!(lifted.shadow, Some(at(2_000)));
        // A floor raised past the removed one since stays.
        let later = Floors {
            enforced: Some(at(3_000)),
            shadow: None,
        };
        assert_eq!(lift(&policy, later, &[enforced]), later);
    }

    #[test]
    fn an_unsigned_forged_or_foreign_reset_lifts_no_own_floor() {
        let tmp = tempfile::tempdir().unwrap();
        let (policy, keys) = trusting(tmp.path());
        let key = signed_sets::key();
        // A row written into the store by hand: unsigned, removing a floor "at the end of
        // time".
        let forged = reset(1, &keys, BundleSet::Enforced, i64::MAX / 1_000_000_000);
        assert_eq!(lift(&policy, both(), &[forged]), both());
        // A signed reset's row edited to remove a later floor: the signature no longer holds.
        let mut edited = signed_with(reset(2, &keys, BundleSet::Enforced, 2_000), &key);
        edited.floor.signed_ns = i64::MAX;
        assert_eq!(lift(&policy, both(), &[edited]), both());
        // Moved to the other set.
        let mut moved = signed_with(reset(3, &keys, BundleSet::Enforced, 2_000), &key);
        moved.floor.set = BundleSet::Shadow;
        assert_eq!(lift(&policy, both(), &[moved]), both());
        // Signed by a key the gateway does not trust.
        let stranger = ed25519_dalek::SigningKey::from_bytes(&[4; 32]);
        let untrusted = signed_with(reset(4, &keys, BundleSet::Enforced, 2_000), &stranger);
        assert_eq!(lift(&policy, both(), &[untrusted]), both());
        // A reset of the floors of other trusted keys, signed by this key.
        let foreign = signed_with(reset(5, "sha256:other", BundleSet::Enforced, 2_000), &key);
        assert_eq!(lift(&policy, both(), &[foreign]), both());
        // Without trusted keys nothing is lifted.
        let signed = signed_with(reset(6, &keys, BundleSet::Enforced, 2_000), &key);
        assert_eq!(lift(&PolicyConfig::default(), both(), &[signed]), both());
    }

    #[test]
    fn a_reset_is_named_once_per_data_dir_and_store() {
        let tmp = tempfile::tempdir().unwrap();
        let first = reset(7, "sha256:k", BundleSet::Enforced, 2_000);
        assert!(named(tmp.path()).is_empty());
        remember_named(tmp.path(), &[marker(&first)]).unwrap();
        assert!(named(tmp.path()).contains(&marker(&first)));
        // A new database numbers its resets from 1 again: a reset with a number named before
        // but made at another time, of another floor, is another.
        let mut other_store = reset(7, "sha256:k", BundleSet::Enforced, 1_000);
        other_store.by.at_ms = 99;
        assert!(!named(tmp.path()).contains(&marker(&other_store)));
        let mut lower = reset(3, "sha256:k", BundleSet::Enforced, 2_000);
        lower.by.at_ms = 99;
        assert!(!named(tmp.path()).contains(&marker(&lower)));
    }
}
