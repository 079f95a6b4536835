//! [`Pins`]: the verdict on each tool definition an MCP server offers, from memory when the
//! definition is known, from the state store when it is new.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use arc_swap::ArcSwap;
use serde_json::Value;

use super::config::{PinMode, PinsConfig, approval_counts};
use super::definition::{Definition, ItemKind, reserved_for_other_kinds};
use super::diff::unified;
use super::error::PinError;
use super::uri::{StoredKey, Template, UriKey, normalised};
use super::verdict::{CallStatus, PinChange, PinCheck, PinVerdict, Standing};
use crate::action::Finding;
use crate::audit::AuditLog;
use crate::audit::event::{AuditEvent, EventKind};
use crate::inspect::tool_description::inspect_listed;
use crate::state::pins::{Approver, PinRecord, PinRepository, Removal, StoredDefinition, now_ms};

/// Most items of one kind (tools, prompts, resources, resource templates) Warden pins per
/// server: one more is hidden ([`PinError::TooMany`]), so a server that offers ever new items
/// (a resource per file, a fresh URI per listing) cannot grow the store without bound. As many
/// as one list may hold, so one listing never reaches it alone.
pub const PINS_PER_KIND_MAX: usize = 10_000;

/// Tool-definition pins of every MCP server: the rules from the configuration, the store, and
/// a copy of every pin in memory. Shared by every worker (`Arc<Pins>`).
///
/// A definition whose digest is known is judged from memory without waiting for anything. A
/// new or changed one is first recorded in the state store, then judged: if the store fails,
/// the check fails ([`PinError::Store`]) and the tool stays hidden (fail closed).
pub struct Pins {
    rules: ArcSwap<Rules>,
    store: Arc<dyn PinRepository>,
    cache: RwLock<Cache>,
    /// The store's pins revision the cache was loaded at.
    revision: AtomicI64,
    /// Entries this process wrote into the cache (under its lock): a reload whose snapshot
    /// began before one of them would put back what it replaced (a change it held), so it
    /// is not installed.
    writes: AtomicU64,
    /// [`PINS_PER_KIND_MAX`] (smaller in tests).
    per_kind_max: usize,
    /// Held while a new pin is counted against [`PINS_PER_KIND_MAX`] and recorded, so that
    /// two listings cannot both see room for one more.
    new_pin: tokio::sync::Mutex<()>,
    /// What masked resource URIs and templates are keyed with.
    uri_key: UriKey,
}

