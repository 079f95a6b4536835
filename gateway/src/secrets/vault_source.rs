//! A credential from Vault: a KV v2 secret or a leased one, possibly at a path of the
//! principal's own (`secret/agents/{principal.owner}/github`), served from the secret store's
//! memory and read on a miss.

use std::fmt;
use std::sync::Arc;

use super::config::VaultSource;
use super::credential::CredentialError;
use super::fetch::{CredentialProvider, Fetch, Lookup, ProviderError, SecretGuard};
use super::injection::Injection;
use super::template::PathTemplate;
use crate::action::Principal;
use crate::vault::{Held, SecretKey, SecretStore, Slot};

/// Which kind of Vault secret.
#[derive(Debug, Clone)]
enum Kind {
    /// KV v2, with the mount when it is given apart from the path.
    Kv {
        mount: Option<String>,
        version: Option<u64>,
    },
    /// A leased secret; issued by a write with these parameters (their JSON text) when given.
    Lease { params: Option<String> },
}

/// A route's credential from Vault.
pub struct VaultCredential {
    kind: Kind,
    path: PathTemplate,
    field: Option<String>,
    injection: Injection,
    store: Arc<SecretStore>,
    /// For a path that names no principal attribute: its slot.
    fixed: Option<Arc<Slot>>,
    /// This provider's mark on what it made of a held secret (its formatted credential,
    /// kept with the secret so that a cached secret costs no formatting per request, and
    /// goes when the secret goes).
    id: u64,
}

/// The marks of providers.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl fmt::Debug for VaultCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultCredential")
            .field("kind", &self.kind)
            .field("path", &self.path.as_str())
            .finish_non_exhaustive()
    }
}

impl VaultCredential {
    pub fn new(
        source: &VaultSource,
        injection: &Injection,
        store: &Arc<SecretStore>,
    ) -> Result<VaultCredential, ProviderError> {
        let error = |key: &str, message: String| ProviderError {
            key: format!("vault.{key}"),
            message,
        };
        if source.kv.is_some() && source.params.is_some() {
            return Err(error(
                "params",
                "params go with lease (a write that issues a secret), not kv".into(),
            ));
        }
        let (kind, text, key) = match (&source.kv, &source.lease) {
            (Some(kv), None) => (
                Kind::Kv {
                    mount: source.mount.clone(),
                    version: source.version,
                },
                kv,
                "kv",
            ),
            (None, Some(lease)) => {
                if source.version.is_some() || source.mount.is_some() {
                    return Err(error(
                        "lease",
                        "version and mount go with kv, not lease".into(),
                    ));
                }
                (
                    Kind::Lease {
                        params: params_text(source),
                    },
                    lease,
                    "lease",
                )
            }
            _ => {
                return Err(ProviderError {
                    key: "vault".into(),
                    message: "give one of kv: (a KV v2 secret) and lease: (a path that answers with a leased secret)".into(),
                });
            }
        };
        let text = text.trim_matches('/');
        let path = PathTemplate::parse(text).map_err(|e| error(key, e.to_string()))?;
        if matches!(kind, Kind::Kv { mount: None, .. }) && !text.contains('/') {
            return Err(error(
                key,
                format!(
                    "{text:?} names no mount: write <mount>/<path> (secret/openai), or give mount:"
                ),
            ));
        }
        if source.field.is_some() && !injection.uses_secret() {
            return Err(error(
                "field",
                "the injection names the fields it uses ({secret.<field>}); field: is not used"
                    .into(),
            ));
        }
        let mut credential = VaultCredential {
            kind,
            path,
            field: source.field.clone(),
            injection: injection.clone(),
            store: Arc::clone(store),
            fixed: None,
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        };
        if !credential.path.is_templated() {
            let key = credential.key(credential.path.as_str());
            credential.fixed = Some(store.slot(&key));
        }
        Ok(credential)
    }

    /// The store's key for the resolved `path`.
    fn key(&self, path: &str) -> SecretKey {
        key_of(&self.kind, path)
    }

