//! Telling approvers that an action waits: Slack (Block Kit), Microsoft Teams (an Adaptive
//! Card) and signed JSON webhooks. Each message names the approval, what waits and until
//! when, and links to the console, where the decision is made with a second factor: nothing
//! in a message approves. Delivery is off the request path: [`Notifier::notify`] never waits;
//! each webhook has a bounded queue and a task that posts with retries and jittered backoff,
//! counts what failed and logs when it gives up (never the URL or a secret).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use prometheus::{IntCounterVec, Opts};
use rand::Rng;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::mpsc;
use zeroize::Zeroizing;

use super::config::{ApprovalsConfig, NotifyConfig, NotifyKind, UrlSource};
use crate::text::{revealed_for_approvers, revealed_line};
use crate::vault::SecretStore;

/// The header of a signed JSON notification: `t=<unix seconds>,v1=<hex HMAC-SHA256>`.
pub const SIGNATURE_HEADER: &str = "warden-signature";
/// The most characters of arguments a chat message shows.
const MAX_ARGUMENT_CHARS: usize = 2000;
/// The most characters of one value (agent, resource, reason) a chat message shows.
const MAX_VALUE_CHARS: usize = 500;

/// Why notifications cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// A secret (URL or signing secret) cannot be read.
    #[error("approvals.{key}: {reason}")]
    Secret { key: String, reason: String },
    /// A URL read from a source is not one Warden posts to.
    #[error("approvals.{key}: the URL read from its source {reason}")]
    Url { key: String, reason: String },
    /// Notifications are configured without the console they link to.
    #[error("approvals.console_url: notifications link to the console; set its public URL")]
    NoConsoleUrl,
    /// The HTTP client cannot be built.
    #[error("cannot build the notification HTTP client: {0}")]
    Client(String),
}

/// What approvers are told about one pending approval.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// The approval's id (the console's page is `<console_url>/approvals/<id>`).
    pub approval_id: String,
    /// The agent that asked (its principal id).
    pub agent: String,
    /// The Cedar action (`mcp:call_tool`).
    pub action: String,
    /// The Cedar resource (`Tool::"github/create_issue"`).
    pub resource: String,
    /// The id of the policy that asks for approval.
    pub policy: String,
    /// Its `@reason`.
    pub reason: Option<String>,
    /// Who may approve (`@approvers`).
    pub approvers: Vec<String>,
    /// How many distinct approvers must approve.
    pub approvals: u8,
    /// When the approval expires into a deny.
    pub expires_at: SystemTime,
    /// The action's arguments; only shown by webhooks with `include_arguments`.
    pub arguments: Option<Value>,
    /// That a REST call's body has fields its connector does not declare (no policy judged
    /// them): how many, never which ([`super::undeclared::note`]).
    pub undeclared: Option<String>,
}

/// What a path segment of the console link percent-encodes: everything but RFC 3986's
/// unreserved characters (letters, digits, `-`, `.`, `_`, `~`), which a URI must not encode
/// (RFC 3986 section 2.3: `apr_01J9Z` stays as it is, the id the agent and the approver read).
const LINK_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `<console_url>/approvals/<id>`, the id percent-encoded as a path segment.
pub fn console_link(console_url: &str, approval_id: &str) -> String {
    format!(
        "{}/approvals/{}",
        console_url.trim_end_matches('/'),
        utf8_percent_encode(approval_id, LINK_SEGMENT)
    )
}

