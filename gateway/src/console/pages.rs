//! The console's pages, as HTML. Every value that came from outside (an agent's arguments, a
//! policy's reason, a name from the SSO provider) goes through [`esc`]; the pages carry no
//! inline script or style (the Content-Security-Policy forbids both), only `/assets/…`.

use std::fmt::Write;

use serde_json::Value;

use crate::state::approvals::{ApprovalRecord, ApprovalStatus, VoteDecision};

/// `text` escaped for HTML text and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Agent-controlled `text` escaped for HTML, with every character that is invisible or
/// reorders text ([`crate::text::is_hidden`]), and every look-alike of an ASCII letter in a
/// word that reads as ASCII, shown as its `\u{…}` escape
/// ([`crate::text::revealed_for_approvers`]): an agent can neither hide part of its arguments
/// from the approver, nor make them read in another order, nor pass `bоss@cоrp.com` (Cyrillic
/// `о`) for the address it imitates.
pub fn esc_revealed(text: &str) -> String {
    esc(&crate::text::revealed_for_approvers(text))
}

/// `message` as a sentence: its first letter upper-case (errors read "the code was …").
fn sentence(message: &str) -> String {
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A message above a page's content: a success (`ok`) or what went wrong.
fn flash_message(message: &str, ok: bool) -> String {
    format!(
        r#"<p class="flash {kind}" role="{role}">{m}</p>"#,
        kind = if ok { "ok" } else { "error" },
        role = if ok { "status" } else { "alert" },
        m = esc(&sentence(message)),
    )
}

/// Who is signed in, as the pages show them.
pub struct Viewer<'a> {
    pub display_name: &'a str,
    pub subject: &'a str,
    pub csrf: &'a str,
}

