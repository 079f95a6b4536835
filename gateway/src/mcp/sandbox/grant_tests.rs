//! What `Sandbox::prepare` opens and makes, without the kernel's Landlock: the paths it grants
//! checked as opened, the process's own directory made without following links.

use std::os::unix::fs::symlink;

use super::*;

/// A sandbox under `root` whose data directory is `root/data`, reading `root/shared`.
fn sandbox(root: &Path) -> Sandbox {
    let config = ServerSandbox {
        read: vec![root.join("shared")],
        ..ServerSandbox::default()
    };
    Sandbox::new("s", &config, SandboxMode::Enforce, &root.join("data"), &[])
}

/// Waits (bounded) until the reaper removed the directories handed over so far.
fn removed() {
    let finished = run_dir::reaper().finish(std::time::Duration::from_secs(60));
    assert_eq!(finished.left, 0);
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn a_listed_path_swapped_for_a_link_to_warden_s_files_is_refused_at_start() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("data/keys")).unwrap();
    std::fs::create_dir_all(root.path().join("shared")).unwrap();
    let s = sandbox(root.path());
    let protected = reach::resolve_all(&s.protected);
    let read = AccessFs::from_read(ABI::V6);
    let shared = root.path().join("shared");
    match Grant::new(&shared, read, true, &protected).open() {
        Ok(Some(_)) => {}
        Err(e) => panic!("{e}"),
        Ok(None) => panic!("a listed directory is opened"),
    }
    // What the load-time check saw is a directory; a server that can write its parent puts
    // a link to the data directory there before it is started again.
    std::fs::remove_dir(&shared).unwrap();
    symlink(root.path().join("data/keys"), &shared).unwrap();
    match Grant::new(&shared, read, true, &protected).open() {
        Err(SandboxError::Reaches {
            path,
            real,
            message,
        }) => {
            assert_eq!(path, shared);
            assert_eq!(
                real,
                std::fs::canonicalize(root.path().join("data/keys")).unwrap()
            );
            assert!(message.contains("Warden's data directory"), "{message}");
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("the swapped link is granted"),
    }
}

#[test]
fn each_process_gets_a_fresh_directory_of_its_own_removed_when_it_ends() {
    let root = tempfile::tempdir().unwrap();
    let s = sandbox(root.path());
    let first = s.run_dir().unwrap();
    let second = s.run_dir().unwrap();
    assert_ne!(first.path(), second.path());
    for run in [&first, &second] {
        assert!(run.path().starts_with(&s.home));
        assert_eq!(mode(run.path()), 0o700);
        assert_eq!(mode(&run.path().join("tmp")), 0o700);
    }
    assert_eq!(mode(&s.home), 0o700);
    std::fs::write(first.path().join("tmp/left"), "x").unwrap();
    let path = first.path().to_path_buf();
    drop(first);
    removed();
    assert!(!path.exists());
    assert!(second.path().exists());
}

#[test]
fn links_planted_in_the_server_s_directory_are_not_followed() {
    let root = tempfile::tempdir().unwrap();
    let victim = root.path().join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = sandbox(root.path());
    // A server of an earlier version, which shared this directory, left `tmp` a link.
    std::fs::create_dir_all(&s.home).unwrap();
    symlink(&victim, s.home.join("tmp")).unwrap();
    let run = s.run_dir().unwrap();
    assert_eq!(mode(&victim), 0o755);
    assert!(!run.path().join("tmp").starts_with(&victim));
    drop(run);
    removed();
    // The server's directory itself a link: nothing is made or changed through it.
    std::fs::remove_file(s.home.join("tmp")).unwrap();
    std::fs::remove_dir(&s.home).unwrap();
    symlink(&victim, &s.home).unwrap();
    match s.run_dir() {
        Err(SandboxError::Home { path, .. }) => assert_eq!(path, s.home),
        other => panic!("{other:?}"),
    }
    assert_eq!(mode(&victim), 0o755);
    assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 0);
}
