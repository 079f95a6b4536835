//! Per-agent session facts for policy (`context.session`): what an agent did earlier in its
//! session — how many actions, how many of this action and on this resource, and the tags of
//! what it touched (a `private` tool read sets `read_private`; an `external` one,
//! `sent_external`). The baseline pack's rule "after reading private data, sending to an
//! external destination needs approval" reads them.
//!
//! A session is an MCP request's MCP session; for other requests, the one the agent names
//! (`sessions.header`), or else the agent's current clock-aligned window. Counts are per
//! session, and an agent holds at most `sessions.max_per_agent` sessions on a replica: past
//! that its own least recently used one is forgotten, never another agent's. Labels are per
//! agent too: the agent chooses its session names (and opens MCP
//! sessions at will), so a label it earned in any session stays in every session of its until
//! `sessions.window` after it last earned it (its *trail*); reading private data in one
//! session and sending it out from another, or across a window's turn, meets the same rule.
//! Facts are kept in memory, bounded in sessions and in distinct
//! keys per session, and only while a loaded policy reads `context.session`. The labels a
//! session earns and its counts are shared with the other replicas through the state store
//! ([`sync`]), so that a session spread over replicas meets the same rules: the counts a
//! policy sees are this replica's plus what the others last published.

pub mod config;
mod sharing;
pub mod sync;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Instant, UNIX_EPOCH};

use dashmap::DashMap;
use sha2::{Digest, Sha256};

use crate::action::{Action, SessionFacts};
pub use config::{ANSWER_LABEL, SessionsConfig};

/// Every agent's sessions on this replica.
pub struct AgentSessions {
    epoch: Instant,
    sessions: DashMap<u64, Session>,
    /// Each agent's sessions (by its trail key), for `sessions.max_per_agent`.
    per_agent: DashMap<u64, Vec<u64>>,
    /// Set once labels and counts are shared with other replicas ([`AgentSessions::attach`]).
    sharing: OnceLock<sharing::Sharing>,
}

/// What one session remembers.
#[derive(Debug, Default)]
struct Session {
    /// Its agent's trail key; `None` for a trail itself.
    owner: Option<u64>,
    /// Seconds since `epoch` of its last action.
    last: u64,
    actions: u64,
    per_verb: HashMap<u64, u64>,
    per_resource: HashMap<u64, u64>,
    labels: Vec<Arc<str>>,
    /// Counted since its counts were last published to the other replicas.
    unpublished: bool,
}

/// Which session a request belongs to, by how the agent named it.
#[derive(Debug, Clone, Copy)]
pub enum Named<'a> {
    /// The agent's `sessions.header`, or its MCP session.
    By(&'a str),
    /// None: the agent's current window.
    Window,
}

impl Default for AgentSessions {
    fn default() -> Self {
        AgentSessions {
            epoch: Instant::now(),
            sessions: DashMap::new(),
            per_agent: DashMap::new(),
            sharing: OnceLock::new(),
        }
    }
}

impl AgentSessions {
    /// The facts of `action`'s session before it (its key kept in them, to remember the
    /// action once decided).
    pub fn facts(
        &self,
        config: &SessionsConfig,
        action: &Action,
        named: Named<'_>,
    ) -> SessionFacts {
        let reference = action.resource.cedar_ref();
        let (verb, resource) = (
            sharing::stable_hash(action.verb.as_str()),
            sharing::stable_hash(&reference),
        );
        let now = self.now();
        let mut facts = SessionFacts {
            key: self.key(config, action, named),
            trail_key: trail_key(action),
            verb_key: verb,
            resource_key: resource,
            resource_tags: tags_of(config, &reference),
            named: matches!(named, Named::By(_)),
            ..SessionFacts::default()
        };
        if let Some(session) = self.sessions.get(&facts.key)
            && !expired(config, &session, now, facts.named)
        {
            facts.actions = session.actions;
            facts.action_count = session.per_verb.get(&verb).copied().unwrap_or(0);
            facts.resource_count = session.per_resource.get(&resource).copied().unwrap_or(0);
            facts.labels.clone_from(&session.labels);
        }
        if let Some(trail) = self.sessions.get(&facts.trail_key)
            && !expired(config, &trail, now, true)
        {
            for label in &trail.labels {
                if !facts.labels.contains(label) {
                    facts.labels.push(Arc::clone(label));
                }
            }
        }
        if facts.labels.iter().any(|l| l.starts_with(ANSWER_LABEL)) {
            let (answers, tags) = std::mem::take(&mut facts.labels)
                .into_iter()
                .partition::<Vec<_>, _>(|l| l.starts_with(ANSWER_LABEL));
            facts.labels = tags;
            facts.answer_findings = answers
                .iter()
                .map(|l| Arc::from(&l[ANSWER_LABEL.len()..]))
                .collect();
        }
        if let Some(sharing) = self.sharing.get() {
            sharing.add_others(&mut facts);
        }
        facts
    }

