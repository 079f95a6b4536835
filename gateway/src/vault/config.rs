//! `vault:` how Warden reaches Vault (or OpenBao) and logs in to it.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The `vault:` section. Without it, no source may name Vault.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// Base address, e.g. `https://vault.internal:8200`.
    pub address: String,
    /// Namespace (Vault Enterprise, OpenBao), sent as `X-Vault-Namespace` on every call.
    #[serde(default)]
    pub namespace: Option<String>,
    /// How Warden logs in.
    pub auth: VaultAuth,
    /// PEM file of the CA that signed Vault's certificate, when it is not in the system's
    /// trust store.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// Time limit of one call to Vault.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// How long before its expiry a token or lease is renewed, and before which a cached
    /// secret is fetched again. A fraction of a short TTL is used instead when this is more
    /// than a third of it.
    #[serde(default = "default_margin", with = "humantime_serde")]
    pub renew_margin: Duration,
    /// How long a KV secret is used before it is read again (KV secrets have no lease): a
    /// rotated secret is in use within this time. While Vault is unreachable, a cached KV
    /// secret serves until this time is up, then requests fail closed.
    #[serde(default = "default_kv_ttl", with = "humantime_serde")]
    pub kv_ttl: Duration,
    /// A secret no request used for this long is dropped from memory, and its lease
    /// revoked.
    #[serde(default = "default_idle", with = "humantime_serde")]
    pub idle: Duration,
}

impl VaultConfig {
    /// Returns `(key, message)` for every mistake: `address` must be `https`, or plain `http`
    /// only to a loopback host, since Warden sends its Vault token and reads secrets there.
    pub fn validate(&self) -> Vec<(String, String)> {
        match crate::config::url::secure_url(&self.address) {
            Ok(_) => Vec::new(),
            Err(problem) => vec![(
                "vault.address".to_owned(),
                format!(
                    "{problem}: Warden sends its Vault token there and reads secrets back; give \
                     the https address (with vault.ca_cert for a private CA)"
                ),
            )],
        }
    }
}

fn default_kv_ttl() -> Duration {
    Duration::from_secs(300)
}

fn default_idle() -> Duration {
    Duration::from_secs(600)
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_margin() -> Duration {
    Duration::from_secs(60)
}

/// How Warden logs in to Vault.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum VaultAuth {
    /// A token given to Warden (renewed while renewable; a new one cannot be obtained, so
    /// give a periodic or long-lived token).
    Token {
        /// Where the token is read from.
        token: BootstrapSecret,
    },
    /// AppRole: a role id and a secret id.
    Approle {
        /// Mount path of the AppRole auth method.
        #[serde(default = "approle_mount")]
        mount: String,
        /// The role id (not a secret).
        role_id: String,
        /// Where the secret id is read from.
        secret_id: BootstrapSecret,
    },
    /// Kubernetes: the pod's service-account token.
    Kubernetes {
        /// Mount path of the Kubernetes auth method.
        #[serde(default = "kubernetes_mount")]
        mount: String,
        /// The Vault role bound to Warden's service account.
        role: String,
        /// The service-account token file.
        #[serde(default = "service_account_token")]
        jwt_path: PathBuf,
    },
    /// JWT/OIDC: a JWT from an identity provider Vault trusts.
    Jwt {
        /// Mount path of the JWT auth method.
        #[serde(default = "jwt_mount")]
        mount: String,
        /// The Vault role; the method's default role when absent.
        #[serde(default)]
        role: Option<String>,
        /// Where the JWT is read from (read again at every login, so a rotated file works).
        jwt: BootstrapSecret,
    },
}

impl VaultAuth {
    /// The method's name, for logs and errors.
    pub fn method(&self) -> &'static str {
        match self {
            VaultAuth::Token { .. } => "token",
            VaultAuth::Approle { .. } => "approle",
            VaultAuth::Kubernetes { .. } => "kubernetes",
            VaultAuth::Jwt { .. } => "jwt",
        }
    }
}

