//! The keys an audit log last named, read at start before anything is written: the audit key
//! id of its last checkpoint, and the agent-token key id its last run's `start` record names
//! (`token_key_id`). A Warden that starts with other keys, not listing those in
//! `previous_keys`, was restored without its keys/ directory (or given another key): it
//! refuses to start, since agents' tokens would all be refused and the log would go on under
//! a key no verifier knows, unless told to accept new keys (`warden serve --accept-new-keys`).
//!
//! The writer keeps the keys as of each head it records in `head.json` ([`KeysWritten`]), so
//! a start reads them there and only the records after that head (`read_back.rs`); a log
//! whose head.json names none (written before it did) is read back to its last `start`
//! record.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::event::{AuditEvent, EventKind};

/// The keys the log last named, each with the seq of the record that names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastKeys {
    /// The last checkpoint's key id.
    #[serde(default)]
    pub audit: Option<KeyAt>,
    /// The agent-token key id of the last `start` record (`None` when it names none).
    #[serde(default)]
    pub token: Option<KeyAt>,
}

/// A key id, as the record `seq` names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyAt {
    pub seq: u64,
    pub key_id: String,
}

/// The keys the log names as the writer writes it: what `head.json` records beside each head
/// (the keys the records up to that head named, never those of records not yet durable).
#[derive(Debug)]
pub struct KeysWritten {
    /// As of the durable head last asked for.
    durable: LastKeys,
    /// After each record written since that names a key (its seq), oldest first.
    written: VecDeque<(u64, LastKeys)>,
}

impl KeysWritten {
    /// Starts from `at_open`, the keys the log named when it was opened.
    pub fn new(at_open: LastKeys) -> KeysWritten {
        KeysWritten {
            durable: at_open,
            written: VecDeque::new(),
        }
    }

    /// Notes record `seq`, `event`, written: a checkpoint names the audit key, a `start`
    /// record the agent-token key (or none).
    pub fn note(&mut self, seq: u64, event: &AuditEvent) {
        let detail = |field: &str| {
            event.detail.as_ref().map(|d| {
                d[field].as_str().map(|kid| KeyAt {
                    seq,
                    key_id: kid.to_owned(),
                })
            })
        };
        let keys = || {
            self.written
                .back()
                .map(|(_, keys)| keys.clone())
                .unwrap_or_else(|| self.durable.clone())
        };
        let next = match event.kind {
            EventKind::Checkpoint => match detail("key_id").flatten() {
                Some(audit) => LastKeys {
                    audit: Some(audit),
                    ..keys()
                },
                None => return,
            },
            EventKind::System
                if event.detail.as_ref().and_then(|d| d["event"].as_str()) == Some("start") =>
            {
                LastKeys {
                    token: detail("token_key_id").flatten(),
                    ..keys()
                }
            }
            _ => return,
        };
        self.written.push_back((seq, next));
    }

    /// The keys as of record `seq`, durable.
    pub fn as_of(&mut self, seq: u64) -> &LastKeys {
        while self.written.front().is_some_and(|(at, _)| *at <= seq) {
            if let Some((_, keys)) = self.written.pop_front() {
                self.durable = keys;
            }
        }
        &self.durable
    }
}

/// The keys this Warden starts with: each key id, and the ids of its retired keys.
pub struct StartKeys<'a> {
    pub audit: (&'a str, Vec<&'a str>),
    /// `None` when Warden's own tokens are off.
    pub token: Option<(&'a str, Vec<&'a str>)>,
}

/// Why Warden refuses to start: the log names keys it neither holds nor lists as retired.
#[derive(Debug, thiserror::Error)]
pub enum KeysChanged {
    #[error(
        "the audit key changed: the log in {dir} was last signed by key {expected} (checkpoint \
         seq {seq}), and this Warden signs with key {found}, which does not list it in \
         audit.signing.previous_keys. Warden was restored without its keys/ directory, or given \
         another key: restore the audit key (audit.signing.key_file, \
         <data_dir>/keys/audit-signing.pem, or audit.signing.key) from the backup; for a \
         rotation, list the old key in audit.signing.previous_keys; to go on with a new key on \
         purpose (the old one is lost), start once with --accept-new-keys \
         (docs/operations.md#backup-and-restore)"
    )]
    Audit {
        dir: PathBuf,
        seq: u64,
        expected: String,
        found: String,
    },
    #[error(
        "the agent-token signing key changed: the last run in the audit log {dir} (start record \
         seq {seq}) signed tokens with key {expected}, and this Warden signs with key {found}, \
         which does not list it in identity.warden_issuer.previous_keys, so every token issued \
         before would be refused. Warden was restored without its keys/ directory, or given \
         another key: restore the agent signing key (identity.warden_issuer.key_file, \
         <data_dir>/keys/agent-signing.pem, or identity.warden_issuer.key) from the backup; for \
         a rotation, list the old key in identity.warden_issuer.previous_keys; to go on with a \
         new key on purpose (agents then need new tokens), start once with --accept-new-keys \
         (docs/operations.md#backup-and-restore)"
    )]
    Token {
        dir: PathBuf,
        seq: u64,
        expected: String,
        found: String,
    },
}

