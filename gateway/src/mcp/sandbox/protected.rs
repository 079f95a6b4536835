//! What a sandboxed server must never reach: Warden's data directory (its signing keys, audit
//! log, state database), its configuration file, its policies, its TLS and signing keys and
//! every secret file the configuration reads. Landlock cannot deny a path inside one it
//! allows, so an allowed path that holds one of them (or lies inside one) is refused at load.

use std::path::{Component, Path, PathBuf};

use serde_json::Value;

use super::config::SandboxMode;
use super::system_paths;
use crate::config::Config;

/// One thing of Warden's a server must not reach: what it is and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protected {
    pub what: String,
    pub path: PathBuf,
}

/// Warden's own paths in `config` (read from `file`, whose raw tree `raw` names the secret files
/// of every `{file: PATH}` source).
pub fn protected(config: &Config, file: Option<&Path>, raw: &Value) -> Vec<Protected> {
    let mut out = Vec::new();
    let mut add = |what: &str, path: &Path| {
        out.push(Protected {
            what: what.to_owned(),
            path: path.to_path_buf(),
        })
    };
    add(
        "Warden's data directory (signing keys, audit log, state database)",
        &config.data_dir,
    );
    if let Some(file) = file {
        add("Warden's configuration file", file);
    }
    add("Warden's policy directory", &config.policy.dir);
    if let Some(dir) = &config.policy.shadow_dir {
        add("Warden's shadow policy directory", dir);
    }
    if let Some(dir) = &config.audit.dir {
        add("Warden's audit log directory", dir);
    }
    if let Some(path) = &config.state.sqlite {
        add("Warden's state database", path);
    }
    for (key, tls) in [
        ("listen.tls.key", &config.listen.tls),
        ("listen.admin_tls.key", &config.listen.admin_tls),
        ("egress.tls.key", &config.egress.tls),
    ] {
        if let Some(tls) = tls {
            add(&format!("the TLS private key of {key}"), &tls.key);
        }
    }
    if let Some(path) = &config.identity.warden_issuer.key_file {
        add("Warden's token signing key", path);
    }
    if let Some(path) = &config.audit.signing.key_file {
        add("Warden's audit signing key", path);
    }
    if let Some(path) = &config.egress.intercept.ca_key {
        add("the egress interception CA's private key", path);
    }
    let mut files = Vec::new();
    secret_files(raw, "", &mut files);
    for (key, path) in files {
        add(&format!("the secret file of {key}"), &path);
    }
    out
}