fn approle_mount() -> String {
    "approle".into()
}

fn kubernetes_mount() -> String {
    "kubernetes".into()
}

fn jwt_mount() -> String {
    "jwt".into()
}

fn service_account_token() -> PathBuf {
    "/var/run/secrets/kubernetes.io/serviceaccount/token".into()
}

/// Where one of the secrets Warden needs before it can reach Vault comes from.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(
    rename_all = "snake_case",
    deny_unknown_fields,
    remote = "BootstrapSecret"
)]
pub enum BootstrapSecret {
    /// An environment variable of the Warden process.
    Env(String),
    /// A file whose content (trimmed) is the secret.
    File(PathBuf),
}

/// What a bootstrap secret's source is, for a value that is not one.
const BOOTSTRAP_SHAPE: SourceShape = SourceShape {
    text: "a secret source: { env: NAME } or { file: PATH }",
    keys: &[ENV_KEY, FILE_KEY],
};

/// The `env` key of a secret source and what its value is.
pub const ENV_KEY: (&str, &str) = (
    "env",
    "the name of an environment variable (letters, digits and _, not starting with a digit)",
);

/// The `file` key of a secret source and what its value is.
pub const FILE_KEY: (&str, &str) = ("file", "the path of a file");

/// What a secret source is: in words, for a value that is not one, and its keys, each with
/// what its value is.
pub struct SourceShape {
    pub text: &'static str,
    pub keys: &'static [(&'static str, &'static str)],
}

/// Refused without being quoted when it is not a source (see [`source_mapping`]).
impl<'de> Deserialize<'de> for BootstrapSecret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        source_mapping(d, &BOOTSTRAP_SHAPE, BootstrapSecret::deserialize)
    }
}

