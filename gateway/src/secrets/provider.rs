//! Credential providers: where a route's upstream credential comes from at request time.
//!
//! The request path asks its route's provider for the credential on every request; a provider
//! answers from memory when it holds a valid one (no I/O on the request path) and fetches only
//! when it must. Sources whose value changes (a rotated key file, later a Vault lease) change
//! what the next request gets without a reload.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use http::{HeaderName, HeaderValue};

use super::{Credential, CredentialError, CredentialSource};
use crate::route::connector::CredentialInjection;

/// What the request path receives: the credential, or why there is none.
pub type Lookup = Result<Arc<Credential>, CredentialError>;

/// A source of one route's upstream credential.
pub trait CredentialProvider: Send + Sync + fmt::Debug + 'static {
    /// The credential for the next upstream request.
    fn credential(&self) -> Fetch<'_>;

    /// Why no credential can be given right now, if so (for start-up and reload warnings).
    fn unavailable(&self) -> Option<CredentialError>;
}

/// A credential lookup: answered at once from memory, or a fetch in flight.
pub enum Fetch<'a> {
    /// Known now.
    Ready(Option<Lookup>),
    /// Being fetched.
    Pending(Pin<Box<dyn Future<Output = Lookup> + Send + 'a>>),
}

impl Future for Fetch<'_> {
    type Output = Lookup;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Lookup> {
        match self.get_mut() {
            Fetch::Ready(answer) => Poll::Ready(answer.take().unwrap_or_else(|| {
                Err(CredentialError::Unavailable(
                    "the credential lookup was polled after it finished".into(),
                ))
            })),
            Fetch::Pending(fetch) => fetch.as_mut().poll(cx),
        }
    }
}

/// The provider for a route: `source` formatted as `injection` says, or the error the route's
/// requests get when it has none.
pub fn provider(
    route: &str,
    source: Option<&CredentialSource>,
    injection: &CredentialInjection,
) -> Arc<dyn CredentialProvider> {
    match source {
        Some(CredentialSource::Env(name)) => Arc::new(Fixed(read_env(name, injection))),
        Some(CredentialSource::File(path)) => Arc::new(FileCredential::new(path, injection)),
        None => Arc::new(Fixed(Err(CredentialError::NotConfigured {
            route: route.to_owned(),
        }))),
    }
}

/// A credential fixed for the life of the configuration (environment variables; a source that
/// failed).
#[derive(Debug)]
struct Fixed(Lookup);

impl CredentialProvider for Fixed {
    fn credential(&self) -> Fetch<'_> {
        Fetch::Ready(Some(self.0.clone()))
    }

    fn unavailable(&self) -> Option<CredentialError> {
        self.0.as_ref().err().cloned()
    }
}

fn read_env(name: &str, injection: &CredentialInjection) -> Lookup {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => {
            format(&v, &format!("env {name}"), injection).map(Arc::new)
        }
        _ => Err(CredentialError::EnvMissing(name.to_owned())),
    }
}

/// How often a credential file is looked at again for a change (off the request path).
const FILE_RECHECK: Duration = Duration::from_secs(1);

/// A credential read from a file, and read again when the file changes (a rotated key takes
/// effect within about a second, without a reload). The file is looked at on a blocking
/// thread, never on the request path; requests get the last good value meanwhile.
struct FileCredential {
    state: Arc<FileState>,
}

struct FileState {
    path: PathBuf,
    injection: CredentialInjection,
    current: ArcSwap<Lookup>,
    /// Modification time and length the current value was read at.
    stamp: std::sync::Mutex<Option<(SystemTime, u64)>>,
    /// When the file was last looked at (milliseconds since `epoch`).
    checked_ms: AtomicU64,
    checking: AtomicBool,
    epoch: Instant,
}

impl fmt::Debug for FileCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileCredential")
            .field("path", &self.state.path)
            .finish_non_exhaustive()
    }
}

impl FileCredential {
    fn new(path: &std::path::Path, injection: &CredentialInjection) -> FileCredential {
        let state = Arc::new(FileState {
            path: path.to_path_buf(),
            injection: injection.clone(),
            current: ArcSwap::from_pointee(Err(CredentialError::Unavailable(
                "not read yet".into(),
            ))),
            stamp: std::sync::Mutex::new(None),
            checked_ms: AtomicU64::new(0),
            checking: AtomicBool::new(false),
            epoch: Instant::now(),
        });
        state.reread();
        FileCredential { state }
    }
}