/// Every `{file: PATH}` secret source in `tree` (at key path `at`).
fn secret_files(tree: &Value, at: &str, out: &mut Vec<(String, PathBuf)>) {
    match tree {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match v {
                    Value::String(path) if k == "file" => out.push((at.to_owned(), path.into())),
                    _ => secret_files(v, &key, out),
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                secret_files(v, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// `(key, message)` for every path a sandboxed local server of `config` may reach that holds
/// one of Warden's own, or lies inside one.
pub fn check(config: &Config, file: Option<&Path>, raw: &Value) -> Vec<(String, String)> {
    let servers: Vec<_> = config
        .mcp
        .servers
        .iter()
        .enumerate()
        .filter(|(_, s)| {
            s.command.is_some() && s.sandbox.mode(config.mcp.sandbox.mode) != SandboxMode::Off
        })
        .collect();
    if servers.is_empty() {
        return Vec::new();
    }
    let protected: Vec<(Protected, PathBuf)> = protected(config, file, raw)
        .into_iter()
        .map(|p| {
            let resolved = resolved(&p.path);
            (p, resolved)
        })
        .collect();
    let mut errors = Vec::new();
    let system: Vec<(String, PathBuf)> = system_paths::ALL
        .iter()
        .map(|p| (format!("the system path {p}"), PathBuf::from(p)))
        .collect();
    for (i, s) in servers {
        let key = format!("mcp.servers[{i}].sandbox");
        let key = key.as_str();
        let listed = [("read", &s.sandbox.read), ("write", &s.sandbox.write)]
            .into_iter()
            .flat_map(|(field, paths)| {
                paths
                    .iter()
                    .enumerate()
                    .map(move |(j, p)| (format!("{key}.{field}[{j}]"), p.display().to_string(), p))
            });
        let system = system
            .iter()
            .map(|(what, p)| (key.to_owned(), what.clone(), p));
        for (at, what, allowed) in listed.chain(system) {
            let allowed_resolved = resolved(allowed);
            for (p, inner) in &protected {
                if let Some(m) = conflict(&what, &allowed_resolved, p, inner) {
                    errors.push((at.clone(), m));
                }
            }
        }
    }
    errors
}

/// Why a server allowed `allowed` (described as `what`, resolved) could reach `p` (resolved
/// `inner`), if it could.
fn conflict(what: &str, allowed: &Path, p: &Protected, inner: &Path) -> Option<String> {
    let shown = p.path.display();
    if inner.starts_with(allowed) {
        Some(format!(
            "{what} holds {} ({shown}): the server could read it (Landlock cannot carve a \
             path out of one it allows). List narrower paths beside it, or move it elsewhere; \
             or run the server unsandboxed with sandbox.mode: off",
            p.what
        ))
    } else if allowed.starts_with(inner) {
        Some(format!(
            "{what} is inside {} ({shown}): a server may not reach Warden's own files. Give it \
             a directory of its own",
            p.what
        ))
    } else {
        None
    }
}

/// `path` with its symbolic links resolved when it exists, else made absolute and its `.` and
/// `..` removed as written.
pub fn resolved(path: &Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(path) {
        return real;
    }
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(path)
    };
    let mut out = PathBuf::new();
    for c in absolute.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::parse_partial;

    /// The mistakes of configuration `yaml`, read from `file`.
    fn errors(yaml: &str, file: &Path) -> Vec<String> {
        parse_partial(yaml, Some(file))
            .errors
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_parent_of_the_data_dir_is_refused_naming_what_it_holds() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let file = root.path().join("warden.yaml");
        let yaml = format!(
            "data_dir: {d}\nmcp:\n  servers:\n    - name: fs\n      command: node\n      sandbox:\n        read: [{r}]\n  endpoints: [{{name: e, servers: [fs]}}]\n",
            d = data.display(),
            r = root.path().display(),
        );
        let errors = errors(&yaml, &file);
        let about = |what: &str| {
            errors.iter().any(|e| {
                e.contains("mcp.servers[0].sandbox.read[0]") && e.contains(&format!("holds {what}"))
            })
        };
        assert!(about("Warden's data directory"), "{errors:?}");
        assert!(about("Warden's configuration file"), "{errors:?}");
        // The same listed under write, and a path inside the data directory, are refused too;
        // a server that is not sandboxed is not checked.
        let yaml = format!(
            "data_dir: {d}\nmcp:\n  servers:\n    - name: fs\n      command: node\n      sandbox:\n        write: [{d}/audit]\n    - name: loose\n      command: node\n      sandbox: {{mode: off, read: [/]}}\n  endpoints: [{{name: e, servers: [fs, loose]}}]\n",
            d = data.display(),
        );
        let errors = super::tests::errors(&yaml, &file);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("mcp.servers[0].sandbox.write[0]")
                && errors[0].contains("is inside Warden's data directory"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_secret_file_of_any_source_is_protected() {
        let root = tempfile::tempdir().unwrap();
        let secrets = root.path().join("secrets");
        std::fs::create_dir_all(&secrets).unwrap();
        let yaml = format!(
            "data_dir: {d}/data\nmcp:\n  servers:\n    - name: gh\n      command: node\n      secret_env: {{GH_TOKEN: {{file: {s}/gh}}}}\n      sandbox: {{read: [{s}]}}\n  endpoints: [{{name: e, servers: [gh]}}]\n",
            d = root.path().display(),
            s = secrets.display(),
        );
        let errors = errors(&yaml, &root.path().join("warden.yaml"));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("holds the secret file of mcp.servers[0].secret_env.GH_TOKEN"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_path_beside_warden_s_files_is_accepted() {
        let root = tempfile::tempdir().unwrap();
        let docs = root.path().join("docs");
        let yaml = format!(
            "data_dir: {d}/data\npolicy: {{dir: {d}/policies}}\nmcp:\n  servers:\n    - name: fs\n      command: node\n      sandbox: {{read: [{docs}], write: [{d}/out]}}\n  endpoints: [{{name: e, servers: [fs]}}]\n",
            d = root.path().display(),
            docs = docs.display(),
        );
        assert_eq!(
            errors(&yaml, &root.path().join("etc/warden.yaml")),
            Vec::<String>::new()
        );
    }

    #[test]
    fn resolved_paths_lose_dots_and_follow_links() {
        assert_eq!(resolved(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
        let root = tempfile::tempdir().unwrap();
        let real = root.path().join("real");
        std::fs::create_dir_all(&real).unwrap();
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(resolved(&link), std::fs::canonicalize(&real).unwrap());
    }
}
