//! The replica id every record carries: which Warden process wrote it, so that the chains of
//! several replicas stay apart once they meet in a SIEM.

use serde::{Deserialize, Deserializer};

use super::event::Text;
use crate::text::Quoted;

/// Longest replica id accepted: a DNS name's length, which a pod name also fits.
pub const MAX_LEN: usize = 253;

/// Where `audit.replica_id` comes from: a name, or `{ env: NAME }`. Absent, it is the host
/// name (`HOSTNAME`, else the system's host name), which in Kubernetes is the pod's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaIdSource {
    /// The id itself.
    Name(String),
    /// The environment variable holding it.
    Env(String),
}

impl<'de> Deserialize<'de> for ReplicaIdSource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct FromEnv {
            env: String,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Name(String),
            Env(FromEnv),
        }
        match Either::deserialize(deserializer) {
            Ok(Either::Name(name)) => Ok(ReplicaIdSource::Name(name)),
            Ok(Either::Env(FromEnv { env })) => Ok(ReplicaIdSource::Env(env)),
            Err(_) => Err(serde::de::Error::custom(
                "expected a name (`warden-0`) or `{ env: NAME }`",
            )),
        }
    }
}

/// Why no replica id could be had.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReplicaIdError {
    /// `{ env: NAME }` names a variable that is unset or empty.
    #[error("audit.replica_id: the environment variable {var} is not set or empty")]
    Unset {
        /// The variable.
        var: String,
    },
    /// The id is not a name.
    #[error(
        "audit.replica_id: {value} {reason}; use 1 to {MAX_LEN} letters, digits and `. _ : -` \
         (a host or pod name)"
    )]
    Invalid {
        /// The id, quoted and bounded.
        value: Quoted,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No id was configured and the host name could not be read.
    #[error(
        "audit.replica_id is not set and the host name cannot be read ({0}); set \
         audit.replica_id"
    )]
    NoHostName(String),
}

/// Checks that `id` can name a replica in every record.
pub fn check(id: &str) -> Result<(), ReplicaIdError> {
    let invalid = |reason| ReplicaIdError::Invalid {
        value: Quoted::of(id),
        reason,
    };
    if id.is_empty() {
        return Err(invalid("is empty"));
    }
    if id.len() > MAX_LEN {
        return Err(invalid("is too long"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    {
        return Err(invalid(
            "holds characters other than letters, digits and `. _ : -`",
        ));
    }
    Ok(())
}

/// The replica id `source` gives in this process's environment.
pub fn resolve(source: Option<&ReplicaIdSource>) -> Result<Text, ReplicaIdError> {
    let id = match source {
        Some(ReplicaIdSource::Name(name)) => name.clone(),
        Some(ReplicaIdSource::Env(var)) => match std::env::var(var) {
            Ok(value) if !value.is_empty() => value,
            _ => return Err(ReplicaIdError::Unset { var: var.clone() }),
        },
        None => host_name()?,
    };
    check(&id)?;
    Ok(Text::from(id))
}

/// `HOSTNAME` (a pod's name in Kubernetes), else the system's host name.
fn host_name() -> Result<String, ReplicaIdError> {
    if let Ok(name) = std::env::var("HOSTNAME")
        && !name.is_empty()
    {
        return Ok(name);
    }
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return Err(ReplicaIdError::NoHostName(
            std::io::Error::last_os_error().to_string(),
        ));
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8(buf[..end].to_vec())
        .map_err(|_| ReplicaIdError::NoHostName("it is not UTF-8".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_name_is_the_id() {
        let id = resolve(Some(&ReplicaIdSource::Name("warden-7f9c-x2".into()))).unwrap();
        assert_eq!(&*id, "warden-7f9c-x2");
    }

    #[test]
    fn without_configuration_the_host_name_is_the_id() {
        let id = resolve(None).unwrap();
        assert!(!id.is_empty());
        if let Ok(host) = std::env::var("HOSTNAME")
            && !host.is_empty()
        {
            assert_eq!(&*id, host);
        }
    }

    #[test]
    fn an_unset_variable_is_refused_by_name() {
        let err = resolve(Some(&ReplicaIdSource::Env(
            "WARDEN_TEST_NO_SUCH_REPLICA_VAR".into(),
        )))
        .unwrap_err();
        assert!(
            err.to_string().contains("WARDEN_TEST_NO_SUCH_REPLICA_VAR"),
            "{err}"
        );
    }

    #[test]
    fn ids_that_are_not_names_are_refused() {
        for bad in ["", "a b", "x\"y", "é", &"a".repeat(MAX_LEN + 1)] {
            let err = check(bad).unwrap_err();
            assert!(err.to_string().contains("audit.replica_id"), "{err}");
        }
        for good in [
            "warden-0",
            "warden-6d5f8b7c9-x2l4q",
            "host.example.com",
            "a_b:1",
        ] {
            check(good).unwrap();
        }
    }

    #[test]
    fn reads_a_name_or_an_env_source() {
        let name: ReplicaIdSource = serde_json::from_str("\"warden-0\"").unwrap();
        assert_eq!(name, ReplicaIdSource::Name("warden-0".into()));
        let env: ReplicaIdSource = serde_json::from_str(r#"{"env":"POD_NAME"}"#).unwrap();
        assert_eq!(env, ReplicaIdSource::Env("POD_NAME".into()));
        let err = serde_json::from_str::<ReplicaIdSource>(r#"{"file":"/x"}"#).unwrap_err();
        assert!(err.to_string().contains("{ env: NAME }"), "{err}");
    }
}