impl std::fmt::Debug for Pins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pins")
            .field("revision", &self.revision.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The configuration's rules, with its approvals indexed by server and tool.
struct Rules {
    config: PinsConfig,
    approved: HashMap<String, HashMap<String, HashSet<String>>>,
}

impl Rules {
    fn new(config: &PinsConfig) -> Rules {
        let mut approved: HashMap<String, HashMap<String, HashSet<String>>> = HashMap::new();
        for a in &config.approved {
            approved
                .entry(a.server.clone())
                .or_default()
                .entry(a.tool.clone())
                .or_default()
                .insert(a.digest.clone());
        }
        Rules {
            config: config.clone(),
            approved,
        }
    }

    /// Whether the configuration approves this definition.
    fn approves(&self, server: &str, tool: &str, digest: &str) -> bool {
        self.approved
            .get(server)
            .and_then(|tools| tools.get(tool))
            .is_some_and(|digests| digests.contains(digest))
    }

    /// Whether an approval by `approver` counts under these rules.
    fn counts(&self, server: &str, tool: &str, digest: &str, approver: &Approver) -> bool {
        approval_counts(
            self.config.mode(server),
            approver,
            self.approves(server, tool, digest),
        )
    }
}

/// Every pin in memory, by server and pinned name, with how many of each kind each server
/// has.
#[derive(Default)]
struct Cache {
    items: HashMap<String, HashMap<String, Arc<Entry>>>,
    counts: HashMap<(String, ItemKind), usize>,
}

impl Cache {
    fn insert(&mut self, entry: Arc<Entry>) {
        let kind = ItemKind::of_pinned(&entry.tool);
        let server = entry.server.clone();
        let added = self
            .items
            .entry(server.clone())
            .or_default()
            .insert(entry.tool.clone(), entry)
            .is_none();
        if added {
            *self.counts.entry((server, kind)).or_default() += 1;
        }
    }

    fn remove(&mut self, server: &str, tool: &str) {
        let removed = self
            .items
            .get_mut(server)
            .and_then(|items| items.remove(tool))
            .is_some();
        if removed
            && let Some(count) = self
                .counts
                .get_mut(&(server.to_owned(), ItemKind::of_pinned(tool)))
        {
            *count = count.saturating_sub(1);
        }
    }

    fn count(&self, server: &str, kind: ItemKind) -> usize {
        self.counts
            .get(&(server.to_owned(), kind))
            .copied()
            .unwrap_or(0)
    }
}

/// One tool's pin in memory.
struct Entry {
    server: String,
    tool: String,
    approved: Option<Approved>,
    pending: Option<Pending>,
}

struct Approved {
    digest: Arc<str>,
    json: String,
    approver: Approver,
    findings: Vec<Finding>,
}

struct Pending {
    digest: Arc<str>,
    change: Arc<PinChange>,
}

impl Entry {
    fn from_record(record: PinRecord) -> Entry {
        let approved = record.approved.map(|(definition, approver)| Approved {
            digest: Arc::from(definition.digest),
            findings: findings_of(&definition.json),
            json: definition.json,
            approver,
        });
        let pending = record.pending.map(|definition| {
            let change = PinChange {
                server: record.server.clone(),
                tool: record.tool.clone(),
                approved_digest: approved.as_ref().map(|a| Arc::clone(&a.digest)),
                digest: Arc::from(definition.digest),
                diff: unified(
                    approved.as_ref().map(|a| a.json.as_str()),
                    &definition.json,
                    "approved",
                    "offered",
                ),
                findings: findings_of(&definition.json),
            };
            Pending {
                digest: Arc::clone(&change.digest),
                change: Arc::new(change),
            }
        });
        Entry {
            server: record.server,
            tool: record.tool,
            approved,
            pending,
        }
    }

    /// The approved definition as waiting for approval (trusted on first use only, under
    /// `approved` mode).
    fn approved_as_waiting(&self, approved: &Approved) -> Arc<PinChange> {
        Arc::new(PinChange {
            server: self.server.clone(),
            tool: self.tool.clone(),
            approved_digest: None,
            digest: Arc::clone(&approved.digest),
            diff: unified(None, &approved.json, "approved", "offered"),
            findings: approved.findings.clone(),
        })
    }
}

/// The findings in a stored definition (of any kind: a prompt's arguments are read too).
fn findings_of(json: &str) -> Vec<Finding> {
    serde_json::from_str(json)
        .map(|item: Value| inspect_listed(&item))
        .unwrap_or_default()
}

impl Pins {
    /// The pins in `store` under `config`'s rules, loaded into memory, masked URIs keyed with
    /// `uri_key`; pins of resources and templates stored under keys older Wardens gave are
    /// brought up to date first ([`Pins::rekey`]).
    pub async fn load(
        config: &PinsConfig,
        store: Arc<dyn PinRepository>,
        uri_key: UriKey,
    ) -> Result<Pins, PinError> {
        let pins = Pins {
            rules: ArcSwap::from_pointee(Rules::new(config)),
            store,
            cache: RwLock::new(Cache::default()),
            revision: AtomicI64::new(i64::MIN),
            writes: AtomicU64::new(0),
            per_kind_max: PINS_PER_KIND_MAX,
            new_pin: tokio::sync::Mutex::new(()),
            uri_key,
        };
        pins.rekey().await?;
        pins.refresh().await?;
        Ok(pins)
    }

    /// Brings every resource and template pin of the store to the key this Warden gives it.
    /// A URI or template stored as it is (by an older Warden, which masked less or normalised
    /// less) is re-keyed, its definitions re-spelt; a pin whose key held an unkeyed SHA-256
    /// is removed: the item is pinned again when next listed (`tofu`) or waits for an
    /// operator's approval (`approved`). A pin keyed under another factor key is kept (another
    /// replica may hold that key and use the pin, with its approval), and said once: this
    /// Warden does not match it. Returns how many pins changed.
    pub async fn rekey(&self) -> Result<usize, PinError> {
        let mut changed = 0;
        let mut other_keys = std::collections::BTreeMap::<String, usize>::new();
        for record in self.store.all().await? {
            let kind = ItemKind::of_pinned(&record.tool);
            let template = match kind {
                ItemKind::Resource => false,
                ItemKind::ResourceTemplate => true,
                _ => continue,
            };
            let stored = &record.tool[kind.pinned_name("", &self.uri_key).len()..];
            let with = match StoredKey::of(stored, template, &self.uri_key) {
                StoredKey::Current => continue,
                StoredKey::Stale => None,
                StoredKey::OtherKey(id) => {
                    *other_keys.entry(id).or_default() += 1;
                    continue;
                }
                StoredKey::Raw(key) if key == stored => continue,
                StoredKey::Raw(_) => respelt(record.clone(), kind, stored, &self.uri_key),
            };
            let (server, tool) = (record.server.clone(), record.tool.clone());
            let renamed = with.as_ref().map(|r| r.tool.clone());
            if self.store.replace(&server, &tool, with).await? {
                changed += 1;
                tracing::info!(
                    server = %crate::text::Quoted::of(&server),
                    kind = kind.as_str(),
                    from = %crate::text::Quoted::with_max(&kind.shown(stored), super::definition::PINNED_NAME_MAX),
                    to = ?renamed.as_deref().map(|t| crate::text::Quoted::with_max(t, super::definition::PINNED_NAME_MAX).to_string()),
                    "a pin stored under a key an older Warden gave is brought up to date (no `to`: removed, pinned again when next listed)"
                );
            }
        }
        for (id, pins) in other_keys {
            tracing::warn!(
                key_id = %id,
                this_key_id = %self.uri_key.id(),
                pins,
                "resource pins keyed under a factor key this Warden does not hold are kept and not matched here: give every replica the same approvals.factor_key (after a rotation resources pin again under the new key; the old pins stay in the store, shown by `warden tools list`)"
            );
        }
        Ok(changed)
    }

    /// The name the item of `kind` that `server` calls `name` is pinned under.
    pub fn pinned_name(&self, kind: ItemKind, name: &str) -> String {
        kind.pinned_name(name, &self.uri_key)
    }

    /// The mode `server`'s definitions are judged in.
    pub fn mode(&self, server: &str) -> PinMode {
        self.rules.load().config.mode(server)
    }

    /// Applies a reloaded configuration's `pins` section.
    pub fn reconfigure(&self, config: &PinsConfig) {
        self.rules.store(Arc::new(Rules::new(config)));
    }

    /// The verdict on `tool`, one entry of `server`'s `tools/list` result.
    pub async fn check(&self, server: &str, tool: &Value) -> Result<PinCheck, PinError> {
        self.check_item(server, ItemKind::Tool, tool).await
    }

    /// The verdict on `item`, an item of `kind` `server` offers (an entry of its
    /// `prompts/list`, `resources/list` or `resources/templates/list` result, or its
    /// instructions as `instructions_item`); judged and recorded as a tool is, under
    /// its pinned name ([`ItemKind::pinned_name`]).
    pub async fn check_item(
        &self,
        server: &str,
        kind: ItemKind,
        tool: &Value,
    ) -> Result<PinCheck, PinError> {
        let definition = Definition::of_kind(kind, server, tool, &self.uri_key)?;
        let rules = self.rules.load_full();
        if let Some(entry) = self.entry(server, &definition.name)
            && let Some(check) = known(&rules, &entry, &definition.digest)
        {
            return Ok(check);
        }
        if self.entry(server, &definition.name).is_none()
            && self.adopt(server, kind, &definition.name, tool).await?
            && let Some(entry) = self.entry(server, &definition.name)
            && let Some(check) = known(&rules, &entry, &definition.digest)
        {
            return Ok(check);
        }
        self.record(&rules, server, definition, tool).await
    }

    /// Renames to `name` the pin an older Warden keyed the same resource or template under
    /// when its detectors masked another part of the URI (a newer Warden masks more): the
    /// keyed digest at the end of a masked key is over the whole URI, whatever is masked, so
    /// a pin of `server` ending in `name`'s digest is this item's. It keeps its approval, its
    /// definitions spelt as they now are (`item` is the item as listed). Returns whether a
    /// pin was renamed.
    async fn adopt(
        &self,
        server: &str,
        kind: ItemKind,
        name: &str,
        item: &Value,
    ) -> Result<bool, PinError> {
        if !matches!(kind, ItemKind::Resource | ItemKind::ResourceTemplate) {
            return Ok(false);
        }
        let Some(at) = name.rfind(" (uri hmac ") else {
            return Ok(false);
        };
        let digest = &name[at..];
        let orphan = {
            let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
            cache.items.get(server).and_then(|items| {
                items
                    .keys()
                    .find(|pinned| {
                        pinned.ends_with(digest)
                            && pinned.as_str() != name
                            && ItemKind::of_pinned(pinned) == kind
                    })
                    .cloned()
            })
        };
        let (Some(orphan), Some(listed)) = (orphan, item[kind.name_field()].as_str()) else {
            return Ok(false);
        };
        let Some(record) = self.store.get(server, &orphan).await? else {
            return Ok(false);
        };
        let Some(renamed) =
            respelt(record, kind, listed, &self.uri_key).filter(|renamed| renamed.tool == name)
        else {
            return Ok(false);
        };
        self.store.replace(server, &orphan, Some(renamed)).await?;
        // What the store holds under `name` now (a pin another process made meanwhile stays).
        let now = self.store.get(server, name).await?;
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(server, &orphan);
        if let Some(record) = now {
            self.remember(record);
        }
        tracing::info!(
            server = %crate::text::Quoted::of(server),
            kind = kind.as_str(),
            from = %crate::text::Quoted::with_max(&orphan, super::definition::PINNED_NAME_MAX),
            to = %crate::text::Quoted::with_max(name, super::definition::PINNED_NAME_MAX),
            "a pin keyed under an older masking of the same URI (matched by its keyed digest) is renamed, keeping its approval"
        );
        Ok(true)
    }

    /// Where the item of `kind` that `server` calls `name` stands, from memory (no I/O): its
    /// own pin's status, and, for a resource with no pin of its own, that of the resource
    /// templates of `server` its URI matches ([`Pins::template_standing`]); the findings of
    /// what allows it.
    pub fn standing(&self, server: &str, kind: ItemKind, name: &str) -> Standing {
        let pinned = self.pinned_name(kind, name);
        let status = self.use_status(server, kind, name);
        if status == CallStatus::Unknown
            && kind == ItemKind::Resource
            && let Some(twin) = super::uri::empty_path_twin(&normalised(name))
            && self.use_status(server, kind, &twin) == CallStatus::Held
        {
            return Standing {
                status: CallStatus::Held,
                pinned: self.pinned_name(kind, &twin),
                findings: Vec::new(),
            };
        }
        if status == CallStatus::Unknown
            && kind == ItemKind::Resource
            && let Some(standing) = self.template_standing(server, name)
        {
            return standing;
        }
        let findings = match status {
            CallStatus::Allowed => self.findings(server, &pinned),
            _ => Vec::new(),
        };
        Standing {
            status,
            pinned,
            findings,
        }
    }

    /// Where a read of `uri` stands by the resource templates of `server` it matches
    /// ([`Template::matches`], on the normalised URI): allowed when every one that matches
    /// is (with their findings), held when one is not; `None` when none matches.
    pub fn template_standing(&self, server: &str, uri: &str) -> Option<Standing> {
        let uri = normalised(uri);
        let prefix = self.pinned_name(ItemKind::ResourceTemplate, "");
        let matching: Vec<String> = {
            let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
            let items = cache.items.get(server)?;
            items
                .keys()
                .filter(|name| {
                    name.strip_prefix(&prefix)
                        .and_then(Template::parse_key)
                        .is_some_and(|t| t.matches(&uri))
                })
                .cloned()
                .collect()
        };
        let mut findings = Vec::new();
        for pinned in &matching {
            if self.call_status(server, pinned) != CallStatus::Allowed {
                return Some(Standing {
                    status: CallStatus::Held,
                    pinned: pinned.clone(),
                    findings: Vec::new(),
                });
            }
            findings.extend(self.findings(server, pinned));
        }
        let pinned = matching.into_iter().next()?;
        Some(Standing {
            status: CallStatus::Allowed,
            pinned,
            findings,
        })
    }

    /// Whether the item of `kind` that `server` calls `name` (a tool to call, a prompt to get,
    /// a resource to read) may be used, from memory. A tool named like another kind's pinned
    /// name is [`CallStatus::Reserved`]: the pin under that name is the prompt's, resource's
    /// or instructions', never the tool's.
    pub fn use_status(&self, server: &str, kind: ItemKind, name: &str) -> CallStatus {
        if kind == ItemKind::Tool && reserved_for_other_kinds(name) {
            return CallStatus::Reserved;
        }
        self.call_status(server, &self.pinned_name(kind, name))
    }

    /// Whether a call of `tool` on `server` may go ahead, from memory (for a prompt, a
    /// resource or a template, `tool` is its pinned name: `prompt:<name>`).
    pub fn call_status(&self, server: &str, tool: &str) -> CallStatus {
        let Some(entry) = self.entry(server, tool) else {
            return CallStatus::Unknown;
        };
        let rules = self.rules.load();
        match (&entry.approved, &entry.pending) {
            (Some(a), None) if rules.counts(server, tool, &a.digest, &a.approver) => {
                CallStatus::Allowed
            }
            _ => CallStatus::Held,
        }
    }

    /// Whether someone looked at the approved definition of `tool` on `server` (the
    /// configuration or an operator approved it, not trust on first use) and nothing waits.
    pub fn reviewed(&self, server: &str, tool: &str) -> bool {
        self.entry(server, tool).is_some_and(|entry| {
            entry.pending.is_none()
                && entry
                    .approved
                    .as_ref()
                    .is_some_and(|a| a.approver != Approver::FirstUse)
        })
    }

    /// What the hidden-instruction detectors found in the approved definition of `tool` on
    /// `server` (for a `tools/call`'s `context.findings`); empty when none or unknown.
    pub fn findings(&self, server: &str, tool: &str) -> Vec<Finding> {
        self.entry(server, tool)
            .and_then(|entry| entry.approved.as_ref().map(|a| a.findings.clone()))
            .unwrap_or_default()
    }

    /// Reloads every pin from the store if it changed since the last load (an approval by
    /// `warden tools approve`, another replica's pin). Returns whether it reloaded.
    pub async fn refresh(&self) -> Result<bool, PinError> {
        Ok(self.reload().await?.is_some())
    }

    /// [`refresh`](Self::refresh), with the pins that left the store since the last load
    /// (`warden tools forget`; a pin renamed to another key of the same URI is not one):
    /// `None` when it did not reload.
    async fn reload(&self) -> Result<Option<Vec<Removed>>, PinError> {
        let writes = self.writes.load(Ordering::Acquire);
        let revision = self.store.revision().await?;
        let loaded = self.revision.load(Ordering::Acquire);
        if revision == loaded {
            return Ok(None);
        }
        let records = self.store.all().await?;
        let mut cache = Cache::default();
        for record in records {
            cache.insert(Arc::new(Entry::from_record(record)));
        }
        let mut removed = match loaded {
            i64::MIN => Vec::new(),
            _ => removed(
                &self.cache.read().unwrap_or_else(|e| e.into_inner()),
                &cache,
            ),
        };
        // Who removed each: read before the new pins are installed, for a pin written again
        // once this process no longer holds it forgets who removed the old one.
        for gone in &mut removed {
            // Its record names them when the store says, and is written without when it
            // cannot say now (never lost for want of a name).
            gone.by = match self.store.forgotten_by(&gone.server, &gone.tool).await {
                Ok(by) => by,
                Err(error) => {
                    tracing::warn!(%error, "tool pins: cannot read who removed a pin; recording the removal without");
                    None
                }
            };
        }
        let mut installed = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if self.writes.load(Ordering::Acquire) != writes
            || self.revision.load(Ordering::Acquire) != loaded
        {
            // A pin this process recorded meanwhile may be missing from the snapshot, or
            // another refresh installed a newer one (and records what it removed): keep memory
            // as it is; the next refresh loads again if need be.
            return Ok(None);
        }
        *installed = cache;
        self.revision.store(revision, Ordering::Release);
        Ok(Some(removed))
    }

    /// Refreshes every `pins.refresh_interval` on the current runtime, until the pins are
    /// dropped, recording in `audit` each pin that left the store (a `tool_change` record,
    /// `detail.change` `removed`). A failed refresh keeps the pins in memory and is logged.
    pub fn spawn_refresh(self: &Arc<Self>, audit: AuditLog) -> tokio::task::JoinHandle<()> {
        let pins = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(every) = pins
                    .upgrade()
                    .map(|p| p.rules.load_full().config.refresh_interval)
                else {
                    return;
                };
                tokio::time::sleep(every).await;
                let Some(pins) = pins.upgrade() else { return };
                match pins.reload().await {
                    Ok(Some(removed)) => {
                        for gone in removed {
                            tracing::info!(server = %crate::text::Quoted::of(&gone.server), tool = %crate::text::Quoted::with_max(&gone.tool, super::definition::PINNED_NAME_MAX), "a tool pin was removed from the state store (`warden tools forget`)");
                            audit.append_detached(gone.event());
                        }
                    }
                    Ok(None) => {}
                    Err(error) => {
                        tracing::warn!(%error, "tool pins: cannot read approvals from the state store; keeping the pins in memory");
                    }
                }
            }
        })
    }

    fn entry(&self, server: &str, tool: &str) -> Option<Arc<Entry>> {
        self.cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .items
            .get(server)
            .and_then(|tools| tools.get(tool))
            .cloned()
    }

    fn remember(&self, record: PinRecord) -> Arc<Entry> {
        let entry = Arc::new(Entry::from_record(record));
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        cache.insert(Arc::clone(&entry));
        self.writes.fetch_add(1, Ordering::AcqRel);
        entry
    }

    /// Records a definition memory does not judge, then judges it.
    async fn record(
        &self,
        rules: &Rules,
        server: &str,
        definition: Definition,
        tool: &Value,
    ) -> Result<PinCheck, PinError> {
        let name = definition.name.clone();
        let kind = ItemKind::of_pinned(&name);
        // A new pin is counted and recorded under one lock: two listings never both take the
        // last place.
        let _new_pin = match self.entry(server, &name) {
            Some(_) => None,
            None => Some(self.new_pin.lock().await),
        };
        if self.entry(server, &name).is_none() {
            let count = self
                .cache
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .count(server, kind);
            if count >= self.per_kind_max {
                return Err(PinError::TooMany {
                    server: crate::text::Quoted::of(server).to_string(),
                    kind: kind.as_str(),
                    max: self.per_kind_max,
                });
            }
        }
        let digest = Arc::clone(&definition.digest);
        let stored = StoredDefinition {
            digest: digest.to_string(),
            json: definition.canonical,
            at_ms: now_ms(),
        };
        let judged = |entry: &Entry, first_report: bool| {
            known(rules, entry, &digest)
                .map(|check| PinCheck {
                    first_report,
                    ..check
                })
                .unwrap_or_else(|| PinCheck {
                    verdict: PinVerdict::Unapproved(Arc::new(PinChange {
                        server: server.to_owned(),
                        tool: name.clone(),
                        approved_digest: None,
                        digest: Arc::clone(&digest),
                        diff: String::new(),
                        findings: inspect_listed(tool),
                    })),
                    digest: Arc::clone(&digest),
                    findings: inspect_listed(tool),
                    first_report,
                })
        };

        if rules.approves(server, &name, &digest) {
            let record = self
                .store
                .approve_definition(server, &name, stored, Approver::Configuration)
                .await?;
            return Ok(judged(&self.remember(record), false));
        }
        if self.entry(server, &name).is_none() && rules.config.mode(server) == PinMode::Tofu {
            let (record, created) = self
                .store
                .pin_first_use(server, &name, stored.clone())
                .await?;
            let entry = self.remember(record);
            let pinned_this = entry.approved.as_ref().is_some_and(|a| a.digest == digest);
            if created && pinned_this {
                return Ok(PinCheck {
                    verdict: PinVerdict::FirstSeen,
                    digest,
                    findings: inspect_listed(tool),
                    first_report: true,
                });
            }
            if let Some(check) = known(rules, &entry, &digest) {
                return Ok(check);
            }
            // Another process pinned another definition first: this one is a change.
        }
        let (record, recorded) = self.store.propose(server, &name, stored).await?;
        Ok(judged(&self.remember(record), recorded))
    }
}

