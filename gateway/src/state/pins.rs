//! The pin repository: approved and pending tool definitions per MCP server, as the state
//! store keeps them. The rules (what is trusted, in which mode) live in `pins/`; this is only
//! what is stored and the atomic steps that change it.

use futures_util::future::BoxFuture;

use super::error::StateError;

/// Now, in milliseconds since the Unix epoch (how the store keeps times).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// One tool definition as stored: its digest and its canonical JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDefinition {
    /// `sha256:<64 hex digits>` over `json`.
    pub digest: String,
    /// The definition's canonical JSON (RFC 8785).
    pub json: String,
    /// When it was approved (for the approved definition) or first seen (for a pending one),
    /// in milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// Who approved a definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approver {
    /// Trusted on first use (`pins.mode: tofu`): nobody looked at it.
    FirstUse,
    /// Listed in the configuration (`pins.approved`).
    Configuration,
    /// An operator, with `warden tools approve` (the name is the operator's login).
    Operator(String),
}

impl Approver {
    /// The approver as stored: `first_use`, `configuration` or `operator:<name>`.
    pub fn to_stored(&self) -> String {
        match self {
            Approver::FirstUse => "first_use".into(),
            Approver::Configuration => "configuration".into(),
            Approver::Operator(name) => format!("operator:{name}"),
        }
    }

    /// The approver from its stored text; `None` when it is not one this Warden writes.
    pub fn from_stored(text: &str) -> Option<Approver> {
        match text {
            "first_use" => Some(Approver::FirstUse),
            "configuration" => Some(Approver::Configuration),
            _ => text
                .strip_prefix("operator:")
                .map(|name| Approver::Operator(name.to_string())),
        }
    }
}

impl std::fmt::Display for Approver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Approver::FirstUse => f.write_str("first use"),
            Approver::Configuration => f.write_str("configuration"),
            Approver::Operator(name) => write!(f, "{name}"),
        }
    }
}

/// What the store knows about one tool of one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinRecord {
    /// The MCP server (its name in Warden's configuration).
    pub server: String,
    /// The tool's name as the server gives it.
    pub tool: String,
    /// When Warden first saw the tool, in milliseconds since the Unix epoch.
    pub first_seen_ms: i64,
    /// The approved definition and who approved it.
    pub approved: Option<(StoredDefinition, Approver)>,
    /// A definition seen since, not approved: the tool is held until it is.
    pub pending: Option<StoredDefinition>,
}

/// Who removed a pin with `warden tools forget`, and why: what each Warden's `tool_change`
/// record of the removal names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    /// The operator (`--as`, else the login that ran the command).
    pub by: String,
    /// Their `--reason`, if given.
    pub reason: Option<String>,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// How long the store keeps who removed a pin: long enough for every Warden to have read it
/// (they read the pins again every `pins.refresh_interval`, seconds), then tidied away by the
/// next removal.
pub const REMOVAL_KEPT_MS: i64 = 7 * 24 * 3600 * 1000;

/// What [`PinRepository::approve_pending`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApproveOutcome {
    /// The pending definition (or a first-use pin) is now approved by the operator.
    Approved(PinRecord),
    /// Nothing to approve: the approved definition was already approved by an operator or the
    /// configuration, and nothing is pending.
    AlreadyApproved(PinRecord),
    /// The definition waiting for approval is not the one the caller expected (it changed
    /// since the caller looked): nothing was approved.
    DigestMismatch(PinRecord),
    /// The store has no such tool.
    Unknown,
}

/// Tool-definition pins in the state store. Every method is one transaction; each change bumps
/// the pins revision, which other processes read to learn that their copy is stale.
///
/// SQLite implements it in `state/sqlite/pins.rs`, PostgreSQL in `state/postgres/pins.rs` with
/// the same table (`INSERT … ON CONFLICT`, a row-locked revision counter), so several replicas
/// agree through the database.
pub trait PinRepository: Send + Sync {
    /// Every pin.
    fn all(&self) -> BoxFuture<'_, Result<Vec<PinRecord>, StateError>>;

