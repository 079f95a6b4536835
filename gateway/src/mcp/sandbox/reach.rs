//! Whether a path a server is allowed reaches one of Warden's own (`protected.rs` lists them):
//! the comparison made at load and again at every start, on paths resolved as the kernel will
//! (links followed, `.` and `..` removed, a path not made yet compared as where it will be).

use std::path::{Component, Path, PathBuf};

use super::config::{Guard, Protected};

/// `protected`, each with its path resolved now.
pub fn resolve_all(protected: &[Protected]) -> Vec<(Protected, PathBuf)> {
    protected
        .iter()
        .map(|p| (p.clone(), resolved(&p.path)))
        .collect()
}

/// Why a server allowed `allowed` (described as `what`, resolved; `writes` when it may write
/// there) could reach one of `protected` (each with its resolved path): one message for each.
pub fn reached(
    what: &str,
    allowed: &Path,
    writes: bool,
    protected: &[(Protected, PathBuf)],
) -> Vec<String> {
    protected
        .iter()
        .filter(|(p, _)| writes || p.guard == Guard::Read)
        .filter_map(|(p, inner)| conflict(what, allowed, p, inner))
        .collect()
}

/// Why a server allowed `allowed` (described as `what`, resolved) could reach `p` (resolved
/// `inner`), if it could.
fn conflict(what: &str, allowed: &Path, p: &Protected, inner: &Path) -> Option<String> {
    let shown = p.path.display();
    let could = match p.guard {
        Guard::Read => "read",
        Guard::Write => "write",
    };
    if inner.starts_with(allowed) {
        Some(format!(
            "{what} holds {} ({shown}): the server could {could} it (Landlock cannot carve a \
             path out of one it allows). List narrower paths beside it, or move it elsewhere; \
             or run the server unsandboxed with sandbox.mode: off",
            p.what
        ))
    } else if allowed.starts_with(inner) {
        Some(format!(
            "{what} is inside {} ({shown}): the server could {could} it, and a server may not \
             reach Warden's own files. Give it a directory of its own",
            p.what
        ))
    } else {
        None
    }
}

/// `path` made absolute, its `.` and `..` removed as written, and the symbolic links of the
/// longest part of it that exists resolved (so that a directory not made yet under a linked
/// parent compares as where it will be).
pub fn resolved(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(path)
    };
    if let Ok(real) = std::fs::canonicalize(&absolute) {
        return real;
    }
    let mut plain = PathBuf::new();
    for c in absolute.components() {
        match c {
            Component::ParentDir => {
                plain.pop();
            }
            Component::CurDir => {}
            other => plain.push(other),
        }
    }
    let mut rest = Vec::new();
    let mut existing = plain.as_path();
    while let Some(parent) = existing.parent() {
        if let Some(name) = existing.file_name() {
            rest.push(name.to_owned());
        }
        existing = parent;
        if let Ok(mut real) = std::fs::canonicalize(existing) {
            real.extend(rest.iter().rev());
            return real;
        }
    }
    plain
}
