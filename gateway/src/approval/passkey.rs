//! Passkey second factor (WebAuthn, `webauthn-rs`): register an approver's passkeys, and
//! confirm one decision with one of them, the assertion bound to that exact action.
//!
//! The relying party is the approval console: its id is the host of `approvals.console_url`
//! (a domain name: `localhost` works, an IP address does not) and its only origin that URL's
//! origin. User verification (PIN or biometric) is required in both ceremonies, so a passkey
//! is a second factor on its own and not just a touch.
//!
//! **Binding to an action.** An authentication is started for one user *and* one action: the
//! approval id and the action digest (`sha256:<64 hex digits>`). The ceremony records both
//! beside the challenge it sent, and its finish refuses a user, approval id or digest other
//! than the recorded ones before it looks at the assertion. An assertion signs its challenge,
//! and each ceremony has its own random challenge, so an assertion made while approving A
//! fails the challenge check of any ceremony started for B; and the ceremony started for A
//! cannot finish for B. Ceremonies are single use: a finish for the right user and action
//! consumes the ceremony whatever its outcome (a wrong user or action leaves it alone, so a
//! stray request cannot cancel someone else's approval).
//!
//! **Where ceremony state lives.** Between its start and finish (two HTTP requests), a
//! ceremony's state stays in this process's memory, keyed by a random 128-bit id, for at most
//! [`CEREMONY_TTL`] (the browser is given the same timeout), and at most [`MAX_CEREMONIES`] at
//! once. It never leaves the process, so `webauthn-rs`'s `danger-allow-state-serialisation`
//! is not needed; single use is a `remove` from a map, not a record of used challenges; and a
//! restart simply cancels ceremonies in flight. The price: behind several replicas, a start
//! and its finish must reach the same replica (the console's session affinity), which is
//! what a browser doing a ceremony within seconds does with any sticky load balancer.
//!
//! **What is stored.** [`StoredPasskey`]: the credential id (base64url), the signature
//! counter, and the `webauthn-rs` credential as JSON, which the store keeps as opaque text.
//! It holds public keys only, but is still credential material: it is never logged. After
//! each authentication the store replaces the credential with the updated one, and should
//! refuse, atomically, a counter not newer than the one it holds (as it does TOTP steps).

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use webauthn_rs::prelude::{
    Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Uuid, Webauthn, WebauthnBuilder, WebauthnError,
};

use super::config::ApprovalsConfig;

/// How long a ceremony may take from its start to its finish.
pub const CEREMONY_TTL: Duration = Duration::from_secs(300);
/// Ceremonies under way at once in one process; more are refused until some finish or expire.
pub const MAX_CEREMONIES: usize = 10_000;
/// Ceremonies one user may have under way: one signed-in approver cannot crowd out the rest.
pub const MAX_CEREMONIES_PER_USER: usize = 16;
/// The relying party name authenticators show.
pub const RP_NAME: &str = "Warden";

