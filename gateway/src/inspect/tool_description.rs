//! Hidden instructions in MCP tool definitions ("tool poisoning"): text a model reads in a
//! tool's name, title, description or schemas that tells it to do what the user did not ask.
//!
//! Each detector reports the field it matched in (`description`,
//! `inputSchema.properties.sidenote.description`), never the text:
//!
//! - `tool_hidden_characters`: invisible or direction-changing characters (the ones `text.rs`
//!   escapes; emoji joiners and presentation selectors excepted), control characters (C0, C1)
//!   other than a newline and a tab, or long runs of blanks that push text out of view;
//! - `tool_credential_access`: naming credential files (`~/.ssh`, `id_rsa`, `.env`,
//!   `mcp.json`, cloud and package-manager credentials) or asking to read keys, tokens,
//!   passwords or environment variables;
//! - `tool_instruction_override`: telling the model to ignore or override earlier instructions,
//!   fake `<IMPORTANT>`/`<SYSTEM>` tags, or rules for other tools ("when send_email is invoked,
//!   …");
//! - `tool_concealment`: telling the model to keep something from the user;
//! - `tool_exfiltration`: telling the model to send data to an address, a URL or a phone
//!   number, or to smuggle file contents or message history into arguments;
//! - `tool_cross_server`: a server's instructions naming another server of its endpoint
//!   (`Server files`, `files:`), speaking for it ([`names_another_server`]).
//!
//! Text is matched after NFKC folding, with invisible characters removed, in lower case, blanks
//! collapsed, so that look-alike letters and zero-width splits do not hide a phrase.

use std::sync::{Arc, LazyLock};

use regex::RegexSet;
use serde_json::Value;
use unicode_normalization::UnicodeNormalization;

use crate::action::Finding;
use crate::text::{Quoted, is_bidi_control, is_invisible};

/// Invisible or direction-changing characters, or text pushed out of view.
pub const HIDDEN_CHARACTERS: &str = "tool_hidden_characters";
/// Instructions to read credentials, keys or environment files.
pub const CREDENTIAL_ACCESS: &str = "tool_credential_access";
/// Instructions to ignore or override earlier instructions, or to change other tools.
pub const INSTRUCTION_OVERRIDE: &str = "tool_instruction_override";
/// Instructions to hide actions from the user.
pub const CONCEALMENT: &str = "tool_concealment";
/// Instructions to send data elsewhere.
pub const EXFILTRATION: &str = "tool_exfiltration";
/// A server's text naming another server of its endpoint.
pub const CROSS_SERVER: &str = "tool_cross_server";

/// Most findings reported for one tool.
const FINDINGS_MAX: usize = 32;
/// Most characters of a field path in a finding's location.
const LOCATION_MAX: usize = 200;
/// Blanks in a row that count as pushing text out of view.
const PADDING_RUN: usize = 40;

static CREDENTIAL_PATTERNS: LazyLock<RegexSet> = LazyLock::new(|| {
    set(&[
        r"~/\.ssh\b|\.ssh/",
        r"(?:^|[^a-z0-9])id[_ -](?:rsa|dsa|ecdsa|ed25519)\b",
        r"\.aws/(?:credentials|config)\b|\.config/gcloud\b|\.azure/|\.kube/config\b|\.docker/config\.json\b",
        r"\bmcp\.json\b|claude_desktop_config\.json\b|~/\.cursor/",
        r"\.npmrc\b|\.pypirc\b|\.netrc\b|\.git-credentials\b|\.gnupg\b|\.password-store\b|/etc/(?:passwd|shadow)\b",
        r"(?:^|[\s'`(/])\.env(?:\.[a-z]+)?\b",
        r"\b(?:read|cat|open|dump|extract|grab|steal|exfiltrate|include|pass|send|upload|copy|attach|leak|reveal)\b[^.!?]{0,60}\b(?:private[ _-]?keys?|ssh[ _-]?keys?|api[ _-]?keys?|access[ _-]?tokens?|secret[ _-]?keys?|credentials|passwords?|environment variables|env vars|session cookies?|seed phrases?|mnemonics?)\b",
    ])
});