    /// The pin of `tool` on `server`, if there is one.
    fn get<'a>(
        &'a self,
        server: &'a str,
        tool: &'a str,
    ) -> BoxFuture<'a, Result<Option<PinRecord>, StateError>>;

    /// Pins `definition` as approved on first use unless the tool already has a pin; returns
    /// the pin as stored afterwards and whether this call created it.
    fn pin_first_use<'a>(
        &'a self,
        server: &'a str,
        tool: &'a str,
        definition: StoredDefinition,
    ) -> BoxFuture<'a, Result<(PinRecord, bool), StateError>>;

    /// Records `definition` as waiting for approval, unless it is already the approved or the
    /// pending one; returns the pin afterwards and whether this call recorded it.
    fn propose<'a>(
        &'a self,
        server: &'a str,
        tool: &'a str,
        definition: StoredDefinition,
    ) -> BoxFuture<'a, Result<(PinRecord, bool), StateError>>;

    /// Makes `definition` the approved one (by `approver`), creating the pin if needed; a
    /// pending definition with the same digest is cleared, another one stays.
    fn approve_definition<'a>(
        &'a self,
        server: &'a str,
        tool: &'a str,
        definition: StoredDefinition,
        approver: Approver,
    ) -> BoxFuture<'a, Result<PinRecord, StateError>>;

    /// Approves what waits: the pending definition, or else a definition trusted only on first
    /// use. With `expected`, only if that is its digest.
    fn approve_pending<'a>(
        &'a self,
        server: &'a str,
        tool: &'a str,
        expected: Option<&'a str>,
        approver: Approver,
    ) -> BoxFuture<'a, Result<ApproveOutcome, StateError>>;

    /// Replaces the pin of `tool` on `server` with `with` (the same item under the name Warden
    /// now pins it under, with its definitions as it now spells them), or removes it with
    /// `None`; when `with`'s name has a pin already, that one stays as it is. Returns whether
    /// the pin of `tool` was there.
    fn replace<'a>(
        &'a self,
        server: &'a str,
        tool: &'a str,
        with: Option<PinRecord>,
    ) -> BoxFuture<'a, Result<bool, StateError>>;

    /// Removes the pin of `tool` on `server` (`warden tools forget`) and, in the same
    /// transaction, records who removed it and why (`by`), replacing what an earlier removal
    /// of that pin recorded and tidying away what is older than [`REMOVAL_KEPT_MS`].
    /// Returns whether the pin was there (nothing is recorded when it was not).
    fn forget<'a>(
        &'a self,
        server: &'a str,
        tool: &'a str,
        by: &'a Removal,
    ) -> BoxFuture<'a, Result<bool, StateError>>;

    /// Who last removed the pin of `tool` on `server` with [`forget`](Self::forget), if the
    /// store still knows.
    fn forgotten_by<'a>(
        &'a self,
        server: &'a str,
        tool: &'a str,
    ) -> BoxFuture<'a, Result<Option<Removal>, StateError>>;

    /// The pins revision: it changes whenever a pin changes, in any process.
    fn revision(&self) -> BoxFuture<'_, Result<i64, StateError>>;
}

/// The columns of a pin, in [`PinRow`]'s order.
pub(crate) const PIN_COLUMNS: &str = "server, tool, first_seen_ms, approved_digest, \
     approved_json, approved_at_ms, approved_by, pending_digest, pending_json, pending_since_ms";

/// One row's columns, as stored.
pub(crate) type PinRow = (
    String,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
);

/// The columns of `record`, in [`PIN_COLUMNS`]' order.
pub(crate) fn pin_row(record: PinRecord) -> PinRow {
    let (a_digest, a_json, a_at, a_by) = match record.approved {
        Some((d, by)) => (
            Some(d.digest),
            Some(d.json),
            Some(d.at_ms),
            Some(by.to_stored()),
        ),
        None => (None, None, None, None),
    };
    let (p_digest, p_json, p_since) = match record.pending {
        Some(d) => (Some(d.digest), Some(d.json), Some(d.at_ms)),
        None => (None, None, None),
    };
    (
        record.server,
        record.tool,
        record.first_seen_ms,
        a_digest,
        a_json,
        a_at,
        a_by,
        p_digest,
        p_json,
        p_since,
    )
}

/// The pin a row holds; `store` names the store in errors.
pub(crate) fn pin_record(row: PinRow, store: &str) -> Result<PinRecord, StateError> {
    let (server, tool, first_seen_ms, a_digest, a_json, a_at, a_by, p_digest, p_json, p_since) =
        row;
    let corrupt = |what: &str| StateError::Corrupt {
        store: store.to_owned(),
        what: format!("{what} of tool pin {server:?}/{tool:?}"),
    };
    let approved = match (a_digest, a_json, a_at, a_by) {
        (None, None, None, None) => None,
        (Some(digest), Some(json), Some(at_ms), Some(by)) => {
            let approver = Approver::from_stored(&by).ok_or_else(|| corrupt("approver"))?;
            Some((
                StoredDefinition {
                    digest,
                    json,
                    at_ms,
                },
                approver,
            ))
        }
        _ => return Err(corrupt("approved definition")),
    };
    let pending = match (p_digest, p_json, p_since) {
        (None, None, None) => None,
        (Some(digest), Some(json), Some(at_ms)) => Some(StoredDefinition {
            digest,
            json,
            at_ms,
        }),
        _ => return Err(corrupt("pending definition")),
    };
    if approved.is_none() && pending.is_none() {
        return Err(corrupt("definitions"));
    }
    Ok(PinRecord {
        server,
        tool,
        first_seen_ms,
        approved,
        pending,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approvers_round_trip_through_their_stored_text() {
        for approver in [
            Approver::FirstUse,
            Approver::Configuration,
            Approver::Operator("alice".into()),
        ] {
            assert_eq!(Approver::from_stored(&approver.to_stored()), Some(approver));
        }
        assert_eq!(Approver::from_stored("root"), None);
    }
}
