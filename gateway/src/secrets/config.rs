//! Where upstream credentials come from (`credential:` of a route or an MCP server) and how
//! they are sent (`inject:`).

use serde::Deserialize;
use std::path::PathBuf;

use crate::vault::config::{ENV_KEY, FILE_KEY, SourceShape, source_mapping};

/// Where an upstream credential is read from.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(
    rename_all = "snake_case",
    deny_unknown_fields,
    remote = "CredentialSource"
)]
pub enum CredentialSource {
    /// An environment variable of the Warden process.
    Env(String),
    /// A file whose content (trimmed) is the secret; read again when it changes.
    File(PathBuf),
    /// A secret in Vault (or OpenBao), read when first needed and kept in memory until its
    /// lease or TTL ends (needs the `vault:` section).
    Vault(VaultSource),
}

/// What a credential source is, for a value that is not one.
const SOURCE_SHAPE: SourceShape = SourceShape {
    text: "a secret source: { env: NAME }, { file: PATH } or { vault: { kv: ... } }",
    keys: &[
        ENV_KEY,
        FILE_KEY,
        (
            "vault",
            "a mapping of kv or lease (with mount, version, params and field as needed)",
        ),
    ],
};

/// A source is a mapping. Anything else (most often the secret itself, written where its
/// source goes: `credential: sk-live-...`, or one level in: `{ env: sk-live-... }`) is
/// refused without being quoted, so the mistake never copies the secret into Warden's log,
/// `warden check`'s output or a reload's answer.
impl<'de> Deserialize<'de> for CredentialSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        source_mapping(d, &SOURCE_SHAPE, CredentialSource::deserialize)
    }
}

/// Why a source naming Vault cannot be used: the configuration has no `vault:` section.
pub const NO_VAULT_SECTION: &str =
    "names a Vault secret, but there is no vault: section saying how to reach Vault";

impl CredentialSource {
    /// Whether it is a Vault secret whose path names a principal attribute
    /// (`{principal.owner}`): only a request's credential can have one.
    pub fn names_principal(&self) -> bool {
        matches!(self, CredentialSource::Vault(v) if v.names_principal())
    }

    /// The source's kind, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            CredentialSource::Env(_) => "env",
            CredentialSource::File(_) => "file",
            CredentialSource::Vault(_) => "vault",
        }
    }
}

/// A secret in Vault: a KV v2 secret (`kv`) or a leased dynamic secret (`lease`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct VaultSource {
    /// A KV version 2 secret as `<mount>/<path>` (`secret/agents/{principal.owner}/github`).
    /// May name `{principal.id}`, `{principal.owner}`, `{principal.fleet}`,
    /// `{principal.environment}` and `{principal.issuer}` (encoded to one path segment):
    /// each request then reads the path of its principal, which policy must permit
    /// (`secret:use` on `Secret::"<path>"`).
    #[serde(default)]
    pub kv: Option<String>,
    /// The KV mount, when it is not the first segment of `kv` (a mount with a `/` in it);
    /// `kv` is then the path below it.
    #[serde(default)]
    pub mount: Option<String>,
    /// A KV version to read instead of the latest.
    #[serde(default)]
    pub version: Option<u64>,
    /// A path that answers with a leased secret (`database/creds/readonly`,
    /// `aws/creds/deploy`): read once, renewed while in use, revoked when idle and at
    /// shutdown. May name principal attributes as `kv` does.
    #[serde(default)]
    pub lease: Option<String>,
    /// With `lease`: the parameters of a write that issues the secret, for engines that
    /// issue on a write rather than a read (`pki/issue/<role>` with `{ common_name: ... }`).
    /// Without them the path is read.
    #[serde(default)]
    pub params: Option<std::collections::BTreeMap<String, serde_json::Value>>,
    /// The field of the secret that `{secret}` is. Default: the secret's only field; a
    /// secret with several fields needs `field`, or templates that name them
    /// (`{secret.username}`).
    #[serde(default)]
    pub field: Option<String>,
}

impl VaultSource {
    /// Whether its path names a principal attribute (`{principal.owner}`).
    pub fn names_principal(&self) -> bool {
        self.kv
            .iter()
            .chain(&self.lease)
            .any(|p| p.contains("{principal."))
    }
}

