//! Paths as a proposed call names them, made absolute and normalised lexically (`.` and `..`
//! resolved without touching any file system: the files are on the agent's machine), and
//! whether they stay inside the agent's workspace.

/// The agent's directories, against which relative paths and `~` are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    /// The workspace root (absolute, normalised).
    pub root: String,
    /// The agent's home directory, for `~` (absolute, normalised).
    pub home: String,
}

/// A path read against a workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// An absolute, normalised path.
    Known(String),
    /// A path that depends on what only the agent's shell knows (`$HOME/x`, `~user`, a
    /// directory after `cd -`): never taken as inside the workspace.
    Unknown(String),
}

impl Workspace {
    /// `path` as an absolute, normalised path, relative ones read from `cwd` (a directory as
    /// written, `None` for the workspace root, `Some("")` when unknown).
    pub fn resolve(&self, path: &str, cwd: Option<&str>) -> Resolved {
        if path.contains('$') || path.contains('`') {
            return Resolved::Unknown(path.to_owned());
        }
        let joined = if let Some(rest) = path.strip_prefix('~') {
            if !(rest.is_empty() || rest.starts_with('/')) {
                return Resolved::Unknown(path.to_owned());
            }
            format!("{}{rest}", self.home)
        } else if path.starts_with('/') {
            path.to_owned()
        } else {
            let base = match cwd {
                None => self.root.clone(),
                Some("") => return Resolved::Unknown(path.to_owned()),
                Some(dir) => match self.resolve(dir, None) {
                    Resolved::Known(dir) => dir,
                    Resolved::Unknown(_) => return Resolved::Unknown(path.to_owned()),
                },
            };
            format!("{base}/{path}")
        };
        Resolved::Known(normalise(&joined))
    }

    /// Whether `path` is the workspace root or below it.
    pub fn contains(&self, path: &Resolved) -> bool {
        match path {
            Resolved::Known(p) => {
                p == &self.root
                    || (p.starts_with(&self.root)
                        && (self.root == "/" || p.as_bytes().get(self.root.len()) == Some(&b'/')))
            }
            Resolved::Unknown(_) => false,
        }
    }
}

/// An absolute path with `.`, `..` and repeated slashes resolved lexically (`..` above the
/// root stays at the root).
pub fn normalise(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    let mut out = String::with_capacity(path.len() + 1);
    for p in &parts {
        out.push('/');
        out.push_str(p);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

impl Resolved {
    /// The path as policy sees it.
    pub fn as_str(&self) -> &str {
        match self {
            Resolved::Known(p) | Resolved::Unknown(p) => p,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws() -> Workspace {
        Workspace {
            root: "/home/node/.openclaw/workspace".into(),
            home: "/home/node".into(),
        }
    }

    #[test]
    fn paths_are_made_absolute_and_dot_dots_resolved_lexically() {
        let w = ws();
        let cases = [
            (
                "src/main.rs",
                None,
                "/home/node/.openclaw/workspace/src/main.rs",
            ),
            ("./a/../b", None, "/home/node/.openclaw/workspace/b"),
            ("../../.ssh/id_rsa", None, "/home/node/.ssh/id_rsa"),
            ("/etc//passwd", None, "/etc/passwd"),
            ("/../../etc", None, "/etc"),
            ("~/.bashrc", None, "/home/node/.bashrc"),
            ("~", None, "/home/node"),
            ("x", Some("/tmp"), "/tmp/x"),
            ("x", Some("sub/../.."), "/home/node/.openclaw/x"),
        ];
        for (path, cwd, expected) in cases {
            assert_eq!(
                w.resolve(path, cwd),
                Resolved::Known(expected.into()),
                "{path} from {cwd:?}"
            );
        }
    }

    #[test]
    fn the_workspace_holds_only_what_is_below_its_root() {
        let w = ws();
        let inside = |p: &str| w.contains(&w.resolve(p, None));
        assert!(inside("."));
        assert!(inside("a/b/c"));
        assert!(inside("/home/node/.openclaw/workspace/x"));
        assert!(!inside("/home/node/.openclaw/workspace-evil/x"));
        assert!(!inside("../x"));
        assert!(!inside("/"));
        assert!(!inside("$HOME/x"));
        assert!(!inside("~other/x"));
        assert!(!w.contains(&w.resolve("x", Some(""))));
    }
}