/// A whole page: `title`, the header (with the viewer's name and sign-out), `body`.
pub fn layout(title: &str, viewer: Option<&Viewer<'_>>, body: &str) -> String {
    let mut nav = String::new();
    if let Some(v) = viewer {
        let _ = write!(
            nav,
            r#"<nav aria-label="Console"><a href="/approvals">Pending</a><a href="/factors">Second factors</a></nav>
<form class="signout" method="post" action="/logout"><input type="hidden" name="csrf" value="{csrf}"><span class="who" title="{subject}">{name}</span><button type="submit" class="link">Sign out</button></form>"#,
            csrf = esc(v.csrf),
            subject = esc(v.subject),
            name = esc(v.display_name),
        );
    }
    let csrf_meta = viewer
        .map(|v| format!(r#"<meta name="csrf-token" content="{}">"#, esc(v.csrf)))
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
{csrf_meta}
<title>{title} · Warden</title>
<link rel="stylesheet" href="/assets/console.css">
<script src="/assets/console.js" defer></script>
</head>
<body>
<header class="top"><a class="brand" href="/approvals"><span class="mark" aria-hidden="true">◆</span> Warden approvals</a>{nav}</header>
<main id="main">
{body}
</main>
</body>
</html>
"#,
        title = esc(title),
    )
}

/// "3 min ago" / "in 12 min", from milliseconds.
pub fn relative(ms: i64, now_ms: i64) -> String {
    let delta = (ms - now_ms) / 1000;
    let span = delta.unsigned_abs();
    let amount = match span {
        0..=59 => format!("{span} s"),
        60..=3599 => format!("{} min", span / 60),
        3600..=86399 => format!("{} h {} min", span / 3600, span % 3600 / 60),
        _ => format!("{} d", span / 86400),
    };
    if delta < 0 {
        format!("{amount} ago")
    } else {
        format!("in {amount}")
    }
}

/// `2026-12-04 10:15:02 UTC`.
pub fn timestamp(ms: i64) -> String {
    let Ok(ms) = u64::try_from(ms) else {
        return ms.to_string();
    };
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(at)
        .to_string()
        .replacen('T', " ", 1)
        .replace('Z', " UTC")
}

/// The agent's name in a principal reference: `Agent::"ci-bot"` → `ci-bot`.
fn entity_id(reference: &str) -> &str {
    reference
        .split_once("::\"")
        .and_then(|(_, rest)| rest.strip_suffix('"'))
        .unwrap_or(reference)
}

/// What an approval is now: a pending one past its time is expired, whether or not the store
/// has marked it yet.
pub fn effective_status(r: &ApprovalRecord, now_ms: i64) -> ApprovalStatus {
    if r.status == ApprovalStatus::Pending && r.expires_ms <= now_ms {
        ApprovalStatus::Expired
    } else {
        r.status
    }
}

fn status_badge(status: ApprovalStatus) -> String {
    format!(
        r#"<span class="badge {s}">{s}</span>"#,
        s = esc(&status.to_string())
    )
}

/// The pending approvals, oldest first.
pub fn list(records: &[ApprovalRecord], now_ms: i64, flash: Option<&str>) -> String {
    let mut body = String::from("<h1>Waiting for approval</h1>\n");
    if let Some(flash) = flash {
        let _ = write!(body, r#"<p class="flash" role="status">{}</p>"#, esc(flash));
    }
    if records.is_empty() {
        body.push_str(
            r#"<p class="empty">Nothing waits for your decision. When an agent asks for something a policy holds for approval and you are one who may decide it, it appears here, and the configured channels are told.</p>"#,
        );
        return body;
    }
    body.push_str(r#"<ul class="cards">"#);
    for r in records {
        let _ = write!(
            body,
            r#"<li class="card"><a class="cardlink" href="/approvals/{id}">
<div class="row"><strong class="agent">{agent}</strong><span class="age" title="{asked}">asked {age}</span></div>
<div class="what"><code>{action}</code> on <code>{resource}</code></div>{excerpt}
<div class="why">{reason}</div>
<div class="row meta"><span>policy <code>{policy}</code></span><span>{votes} of {required} approvals · expires {expires}</span></div>
</a></li>"#,
            id = esc(&r.id),
            agent = esc_revealed(entity_id(&r.principal)),
            asked = timestamp(r.created_ms),
            age = relative(r.created_ms, now_ms),
            action = esc_revealed(&r.action),
            resource = esc_revealed(&r.resource),
            excerpt = excerpt(&r.context),
            reason = esc(if r.reason.is_empty() {
                "No reason given by the policy."
            } else {
                &r.reason
            }),
            policy = esc(&r.policy),
            votes = r
                .votes
                .iter()
                .filter(|v| v.decision == VoteDecision::Approve)
                .count(),
            required = r.required,
            expires = relative(r.expires_ms, now_ms),
        );
    }
    body.push_str("</ul>");
    body
}

/// The start of what an approval asks (a tool call's arguments, a request's body, what an LLM
/// call asks), on one line, for the pending list: approvals of one agent for one tool differ
/// there, so that a flood of look-alike requests does not hide the one that differs.
fn excerpt(context: &Value) -> String {
    let asked = context
        .get("arguments")
        .or_else(|| context.get("body"))
        .map(Value::to_string)
        .or_else(|| {
            context
                .get("prompt")?
                .get("last_user_message")?
                .as_str()
                .map(str::to_owned)
        });
    match asked {
        Some(asked) => {
            let one_line = crate::text::revealed_line(&asked);
            format!(
                r#"<div class="excerpt"><code>{}</code></div>"#,
                esc_revealed(&crate::text::bounded(&one_line, EXCERPT_CHARS))
            )
        }
        None => String::new(),
    }
}

/// The most characters of an approval's [`excerpt`] the pending list shows.
const EXCERPT_CHARS: usize = 160;

/// What the viewer can do on an approval's page.
pub enum Decide<'a> {
    /// Decide with a second factor: whether they have TOTP, and passkeys, and whether they
    /// may approve (or only deny: their own agent's action).
    Allowed {
        totp: bool,
        passkeys: bool,
        approve: bool,
    },
    /// They may not decide: why.
    NotAllowed(&'a str),
    /// It is not pending any more.
    Closed,
}

/// One approval with its whole context, and the forms that decide it.
pub fn detail(
    r: &ApprovalRecord,
    now_ms: i64,
    decide: Decide<'_>,
    flash: Option<(&str, bool)>,
    csrf: &str,
) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        r#"<p class="back"><a href="/approvals">← All pending approvals</a></p>
<h1><span class="agent">{agent}</span> wants <code>{action}</code></h1>
<p class="lead">on <code>{resource}</code> {badge}</p>"#,
        agent = esc_revealed(entity_id(&r.principal)),
        action = esc_revealed(&r.action),
        resource = esc_revealed(&r.resource),
        badge = status_badge(effective_status(r, now_ms)),
    );
    if let Some((message, ok)) = flash {
        body.push_str(&flash_message(message, ok));
    }
    let groups = if r.approver_groups.is_empty() {
        "anyone policy allows".to_owned()
    } else {
        r.approver_groups.join(", ")
    };
    let _ = write!(
        body,
        r#"<section class="panel"><h2>Why it waits</h2><dl class="facts">
<dt>Reason</dt><dd>{reason}</dd>
<dt>Policy</dt><dd><code>{policy}</code></dd>
<dt>Approvers</dt><dd>{required} of {groups}</dd>
<dt>Agent</dt><dd><code>{principal}</code>{owner}</dd>
<dt>Asked</dt><dd>{asked} <span class="muted">({age})</span></dd>
<dt>Expires</dt><dd>{expires_at} <span class="muted">({expires})</span></dd>
<dt>Approval</dt><dd><code>{id}</code></dd>
<dt>Action digest</dt><dd><code class="digest">{digest}</code></dd>
</dl></section>"#,
        reason = esc(if r.reason.is_empty() {
            "No reason given by the policy."
        } else {
            &r.reason
        }),
        policy = esc(&r.policy),
        required = r.required,
        groups = esc(&groups),
        principal = esc_revealed(&r.principal),
        owner = r
            .context
            .get("owner")
            .and_then(Value::as_str)
            .map(|o| format!(
                r#" <span class="muted">owned by {}</span>"#,
                esc_revealed(o)
            ))
            .unwrap_or_default(),
        asked = timestamp(r.created_ms),
        age = relative(r.created_ms, now_ms),
        expires_at = timestamp(r.expires_ms),
        expires = relative(r.expires_ms, now_ms),
        id = esc(&r.id),
        digest = esc(&r.digest),
    );
    body.push_str(&context_panel(&r.context));
    if !r.votes.is_empty() {
        body.push_str(r#"<section class="panel"><h2>Votes</h2><ul class="votes">"#);
        for v in &r.votes {
            let _ = write!(
                body,
                r#"<li><strong>{who}</strong> {decision} with {factor} <span class="muted">{at}{from}</span></li>"#,
                who = esc(&v.approver),
                decision = match v.decision {
                    VoteDecision::Approve => "approved",
                    VoteDecision::Deny => "denied",
                },
                factor = esc(v.factor.as_str()),
                at = timestamp(v.at_ms),
                from = v.source.map(|s| format!(" from {s}")).unwrap_or_default(),
            );
        }
        body.push_str("</ul></section>");
    }
    body.push_str(&decide_panel(r, effective_status(r, now_ms), decide, csrf));
    body
}

/// How long `shown` (what a box of arguments holds, as read) is, said above the box: the box
/// scrolls past a screen's worth, and whatever its first lines say, the approver knows there is
/// more.
fn size_note(shown: &str) -> String {
    let lines = shown.lines().count();
    let chars = shown.chars().count();
    let scroll = if lines > SCROLL_LINES || chars > SCROLL_CHARS {
        ": scroll the box to read all of it"
    } else {
        ""
    };
    format!(
        r#"<p class="muted size">{lines} {} · {chars} characters{scroll}</p>"#,
        if lines == 1 { "line" } else { "lines" }
    )
}

/// Past this many lines (or characters) a box of arguments may not show them all at once.
const SCROLL_LINES: usize = 16;
const SCROLL_CHARS: usize = 1200;

/// The action's arguments and findings, as approvers are shown them.
fn context_panel(context: &Value) -> String {
    let mut out = String::from(r#"<section class="panel"><h2>What exactly</h2>"#);
    let mut shown = false;
    // A tool call's arguments; a REST or egress request's body (shown when request content
    // is kept, with detected secrets masked).
    for (key, title) in [("arguments", "Arguments"), ("body", "Body")] {
        if let Some(value) = context.get(key) {
            let pretty = serde_json::to_string_pretty(value).unwrap_or_default();
            let pretty = crate::text::revealed_for_approvers(&pretty);
            let rounded = crate::approval::rounded::note(value)
                .map(|note| format!(r#"<p class="flash" role="status">{}.</p>"#, esc(&note)))
                .unwrap_or_default();
            let _ = write!(
                out,
                r#"<h3>{title}</h3>{rounded}{size}<pre class="args" tabindex="0">{}</pre>"#,
                esc(&pretty),
                size = size_note(&pretty),
            );
            shown = true;
        }
    }
    if let Some(note) = crate::approval::undeclared::note(context, true) {
        let _ = write!(
            out,
            r#"<p class="flash" role="status">{}.</p>"#,
            esc_revealed(&note)
        );
        shown = true;
    }
    if context.get("proposed").and_then(Value::as_bool) == Some(true)
        && context.get("arguments").is_none()
    {
        out.push_str(r#"<p class="flash" role="status">The call's arguments are not shown (<code>propose.approval_arguments</code> is off): below is only what Warden read from them.</p>"#);
    }
    if let Some(prompt) = context.get("prompt")
        && let Some(asked) = prompt.get("last_user_message").and_then(Value::as_str)
    {
        let cut = if prompt.get("truncated").and_then(Value::as_bool) == Some(true) {
            format!(
                r#"<p class="flash" role="status">The message is longer than what is shown here: only its first {} characters are kept for approvers.</p>"#,
                crate::approval::prompt::PROMPT_MAX_CHARS
            )
        } else {
            String::new()
        };
        let _ = write!(
            out,
            r#"<h3>What the agent asks</h3>{cut}<pre class="args" tabindex="0">{}</pre>"#,
            esc_revealed(asked)
        );
        shown = true;
    }
    if let Some(findings) = context.get("findings").and_then(Value::as_array)
        && !findings.is_empty()
    {
        out.push_str(r#"<h3>Findings</h3><ul class="findings">"#);
        for f in findings {
            let text = f
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| f.to_string());
            let _ = write!(out, "<li>{}</li>", esc_revealed(&text));
        }
        out.push_str("</ul>");
        shown = true;
    }
    let rest: Vec<_> = context
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "arguments" | "body" | "prompt" | "findings" | "owner" | "undeclared_fields"
            )
        })
        .filter(|(_, v)| !v.is_null())
        .collect();
    if !rest.is_empty() {
        out.push_str(r#"<h3>Request</h3><dl class="facts">"#);
        for (k, v) in rest {
            let text = v
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string());
            let _ = write!(
                out,
                "<dt>{}</dt><dd><code>{}</code></dd>",
                esc_revealed(k),
                esc_revealed(&text)
            );
        }
        out.push_str("</dl>");
        shown = true;
    }
    if !shown {
        out.push_str(r#"<p class="muted">The request carries no arguments.</p>"#);
    }
    out.push_str("</section>");
    out
}

fn decide_panel(
    r: &ApprovalRecord,
    status: ApprovalStatus,
    decide: Decide<'_>,
    csrf: &str,
) -> String {
    match decide {
        Decide::Closed => format!(
            r#"<section class="panel decide"><h2>Decision</h2><p>This approval is {}: nothing is left to decide.</p></section>"#,
            esc(&status.to_string())
        ),
        Decide::NotAllowed(why) => format!(
            r#"<section class="panel decide"><h2>Decision</h2><p class="flash error" role="alert">You cannot decide this approval: {}</p></section>"#,
            esc(why)
        ),
        Decide::Allowed {
            totp: false,
            passkeys: false,
            ..
        } => r#"<section class="panel decide"><h2>Decision</h2><p>Deciding needs a second factor, and you have none yet. <a href="/factors">Enrol an authenticator app or a passkey</a>, then come back.</p></section>"#.to_owned(),
        Decide::Allowed {
            totp,
            passkeys,
            approve,
        } => {
            let mut out = String::from(
                r#"<section class="panel decide"><h2>Decision</h2><p class="muted">Your decision is confirmed with a second factor bound to this exact action, and recorded in the audit log with your name and address.</p>"#,
            );
            if !approve {
                out.push_str(r#"<p class="flash" role="status">This is your own agent's action: you may deny it, and another approver must approve it.</p>"#);
            }
            let approve_passkey = if approve {
                r#"<button type="button" class="primary" data-passkey-decision="approve">Approve with passkey</button>"#
            } else {
                ""
            };
            let approve_totp = if approve {
                r#"<button type="submit" name="decision" value="approve" class="primary">Approve</button>"#
            } else {
                ""
            };
            if passkeys {
                let _ = write!(
                    out,
                    r#"<div class="passkey" data-approval="{id}">{approve_passkey}<button type="button" class="danger" data-passkey-decision="deny">Deny with passkey</button><p class="passkey-status" role="status" aria-live="polite"></p></div>"#,
                    id = esc(&r.id)
                );
            }
            if totp {
                let _ = write!(
                    out,
                    r#"<form class="totp" method="post" action="/approvals/{id}/decide">
<input type="hidden" name="csrf" value="{csrf}">
<label for="code">Code from your authenticator app</label>
<input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{{6}}" maxlength="6" required placeholder="123456">
<div class="buttons">{approve_totp}<button type="submit" name="decision" value="deny" class="danger">Deny</button></div>
</form>"#,
                    id = esc(&r.id),
                    csrf = esc(csrf),
                );
            }
            out.push_str("</section>");
            out
        }
    }
}

/// A registered passkey, as the factors page lists it.
pub struct PasskeyRow {
    pub credential_id: String,
    pub created_ms: i64,
    pub last_used_ms: Option<i64>,
}

/// What the factors page shows of TOTP.
pub enum TotpState<'a> {
    None,
    /// An enrolment just started: the QR code (SVG) and the secret for typing in.
    Started {
        qr_svg: &'a str,
        secret: &'a str,
    },
    /// Started earlier and not confirmed.
    Unconfirmed,
    Confirmed,
}

/// The viewer's second factors.
pub fn factors(
    totp: TotpState<'_>,
    passkeys: &[PasskeyRow],
    may_enrol: bool,
    verification: Verification,
    flash: Option<(&str, bool)>,
    csrf: &str,
    now_ms: i64,
) -> String {
    let mut body = String::from("<h1>Your second factors</h1>");
    if let Some((message, ok)) = flash {
        body.push_str(&flash_message(message, ok));
    }
    let hidden = format!(r#"<input type="hidden" name="csrf" value="{}">"#, esc(csrf));
    if !may_enrol {
        body.push_str(r#"<p class="flash" role="status">Adding or removing a factor needs a recent sign-in. <a href="/login?next=/factors">Sign in again</a> to change them.</p>"#);
    } else if let Verification::Needed { totp, passkeys } = verification {
        body.push_str(r#"<section class="panel verify"><h2>Confirm it is you</h2><p>A factor changes only with one you already have. Confirm with it first; it counts for a few minutes.</p>"#);
        if totp {
            let _ = write!(
                body,
                r#"<form method="post" action="/factors/verify" class="inline">{hidden}<label for="verify-code">Code from your app</label><input id="verify-code" name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{{6}}" maxlength="6" required><button type="submit" class="primary">Confirm</button></form>"#
            );
        }
        if passkeys {
            body.push_str(r#"<div class="passkey-verify"><button type="button" class="primary" data-passkey-verify>Confirm with a passkey</button><p class="passkey-status" role="status" aria-live="polite"></p></div>"#);
        }
        body.push_str("</section>");
    }
    // Changing a factor needs both; removing the app proves itself with its code.
    let may_change = may_enrol && verification.allows_changes();
    let disabled = if may_change { "" } else { " disabled" };
    body.push_str(r#"<section class="panel"><h2>Authenticator app (TOTP)</h2>"#);
    match totp {
        TotpState::Confirmed => {
            let _ = write!(
                body,
                r#"<p><span class="badge approved">enrolled</span> Codes from your app confirm decisions.</p>
<form method="post" action="/factors/totp/remove" class="inline">{hidden}<label for="remove-code">Current code</label><input id="remove-code" name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{{6}}" maxlength="6" required><button type="submit" class="danger"{disabled}>Remove</button></form>"#,
                disabled = if may_enrol { "" } else { " disabled" },
            );
        }
        TotpState::Started { qr_svg, secret } => {
            let _ = write!(
                body,
                r#"<ol class="steps"><li>Scan this code with your authenticator app (or type the key below).</li><li>Enter the code the app shows to finish.</li></ol>
<figure class="qr" aria-label="QR code of the enrolment">{qr_svg}</figure>
<p>Key: <code class="secret">{secret}</code></p>
<form method="post" action="/factors/totp/confirm" class="inline">{hidden}<label for="confirm-code">Code from the app</label><input id="confirm-code" name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{{6}}" maxlength="6" required><button type="submit" class="primary">Finish enrolment</button></form>"#,
                secret = esc(secret),
            );
        }
        TotpState::Unconfirmed | TotpState::None => {
            if matches!(totp, TotpState::Unconfirmed) {
                body.push_str(r#"<p>An enrolment was started and not finished. Start again to see a new code.</p>"#);
            } else {
                body.push_str(r#"<p>Not enrolled.</p>"#);
            }
            let _ = write!(
                body,
                r#"<form method="post" action="/factors/totp">{hidden}<button type="submit" class="primary"{disabled}>Enrol an authenticator app</button></form>"#,
            );
        }
    }
    body.push_str("</section>");
    body.push_str(r#"<section class="panel"><h2>Passkeys</h2>"#);
    if passkeys.is_empty() {
        body.push_str("<p>No passkey yet.</p>");
    } else {
        body.push_str(r#"<ul class="keys">"#);
        for p in passkeys {
            let short: String = p.credential_id.chars().take(12).collect();
            let _ = write!(
                body,
                r#"<li><code title="{id}">{short}…</code> <span class="muted">added {added}{used}</span>
<form method="post" action="/factors/passkeys/remove" class="inline">{hidden}<input type="hidden" name="credential" value="{id}"><button type="submit" class="link danger"{disabled}>Remove</button></form></li>"#,
                id = esc(&p.credential_id),
                short = esc(&short),
                added = relative(p.created_ms, now_ms),
                used = p
                    .last_used_ms
                    .map(|u| format!(", last used {}", relative(u, now_ms)))
                    .unwrap_or_default(),
            );
        }
        body.push_str("</ul>");
    }
    let _ = write!(
        body,
        r#"<div class="passkey-register"><button type="button" class="primary" data-passkey-register{disabled}>Add a passkey</button><p class="passkey-status" role="status" aria-live="polite"></p></div></section>"#,
    );
    body
}

/// Whether the approver must prove it is them before changing factors, and how they can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// No factor yet: a recent sign-in is enough.
    NotNeeded,
    /// Proved with an existing factor, within `console.enrol_within`.
    Done,
    /// Needed first, with the factors they have.
    Needed { totp: bool, passkeys: bool },
}

impl Verification {
    /// What an approver who has `proved` it is them (or not), with an app (`totp`) and
    /// `passkeys` (or not), must do before changing factors.
    pub fn of(proved: bool, totp: bool, passkeys: bool) -> Verification {
        if proved {
            Verification::Done
        } else if totp || passkeys {
            Verification::Needed { totp, passkeys }
        } else {
            Verification::NotNeeded
        }
    }

    /// Whether changes may be made now.
    pub fn allows_changes(self) -> bool {
        !matches!(self, Verification::Needed { .. })
    }
}

/// A page that explains what went wrong and what to do.
pub fn problem(title: &str, message: &str, action: Option<(&str, &str)>) -> String {
    let mut body = format!(
        r#"<h1>{}</h1><p class="flash error" role="alert">{}</p>"#,
        esc(title),
        esc(&sentence(message))
    );
    if let Some((href, label)) = action {
        let _ = write!(
            body,
            r#"<p><a class="button" href="{}">{}</a></p>"#,
            esc(href),
            esc(label)
        );
    }
    body
}

/// After signing out.
pub fn signed_out() -> String {
    r#"<h1>Signed out</h1><p>You are signed out of the approval console.</p><p><a class="button" href="/login">Sign in</a></p>"#.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_text_cannot_become_markup() {
        assert_eq!(
            esc(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        let page = layout(
            "<b>",
            Some(&Viewer {
                display_name: "<img src=x>",
                subject: "\"alice\"",
                csrf: "t\"ok",
            }),
            "",
        );
        assert!(!page.contains("<img src=x>"));
        assert!(!page.contains("<b>"));
        assert!(page.contains("&lt;img src=x&gt;"));
        assert!(!page.contains("<script>"), "no inline script");
    }

    #[test]
    fn invisible_and_reversing_characters_in_arguments_are_shown_as_escapes() {
        let hidden = [
            '\u{202E}',
            '\u{202A}',
            '\u{2066}',
            '\u{2069}',
            '\u{200B}',
            '\u{200D}',
            '\u{200F}',
            '\u{FEFF}',
            '\u{2060}',
            '\u{00AD}',
            '\u{E0041}',
            '\u{2028}',
        ];
        let args: String = hidden.iter().flat_map(|c| [*c, 'x']).collect();
        let context = serde_json::json!({
            "arguments": {"path": format!("invoice{args}.pdf")},
            "findings": ["secret\u{202E}gnp.exe"],
            "source\u{200B}ip": "192.0.2.1\u{2067}",
        });
        let panel = context_panel(&context);
        for c in hidden {
            assert!(!panel.contains(c), "{:?} shown as is", c);
        }
        assert!(
            panel.contains(r"invoice\u{202e}x\u{202a}x\u{2066}x"),
            "{panel}"
        );
        assert!(
            panel.contains(r"\u{feff}x") && panel.contains(r"\u{e0041}x"),
            "{panel}"
        );
        assert!(panel.contains(r"secret\u{202e}gnp.exe"), "{panel}");
        assert!(panel.contains(r"source\u{200b}ip") && panel.contains(r"192.0.2.1\u{2067}"));
        // Ordinary text, other scripts and emoji stay as they are; markup is still escaped.
        assert_eq!(
            esc_revealed("Zoë 日本 ✅ <b>\n\t"),
            "Zoë 日本 ✅ &lt;b&gt;\n\t"
        );
    }

    #[test]
    fn numbers_that_may_be_rounded_are_named_above_the_arguments_and_body() {
        let context: Value = serde_json::from_str(
            r#"{"arguments": {"amount": 12345678901234567890123}, "body": {"n": [1e30]}}"#,
        )
        .unwrap();
        let panel = context_panel(&context);
        assert!(
            panel.contains("1 number may not be exactly as the agent sent it")
                && panel.contains("(at /amount).")
                && panel.contains("(at /n/0)."),
            "{panel}"
        );
        let panel = context_panel(&serde_json::json!({"arguments": {"amount": 12}}));
        assert!(!panel.contains("may not be exactly"), "{panel}");
    }

    #[test]
    fn a_rest_bodys_undeclared_fields_are_said_to_be_there() {
        let context = serde_json::json!({
            "method": "POST",
            "undeclared_fields": {"count": 2, "names": ["as_user", "ic\u{43e}n_url"]},
        });
        let panel = context_panel(&context);
        assert!(
            panel.contains(
                "The body has 2 fields the connector does not declare, which no policy judged: \
                 as_user, ic\\u{43e}n_url."
            ),
            "{panel}"
        );
        assert!(!panel.contains("<dt>undeclared_fields</dt>"), "{panel}");
        let panel = context_panel(&serde_json::json!({"undeclared_fields": {"count": 3}}));
        assert!(
            panel.contains("3 fields the connector does not declare") && panel.contains("not kept"),
            "{panel}"
        );
        assert!(!panel.contains("carries no arguments"), "{panel}");
    }

    #[test]
    fn what_an_llm_call_asks_is_shown_as_text_and_not_again_among_the_facts() {
        let context = serde_json::json!({
            "prompt": {"last_user_message": "wire <b>all</b> the money\u{202E}", "truncated": false},
            "stream": false,
        });
        let panel = context_panel(&context);
        assert!(panel.contains("<h3>What the agent asks</h3>"), "{panel}");
        assert!(
            panel.contains(r"wire &lt;b&gt;all&lt;/b&gt; the money\u{202e}"),
            "{panel}"
        );
        assert!(!panel.contains("<dt>prompt</dt>"), "{panel}");
        // Without it (content not to be shown), no such section.
        let panel = context_panel(&serde_json::json!({"stream": false}));
        assert!(!panel.contains("What the agent asks"), "{panel}");
    }

    #[test]
    fn look_alikes_of_ascii_letters_in_what_the_agent_sent_are_shown_as_escapes() {
        // A Cyrillic о in the recipient's domain, a Cyrillic а in a host, in every part the
        // agent controls.
        let context = serde_json::json!({
            "arguments": {"to": "boss@c\u{43e}rp.com", "city": "Москва"},
            "prompt": {"last_user_message": "pay https://ex\u{430}mple.com", "truncated": false},
            "path": "/v1/p\u{430}y",
        });
        let panel = context_panel(&context);
        for imitation in ["c\u{43e}rp", "ex\u{430}mple", "p\u{430}y"] {
            assert!(
                !panel.contains(imitation),
                "a look-alike shown as is: {panel}"
            );
        }
        assert!(panel.contains(r"boss@c\u{43e}rp.com"), "{panel}");
        assert!(panel.contains(r"https://ex\u{430}mple.com"), "{panel}");
        assert!(panel.contains(r"/v1/p\u{430}y"), "{panel}");
        assert!(panel.contains("Москва"), "another script stays: {panel}");
    }

    #[test]
    fn approvers_are_told_when_what_they_read_is_not_all_of_it() {
        // An LLM call's message cut to its first 2000 characters.
        let cut = serde_json::json!({
            "prompt": {"last_user_message": format!("{}…", "a".repeat(2000)), "truncated": true},
        });
        let panel = context_panel(&cut);
        assert!(
            panel.contains("only its first 2000 characters are kept"),
            "{panel}"
        );
        let whole = serde_json::json!({
            "prompt": {"last_user_message": "short…", "truncated": false},
        });
        assert!(!context_panel(&whole).contains("first 2000"));
        // Long arguments scroll in their box: their size is said above it.
        let long: Vec<String> = (0..40).map(|i| format!("line {i}")).collect();
        let panel = context_panel(&serde_json::json!({"arguments": {"lines": long}}));
        assert!(
            panel.contains("44 lines · ") && panel.contains("scroll the box to read all of it"),
            "{panel}"
        );
        let panel = context_panel(&serde_json::json!({"arguments": {"env": "prod"}}));
        assert!(panel.contains("3 lines · 19 characters</p>"), "{panel}");
        // A proposed call whose arguments approvers do not see says so.
        let panel = context_panel(&serde_json::json!({"proposed": true, "programs": ["git"]}));
        assert!(panel.contains("arguments are not shown"), "{panel}");
        let panel = context_panel(
            &serde_json::json!({"proposed": true, "arguments": {"command": "git push"}}),
        );
        assert!(!panel.contains("arguments are not shown"), "{panel}");
    }

    #[test]
    fn the_pending_list_tells_apart_approvals_of_one_tool_by_what_they_ask() {
        let record = |id: &str, to: &str| ApprovalRecord {
            id: id.into(),
            digest: format!("sha256:{id}"),
            principal: "Agent::\"ci-bot\"".into(),
            action: "mcp:call_tool".into(),
            resource: "Tool::\"mail/send\"".into(),
            context: serde_json::json!({"arguments": {"to": to, "body": "hi\nthere"}}),
            policy: "mail".into(),
            reason: String::new(),
            approver_groups: vec!["sre".into()],
            required: 1,
            created_ms: 0,
            expires_ms: 60_000,
            status: ApprovalStatus::Pending,
            decided_ms: None,
            withdrawn: None,
            votes: Vec::new(),
        };
        let page = list(
            &[
                record("apr_1", "team@corp.com"),
                record("apr_2", "ceo@c\u{43e}rp.com"),
            ],
            1_000,
            None,
        );
        assert!(page.contains("team@corp.com"), "{page}");
        assert!(page.contains(r"ceo@c\u{43e}rp.com"), "{page}");
        assert!(page.contains(r"hi\nthere"), "on one line: {page}");
    }

    #[test]
    fn messages_read_as_sentences() {
        assert_eq!(sentence("the code was refused"), "The code was refused");
        assert_eq!(sentence(""), "");
    }

    #[test]
    fn times_read_as_people_say_them() {
        assert_eq!(relative(0, 90_000), "1 min ago");
        assert_eq!(relative(3_700_000, 0), "in 1 h 1 min");
        assert_eq!(relative(5_000, 0), "in 5 s");
        assert_eq!(timestamp(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(entity_id("Agent::\"ci-bot\""), "ci-bot");
    }
}
