//! Which context attributes the loaded policies read. A request's Cedar context is built with
//! only those: an attribute no policy reads (not even with `has`) cannot change a decision,
//! and building every one on every request costs more than judging the request.

use cedar_policy::Policy;
use serde_json::Value;

/// Every context attribute Warden provides (see `policies/schema.cedarschema`).
pub(crate) const ALL: [&str; 10] = [
    "route",
    "stream",
    "max_tokens",
    "tools",
    "input_tokens",
    "time",
    "hour",
    "weekday",
    "source_ip",
    "tls",
];

/// A set of context attribute names, one bit per entry of [`ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ContextKeys(u16);

impl ContextKeys {
    /// Every attribute.
    pub(crate) fn all() -> Self {
        ContextKeys((1 << ALL.len()) - 1)
    }

    /// Whether `name` must be built.
    pub(crate) fn contains(self, name: &str) -> bool {
        ALL.iter()
            .position(|k| *k == name)
            .is_some_and(|i| self.0 & (1 << i) != 0)
    }

    /// No attribute.
    pub(crate) fn none() -> Self {
        ContextKeys(0)
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
                        if let Some(i) = ALL.iter().position(|k| *k == attr) {
                            self.0 |= 1 << i;
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
            .fold(ContextKeys::none(), |keys, p| {
                keys.union(ContextKeys::read_by_policy(p))
            })
    }

    #[test]
    fn collects_only_the_attributes_policies_read() {
        let k = keys(
            r#"forbid (principal, action, resource) when { context.input_tokens > 10 };
               permit (principal, action, resource) when { context has max_tokens && context.max_tokens < 5 };"#,
        );
        assert!(k.contains("input_tokens") && k.contains("max_tokens"));
        for other in [
            "route",
            "stream",
            "tools",
            "time",
            "hour",
            "weekday",
            "source_ip",
            "tls",
        ] {
            assert!(!k.contains(other), "{other} is read by no policy");
        }
    }

    #[test]
    fn finds_attributes_nested_in_extension_calls_and_sets() {
        let k = keys(
            r#"permit (principal, action, resource)
               when { context.source_ip.isInRange(ip("10.0.0.0/8")) && [context.hour].contains(9) && context.tools.contains("exec") };"#,
        );
        assert!(k.contains("source_ip") && k.contains("hour") && k.contains("tools"));
        assert!(!k.contains("tls"));
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
