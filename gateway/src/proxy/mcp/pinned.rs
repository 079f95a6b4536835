//! Pinning on the request path of an MCP message: the pinned item a request uses, whether
//! pinning lets it be used, and pinning's verdict on each listed definition.
//!
//! What memory holds of the item is looked up before policy decides (`Pins::standing`, no
//! I/O); an item memory does not allow is settled ([`settle`]) only once policy may allow the
//! request, after the rate limit: a denied agent gets the policy's refusal whatever the item's
//! pin state, and Warden lists a server (up to 32 pages) for no request that is refused anyway.

use serde_json::Value;

use super::pages::read_pages;
use crate::action::{Finding, Verb};
use crate::mcp::Session;
use crate::pins::{CallStatus, ItemKind, PinError, PinMode, PinVerdict, Pins, Standing};
use crate::protocol::mcp::meaning::{ListKind, Rewrite};
use crate::proxy::exchange::Exchange;
use crate::text::{FIELD_MAX, QUOTE_MAX, bounded};

/// The pinned item a request of `verb` (JSON-RPC `method`) uses, by its kind and the server's
/// own name (or URI) for it: the tool called, the prompt got, the resource read or subscribed
/// to, the prompt or resource template whose argument is completed.
pub(super) fn pinned_item<'a>(
    verb: &Verb,
    rewrite: &'a Rewrite,
    method: Option<&str>,
) -> Option<(ItemKind, &'a str)> {
    match (verb, rewrite) {
        (Verb::McpCallTool, Rewrite::Name(own)) => Some((ItemKind::Tool, own)),
        (Verb::McpGetPrompt, Rewrite::Name(own)) => Some((ItemKind::Prompt, own)),
        // Unsubscribing stops what was allowed; it is not held.
        (Verb::McpReadResource, Rewrite::Uri(own)) if method != Some("resources/unsubscribe") => {
            Some((ItemKind::Resource, own))
        }
        // A completion shows the model text about the prompt's or template's arguments.
        (Verb::McpComplete, Rewrite::RefName(own)) => Some((ItemKind::Prompt, own)),
        (Verb::McpComplete, Rewrite::RefUri(own)) => Some((ItemKind::ResourceTemplate, own)),
        _ => None,
    }
}

/// One item pinning does not allow from memory, to settle once policy may allow its request.
pub(super) struct Unsettled<'a> {
    pub kind: ItemKind,
    /// The server's own name (or URI) for it.
    pub own: &'a str,
    pub standing: Standing,
}

/// Whether the item (of `session`'s `server`) may be used: the findings of what allows it, or
/// why not. A held item, or a tool under a name only another kind may have, is refused. An
/// item memory does not know makes Warden list the server's items of its kind (each pinned:
/// on first use in `tofu` mode), so an agent cannot go around the check by using an item
/// before it is listed; a listing that fails refuses it (fail closed). A resource URI still
/// neither pinned nor matched by a resource template is read, judged by policy alone, in
/// `tofu` mode; in `approved` mode the server's templates are listed too and it is refused
/// unless an approved one matches. A completion for a template never listed is likewise
/// judged by policy alone in `tofu` mode and refused in `approved` mode.
pub(super) async fn settle(
    ex: &Exchange,
    session: &Session,
    pins: &Pins,
    server: &str,
    item: &Unsettled<'_>,
) -> Result<Vec<Finding>, String> {
    let Unsettled { kind, own, .. } = *item;
    let mut standing = item.standing.clone();
    let approved_mode = pins.mode(server) == PinMode::Approved;
    let mut unchecked = false;
    if standing.status == CallStatus::Unknown {
        unchecked = list_and_pin(ex, session, pins, server, kind, own).await?;
        standing = pins.standing(server, kind, own);
    }
    if standing.status == CallStatus::Unknown
        && kind == ItemKind::Resource
        && approved_mode
        && !unchecked
    {
        list_and_pin(ex, session, pins, server, ItemKind::ResourceTemplate, own).await?;
        standing = pins.standing(server, kind, own);
    }
    // The lookups use the name as the server gave it; messages show it bounded (a URI
    // masked).
    let shown = bounded(&kind.shown(own), QUOTE_MAX).into_owned();
    let what = kind.as_str();
    let list = list_of(kind).method();
    match standing.status {
        CallStatus::Allowed => Ok(standing.findings),
        CallStatus::Reserved => Err(format!(
            "{what} {server}/{shown} is not called: its name is one only a prompt, a resource, \
             a resource template or the server's instructions is pinned under (no tool may \
             have it)"
        )),
        CallStatus::Held
            if ItemKind::of_pinned(&standing.pinned) == ItemKind::ResourceTemplate
                && kind == ItemKind::Resource =>
        {
            Err(format!(
                "{what} {server}/{shown} is held: it matches the resource template {}, whose \
             definition is not approved; {}",
                bounded(&standing.pinned, QUOTE_MAX),
                review_hint(server, &standing.pinned)
            ))
        }
        CallStatus::Held => Err(format!(
            "{what} {server}/{shown} is held: its definition changed since it was approved, or \
             is not approved yet; {}",
            review_hint(server, &standing.pinned)
        )),
        CallStatus::Unknown if unchecked => Err(format!(
            "{what} {server}/{shown} is listed by its server but its definition cannot be \
             checked (see Warden's log); it is not used"
        )),
        CallStatus::Unknown if kind == ItemKind::Resource && approved_mode => Err(format!(
            "resource {server}/{shown} is not read: in pins mode `approved` a URI is read only \
             when the server lists it with an approved definition or an approved resource \
             template of the server matches it, and neither is the case; an operator approves \
             the resource or a template with `warden tools approve` (see `warden tools list \
             --server {server}`)"
        )),
        CallStatus::Unknown
            if matches!(kind, ItemKind::Resource | ItemKind::ResourceTemplate)
                && !approved_mode =>
        {
            Ok(Vec::new())
        }
        CallStatus::Unknown => Err(format!(
            "{what} {server}/{shown} is not in the server's {list} result, so its definition \
             cannot be checked; it is not used"
        )),
    }
}