/// RFC 3339 UTC, to the second.
fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// At most `max` characters of `text`, with `…` when cut.
fn bounded(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// Text for Slack's mrkdwn: hidden characters and look-alikes of ASCII revealed, its three
/// control characters escaped, bounded.
fn slack_text(text: &str) -> String {
    escape_mrkdwn(&bounded(&revealed_for_approvers(text), MAX_VALUE_CHARS))
}

/// A value (agent, action, resource…) for Slack's mrkdwn, as inline code: mrkdwn has no
/// escape character, and inside inline code `*`, `_` and `~` style nothing, so a value cannot
/// render bold, italic or struck through. Revealed as [`slack_text`] on one line (a newline
/// would end the code), each backtick shown as the look-alike `ˋ` (U+02CB) so that none closes
/// the code.
fn slack_value(text: &str) -> String {
    let shown = bounded(
        &revealed_line(&revealed_for_approvers(text)),
        MAX_VALUE_CHARS,
    );
    format!("`{}`", escape_mrkdwn(&shown.replace('`', "\u{2cb}")))
}

/// `&`, `<` and `>` escaped, as Slack asks: `<...>` would otherwise be a link or mention.
fn escape_mrkdwn(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Text for an Adaptive Card: hidden characters and look-alikes of ASCII revealed, bounded,
/// with the brackets of Markdown links escaped.
fn teams_text(text: &str) -> String {
    escape_markdown_links(&teams_value(text))
}

/// A value for an Adaptive Card's text run, which is never read as Markdown: hidden
/// characters and look-alikes of ASCII revealed, bounded, nothing else to escape.
fn teams_value(text: &str) -> String {
    bounded(&revealed_for_approvers(text), MAX_VALUE_CHARS)
}

/// One fact of an Adaptive Card: its title in bold and its value, each a text run, so that
/// no value is read as Markdown (a `FactSet`'s values are: `**x**` would be bold, `_x_`
/// italic).
fn teams_fact(title: &str, value: &str) -> Value {
    json!({"type": "RichTextBlock", "inlines": [
        {"type": "TextRun", "text": format!("{title}: "), "weight": "Bolder"},
        {"type": "TextRun", "text": teams_value(value)},
    ]})
}

/// `[` and `]` escaped (and `\` itself): a value an agent chose cannot become a link whose
/// text hides where it leads (`[Approve](https://elsewhere)`).
fn escape_markdown_links(text: &str) -> String {
    text.replace('\\', r"\\")
        .replace('[', r"\[")
        .replace(']', r"\]")
}

fn approvers_text(notice: &Notice) -> String {
    let who = if notice.approvers.is_empty() {
        "any approver".to_owned()
    } else {
        notice.approvers.join(", ")
    };
    if notice.approvals > 1 {
        format!("{who} ({} approvals)", notice.approvals)
    } else {
        who
    }
}

/// The arguments as a chat message shows them: pretty JSON, bounded, that can neither close
/// the code block it is shown in (each backtick becomes the look-alike `ˋ`, U+02CB) nor be a
/// link (`://` becomes `[:]//`, as in `https[:]//example.com`), nor hide or reorder part of
/// itself (hidden characters revealed), nor pass a look-alike for an ASCII letter (shown as
/// its escape, as the console shows it).
/// Holding numbers that may have been rounded, it starts by naming them
/// ([`super::rounded::note`]), within the same bound of [`MAX_ARGUMENT_CHARS`] characters.
/// Cut, it says so and how much was left out: the tail of long arguments is where an agent
/// would put what it hopes no approver reads.
fn arguments_text(arguments: &Value) -> String {
    let pretty = serde_json::to_string_pretty(arguments).unwrap_or_default();
    let safe = |text: &str| {
        revealed_for_approvers(text)
            .replace('`', "\u{2cb}")
            .replace("://", "[:]//")
    };
    let shown = safe(&pretty);
    let note = super::rounded::note(arguments).map(|note| format!("[{}]\n", safe(&note)));
    let note = note.as_deref().unwrap_or_default();
    let room = MAX_ARGUMENT_CHARS.saturating_sub(note.chars().count());
    let total = shown.chars().count();
    if total <= room {
        format!("{note}{shown}")
    } else {
        format!(
            "{note}{}\n[cut: the first {room} of {total} characters are shown here; read them all in the console]",
            bounded(&shown, room)
        )
    }
}

/// `value` with hidden characters and look-alikes of ASCII revealed in every string and key:
/// what a JSON webhook passes on to people reads as the agent sent it, nothing hidden,
/// reordered or imitated.
fn revealed_json(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(revealed_for_approvers(s).into_owned()),
        Value::Array(items) => Value::Array(items.iter().map(revealed_json).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (revealed_for_approvers(k).into_owned(), revealed_json(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The Slack incoming-webhook body: a fallback `text` and Block Kit `blocks` whose only
/// action is a link button to the console.
pub fn slack_body(notice: &Notice, link: &str, include_arguments: bool) -> Value {
    let field = |title: &str, value: &str| json!({"type": "mrkdwn", "text": format!("*{title}*\n{}", slack_value(value))});
    let expires = rfc3339(notice.expires_at);
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": "Approval needed", "emoji": false}}),
        json!({"type": "section", "fields": [
            field("Agent", &notice.agent),
            field("Action", &notice.action),
            field("Resource", &notice.resource),
            field("Policy", &notice.policy),
            field("Approvers", &approvers_text(notice)),
            field("Expires", &expires),
        ]}),
    ];
    if let Some(reason) = &notice.reason {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*Why*\n{}", slack_text(reason))}}));
    }
    if let Some(undeclared) = &notice.undeclared {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*Not judged*\n{}", slack_text(undeclared))}}));
    }
    if include_arguments && let Some(arguments) = &notice.arguments {
        blocks.push(
            json!({"type": "section", "text": {"type": "mrkdwn", "text": format!(
                "*Arguments*\n```{}```",
                escape_mrkdwn(&arguments_text(arguments))
            )}}),
        );
    }
    blocks.push(
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
            "Approval {}: approve or deny in the Warden console, with your second factor.",
            slack_value(&notice.approval_id)
        )}]}),
    );
    blocks.push(json!({"type": "actions", "elements": [{
        "type": "button",
        "action_id": "warden_open_console",
        "text": {"type": "plain_text", "text": "Review in Warden", "emoji": false},
        "url": link,
        "style": "primary",
    }]}));
    json!({
        "text": format!(
            "Approval needed: {} wants {} on {} (expires {expires}): {link}",
            slack_value(&notice.agent),
            slack_value(&notice.action),
            slack_value(&notice.resource)
        ),
        "blocks": blocks,
    })
}

/// The Teams body: a message with one Adaptive Card (1.4) attachment, as incoming webhooks
/// and Workflows' "When a Teams webhook request is received" accept; its only action opens
/// the console.
pub fn teams_body(notice: &Notice, link: &str, include_arguments: bool) -> Value {
    let mut body = vec![
        json!({"type": "TextBlock", "text": "Approval needed", "weight": "Bolder", "size": "Medium", "wrap": true}),
    ];
    if let Some(reason) = &notice.reason {
        body.push(json!({"type": "TextBlock", "text": teams_text(reason), "wrap": true}));
    }
    if let Some(undeclared) = &notice.undeclared {
        body.push(json!({"type": "RichTextBlock", "inlines": [
            {"type": "TextRun", "text": "Not judged: ", "weight": "Bolder"},
            {"type": "TextRun", "text": teams_value(undeclared)},
        ]}));
    }
    body.push(json!({"type": "Container", "items": [
        teams_fact("Agent", &notice.agent),
        teams_fact("Action", &notice.action),
        teams_fact("Resource", &notice.resource),
        teams_fact("Policy", &notice.policy),
        teams_fact("Approvers", &approvers_text(notice)),
        teams_fact("Expires", &rfc3339(notice.expires_at)),
        teams_fact("Approval", &notice.approval_id),
    ]}));
    if include_arguments && let Some(arguments) = &notice.arguments {
        body.push(
            json!({"type": "TextBlock", "text": "Arguments", "weight": "Bolder", "wrap": true}),
        );
        // A text run is never read as Markdown.
        body.push(json!({"type": "RichTextBlock", "inlines": [{"type": "TextRun", "text": arguments_text(arguments), "fontType": "Monospace"}]}));
    }
    body.push(json!({"type": "TextBlock", "text": "Approve or deny in the Warden console, with your second factor.", "isSubtle": true, "wrap": true}));
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
                "actions": [{"type": "Action.OpenUrl", "title": "Review in Warden", "url": link}],
            },
        }],
    })
}

/// The generic JSON body (`type: approval.pending`).
pub fn json_body(notice: &Notice, link: &str, include_arguments: bool) -> Value {
    let mut body = json!({
        "type": "approval.pending",
        "approval_id": notice.approval_id,
        "console_url": link,
        "agent": revealed_for_approvers(&notice.agent),
        "action": revealed_for_approvers(&notice.action),
        "resource": revealed_for_approvers(&notice.resource),
        "policy": revealed_for_approvers(&notice.policy),
        "reason": notice.reason.as_deref().map(revealed_for_approvers),
        "approvers": revealed_json(&json!(notice.approvers)),
        "approvals_required": notice.approvals,
        "expires_at": rfc3339(notice.expires_at),
    });
    if let Some(undeclared) = &notice.undeclared {
        body["undeclared_fields"] = Value::from(undeclared.as_str());
    }
    if include_arguments && let Some(arguments) = &notice.arguments {
        body["arguments"] = revealed_json(arguments);
        if let Some(note) = super::rounded::note(arguments) {
            body["arguments_rounded"] = revealed_for_approvers(&note).into();
        }
    }
    body
}

