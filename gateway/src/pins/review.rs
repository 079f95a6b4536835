//! What `warden tools list|approve|diff|forget` show and do, against the state store directly
//! (a running Warden learns of approvals, and of pins forgotten, at its next refresh).

use std::fmt::Write as _;

use serde_json::Value;

use super::config::{PinsConfig, approval_counts};
use super::definition::{ItemKind, PINNED_NAME_MAX};
use super::diff::unified;
use super::error::PinError;
use super::uri::UriKey;
use crate::action::Finding;
use crate::inspect::tool_description::inspect_listed;
use crate::state::pins::{ApproveOutcome, Approver, PinRecord, PinRepository, Removal};
use crate::text::Quoted;

/// Where a tool stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolState {
    /// Its approved definition counts under the configuration: offered and callable.
    Trusted,
    /// A definition other than the approved one waits for approval: hidden and refused.
    Changed,
    /// Nothing approved counts: hidden and refused until approved.
    Unapproved,
}

impl ToolState {
    /// The state as `warden tools list` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            ToolState::Trusted => "trusted",
            ToolState::Changed => "changed",
            ToolState::Unapproved => "unapproved",
        }
    }
}

/// One pin as an operator reviews it.
#[derive(Debug, Clone)]
pub struct ToolReview {
    /// The stored pin.
    pub record: PinRecord,
    /// Where it stands under the configuration.
    pub state: ToolState,
    /// Hidden instructions in the definition waiting for approval (or else the approved one).
    pub findings: Vec<Finding>,
}

/// Every pin (of `server`, if given), reviewed under `config`.
pub async fn list(
    store: &dyn PinRepository,
    config: &PinsConfig,
    server: Option<&str>,
) -> Result<Vec<ToolReview>, PinError> {
    let all = store.all().await?;
    if let Some(server) = server
        && !all.iter().any(|r| r.server == server)
    {
        return Err(unknown_server(server, &all));
    }
    Ok(all
        .into_iter()
        .filter(|r| server.is_none_or(|s| r.server == s))
        .map(|record| review(record, config))
        .collect())
}

fn review(record: PinRecord, config: &PinsConfig) -> ToolReview {
    let approved_counts = record.approved.as_ref().is_some_and(|(definition, by)| {
        approval_counts(
            config.mode(&record.server),
            by,
            config.approves(&record.server, &record.tool, &definition.digest),
        )
    });
    let state = match (&record.pending, approved_counts) {
        (Some(_), true) => ToolState::Changed,
        (None, true) => ToolState::Trusted,
        (_, false) => ToolState::Unapproved,
    };
    let shown = record
        .pending
        .as_ref()
        .or(record.approved.as_ref().map(|(d, _)| d));
    let findings = shown
        .and_then(|d| serde_json::from_str::<Value>(&d.json).ok())
        .map(|item| inspect_listed(&item))
        .unwrap_or_default();
    ToolReview {
        record,
        state,
        findings,
    }
}

/// `warden tools list`: one block per tool.
pub fn format_list(reviews: &[ToolReview]) -> String {
    let mut out = String::new();
    if reviews.is_empty() {
        out.push_str("no tool definitions pinned yet\n");
    }
    for review in reviews {
        let r = &review.record;
        let _ = writeln!(
            out,
            "{}/{}  {}",
            Quoted::of(&r.server),
            Quoted::with_max(&r.tool, PINNED_NAME_MAX),
            review.state.as_str()
        );
        if let Some(pending) = &r.pending {
            let _ = writeln!(
                out,
                "  offered   {}  since {}",
                pending.digest,
                time(pending.at_ms)
            );
        }
        if let Some((approved, by)) = &r.approved {
            let _ = writeln!(
                out,
                "  approved  {}  by {}, {}",
                approved.digest,
                Quoted::of(&by.to_string()),
                time(approved.at_ms)
            );
        }
        let _ = writeln!(out, "  first seen {}", time(r.first_seen_ms));
        if !review.findings.is_empty() {
            let _ = writeln!(out, "  findings  {}", findings_text(&review.findings));
        }
    }
    out
}