/// Lists `server`'s items of `kind` and pins each; whether the one named `own` is among them
/// but could not be checked. A listing that fails is the request's refusal.
async fn list_and_pin(
    ex: &Exchange,
    session: &Session,
    pins: &Pins,
    server: &str,
    kind: ItemKind,
    own: &str,
) -> Result<bool, String> {
    let list = list_of(kind);
    let shown = bounded(&kind.shown(own), QUOTE_MAX).into_owned();
    let failed = |why: &dyn std::fmt::Display| {
        tracing::warn!(server, list = list.method(), error = %why, "listing the server's items to check their definitions failed; the request is refused");
        format!(
            "{} {server}/{shown} is not used: Warden lists MCP server {server}'s {} to check \
             it against its pins, and the listing failed; try again later, and if it goes on \
             failing the operator of Warden or of the server should look at Warden's log",
            kind.as_str(),
            list.method()
        )
    };
    let link = session
        .link(server)
        .ok_or_else(|| failed(&"the session has no connection to the server"))?;
    let listed = read_pages(link, list.method(), list.key())
        .await
        .map_err(|e| failed(&e))?;
    let (field, _) = list.name_field();
    let key = pins.pinned_name(kind, own);
    let mut unchecked = false;
    let mut full = 0;
    for item in &listed {
        let checked = pin_check(ex, pins, server, kind, item).await;
        full += usize::from(checked == Checked::Full);
        if checked != Checked::Allowed
            && item
                .get(field)
                .and_then(Value::as_str)
                .is_some_and(|name| pins.pinned_name(kind, name) == key)
        {
            unchecked = true;
        }
    }
    warn_of_full(server, kind, full);
    Ok(unchecked)
}

/// What a request pins on first use: the items of this list.
fn list_of(kind: ItemKind) -> ListKind {
    match kind {
        ItemKind::Prompt => ListKind::Prompts,
        ItemKind::Resource => ListKind::Resources,
        ItemKind::ResourceTemplate => ListKind::ResourceTemplates,
        ItemKind::Tool | ItemKind::Instructions => ListKind::Tools,
    }
}

/// What pinning calls the items of a list.
pub(super) fn pinned_kind(kind: ListKind) -> ItemKind {
    match kind {
        ListKind::Tools => ItemKind::Tool,
        ListKind::Prompts => ItemKind::Prompt,
        ListKind::Resources => ItemKind::Resource,
        ListKind::ResourceTemplates => ItemKind::ResourceTemplate,
    }
}

/// Pinning's verdict on one listed definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Checked {
    /// It may be listed and used.
    Allowed,
    /// Hidden: changed, unapproved, or not checkable (logged).
    Hidden,
    /// Hidden: the server has as many of its kind pinned as Warden keeps
    /// ([`crate::pins::PINS_PER_KIND_MAX`]); the caller logs them once ([`warn_of_full`]).
    Full,
}

