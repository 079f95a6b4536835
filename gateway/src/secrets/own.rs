//! Warden's own secrets (its token-signing key; SIEM tokens, database passwords and console
//! keys as those arrive), from the same sources as upstream credentials: an environment
//! variable, a file, or Vault.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::config::CredentialSource;
use super::credential::CredentialError;
use crate::vault::SecretStore;

/// The secret of configuration key `key` from `source`, read now; `vault` is the store of the
/// `vault:` section, if any.
pub async fn read(
    source: &CredentialSource,
    vault: Option<&Arc<SecretStore>>,
    key: &str,
) -> Result<Zeroizing<String>, CredentialError> {
    let value = match source {
        CredentialSource::Env(name) => Zeroizing::new(
            std::env::var(name).map_err(|_| CredentialError::EnvMissing(name.clone()))?,
        ),
        CredentialSource::File(path) => Zeroizing::new(
            tokio::fs::read_to_string(path)
                .await
                .map_err(|e| CredentialError::file(path, Some(&e)))?,
        ),
        CredentialSource::Vault(v) => {
            let store = vault.ok_or_else(|| CredentialError::Vault {
                path: key.to_owned(),
                reason: super::config::NO_VAULT_SECTION.into(),
            })?;
            super::vault_source::read_one(v, store, key).await?
        }
    };
    if value.trim().is_empty() {
        return Err(CredentialError::Missing {
            origin: format!("{key} ({})", source.kind()),
            what: "value (it is empty)".into(),
        });
    }
    Ok(value)
}