/// A pin that left the store between two loads.
struct Removed {
    server: String,
    tool: String,
    approved_digest: Option<Arc<str>>,
    /// Who removed it with `warden tools forget`, and why, as the store recorded it.
    by: Option<Removal>,
}

impl Removed {
    /// Its `tool_change` record: which pin, and who removed it and why (`removed_by`,
    /// `reason`; `null` when the store does not say: removed by an older Warden's command).
    fn event(&self) -> AuditEvent {
        let mut event = AuditEvent::now(EventKind::ToolChange);
        event.detail = Some(serde_json::json!({
            "change": "removed",
            "server": crate::text::bounded(&self.server, crate::text::QUOTE_MAX),
            "tool": crate::text::bounded(&self.tool, super::definition::PINNED_NAME_MAX),
            "kind": ItemKind::of_pinned(&self.tool).as_str(),
            "approved_digest": self.approved_digest.as_deref(),
            "removed_by": self.by.as_ref().map(|by| crate::text::bounded(&by.by, crate::text::QUOTE_MAX)),
            "reason": self.by.as_ref().and_then(|by| by.reason.as_deref()).map(|r| crate::text::bounded(r, crate::text::FIELD_MAX)),
        }));
        event
    }
}

/// The pins of `before` that `after` has not, except a masked resource or template whose
/// keyed digest `after` holds under another name of its server (renamed, not removed).
fn removed(before: &Cache, after: &Cache) -> Vec<Removed> {
    let mut removed = Vec::new();
    for (server, items) in &before.items {
        let now = after.items.get(server);
        for (tool, entry) in items {
            if now.is_some_and(|now| now.contains_key(tool)) {
                continue;
            }
            let renamed = tool.rfind(" (uri hmac ").is_some_and(|at| {
                let digest = &tool[at..];
                now.is_some_and(|now| now.keys().any(|t| t.ends_with(digest)))
            });
            if !renamed {
                removed.push(Removed {
                    server: server.clone(),
                    tool: tool.clone(),
                    approved_digest: entry.approved.as_ref().map(|a| Arc::clone(&a.digest)),
                    by: None,
                });
            }
        }
    }
    removed
}