/// Reads a secret source (`{ env: NAME }`, `{ file: PATH }`, `{ vault: ... }`): a mapping of
/// one of `shape`'s keys, which `read` turns into the source. Anything else (most often the
/// secret itself, written where its source goes: `token: hvs.CAES...`, or one level in:
/// `{ env: sk-live-... }`, `{ vault: sk-live-... }`, `{ sk-live-...: }`) is refused naming
/// only the key (one of `shape`'s) and the type of what was found: the mistake must not copy
/// the secret into Warden's log, `warden check`'s output or a reload's answer. An `env` that
/// is not an environment variable's name is refused so, rather than logged at start as a
/// variable that is not set.
pub fn source_mapping<'de, D, T>(
    d: D,
    shape: &'static SourceShape,
    read: fn(serde_json::Value) -> Result<T, serde_json::Error>,
) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::de::{Error, MapAccess, SeqAccess, Visitor};

    struct Source<T> {
        shape: &'static SourceShape,
        read: fn(serde_json::Value) -> Result<T, serde_json::Error>,
    }

    /// Why a value found is not shown.
    const NOT_SHOWN: &str = "not shown: it may be the secret itself; keep secrets out of the \
                             configuration and name where Warden reads them";

    impl<T> Source<T> {
        fn refuse<E: Error>(&self, what: &str) -> E {
            E::custom(format!(
                "expected {}, found {what} ({NOT_SHOWN})",
                self.shape.text
            ))
        }
    }

    impl<'de, T> Visitor<'de> for Source<T> {
        type Value = T;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.shape.text)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
            let one_key = || {
                A::Error::custom(format!(
                    "expected {}: exactly one of its keys",
                    self.shape.text
                ))
            };
            let written = map
                .next_key::<String>()
                .map_err(|_| self.refuse::<A::Error>("a mapping that is not one"))?
                .ok_or_else(one_key)?;
            let Some(&(key, expected)) = self.shape.keys.iter().find(|(k, _)| *k == written) else {
                let keys: Vec<&str> = self.shape.keys.iter().map(|(k, _)| *k).collect();
                // Only the known key is named: what was written may be the secret.
                let guess = crate::config::suggest::did_you_mean(&written, keys.iter().copied());
                return Err(A::Error::custom(format!(
                    "expected {}, found a mapping whose key is none of {}{guess} (the key is \
                     {NOT_SHOWN})",
                    self.shape.text,
                    keys.join(", ")
                )));
            };
            let wrong = |found: &str| {
                A::Error::custom(format!(
                    "{key}: expected {expected}, found {found} ({NOT_SHOWN})"
                ))
            };
            // A value that fails to read fails inside the key, where a reader that tracks
            // paths (the configuration's) places the error: the message does not name the
            // key again.
            let unreadable = |found: &str| {
                A::Error::custom(format!("expected {expected}, found {found} ({NOT_SHOWN})"))
            };
            // A name or a path is asked for as text: as written, also where YAML 1.1 reads
            // a boolean or a number (`env: Y`, `file: 0600`), which the configuration file's
            // reader keeps (`config/yaml.rs`) and serde-saphyr hands a string target as is.
            let value = if key == ENV_KEY.0 || key == FILE_KEY.0 {
                match map.next_value::<Option<String>>() {
                    Ok(Some(text)) => serde_json::Value::String(text),
                    Ok(None) => {
                        return Err(A::Error::custom(format!(
                            "{key}: expected {expected}, found nothing (`~`, `null` or no value)"
                        )));
                    }
                    Err(_) => return Err(unreadable("something that is not text")),
                }
            } else {
                map.next_value::<serde_json::Value>()
                    .map_err(|_| unreadable("a value that is not one"))?
            };
            if map
                .next_key::<serde::de::IgnoredAny>()
                .map_err(|_| one_key())?
                .is_some()
            {
                return Err(one_key());
            }
            if key == ENV_KEY.0
                && let Some(name) = value.as_str()
                && !is_env_name(name)
            {
                return Err(wrong("a string that is not one"));
            }
            let found = kind(&value);
            let mut object = serde_json::Map::with_capacity(1);
            object.insert(key.to_owned(), value);
            (self.read)(serde_json::Value::Object(object)).map_err(|e| match accepted_keys(&e) {
                Some((keys, guess)) => A::Error::custom(format!(
                    "{key}: expected {expected}, found a mapping whose key is none of \
                     {keys}{guess} (the key is {NOT_SHOWN})"
                )),
                None => wrong(found),
            })
        }

        fn visit_str<E: Error>(self, _: &str) -> Result<T, E> {
            Err(self.refuse("a string"))
        }

        fn visit_bool<E: Error>(self, _: bool) -> Result<T, E> {
            Err(self.refuse("a boolean"))
        }

        fn visit_i64<E: Error>(self, _: i64) -> Result<T, E> {
            Err(self.refuse("a number"))
        }

        fn visit_u64<E: Error>(self, _: u64) -> Result<T, E> {
            Err(self.refuse("a number"))
        }

        fn visit_f64<E: Error>(self, _: f64) -> Result<T, E> {
            Err(self.refuse("a number"))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<T, A::Error> {
            Err(self.refuse("a list"))
        }

        fn visit_unit<E: Error>(self) -> Result<T, E> {
            Err(self.refuse("nothing"))
        }
    }

    d.deserialize_any(Source { shape, read })
}

/// The keys that serde's "unknown field" (or "unknown variant") error says are accepted: the
/// code's own names, without the unknown key it quotes (that key may be the secret itself),
/// and " (did you mean `k`?)" when one of them is close to that key
/// ([`crate::config::suggest::did_you_mean`], which names only the known key).
fn accepted_keys(e: &serde_json::Error) -> Option<(String, String)> {
    let text = e.to_string();
    let rest = text
        .strip_prefix("unknown field `")
        .or_else(|| text.strip_prefix("unknown variant `"))?;
    let (written, list) = rest.rsplit_once("`, expected ")?;
    let list = list.split(" at line ").next().unwrap_or(list);
    let list = list.trim_start_matches("one of ").replace('`', "");
    let keys = list.split(", ").flat_map(|k| k.split(" or "));
    let guess = crate::config::suggest::did_you_mean(written, keys);
    Some((list, guess))
}

