//! Refuses a signed policy bundle older than the newest loaded: a bundle that verifies but was
//! signed before the one in force is an older set put back (a rollback), and would bring back
//! whatever the newer one stopped permitting. Each set has its floor, the newest time of
//! signing loaded: the enforced set (`policy.dir`) and the shadow set (`policy.shadow_dir`).
//! This gateway's floors are the running sets' and, across restarts, the times remembered in
//! `<data_dir>/policy-bundle-signed` and `<data_dir>/policy-shadow-bundle-signed` (written
//! after each start and applied reload); the fleet's, kept in the state store so that a fresh
//! pod refuses what another replica has moved past, are checked in `policy/fleet_floor.rs`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::PolicyEngine;
use super::bundle::BundleError;
use super::config::PolicyConfig;
use crate::state::bundle_floors::BundleSet;

/// The file in `data_dir` that remembers the newest enforced bundle's signature loaded.
pub const NEWEST_FILE: &str = "policy-bundle-signed";
/// The file in `data_dir` that remembers the newest shadow bundle's signature loaded.
pub const NEWEST_SHADOW_FILE: &str = "policy-shadow-bundle-signed";

/// Who loaded the newer bundle a refusal names: this gateway.
pub const THIS_GATEWAY: &str = "this gateway";

/// The file in `data_dir` that remembers `set`'s newest signature.
fn file(set: BundleSet) -> &'static str {
    match set {
        BundleSet::Enforced => NEWEST_FILE,
        BundleSet::Shadow => NEWEST_SHADOW_FILE,
    }
}

/// Each set's floor: the newest time of signing loaded (`None`: none is known).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Floors {
    pub enforced: Option<SystemTime>,
    pub shadow: Option<SystemTime>,
}

impl Floors {
    /// The floors remembered in `data_dir`.
    pub fn remembered(data_dir: &Path) -> Result<Floors, BundleError> {
        Ok(Floors {
            enforced: remembered(data_dir, BundleSet::Enforced)?,
            shadow: remembered(data_dir, BundleSet::Shadow)?,
        })
    }

    /// These floors, raised to the times of the sets `engine` runs with `policy`.
    pub fn with_running(self, policy: &PolicyConfig, engine: &PolicyEngine) -> Floors {
        Floors {
            enforced: self
                .enforced
                .max(signed(policy, engine, BundleSet::Enforced)),
            shadow: self.shadow.max(signed(policy, engine, BundleSet::Shadow)),
        }
    }

    /// `set`'s floor.
    pub fn of(&self, set: BundleSet) -> Option<SystemTime> {
        match set {
            BundleSet::Enforced => self.enforced,
            BundleSet::Shadow => self.shadow,
        }
    }
}

/// When `set` of `engine` (loaded with `policy`) was signed: the enforced set's time, or the
/// time of `policy.shadow_dir`'s set (`None` without one: `@mode("shadow")` policies are the
/// enforced bundle's).
pub fn signed(policy: &PolicyConfig, engine: &PolicyEngine, set: BundleSet) -> Option<SystemTime> {
    match set {
        BundleSet::Enforced => engine.bundle_signed(),
        BundleSet::Shadow => {
            policy.shadow_dir.as_ref()?;
            engine.shadow()?.bundle_signed()
        }
    }
}

/// The directory of `set` in `policy`, for messages.
pub fn dir(policy: &PolicyConfig, set: BundleSet) -> &Path {
    match (set, &policy.shadow_dir) {
        (BundleSet::Shadow, Some(dir)) => dir,
        _ => &policy.dir,
    }
}

/// The newest signing time of `set` remembered in `data_dir`; `None` when none is.
pub fn remembered(data_dir: &Path, set: BundleSet) -> Result<Option<SystemTime>, BundleError> {
    let path = data_dir.join(file(set));
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(BundleError::Io { path, source }),
    };
    humantime::parse_rfc3339(text.trim())
        .map(Some)
        .map_err(|e| BundleError::NewestUnreadable {
            path,
            reason: e.to_string(),
        })
}