    /// The credential made of `held`.
    fn render(&self, held: &Held) -> Lookup {
        let path = &held.origin.path;
        let secret = match &self.field {
            Some(f) => Some(held.data.get(f).ok_or_else(|| CredentialError::Missing {
                origin: format!("vault {path}"),
                what: format!(
                    "field {f:?} (fields: {})",
                    held.data.names().collect::<Vec<_>>().join(", ")
                ),
            })?),
            None => held.data.only(),
        };
        self.injection
            .render(
                secret,
                |name| held.data.get(name),
                &format!("vault {path}"),
                Some(Arc::clone(&held.origin)),
            )
            .map(Arc::new)
    }

    /// The credential made of `held`: made once per secret read, then kept with it.
    fn made(&self, held: &Held) -> Lookup {
        if let Some(made) = held.made_by(self.id)
            && let Some(lookup) = made.downcast_ref::<Lookup>()
        {
            return lookup.clone();
        }
        let lookup = self.render(held);
        held.remember(self.id, Arc::new(lookup.clone()));
        lookup
    }
}

/// The JSON text of a lease source's `params` (keys in order, so equal params are one key).
fn params_text(source: &VaultSource) -> Option<String> {
    source
        .params
        .as_ref()
        .map(|p| serde_json::to_string(p).unwrap_or_default())
}

/// The store's key of a secret of `kind` at `path` (resolved).
fn key_of(kind: &Kind, path: &str) -> SecretKey {
    match kind {
        Kind::Kv { mount, version } => {
            let (mount, below) = match mount {
                Some(m) => (m.trim_matches('/').to_owned(), path.to_owned()),
                None => {
                    let (m, below) = path.split_once('/').unwrap_or((path, ""));
                    (m.to_owned(), below.to_owned())
                }
            };
            SecretKey::Kv {
                mount,
                path: below,
                version: *version,
            }
        }
        Kind::Lease { params } => SecretKey::Lease {
            path: path.to_owned(),
            params: params.clone(),
        },
    }
}

/// One value of a Vault secret for Warden itself (its signing key ...): read now, through
/// `store`. `key` names the configuration key in errors.
pub async fn read_one(
    source: &VaultSource,
    store: &Arc<SecretStore>,
    key: &str,
) -> Result<zeroize::Zeroizing<String>, CredentialError> {
    let refused = |why: String| CredentialError::Vault {
        path: key.to_owned(),
        reason: why,
    };
    let (kind, path) = match (&source.kv, &source.lease) {
        (Some(kv), None) => (
            Kind::Kv {
                mount: source.mount.clone(),
                version: source.version,
            },
            kv,
        ),
        (None, Some(lease)) => (
            Kind::Lease {
                params: params_text(source),
            },
            lease,
        ),
        _ => return Err(refused("give one of kv: and lease:".into())),
    };
    let path = path.trim_matches('/');
    if source.names_principal() {
        return Err(refused(
            "Warden's own secrets have no principal: the path cannot name one".into(),
        ));
    }
    let slot = store.slot(&key_of(&kind, path));
    let held = store.get(&slot).await?;
    let value = match &source.field {
        Some(f) => held.data.get(f),
        None => held.data.only(),
    };
    value
        .map(|v| zeroize::Zeroizing::new(v.to_owned()))
        .ok_or_else(|| CredentialError::Missing {
            origin: format!("vault {path}"),
            what: match &source.field {
                Some(f) => format!("field {f:?}"),
                None => "single field (set field:)".into(),
            },
        })
}

impl CredentialProvider for VaultCredential {
    fn credential<'a>(&'a self, principal: &'a Principal, guard: &'a dyn SecretGuard) -> Fetch<'a> {
        let slot = match &self.fixed {
            Some(slot) => Arc::clone(slot),
            None => {
                let path = match self.path.resolve(principal) {
                    Ok(path) => path,
                    Err(e) => return Fetch::Ready(Err(e.into())),
                };
                // Policy judges the path as audit records name it: `<mount>/<path>`.
                let key = self.key(&path);
                if let Err(e) = guard.check(principal, &key.path()) {
                    return Fetch::Ready(Err(e));
                }
                self.store.slot(&key)
            }
        };
        if let Some(held) = self.store.cached(&slot) {
            return Fetch::Ready(self.made(&held));
        }
        Fetch::Pending(Box::pin(async move {
            let held = self.store.get(&slot).await?;
            self.made(&held)
        }))
    }
}