/// Pinning's verdict on one listed definition (of a tool, prompt, resource, resource template
/// or the server's instructions) of `server`. A changed or unapproved definition is audited
/// the first time it is seen; a definition that cannot be checked (the state store failed) is
/// hidden.
pub(super) async fn pin_check(
    ex: &Exchange,
    pins: &Pins,
    server: &str,
    kind: ItemKind,
    item: &Value,
) -> Checked {
    match pins.check_item(server, kind, item).await {
        Ok(check) => {
            if check.first_report
                && let PinVerdict::Changed(change) | PinVerdict::Unapproved(change) = &check.verdict
            {
                tracing::warn!(server, kind = kind.as_str(), item = %bounded(&change.tool, FIELD_MAX), digest = %change.digest, "an MCP definition is not the approved one: hidden and refused until an operator approves it");
                ex.tool_changed(change.audit_detail());
            }
            match check.allows() {
                true => Checked::Allowed,
                false => Checked::Hidden,
            }
        }
        Err(PinError::TooMany { .. }) => Checked::Full,
        Err(e) => {
            tracing::warn!(server, kind = kind.as_str(), error = %e, "an MCP definition could not be checked; it is hidden");
            Checked::Hidden
        }
    }
}

/// Logs, once for a listing, that `withheld` items of `kind` were hidden because `server` has
/// as many of that kind pinned as Warden keeps.
pub(super) fn warn_of_full(server: &str, kind: ItemKind, withheld: usize) {
    if withheld > 0 {
        tracing::warn!(
            server,
            kind = kind.as_str(),
            withheld,
            max = crate::pins::PINS_PER_KIND_MAX,
            "an MCP server offers more items of one kind than Warden pins; the new ones are hidden and refused"
        );
    }
}

/// Longest pinned name written into a suggested command; a longer one is found with
/// `warden tools list`.
const COMMAND_NAME_MAX: usize = 80;

/// How an operator reviews and approves the held item pinned as `pinned` on `server`. The
/// server chose the name: it is shell-quoted (`'` written `'\''`, so nothing in it, `$(…)`
/// say, runs when the command is pasted), and a long name or one with a control, invisible or
/// direction-changing character is not written at all: the operator finds it with
/// `warden tools list --server`.
fn review_hint(server: &str, pinned: &str) -> String {
    // A server's name is the configuration's; quoted only when the shell would read it.
    let server = if server
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        server.to_owned()
    } else {
        shell_quoted(server)
    };
    let unwritable = |name: &str| {
        name.chars()
            .any(|c| crate::text::is_hidden(c) || c == '\n' || c == '\t')
    };
    if pinned.len() > COMMAND_NAME_MAX || unwritable(pinned) || unwritable(&server) {
        return format!(
            "an operator finds it with `warden tools list --server {}`, reviews it with \
             `warden tools diff` and approves it with `warden tools approve`",
            crate::text::revealed_line(&server)
        );
    }
    let pinned = shell_quoted(pinned);
    format!(
        "an operator reviews it with `warden tools diff {server} {pinned}` and approves it with \
         `warden tools approve {server} {pinned}`"
    )
}

/// `text` as one single-quoted POSIX shell word.
fn shell_quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_completion_is_checked_against_the_pin_of_its_prompt_or_template() {
        let prompt = Rewrite::RefName("summarize".into());
        assert_eq!(
            pinned_item(&Verb::McpComplete, &prompt, Some("completion/complete")),
            Some((ItemKind::Prompt, "summarize"))
        );
        let template = Rewrite::RefUri("file:///{path}".into());
        assert_eq!(
            pinned_item(&Verb::McpComplete, &template, Some("completion/complete")),
            Some((ItemKind::ResourceTemplate, "file:///{path}"))
        );
        let uri = Rewrite::Uri("file:///a".into());
        assert_eq!(
            pinned_item(&Verb::McpReadResource, &uri, Some("resources/unsubscribe")),
            None
        );
    }

    #[test]
    fn the_suggested_approve_command_quotes_a_servers_name_for_the_shell() {
        let said = review_hint("docs", "prompt:it's $(rm -rf ~) `x`");
        assert_eq!(
            said,
            "an operator reviews it with `warden tools diff docs 'prompt:it'\\''s $(rm -rf ~) `x`'` \
             and approves it with `warden tools approve docs 'prompt:it'\\''s $(rm -rf ~) `x`'`"
        );
        for hostile in [
            "prompt:a\u{202E}txt.exe".to_owned(),
            "prompt:a\nb".to_owned(),
            "prompt:a\u{1b}[2J".to_owned(),
            format!("prompt:{}", "a".repeat(100)),
        ] {
            let said = review_hint("docs", &hostile);
            assert!(said.contains("`warden tools list --server docs`"), "{said}");
            assert!(!said.contains(&hostile[7..]), "{said}");
        }
    }
}
