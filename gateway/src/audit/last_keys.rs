//! The keys an audit log last named, read at start before anything is written: the audit key
//! id of its last checkpoint, and the agent-token key id its last run's `start` record names
//! (`token_key_id`). A Warden that starts with other keys, not listing those in
//! `previous_keys`, was restored without its `keys/` directory (or given another key): it
//! refuses to start, since agents' tokens would all be refused and the log would go on under
//! a key no verifier knows, unless told to accept new keys (`warden serve --accept-new-keys`).
//!
//! The log is read from its newest segment back to the one holding the last `start` record
//! (a run's first checkpoint follows its start record), as recovery reads an interrupted run.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::record::{ChainFields, ChainKind};
use super::segment::{Line, Lines, list_segments};

/// The keys the log last named, each with the seq of the record that names it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LastKeys {
    /// The last checkpoint's key id.
    pub audit: Option<(u64, String)>,
    /// The agent-token key id of the last `start` record (`None` when it names none).
    pub token: Option<(u64, String)>,
}

#[derive(Deserialize)]
struct Peek {
    seq: u64,
    #[serde(default)]
    detail: Option<PeekDetail>,
}

#[derive(Deserialize)]
struct PeekDetail {
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    key_id: Option<String>,
    #[serde(default)]
    token_key_id: Option<String>,
}

/// The keys the log in `dir` last named; nothing for a missing or empty log.
pub fn read(dir: &Path) -> io::Result<LastKeys> {
    let segments = match list_segments(dir) {
        Ok(segments) => segments,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(LastKeys::default()),
        Err(e) => return Err(e),
    };
    let mut last = LastKeys::default();
    for (_, name) in segments.iter().rev() {
        let mut lines = Lines::new(File::open(dir.join(name))?);
        let mut started = false;
        let mut checkpoint = None;
        let mut token = None;
        while let Some((_, line)) = lines.next_line()? {
            let Line::Complete(bytes) = line else { break };
            let Ok(fields) = ChainFields::parse(bytes) else {
                continue;
            };
            if !matches!(fields.kind, ChainKind::Checkpoint | ChainKind::System) {
                continue;
            }
            let Ok(peek) = serde_json::from_slice::<Peek>(bytes) else {
                continue;
            };
            let Some(detail) = peek.detail else { continue };
            match fields.kind {
                ChainKind::Checkpoint => {
                    checkpoint = detail.key_id.map(|kid| (peek.seq, kid));
                }
                _ if detail.event.as_deref() == Some("start") => {
                    started = true;
                    token = detail.token_key_id.map(|kid| (peek.seq, kid));
                }
                _ => {}
            }
        }
        if last.audit.is_none() {
            last.audit = checkpoint;
        }
        if started {
            last.token = token;
            break;
        }
    }
    Ok(last)
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
    if let Some((seq, kid)) = &last.audit
        && !known(kid, &keys.audit)
    {
        return Err(KeysChanged::Audit {
            dir: dir.to_path_buf(),
            seq: *seq,
            expected: kid.clone(),
            found: keys.audit.0.to_owned(),
        });
    }
    if let (Some((seq, kid)), Some(token)) = (&last.token, &keys.token)
        && !known(kid, token)
    {
        return Err(KeysChanged::Token {
            dir: dir.to_path_buf(),
            seq: *seq,
            expected: kid.clone(),
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
        assert_eq!(read(&dir).unwrap(), LastKeys::default(), "a fresh start");
        run(&dir, 1, "token-a").await;
        let signer = run(&dir, 1, "token-b").await;
        let last = read(&dir).unwrap();
        assert_eq!(last.audit.as_ref().unwrap().1, signer.key_id());
        assert_eq!(last.token.as_ref().unwrap().1, "token-b", "the last run's");

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
}
