//! Release builds of the `warden` binary lay out the functions it runs (start, the request
//! path, the writer threads) side by side, in the order `link-order.txt` names them.
//!
//! The kernel maps a program's code 64 KiB at a time around each page fault, and the few MiB
//! of its 33 MiB of machine code a running Warden executes are spread over nearly every 64 KiB
//! of it: 29 MiB resident under the load harness. Gathered, 8.5 MiB. The file comes from
//! `benches/link-order` (valgrind's callgrind on the release binary); a name that no longer
//! exists only leaves its function where it was, so a stale file costs memory, never
//! correctness.
//!
//! Only LLD reads the file: the linker of `x86_64-unknown-linux-gnu` since Rust 1.90. With
//! another target or linker, or `WARDEN_LINK_ORDER=off`, the binary links as before.
//!
//! It also names the commit the binary is built from (`WARDEN_COMMIT`, for `warden --version`
//! and the `warden_build_info` metric): see [`commit`].

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=link-order.txt");
    println!("cargo:rerun-if-env-changed=WARDEN_LINK_ORDER");
    println!("cargo:rustc-env=WARDEN_COMMIT={}", commit());
    let manifest = env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let order = Path::new(&manifest).join("link-order.txt");
    if applies() && order.is_file() {
        println!(
            "cargo:rustc-link-arg-bin=warden=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bin=warden=-Wl,--no-warn-symbol-ordering");
    }
}

/// A release build for x86-64 Linux (glibc) with Rust's own LLD, and not turned off.
fn applies() -> bool {
    let var = |name: &str| env::var(name).unwrap_or_default();
    let own_linker = env::var_os("RUSTC_LINKER").is_none()
        && !["linker", "link-self-contained", "fuse-ld"]
            .iter()
            .any(|flag| var("CARGO_ENCODED_RUSTFLAGS").contains(flag));
    var("PROFILE") == "release"
        && var("CARGO_CFG_TARGET_ARCH") == "x86_64"
        && var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu"
        && own_linker
        && var("WARDEN_LINK_ORDER") != "off"
}

/// What the binary's sources are, besides the crate's own directory: the connectors it embeds
/// and the workspace's manifest and lock file (relative to the workspace root).
const SOURCES_OUTSIDE: [&str; 3] = ["connectors", "Cargo.toml", "Cargo.lock"];

/// `WARDEN_BUILD_COMMIT` when set and not empty (an image built from a copy without `.git`:
/// git's hash, optionally with `-dirty`); else git's
/// short commit hash, with `-dirty` when the binary's tracked sources differ from it; else
/// `unknown` (no `.git` above the crate, as in a crate tarball, or no git).
///
/// Cargo runs this again only when the commit moves (HEAD, its branch's ref, packed refs) or a
/// source changes (which recompiles the crate anyway): an unchanged tree builds `Fresh`.
fn commit() -> String {
    println!("cargo:rerun-if-env-changed=WARDEN_BUILD_COMMIT");
    if let Ok(given) = env::var("WARDEN_BUILD_COMMIT")
        && !given.is_empty()
    {
        let hash = given.strip_suffix("-dirty").unwrap_or(&given);
        let valid = (7..=40).contains(&hash.len()) && hash.bytes().all(|b| b.is_ascii_hexdigit());
        assert!(
            valid,
            "WARDEN_BUILD_COMMIT={given:?} is not a commit: give git's hash (7 to 40 hex digits), \
             optionally followed by -dirty, e.g. $(git rev-parse --short HEAD)"
        );
        return given;
    }
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let Some(root) = manifest.parent().filter(|r| r.join(".git").exists()) else {
        return "unknown".to_owned();
    };
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let Some(hash) = git(&["rev-parse", "--short", "HEAD"]).filter(|h| !h.is_empty()) else {
        return "unknown".to_owned();
    };
    // The files that move when the commit does (a worktree's HEAD is its own, its branches
    // are the repository's), when they exist: a missing one would make every build run this.
    let mut watched: Vec<PathBuf> = vec![manifest.clone()];
    watched.extend(SOURCES_OUTSIDE.iter().map(|p| root.join(p)));
    let mut git_paths = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        git_paths.push(branch);
    }
    for path in git_paths {
        if let Some(found) = git(&["rev-parse", "--git-path", &path]) {
            watched.push(root.join(found));
        }
    }
    for path in watched.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    let mut status = vec!["status", "--porcelain", "--untracked-files=no", "--"];
    let crate_dir = manifest
        .strip_prefix(root)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let crate_dir = crate_dir.to_string_lossy().into_owned();
    status.push(&crate_dir);
    status.extend(SOURCES_OUTSIDE);
    match git(&status) {
        Some(changes) if changes.is_empty() => hash,
        Some(_) => format!("{hash}-dirty"),
        None => "unknown".to_owned(),
    }
}
