//! What approvers are told of a REST call's body fields that its connector does not declare:
//! the upstream acts on them, no policy judged them, and without `audit.record_content` the
//! body is not shown. The console, notifications and `warden approvals show` say that they are
//! there, how many, and (only when the body is shown) which.

use serde_json::Value;

/// The sentence for an approval's `context` whose REST body has undeclared fields
/// (`context.undeclared_fields`: `{"count", "names"?}`), naming them when `names` allows and
/// the context holds them (a chat message does not: they are request content); `None` when
/// it has none.
pub fn note(context: &Value, names: bool) -> Option<String> {
    let said = context.get("undeclared_fields")?;
    let count = said
        .get("count")
        .and_then(Value::as_u64)
        .filter(|n| *n > 0)?;
    let fields = if count == 1 { "field" } else { "fields" };
    let which = match said.get("names").and_then(Value::as_array) {
        Some(_) if !names => " (their names are in the console)".to_owned(),
        Some(names) => {
            let shown: Vec<&str> = names.iter().filter_map(Value::as_str).collect();
            let more = count.saturating_sub(shown.len() as u64);
            format!(
                ": {}{}",
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            )
        }
        None => " (names not shown: request content is not kept, audit.record_content)".to_owned(),
    };
    Some(format!(
        "The body has {count} {fields} the connector does not declare, which no policy judged{which}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn says_how_many_undeclared_fields_and_which_only_when_shown() {
        assert_eq!(
            note(&json!({"undeclared_fields": {"count": 2}}), true).unwrap(),
            "The body has 2 fields the connector does not declare, which no policy judged \
             (names not shown: request content is not kept, audit.record_content)"
        );
        assert_eq!(
            note(
                &json!({"undeclared_fields": {"count": 21, "names": ["as_user", "icon_url"]}}),
                true
            )
            .unwrap(),
            "The body has 21 fields the connector does not declare, which no policy judged: \
             as_user, icon_url and 19 more"
        );
        assert_eq!(
            note(
                &json!({"undeclared_fields": {"count": 1, "names": ["x"]}}),
                true
            )
            .unwrap(),
            "The body has 1 field the connector does not declare, which no policy judged: x"
        );
        assert_eq!(
            note(
                &json!({"undeclared_fields": {"count": 1, "names": ["x"]}}),
                false
            )
            .unwrap(),
            "The body has 1 field the connector does not declare, which no policy judged \
             (their names are in the console)"
        );
        assert_eq!(note(&json!({"method": "POST"}), true), None);
    }
}
