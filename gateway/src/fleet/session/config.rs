//! `sessions:` how Warden tells an agent's sessions apart, how much of each it remembers, and
//! the tags that label what a session touched.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// What a session's labels (and its agent's trail's) hold for a detector that matched in an
/// MCP server's answer: `answer:<detector>`, apart from the tags of `sessions.tags` (which
/// may not start so), shared with the other replicas as labels are, and given to policy as
/// `context.session.answer_findings`.
pub const ANSWER_LABEL: &str = "answer:";

/// `sessions:` per-agent session facts for policy (`context.session`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SessionsConfig {
    /// The request header an agent names its session with (LLM and REST calls); without it
    /// the session is the agent's current `window`. An MCP request's session is its MCP
    /// session (`Mcp-Session-Id`).
    pub header: String,
    /// A session without a name: the agent's requests within this window (aligned to the
    /// clock). A named session ends after being idle this long.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Sessions remembered at most (each replica); past this the least recently used is
    /// forgotten.
    pub max_sessions: usize,
    /// Sessions one agent holds at most (each replica): past this its own least recently used
    /// session is forgotten, never another agent's, so that an agent naming many sessions
    /// (`sessions.header`) cannot push the others' out of `max_sessions`.
    pub max_per_agent: usize,
    /// Distinct actions and resources counted per session at most; past this, new ones count
    /// from zero.
    pub max_keys: usize,
    /// Tags of resources, by Cedar reference: `Tool::"files/read_file": [private]`,
    /// `Host::"api.partner.example": [external]`, `Operation::"slack/chat.postMessage":
    /// [external]`. A session that used a resource carries its tags in `context.session.labels`.
    pub tags: BTreeMap<String, Vec<String>>,
    /// How often a replica stores the labels its sessions earned and its counts in them, and
    /// reads those the other replicas stored (read at start).
    #[serde(with = "humantime_serde")]
    pub sync_interval: Duration,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        SessionsConfig {
            header: "x-warden-session".to_owned(),
            window: Duration::from_secs(3600),
            max_sessions: 100_000,
            max_per_agent: 1_000,
            max_keys: 256,
            tags: BTreeMap::new(),
            sync_interval: Duration::from_millis(500),
        }
    }
}

impl SessionsConfig {
    /// `(key, message)` for every mistake.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        if http::HeaderName::from_bytes(self.header.as_bytes()).is_err() {
            errors.push((
                "sessions.header".to_owned(),
                format!("{:?} is not a valid HTTP header name", self.header),
            ));
        }
        if self.window < Duration::from_secs(1) {
            errors.push(("sessions.window".to_owned(), "must be at least 1s".into()));
        }
        if self.max_sessions == 0 {
            errors.push((
                "sessions.max_sessions".to_owned(),
                "must be at least 1".into(),
            ));
        }
        if !(Duration::from_millis(10)..=Duration::from_secs(60)).contains(&self.sync_interval) {
            errors.push((
                "sessions.sync_interval".to_owned(),
                "give 10ms to 60s: how often session labels and counts are shared with the other \
                 replicas"
                    .into(),
            ));
        }
        if self.max_per_agent == 0 || self.max_per_agent > self.max_sessions {
            errors.push((
                "sessions.max_per_agent".to_owned(),
                format!(
                    "give 1 to sessions.max_sessions ({}): how many sessions one agent holds \
                     before its own oldest is forgotten",
                    self.max_sessions
                ),
            ));
        }
        if self.max_keys == 0 {
            errors.push(("sessions.max_keys".to_owned(), "must be at least 1".into()));
        }
        for (resource, tags) in &self.tags {
            let well_formed = resource
                .split_once("::\"")
                .is_some_and(|(ty, rest)| !ty.is_empty() && rest.len() > 1 && rest.ends_with('"'));
            if !well_formed {
                errors.push((
                    format!("sessions.tags.{resource}"),
                    "name a resource as Cedar does: Tool::\"<server>/<tool>\", Host::\"<host>\", \
                     Operation::\"<api>/<operation>\", Model::\"<provider>/<model>\""
                        .into(),
                ));
            }
            if tags.iter().any(String::is_empty) {
                errors.push((
                    format!("sessions.tags.{resource}"),
                    "a tag cannot be empty".into(),
                ));
            }
            if let Some(tag) = tags.iter().find(|t| t.starts_with(ANSWER_LABEL)) {
                errors.push((
                    format!("sessions.tags.{resource}"),
                    format!(
                        "the tag {tag:?} starts with {:?}, which Warden keeps for what MCP \
                         servers' answers held (context.session.answer_findings); name it \
                         otherwise",
                        ANSWER_LABEL
                    ),
                ));
            }
        }
        errors
    }
}