    /// Remembers that an MCP server's answer to the action of `facts` (what
    /// [`AgentSessions::facts`] gave it) held what `detectors` found: in its session and in
    /// its agent's trail, which carries it into the agent's other sessions (an egress request,
    /// another MCP session) until `sessions.window` after it was last found.
    pub fn remember_answer<'a>(
        &self,
        config: &SessionsConfig,
        facts: &SessionFacts,
        detectors: impl IntoIterator<Item = &'a str>,
    ) {
        let mut labels: Vec<Arc<str>> = Vec::new();
        for detector in detectors {
            let label: Arc<str> = Arc::from(format!("{ANSWER_LABEL}{detector}"));
            if !labels.contains(&label) {
                labels.push(label);
            }
        }
        if labels.is_empty() {
            return;
        }
        let now = self.now();
        let mut entry = self.session_of(config, facts, now);
        self.label(config, facts, &mut entry, &labels);
        drop(entry);
        self.mark_trail(config, facts, &labels, now);
    }

    /// Remembers `action` in its session (`facts`: what [`AgentSessions::facts`] gave it).
    pub fn remember(&self, config: &SessionsConfig, facts: &SessionFacts) {
        let (verb, resource) = (facts.verb_key, facts.resource_key);
        let now = self.now();
        let mut entry = self.session_of(config, facts, now);
        let session = &mut *entry;
        session.actions += 1;
        session.unpublished = true;
        for (map, key) in [
            (&mut session.per_verb, verb),
            (&mut session.per_resource, resource),
        ] {
            if map.len() < config.max_keys || map.contains_key(&key) {
                *map.entry(key).or_insert(0) += 1;
            }
        }
        self.label(config, facts, session, &facts.resource_tags);
        drop(entry);
        if !facts.resource_tags.is_empty() {
            self.mark_trail(config, facts, &facts.resource_tags, now);
        }
    }

    /// The session of `facts`, used `now`: made room for when new, started over when it
    /// expired.
    fn session_of(
        &self,
        config: &SessionsConfig,
        facts: &SessionFacts,
        now: u64,
    ) -> dashmap::mapref::one::RefMut<'_, u64, Session> {
        if !self.sessions.contains_key(&facts.key) {
            self.make_room_for(config, facts, now);
        }
        let mut entry = self.sessions.entry(facts.key).or_insert_with(|| Session {
            owner: Some(facts.trail_key),
            ..Session::default()
        });
        if expired(config, &entry, now, facts.named) {
            *entry = Session {
                owner: Some(facts.trail_key),
                ..Session::default()
            };
        }
        entry.last = now;
        entry
    }

    /// Adds `labels` to `session` (of `facts`), each new one published to the other replicas.
    fn label(
        &self,
        config: &SessionsConfig,
        facts: &SessionFacts,
        session: &mut Session,
        labels: &[Arc<str>],
    ) {
        for label in labels {
            if !session.labels.contains(label) {
                session.labels.push(Arc::clone(label));
                if let Some(sharing) = self.sharing.get() {
                    sharing.publish(facts.key, Some(facts.trail_key), label, config.window);
                }
            }
        }
    }

    /// Adds `labels` (the tags of `facts`' resource, or what its answer held) to its agent's
    /// trail, which lives `window` from the last label earned (each one earned again extends
    /// it).
    fn mark_trail(
        &self,
        config: &SessionsConfig,
        facts: &SessionFacts,
        labels: &[Arc<str>],
        now: u64,
    ) {
        if self.sessions.len() >= config.max_sessions
            && !self.sessions.contains_key(&facts.trail_key)
        {
            self.evict(config, now);
        }
        let mut trail = self.sessions.entry(facts.trail_key).or_default();
        if expired(config, &trail, now, true) {
            *trail = Session::default();
        }
        trail.last = now;
        for tag in labels {
            if !trail.labels.contains(tag) {
                trail.labels.push(Arc::clone(tag));
            }
            // Published every time: another replica extends the trail too.
            if let Some(sharing) = self.sharing.get() {
                sharing.publish(facts.trail_key, None, tag, config.window);
            }
        }
    }

    /// Sessions held now.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_secs()
    }

    /// The session's key: the same on every replica (a digest of the agent and the session's
    /// name or window), so that labels shared through the store find it.
    fn key(&self, config: &SessionsConfig, action: &Action, named: Named<'_>) -> u64 {
        match named {
            Named::By(name) => agent_key(action, 0, name.as_bytes()),
            Named::Window => {
                let unix = action
                    .context
                    .time
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let window = unix / config.window.as_secs().max(1);
                agent_key(action, 1, &window.to_be_bytes())
            }
        }
    }

    /// Makes room for the new session of `facts`: past `max_per_agent` its agent's least
    /// recently used session goes; past `max_sessions`, any idle past their window, else the
    /// least recently used. The new session is counted as its agent's.
    fn make_room_for(&self, config: &SessionsConfig, facts: &SessionFacts, now: u64) {
        self.make_room(config, facts.trail_key, facts.key, now);
    }

    /// Makes room for the new session `key` of the agent whose trail is `agent`, as
    /// [`AgentSessions::make_room_for`] does.
    fn make_room(&self, config: &SessionsConfig, agent: u64, key: u64, now: u64) {
        // The agent's keys are copied out before the sessions are read: the two maps are
        // never locked in the order `evict` locks them the other way round.
        let own = self.per_agent.get(&agent).map(|keys| keys.clone());
        if let Some(own) = own
            && own.len() >= config.max_per_agent
        {
            let oldest = own
                .iter()
                .min_by_key(|key| self.sessions.get(key).map_or(0, |s| s.last))
                .copied();
            if let Some(key) = oldest {
                self.forget(key);
            }
        }
        if self.sessions.len() >= config.max_sessions {
            self.evict(config, now);
        }
        self.per_agent.entry(agent).or_default().push(key);
    }

    /// Makes room: sessions idle past their window go; if none is, the least recently used.
    fn evict(&self, config: &SessionsConfig, now: u64) {
        let idle = config.window.as_secs();
        let mut gone = Vec::new();
        self.sessions.retain(|key, s| {
            let keep = now.saturating_sub(s.last) < idle;
            if !keep {
                gone.push((*key, s.owner));
            }
            keep
        });
        for (key, owner) in gone {
            self.uncount(key, owner);
        }
        if self.sessions.len() >= config.max_sessions {
            let oldest = self
                .sessions
                .iter()
                .min_by_key(|s| s.last)
                .map(|s| *s.key());
            if let Some(key) = oldest {
                self.forget(key);
            }
        }
    }

    /// Forgets the session (or trail) `key`.
    fn forget(&self, key: u64) {
        if let Some((key, session)) = self.sessions.remove(&key) {
            self.uncount(key, session.owner);
        }
    }

    /// Takes session `key` off its agent's (`owner`'s) count.
    fn uncount(&self, key: u64, owner: Option<u64>) {
        let Some(agent) = owner else {
            return;
        };
        let now_empty = self.per_agent.get_mut(&agent).is_some_and(|mut keys| {
            keys.retain(|k| *k != key);
            keys.is_empty()
        });
        if now_empty {
            self.per_agent.remove_if(&agent, |_, keys| keys.is_empty());
        }
    }
}

