//! What this binary is: its version and the commit it was built from (`build.rs`), for
//! `warden --version`, the `warden_build_info` metric and the audit log's start record.

/// The package version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit: git's short hash, `-dirty` appended when the sources differed from it, or
/// `unknown` when built without `.git` (a crate tarball) and without `WARDEN_BUILD_COMMIT`
/// (which gives it instead of git).
pub const COMMIT: &str = env!("WARDEN_COMMIT");

/// What `warden --version` prints after the name: `0.1.0 (commit 1a2b3c4)`.
pub const VERSION_LINE: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("WARDEN_COMMIT"),
    ")"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commit_is_a_short_hash_or_unknown_and_follows_the_version() {
        let hash = COMMIT.strip_suffix("-dirty").unwrap_or(COMMIT);
        assert!(
            COMMIT == "unknown"
                || ((7..=40).contains(&hash.len()) && hash.bytes().all(|b| b.is_ascii_hexdigit())),
            "{COMMIT}"
        );
        assert_eq!(VERSION_LINE, format!("{VERSION} (commit {COMMIT})"));
        // Built from the repository (not a tarball), the commit is known.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        if root.join(".git").exists() {
            assert_ne!(COMMIT, "unknown");
        }
    }
}
