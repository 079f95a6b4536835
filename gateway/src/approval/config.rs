//! `approvals:` configuration: where the approval console is reached (`console_url`, the
//! address links point at), the key that seals second-factor secrets, and the webhooks that
//! tell approvers an action waits. The gate's own settings (its listener, whether requests
//! wait or are answered "pending", how long they wait) join this section when the gate does.

use serde::Deserialize;
use std::time::Duration;

use crate::secrets::config::CredentialSource;

/// Default `approvals.wait_timeout`: how long a held request waits before "pending".
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `approvals.keepalive_interval`: how often a streamed request that waits carries a
/// keep-alive comment.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Default `approvals.default_ttl`: how long an approval request stays open.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15 * 60);

/// Default `approvals.max_pending_per_agent`: approvals one agent may have pending.
pub const DEFAULT_MAX_PENDING_PER_AGENT: u32 = 16;

/// What a request that needs an approval does while it is pending.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalMode {
    /// It waits (up to `wait_timeout`) and goes on as soon as it is approved; still pending
    /// then, it is answered "pending".
    #[default]
    Wait,
    /// It is answered "pending" at once, with the approval's id and console link; the agent
    /// sends the same request again once it is approved.
    Pending,
}

/// `approvals:` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ApprovalsConfig {
    /// `wait` (default) or `pending`.
    pub mode: ApprovalMode,
    /// `wait` mode: how long a request waits for its approval before it is answered
    /// "pending".
    #[serde(with = "humantime_serde")]
    pub wait_timeout: Duration,
    /// `wait` mode: a streamed request (an LLM call with `stream: true`) is answered with its
    /// event stream at once and carries a comment this often while it waits, so that idle
    /// timeouts of clients and proxies do not cut it.
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Duration,
    /// How long an approval request stays open (and an approval stays usable) when its policy
    /// has no `@approval_ttl`.
    #[serde(with = "humantime_serde")]
    pub default_ttl: Duration,
    /// The public base URL of the approval console (`https://warden.example.com`); every
    /// notification links to `<console_url>/approvals/<id>`. Required with `notify`.
    pub console_url: Option<String>,
    /// The key that seals second-factor secrets (32 bytes, base64 or hex) from a secret
    /// source. Default: a key generated in `<data_dir>/keys/approvals-factor.key`.
    pub factor_key: Option<CredentialSource>,
    /// Keys that sealed secrets before `factor_key` replaced them: they open, never seal.
    pub previous_factor_keys: Vec<CredentialSource>,
    /// Webhooks told when an action waits for approval.
    pub notify: Vec<NotifyConfig>,
    /// Approvers who decide from the command line (`warden approvals approve`), with their
    /// groups; console users get theirs from the IdP.
    pub operators: Vec<OperatorConfig>,
    /// The most approvals one agent may have pending: past it, a new request is refused
    /// (`429 too_many_pending`) before an approval is opened or approvers are told.
    pub max_pending_per_agent: u32,
}

/// One approver of `approvals.operators`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    /// Their subject (as the IdP names them: `alice@example.com`).
    pub subject: String,
    /// Their groups, as Cedar sees them (`sre` is `Group::"sre"`).
    #[serde(default)]
    pub groups: Vec<String>,
}

/// One webhook of `approvals.notify`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Its name in logs and metrics: letters, digits, `-` and `_`. Default `<kind>-<index>`.
    #[serde(default)]
    pub name: Option<String>,
    /// The body's shape.
    pub kind: NotifyKind,
    /// Where it is posted: a URL, or a secret source holding one (a Slack or Teams webhook
    /// URL is itself a credential).
    pub url: UrlSource,
    /// The HMAC-SHA256 signing secret of a `json` webhook.
    #[serde(default)]
    pub secret: Option<CredentialSource>,
    /// Whether the message shows the action's arguments (tool arguments, request facts).
    #[serde(default)]
    pub include_arguments: bool,
}

impl NotifyConfig {
    /// Its name: `name`, or `<kind>-<index>`.
    pub fn name_or_default(&self, index: usize) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("{}-{index}", self.kind.label()))
    }
}