static OVERRIDE_PATTERNS: LazyLock<RegexSet> = LazyLock::new(|| {
    set(&[
        r"\b(?:ignore|disregard|forget|override|bypass)\b[^.!?]{0,40}\b(?:previous|prior|earlier|above|preceding|other|all|any|your|system|original)\b[^.!?]{0,20}\b(?:instructions?|prompts?|rules|directions|guidelines|policies)\b",
        r"<\s*/?\s*(?:important|system|instructions?|admin|critical|secret|hidden)\s*>",
        r"\byou are now\b|\bnew system (?:prompt|instructions)\b",
        r"\b(?:when|whenever|before|after|if)\b[^.!?]{0,60}\b(?:is|are|gets?) (?:invoked|called|used|available)\b[^.!?]{0,80}\b(?:must|always|make sure|instead|change|replace)\b",
        r"\bside effect on\b[^.!?]{0,40}\btool\b",
        r"\bbefore (?:using|calling|invoking|running) (?:this|the|any) tool\b[^.!?]{0,20}\b(?:read|call|run|open|fetch|send|pass|include)\b",
    ])
});

static CONCEALMENT_PATTERNS: LazyLock<RegexSet> = LazyLock::new(|| {
    set(&[
        r"\b(?:do not|don't|dont|never)\s+(?:mention|tell|inform|notify|alert|reveal|disclose)\b",
        r"\b(?:without|not)\s+(?:telling|informing|notifying|alerting|asking|showing)\s+(?:the )?user",
        r"\b(?:hide|conceal|keep)\b[^.!?]{0,40}\bfrom the user\b",
        r"\b(?:secretly|covertly|discreetly)\b|\bsilently (?:send|forward|copy|include|read|add|call)\b",
        r"\bthe user (?:must|should|will) (?:not|never) (?:know|see|notice|be told)\b",
        r"\b(?:could|might|will|would) (?:even )?(?:upset|scare|alarm|worry) the user\b",
    ])
});

static EXFILTRATION_PATTERNS: LazyLock<RegexSet> = LazyLock::new(|| {
    set(&[
        r"\b(?:send|forward|copy|upload|post|transmit|email|mail|report|leak|redirect|change)\b[^.!?]{0,60}\bto\s+(?:https?://|[a-z0-9._%+-]+@[a-z0-9-]+\.[a-z]{2,}|\+?\d[\d\s-]{7,}\d)",
        r"\b(?:pass|put|include|insert|add|append|attach|concatenate)\b[^.!?]{0,30}\b(?:its|their|the file'?s?|the full|the entire|the complete|all)\b[^.!?]{0,20}\bcontents?\b[^.!?]{0,30}\b(?:as|in|into|to)\b",
        r"\b(?:include|append|add|attach)\b[^.!?]{0,40}\b(?:conversation history|chat history|previous messages|list of (?:last |previous )?messages|message history)\b",
    ])
});

/// The patterns as one set. In them `[^.!?]` spans words within one sentence; a dot inside a
/// path or a domain (`~/.ssh`, `example.com`) does not end it.
fn set(patterns: &[&str]) -> RegexSet {
    let within_sentence = r"(?:[^.!?]|\.\S)";
    RegexSet::new(
        patterns
            .iter()
            .map(|p| p.replace("[^.!?]", within_sentence)),
    )
    .unwrap_or_else(|e| panic!("built-in detector pattern: {e}"))
}

/// The findings in one tool definition (an entry of a `tools/list` result): each detector
/// that matched and the field it matched in, at most one per detector and field.
pub fn inspect_tool(tool: &Value) -> Vec<Finding> {
    let mut findings = Vec::new();
    let Some(object) = tool.as_object() else {
        return findings;
    };
    for field in ["name", "title", "description"] {
        if let Some(Value::String(text)) = object.get(field) {
            inspect_text(text, field, &mut findings);
        }
    }
    for field in ["inputSchema", "outputSchema", "annotations"] {
        if let Some(value) = object.get(field) {
            walk(value, field.to_string(), &mut findings);
        }
    }
    findings.truncate(FINDINGS_MAX);
    findings
}

/// The findings in one prompt, resource or resource template a server lists (an entry of a
/// `prompts/list`, `resources/list` or `resources/templates/list` result): its name, title
/// and description, and a prompt's `arguments` (their names and descriptions), read as a
/// tool's definition is.
pub fn inspect_listed(item: &Value) -> Vec<Finding> {
    let mut findings = inspect_tool(item);
    if let Some(arguments) = item.get("arguments") {
        walk(arguments, "arguments".to_string(), &mut findings);
    }
    findings.truncate(FINDINGS_MAX);
    findings
}

/// Every string and object key under `value`, with its path.
fn walk(value: &Value, path: String, findings: &mut Vec<Finding>) {
    if findings.len() >= FINDINGS_MAX {
        return;
    }
    match value {
        Value::String(text) => inspect_text(text, &path, findings),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, format!("{path}[{i}]"), findings);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let child = format!("{path}.{}", Quoted::with_max(key, LOCATION_MAX));
                inspect_text(key, &format!("{child} (name)"), findings);
                walk(item, child, findings);
            }
        }
        _ => {}
    }
}