/// `record` (of a resource, or a template when `kind` says so, stored under `stored`, the URI
/// or template as an older Warden kept it) under the key `key` gives it now, its definitions
/// spelt with the URI as they now keep it (normalised and masked) and digested again; `None`
/// when a definition cannot be spelt again (it is removed rather than kept as it was).
fn respelt(record: PinRecord, kind: ItemKind, stored: &str, key: &UriKey) -> Option<PinRecord> {
    let field = kind.name_field();
    let server = record.server.clone();
    let spelt = |definition: StoredDefinition| {
        let mut item = serde_json::from_str::<Value>(&definition.json).ok()?;
        item[field] = Value::String(stored.to_owned());
        let d = Definition::of_kind(kind, &server, &item, key).ok()?;
        Some(StoredDefinition {
            digest: d.digest.to_string(),
            json: d.canonical,
            at_ms: definition.at_ms,
        })
    };
    let approved = match record.approved {
        Some((d, by)) => Some((spelt(d)?, by)),
        None => None,
    };
    let pending = match record.pending {
        Some(d) => Some(spelt(d)?),
        None => None,
    };
    Some(PinRecord {
        server: record.server,
        tool: kind.pinned_name(stored, key),
        first_seen_ms: record.first_seen_ms,
        approved,
        pending,
    })
}