/// The body shape of a webhook.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NotifyKind {
    /// A Slack incoming webhook (Block Kit `blocks`), or anything that reads Slack's shape
    /// (Mattermost, Rocket.Chat).
    Slack,
    /// A Microsoft Teams incoming webhook or Workflows trigger: an Adaptive Card message.
    Teams,
    /// A JSON document signed with HMAC-SHA256 (`warden-signature`).
    Json,
}

impl NotifyKind {
    /// `slack`, `teams` or `json`.
    pub fn label(self) -> &'static str {
        match self {
            NotifyKind::Slack => "slack",
            NotifyKind::Teams => "teams",
            NotifyKind::Json => "json",
        }
    }
}

/// A webhook URL: as written, or read from a secret source.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(
    untagged,
    expecting = "a URL: a string, or a secret source holding it ({ env: NAME }, { file: PATH } or { vault: { ... } })"
)]
pub enum UrlSource {
    Url(String),
    Secret(CredentialSource),
}

impl Default for ApprovalsConfig {
    fn default() -> Self {
        ApprovalsConfig {
            mode: ApprovalMode::Wait,
            wait_timeout: DEFAULT_WAIT_TIMEOUT,
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            default_ttl: DEFAULT_TTL,
            console_url: None,
            factor_key: None,
            previous_factor_keys: Vec::new(),
            notify: Vec::new(),
            operators: Vec::new(),
            max_pending_per_agent: DEFAULT_MAX_PENDING_PER_AGENT,
        }
    }
}

impl ApprovalsConfig {
    /// The secret sources of the section with their keys (below `approvals.`), for checks
    /// that need the rest of the configuration (a `vault:` section).
    pub fn secrets(&self) -> Vec<(String, &CredentialSource)> {
        let mut out = Vec::new();
        if let Some(key) = &self.factor_key {
            out.push(("factor_key".to_owned(), key));
        }
        for (i, key) in self.previous_factor_keys.iter().enumerate() {
            out.push((format!("previous_factor_keys[{i}]"), key));
        }
        for (i, n) in self.notify.iter().enumerate() {
            if let UrlSource::Secret(s) = &n.url {
                out.push((format!("notify[{i}].url"), s));
            }
            if let Some(s) = &n.secret {
                out.push((format!("notify[{i}].secret"), s));
            }
        }
        out
    }