/// The `warden-signature` value for `body` sent at `timestamp`:
/// `t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// Why a `warden-signature` does not vouch for a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureRefused {
    /// Not `t=<unix seconds>,v1=<64 hex digits>`.
    #[error("the signature header is not t=<unix seconds>,v1=<hex>")]
    Malformed,
    /// The timestamp is further from now than the tolerance: a replay, or a clock off.
    #[error("the signature's timestamp is {0} s from now, beyond the tolerance")]
    Stale(u64),
    /// The HMAC does not match: another secret, or an altered body.
    #[error("the signature does not match the body")]
    Mismatch,
}

/// Checks a `warden-signature` `header` for `body` as a receiver would: the timestamp within
/// `tolerance` of `now` (unix seconds), then the HMAC in constant time.
pub fn verify_signature(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: u64,
    tolerance: Duration,
) -> Result<(), SignatureRefused> {
    let mut timestamp = None;
    let mut given = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<u64>().ok(),
            Some(("v1", v)) => given = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (Some(timestamp), Some(given)) = (timestamp, given) else {
        return Err(SignatureRefused::Malformed);
    };
    let skew = now.abs_diff(timestamp);
    if skew > tolerance.as_secs() {
        return Err(SignatureRefused::Stale(skew));
    }
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&given)
        .map_err(|_| SignatureRefused::Mismatch)
}

/// One webhook, its secrets read.
pub struct Target {
    name: String,
    kind: NotifyKind,
    url: Zeroizing<String>,
    secret: Option<Zeroizing<String>>,
    include_arguments: bool,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("include_arguments", &self.include_arguments)
            .finish_non_exhaustive()
    }
}

impl Target {
    /// A webhook: `secret` signs `json` bodies.
    pub fn new(
        name: impl Into<String>,
        kind: NotifyKind,
        url: impl Into<String>,
        secret: Option<String>,
        include_arguments: bool,
    ) -> Target {
        Target {
            name: name.into(),
            kind,
            url: Zeroizing::new(url.into()),
            secret: secret.map(Zeroizing::new),
            include_arguments,
        }
    }

    /// The webhook `approvals.notify[index]` configures, its URL and secret read now.
    pub async fn resolve(
        config: &NotifyConfig,
        index: usize,
        vault: Option<&Arc<SecretStore>>,
    ) -> Result<Target, NotifyError> {
        let read = |key: String, source| async move {
            crate::secrets::own::read(source, vault, &format!("approvals.{key}"))
                .await
                .map(|v| Zeroizing::new(v.trim().to_owned()))
                .map_err(|e| NotifyError::Secret {
                    key,
                    reason: e.to_string(),
                })
        };
        let url = match &config.url {
            UrlSource::Url(url) => Zeroizing::new(url.clone()),
            UrlSource::Secret(source) => {
                let key = format!("notify[{index}].url");
                let url = read(key.clone(), source).await?;
                // Never quote it: the URL is the credential.
                crate::config::url::secure_url(&url).map_err(|_| NotifyError::Url {
                    key,
                    reason: "is not an https URL (plain http only to a loopback address)".into(),
                })?;
                url
            }
        };
        let secret = match &config.secret {
            Some(source) => Some(read(format!("notify[{index}].secret"), source).await?),
            None => None,
        };
        Ok(Target {
            name: config.name_or_default(index),
            kind: config.kind,
            url,
            secret,
            include_arguments: config.include_arguments,
        })
    }

    /// Its name in logs and metrics.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The body this webhook posts for `notice`.
    pub fn body(&self, notice: &Notice, console_url: &str) -> Vec<u8> {
        let link = console_link(console_url, &notice.approval_id);
        let value = match self.kind {
            NotifyKind::Slack => slack_body(notice, &link, self.include_arguments),
            NotifyKind::Teams => teams_body(notice, &link, self.include_arguments),
            NotifyKind::Json => json_body(notice, &link, self.include_arguments),
        };
        serde_json::to_vec(&value).unwrap_or_default()
    }
}

/// How notifications are delivered.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Tries of one notification before it is given up.
    pub attempts: u32,
    /// The first wait after a failure; each next one doubles, drawn between half and all of
    /// it (jitter).
    pub initial_backoff: Duration,
    /// The longest wait.
    pub max_backoff: Duration,
    /// The longest one request may take.
    pub timeout: Duration,
    /// Notifications a webhook's queue holds; beyond it new ones are dropped and counted.
    pub queue: usize,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            attempts: 6,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            queue: 256,
        }
    }
}

/// `warden_approval_notifications_total{target, result}`: `sent`, `retried` (a try that
/// failed and will be made again), `failed` (given up) and `dropped` (queue full).
#[derive(Clone)]
pub struct NotifyMetrics {
    /// The counter.
    pub notifications: IntCounterVec,
}

impl Default for NotifyMetrics {
    fn default() -> Self {
        NotifyMetrics::new()
    }
}

impl NotifyMetrics {
    /// New, unregistered metrics.
    pub fn new() -> NotifyMetrics {
        NotifyMetrics {
            notifications: IntCounterVec::new(
                Opts::new(
                    "warden_approval_notifications_total",
                    "Approval notifications by webhook and result: sent, retried, failed (given up), dropped (queue full)",
                ),
                &["target", "result"],
            )
            .expect("static metric definition"),
        }
    }

    /// Registers them with `registry`.
    pub fn register(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.notifications.clone()))
    }

    /// The collectors, to register with Warden's registry.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![Box::new(self.notifications.clone())]
    }

    /// The count of `result` for `target`.
    pub fn count(&self, target: &str, result: &str) -> u64 {
        self.notifications
            .with_label_values(&[target, result])
            .get()
    }

    fn add(&self, target: &str, result: &str) {
        self.notifications
            .with_label_values(&[target, result])
            .inc();
    }
}

/// Hands notifications to each webhook's queue without waiting.
pub struct Notifier {
    queues: Vec<(String, mpsc::Sender<Arc<Notice>>)>,
    metrics: NotifyMetrics,
}

impl Notifier {
    /// The notifier of `approvals:`, its webhooks' secrets read now and their tasks spawned
    /// on the current runtime; `None` without webhooks.
    pub async fn from_config(
        config: &ApprovalsConfig,
        vault: Option<&Arc<SecretStore>>,
        metrics: NotifyMetrics,
    ) -> Result<Option<Notifier>, NotifyError> {
        if config.notify.is_empty() {
            return Ok(None);
        }
        let console_url = config
            .console_url
            .clone()
            .ok_or(NotifyError::NoConsoleUrl)?;
        let mut targets = Vec::with_capacity(config.notify.len());
        for (i, n) in config.notify.iter().enumerate() {
            targets.push(Target::resolve(n, i, vault).await?);
        }
        Notifier::start(targets, console_url, Delivery::default(), metrics).map(Some)
    }

