//! Which context attributes the loaded policies read. A request's Cedar context is built with
//! only those: an attribute no policy reads (not even with `has`) cannot change a decision,
//! and building every one on every request costs more than judging the request.

use cedar_policy::Policy;
use serde_json::Value;

/// A context attribute Warden provides (see `policies/schema.cedarschema`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    // Every request's (`RequestContext`).
    Route,
    Time,
    Hour,
    Weekday,
    SourceIp,
    Tls,
    ClientCertificate,
    Findings,
    // An LLM call's (`LlmContext`).
    Stream,
    MaxTokens,
    Tools,
    InputTokens,
    CachedContent,
    // A REST call's (`HttpContext`).
    Method,
    Path,
    Fields,
    // Egress' (`EgressContext`).
    Port,
    Addresses,
    Scheme,
    Sni,
    // A tool call's (`ToolContext`).
    Arguments,
    // A proposed tool call's (`ProposeContext`).
    ArgumentsJson,
    Command,
    CommandParsed,
    Programs,
    Subcommands,
    PipesToShell,
    ForcePush,
    RecursiveDelete,
    DeletesOutsideWorkspace,
    Paths,
    OutsideWorkspace,
    WritesOutsideWorkspace,
    UnknownEffectOutsideWorkspace,
    RunsInlineCode,
    InlineCodePrograms,
    Hosts,
    Recipients,
    // A server's sampling request's (`SampleContext`; `max_tokens` too).
    IncludeContext,
    ModelHints,
    SystemPromptBytes,
    Messages,
    // A server's elicitation request's (`ElicitContext`).
    Mode,
    FieldNames,
    // A server's answer's (`ResultContext`; `method` and `arguments` too).
    Server,
    Locations,
    Uri,
    // Every action's, when policies read it (`SessionFacts`).
    Session,
    // Every action's, when policies read it and budgets are set (`BudgetFacts`).
    Budget,
}

impl Key {
    /// Every attribute.
    pub(crate) const ALL: [Key; 49] = [
        Key::Route,
        Key::Time,
        Key::Hour,
        Key::Weekday,
        Key::SourceIp,
        Key::Tls,
        Key::ClientCertificate,
        Key::Findings,
        Key::Stream,
        Key::MaxTokens,
        Key::Tools,
        Key::InputTokens,
        Key::CachedContent,
        Key::Method,
        Key::Path,
        Key::Fields,
        Key::Port,
        Key::Addresses,
        Key::Scheme,
        Key::Sni,
        Key::Arguments,
        Key::ArgumentsJson,
        Key::Command,
        Key::CommandParsed,
        Key::Programs,
        Key::Subcommands,
        Key::PipesToShell,
        Key::ForcePush,
        Key::RecursiveDelete,
        Key::DeletesOutsideWorkspace,
        Key::Paths,
        Key::OutsideWorkspace,
        Key::WritesOutsideWorkspace,
        Key::UnknownEffectOutsideWorkspace,
        Key::RunsInlineCode,
        Key::InlineCodePrograms,
        Key::Hosts,
        Key::Recipients,
        Key::IncludeContext,
        Key::ModelHints,
        Key::SystemPromptBytes,
        Key::Messages,
        Key::Mode,
        Key::FieldNames,
        Key::Server,
        Key::Locations,
        Key::Uri,
        Key::Session,
        Key::Budget,
    ];

    /// The attribute's name in Cedar: `context.<name>`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Key::Route => "route",
            Key::Time => "time",
            Key::Hour => "hour",
            Key::Weekday => "weekday",
            Key::SourceIp => "source_ip",
            Key::Tls => "tls",
            Key::ClientCertificate => "client_certificate",
            Key::Findings => "findings",
            Key::Stream => "stream",
            Key::MaxTokens => "max_tokens",
            Key::Tools => "tools",
            Key::InputTokens => "input_tokens",
            Key::CachedContent => "cached_content",
            Key::Method => "method",
            Key::Path => "path",
            Key::Fields => "fields",
            Key::Port => "port",
            Key::Addresses => "addresses",
            Key::Scheme => "scheme",
            Key::Sni => "sni",
            Key::Arguments => "arguments",
            Key::ArgumentsJson => "arguments_json",
            Key::Command => "command",
            Key::CommandParsed => "command_parsed",
            Key::Programs => "programs",
            Key::Subcommands => "subcommands",
            Key::PipesToShell => "pipes_to_shell",
            Key::ForcePush => "force_push",
            Key::RecursiveDelete => "recursive_delete",
            Key::DeletesOutsideWorkspace => "deletes_outside_workspace",
            Key::Paths => "paths",
            Key::OutsideWorkspace => "outside_workspace",
            Key::WritesOutsideWorkspace => "writes_outside_workspace",
            Key::UnknownEffectOutsideWorkspace => "unknown_effect_outside_workspace",
            Key::RunsInlineCode => "runs_inline_code",
            Key::InlineCodePrograms => "inline_code_programs",
            Key::Hosts => "hosts",
            Key::Recipients => "recipients",
            Key::IncludeContext => "include_context",
            Key::ModelHints => "model_hints",
            Key::SystemPromptBytes => "system_prompt_bytes",
            Key::Messages => "messages",
            Key::Mode => "mode",
            Key::FieldNames => "field_names",
            Key::Server => "server",
            Key::Locations => "locations",
            Key::Uri => "uri",
            Key::Session => "session",
            Key::Budget => "budget",
        }
    }

    /// The attribute called `name`, if Warden provides one.
    pub(crate) fn named(name: &str) -> Option<Key> {
        Key::ALL.into_iter().find(|k| k.name() == name)
    }

    fn bit(self) -> u64 {
        1 << self as u64
    }
}