    /// Returns `(key, message)` for every mistake in `approvals:`.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        let mut err =
            |key: &str, message: String| errors.push((format!("approvals.{key}"), message));
        if self.wait_timeout.is_zero() || self.wait_timeout > Duration::from_secs(600) {
            err(
                "wait_timeout",
                "must be more than 0 and at most 10m: a held request keeps its connection (and \
                 the agent) waiting that long; use mode: pending for longer approvals"
                    .into(),
            );
        }
        if self.keepalive_interval < Duration::from_millis(100)
            || self.keepalive_interval > Duration::from_secs(300)
        {
            err(
                "keepalive_interval",
                "must be between 100ms and 5m: shorter than the idle timeouts of the clients and \
                 proxies in front of Warden (often 30 s to 60 s)"
                    .into(),
            );
        }
        if self.default_ttl < Duration::from_secs(60)
            || self.default_ttl > Duration::from_secs(7 * 86400)
        {
            err(
                "default_ttl",
                "must be between 1m and 7d, as @approval_ttl is".into(),
            );
        }
        if !(1..=1000).contains(&self.max_pending_per_agent) {
            err(
                "max_pending_per_agent",
                format!(
                    "{} must be between 1 and 1000: each pending approval is a row in the state \
                     store and a message to every webhook",
                    self.max_pending_per_agent
                ),
            );
        }
        match &self.console_url {
            Some(url) => {
                if let Err(m) = crate::config::url::secure_url(url) {
                    err("console_url", m);
                } else if url.contains(['?', '#']) {
                    err(
                        "console_url",
                        format!(
                            "{url:?} must not have a query or fragment: links add /approvals/<id> to it"
                        ),
                    );
                }
            }
            None if !self.notify.is_empty() => err(
                "console_url",
                "notifications link to the approval console: set approvals.console_url to its \
                 public URL (e.g. https://warden.example.com)"
                    .into(),
            ),
            None => {}
        }
        if self.factor_key.is_none() && !self.previous_factor_keys.is_empty() {
            err(
                "previous_factor_keys",
                "lists keys that open older secrets, but there is no approvals.factor_key to seal \
                 new ones: set factor_key to the new key"
                    .into(),
            );
        }
        let mut names: Vec<String> = Vec::new();
        for (i, n) in self.notify.iter().enumerate() {
            let key = format!("notify[{i}]");
            let name = n.name_or_default(i);
            if name.is_empty()
                || name.len() > 64
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                err(
                    &format!("{key}.name"),
                    format!("{name:?}: use 1 to 64 letters, digits, - and _"),
                );
            } else if let Some(first) = names.iter().position(|n| *n == name) {
                err(
                    &format!("{key}.name"),
                    format!("{name:?} is already the name of approvals.notify[{first}]"),
                );
            }
            names.push(name);
            if let UrlSource::Url(url) = &n.url
                && let Err(m) = crate::config::url::secure_url(url)
            {
                err(&format!("{key}.url"), m);
            }
            match (n.kind, &n.secret) {
                (NotifyKind::Json, None) => err(
                    &format!("{key}.secret"),
                    "a json webhook is signed: give the signing secret's source ({ env: NAME }, \
                     { file: PATH } or { vault: ... }); receivers check warden-signature with it"
                        .into(),
                ),
                (NotifyKind::Slack | NotifyKind::Teams, Some(_)) => err(
                    &format!("{key}.secret"),
                    format!(
                        "{} webhooks are not signed (their URL is the credential); remove secret, \
                         or use kind: json",
                        n.kind.label()
                    ),
                ),
                _ => {}
            }
        }
        for (i, o) in self.operators.iter().enumerate() {
            // Votes, records and `warden approvals show` name the approver by this subject.
            if let Some(problem) = crate::protocol::unreadable_identifier(&o.subject) {
                err(
                    &format!("operators[{i}].subject"),
                    format!(
                        "does not read as it is: {problem}; votes and records would show one \
                         approver as another: write the subject without control, bidirectional \
                         or invisible characters"
                    ),
                );
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::parse;
    use std::path::Path;

    fn errors_of(yaml: &str) -> String {
        parse(yaml, Some(Path::new("warden.yaml")))
            .expect_err("config must be rejected")
            .to_string()
    }

    #[test]
    fn the_section_is_read_with_every_key() {
        let config = parse(
            "\
approvals:
  console_url: https://warden.example.com/console
  keepalive_interval: 2s
  max_pending_per_agent: 4
  factor_key: { env: WARDEN_FACTOR_KEY }
  previous_factor_keys: [{ file: /run/secrets/old-factor-key }]
  notify:
    - kind: slack
      url: { env: SLACK_WEBHOOK_URL }
    - name: secops
      kind: json
      url: https://hooks.example.com/warden
      secret: { file: /run/secrets/hook-secret }
      include_arguments: true
    - kind: teams
      url: https://example.webhook.office.com/webhookb2/x
",
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let a = &config.approvals;
        assert_eq!(a.keepalive_interval, Duration::from_secs(2));
        assert_eq!(a.max_pending_per_agent, 4);
        assert_eq!(
            a.console_url.as_deref(),
            Some("https://warden.example.com/console")
        );
        assert_eq!(
            a.factor_key,
            Some(CredentialSource::Env("WARDEN_FACTOR_KEY".into()))
        );
        assert_eq!(a.previous_factor_keys.len(), 1);
        assert_eq!(a.notify.len(), 3);
        assert_eq!(a.notify[0].kind, NotifyKind::Slack);
        assert_eq!(
            a.notify[0].url,
            UrlSource::Secret(CredentialSource::Env("SLACK_WEBHOOK_URL".into()))
        );
        assert!(!a.notify[0].include_arguments);
        assert_eq!(a.notify[0].name_or_default(0), "slack-0");
        assert_eq!(a.notify[1].name_or_default(1), "secops");
        assert!(a.notify[1].include_arguments);
        assert_eq!(
            a.notify[2].url,
            UrlSource::Url("https://example.webhook.office.com/webhookb2/x".into())
        );
        let keys: Vec<String> = a.secrets().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "factor_key",
                "previous_factor_keys[0]",
                "notify[0].url",
                "notify[1].secret"
            ]
        );
        assert_eq!(
            parse("", None).unwrap().approvals,
            ApprovalsConfig::default()
        );
    }

    #[test]
    fn an_operator_subject_that_does_not_read_as_it_is_is_refused() {
        let text = errors_of(
            "approvals:\n  operators:\n    - subject: alice\n    - subject: \"alice\\u202Eecila\"\n",
        );
        assert!(
            text.contains(
                "approvals.operators[1].subject: does not read as it is: it contains the \
                 bidirectional control U+202E"
            ),
            "{text}"
        );
        assert!(!text.contains("operators[0]"), "{text}");
        assert!(
            !text.contains('\u{202e}'),
            "the value is not repeated: {text}"
        );
    }

    #[test]
    fn mistakes_are_located_at_their_key() {
        let text = errors_of(
            "\
approvals:
  notify:
    - kind: json
      url: http://hooks.example.com/x
    - kind: slack
      url: { env: SLACK }
      secret: { env: S }
",
        );
        for expected in [
            "warden.yaml:1: approvals.console_url: notifications link to the approval console",
            "warden.yaml:4: approvals.notify[0].url: \"http://hooks.example.com/x\" must use https",
            "warden.yaml:3: approvals.notify[0].secret: a json webhook is signed",
            "warden.yaml:7: approvals.notify[1].secret: slack webhooks are not signed",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        let text =
            errors_of("approvals:\n  notify:\n    - kind: discord\n      url: https://x.example\n");
        assert!(
            text.contains("warden.yaml:3: approvals.notify[0].kind: unknown variant `discord`"),
            "{text}"
        );
        let text = errors_of("approvals:\n  max_pending_per_agent: 0\n");
        assert!(
            text.contains("warden.yaml:2: approvals.max_pending_per_agent: 0 must be between 1"),
            "{text}"
        );
        let text = errors_of("approvals:\n  console_url: ftp://x.example\n");
        assert!(
            text.contains(
                "warden.yaml:2: approvals.console_url: \"ftp://x.example\" has scheme \"ftp\""
            ),
            "{text}"
        );
        let text = errors_of("approvals:\n  console_url: https://x.example/?a=1\n");
        assert!(
            text.contains(
                "approvals.console_url: \"https://x.example/?a=1\" must not have a query"
            ),
            "{text}"
        );
        let text = errors_of("approvals:\n  keepalive_interval: 10ms\n");
        assert!(
            text.contains(
                "warden.yaml:2: approvals.keepalive_interval: must be between 100ms and 5m"
            ),
            "{text}"
        );
        let text = errors_of("approvals:\n  previous_factor_keys: [{ env: OLD }]\n");
        assert!(
            text.contains("warden.yaml:2: approvals.previous_factor_keys: lists keys"),
            "{text}"
        );
        let text = errors_of("approvals:\n  factor_key: { vault: { kv: secret/warden/factor } }\n");
        assert!(
            text.contains("warden.yaml:2: approvals.factor_key.vault: names a Vault secret"),
            "{text}"
        );
        let text = errors_of(
            "approvals:\n  console_url: http://127.0.0.1:9\n  notify:\n    - { kind: slack, url: 'https://a.example' }\n    - { name: slack-0, kind: teams, url: 'https://b.example' }\n    - { name: 'bad name', kind: teams, url: 'https://c.example' }\n",
        );
        assert!(text.contains("warden.yaml:5: approvals.notify[1].name: \"slack-0\" is already the name of approvals.notify[0]"), "{text}");
        assert!(
            text.contains("approvals.notify[2].name: \"bad name\": use 1 to 64"),
            "{text}"
        );
    }
}