/// Which tools `warden tools approve` approves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every tool of the server with a definition waiting.
    All,
    /// These tools; with `Some(digest)`, only if that is the waiting definition (one tool).
    Named(Vec<String>, Option<String>),
}

/// The pinned name an operator means by `typed`: a resource's URI in the key Warden pins it
/// under (`resource:HTTPS://Host/%7Euser` is `resource:https://host/~user`; a URI with a
/// credential, typed whole, is its masked key), a template's likewise; a key as `warden tools
/// list` shows it, and any other name, as typed.
pub fn pinned_name(typed: &str, key: &UriKey) -> String {
    let kind = ItemKind::of_pinned(typed);
    if !matches!(kind, ItemKind::Resource | ItemKind::ResourceTemplate) {
        return typed.to_owned();
    }
    let rest = &typed[kind.pinned_name("", key).len()..];
    if rest.contains(" (uri hmac ") {
        return typed.to_owned();
    }
    kind.pinned_name(rest, key)
}

/// `warden tools approve`: approves what waits for each selected tool of `server`, as
/// `approver`; the outcome per tool. A named resource or template is found by its key
/// ([`pinned_name`], with `key`).
pub async fn approve(
    store: &dyn PinRepository,
    server: &str,
    selection: &Selection,
    approver: &Approver,
    key: &UriKey,
) -> Result<Vec<(String, ApproveOutcome)>, PinError> {
    let all = store.all().await?;
    let tools: Vec<&PinRecord> = all.iter().filter(|r| r.server == server).collect();
    if tools.is_empty() {
        return Err(unknown_server(server, &all));
    }
    let (names, expected): (Vec<String>, Option<&str>) = match selection {
        Selection::All => (
            tools
                .iter()
                .filter(|r| {
                    r.pending.is_some() || matches!(r.approved, Some((_, Approver::FirstUse)))
                })
                .map(|r| r.tool.clone())
                .collect(),
            None,
        ),
        Selection::Named(names, digest) => (
            names.iter().map(|n| pinned_name(n, key)).collect(),
            digest.as_deref(),
        ),
    };
    for name in &names {
        if !tools.iter().any(|r| &r.tool == name) {
            return Err(unknown_tool(server, name, &tools));
        }
    }
    let mut outcomes = Vec::with_capacity(names.len());
    for name in names {
        let outcome = store
            .approve_pending(server, &name, expected, approver.clone())
            .await?;
        outcomes.push((name, outcome));
    }
    Ok(outcomes)
}

/// Which pins of a server `warden tools forget` drops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forgetting {
    /// Every pin of the server.
    All,
    /// These pins, by pinned name (a resource or template as [`pinned_name`] finds it).
    Named(Vec<String>),
    /// The masked resource and template pins keyed under this factor key id (another
    /// replica's, or one retired): never matched by this Warden.
    KeyId(String),
}

/// `warden tools forget`: the pins of `server` that `forgetting` selects, dropped from the
/// store unless `dry_run` (then only listed), each with who drops it and why (`by`), which
/// every Warden's `tool_change` record of the removal names. A dropped tool is pinned again
/// when next listed (`tofu`), or waits for an operator's approval (`approved`). Returns the
/// pins as they were.
pub async fn forget(
    store: &dyn PinRepository,
    server: &str,
    forgetting: &Forgetting,
    key: &UriKey,
    dry_run: bool,
    by: &Removal,
) -> Result<Vec<PinRecord>, PinError> {
    let all = store.all().await?;
    let pins: Vec<&PinRecord> = all.iter().filter(|r| r.server == server).collect();
    if pins.is_empty() {
        return Err(unknown_server(server, &all));
    }
    let chosen: Vec<PinRecord> = match forgetting {
        Forgetting::All => pins.iter().map(|r| (*r).clone()).collect(),
        Forgetting::Named(names) => {
            let mut chosen = Vec::with_capacity(names.len());
            for typed in names {
                let name = pinned_name(typed, key);
                let Some(record) = pins.iter().find(|r| r.tool == name) else {
                    return Err(unknown_tool(server, &name, &pins));
                };
                if !chosen.iter().any(|c: &PinRecord| c.tool == name) {
                    chosen.push((*record).clone());
                }
            }
            chosen
        }
        Forgetting::KeyId(id) => {
            if id == key.id() {
                return Err(PinError::CurrentKeyId {
                    key_id: Quoted::of(id).to_string(),
                });
            }
            let marker = format!(" (uri hmac {id}:");
            pins.iter()
                .filter(|r| r.tool.contains(&marker))
                .map(|r| (*r).clone())
                .collect()
        }
    };
    if !dry_run {
        for record in &chosen {
            store.forget(server, &record.tool, by).await?;
        }
    }
    Ok(chosen)
}