impl FileState {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Reads the file again if it changed since the value in use was read (blocking).
    fn reread(&self) {
        let stamp = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        let mut known = self
            .stamp
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if stamp.is_some() && *known == stamp {
            return;
        }
        let value = read_file(&self.path, &self.injection);
        if let (Err(e), Ok(_)) = (&value, &**self.current.load()) {
            tracing::warn!(path = %self.path.display(), error = %e, "the credential file can no longer be read; its route's requests are refused until it can");
        }
        self.current.store(Arc::new(value));
        *known = stamp;
    }
}

impl CredentialProvider for FileCredential {
    fn credential(&self) -> Fetch<'_> {
        let state = &self.state;
        let now = state.now_ms();
        let due = now.saturating_sub(state.checked_ms.load(Ordering::Relaxed))
            >= FILE_RECHECK.as_millis() as u64;
        if due
            && !state.checking.swap(true, Ordering::AcqRel)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            state.checked_ms.store(now, Ordering::Relaxed);
            let looker = Arc::clone(state);
            runtime.spawn_blocking(move || {
                looker.reread();
                looker.checking.store(false, Ordering::Release);
            });
        }
        Fetch::Ready(Some((**state.current.load()).clone()))
    }

    fn unavailable(&self) -> Option<CredentialError> {
        self.state.current.load().as_ref().as_ref().err().cloned()
    }
}

fn read_file(path: &std::path::Path, injection: &CredentialInjection) -> Lookup {
    match std::fs::read_to_string(path) {
        Ok(v) if !v.trim().is_empty() => {
            format(&v, &format!("file {}", path.display()), injection).map(Arc::new)
        }
        Ok(_) => Err(CredentialError::File {
            path: path.to_path_buf(),
            reason: "file is empty".into(),
        }),
        Err(e) => Err(CredentialError::File {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

/// The header `injection` makes of `secret` (read from `origin`, named in errors).
fn format(
    secret: &str,
    origin: &str,
    injection: &CredentialInjection,
) -> Result<Credential, CredentialError> {
    let header = HeaderName::try_from(injection.header.as_str())
        .map_err(|_| CredentialError::InvalidHeader(injection.header.clone()))?;
    let mut value = HeaderValue::try_from(injection.format.replace("{secret}", secret.trim()))
        .map_err(|_| CredentialError::InvalidValue(origin.to_owned()))?;
    value.set_sensitive(true);
    Ok(Credential { header, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer() -> CredentialInjection {
        CredentialInjection {
            header: "authorization".into(),
            format: "Bearer {secret}".into(),
            optional: false,
        }
    }

    fn value(lookup: &Lookup) -> Option<&[u8]> {
        lookup.as_ref().ok().map(|c| c.value.as_bytes())
    }

    #[tokio::test]
    async fn an_env_credential_is_formatted_and_a_missing_one_named() {
        // SAFETY: set once for this test with a name no other test uses.
        unsafe { std::env::set_var("WARDEN_TEST_PROVIDER_KEY", " sk-1 \n") };
        let p = provider(
            "openai",
            Some(&CredentialSource::Env("WARDEN_TEST_PROVIDER_KEY".into())),
            &bearer(),
        );
        let got = p.credential().await;
        assert_eq!(value(&got), Some(&b"Bearer sk-1"[..]));
        assert!(got.unwrap().value.is_sensitive());
        let missing = provider(
            "openai",
            Some(&CredentialSource::Env(
                "WARDEN_TEST_PROVIDER_KEY_UNSET".into(),
            )),
            &bearer(),
        );
        let error = missing.credential().await.unwrap_err();
        assert_eq!(
            error,
            CredentialError::EnvMissing("WARDEN_TEST_PROVIDER_KEY_UNSET".into())
        );
        assert_eq!(missing.unavailable(), Some(error));
    }

    #[tokio::test]
    async fn a_route_without_a_source_is_refused_with_what_to_configure() {
        let p = provider("anthropic", None, &bearer());
        let error = p.credential().await.unwrap_err();
        assert!(
            error.to_string().contains("credential: { env: NAME }"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_rotated_key_file_takes_effect_without_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "first\n").unwrap();
        let p = provider(
            "openai",
            Some(&CredentialSource::File(path.clone())),
            &bearer(),
        );
        assert_eq!(value(&p.credential().await), Some(&b"Bearer first"[..]));
        // A different length, so the change shows even where timestamps are coarse.
        std::fs::write(&path, "second-key\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = p.credential().await;
            if value(&got) == Some(&b"Bearer second-key"[..]) {
                break;
            }
            assert_eq!(
                value(&got),
                Some(&b"Bearer first"[..]),
                "old value until reread"
            );
            assert!(Instant::now() < deadline, "the new key was never picked up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        std::fs::remove_file(&path).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while p.credential().await.is_ok() {
            assert!(
                Instant::now() < deadline,
                "a deleted key file must fail closed"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(matches!(
            p.unavailable(),
            Some(CredentialError::File { .. })
        ));
    }
}
