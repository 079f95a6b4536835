//! Credential providers: where a route's upstream credential comes from at request time.
//!
//! The request path asks its route's provider for the credential on every request, and the
//! provider answers from memory: no I/O on the request path. Sources whose value changes (a
//! rotated key file; Vault leases later) keep that memory current on their own, so the next
//! request gets the new value without a reload.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use super::config::CredentialSource;
use super::credential::CredentialError;
use super::fetch::{CredentialProvider, Fetch, Lookup, ProviderError, SecretGuard};
use super::injection::Injection;
use crate::action::Principal;
use crate::vault::SecretStore;

/// The provider for a route: `source` sent as `injection` says, or the error the route's
/// requests get when it has none. `vault` is the store of the `vault:` section, if any.
pub fn provider(
    route: &str,
    source: Option<&CredentialSource>,
    injection: &Injection,
    vault: Option<&Arc<SecretStore>>,
) -> Result<Arc<dyn CredentialProvider>, ProviderError> {
    let single_value = |kind: &str| {
        let fields = injection.fields();
        if fields.is_empty() {
            Ok(())
        } else {
            Err(ProviderError {
                key: "inject".into(),
                message: format!(
                    "names {} but a {kind} source has one value: use {{secret}}",
                    fields
                        .iter()
                        .map(|f| format!("{{secret.{f}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
        }
    };
    Ok(match source {
        Some(CredentialSource::Env(name)) => {
            single_value("env")?;
            Arc::new(Fixed(read_env(name, injection, |n| std::env::var(n).ok())))
        }
        Some(CredentialSource::File(path)) => {
            single_value("file")?;
            Arc::new(FileCredential::new(path, injection))
        }
        Some(CredentialSource::Vault(source)) => {
            let Some(store) = vault else {
                return Err(ProviderError {
                    key: "vault".into(),
                    message: super::config::NO_VAULT_SECTION.into(),
                });
            };
            Arc::new(super::vault_source::VaultCredential::new(
                source, injection, store,
            )?)
        }
        None => Arc::new(Fixed(Err(CredentialError::NotConfigured {
            route: route.to_owned(),
        }))),
    })
}

/// A credential fixed for the life of the configuration (environment variables; a source that
/// failed).
#[derive(Debug)]
struct Fixed(Lookup);

impl CredentialProvider for Fixed {
    fn credential<'a>(&'a self, _: &'a Principal, _: &'a dyn SecretGuard) -> Fetch<'a> {
        Fetch::Ready(self.0.clone())
    }

    fn unavailable(&self) -> Option<CredentialError> {
        self.0.clone().err()
    }
}

/// The credential in environment variable `name`, read through `var`.
fn read_env(name: &str, injection: &Injection, var: impl Fn(&str) -> Option<String>) -> Lookup {
    match var(name) {
        Some(v) if !v.trim().is_empty() => injection
            .render(Some(&v), |_| None, &format!("env {name}"), None)
            .map(Arc::new),
        _ => Err(CredentialError::EnvMissing(name.to_owned())),
    }
}

/// How often a credential file is looked at again for a change.
const FILE_RECHECK: Duration = Duration::from_secs(1);

/// A credential read from a file, and read again when the file changes: a rotated key takes
/// effect within about a second, without a reload. A task of the main runtime looks at the
/// file (on a blocking thread) for as long as the provider lives; requests only read memory.
struct FileCredential {
    state: Arc<FileState>,
}

struct FileState {
    path: PathBuf,
    injection: Injection,
    current: ArcSwap<Lookup>,
    /// Modification time and length the current value was read at.
    stamp: std::sync::Mutex<Option<(SystemTime, u64)>>,
}

impl fmt::Debug for FileCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileCredential")
            .field("path", &self.state.path)
            .finish_non_exhaustive()
    }
}

impl FileCredential {
    /// Reads the file now; then, when a tokio runtime runs (`warden serve`, not `warden
    /// check`), looks at it again every [`FILE_RECHECK`] until the provider is dropped.
    fn new(path: &Path, injection: &Injection) -> FileCredential {
        let state = Arc::new(FileState {
            path: path.to_path_buf(),
            injection: injection.clone(),
            current: ArcSwap::from_pointee(read_file(path, injection)),
            stamp: std::sync::Mutex::new(stamp(path)),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(watch(Arc::downgrade(&state)));
        }
        FileCredential { state }
    }
}

/// Looks at the file every [`FILE_RECHECK`] while its provider lives.
async fn watch(state: Weak<FileState>) {
    loop {
        tokio::time::sleep(FILE_RECHECK).await;
        let Some(state) = state.upgrade() else {
            return;
        };
        // A join error means the blocking pool is shutting down: so is the process.
        if tokio::task::spawn_blocking(move || state.reread())
            .await
            .is_err()
        {
            return;
        }
    }
}

/// The file's modification time and length, if it can be read.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
}

impl FileState {
    /// Reads the file again if it changed since the value in use was read (blocking).
    fn reread(&self) {
        let now = stamp(&self.path);
        let mut known = self
            .stamp
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if now.is_some() && *known == now {
            return;
        }
        let value = read_file(&self.path, &self.injection);
        if let (Err(e), Ok(_)) = (&value, &**self.current.load()) {
            // The error names the file as its path may be shown.
            tracing::warn!(error = %e, "the credential file can no longer be read; its route's requests are refused until it can");
        }
        self.current.store(Arc::new(value));
        *known = now;
    }
}

impl CredentialProvider for FileCredential {
    fn credential<'a>(&'a self, _: &'a Principal, _: &'a dyn SecretGuard) -> Fetch<'a> {
        Fetch::Ready((**self.state.current.load()).clone())
    }

    fn unavailable(&self) -> Option<CredentialError> {
        (**self.state.current.load()).clone().err()
    }
}