/// Remembers `at` for `set` in `data_dir` unless a newer time is remembered already (or
/// whatever is remembered when `lowered`: the set was loaded below a floor reset on purpose,
/// `policy/floor_reset.rs`). Written whole (a temporary file renamed over it), so a crash
/// leaves the old time or the new one.
pub fn remember(
    data_dir: &Path,
    set: BundleSet,
    at: SystemTime,
    lowered: bool,
) -> Result<(), BundleError> {
    if !lowered && remembered(data_dir, set)?.is_some_and(|newest| newest >= at) {
        return Ok(());
    }
    let path = data_dir.join(file(set));
    let temporary = data_dir.join(format!("{}.tmp", file(set)));
    let io = |path: &PathBuf| {
        let path = path.clone();
        move |source| BundleError::Io { path, source }
    };
    crate::private_files::create_dir_all(data_dir).map_err(io(&data_dir.to_path_buf()))?;
    let mut file = crate::private_files::options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temporary)
        .map_err(io(&temporary))?;
    writeln!(file, "{}", humantime::format_rfc3339_nanos(at)).map_err(io(&temporary))?;
    file.sync_all().map_err(io(&temporary))?;
    std::fs::rename(&temporary, &path).map_err(io(&path))
}

/// Refuses the bundle of `dir`, signed `signed` (`None`: its manifest does not say when),
/// when the newest bundle loaded before (by `whose`: [`THIS_GATEWAY`], or another) was signed
/// later.
pub fn refuse_older(
    dir: &Path,
    signed: Option<SystemTime>,
    newest: Option<SystemTime>,
    whose: &'static str,
) -> Result<(), BundleError> {
    let Some(newest) = newest else { return Ok(()) };
    if signed.is_some_and(|signed| signed >= newest) {
        return Ok(());
    }
    Err(BundleError::Rollback {
        dir: dir.display().to_string(),
        signed: signed.map_or_else(
            || "at a time its manifest does not say (signed by an older Warden)".to_owned(),
            |at| format!("at {}", humantime::format_rfc3339_nanos(at)),
        ),
        newest: humantime::format_rfc3339_nanos(newest).to_string(),
        whose,
    })
}

/// How far after this gateway's time a bundle may say it was signed (clocks differ a little).
pub const FUTURE_SLACK: Duration = Duration::from_secs(5 * 60);

/// Refuses the bundle of `dir` when it says it was signed more than [`FUTURE_SLACK`] after
/// `now`: a signer's clock ahead would otherwise raise the floors past every bundle signed at
/// the real time, for good.
pub fn refuse_future(
    dir: &Path,
    signed: Option<SystemTime>,
    now: SystemTime,
) -> Result<(), BundleError> {
    match signed {
        Some(at) if at > now + FUTURE_SLACK => Err(BundleError::SignedInFuture {
            dir: dir.display().to_string(),
            signed: humantime::format_rfc3339_seconds(at).to_string(),
            now: humantime::format_rfc3339_seconds(now).to_string(),
            slack: "5 minutes",
        }),
        _ => Ok(()),
    }
}

/// For tests: signed policy sets made on disk.
#[cfg(test)]
pub(crate) mod signed_sets {
    use std::path::{Path, PathBuf};
    use std::time::{Duration, SystemTime};