/// The verdict memory gives on `digest` for the tool in `entry`; `None` when the store must
/// be asked (a definition not seen, or a waiting one the configuration approves).
fn known(rules: &Rules, entry: &Entry, digest: &Arc<str>) -> Option<PinCheck> {
    let (server, tool) = (entry.server.as_str(), entry.tool.as_str());
    let approved = entry.approved.as_ref();
    let check = |verdict, findings: &[Finding]| PinCheck {
        verdict,
        digest: Arc::clone(digest),
        findings: findings.to_vec(),
        first_report: false,
    };
    if let Some(pending) = &entry.pending {
        let is_pending = pending.digest == *digest;
        let is_approved = approved.is_some_and(|a| a.digest == *digest);
        if !is_pending && !is_approved {
            return None;
        }
        if is_pending && rules.approves(server, tool, &pending.digest) {
            return None;
        }
        let findings = if is_pending {
            &pending.change.findings
        } else {
            approved.map_or(&pending.change.findings, |a| &a.findings)
        };
        let change = Arc::clone(&pending.change);
        let verdict = match approved {
            Some(a) if rules.counts(server, tool, &a.digest, &a.approver) => {
                PinVerdict::Changed(change)
            }
            _ => PinVerdict::Unapproved(change),
        };
        return Some(check(verdict, findings));
    }
    let a = approved.filter(|a| a.digest == *digest)?;
    if rules.counts(server, tool, &a.digest, &a.approver) {
        Some(check(PinVerdict::Trusted, &a.findings))
    } else {
        Some(check(
            PinVerdict::Unapproved(entry.approved_as_waiting(a)),
            &a.findings,
        ))
    }
}

mod approved;

#[cfg(test)]
mod tests;
