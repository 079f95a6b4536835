//! The Cedar declarations of a connector's actions, generated from its operations and added to
//! the policy schema for every connector a route uses: a policy naming `github:issues.create`
//! validates as soon as a route speaks GitHub, and the declarations can never fall out of step
//! with the connector.
//!
//! Each operation is an action on `Operation` with `HttpContext`; one with fields gets that
//! context's attributes plus `fields`, a record of its fields (each optional: a request may
//! leave one out). Two action groups per connector: `<connector>:read` gathers the operations
//! that only read (GET and HEAD, unless the connector says otherwise with `read:`),
//! `<connector>:write` the others.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::operations::{FieldKind, Operations};

/// `HttpContext`'s attributes (policies/schema.cedarschema), repeated in the context of an
/// operation with fields: Cedar records do not extend one another. Name, type, required.
const HTTP_CONTEXT_ATTRIBUTES: [(&str, &str, bool); 12] = [
    ("route", "String", true),
    ("time", "Long", true),
    ("hour", "Long", true),
    ("weekday", "Long", true),
    ("source_ip", "ipaddr", true),
    ("tls", "Boolean", true),
    ("client_certificate", "String", false),
    ("findings", "Set<String>", true),
    ("session", "SessionFacts", false),
    ("budget", "BudgetFacts", false),
    ("method", "String", true),
    ("path", "String", true),
];

/// The group of operations that only read.
pub const READ_GROUP: &str = "read";
/// The group of operations that change something.
pub const WRITE_GROUP: &str = "write";

/// The schema declaring `operations`' actions and groups, in Cedar's JSON schema syntax (which
/// Cedar reads many times faster than its own for the thousand actions of a large API).
pub fn fragment(operations: &Operations) -> String {
    let ns = operations.namespace();
    // One declaration per action, however many method and path pairs it has.
    let mut actions: BTreeMap<&str, (bool, BTreeMap<&str, FieldKind>, bool)> = BTreeMap::new();
    for op in operations.iter() {
        let entry = actions
            .entry(&op.action)
            .or_insert((true, BTreeMap::new(), false));
        entry.0 &= op.read;
        if let Some(fields) = &op.fields {
            entry.2 = true;
            for f in fields {
                entry.1.insert(&f.name, f.kind);
            }
        }
    }
    let mut declared = Map::new();
    for group in [READ_GROUP, WRITE_GROUP] {
        declared.insert(format!("{ns}:{group}"), json!({}));
    }
    for (action, (read, fields, has_fields)) in actions {
        let group = if read { READ_GROUP } else { WRITE_GROUP };
        let context = if has_fields {
            let mut attributes: Map<String, Value> = HTTP_CONTEXT_ATTRIBUTES
                .iter()
                .map(|(name, ty, required)| ((*name).to_owned(), attribute(ty, *required)))
                .collect();
            let fields: Map<String, Value> = fields
                .iter()
                .map(|(name, kind)| ((*name).to_owned(), attribute(kind.cedar_type(), false)))
                .collect();
            attributes.insert(
                "fields".into(),
                json!({"type": "Record", "attributes": fields}),
            );
            json!({"type": "Record", "attributes": attributes})
        } else {
            json!({"type": "HttpContext"})
        };
        declared.insert(
            action.to_owned(),
            json!({
                "memberOf": [{"id": format!("{ns}:{group}")}],
                "appliesTo": {
                    "principalTypes": ["Agent"],
                    "resourceTypes": ["Operation"],
                    "context": context,
                },
            }),
        );
    }
    json!({"": {"entityTypes": {}, "actions": declared}}).to_string()
}

/// A record attribute of Cedar type `ty` (`String`, `Long`, `Bool`, `ipaddr`, `Set<String>`)
/// in the JSON schema syntax.
fn attribute(ty: &str, required: bool) -> Value {
    let mut t = match ty {
        "ipaddr" => json!({"type": "Extension", "name": "ipaddr"}),
        "Set<String>" => json!({"type": "Set", "element": {"type": "String"}}),
        "Bool" | "Boolean" => json!({"type": "Boolean"}),
        other => json!({"type": other}),
    };
    t["required"] = json!(required);
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::rest::operations::{FieldSpec, OperationSpec};

    #[test]
    fn each_action_is_declared_once_in_its_group_with_its_fields() {
        let op = |action: &str, method: &str, path: &str| OperationSpec {
            action: action.into(),
            method: method.into(),
            path: path.into(),
            fields: Default::default(),
            read: None,
        };
        let mut post = op("chat.postMessage", "POST", "/chat.postMessage");
        post.fields
            .insert("channel".into(), FieldSpec::From("body.channel".into()));
        let table = Operations::compile(
            "slack",
            &[
                op("conversations.list", "GET", "/conversations.list"),
                op("conversations.list", "POST", "/conversations.list"),
                post,
            ],
        )
        .expect("valid");
        let text = fragment(&table);
        let schema: Value = serde_json::from_str(&text).expect("JSON");
        let actions = &schema[""]["actions"];
        assert_eq!(actions["slack:read"], json!({}));
        assert_eq!(
            actions["slack:conversations.list"]["memberOf"],
            json!([{"id": "slack:write"}]),
            "a POST makes the action a write: {text}"
        );
        assert_eq!(
            actions["slack:conversations.list"]["appliesTo"]["context"],
            json!({"type": "HttpContext"})
        );
        let context = &actions["slack:chat.postMessage"]["appliesTo"]["context"];
        assert_eq!(
            context["attributes"]["fields"],
            json!({"type": "Record", "attributes": {"channel": {"type": "String", "required": false}}}),
            "{text}"
        );
        assert_eq!(
            actions.as_object().map(|a| a.len()),
            Some(4),
            "two groups and one declaration per action: {text}"
        );
    }
}