    /// Starts one sender task per target on the current runtime; they end when the notifier
    /// is dropped and their queues are empty.
    pub fn start(
        targets: Vec<Target>,
        console_url: String,
        delivery: Delivery,
        metrics: NotifyMetrics,
    ) -> Result<Notifier, NotifyError> {
        let client = reqwest::Client::builder()
            .timeout(delivery.timeout)
            .connect_timeout(delivery.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| NotifyError::Client(e.to_string()))?;
        let console_url: Arc<str> = Arc::from(console_url);
        let mut queues = Vec::with_capacity(targets.len());
        for target in targets {
            let (tx, rx) = mpsc::channel(delivery.queue.max(1));
            queues.push((target.name.clone(), tx));
            let sender = Sender {
                target,
                client: client.clone(),
                console_url: console_url.clone(),
                delivery: delivery.clone(),
                metrics: metrics.clone(),
            };
            tokio::spawn(sender.run(rx));
        }
        Ok(Notifier { queues, metrics })
    }

    /// Queues `notice` for every webhook; never waits. A full queue drops it for that
    /// webhook, counted as `dropped` and logged.
    pub fn notify(&self, notice: Notice) {
        let notice = Arc::new(notice);
        for (name, queue) in &self.queues {
            if queue.try_send(notice.clone()).is_err() {
                self.metrics.add(name, "dropped");
                tracing::warn!(
                    target_name = %name,
                    approval_id = %notice.approval_id,
                    "approval notification dropped: the webhook's queue is full (it is failing or slow)"
                );
            }
        }
    }
}

/// One webhook's sender task.
struct Sender {
    target: Target,
    client: reqwest::Client,
    console_url: Arc<str>,
    delivery: Delivery,
    metrics: NotifyMetrics,
}

/// Why one try failed.
enum Failure {
    /// Worth another try (connection, timeout, 429, 5xx), after at least `retry_after`.
    Transient(String, Option<Duration>),
    /// Another try would fail the same way (another 4xx).
    Permanent(String),
}

impl Sender {
    async fn run(self, mut rx: mpsc::Receiver<Arc<Notice>>) {
        while let Some(notice) = rx.recv().await {
            self.deliver(&notice).await;
        }
    }

    /// Posts `notice`, trying again after transient failures up to `delivery.attempts`.
    async fn deliver(&self, notice: &Notice) {
        let body = self.target.body(notice, &self.console_url);
        let mut step = self.delivery.initial_backoff;
        let name = self.target.name.as_str();
        for attempt in 1..=self.delivery.attempts.max(1) {
            let error = match self.post(&body).await {
                Ok(()) => {
                    self.metrics.add(name, "sent");
                    return;
                }
                Err(Failure::Permanent(error)) => {
                    self.give_up(notice, attempt, &error);
                    return;
                }
                Err(Failure::Transient(error, retry_after)) => (error, retry_after),
            };
            if attempt == self.delivery.attempts.max(1) {
                self.give_up(notice, attempt, &error.0);
                return;
            }
            self.metrics.add(name, "retried");
            let half = step / 2;
            let jittered = half + rand::thread_rng().gen_range(Duration::ZERO..=step - half);
            let wait = error
                .1
                .map_or(jittered, |after| after.max(jittered))
                .min(self.delivery.max_backoff);
            tracing::debug!(
                target_name = %name,
                approval_id = %notice.approval_id,
                attempt,
                error = %error.0,
                wait_ms = wait.as_millis() as u64,
                "approval notification failed; trying again"
            );
            tokio::time::sleep(wait).await;
            step = (step * 2).min(self.delivery.max_backoff);
        }
    }

    fn give_up(&self, notice: &Notice, attempts: u32, error: &str) {
        self.metrics.add(&self.target.name, "failed");
        tracing::warn!(
            target_name = %self.target.name,
            kind = self.target.kind.label(),
            approval_id = %notice.approval_id,
            attempts,
            error,
            "gave up notifying approvers through this webhook; the approval still waits in the console"
        );
    }

    async fn post(&self, body: &[u8]) -> Result<(), Failure> {
        let mut request = self
            .client
            .post(self.target.url.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, "warden-approvals");
        if let Some(secret) = &self.target.secret {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            request = request.header(SIGNATURE_HEADER, signature(secret.as_bytes(), now, body));
        }
        let response = request
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| Failure::Transient(error_text(&e), None))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response.text().await.unwrap_or_default();
        let error = format!("answered {status}: {}", bounded(text.trim(), 200));
        if status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS {
            Err(Failure::Transient(error, retry_after))
        } else {
            Err(Failure::Permanent(error))
        }
    }
}