fn read_file(path: &Path, injection: &Injection) -> Lookup {
    match std::fs::read_to_string(path) {
        Ok(v) if !v.trim().is_empty() => injection
            .render(
                Some(&v),
                |_| None,
                &format!("file {}", crate::vault::config::shown_path(path, None)),
                None,
            )
            .map(Arc::new),
        Ok(_) => Err(CredentialError::file(path, None)),
        Err(e) => Err(CredentialError::file(path, Some(&e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::fetch::NoPrincipal;
    use std::time::Instant;

    use crate::route::connector::CredentialInjection;
    use crate::secrets::credential::Placed;

    fn injection(format: &str) -> Injection {
        let c = CredentialInjection {
            header: "authorization".into(),
            format: format.into(),
            optional: false,
        };
        Injection::build(Some(&c), None).expect("injection")
    }

    fn bearer() -> Injection {
        injection("Bearer {secret}")
    }

    fn value(lookup: &Lookup) -> Option<&[u8]> {
        lookup.as_ref().ok().map(|c| match &c.placed {
            Placed::Header(_, v) => v.as_bytes(),
            Placed::Query(_, v) => v.as_bytes(),
        })
    }

    fn now(p: &dyn CredentialProvider) -> Lookup {
        match p.credential(&Principal::anonymous(), &NoPrincipal) {
            Fetch::Ready(lookup) => lookup,
            Fetch::Pending(_) => panic!("env and file credentials are in memory"),
        }
    }

    #[test]
    fn an_env_credential_is_formatted_and_a_missing_one_named() {
        let env = |name: &str| (name == "KEY").then(|| " sk-1 \n".to_owned());
        let got = read_env("KEY", &bearer(), env);
        assert_eq!(value(&got), Some(&b"Bearer sk-1"[..]));
        let Placed::Header(_, v) = &got.unwrap().placed else {
            panic!("a header")
        };
        assert!(v.is_sensitive());
        let missing = Fixed(read_env("UNSET", &bearer(), env));
        let error = now(&missing).unwrap_err();
        assert_eq!(error, CredentialError::EnvMissing("UNSET".into()));
        assert_eq!(missing.unavailable(), Some(error));
    }

    #[test]
    fn a_basic_credential_is_the_base64_of_the_secret() {
        let basic = injection("Basic {secret_base64}");
        let env = |_: &str| Some("me@acme.test:api-token\n".to_owned());
        let got = read_env("JIRA", &basic, env);
        assert_eq!(
            value(&got),
            Some(&b"Basic bWVAYWNtZS50ZXN0OmFwaS10b2tlbg=="[..])
        );
    }

    #[test]
    fn a_route_without_a_source_is_refused_with_what_to_configure() {
        let p = provider("anthropic", None, &bearer(), None).unwrap();
        let error = now(&*p).unwrap_err();
        assert!(
            error.to_string().contains("credential: { env: NAME }"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_rotated_key_file_takes_effect_without_a_reload_and_a_deleted_one_fails_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "first\n").unwrap();
        let p = provider(
            "openai",
            Some(&CredentialSource::File(path.clone())),
            &bearer(),
            None,
        )
        .unwrap();
        assert_eq!(value(&now(&*p)), Some(&b"Bearer first"[..]));
        // A different length, so the change shows even where timestamps are coarse.
        std::fs::write(&path, "second-key\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while value(&now(&*p)) != Some(&b"Bearer second-key"[..]) {
            assert_eq!(value(&now(&*p)), Some(&b"Bearer first"[..]));
            assert!(Instant::now() < deadline, "the new key was never picked up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        std::fs::remove_file(&path).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while now(&*p).is_ok() {
            assert!(
                Instant::now() < deadline,
                "a deleted key file must fail closed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(matches!(
            p.unavailable(),
            Some(CredentialError::File { .. })
        ));
    }

    #[test]
    fn a_vault_source_needs_the_vault_section_and_env_has_no_fields() {
        use crate::secrets::config::VaultSource;
        let vault = CredentialSource::Vault(VaultSource {
            kv: Some("secret/openai".into()),
            ..Default::default()
        });
        let e = provider("openai", Some(&vault), &bearer(), None).unwrap_err();
        assert!(e.message.contains("no vault: section"), "{e:?}");
        let e = provider(
            "openai",
            Some(&CredentialSource::Env("K".into())),
            &injection("{secret.username}"),
            None,
        )
        .unwrap_err();
        assert!(e.message.contains("one value"), "{e:?}");
    }

    #[test]
    fn a_key_files_relative_path_is_not_shown_when_its_content_cannot_be_sent() {
        // Tests run in the package's directory: a file there, by a path that may be a secret
        // written where its path goes, whose lines make no header value.
        let e = read_file(Path::new("Cargo.toml"), &bearer()).unwrap_err();
        assert!(matches!(e, CredentialError::InvalidValue(_)), "{e:?}");
        let shown = e.to_string();
        assert!(!shown.contains("Cargo.toml"), "{shown}");
        assert!(shown.contains("not shown"), "{shown}");
        let shown = read_file(Path::new("./Cargo.toml"), &bearer())
            .unwrap_err()
            .to_string();
        assert!(
            shown.contains("file ./Cargo.toml contains characters"),
            "{shown}"
        );
        // A base64 key written where its path goes may start with `/`: a missing file at `/`
        // is not shown; one in a directory that exists is.
        let key = "/q3Zf9kXW0b1T0sH7nJcYkq2r8mPz4vLx6aB5eD1uC0s";
        let e = read_file(Path::new(key), &bearer()).unwrap_err();
        assert!(matches!(e, CredentialError::File { .. }), "{e:?}");
        let shown = e.to_string();
        assert!(!shown.contains("q3Zf"), "{shown}");
        assert!(shown.contains("may be the secret itself"), "{shown}");
        let shown = read_file(Path::new("./no-such.key"), &bearer())
            .unwrap_err()
            .to_string();
        assert!(
            shown.contains("cannot read credential file ./no-such.key"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn the_file_watch_ends_with_its_provider() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "k\n").unwrap();
        let p = FileCredential::new(&path, &bearer());
        let weak = Arc::downgrade(&p.state);
        drop(p);
        assert!(
            weak.upgrade().is_none(),
            "the watch holds no strong reference"
        );
    }
}