/// Why a passkey ceremony cannot be started or was refused.
#[derive(Debug, thiserror::Error)]
pub enum PasskeyError {
    /// Passkeys need to know the console's address.
    #[error(
        "passkeys need approvals.console_url: the console's address is the relying party id and origin"
    )]
    NoConsoleUrl,
    /// The console URL cannot be a WebAuthn relying party.
    #[error("approvals.console_url {url:?} cannot be a passkey relying party: {reason}")]
    RelyingParty { url: String, reason: String },
    /// No ceremony under way has this id.
    #[error("no passkey ceremony under this id: it expired, was already used, or never started")]
    UnknownCeremony,
    /// The ceremony is of the other kind (registration for authentication, or back).
    #[error("this passkey ceremony is for {0}, not the other kind of ceremony")]
    WrongKind(&'static str),
    /// The ceremony was started for another user.
    #[error("this passkey ceremony was started for another user")]
    OtherUser,
    /// The ceremony was started for another approval, action or intent.
    #[error(
        "this passkey ceremony confirms {} of approval {} with digest {}, not {} of approval {} with digest {}",
        expected.intent, expected.approval_id, expected.digest,
        given.intent, given.approval_id, given.digest
    )]
    OtherAction {
        expected: Box<ActionBinding>,
        given: Box<ActionBinding>,
    },
    /// The intent is empty, too long or not a plain word.
    #[error("a passkey ceremony's intent is a word of 1 to 32 letters, digits or dashes")]
    Intent,
    /// The action digest is not `sha256:` and 64 lowercase hex digits.
    #[error("{0:?} is not an action digest (sha256: and 64 lowercase hex digits)")]
    Digest(String),
    /// The approval id is empty or too long.
    #[error("an approval id has 1 to 200 characters")]
    ApprovalId,
    /// The user has no passkey to authenticate with.
    #[error("this user has no passkey registered")]
    NoPasskey,
    /// The user's id, name or display name is empty or too long.
    #[error("a passkey user's {0} has 1 to 200 characters")]
    User(&'static str),
    /// Too many ceremonies are under way.
    #[error("too many passkey ceremonies are under way; try again in a minute")]
    Busy,
    /// This user has too many ceremonies under way.
    #[error(
        "you have {0} passkey ceremonies under way already; finish or cancel one, or wait a minute"
    )]
    UserBusy(usize),
    /// The browser's answer is not a WebAuthn credential.
    #[error("the browser's answer is not a WebAuthn credential: {0}")]
    Malformed(String),
    /// `webauthn-rs` refused the credential (challenge, origin, signature, user verification…).
    #[error("the passkey was refused: {0}")]
    Refused(#[source] WebauthnError),
    /// The new passkey is already registered to this user.
    #[error("this passkey is already registered")]
    AlreadyRegistered,
    /// The assertion is from a credential not (or no longer) registered to this user.
    #[error("the passkey used is not registered to this user")]
    NotRegistered,
    /// The signature counter did not increase: the authenticator may have been cloned.
    #[error(
        "the passkey's signature counter went from {stored} to {seen}, not up: the authenticator may have been cloned"
    )]
    CounterNotIncreased { stored: u32, seen: u32 },
    /// The authenticator did not verify the user.
    #[error("the authenticator did not verify the user (PIN or biometric)")]
    NotVerified,
    /// A stored credential cannot be read.
    #[error("a stored passkey cannot be read: {0}")]
    Stored(String),
}

/// The approver a passkey belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyUser {
    /// The stable user id (the SSO subject); authenticators get a digest of it as user handle.
    pub id: String,
    /// The account name authenticators show (`alice@example.com`).
    pub name: String,
    /// The person's name authenticators show.
    pub display_name: String,
}

/// What an authentication confirms: one approval, the digest of its exact action, and what
/// the approver does with it (`approve`, `deny`): an assertion started to deny cannot approve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionBinding {
    /// The approval id.
    pub approval_id: String,
    /// The action digest, `sha256:<64 lowercase hex digits>`.
    pub digest: String,
    /// What the assertion confirms (`approve`, `deny`, or another step such as `verify`).
    pub intent: String,
}

/// A registered passkey as the state store keeps it.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredPasskey {
    /// The credential id, base64url without padding (the store's lookup key).
    pub credential_id: String,
    /// The signature counter last accepted (0 for authenticators that keep none).
    pub counter: u32,
    /// The `webauthn-rs` credential as JSON: opaque to the store.
    pub json: String,
}

impl fmt::Debug for StoredPasskey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredPasskey")
            .field("credential_id", &self.credential_id)
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

/// A started ceremony: its id (to send back with the finish) and the options for the browser.
#[derive(Debug, Clone)]
pub struct Started {
    /// The ceremony's id, 22 base64url characters.
    pub ceremony: String,
    /// `{"publicKey": {...}}`: `publicKey` is what `PublicKeyCredential.
    /// parseCreationOptionsFromJSON` (registration) or `parseRequestOptionsFromJSON`
    /// (authentication) takes.
    pub options: serde_json::Value,
}

/// A successful authentication.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The passkey used, with its new counter: the store replaces the one it holds.
    pub passkey: StoredPasskey,
    /// Whether the authenticator verified the user (always true: it is required).
    pub user_verified: bool,
}

enum Ceremony {
    Registration {
        user: String,
        state: PasskeyRegistration,
    },
    Authentication {
        user: String,
        binding: ActionBinding,
        state: PasskeyAuthentication,
    },
}

impl Ceremony {
    fn user(&self) -> &str {
        match self {
            Ceremony::Registration { user, .. } | Ceremony::Authentication { user, .. } => user,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Ceremony::Registration { .. } => "registration",
            Ceremony::Authentication { .. } => "authentication",
        }
    }
}

struct Pending {
    expires: Instant,
    ceremony: Ceremony,
}

/// The console's passkey relying party with its ceremonies under way.
pub struct Passkeys {
    webauthn: Webauthn,
    rp_id: String,
    origin: String,
    ttl: Duration,
    pending: Mutex<HashMap<String, Pending>>,
}