/// The key of `action`'s agent's trail: a digest of the agent alone, apart from every
/// session key (a marker no session name or window writes).
fn trail_key(action: &Action) -> u64 {
    agent_key(action, 2, &[])
}

/// A digest of `action`'s agent, `marker` (what kind of key) and `rest`, the same on every
/// replica.
fn agent_key(action: &Action, marker: u8, rest: &[u8]) -> u64 {
    let agent: &str = &action.principal.id;
    let mut digest = Sha256::new();
    digest.update((agent.len() as u64).to_be_bytes());
    digest.update(agent.as_bytes());
    digest.update([marker]);
    digest.update(rest);
    let digest = digest.finalize();
    let mut key = [0u8; 8];
    key.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(key)
}

/// A named session idle past the window starts over (a window's own key changes with it).
fn expired(config: &SessionsConfig, session: &Session, now: u64, named: bool) -> bool {
    named && now.saturating_sub(session.last) >= config.window.as_secs()
}

/// How the request with `headers` names its session: by `sessions.header`, else not.
pub fn named<'a>(config: &SessionsConfig, headers: &'a http::HeaderMap) -> Named<'a> {
    match headers
        .get(config.header.as_str())
        .and_then(|v| v.to_str().ok())
    {
        Some(name) if !name.is_empty() => Named::By(name),
        _ => Named::Window,
    }
}

