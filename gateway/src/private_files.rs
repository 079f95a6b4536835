//! Directories and files only Warden's own user may read. What Warden keeps on disk holds
//! records of what agents did (prompts and tool arguments too, when `audit.record_content` is
//! on), dead letters of those records, canary tokens: a directory Warden creates is `0700`,
//! a file `0600`, whatever the umask. A directory that exists already keeps its mode (an
//! operator's volume, mounted with its own ownership).

use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Creates `dir` and any missing parents, each `0700`; an existing one is left as it is.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Options that create a file `0600` (set read, write, create as needed).
pub fn options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(0o600);
    options
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn what_warden_creates_only_its_user_reads() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data/audit");
        create_dir_all(&dir).unwrap();
        assert_eq!(mode(&root.path().join("data")), 0o700);
        assert_eq!(mode(&dir), 0o700);
        let file = dir.join("audit-000001.jsonl");
        options().write(true).create(true).open(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        // An existing directory keeps its mode.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        create_dir_all(&dir).unwrap();
        assert_eq!(mode(&dir), 0o750);
    }
}