impl fmt::Debug for Passkeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Passkeys")
            .field("rp_id", &self.rp_id)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl Passkeys {
    /// The relying party of `approvals.console_url`.
    pub fn from_config(config: &ApprovalsConfig) -> Result<Passkeys, PasskeyError> {
        let url = config
            .console_url
            .as_deref()
            .ok_or(PasskeyError::NoConsoleUrl)?;
        Passkeys::new(url)
    }

    /// The relying party of the console at `console_url`: id its host, origin its origin.
    pub fn new(console_url: &str) -> Result<Passkeys, PasskeyError> {
        Passkeys::with_ttl(console_url, CEREMONY_TTL)
    }

    /// Like [`Passkeys::new`], ceremonies lasting `ttl`.
    pub fn with_ttl(console_url: &str, ttl: Duration) -> Result<Passkeys, PasskeyError> {
        let refuse = |reason: &str| PasskeyError::RelyingParty {
            url: console_url.to_owned(),
            reason: reason.to_owned(),
        };
        let url = crate::config::url::secure_url(console_url).map_err(|m| refuse(&m))?;
        let Some(host) = url.domain().map(str::to_owned) else {
            return Err(refuse(
                "WebAuthn relying parties are domain names, not IP addresses; use \
                 http://localhost:<port> for a console on this machine",
            ));
        };
        let origin = url.origin().ascii_serialization();
        let origin_url = Url::parse(&origin).map_err(|e| refuse(&e.to_string()))?;
        let webauthn = WebauthnBuilder::new(&host, &origin_url)
            .and_then(|b| b.rp_name(RP_NAME).timeout(ttl).build())
            .map_err(|e| refuse(&e.to_string()))?;
        Ok(Passkeys {
            webauthn,
            rp_id: host,
            origin,
            ttl,
            pending: Mutex::new(HashMap::new()),
        })
    }

    /// The relying party id (the console's host).
    pub fn rp_id(&self) -> &str {
        &self.rp_id
    }

    /// The only origin ceremonies are accepted from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Starts registering a new passkey for `user`; the authenticator is told to refuse
    /// making a second passkey for the user where it already holds one of `existing`.
    pub fn start_registration(
        &self,
        user: &PasskeyUser,
        existing: &[StoredPasskey],
    ) -> Result<Started, PasskeyError> {
        check_user(user)?;
        let exclude = existing
            .iter()
            .map(|p| parse_stored(p).map(|k| k.cred_id().clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let (options, state) = self
            .webauthn
            .start_passkey_registration(
                user_handle(&user.id),
                &user.name,
                &user.display_name,
                Some(exclude),
            )
            .map_err(PasskeyError::Refused)?;
        let options = serde_json::to_value(&options)
            .map_err(|e| PasskeyError::Malformed(format!("options: {e}")))?;
        let ceremony = self.insert(Ceremony::Registration {
            user: user.id.clone(),
            state,
        })?;
        Ok(Started { ceremony, options })
    }

    /// Finishes the registration `ceremony` of `user` with the browser's answer (the JSON of
    /// `PublicKeyCredential.toJSON()`); the new passkey is for the store to keep. The store
    /// must still refuse a credential id registered to anyone else.
    pub fn finish_registration(
        &self,
        ceremony: &str,
        user: &str,
        existing: &[StoredPasskey],
        response: &str,
    ) -> Result<StoredPasskey, PasskeyError> {
        let Ceremony::Registration { state, .. } = self.take(ceremony, |c| match c {
            Ceremony::Registration { user: u, .. } if u != user => Err(PasskeyError::OtherUser),
            Ceremony::Registration { .. } => Ok(()),
            other => Err(PasskeyError::WrongKind(other.kind())),
        })?
        else {
            return Err(PasskeyError::WrongKind("authentication"));
        };
        let response: RegisterPublicKeyCredential =
            serde_json::from_str(response).map_err(|e| PasskeyError::Malformed(e.to_string()))?;
        let passkey = self
            .webauthn
            .finish_passkey_registration(&response, &state)
            .map_err(PasskeyError::Refused)?;
        let stored = to_stored(&passkey)?;
        if existing
            .iter()
            .any(|p| p.credential_id == stored.credential_id)
        {
            return Err(PasskeyError::AlreadyRegistered);
        }
        Ok(stored)
    }

    /// Starts an authentication of `user` with one of `passkeys`, confirming `action` only.
    pub fn start_authentication(
        &self,
        user: &str,
        passkeys: &[StoredPasskey],
        action: &ActionBinding,
    ) -> Result<Started, PasskeyError> {
        check_action(action)?;
        if passkeys.is_empty() {
            return Err(PasskeyError::NoPasskey);
        }
        let keys = passkeys
            .iter()
            .map(parse_stored)
            .collect::<Result<Vec<_>, _>>()?;
        let (options, state) = self
            .webauthn
            .start_passkey_authentication(&keys)
            .map_err(PasskeyError::Refused)?;
        let options = serde_json::to_value(&options)
            .map_err(|e| PasskeyError::Malformed(format!("options: {e}")))?;
        let ceremony = self.insert(Ceremony::Authentication {
            user: user.to_owned(),
            binding: action.clone(),
            state,
        })?;
        Ok(Started { ceremony, options })
    }

    /// Finishes the authentication `ceremony` of `user` for `action` with the browser's
    /// answer (the JSON of `PublicKeyCredential.toJSON()`). `passkeys` are the user's passkeys
    /// as stored now: one removed since the start is refused, and the counter must exceed the
    /// stored one (unless both are 0).
    pub fn finish_authentication(
        &self,
        ceremony: &str,
        user: &str,
        action: &ActionBinding,
        passkeys: &[StoredPasskey],
        response: &str,
    ) -> Result<Authenticated, PasskeyError> {
        check_action(action)?;
        let Ceremony::Authentication { state, .. } = self.take(ceremony, |c| match c {
            Ceremony::Authentication { user: u, .. } if u != user => Err(PasskeyError::OtherUser),
            Ceremony::Authentication { binding, .. } if binding != action => {
                Err(PasskeyError::OtherAction {
                    expected: Box::new(binding.clone()),
                    given: Box::new(action.clone()),
                })
            }
            Ceremony::Authentication { .. } => Ok(()),
            other => Err(PasskeyError::WrongKind(other.kind())),
        })?
        else {
            return Err(PasskeyError::WrongKind("registration"));
        };
        let response: PublicKeyCredential =
            serde_json::from_str(response).map_err(|e| PasskeyError::Malformed(e.to_string()))?;
        let result = self
            .webauthn
            .finish_passkey_authentication(&response, &state)
            .map_err(PasskeyError::Refused)?;
        if !result.user_verified() {
            return Err(PasskeyError::NotVerified);
        }
        let used = URL_SAFE_NO_PAD.encode(result.cred_id());
        let stored = passkeys
            .iter()
            .find(|p| p.credential_id == used)
            .ok_or(PasskeyError::NotRegistered)?;
        let seen = result.counter();
        if (seen > 0 || stored.counter > 0) && seen <= stored.counter {
            return Err(PasskeyError::CounterNotIncreased {
                stored: stored.counter,
                seen,
            });
        }
        let mut passkey = parse_stored(stored)?;
        passkey.update_credential(&result);
        Ok(Authenticated {
            passkey: to_stored(&passkey)?,
            user_verified: result.user_verified(),
        })
    }

    /// Ceremonies under way (expired ones not yet dropped included).
    pub fn pending(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        // A panic while holding the lock leaves a map that is still consistent.
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn insert(&self, ceremony: Ceremony) -> Result<String, PasskeyError> {
        let mut id = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut id);
        let id = URL_SAFE_NO_PAD.encode(id);
        let now = Instant::now();
        let mut pending = self.lock();
        if pending.len() >= MAX_CEREMONIES {
            pending.retain(|_, p| p.expires > now);
            if pending.len() >= MAX_CEREMONIES {
                return Err(PasskeyError::Busy);
            }
        }
        let mine = |p: &Pending| p.ceremony.user() == ceremony.user();
        if pending.values().filter(|p| mine(p)).count() >= MAX_CEREMONIES_PER_USER {
            pending.retain(|_, p| p.expires > now);
            if pending.values().filter(|p| mine(p)).count() >= MAX_CEREMONIES_PER_USER {
                return Err(PasskeyError::UserBusy(MAX_CEREMONIES_PER_USER));
            }
        }
        pending.insert(
            id.clone(),
            Pending {
                expires: now + self.ttl,
                ceremony,
            },
        );
        Ok(id)
    }

    /// Removes and returns the ceremony `id` if it has not expired and `accept` accepts it;
    /// a ceremony `accept` refuses stays.
    fn take(
        &self,
        id: &str,
        accept: impl FnOnce(&Ceremony) -> Result<(), PasskeyError>,
    ) -> Result<Ceremony, PasskeyError> {
        let now = Instant::now();
        let mut pending = self.lock();
        let Some(found) = pending.get(id) else {
            return Err(PasskeyError::UnknownCeremony);
        };
        if found.expires <= now {
            pending.remove(id);
            return Err(PasskeyError::UnknownCeremony);
        }
        accept(&found.ceremony)?;
        pending
            .remove(id)
            .map(|p| p.ceremony)
            .ok_or(PasskeyError::UnknownCeremony)
    }
}

/// The user handle authenticators keep: a digest of the user id, so it names no one.
fn user_handle(user_id: &str) -> Uuid {
    let digest = Sha256::new()
        .chain_update(b"warden passkey user handle\0")
        .chain_update(user_id.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::from_bytes(bytes)
}

fn check_user(user: &PasskeyUser) -> Result<(), PasskeyError> {
    for (what, value) in [
        ("id", &user.id),
        ("name", &user.name),
        ("display name", &user.display_name),
    ] {
        if value.trim().is_empty() || value.len() > 200 {
            return Err(PasskeyError::User(what));
        }
    }
    Ok(())
}

fn check_action(action: &ActionBinding) -> Result<(), PasskeyError> {
    if action.approval_id.is_empty() || action.approval_id.len() > 200 {
        return Err(PasskeyError::ApprovalId);
    }
    let hex_ok = action.digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    });
    if !hex_ok {
        return Err(PasskeyError::Digest(action.digest.clone()));
    }
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'-';
    if action.intent.is_empty() || action.intent.len() > 32 || !action.intent.bytes().all(word) {
        return Err(PasskeyError::Intent);
    }
    Ok(())
}

fn parse_stored(stored: &StoredPasskey) -> Result<Passkey, PasskeyError> {
    let passkey: Passkey =
        serde_json::from_str(&stored.json).map_err(|e| PasskeyError::Stored(e.to_string()))?;
    if URL_SAFE_NO_PAD.encode(passkey.cred_id()) != stored.credential_id {
        return Err(PasskeyError::Stored(format!(
            "credential {} holds another credential's JSON",
            stored.credential_id
        )));
    }
    Ok(passkey)
}

fn to_stored(passkey: &Passkey) -> Result<StoredPasskey, PasskeyError> {
    let value = serde_json::to_value(passkey).map_err(|e| PasskeyError::Stored(e.to_string()))?;
    let counter = value
        .pointer("/cred/counter")
        .and_then(serde_json::Value::as_u64)
        .and_then(|c| u32::try_from(c).ok())
        .ok_or_else(|| PasskeyError::Stored("no signature counter".into()))?;
    Ok(StoredPasskey {
        credential_id: URL_SAFE_NO_PAD.encode(passkey.cred_id()),
        counter,
        json: value.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> PasskeyUser {
        PasskeyUser {
            id: "sub-alice".into(),
            name: "alice@example.com".into(),
            display_name: "Alice".into(),
        }
    }

    fn action(id: &str) -> ActionBinding {
        ActionBinding {
            approval_id: id.into(),
            digest: format!("sha256:{}", "ab".repeat(32)),
            intent: "approve".into(),
        }
    }

    #[test]
    fn the_relying_party_is_the_console_host_and_origin() {
        let p = Passkeys::new("https://warden.example.com/console").unwrap();
        assert_eq!(p.rp_id(), "warden.example.com");
        assert_eq!(p.origin(), "https://warden.example.com");
        let p = Passkeys::new("http://localhost:8443").unwrap();
        assert_eq!(p.rp_id(), "localhost");
        assert_eq!(p.origin(), "http://localhost:8443");
        for (url, expected) in [
            ("http://127.0.0.1:8443", "not IP addresses"),
            ("https://[::1]/", "not IP addresses"),
            ("http://warden.example.com", "must use https"),
        ] {
            let err = Passkeys::new(url).unwrap_err().to_string();
            assert!(err.contains(expected), "{url}: {err}");
        }
        assert!(matches!(
            Passkeys::from_config(&ApprovalsConfig::default()),
            Err(PasskeyError::NoConsoleUrl)
        ));
    }

    #[test]
    fn registration_options_require_user_verification_and_exclude_nothing_new() {
        let p = Passkeys::new("https://warden.example.com").unwrap();
        let started = p.start_registration(&alice(), &[]).unwrap();
        let o = &started.options["publicKey"];
        assert_eq!(o["rp"]["id"], "warden.example.com");
        assert_eq!(o["rp"]["name"], "Warden");
        assert_eq!(o["user"]["name"], "alice@example.com");
        assert_eq!(o["user"]["displayName"], "Alice");
        // The handle is a digest, the same for the same user, naming no one.
        assert_ne!(o["user"]["id"], "sub-alice");
        let again = p.start_registration(&alice(), &[]).unwrap();
        assert_eq!(again.options["publicKey"]["user"]["id"], o["user"]["id"]);
        assert_ne!(
            again.options["publicKey"]["challenge"], o["challenge"],
            "every ceremony has its own challenge"
        );
        assert_ne!(again.ceremony, started.ceremony);
        assert_eq!(o["authenticatorSelection"]["userVerification"], "required");
        assert_eq!(o["timeout"], 300_000);
        assert_eq!(p.pending(), 2);
        assert!(matches!(
            p.start_registration(
                &PasskeyUser {
                    name: " ".into(),
                    ..alice()
                },
                &[]
            ),
            Err(PasskeyError::User("name"))
        ));
    }

    #[test]
    fn ceremonies_are_refused_to_another_user_kind_or_after_expiry() {
        let p = Passkeys::new("https://warden.example.com").unwrap();
        let started = p.start_registration(&alice(), &[]).unwrap();
        assert!(matches!(
            p.finish_registration(&started.ceremony, "sub-bob", &[], "{}"),
            Err(PasskeyError::OtherUser)
        ));
        assert!(matches!(
            p.finish_authentication(&started.ceremony, "sub-alice", &action("a"), &[], "{}"),
            Err(PasskeyError::WrongKind("registration"))
        ));
        // Neither consumed it; a malformed answer from the right user does.
        assert_eq!(p.pending(), 1);
        assert!(matches!(
            p.finish_registration(&started.ceremony, "sub-alice", &[], "{}"),
            Err(PasskeyError::Malformed(_))
        ));
        assert!(matches!(
            p.finish_registration(&started.ceremony, "sub-alice", &[], "{}"),
            Err(PasskeyError::UnknownCeremony)
        ));
        let expired = Passkeys::with_ttl("https://warden.example.com", Duration::ZERO).unwrap();
        let started = expired.start_registration(&alice(), &[]).unwrap();
        assert!(matches!(
            expired.finish_registration(&started.ceremony, "sub-alice", &[], "{}"),
            Err(PasskeyError::UnknownCeremony)
        ));
        assert_eq!(expired.pending(), 0);
    }

    #[test]
    fn one_user_cannot_crowd_out_the_others() {
        let p = Passkeys::new("https://warden.example.com").unwrap();
        for _ in 0..MAX_CEREMONIES_PER_USER {
            p.start_registration(&alice(), &[]).unwrap();
        }
        assert!(matches!(
            p.start_registration(&alice(), &[]),
            Err(PasskeyError::UserBusy(_))
        ));
        let bob = PasskeyUser {
            id: "sub-bob".into(),
            name: "bob".into(),
            display_name: "Bob".into(),
        };
        p.start_registration(&bob, &[]).unwrap();
    }

    #[test]
    fn authentication_needs_a_passkey_and_a_well_formed_action() {
        let p = Passkeys::new("https://warden.example.com").unwrap();
        assert!(matches!(
            p.start_authentication("sub-alice", &[], &action("apr_1")),
            Err(PasskeyError::NoPasskey)
        ));
        for digest in [
            "sha256:AB".to_owned(),
            format!("sha256:{}", "AB".repeat(32)),
            format!("sha1:{}", "ab".repeat(32)),
            "ab".repeat(32),
        ] {
            let bad = ActionBinding {
                approval_id: "apr_1".into(),
                digest: digest.clone(),
                intent: "approve".into(),
            };
            assert!(
                matches!(
                    p.start_authentication("sub-alice", &[], &bad),
                    Err(PasskeyError::Digest(_))
                ),
                "{digest}"
            );
        }
        assert!(matches!(
            p.start_authentication("sub-alice", &[], &action("")),
            Err(PasskeyError::ApprovalId)
        ));
        let garbage = StoredPasskey {
            credential_id: "AAAA".into(),
            counter: 0,
            json: "{}".into(),
        };
        assert!(matches!(
            p.start_authentication("sub-alice", std::slice::from_ref(&garbage), &action("a")),
            Err(PasskeyError::Stored(_))
        ));
        assert_eq!(
            format!("{garbage:?}"),
            "StoredPasskey { credential_id: \"AAAA\", counter: 0, .. }"
        );
    }
}