/// A set of context attributes, one bit per [`Key`] (by default none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ContextKeys(u64);

impl ContextKeys {
    /// Every attribute.
    pub(crate) fn all() -> Self {
        ContextKeys((1 << Key::ALL.len()) - 1)
    }

    /// Whether `key` must be built.
    pub(crate) fn contains(self, key: Key) -> bool {
        self.0 & key.bit() != 0
    }

    /// Whether no attribute is in the set.
    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The attributes one policy reads. Any use of `context` other than reading a named
    /// attribute (`context == {...}`, `context` passed whole) needs them all.
    pub(crate) fn read_by_policy(policy: &Policy) -> Self {
        let mut keys = ContextKeys(0);
        match policy.to_json() {
            Ok(json) if keys.scan(&json) => keys,
            _ => ContextKeys::all(),
        }
    }

    /// Both sets' attributes.
    pub(crate) fn union(self, other: ContextKeys) -> Self {
        ContextKeys(self.0 | other.0)
    }

    /// Records the attributes `node` reads; false when `context` is used whole.
    fn scan(&mut self, node: &Value) -> bool {
        match node {
            Value::Object(map) => {
                for (op, arg) in map {
                    if matches!(op.as_str(), "." | "has")
                        && arg.get("left") == Some(&serde_json::json!({ "Var": "context" }))
                    {
                        let Some(attr) = arg.get("attr").and_then(Value::as_str) else {
                            return false;
                        };
                        // An attribute Warden does not provide needs nothing: schema validation
                        // refuses reading it, and `has` on it is false either way.
                        if let Some(key) = Key::named(attr) {
                            self.0 |= key.bit();
                        }
                        continue;
                    }
                    if op == "Var" && arg == "context" {
                        return false;
                    }
                    if !self.scan(arg) {
                        return false;
                    }
                }
                true
            }
            Value::Array(items) => items.iter().all(|i| self.scan(i)),
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn keys(src: &str) -> ContextKeys {
        cedar_policy::PolicySet::from_str(src)
            .expect("policies parse")
            .policies()
            .fold(ContextKeys::default(), |keys, p| {
                keys.union(ContextKeys::read_by_policy(p))
            })
    }

    #[test]
    fn collects_only_the_attributes_policies_read() {
        let k = keys(
            r#"forbid (principal, action, resource) when { context.input_tokens > 10 };
               permit (principal, action, resource) when { context has max_tokens && context.max_tokens < 5 };"#,
        );
        assert!(k.contains(Key::InputTokens) && k.contains(Key::MaxTokens));
        for other in Key::ALL {
            if ![Key::InputTokens, Key::MaxTokens].contains(&other) {
                assert!(!k.contains(other), "{other:?} is read by no policy");
            }
        }
    }

    #[test]
    fn finds_attributes_nested_in_extension_calls_and_sets() {
        let k = keys(
            r#"permit (principal, action, resource)
               when { context.source_ip.isInRange(ip("10.0.0.0/8")) && [context.hour].contains(9) && context.tools.contains("exec") };"#,
        );
        assert!(k.contains(Key::SourceIp) && k.contains(Key::Hour) && k.contains(Key::Tools));
        assert!(!k.contains(Key::Tls));
    }

    #[test]
    fn knows_the_attributes_of_every_kind_of_action() {
        let k = keys(
            r#"forbid (principal, action, resource) when { context.findings.contains("canary") };
               forbid (principal, action, resource) when { context has client_certificate };
               forbid (principal, action, resource) when { context.method == "DELETE" && context.path like "/admin*" };
               forbid (principal, action, resource) when { context.port != 443 && context has sni && context.scheme == "https" };
               forbid (principal, action, resource) when { context.addresses.contains(ip("10.0.0.1")) };"#,
        );
        for key in [
            Key::Findings,
            Key::ClientCertificate,
            Key::Method,
            Key::Path,
            Key::Port,
            Key::Sni,
            Key::Scheme,
            Key::Addresses,
        ] {
            assert!(k.contains(key), "{key:?}");
        }
        assert!(!k.contains(Key::Stream));
    }

    #[test]
    fn tool_arguments_are_read_by_dot_and_by_index_and_only_then() {
        let k = keys(
            r#"forbid (principal, action, resource) when { context.arguments.path like "/etc/*" };"#,
        );
        assert!(k.contains(Key::Arguments));
        let k = keys(
            r#"forbid (principal, action, resource) when { context["arguments"]["dry-run"] == true };"#,
        );
        assert!(k.contains(Key::Arguments));
        let k = keys(r#"forbid (principal, action, resource) when { context.tls };"#);
        assert!(!k.contains(Key::Arguments));
    }

    #[test]
    fn every_key_has_its_own_name_and_bit() {
        for key in Key::ALL {
            assert_eq!(Key::named(key.name()), Some(key));
        }
        assert_eq!(ContextKeys::all().0.count_ones() as usize, Key::ALL.len());
    }

    #[test]
    fn using_the_whole_context_needs_every_attribute() {
        let k = keys(r#"forbid (principal, action, resource) when { context == {} };"#);
        assert_eq!(k, ContextKeys::all());
    }

    #[test]
    fn no_policy_reading_context_needs_none() {
        let k = keys(r#"permit (principal, action, resource);"#);
        assert_eq!(k, ContextKeys(0));
    }
}