/// The tags `sessions.tags` gives the resource `reference` (`Tool::"files/read_file"`).
fn tags_of(config: &SessionsConfig, reference: &str) -> Vec<Arc<str>> {
    config
        .tags
        .get(reference)
        .map(|tags| tags.iter().map(|t| Arc::from(t.as_str())).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::action::{ActionContext, Facts, Findings, Principal, Resource, Verb};

    pub(super) fn call(agent: &str, tool: &str) -> Action {
        Action {
            principal: Arc::new(Principal {
                id: Arc::from(agent),
                ..Principal::anonymous()
            }),
            verb: Verb::McpCallTool,
            resource: Resource::Tool {
                server: Arc::from("files"),
                name: tool.to_owned(),
            },
            context: ActionContext {
                route: Arc::from("mcp"),
                time: UNIX_EPOCH + Duration::from_secs(1_793_613_600),
                source_ip: "10.0.0.1".parse().expect("ip"),
                tls: true,
                client_certificate: None,
                findings: Findings::default(),
                facts: Facts::None,
                session: None,
                budget: None,
            },
        }
    }

    pub(super) fn config() -> SessionsConfig {
        let mut config = SessionsConfig::default();
        config
            .tags
            .insert("Tool::\"files/read_file\"".into(), vec!["private".into()]);
        config
            .tags
            .insert("Tool::\"files/upload\"".into(), vec!["external".into()]);
        config
    }

    #[test]
    fn a_session_remembers_counts_and_the_tags_of_what_it_used() {
        let (sessions, config) = (AgentSessions::default(), config());
        let read = call("a", "read_file");
        let first = sessions.facts(&config, &read, Named::By("s1"));
        assert_eq!((first.actions, first.resource_count), (0, 0));
        assert_eq!(&*first.resource_tags, [Arc::from("private")]);
        sessions.remember(&config, &first);
        let upload = sessions.facts(&config, &call("a", "upload"), Named::By("s1"));
        assert_eq!(
            (upload.actions, upload.action_count, upload.resource_count),
            (1, 1, 0)
        );
        assert!(upload.labelled(SessionFacts::PRIVATE));
        assert_eq!(&*upload.resource_tags, [Arc::from("external")]);
    }

    #[test]
    fn sessions_are_per_agent_and_per_name() {
        let (sessions, config) = (AgentSessions::default(), config());
        let facts = sessions.facts(&config, &call("a", "read_file"), Named::By("s1"));
        sessions.remember(&config, &facts);
        for (agent, named) in [
            ("b", Named::By("s1")),
            ("a", Named::By("s2")),
            ("a", Named::Window),
        ] {
            let other = sessions.facts(&config, &call(agent, "upload"), named);
            assert_eq!(other.actions, 0, "{agent} {named:?}");
            // Labels follow the agent (its trail), not the session's name.
            assert_eq!(other.labelled(SessionFacts::PRIVATE), agent == "a");
        }
    }

    #[test]
    fn labels_follow_the_agent_into_its_other_sessions_but_counts_do_not() {
        let (sessions, config) = (AgentSessions::default(), config());
        let facts = sessions.facts(&config, &call("a", "read_file"), Named::By("s1"));
        sessions.remember(&config, &facts);
        for named in [Named::By("s2"), Named::Window] {
            let other = sessions.facts(&config, &call("a", "upload"), named);
            assert!(other.labelled(SessionFacts::PRIVATE), "{named:?}");
            assert_eq!(other.actions, 0, "{named:?}");
        }
        // Another agent's sessions carry nothing of it.
        let b = sessions.facts(&config, &call("b", "upload"), Named::By("s1"));
        assert!(!b.labelled(SessionFacts::PRIVATE));
    }

    #[test]
    fn what_an_answer_held_follows_the_agent_apart_from_its_labels() {
        let (sessions, config) = (AgentSessions::default(), config());
        let fetch = call("a", "fetch");
        let facts = sessions.facts(&config, &fetch, Named::By("mcp-1"));
        assert!(facts.answer_findings.is_empty());
        sessions.remember_answer(
            &config,
            &facts,
            [
                "tool_instruction_override",
                "tool_concealment",
                "tool_concealment",
            ],
        );
        // In the session, and in the agent's other sessions (an egress request's window).
        for named in [Named::By("mcp-1"), Named::By("other"), Named::Window] {
            let later = sessions.facts(&config, &fetch, named);
            assert_eq!(
                later.answer_findings,
                [
                    Arc::from("tool_instruction_override"),
                    Arc::from("tool_concealment")
                ],
                "{named:?}"
            );
            assert!(later.labels.is_empty(), "{named:?}: {:?}", later.labels);
        }
        // Not another agent's.
        let b = sessions.facts(&config, &call("b", "fetch"), Named::By("mcp-1"));
        assert!(b.answer_findings.is_empty());
        // Nothing found, nothing remembered.
        let clean = sessions.facts(&config, &call("c", "fetch"), Named::By("s"));
        sessions.remember_answer(&config, &clean, []);
        assert!(sessions.sessions.get(&clean.key).is_none());
    }

    #[test]
    fn a_tag_may_not_look_like_what_an_answer_held() {
        let mut config = config();
        config
            .tags
            .insert("Tool::\"web/fetch\"".into(), vec!["answer:canary".into()]);
        assert!(
            config
                .validate()
                .iter()
                .any(|(key, message)| key == "sessions.tags.Tool::\"web/fetch\""
                    && message.contains("answer_findings")),
            "{:?}",
            config.validate()
        );
    }

    #[test]
    fn a_trail_ends_a_window_after_its_last_label() {
        let config = SessionsConfig {
            window: Duration::from_secs(5),
            ..config()
        };
        let sessions = AgentSessions {
            epoch: Instant::now()
                .checked_sub(Duration::from_secs(10))
                .expect("up for 10 s"),
            ..AgentSessions::default()
        };
        let facts = sessions.facts(&config, &call("a", "read_file"), Named::By("s1"));
        sessions.remember(&config, &facts);
        let upload = || sessions.facts(&config, &call("a", "upload"), Named::By("s2"));
        assert!(upload().labelled(SessionFacts::PRIVATE));
        // Its last label earned a window ago.
        sessions
            .sessions
            .get_mut(&facts.trail_key)
            .expect("a trail")
            .last -= 5;
        assert!(!upload().labelled(SessionFacts::PRIVATE));
    }

    #[test]
    fn past_the_bound_the_least_recently_used_session_is_forgotten() {
        let sessions = AgentSessions::default();
        let config = SessionsConfig {
            max_sessions: 2,
            ..config()
        };
        for name in ["s1", "s2", "s3"] {
            let facts = sessions.facts(&config, &call("a", "read_file"), Named::By(name));
            sessions.remember(&config, &facts);
        }
        assert_eq!(sessions.len(), 2);
    }

    #[test]
    fn an_agent_past_its_cap_forgets_its_own_oldest_session_not_anothers() {
        let sessions = AgentSessions::default();
        let config = SessionsConfig {
            max_sessions: 10,
            max_per_agent: 3,
            ..config()
        };
        let remember = |agent: &str, name: &str, tool: &str| {
            let facts = sessions.facts(&config, &call(agent, tool), Named::By(name));
            sessions.remember(&config, &facts);
            facts
        };
        let victim = remember("victim", "v1", "upload");
        // The flooder names twenty sessions; each past its third forgets its own oldest.
        let first = remember("flooder", "f0", "upload");
        for i in 1..20 {
            remember("flooder", &format!("f{i}"), "upload");
        }
        assert_eq!(sessions.per_agent.get(&first.trail_key).unwrap().len(), 3);
        assert!(
            sessions.sessions.contains_key(&victim.key),
            "another agent's session is kept"
        );
        assert!(
            !sessions.sessions.contains_key(&first.key),
            "its own oldest went"
        );
        let again = sessions.facts(&config, &call("victim", "upload"), Named::By("v1"));
        assert_eq!(again.actions, 1, "the victim's session still counts");
        // Its newest three are what it holds.
        for i in 17..20 {
            let facts = sessions.facts(
                &config,
                &call("flooder", "upload"),
                Named::By(&format!("f{i}")),
            );
            assert_eq!(facts.actions, 1, "f{i}");
        }
    }

    #[test]
    fn the_per_agent_count_follows_sessions_forgotten_for_the_global_bound() {
        let sessions = AgentSessions::default();
        let config = SessionsConfig {
            max_sessions: 2,
            max_per_agent: 2,
            ..config()
        };
        for (agent, name) in [("a", "s1"), ("b", "s1"), ("a", "s2"), ("a", "s3")] {
            // An untagged tool: no trail takes a place.
            let facts = sessions.facts(&config, &call(agent, "list"), Named::By(name));
            sessions.remember(&config, &facts);
        }
        assert_eq!(sessions.len(), 2);
        let counted: usize = sessions.per_agent.iter().map(|k| k.len()).sum();
        assert_eq!(counted, 2, "every forgotten session left its agent's count");
        for keys in sessions.per_agent.iter() {
            for key in keys.iter() {
                assert!(
                    sessions.sessions.contains_key(key),
                    "a counted session is held"
                );
            }
        }
    }

    #[test]
    fn max_per_agent_is_between_one_and_max_sessions() {
        for bad in [0, 100_001] {
            let config = SessionsConfig {
                max_per_agent: bad,
                ..SessionsConfig::default()
            };
            assert!(
                config
                    .validate()
                    .iter()
                    .any(|(key, _)| key == "sessions.max_per_agent"),
                "{bad}"
            );
        }
        assert!(SessionsConfig::default().validate().is_empty());
    }

    #[test]
    fn the_header_names_the_session() {
        let config = SessionsConfig::default();
        let mut headers = http::HeaderMap::new();
        assert!(matches!(named(&config, &headers), Named::Window));
        headers.insert("x-warden-session", http::HeaderValue::from_static("t-42"));
        assert!(matches!(named(&config, &headers), Named::By("t-42")));
    }
}
