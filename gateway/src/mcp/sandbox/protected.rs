//! What a sandboxed server must never reach: Warden's data directory (its signing keys, audit
//! log, state database), its configuration file, its policies, its TLS and signing keys (the
//! previous ones too) and every secret file the configuration reads; and what it must never
//! write: what Warden trusts (connector definitions, the CAs of mTLS clients and of identity
//! providers, the keys policy bundles are signed with, the price table). Landlock cannot deny
//! a path inside one it allows, so an allowed path that holds one of them (or lies inside one)
//! is refused at load, and again at every start of the server (`Sandbox::prepare`), against
//! the paths it then really opens: a link swapped in since cannot widen its reach. How a path
//! is compared is `reach.rs`'s.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::config::SandboxMode;
use super::reach::{reached, resolve_all, resolved};
use super::system_paths;
use crate::config::Config;
use crate::listener::config::TlsConfig;

pub use super::config::{Guard, Protected};

/// Warden's own paths in `config` (read from `file`, whose raw tree `raw` names the secret files
/// of every `{file: PATH}` source).
pub fn protected(config: &Config, file: Option<&Path>, raw: &Value) -> Vec<Protected> {
    let mut out = Vec::new();
    let mut add = |what: &str, path: &Path| {
        out.push(Protected {
            what: what.to_owned(),
            path: path.to_path_buf(),
            guard: Guard::Read,
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
    for (key, tls) in tls_sections(config) {
        if let Some(tls) = tls {
            add(&format!("the TLS private key of {key}.key"), &tls.key);
        }
    }
    if let Some(path) = &config.identity.warden_issuer.key_file {
        add("Warden's token signing key", path);
    }
    for (i, k) in config
        .identity
        .warden_issuer
        .previous_keys
        .iter()
        .enumerate()
    {
        add(
            &format!(
                "Warden's previous token signing key (identity.warden_issuer.previous_keys[{i}])"
            ),
            &k.path,
        );
    }
    if let Some(path) = &config.audit.signing.key_file {
        add("Warden's audit signing key", path);
    }
    for (i, k) in config.audit.signing.previous_keys.iter().enumerate() {
        add(
            &format!("Warden's previous audit signing key (audit.signing.previous_keys[{i}])"),
            &k.path,
        );
    }
    // Its default is not in the file's tree, which the `{file:}` scan below reads.
    if let Some(crate::vault::VaultConfig {
        auth: crate::vault::config::VaultAuth::Kubernetes { jwt_path, .. },
        ..
    }) = &config.vault
    {
        add(
            "the service-account token Warden logs in to Vault with (vault.auth.kubernetes.jwt_path)",
            jwt_path,
        );
    }
    if let Some(path) = &config.egress.intercept.ca_key {
        add("the egress interception CA's private key", path);
    }
    let mut files = Vec::new();
    secret_files(raw, "", &mut files);
    for (key, path) in files {
        add(&format!("the secret file of {key}"), &path);
    }
    out.extend(trusted(config));
    out
}

/// Every TLS section of `config` (a listener's), by key.
fn tls_sections(config: &Config) -> [(&'static str, Option<&TlsConfig>); 4] {
    [
        ("listen.tls", config.listen.tls.as_ref()),
        ("listen.admin_tls", config.listen.admin_tls.as_ref()),
        ("egress.tls", config.egress.tls.as_ref()),
        ("console.tls", config.console.tls.as_ref()),
    ]
}

/// What Warden trusts in `config`, which a server may read but must not write: a server that
/// could would forge clients' identities, routes, signed policies or prices.
fn trusted(config: &Config) -> Vec<Protected> {
    let mut out = Vec::new();
    let mut add = |what: String, path: &Path| {
        out.push(Protected {
            what,
            path: path.to_path_buf(),
            guard: Guard::Write,
        })
    };
    if let Some(dir) = &config.connectors_dir {
        add(
            "Warden's connector definitions (connectors_dir)".into(),
            dir,
        );
    }
    for (key, tls) in tls_sections(config) {
        let Some(tls) = tls else { continue };
        add(
            format!("the TLS certificate Warden presents ({key}.cert)"),
            &tls.cert,
        );
        if let Some(ca) = &tls.client_ca {
            add(
                format!("the CA Warden trusts for client certificates ({key}.client_ca)"),
                ca,
            );
        }
    }
    for (i, issuer) in config.identity.issuers.iter().enumerate() {
        if let Some(ca) = &issuer.ca_file {
            add(
                format!(
                    "the CA Warden trusts for an identity provider (identity.issuers[{i}].ca_file)"
                ),
                ca,
            );
        }
    }
    let operators = config.admin.identity.iter().flat_map(|o| o.issuers.iter());
    for (i, issuer) in operators.enumerate() {
        if let Some(ca) = &issuer.ca_file {
            add(
                format!(
                    "the CA Warden trusts for operators' tokens (admin.identity.issuers[{i}].ca_file)"
                ),
                ca,
            );
        }
    }
    if let Some(ca) = config.vault.as_ref().and_then(|v| v.ca_cert.as_ref()) {
        add("the CA Warden trusts for Vault (vault.ca_cert)".into(), ca);
    }
    if let Some(ca) = &config.upstream.ca_file {
        add(
            "the CA Warden trusts for upstreams (upstream.ca_file)".into(),
            ca,
        );
    }
    let intercept = &config.egress.intercept;
    if let Some(ca) = &intercept.ca_cert {
        add(
            "the CA certificate Warden signs intercepted egress with (egress.intercept.ca_cert)"
                .into(),
            ca,
        );
    }
    if let Some(ca) = &intercept.upstream_ca_file {
        add(
            "the CA Warden trusts for intercepted egress (egress.intercept.upstream_ca_file)"
                .into(),
            ca,
        );
    }
    if let Some(ca) = config
        .state
        .postgres
        .as_ref()
        .and_then(|p| p.tls.ca_file.as_ref())
    {
        add(
            "the CA Warden trusts for PostgreSQL (state.postgres.tls.ca_file)".into(),
            ca,
        );
    }
    if let Some(ca) = config.traces.as_ref().and_then(|t| t.ca_file.as_ref()) {
        add(
            "the CA Warden trusts for the trace collector (traces.ca_file)".into(),
            ca,
        );
    }
    for (i, sink) in config.siem.sinks.iter().enumerate() {
        let cas = [
            (
                "splunk_hec.ca_file",
                sink.splunk_hec.as_ref().and_then(|s| s.ca_file.as_ref()),
            ),
            (
                "elasticsearch.ca_file",
                sink.elasticsearch.as_ref().and_then(|s| s.ca_file.as_ref()),
            ),
            (
                "syslog.tls.ca_file",
                sink.syslog
                    .as_ref()
                    .and_then(|s| s.tls.as_ref())
                    .and_then(|t| t.ca_file.as_ref()),
            ),
        ];
        for (key, ca) in cas {
            if let Some(ca) = ca {
                add(
                    format!("the CA Warden trusts for a SIEM sink (siem.sinks[{i}].{key})"),
                    ca,
                );
            }
        }
    }
    for (i, key) in config.policy.bundle.public_keys.iter().enumerate() {
        add(
            format!("a key policy bundles are signed with (policy.bundle.public_keys[{i}])"),
            key,
        );
    }
    if let Some(prices) = &config.budgets.prices {
        add("Warden's price table (budgets.prices)".into(), prices);
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
/// one of `protected` (Warden's own, as [`protected`] lists them), or lies inside one.
pub fn check(config: &Config, protected: &[Protected]) -> Vec<(String, String)> {
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
    let protected = resolve_all(protected);
    let mut errors = Vec::new();
    let system: Vec<(String, PathBuf)> = system_paths::ALL
        .iter()
        .map(|p| (format!("the system path {p}"), PathBuf::from(p)))
        .collect();
    for (i, s) in servers {
        let key = format!("mcp.servers[{i}].sandbox");
        let key = key.as_str();
        let listed = [
            ("read", &s.sandbox.read, false),
            ("write", &s.sandbox.write, true),
        ]
        .into_iter()
        .flat_map(|(field, paths, writes)| {
            paths.iter().enumerate().map(move |(j, p)| {
                (
                    format!("{key}.{field}[{j}]"),
                    p.display().to_string(),
                    p,
                    writes,
                )
            })
        });
        let system = system
            .iter()
            .map(|(what, p)| (key.to_owned(), what.clone(), p, false));
        for (at, what, allowed, writes) in listed.chain(system) {
            for m in reached(&what, &resolved(allowed), writes, &protected) {
                errors.push((at.clone(), m));
            }
        }
    }
    errors
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

    /// The mistakes of a configuration whose one sandboxed server `fs` lists `sandbox`, with
    /// `extra` sections, under `root`, that name this file.
    fn with(root: &Path, sandbox: &str, extra: &str) -> Vec<String> {
        let yaml = format!(
            "data_dir: {d}/data\n{extra}mcp:\n  servers:\n    - name: fs\n      command: node\n      sandbox: {sandbox}\n  endpoints: [{{name: e, servers: [fs]}}]\n",
            d = root.display(),
        );
        errors(&yaml, &root.join("etc/warden.yaml"))
            .into_iter()
            .filter(|e| e.contains("mcp.servers[0].sandbox"))
            .collect()
    }

    #[test]
    fn previous_signing_keys_and_the_vault_token_are_protected() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path().display();
        let extra = format!(
            "identity: {{warden_issuer: {{previous_keys: [{r}/keys/old-token.pem]}}}}\naudit: {{signing: {{previous_keys: [{{path: {r}/keys/old-audit.pem}}]}}}}\n"
        );
        let errors = with(root.path(), &format!("{{read: [{r}/keys]}}"), &extra);
        for what in [
            "identity.warden_issuer.previous_keys[0]",
            "audit.signing.previous_keys[0]",
        ] {
            assert!(
                errors
                    .iter()
                    .any(|e| e.contains(what) && e.contains("could read")),
                "{what}: {errors:?}"
            );
        }
        // The default token path of Kubernetes auth is not written in the file.
        let vault = "vault: {address: https://vault.example:8200, auth: {method: kubernetes, role: warden}}\n";
        let errors = with(root.path(), "{read: [/var/run/secrets]}", vault);
        assert!(
            errors
                .iter()
                .any(|e| e.contains("vault.auth.kubernetes.jwt_path")),
            "{errors:?}"
        );
    }

    #[test]
    fn what_warden_trusts_may_be_read_but_not_written() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path().display();
        let trust = format!("{r}/trust");
        // The price table is read when the configuration is.
        std::fs::create_dir_all(&trust).unwrap();
        std::fs::write(
            format!("{trust}/prices.yaml"),
            "openai: {gpt-4.1: {input: 2, output: 8}}\n",
        )
        .unwrap();
        let extra = format!(
            "connectors_dir: {trust}/connectors\nlisten: {{tls: {{cert: {trust}/tls.crt, key: {r}/key/tls.key, client_ca: {trust}/agents-ca.crt}}}}\npolicy: {{dir: {r}/policies, bundle: {{public_keys: [{trust}/bundle.pub]}}}}\nbudgets: {{prices: {trust}/prices.yaml}}\nupstream: {{ca_file: {trust}/upstream-ca.crt}}\n"
        );
        assert_eq!(
            with(root.path(), &format!("{{read: [{trust}]}}"), &extra),
            Vec::<String>::new()
        );
        let errors = with(root.path(), &format!("{{write: [{trust}]}}"), &extra);
        for what in [
            "connectors_dir",
            "listen.tls.client_ca",
            "policy.bundle.public_keys[0]",
            "budgets.prices",
            "upstream.ca_file",
        ] {
            assert!(
                errors
                    .iter()
                    .any(|e| e.contains(what) && e.contains("could write")),
                "{what}: {errors:?}"
            );
        }
        // A directory inside one (the connectors) may not be written either.
        let errors = with(
            root.path(),
            &format!("{{write: [{trust}/connectors/mine]}}"),
            &extra,
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("is inside Warden's connector definitions")),
            "{errors:?}"
        );
    }

    #[test]
    fn a_path_not_made_yet_under_a_linked_parent_resolves_through_the_link() {
        let root = tempfile::tempdir().unwrap();
        let real = root.path().join("real");
        std::fs::create_dir_all(&real).unwrap();
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(
            resolved(&link.join("data/./new/../x")),
            std::fs::canonicalize(&real).unwrap().join("data/x")
        );
        // So a data directory not made yet, named through the link, is refused when the
        // real parent is listed.
        let yaml = format!(
            "data_dir: {l}/data\nmcp:\n  servers:\n    - name: fs\n      command: node\n      sandbox: {{read: [{real}]}}\n  endpoints: [{{name: e, servers: [fs]}}]\n",
            l = link.display(),
            real = real.display(),
        );
        let errors = errors(&yaml, &root.path().join("etc/warden.yaml"));
        assert!(
            errors
                .iter()
                .any(|e| e.contains("holds Warden's data directory")),
            "{errors:?}"
        );
    }
}