/// A [`CROSS_SERVER`] finding at `location` when `text` (a server's instructions) names one
/// of `others`, the other servers of its endpoint, as Warden labels a server's section
/// (`Server <other>`) or as a heading (`<other>:`); matched folded, so case, look-alike
/// letters and invisible characters do not hide it.
pub fn names_another_server(text: &str, others: &[&str], location: &str) -> Option<Finding> {
    let folded = fold(text);
    let named = others.iter().any(|other| {
        let other = fold(other);
        !other.is_empty()
            && folded.match_indices(other.as_str()).any(|(at, _)| {
                let before = &folded[..at];
                let after = &folded[at + other.len()..];
                let word_ends =
                    !after.starts_with(|c: char| c.is_alphanumeric() || c == '-' || c == '_');
                let word_starts =
                    !before.ends_with(|c: char| c.is_alphanumeric() || c == '-' || c == '_');
                let labelled = before.ends_with("server ") && word_ends;
                let heading = word_starts && after.trim_start().starts_with(':');
                labelled || heading
            })
    });
    named.then(|| Finding {
        detector: Arc::from(CROSS_SERVER),
        location: Quoted::with_max(location, LOCATION_MAX).to_string(),
    })
}

/// Adds what `text`, found at `location`, shows (up to the most findings one definition
/// reports, counted in `findings`).
/// The whole of `text` is read, however long: a payload padded past any bound would
/// otherwise pass unseen (a list's size is bounded where it is read, `proxy/mcp/message.rs`).
pub fn inspect_text(text: &str, location: &str, findings: &mut Vec<Finding>) {
    let detected = detected(text);
    report(&detected, location, findings);
}

/// The hidden-instruction detectors that match `text`, in the order they are reported.
pub fn detected(text: &str) -> Vec<&'static str> {
    let mut detected = Vec::new();
    if hides_characters(text) {
        detected.push(HIDDEN_CHARACTERS);
    }
    let folded = fold(text);
    for (detector, patterns) in [
        (CREDENTIAL_ACCESS, &*CREDENTIAL_PATTERNS),
        (INSTRUCTION_OVERRIDE, &*OVERRIDE_PATTERNS),
        (CONCEALMENT, &*CONCEALMENT_PATTERNS),
        (EXFILTRATION, &*EXFILTRATION_PATTERNS),
    ] {
        if patterns.is_match(&folded) {
            detected.push(detector);
        }
    }
    detected
}

/// Adds a finding of each of `detected` at `location` (up to the most findings one definition
/// reports, counted in `findings`).
pub fn report(detected: &[&'static str], location: &str, findings: &mut Vec<Finding>) {
    for detector in detected {
        if findings.len() < FINDINGS_MAX {
            findings.push(Finding {
                detector: Arc::from(*detector),
                location: Quoted::with_max(location, LOCATION_MAX).to_string(),
            });
        }
    }
}

/// Whether `text` has invisible or direction-changing characters (other than those emoji
/// use), control characters other than a newline and a tab (a terminal's escapes clear,
/// retitle or overwrite what a person reads; a carriage return before a newline is a line
/// ending), or a run of blanks long enough to push what follows out of view.
fn hides_characters(text: &str) -> bool {
    let mut previous = ' ';
    let mut blanks = 0usize;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if (is_invisible(c) || is_bidi_control(c)) && !emoji_part(previous, c) {
            return true;
        }
        if c.is_control() && c != '\n' && c != '\t' && !(c == '\r' && chars.peek() == Some(&'\n')) {
            return true;
        }
        if c == ' ' || c == '\t' || c == '\u{a0}' {
            blanks += 1;
            if blanks >= PADDING_RUN {
                return true;
            }
        } else {
            blanks = 0;
        }
        previous = c;
    }
    false
}

/// Zero-width joiners and variation selectors after a pictograph are part of an emoji.
fn emoji_part(previous: char, c: char) -> bool {
    matches!(c, '\u{200D}' | '\u{FE0E}' | '\u{FE0F}')
        && u32::from(previous) >= 0x2000
        && !previous.is_alphanumeric()
}

/// `text` as the patterns read it: NFKC-folded, invisible characters removed, lower case,
/// blanks collapsed to one space.
fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = false;
    for c in text.nfkc() {
        if is_invisible(c) || is_bidi_control(c) {
            continue;
        }
        if c.is_whitespace() {
            blank = true;
            continue;
        }
        if blank && !out.is_empty() {
            out.push(' ');
        }
        blank = false;
        match c {
            '\u{2018}' | '\u{2019}' => out.push('\''),
            _ => out.extend(c.to_lowercase()),
        }
    }
    out
}

#[cfg(test)]
mod tests;