/// A reqwest error with its causes, never the URL (a webhook URL is a credential).
fn error_text(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        return "timed out".into();
    }
    let what = if err.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut causes = vec![what.to_owned()];
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    causes.dedup();
    causes.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode};

    fn notice() -> Notice {
        Notice {
            approval_id: "apr_01J9Z".into(),
            agent: "ci-bot".into(),
            action: "mcp:call_tool".into(),
            resource: r#"Tool::"github/create_issue""#.into(),
            policy: "prod-changes".into(),
            reason: Some("changes to <prod> need a human".into()),
            approvers: vec![r#"Group::"sre""#.into()],
            approvals: 2,
            expires_at: UNIX_EPOCH + Duration::from_secs(1_796_443_200),
            arguments: Some(json!({"repo": "acme/api", "title": "rotate keys"})),
            undeclared: None,
        }
    }

    const CONSOLE: &str = "https://warden.example.com/";
    const LINK: &str = "https://warden.example.com/approvals/apr_01J9Z";

    /// A real HTTP receiver on 127.0.0.1 that records what it is sent and answers with the
    /// statuses it is given, then 200.
    struct Receiver {
        url: String,
        seen: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    }

    async fn receiver(statuses: &[u16]) -> Receiver {
        let seen: Arc<Mutex<Vec<(HeaderMap, Bytes)>>> = Arc::default();
        let script = Arc::new(Mutex::new(
            statuses.iter().copied().collect::<VecDeque<u16>>(),
        ));
        let (record, answers) = (seen.clone(), script.clone());
        let app = axum::Router::new().route(
            "/hook/{token}",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let (record, answers) = (record.clone(), answers.clone());
                async move {
                    record.lock().unwrap().push((headers, body));
                    let status = answers.lock().unwrap().pop_front().unwrap_or(200);
                    (StatusCode::from_u16(status).unwrap(), "ok")
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver {
            url: format!("http://{addr}/hook/T0KEN-SECRET"),
            seen,
        }
    }

    impl Receiver {
        async fn wait_for(&self, n: usize) -> Vec<(HeaderMap, Bytes)> {
            for _ in 0..500 {
                if self.seen.lock().unwrap().len() >= n {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            self.seen.lock().unwrap().clone()
        }
    }

    fn fast() -> Delivery {
        Delivery {
            attempts: 3,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(50),
            timeout: Duration::from_secs(5),
            queue: 8,
        }
    }

    /// HMAC-SHA256 of `message` under `key`, computed by Python's `hmac` module: a check of
    /// Warden's signature that shares no code with it.
    fn python_hmac(key: &str, message: &[u8]) -> String {
        use std::io::Write as _;
        let mut child = std::process::Command::new("python3")
            .args([
                "-c",
                "import hmac, hashlib, sys; print(hmac.new(sys.argv[1].encode(), sys.stdin.buffer.read(), hashlib.sha256).hexdigest())",
                key,
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs the independent HMAC check");
        child.stdin.take().unwrap().write_all(message).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    #[test]
    fn the_console_link_carries_the_approval_id() {
        assert_eq!(console_link(CONSOLE, "apr_01J9Z"), LINK);
        assert_eq!(
            console_link("http://127.0.0.1:9443/console", "a/b?c"),
            "http://127.0.0.1:9443/console/approvals/a%2Fb%3Fc"
        );
    }

    /// RFC 3986's unreserved characters (`-`, `.`, `_`, `~`) are never percent-encoded, in
    /// the id or in the console's own path; what would end or change a path segment is.
    #[test]
    fn the_console_link_leaves_unreserved_characters_as_they_are() {
        assert_eq!(
            console_link(
                "https://ops.example.com/warden_console-eu.1~a/",
                "apr_01J-9Z.x~y"
            ),
            "https://ops.example.com/warden_console-eu.1~a/approvals/apr_01J-9Z.x~y"
        );
        assert_eq!(
            console_link(CONSOLE, "apr_1 #%/é"),
            "https://warden.example.com/approvals/apr_1%20%23%25%2F%C3%A9"
        );
    }

    #[tokio::test]
    async fn slack_gets_blocks_with_a_link_to_the_console_and_no_arguments() {
        let hook = receiver(&[]).await;
        let target = Target::new("chat", NotifyKind::Slack, &hook.url, None, false);
        let metrics = NotifyMetrics::new();
        let notifier =
            Notifier::start(vec![target], CONSOLE.into(), fast(), metrics.clone()).unwrap();
        notifier.notify(notice());
        let seen = hook.wait_for(1).await;
        assert_eq!(seen.len(), 1);
        let (headers, body) = &seen[0];
        assert_eq!(headers["content-type"], "application/json");
        assert!(headers.get(SIGNATURE_HEADER).is_none());
        let body: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(
            body,
            json!({
                "text": "Approval needed: `ci-bot` wants `mcp:call_tool` on `Tool::\"github/create_issue\"` (expires 2026-12-05T04:00:00Z): https://warden.example.com/approvals/apr_01J9Z",
                "blocks": [
                    {"type": "header", "text": {"type": "plain_text", "text": "Approval needed", "emoji": false}},
                    {"type": "section", "fields": [
                        {"type": "mrkdwn", "text": "*Agent*\n`ci-bot`"},
                        {"type": "mrkdwn", "text": "*Action*\n`mcp:call_tool`"},
                        {"type": "mrkdwn", "text": "*Resource*\n`Tool::\"github/create_issue\"`"},
                        {"type": "mrkdwn", "text": "*Policy*\n`prod-changes`"},
                        {"type": "mrkdwn", "text": "*Approvers*\n`Group::\"sre\" (2 approvals)`"},
                        {"type": "mrkdwn", "text": "*Expires*\n`2026-12-05T04:00:00Z`"},
                    ]},
                    {"type": "section", "text": {"type": "mrkdwn", "text": "*Why*\nchanges to &lt;prod&gt; need a human"}},
                    {"type": "context", "elements": [{"type": "mrkdwn", "text": "Approval `apr_01J9Z`: approve or deny in the Warden console, with your second factor."}]},
                    {"type": "actions", "elements": [{
                        "type": "button",
                        "action_id": "warden_open_console",
                        "text": {"type": "plain_text", "text": "Review in Warden", "emoji": false},
                        "url": LINK,
                        "style": "primary",
                    }]},
                ],
            })
        );
        assert!(!body.to_string().contains("rotate keys"));
        // The notifier counts the delivery once the receiver's answer is back, after the
        // receiver saw the request: wait for it (bounded).
        for _ in 0..500 {
            if metrics.count("chat", "sent") == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(metrics.count("chat", "sent"), 1);
    }

    #[test]
    fn slack_arguments_and_values_cannot_mention_or_link() {
        let mut n = notice();
        n.agent = "<!channel> bot".into();
        n.arguments = Some(json!({"cmd": "echo <@U123> && curl <https://evil.example|ok>"}));
        let body = slack_body(&n, LINK, true);
        let text = body.to_string();
        assert!(
            !text.contains("<!channel>") && !text.contains("<@U123>"),
            "{text}"
        );
        assert!(text.contains("&lt;!channel&gt; bot"), "{text}");
        assert_eq!(
            body["blocks"][3]["text"]["text"],
            "*Arguments*\n```{\n  \"cmd\": \"echo &lt;@U123&gt; &amp;&amp; curl &lt;https[:]//evil.example|ok&gt;\"\n}```"
        );
        // Long values are cut.
        n.resource = "x".repeat(5000);
        let body = slack_body(&n, LINK, false);
        let resource = body["blocks"][1]["fields"][2]["text"].as_str().unwrap();
        assert_eq!(
            resource.chars().count(),
            "*Resource*\n``".len() + MAX_VALUE_CHARS + 1
        );
    }

    #[test]
    fn hostile_arguments_cannot_close_their_code_block_or_become_links() {
        let mut n = notice();
        n.arguments = Some(json!({
            "body": "```\nhttps://evil.example/approve\n``` *done* `x`",
            "next": "ftp://files.example",
        }));
        let slack = slack_body(&n, LINK, true);
        let text = slack["blocks"][3]["text"]["text"].as_str().unwrap();
        let inner = text
            .strip_prefix("*Arguments*\n```")
            .and_then(|t| t.strip_suffix("```"))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(!inner.contains('`'), "{inner}");
        assert!(!inner.contains("://"), "{inner}");
        assert!(
            inner.contains("\u{2cb}\u{2cb}\u{2cb}\\nhttps[:]//evil.example/approve"),
            "{inner}"
        );
        assert!(inner.contains("ftp[:]//files.example"), "{inner}");
        let teams = teams_body(&n, LINK, true);
        let run = &teams["attachments"][0]["content"]["body"][4];
        assert_eq!(run["type"], "RichTextBlock");
        assert_eq!(run["inlines"][0]["type"], "TextRun");
        let shown = run["inlines"][0]["text"].as_str().unwrap();
        assert!(!shown.contains('`') && !shown.contains("://"), "{shown}");
        // The console link stays the only link either message carries.
        for body in [&slack, &teams] {
            let rest = body
                .to_string()
                .replace(LINK, "")
                .replace("http://adaptivecards.io/schemas/adaptive-card.json", "");
            assert!(!rest.contains("://"), "{rest}");
        }
    }

    #[test]
    fn every_kind_reveals_characters_that_would_hide_or_reorder_values_and_arguments() {
        let hidden = ['\u{202E}', '\u{2066}', '\u{2069}', '\u{200B}'];
        let mut n = notice();
        n.agent = "ci\u{200B}bot".into();
        n.resource = "Tool::\"pay\u{202E}gnp.exe\"".into();
        n.reason = Some("wire \u{2066}100\u{2069} EUR".into());
        n.arguments = Some(json!({"to\u{200B}": ["acct\u{202E}99"]}));
        let bodies = [
            slack_body(&n, LINK, true),
            teams_body(&n, LINK, true),
            json_body(&n, LINK, true),
        ];
        for body in &bodies {
            let text = serde_json::to_string(body).unwrap();
            for c in hidden {
                assert!(!text.contains(c), "{c:?} sent as is: {text}");
            }
            // (Teams' Markdown doubles the backslash of an escape in its text blocks.)
            assert!(text.contains(r"u{202e}gnp.exe"), "{text}");
            assert!(text.contains(r"acct\\u{202e}99"), "{text}");
            assert!(
                text.contains("u{2066}100") && text.contains("u{2069} EUR"),
                "{text}"
            );
        }
        let json = &bodies[2];
        assert_eq!(json["agent"], r"ci\u{200b}bot");
        assert_eq!(
            json["arguments"],
            json!({r"to\u{200b}": [r"acct\u{202e}99"]})
        );
    }

    #[test]
    fn every_kind_shows_look_alikes_of_ascii_letters_as_escapes() {
        // A Cyrillic о in the recipient's domain, a Cyrillic е in the tool's name.
        let mut n = notice();
        n.resource = "Tool::\"mail/s\u{435}nd\"".into();
        n.arguments = Some(json!({"to": "boss@c\u{43e}rp.com", "note": "Москва"}));
        for body in [
            slack_body(&n, LINK, true),
            teams_body(&n, LINK, true),
            json_body(&n, LINK, true),
        ] {
            let text = serde_json::to_string(&body).unwrap();
            assert!(
                !text.contains("c\u{43e}rp") && !text.contains("s\u{435}nd"),
                "a look-alike sent as is: {text}"
            );
            // (Teams' Markdown doubles the backslash of an escape in its text blocks.)
            assert!(text.contains(r"u{43e}rp.com"), "{text}");
            assert!(text.contains(r"u{435}nd"), "{text}");
            assert!(text.contains("Москва"), "another script stays: {text}");
        }
    }

    #[test]
    fn arguments_cut_in_a_message_say_so_and_how_much_is_left_out() {
        let mut n = notice();
        let tail = "and then wire everything to acct 99";
        n.arguments = Some(json!({"note": format!("{}{tail}", "a".repeat(3000))}));
        for body in [slack_body(&n, LINK, true), teams_body(&n, LINK, true)] {
            let text = body.to_string();
            assert!(!text.contains(tail), "{text}");
            assert!(
                text.contains("[cut: the first 2000 of 3051 characters are shown here; read them all in the console]"),
                "{text}"
            );
        }
        // Short arguments are shown whole, with nothing added.
        n.arguments = Some(json!({"env": "prod"}));
        let text = slack_body(&n, LINK, true).to_string();
        assert!(!text.contains("[cut:"), "{text}");
    }

    #[test]
    fn every_kind_says_which_numbers_of_the_arguments_may_be_rounded() {
        let mut n = notice();
        n.arguments = Some(serde_json::from_str(r#"{"amount": 12345678901234567890123}"#).unwrap());
        let said = "1 number may not be exactly as the agent sent it";
        for body in [
            slack_body(&n, LINK, true),
            teams_body(&n, LINK, true),
            json_body(&n, LINK, true),
        ] {
            let text = body.to_string();
            assert!(
                text.contains(said) && text.contains("(at /amount)"),
                "{text}"
            );
        }
        n.arguments = Some(json!({"amount": 123456789}));
        assert!(!slack_body(&n, LINK, true).to_string().contains(said));
    }

    #[test]
    fn the_rounded_numbers_note_counts_within_the_bound_of_the_arguments_shown() {
        // Keys the agent made long, holding many rounded numbers, after a long value.
        let mut arguments = serde_json::Map::new();
        arguments.insert("a".into(), json!("x".repeat(5_000)));
        for i in 0..50 {
            arguments.insert(format!("{i:02}{}", "k".repeat(3_000)), json!(1e25));
        }
        let text = arguments_text(&Value::Object(arguments));
        let (shown, cut) = text.rsplit_once("\n[cut: ").unwrap();
        // At most the bound, and the ellipsis where the arguments were cut.
        assert!(
            shown.chars().count() <= MAX_ARGUMENT_CHARS + 1,
            "{}",
            shown.len()
        );
        assert!(cut.ends_with("read them all in the console]"), "{cut}");
        // The note comes first, each pointer cut, and says how many it does not name.
        assert!(
            shown.starts_with("[50 numbers may not be exactly"),
            "{shown}"
        );
        assert!(
            shown.contains(&format!("/00{}…", "k".repeat(61))),
            "{shown}"
        );
        assert!(shown.contains("and 40 more)]"), "{shown}");
    }

    #[test]
    fn every_kind_says_a_rest_body_has_fields_no_policy_judged() {
        let mut n = notice();
        n.undeclared = crate::approval::undeclared::note(
            &json!({"undeclared_fields": {"count": 2, "names": ["as_user", "icon_url"]}}),
            false,
        );
        let said = "The body has 2 fields the connector does not declare, which no policy judged";
        let slack = slack_body(&n, LINK, false);
        assert!(
            slack["blocks"][3]["text"]["text"]
                .as_str()
                .unwrap()
                .starts_with(&format!("*Not judged*\n{said}")),
            "{slack}"
        );
        for body in [
            slack,
            teams_body(&n, LINK, false),
            json_body(&n, LINK, false),
        ] {
            let text = body.to_string();
            assert!(text.contains(said), "{text}");
            assert!(
                !text.contains("as_user"),
                "names are request content: {text}"
            );
        }
        assert!(
            !slack_body(&notice(), LINK, false)
                .to_string()
                .contains("Not judged")
        );
    }

    #[test]
    fn teams_values_cannot_become_disguised_links() {
        let mut n = notice();
        n.reason = Some(r"[Approve now](https://evil.example) \o/".into());
        n.resource = r#"Tool::"[x](https://evil.example)""#.into();
        n.arguments = Some(json!(["a"]));
        let body = teams_body(&n, LINK, true);
        let card = &body["attachments"][0]["content"];
        assert_eq!(
            card["body"][1]["text"],
            r"\[Approve now\](https://evil.example) \\o/"
        );
        assert_eq!(
            card["body"][2]["items"][2]["inlines"][1],
            json!({"type": "TextRun", "text": r#"Tool::"[x](https://evil.example)""#}),
            "a text run is not Markdown: nothing to escape"
        );
        assert_eq!(
            card["body"][4]["inlines"][0]["text"], "[\n  \"a\"\n]",
            "a text run is not Markdown: nothing to escape"
        );
        assert_eq!(
            card["actions"][0]["url"], LINK,
            "the only link is the console's"
        );
    }

    #[test]
    fn styling_characters_in_values_style_nothing_in_slack_or_teams() {
        let mut n = notice();
        n.agent = "*boss* _ok_ ~no~ `x`\nnext".into();
        n.resource = "Tool::\"**approved** _by sre_\"".into();
        let slack = slack_body(&n, LINK, false);
        assert_eq!(
            slack["blocks"][1]["fields"][0]["text"],
            "*Agent*\n`*boss* _ok_ ~no~ \u{2cb}x\u{2cb}\\nnext`",
            "inline code styles nothing, and nothing closes it"
        );
        assert!(
            slack["text"]
                .as_str()
                .unwrap()
                .starts_with("Approval needed: `*boss* _ok_ ~no~ \u{2cb}x\u{2cb}\\nnext` wants"),
            "{slack}"
        );
        let teams = teams_body(&n, LINK, false);
        let facts = &teams["attachments"][0]["content"]["body"][2];
        assert_eq!(
            facts["items"][0]["inlines"][1],
            json!({"type": "TextRun", "text": "*boss* _ok_ ~no~ `x`\nnext"})
        );
        assert_eq!(
            facts["items"][2]["inlines"][1],
            json!({"type": "TextRun", "text": "Tool::\"**approved** _by sre_\""})
        );
        assert!(
            !teams.to_string().contains("FactSet") && !teams.to_string().contains("\"value\""),
            "no value in a FactSet, whose values are Markdown: {teams}"
        );
    }

    fn fact(title: &str, value: &str) -> Value {
        json!({"type": "RichTextBlock", "inlines": [
            {"type": "TextRun", "text": format!("{title}: "), "weight": "Bolder"},
            {"type": "TextRun", "text": value},
        ]})
    }

    #[tokio::test]
    async fn teams_gets_an_adaptive_card_and_arguments_when_configured() {
        let hook = receiver(&[]).await;
        let target = Target::new("teams-0", NotifyKind::Teams, &hook.url, None, true);
        let notifier =
            Notifier::start(vec![target], CONSOLE.into(), fast(), NotifyMetrics::new()).unwrap();
        notifier.notify(notice());
        let seen = hook.wait_for(1).await;
        let body: Value = serde_json::from_slice(&seen[0].1).unwrap();
        assert_eq!(
            body,
            json!({
                "type": "message",
                "attachments": [{
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "contentUrl": null,
                    "content": {
                        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                        "type": "AdaptiveCard",
                        "version": "1.4",
                        "body": [
                            {"type": "TextBlock", "text": "Approval needed", "weight": "Bolder", "size": "Medium", "wrap": true},
                            {"type": "TextBlock", "text": "changes to <prod> need a human", "wrap": true},
                            {"type": "Container", "items": [
                                fact("Agent", "ci-bot"),
                                fact("Action", "mcp:call_tool"),
                                fact("Resource", "Tool::\"github/create_issue\""),
                                fact("Policy", "prod-changes"),
                                fact("Approvers", "Group::\"sre\" (2 approvals)"),
                                fact("Expires", "2026-12-05T04:00:00Z"),
                                fact("Approval", "apr_01J9Z"),
                            ]},
                            {"type": "TextBlock", "text": "Arguments", "weight": "Bolder", "wrap": true},
                            {"type": "RichTextBlock", "inlines": [{"type": "TextRun", "text": "{\n  \"repo\": \"acme/api\",\n  \"title\": \"rotate keys\"\n}", "fontType": "Monospace"}]},
                            {"type": "TextBlock", "text": "Approve or deny in the Warden console, with your second factor.", "isSubtle": true, "wrap": true},
                        ],
                        "actions": [{"type": "Action.OpenUrl", "title": "Review in Warden", "url": LINK}],
                    },
                }],
            })
        );
    }

    #[tokio::test]
    async fn json_is_signed_over_timestamp_and_body_and_a_failing_receiver_is_retried() {
        let hook = receiver(&[500]).await;
        let secret = "whsec_test_5ecret";
        let target = Target::new(
            "secops",
            NotifyKind::Json,
            &hook.url,
            Some(secret.into()),
            false,
        );
        let metrics = NotifyMetrics::new();
        let notifier =
            Notifier::start(vec![target], CONSOLE.into(), fast(), metrics.clone()).unwrap();
        notifier.notify(notice());
        let seen = hook.wait_for(2).await;
        assert_eq!(seen.len(), 2, "500 first, then 200");
        assert_eq!(seen[0].1, seen[1].1, "the same body is sent again");
        let body: Value = serde_json::from_slice(&seen[1].1).unwrap();
        assert_eq!(
            body,
            json!({
                "type": "approval.pending",
                "approval_id": "apr_01J9Z",
                "console_url": LINK,
                "agent": "ci-bot",
                "action": "mcp:call_tool",
                "resource": "Tool::\"github/create_issue\"",
                "policy": "prod-changes",
                "reason": "changes to <prod> need a human",
                "approvers": ["Group::\"sre\""],
                "approvals_required": 2,
                "expires_at": "2026-12-05T04:00:00Z",
            })
        );
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        for (headers, raw) in &seen {
            let header = headers[SIGNATURE_HEADER].to_str().unwrap();
            let (t, v1) = header
                .strip_prefix("t=")
                .and_then(|rest| rest.split_once(",v1="))
                .unwrap_or_else(|| panic!("{header}"));
            let t: u64 = t.parse().unwrap();
            assert!(now.abs_diff(t) < 60, "fresh timestamp {t}");
            let mut signed = format!("{t}.").into_bytes();
            signed.extend_from_slice(raw);
            assert_eq!(v1, python_hmac(secret, &signed));
            assert_eq!(
                verify_signature(
                    secret.as_bytes(),
                    header,
                    raw,
                    now,
                    Duration::from_secs(300)
                ),
                Ok(())
            );
            assert_ne!(v1, python_hmac("another secret", &signed));
        }
        assert_eq!(metrics.count("secops", "retried"), 1);
        for _ in 0..100 {
            if metrics.count("secops", "sent") == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(metrics.count("secops", "sent"), 1);
        // With include_arguments the arguments ride along, as JSON.
        let with = json_body(&notice(), LINK, true);
        assert_eq!(
            with["arguments"],
            json!({"repo": "acme/api", "title": "rotate keys"})
        );
    }

    #[test]
    fn a_signature_verifies_only_for_its_secret_body_and_time() {
        let body = br#"{"type":"approval.pending"}"#;
        let header = signature(b"k", 1_800_000_000, body);
        let five = Duration::from_secs(300);
        assert_eq!(
            verify_signature(b"k", &header, body, 1_800_000_100, five),
            Ok(())
        );
        assert_eq!(
            verify_signature(b"other", &header, body, 1_800_000_000, five),
            Err(SignatureRefused::Mismatch)
        );
        assert_eq!(
            verify_signature(b"k", &header, b"{}", 1_800_000_000, five),
            Err(SignatureRefused::Mismatch)
        );
        assert_eq!(
            verify_signature(b"k", &header, body, 1_800_000_301, five),
            Err(SignatureRefused::Stale(301))
        );
        // The timestamp is signed: moving it breaks the signature.
        let moved = header.replace("t=1800000000", "t=1800000200");
        assert_eq!(
            verify_signature(b"k", &moved, body, 1_800_000_200, five),
            Err(SignatureRefused::Mismatch)
        );
        for bad in ["", "t=1", "v1=00", "t=x,v1=00", "t=1800000000,v1=zz"] {
            assert_eq!(
                verify_signature(b"k", bad, body, 1_800_000_000, five),
                Err(SignatureRefused::Malformed),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn gives_up_after_the_attempts_and_at_once_on_a_client_error() {
        let always = receiver(&[500, 503, 502, 500]).await;
        let refused = receiver(&[400]).await;
        let metrics = NotifyMetrics::new();
        let notifier = Notifier::start(
            vec![
                Target::new("down", NotifyKind::Slack, &always.url, None, false),
                Target::new("bad", NotifyKind::Slack, &refused.url, None, false),
            ],
            CONSOLE.into(),
            fast(),
            metrics.clone(),
        )
        .unwrap();
        notifier.notify(notice());
        for _ in 0..300 {
            if metrics.count("down", "failed") + metrics.count("bad", "failed") == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(always.seen.lock().unwrap().len(), 3, "three attempts");
        assert_eq!(metrics.count("down", "retried"), 2);
        assert_eq!(metrics.count("down", "failed"), 1);
        assert_eq!(
            refused.seen.lock().unwrap().len(),
            1,
            "a 400 is not retried"
        );
        assert_eq!(metrics.count("bad", "failed"), 1);
        assert_eq!(
            metrics.count("bad", "sent") + metrics.count("down", "sent"),
            0
        );
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let metrics = NotifyMetrics::new();
            let delivery = Delivery { queue: 1, ..fast() };
            let notifier = Notifier::start(
                vec![Target::new(
                    "slow",
                    NotifyKind::Slack,
                    "http://127.0.0.1:9/x",
                    None,
                    false,
                )],
                CONSOLE.into(),
                delivery,
                metrics.clone(),
            )
            .unwrap();
            // The sender task has not run yet: one fits, the next two are dropped.
            for _ in 0..3 {
                notifier.notify(notice());
            }
            assert_eq!(metrics.count("slow", "dropped"), 2);
        });
    }

    #[tokio::test]
    async fn errors_never_quote_the_webhook_url() {
        let client = reqwest::Client::new();
        let err = client
            .post("http://127.0.0.1:9/services/T000/B000/XXXXSECRET")
            .send()
            .await
            .unwrap_err();
        let text = error_text(&err);
        assert!(text.starts_with("cannot connect"), "{text}");
        assert!(
            !text.contains("SECRET") && !text.contains("/services"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn targets_read_their_url_and_secret_from_sources() {
        let dir = tempfile::tempdir().unwrap();
        let url_file = dir.path().join("url");
        let secret_file = dir.path().join("secret");
        std::fs::write(&url_file, "https://hooks.example.com/abc\n").unwrap();
        std::fs::write(&secret_file, "s3cret\n").unwrap();
        let config = NotifyConfig {
            name: None,
            kind: NotifyKind::Json,
            url: UrlSource::Secret(crate::secrets::CredentialSource::File(url_file.clone())),
            secret: Some(crate::secrets::CredentialSource::File(secret_file)),
            include_arguments: false,
        };
        let target = Target::resolve(&config, 3, None).await.unwrap();
        assert_eq!(target.name(), "json-3");
        assert_eq!(target.url.as_str(), "https://hooks.example.com/abc");
        assert_eq!(target.secret.as_deref().map(String::as_str), Some("s3cret"));
        assert!(!format!("{target:?}").contains("abc"));
        for bad in ["not a url with a t0ken", "http://hooks.example.com/t0ken"] {
            std::fs::write(&url_file, bad).unwrap();
            let err = Target::resolve(&config, 3, None)
                .await
                .unwrap_err()
                .to_string();
            assert_eq!(
                err,
                "approvals.notify[3].url: the URL read from its source is not an https URL \
                 (plain http only to a loopback address)"
            );
        }
        let none = Notifier::from_config(&ApprovalsConfig::default(), None, NotifyMetrics::new())
            .await
            .unwrap();
        assert!(none.is_none());
    }
}
