//! Secret values as Vault returns them, kept in memory that is wiped when dropped and never
//! printed.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use zeroize::Zeroizing;

use super::error::VaultError;

/// The fields of one secret (a KV version's data, or a lease's), each value wiped on drop.
/// `Debug` shows the field names only.
#[derive(Clone, Default)]
pub struct SecretData(BTreeMap<String, Zeroizing<String>>);

impl SecretData {
    /// The fields of `data` (a JSON object): strings as they are, other values as their JSON
    /// text. `data` is consumed, so its copies of the values are dropped at once.
    pub fn from_json(what: &str, data: serde_json::Value) -> Result<SecretData, VaultError> {
        let serde_json::Value::Object(fields) = data else {
            return Err(VaultError::Malformed {
                what: what.to_owned(),
                reason: "the secret's data is not an object".into(),
            });
        };
        Ok(SecretData(
            fields
                .into_iter()
                .map(|(k, v)| {
                    let value = match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, Zeroizing::new(value))
                })
                .collect(),
        ))
    }

    /// The value of `field`, or an error naming the fields there are (never their values).
    pub fn field(&self, path: &str, field: &str) -> Result<&str, VaultError> {
        self.0
            .get(field)
            .map(|v| v.as_str())
            .ok_or_else(|| VaultError::NoField {
                path: path.to_owned(),
                field: field.to_owned(),
                available: self.0.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }

    /// The value of `field`, if there is one.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(|v| v.as_str())
    }

    /// The value of the only field, when there is exactly one.
    pub fn only(&self) -> Option<&str> {
        match self.0.len() {
            1 => self.0.values().next().map(|v| v.as_str()),
            _ => None,
        }
    }

    /// The field names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

impl fmt::Debug for SecretData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// One version of a KV v2 secret.
#[derive(Debug, Clone)]
pub struct KvSecret {
    pub data: SecretData,
    /// The version read.
    pub version: u64,
}

/// A secret with a lease (database, cloud, PKI credentials ...).
#[derive(Debug, Clone)]
pub struct LeasedSecret {
    pub data: SecretData,
    /// The lease to renew and revoke; empty for secrets without one.
    pub lease_id: String,
    /// How long the lease runs from when it was read.
    pub lease_duration: Duration,
    pub renewable: bool,
}
