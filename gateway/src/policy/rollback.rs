//! Refuses a signed policy bundle older than the newest this gateway loaded: a bundle that
//! verifies but was signed before the one in force is an older set put back (a rollback), and
//! would bring back whatever the newer one stopped permitting. The newest time of signing is
//! the running set's, and, across restarts, the one remembered in
//! `<data_dir>/policy-bundle-signed` (written after each start and applied reload).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::bundle::BundleError;

/// The file in `data_dir` that remembers the newest bundle signature loaded.
pub const NEWEST_FILE: &str = "policy-bundle-signed";

/// The newest signing time remembered in `data_dir`; `None` when none is.
pub fn remembered(data_dir: &Path) -> Result<Option<SystemTime>, BundleError> {
    let path = data_dir.join(NEWEST_FILE);
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

/// Remembers `at` in `data_dir` unless a newer time is remembered already. Written whole
/// (a temporary file renamed over it), so a crash leaves the old time or the new one.
pub fn remember(data_dir: &Path, at: SystemTime) -> Result<(), BundleError> {
    if remembered(data_dir)?.is_some_and(|newest| newest >= at) {
        return Ok(());
    }
    let path = data_dir.join(NEWEST_FILE);
    let temporary = data_dir.join(format!("{NEWEST_FILE}.tmp"));
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
/// when the newest bundle loaded before was signed later.
pub fn refuse_older(
    dir: &Path,
    signed: Option<SystemTime>,
    newest: Option<SystemTime>,
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
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn a_bundle_signed_before_the_newest_loaded_is_refused() {
        let dir = Path::new("/etc/warden/policies");
        refuse_older(dir, Some(at(2_000)), None).unwrap();
        refuse_older(dir, None, None).unwrap();
        refuse_older(dir, Some(at(2_000)), Some(at(2_000))).unwrap();
        refuse_older(dir, Some(at(2_001)), Some(at(2_000))).unwrap();
        let e = refuse_older(dir, Some(at(1_999)), Some(at(2_000))).unwrap_err();
        assert!(matches!(e, BundleError::Rollback { .. }), "{e}");
        let e = e.to_string();
        assert!(
            e.contains("signed at 1970-01-01T00:33:19.000000000Z"),
            "{e}"
        );
        assert!(e.contains("(signed 1970-01-01T00:33:20.000000000Z)"), "{e}");
        // A manifest that does not say when it was signed cannot be shown to be newer.
        let e = refuse_older(dir, None, Some(at(2_000))).unwrap_err();
        assert!(e.to_string().contains("does not say"), "{e}");
    }

    #[test]
    fn the_newest_time_is_remembered_and_never_lowered() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        assert_eq!(remembered(&data).unwrap(), None);
        remember(&data, at(2_000)).unwrap();
        assert_eq!(remembered(&data).unwrap(), Some(at(2_000)));
        remember(&data, at(1_000)).unwrap();
        assert_eq!(remembered(&data).unwrap(), Some(at(2_000)));
        remember(&data, at(3_000)).unwrap();
        assert_eq!(remembered(&data).unwrap(), Some(at(3_000)));
        assert!(!data.join(format!("{NEWEST_FILE}.tmp")).exists());
    }

    #[test]
    fn an_unreadable_remembered_time_is_an_error_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(NEWEST_FILE), "yesterday\n").unwrap();
        let e = remembered(tmp.path()).unwrap_err().to_string();
        assert!(e.contains(NEWEST_FILE), "{e}");
    }
}