/// One line per pin `warden tools forget` dropped (or, with `dry_run`, would drop).
pub fn format_forgotten(server: &str, forgotten: &[PinRecord], dry_run: bool) -> String {
    let mut out = String::new();
    let verb = if dry_run { "would forget" } else { "forgot" };
    if forgotten.is_empty() {
        let _ = writeln!(out, "no pin of MCP server {} selected", Quoted::of(server));
    }
    for r in forgotten {
        let approved = match &r.approved {
            Some((d, by)) => format!("approved {} by {}", d.digest, Quoted::of(&by.to_string())),
            None => "never approved".to_owned(),
        };
        let _ = writeln!(
            out,
            "{verb} {}/{}  ({approved})",
            Quoted::of(&r.server),
            Quoted::with_max(&r.tool, PINNED_NAME_MAX),
        );
    }
    out
}

/// `warden tools diff`: what changed from the approved definition to the one waiting, with
/// what the detectors found in it; a resource or template named by its key ([`pinned_name`]).
pub async fn diff(
    store: &dyn PinRepository,
    server: &str,
    tool: &str,
    key: &UriKey,
) -> Result<String, PinError> {
    let tool = &pinned_name(tool, key);
    let Some(record) = store.get(server, tool).await? else {
        let all = store.all().await?;
        let tools: Vec<&PinRecord> = all.iter().filter(|r| r.server == server).collect();
        return Err(if tools.is_empty() {
            unknown_server(server, &all)
        } else {
            unknown_tool(server, tool, &tools)
        });
    };
    let mut out = String::new();
    let approved = record.approved.as_ref().map(|(d, _)| d.json.as_str());
    let waiting = match (&record.pending, &record.approved) {
        (Some(pending), _) => {
            out.push_str(&unified(approved, &pending.json, "approved", "offered"));
            &pending.json
        }
        (None, Some((definition, by))) => {
            let _ = writeln!(
                out,
                "nothing waits for approval: the approved definition ({}, by {}) is the one offered",
                definition.digest,
                Quoted::of(&by.to_string())
            );
            out.push_str(&super::diff::readable(&definition.json));
            &definition.json
        }
        (None, None) => return Ok(out),
    };
    let findings = serde_json::from_str::<Value>(waiting)
        .map(|item| inspect_listed(&item))
        .unwrap_or_default();
    if findings.is_empty() {
        out.push_str("findings: none\n");
    } else {
        let _ = writeln!(out, "findings: {}", findings_text(&findings));
    }
    Ok(out)
}

fn findings_text(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|f| format!("{} in {}", f.detector, f.location))
        .collect::<Vec<_>>()
        .join("; ")
}

fn time(ms: i64) -> String {
    let at =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(at).to_string()
}

fn unknown_server(server: &str, all: &[PinRecord]) -> PinError {
    let mut servers: Vec<String> = all
        .iter()
        .map(|r| Quoted::of(&r.server).to_string())
        .collect();
    servers.dedup();
    PinError::UnknownServer {
        server: Quoted::of(server).to_string(),
        known: if servers.is_empty() {
            "none".into()
        } else {
            servers.join(", ")
        },
    }
}

fn unknown_tool(server: &str, tool: &str, tools: &[&PinRecord]) -> PinError {
    PinError::UnknownTool {
        server: Quoted::of(server).to_string(),
        tool: Quoted::of(tool).to_string(),
        known: tools
            .iter()
            .map(|r| Quoted::of(&r.tool).to_string())
            .collect::<Vec<_>>()
            .join(", "),
    }
}
