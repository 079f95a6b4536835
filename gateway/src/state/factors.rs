//! The second-factor repository: each approver's TOTP enrolment and WebAuthn passkeys. Secrets
//! arrive sealed (encrypted by the caller) and are stored as opaque bytes; passkeys as the
//! JSON the WebAuthn library serializes. The steps that stop a replay are atomic here: a TOTP
//! time step is accepted only if it is later than the last one accepted. The wrong-code brake
//! lives here too, so that every replica (and every command line) counts the same attempts.

use futures_util::future::BoxFuture;

use super::error::StateError;

/// An approver's TOTP enrolment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpEnrolment {
    /// The approver's subject.
    pub subject: String,
    /// The shared secret, sealed by the caller; opaque to the store.
    pub sealed_secret: Vec<u8>,
    /// The last time step a code was accepted for; no code of it or before is accepted again.
    pub last_step: Option<i64>,
    /// When the enrolment was started, in milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// When the approver proved the enrolment with a first code; unconfirmed enrolments are
    /// not a second factor yet.
    pub confirmed_ms: Option<i64>,
}

/// One of an approver's WebAuthn passkeys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebauthnCredential {
    /// The credential id the authenticator gave (unique across approvers).
    pub credential_id: Vec<u8>,
    /// The approver's subject.
    pub subject: String,
    /// The passkey as the WebAuthn library serializes it (JSON).
    pub passkey: String,
    /// The authenticator's signature counter after the last use.
    pub sign_count: u32,
    pub created_ms: i64,
    pub last_used_ms: Option<i64>,
}

/// What the wrong-code brake made of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeAttempt {
    /// Counted (as wrong until cleared or given back): its code may be checked.
    Counted,
    /// Refused: too many wrong codes in the window that began at `since_ms`.
    Refused { since_ms: i64 },
}

/// Second-factor enrolments in the state store. Every method is one transaction.
pub trait FactorRepository: Send + Sync {
    /// `subject`'s TOTP enrolment, if any.
    fn totp<'a>(
        &'a self,
        subject: &'a str,
    ) -> BoxFuture<'a, Result<Option<TotpEnrolment>, StateError>>;

    /// Starts a TOTP enrolment for `subject` with `sealed_secret`, replacing an unconfirmed
    /// one; a confirmed enrolment is kept (remove it first). Returns whether it was stored.
    fn begin_totp<'a>(
        &'a self,
        subject: &'a str,
        sealed_secret: Vec<u8>,
    ) -> BoxFuture<'a, Result<bool, StateError>>;

    /// Accepts a code of time step `step` for `subject` only if `step` is later than the last
    /// accepted one, and records it; with `confirm`, the enrolment is confirmed as well.
    /// `false`: a replayed or older step, or no enrolment.
    fn accept_totp_step<'a>(
        &'a self,
        subject: &'a str,
        step: i64,
        confirm: bool,
    ) -> BoxFuture<'a, Result<bool, StateError>>;

    /// Removes `subject`'s TOTP enrolment; whether there was one.
    fn remove_totp<'a>(&'a self, subject: &'a str) -> BoxFuture<'a, Result<bool, StateError>>;

    /// `subject`'s passkeys, oldest first.
    fn webauthn_credentials<'a>(
        &'a self,
        subject: &'a str,
    ) -> BoxFuture<'a, Result<Vec<WebauthnCredential>, StateError>>;

    /// Adds a passkey for `subject`; `false` when its credential id is registered already.
    fn add_webauthn<'a>(
        &'a self,
        subject: &'a str,
        credential_id: &'a [u8],
        passkey: String,
        sign_count: u32,
    ) -> BoxFuture<'a, Result<bool, StateError>>;

    /// Records a use of passkey `credential_id` of `subject`: its updated serialization and
    /// counter. A counter that does not grow (a cloned authenticator) is refused unless both
    /// are 0 (authenticators without a counter). `false`: refused, or no such passkey.
    fn use_webauthn<'a>(
        &'a self,
        subject: &'a str,
        credential_id: &'a [u8],
        passkey: String,
        sign_count: u32,
    ) -> BoxFuture<'a, Result<bool, StateError>>;

    /// Removes passkey `credential_id` of `subject`; whether there was one.
    fn remove_webauthn<'a>(
        &'a self,
        subject: &'a str,
        credential_id: &'a [u8],
    ) -> BoxFuture<'a, Result<bool, StateError>>;

    /// Counts an attempt of one person, known by `names`, at `now_ms` against the brake, in
    /// one transaction (attempts made at once, on any replica, cannot pass it together): it is
    /// counted under every one of `names`, and refused (counted under none) while any of them
    /// has `max` attempts counted in a window begun after `window_start_ms`; a window begun at
    /// or before it is over, and this attempt begins a new one.
    fn count_code_attempt<'a>(
        &'a self,
        names: &'a [String],
        now_ms: i64,
        window_start_ms: i64,
        max: u32,
    ) -> BoxFuture<'a, Result<CodeAttempt, StateError>>;

    /// Gives back one counted attempt under each of `names` (it failed for another reason
    /// than its code).
    fn give_back_code_attempt<'a>(
        &'a self,
        names: &'a [String],
    ) -> BoxFuture<'a, Result<(), StateError>>;

    /// Forgets the counted attempts under each of `names` (a right code).
    fn clear_code_attempts<'a>(
        &'a self,
        names: &'a [String],
    ) -> BoxFuture<'a, Result<(), StateError>>;

    /// Removes the counts whose window began at or before `window_start_ms` (over: they brake
    /// no one any more); how many.
    fn purge_code_attempts(&self, window_start_ms: i64) -> BoxFuture<'_, Result<u64, StateError>>;
}

/// `names` as the brake's statements take them: each once, in order (so that transactions
/// counting several people's names take their row locks in one order and cannot deadlock).
pub(crate) fn attempt_keys(names: &[String]) -> Vec<String> {
    let mut keys = names.to_vec();
    keys.sort();
    keys.dedup();
    keys
}