/// Whether `keys` carry on from what the log in `dir` last named (`last`): each named key is
/// the current one or a retired one.
pub fn check(last: &LastKeys, keys: &StartKeys<'_>, dir: &Path) -> Result<(), KeysChanged> {
    let known = |kid: &str, (current, retired): &(&str, Vec<&str>)| {
        kid == *current || retired.contains(&kid)
    };
    if let Some(KeyAt { seq, key_id }) = &last.audit
        && !known(key_id, &keys.audit)
    {
        return Err(KeysChanged::Audit {
            dir: dir.to_path_buf(),
            seq: *seq,
            expected: key_id.clone(),
            found: keys.audit.0.to_owned(),
        });
    }
    if let (Some(KeyAt { seq, key_id }), Some(token)) = (&last.token, &keys.token)
        && !known(key_id, token)
    {
        return Err(KeysChanged::Token {
            dir: dir.to_path_buf(),
            seq: *seq,
            expected: key_id.clone(),
            found: token.0.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::config::AuditConfig;
    use crate::audit::event::{AuditEvent, EventKind};
    use crate::audit::log::AuditLog;
    use crate::audit::signer::Signer;
    use ed25519_dalek::SigningKey;
    use std::sync::Arc;

    fn start(token_kid: &str) -> AuditEvent {
        let mut event = AuditEvent::now(EventKind::System);
        event.detail = Some(serde_json::json!({"event": "start", "token_key_id": token_kid}));
        event
    }

    /// A log written by a Warden with audit key `audit` and token key id `token`.
    async fn run(dir: &Path, audit: u8, token: &str) -> Arc<Signer> {
        let signer = Arc::new(Signer::new(SigningKey::from_bytes(&[audit; 32])));
        let log = AuditLog::open_signed(dir, &AuditConfig::default(), signer.clone(), Vec::new())
            .unwrap();
        log.append(start(token)).await.unwrap();
        log.close().await.unwrap();
        signer
    }

    #[tokio::test]
    async fn a_restore_with_other_keys_is_refused_naming_the_key_expected() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("audit");
        let read = |dir: &Path| crate::audit::read_back::read(dir).map(|back| back.keys);
        assert_eq!(read(&dir).unwrap(), LastKeys::default(), "a fresh start");
        run(&dir, 1, "token-a").await;
        let signer = run(&dir, 1, "token-b").await;
        let last = read(&dir).unwrap();
        assert_eq!(last.audit.as_ref().unwrap().key_id, signer.key_id());
        assert_eq!(
            last.token.as_ref().unwrap().key_id,
            "token-b",
            "the last run's"
        );

        let same = StartKeys {
            audit: (signer.key_id(), vec![]),
            token: Some(("token-b", vec![])),
        };
        check(&last, &same, &dir).unwrap();
        // A rotation lists the old keys: fine.
        let rotated = StartKeys {
            audit: ("new-audit", vec![signer.key_id()]),
            token: Some(("new-token", vec!["token-b"])),
        };
        check(&last, &rotated, &dir).unwrap();
        // New keys, the old ones not listed: refused, naming what the log expects.
        let lost = StartKeys {
            audit: ("new-audit", vec![]),
            token: Some(("token-b", vec![])),
        };
        let err = check(&last, &lost, &dir).unwrap_err().to_string();
        assert!(
            err.contains(signer.key_id())
                && err.contains("new-audit")
                && err.contains("--accept-new-keys"),
            "{err}"
        );
        let lost = StartKeys {
            audit: (signer.key_id(), vec![]),
            token: Some(("new-token", vec![])),
        };
        let err = check(&last, &lost, &dir).unwrap_err().to_string();
        assert!(
            err.contains("token-b") && err.contains("identity.warden_issuer.previous_keys"),
            "{err}"
        );
        // Warden's own tokens off: only the audit key is compared.
        let off = StartKeys {
            audit: (signer.key_id(), vec![]),
            token: None,
        };
        check(&last, &off, &dir).unwrap();
    }

    #[test]
    fn head_json_is_given_only_the_keys_of_durable_records() {
        let at_open = LastKeys {
            audit: Some(KeyAt {
                seq: 1,
                key_id: "old-audit".into(),
            }),
            token: None,
        };
        let mut keys = KeysWritten::new(at_open.clone());
        let mut checkpoint = AuditEvent::now(EventKind::Checkpoint);
        checkpoint.detail = Some(serde_json::json!({"key_id": "audit-b"}));
        keys.note(5, &start("token-b"));
        keys.note(6, &checkpoint);
        keys.note(7, &AuditEvent::now(EventKind::Decision));
        assert_eq!(keys.as_of(4), &at_open, "nothing durable named a key since");
        let token_b = Some(KeyAt {
            seq: 5,
            key_id: "token-b".into(),
        });
        assert_eq!(
            keys.as_of(5),
            &LastKeys {
                audit: at_open.audit.clone(),
                token: token_b.clone(),
            }
        );
        let audit_b = Some(KeyAt {
            seq: 6,
            key_id: "audit-b".into(),
        });
        let all = LastKeys {
            audit: audit_b,
            token: token_b,
        };
        assert_eq!(keys.as_of(9), &all);
        assert_eq!(keys.as_of(9), &all, "kept");
    }
}