    /// The time `seconds` after the Unix epoch.
    pub(crate) fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    /// The key the sets are signed with.
    pub(crate) fn key() -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[9; 32])
    }

    /// Writes the public key of the sets' signer in `dir`; its path, for
    /// `policy.bundle.public_keys`.
    pub(crate) fn trusted_key(dir: &Path) -> PathBuf {
        let public = dir.join("bundle.pub");
        std::fs::write(
            &public,
            crate::keys::public_pem(&key().verifying_key()).unwrap(),
        )
        .unwrap();
        public
    }

    /// Makes `dir` a set of one policy (`permit` everything, with id `id`), signed `signed`.
    pub(crate) fn write(dir: &Path, id: &str, signed: SystemTime) {
        std::fs::create_dir_all(dir).unwrap();
        let schema = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../policies/schema.cedarschema"
        );
        std::fs::copy(schema, dir.join("schema.cedarschema")).unwrap();
        std::fs::write(
            dir.join("p.cedar"),
            format!("@id(\"{id}\")\npermit (principal, action, resource);\n"),
        )
        .unwrap();
        let files = crate::policy::bundle_files(dir).unwrap();
        crate::policy::bundle::sign(dir, &files, &key(), signed).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn a_bundle_signed_before_the_newest_loaded_is_refused() {
        let dir = Path::new("/etc/warden/policies");
        refuse_older(dir, Some(at(2_000)), None, THIS_GATEWAY).unwrap();
        refuse_older(dir, None, None, THIS_GATEWAY).unwrap();
        refuse_older(dir, Some(at(2_000)), Some(at(2_000)), THIS_GATEWAY).unwrap();
        refuse_older(dir, Some(at(2_001)), Some(at(2_000)), THIS_GATEWAY).unwrap();
        let e = refuse_older(dir, Some(at(1_999)), Some(at(2_000)), THIS_GATEWAY).unwrap_err();
        assert!(matches!(e, BundleError::Rollback { .. }), "{e}");
        let e = e.to_string();
        assert!(
            e.contains("signed at 1970-01-01T00:33:19.000000000Z"),
            "{e}"
        );
        assert!(e.contains("(signed 1970-01-01T00:33:20.000000000Z)"), "{e}");
        // A manifest that does not say when it was signed cannot be shown to be newer.
        let e = refuse_older(dir, None, Some(at(2_000)), THIS_GATEWAY).unwrap_err();
        assert!(e.to_string().contains("does not say"), "{e}");
    }

    #[test]
    fn a_bundle_signed_more_than_five_minutes_ahead_is_refused() {
        let dir = Path::new("/etc/warden/policies");
        let now = at(10_000);
        refuse_future(dir, None, now).unwrap();
        refuse_future(dir, Some(now + FUTURE_SLACK), now).unwrap();
        let e = refuse_future(dir, Some(now + Duration::from_secs(3_600)), now).unwrap_err();
        assert!(matches!(e, BundleError::SignedInFuture { .. }), "{e}");
        let e = e.to_string();
        assert!(e.contains("signed at 1970-01-01T03:46:40Z"), "{e}");
        assert!(
            e.contains("this gateway's time (1970-01-01T02:46:40Z)"),
            "{e}"
        );
        assert!(e.contains("sign the bundle again"), "{e}");
    }

    #[test]
    fn the_newest_time_is_remembered_and_never_lowered() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        assert_eq!(remembered(&data, BundleSet::Enforced).unwrap(), None);
        remember(&data, BundleSet::Enforced, at(2_000), false).unwrap();
        assert_eq!(
            remembered(&data, BundleSet::Enforced).unwrap(),
            Some(at(2_000))
        );
        remember(&data, BundleSet::Enforced, at(1_000), false).unwrap();
        assert_eq!(
            remembered(&data, BundleSet::Enforced).unwrap(),
            Some(at(2_000))
        );
        remember(&data, BundleSet::Enforced, at(3_000), false).unwrap();
        assert_eq!(
            remembered(&data, BundleSet::Enforced).unwrap(),
            Some(at(3_000))
        );
        // A set loaded below a floor reset on purpose (`warden policy floor reset`) replaces it.
        remember(&data, BundleSet::Enforced, at(1_500), true).unwrap();
        assert_eq!(
            remembered(&data, BundleSet::Enforced).unwrap(),
            Some(at(1_500))
        );
        assert!(!data.join(format!("{NEWEST_FILE}.tmp")).exists());
    }

    #[test]
    fn the_shadow_sets_time_is_remembered_apart() {
        let tmp = tempfile::tempdir().unwrap();
        remember(tmp.path(), BundleSet::Shadow, at(5_000), false).unwrap();
        remember(tmp.path(), BundleSet::Enforced, at(2_000), false).unwrap();
        assert_eq!(
            Floors::remembered(tmp.path()).unwrap(),
            Floors {
                enforced: Some(at(2_000)),
                shadow: Some(at(5_000)),
            }
        );
        assert!(tmp.path().join(NEWEST_SHADOW_FILE).exists());
    }

    #[test]
    fn an_unreadable_remembered_time_is_an_error_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(NEWEST_FILE), "yesterday\n").unwrap();
        let e = remembered(tmp.path(), BundleSet::Enforced)
            .unwrap_err()
            .to_string();
        assert!(e.contains(NEWEST_FILE), "{e}");
    }
}