/// What a configuration value is, in words, without its content.
fn kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "nothing",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a mapping that is not one",
    }
}

/// Whether `name` is an environment variable's name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A secret file's path as messages and logs show it, given what reading it gave (`None`: it
/// was read). A secret written where its file's path goes must not be shown, so a path is
/// shown only when it starts with `/` or `.` (any other, `sk-live-...`, may be the secret;
/// a path relative to the working directory is written `./PATH`) and, if there is no such
/// file, its directory exists and is not `/` itself: a base64 key or token may start with `/`
/// (`/q3Zf...`), and one that has a `/` further in names a directory that does not exist.
/// What is not shown is a sentence saying why; the caller names the configuration key.
pub fn shown_path<'a>(
    path: &'a std::path::Path,
    read: Option<&std::io::Error>,
) -> std::borrow::Cow<'a, str> {
    let text = path.to_string_lossy();
    if !(text.starts_with('/') || text.starts_with('.')) {
        return std::borrow::Cow::Borrowed(
            "(a relative path not starting with ./, not shown: it may be the secret itself; \
             write it as ./PATH or /PATH)",
        );
    }
    let missing = read.is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound);
    let in_a_directory = path.parent().is_some_and(|dir| {
        !dir.as_os_str().is_empty() && dir != std::path::Path::new("/") && dir.is_dir()
    });
    if missing && !in_a_directory {
        return std::borrow::Cow::Borrowed(
            "(path not shown: neither the file nor its directory exists, or it is in /, so \
             it may be the secret itself written where its path goes)",
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_address(address: &str) -> VaultConfig {
        VaultConfig {
            address: address.to_owned(),
            namespace: None,
            auth: VaultAuth::Token {
                token: BootstrapSecret::Env("VAULT_TOKEN".into()),
            },
            ca_cert: None,
            timeout: default_timeout(),
            renew_margin: default_margin(),
            kv_ttl: default_kv_ttl(),
            idle: default_idle(),
        }
    }

    #[test]
    fn a_misspelt_key_of_a_login_secret_is_told_the_key_it_meant() {
        let e = serde_json::from_value::<BootstrapSecret>(serde_json::json!({"fiel": "/t"}))
            .expect_err("not a source")
            .to_string();
        assert!(
            e.contains("found a mapping whose key is none of env, file (did you mean `file`?)"),
            "{e}"
        );
        assert!(!e.contains("`fiel`"), "{e}");
        // Vault is no source of Vault's own login secrets: nothing close to suggest.
        let e = serde_json::from_value::<BootstrapSecret>(serde_json::json!({"vault": {}}))
            .expect_err("not a source")
            .to_string();
        assert!(!e.contains("did you mean"), "{e}");
        // As the configuration reads it, located.
        let text = "vault:\n  address: https://vault.example:8200\n  auth: { method: token, token: { evn: VAULT_TOKEN } }\n";
        let errors = crate::config::load::parse(text, None)
            .expect_err("refused")
            .to_string();
        assert!(
            errors.contains("vault.auth") && errors.contains("(did you mean `env`?)"),
            "{errors}"
        );
    }

    #[test]
    fn address_is_https_or_plain_http_only_to_loopback() {
        for ok in [
            "https://vault.internal:8200",
            "http://127.0.0.1:8200",
            "http://[::1]:8200",
            "http://localhost:8200",
        ] {
            assert!(with_address(ok).validate().is_empty(), "{ok}");
        }
        for bad in [
            "http://vault.internal:8200",
            "http://10.0.0.5:8200",
            "vault:8200",
        ] {
            let errors = with_address(bad).validate();
            assert_eq!(errors.len(), 1, "{bad}");
            assert_eq!(errors[0].0, "vault.address");
            assert!(errors[0].1.contains(bad), "{bad}: {}", errors[0].1);
        }
        let errors = with_address("http://vault.internal:8200").validate();
        assert!(errors[0].1.contains("must use https"), "{}", errors[0].1);
    }
}