/// How a route's (or MCP server's) credential is sent, replacing its connector's way:
/// one of `header`, `query` and `basic`; or only `redact`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct InjectConfig {
    /// A request header (`authorization`, `x-api-key`).
    #[serde(default)]
    pub header: Option<String>,
    /// A query parameter (`api_key`), added to every upstream request's URL.
    #[serde(default)]
    pub query: Option<String>,
    /// The header's or parameter's value: `{secret}`, `{secret_base64}` and
    /// `{secret.<field>}` are put in. Default `{secret}` (for `header: authorization`,
    /// `Bearer {secret}`).
    #[serde(default)]
    pub format: Option<String>,
    /// HTTP Basic authentication from two templates (`{secret.username}`,
    /// `{secret.password}` of a database lease).
    #[serde(default)]
    pub basic: Option<BasicAuth>,
    /// Replace the secret with `[REDACTED]` wherever an upstream response echoes it, before
    /// the agent sees it. Default `true`.
    #[serde(default)]
    pub redact: Option<bool>,
}

/// The two halves of HTTP Basic authentication.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    pub password: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &str = "sk-live-written-in-place-0123456789";

    #[test]
    fn a_secret_written_where_its_source_goes_is_refused_without_being_quoted() {
        for bad in [
            json!(SECRET),
            json!(1234567890123_u64),
            json!([SECRET]),
            json!(true),
        ] {
            let e = serde_json::from_value::<CredentialSource>(bad.clone())
                .expect_err("not a source")
                .to_string();
            assert!(e.contains("{ env: NAME }"), "{e}");
            assert!(!e.contains(SECRET) && !e.contains("1234567890123"), "{e}");
        }
        // Through the configuration as `warden check` and a reload read it.
        let text = format!(
            "routes:\n  - {{ prefix: /o, connector: openai, credential: {SECRET} }}\nvault:\n  address: https://vault.example:8200\n  auth: {{ method: token, token: {SECRET} }}\n"
        );
        let errors = crate::config::load::parse(&text, None)
            .expect_err("refused")
            .to_string();
        assert!(errors.contains("routes[0].credential"), "{errors}");
        assert!(!errors.contains(SECRET), "{errors}");
    }

    #[test]
    fn a_source_is_one_of_env_file_and_vault() {
        assert_eq!(
            serde_json::from_value::<CredentialSource>(json!({"env": "OPENAI_KEY"})).unwrap(),
            CredentialSource::Env("OPENAI_KEY".into())
        );
        let vault: CredentialSource =
            serde_json::from_value(json!({"vault": {"kv": "secret/openai", "field": "k"}}))
                .unwrap();
        assert!(matches!(vault, CredentialSource::Vault(v) if v.field.as_deref() == Some("k")));
        for bad in [
            json!({"env": "A", "file": "/b"}),
            json!({}),
            json!({"value": "x"}),
            json!({"vault": {"kv": "secret/a", "path": "x"}}),
        ] {
            assert!(
                serde_json::from_value::<CredentialSource>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_name_or_path_yaml_1_1_reads_as_a_boolean_or_a_number_is_read_as_written() {
        let route = |source: &str| {
            let text =
                format!("routes:\n  - {{ prefix: /o, connector: openai, credential: {source} }}\n");
            crate::config::load::parse(&text, None).map(|c| c.routes[0].credential.clone())
        };
        for (yaml, want) in [
            ("{ env: Y }", CredentialSource::Env("Y".into())),
            ("{ env: NO }", CredentialSource::Env("NO".into())),
            ("{ env: on }", CredentialSource::Env("on".into())),
            ("{ env: \"Y\" }", CredentialSource::Env("Y".into())),
            ("{ file: 0600 }", CredentialSource::File("0600".into())),
            ("{ file: 1e3 }", CredentialSource::File("1e3".into())),
            ("{ file: .5 }", CredentialSource::File(".5".into())),
            // YAML 1.2's non-finite numbers, and one too large for a float.
            ("{ file: .inf }", CredentialSource::File(".inf".into())),
            ("{ file: -.Inf }", CredentialSource::File("-.Inf".into())),
            ("{ file: .NaN }", CredentialSource::File(".NaN".into())),
            ("{ file: 1e999 }", CredentialSource::File("1e999".into())),
        ] {
            assert_eq!(route(yaml).expect(yaml), Some(want), "{yaml}");
        }
        // Vault's login secrets, in the same file.
        let text = "vault:\n  address: https://vault.example:8200\n  auth: { method: token, token: { env: NO } }\n";
        let vault = crate::config::load::parse(text, None)
            .unwrap()
            .vault
            .unwrap();
        assert_eq!(
            vault.auth,
            crate::vault::config::VaultAuth::Token {
                token: crate::vault::config::BootstrapSecret::Env("NO".into())
            }
        );
        // Read by serde-saphyr straight into the type, as sections' own tests do.
        let direct: CredentialSource = serde_saphyr::from_str("{ file: 0600 }").unwrap();
        assert_eq!(direct, CredentialSource::File("0600".into()));
        let direct: CredentialSource = serde_saphyr::from_str("{ env: Y }").unwrap();
        assert_eq!(direct, CredentialSource::Env("Y".into()));

        // Read as written, `1e3`, `1` and `.nan` are no variable's names: refused as such,
        // unquoted.
        for yaml in ["{ env: 1e3 }", "{ env: 1 }", "{ env: .nan }"] {
            let e = route(yaml).expect_err(yaml).to_string();
            assert!(
                e.contains(
                    "routes[0].credential: env: expected the name of an environment variable"
                ) && e.contains("found a string that is not one"),
                "{yaml}: {e}"
            );
        }
        // Null is no name: refused, saying what was found and what to write.
        for yaml in ["{ env: ~ }", "{ env: null }", "{ env: }", "{ file: ~ }"] {
            let e = route(yaml).expect_err(yaml).to_string();
            assert!(
                e.contains("expected the") && e.contains("found nothing (`~`, `null` or no value)"),
                "{yaml}: {e}"
            );
        }
        let e = serde_saphyr::from_str::<CredentialSource>("{ env: ~ }")
            .unwrap_err()
            .to_string();
        assert!(e.contains("found nothing"), "{e}");
    }

    #[test]
    fn a_secret_written_one_level_inside_a_source_is_refused_without_being_quoted() {
        for (bad, names) in [
            (
                json!({"vault": SECRET}),
                "vault: expected a mapping of kv or lease",
            ),
            (
                json!({SECRET: null}),
                "whose key is none of env, file, vault",
            ),
            (
                json!({"env": SECRET}),
                "env: expected the name of an environment variable",
            ),
            (json!({"env": "OPENAI KEY"}), "env: expected the name"),
            (json!({"env": "1KEY"}), "env: expected the name"),
            (json!({"env": ""}), "env: expected the name"),
            // Not text: refused inside the key, which a reader tracking paths names.
            (
                json!({"env": 1234567890123_u64}),
                "expected the name of an environment variable",
            ),
            (
                json!({"file": [SECRET]}),
                "expected the path of a file, found something that is not text",
            ),
            (
                json!({"vault": {"kv": "secret/a", "version": SECRET}}),
                "vault: expected",
            ),
            (
                json!({"vault": {"kv": "secret/a", SECRET: 1}}),
                "vault: expected",
            ),
            // A key that is none of Vault's: the keys it takes are named, the one found not.
            (json!({"vault": {SECRET: 1}}), "whose key is none of kv"),
        ] {
            let e = serde_json::from_value::<CredentialSource>(bad.clone())
                .expect_err("not a source")
                .to_string();
            assert!(e.contains(names), "{bad}: {e}");
            assert!(e.contains("not shown"), "{bad}: {e}");
            for quoted in [SECRET, "OPENAI KEY", "1KEY", "1234567890123"] {
                assert!(!e.contains(quoted), "{bad}: {e}");
            }
        }
        for name in ["OPENAI_KEY", "_K", "a1"] {
            assert_eq!(
                serde_json::from_value::<CredentialSource>(json!({ "env": name })).unwrap(),
                CredentialSource::Env(name.into())
            );
        }
        // Through the configuration, and for Vault's own login secrets.
        let text = format!(
            "routes:\n  - {{ prefix: /o, connector: openai, credential: {{ env: {SECRET} }} }}\nvault:\n  address: https://vault.example:8200\n  auth: {{ method: token, token: {{ file: [{SECRET}] }} }}\n"
        );
        let errors = crate::config::load::parse(&text, None)
            .expect_err("refused")
            .to_string();
        assert!(errors.contains("routes[0].credential"), "{errors}");
        assert!(!errors.contains(SECRET), "{errors}");
        let e = serde_json::from_value::<crate::vault::config::BootstrapSecret>(
            json!({ "env": SECRET }),
        )
        .expect_err("not a source")
        .to_string();
        assert!(e.contains("env: expected the name"), "{e}");
        assert!(!e.contains(SECRET), "{e}");
    }

    #[test]
    fn a_misspelt_source_key_is_told_the_key_it_meant_without_being_quoted() {
        for (bad, meant) in [
            (
                json!({"enf": "OPENAI_KEY"}),
                "none of env, file, vault (did you mean `env`?)",
            ),
            (json!({"Env": "OPENAI_KEY"}), "(did you mean `env`?)"),
            (json!({"fiel": "/k"}), "(did you mean `file`?)"),
            (
                json!({"valut": {"kv": "secret/a"}}),
                "(did you mean `vault`?)",
            ),
            (
                json!({"vault": {"kv": "secret/a", "feild": "k"}}),
                "vault: expected a mapping of kv or lease (with mount, version, params and field \
                 as needed), found a mapping whose key is none of kv, mount, version, lease, \
                 params, field (did you mean `field`?)",
            ),
            (
                json!({"vault": {"kv": "secret/a", "verison": 2}}),
                "(did you mean `version`?)",
            ),
            (
                json!({"vault": {"lese": "database/creds/ro"}}),
                "(did you mean `lease`?)",
            ),
        ] {
            let e = serde_json::from_value::<CredentialSource>(bad.clone())
                .expect_err("not a source")
                .to_string();
            assert!(e.contains(meant), "{bad}: {e}");
            assert!(e.contains("the key is not shown"), "{bad}: {e}");
            for written in ["enf", "Env", "fiel", "valut", "feild", "verison", "lese"] {
                assert!(!e.contains(&format!("`{written}`")), "{bad}: {e}");
            }
        }
        // A secret written as the key is like none of them: no guess, and never quoted.
        for bad in [json!({SECRET: null}), json!({"vault": {SECRET: 1}})] {
            let e = serde_json::from_value::<CredentialSource>(bad.clone())
                .expect_err("not a source")
                .to_string();
            assert!(
                !e.contains("did you mean") && !e.contains(SECRET),
                "{bad}: {e}"
            );
        }
        // Through the configuration: where, what, and the key meant.
        let text =
            "routes:\n  - { prefix: /o, connector: openai, credential: { enf: OPENAI_KEY } }\n";
        let errors = crate::config::load::parse(text, Some(std::path::Path::new("w.yaml")))
            .expect_err("refused")
            .to_string();
        assert!(
            errors.contains("w.yaml:2: routes[0].credential: expected a secret source")
                && errors.contains("(did you mean `env`?)"),
            "{errors}"
        );
    }

    #[test]
    fn a_source_s_error_names_its_key_once() {
        let route = |source: &str| {
            let text =
                format!("routes:\n  - {{ prefix: /o, connector: openai, credential: {source} }}\n");
            crate::config::load::parse(&text, None)
                .expect_err(source)
                .to_string()
        };
        for (source, key) in [
            ("{ env: [1] }", "env"),
            ("{ file: [a] }", "file"),
            ("{ file: { file: x } }", "file"),
            ("{ env: 1KEY }", "env"),
            ("{ env: ~ }", "env"),
        ] {
            let e = route(source);
            assert_eq!(e.matches(&format!("{key}:")).count(), 1, "{source}: {e}");
            assert!(
                e.contains(&format!("routes[0].credential.{key}: expected"))
                    || e.contains(&format!("routes[0].credential: {key}: expected")),
                "{source}: {e}"
            );
        }
    }

    #[test]
    fn a_credential_file_that_cannot_be_read_is_named_unless_its_path_may_be_the_secret() {
        use crate::secrets::credential::CredentialError;
        use std::io::{Error, ErrorKind};
        let unreadable = |path: &str, kind: ErrorKind| {
            CredentialError::file(std::path::Path::new(path), Some(&Error::from(kind))).to_string()
        };
        let dir = tempfile::tempdir().unwrap();
        let in_dir = dir.path().join("openai.key");
        let in_dir = in_dir.to_str().unwrap();
        // A missing file in a directory that exists (tests run in the package's directory).
        for path in [in_dir, "./openai.key", "../openai"] {
            let e = unreadable(path, ErrorKind::NotFound);
            assert!(e.contains(path), "{e}");
        }
        // A file that is there but cannot be read is a path, wherever it is.
        for path in ["/etc/warden/openai.key", "/openai.key", "./keys/openai"] {
            let e = unreadable(path, ErrorKind::PermissionDenied);
            assert!(e.contains(path), "{e}");
        }
        let e = unreadable(SECRET, ErrorKind::PermissionDenied);
        assert!(!e.contains(SECRET), "{e}");
        assert!(e.contains("not shown") && e.contains("./PATH"), "{e}");
        // A base64 key may start with `/`: a missing file at `/`, or in a directory that does
        // not exist, is not shown.
        for key in [
            "/q3Zf9kXW0b1T0sH7nJcYkq2r8mPz4vLx6aB5eD1uC0s",
            "/q3Zf9kXW0b1T0sH7n/Jcq2r8mPz4vLx6aB5eD1uC0s",
            "./q3Zf9kXW0b1T0sH7n/Jcq2r8mPz4vLx6aB5eD1uC0s",
        ] {
            let e = unreadable(key, ErrorKind::NotFound);
            assert!(!e.contains("q3Zf"), "{e}");
            assert!(
                e.contains("not shown") && e.contains("may be the secret"),
                "{e}"
            );
        }
        // Read but empty: the file exists, so its path is shown.
        let e = CredentialError::file(std::path::Path::new(in_dir), None).to_string();
        assert!(e.contains(in_dir) && e.contains("empty"), "{e}");
    }
}
