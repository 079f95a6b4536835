//! Values policy judges as identifiers: checked with the identifier rules (`identifier.rs`), a
//! look-alike folded to what it imitates, and, for the names a connector lists in
//! `fold_case:`, lower-cased (Unicode-aware, look-alikes folded again after), since the API
//! takes them in any case. Path parameters always go through [`value`]; fields
//! (`context.fields`) only when `fold_case:` names them ([`fields`]), and then the request
//! goes upstream with them as judged (`sent.rs`).

use std::sync::Arc;

use super::error::RestError;
use crate::action::{FieldValue, Finding, Findings};
use crate::protocol::identifier::{self, IdentifierProblem, LOOKALIKE_FINDING};

/// `value` as policy judges it and as it goes upstream: a look-alike folded (`looked_alike`
/// then set), and with `fold_case` lower-cased, look-alikes folded again after.
pub(super) fn value(
    value: &str,
    fold_case: bool,
    looked_alike: &mut bool,
) -> Result<String, IdentifierProblem> {
    let mut folded = lookalike(value, looked_alike)?;
    if fold_case {
        let lower = folded.to_lowercase();
        folded = lookalike(&lower, looked_alike)?.to_lowercase();
    }
    Ok(folded)
}

/// `value` checked, folded to its ASCII look-alike if it imitates one (`looked_alike` then
/// set).
fn lookalike(value: &str, looked_alike: &mut bool) -> Result<String, IdentifierProblem> {
    match identifier::check(value)? {
        None => Ok(value.to_owned()),
        Some(folded) => {
            *looked_alike = true;
            Ok(folded)
        }
    }
}

/// One field's text value as it goes upstream when `fold_case:` names it: folded as policy
/// judged it; an empty value stays empty (there is nothing to fold, and an API that takes it
/// gets what the agent sent).
pub(super) fn field_text(
    field: &Arc<str>,
    text: &str,
    looked_alike: &mut bool,
) -> Result<String, RestError> {
    if text.is_empty() {
        return Ok(String::new());
    }
    value(text, true, looked_alike).map_err(|problem| RestError::FieldIdentifier {
        field: Arc::clone(field),
        problem,
    })
}

/// The text values of the fields `folds` names, folded as [`field_text`] folds them; a field
/// whose value imitated another's is reported (`lookalike_identifier` at `field <name>`).
pub(super) fn fields(
    values: &mut [(Arc<str>, FieldValue)],
    folds: impl Fn(&str) -> bool,
    findings: &mut Findings,
) -> Result<(), RestError> {
    for (name, value) in values.iter_mut().filter(|(name, _)| folds(name)) {
        let mut looked_alike = false;
        match value {
            FieldValue::String(text) => *text = field_text(name, text, &mut looked_alike)?,
            FieldValue::Strings(texts) => {
                for text in texts.iter_mut() {
                    *text = field_text(name, text, &mut looked_alike)?;
                }
            }
            FieldValue::Long(_) | FieldValue::Bool(_) => {}
        }
        if looked_alike {
            findings.0.push(Finding {
                detector: Arc::from(LOOKALIKE_FINDING),
                location: format!("field {name}"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folded(values: Vec<(&str, FieldValue)>) -> Result<(Vec<FieldValue>, Findings), RestError> {
        let mut values: Vec<(Arc<str>, FieldValue)> =
            values.into_iter().map(|(n, v)| (Arc::from(n), v)).collect();
        let mut findings = Findings::none();
        fields(&mut values, |name| name != "text", &mut findings)?;
        Ok((values.into_iter().map(|(_, v)| v).collect(), findings))
    }

    #[test]
    fn fold_case_fields_are_lower_cased_with_look_alikes_folded_and_reported() {
        let (values, findings) = folded(vec![
            ("channel", FieldValue::String("GENERAL".into())),
            // Cyrillic е (U+0435) and a fullwidth Ｏ: folded, then lower-cased.
            (
                "to",
                FieldValue::Strings(vec!["G\u{435}neral".into(), "ＯPS".into()]),
            ),
            ("text", FieldValue::String("Keep Me".into())),
            ("count", FieldValue::Long(3)),
            ("empty", FieldValue::String(String::new())),
        ])
        .expect("folds");
        assert_eq!(
            values,
            [
                FieldValue::String("general".into()),
                FieldValue::Strings(vec!["general".into(), "ops".into()]),
                FieldValue::String("Keep Me".into()),
                FieldValue::Long(3),
                FieldValue::String(String::new()),
            ]
        );
        let located: Vec<&str> = findings.0.iter().map(|f| f.location.as_str()).collect();
        assert_eq!(located, ["field to"]);
    }

    #[test]
    fn a_fold_case_field_that_could_hide_from_policy_is_refused() {
        for hidden in [
            "gen\u{200B}eral",
            "general\u{202E}",
            " general",
            "a\u{0007}",
        ] {
            let refused = folded(vec![("channel", FieldValue::String(hidden.into()))]);
            assert!(
                matches!(&refused, Err(RestError::FieldIdentifier { field, .. }) if &**field == "channel"),
                "{hidden:?}: {refused:?}"
            );
        }
        // A field fold_case does not name is judged as sent.
        let kept = folded(vec![("text", FieldValue::String("a\u{200B}b".into()))]);
        assert!(kept.is_ok(), "{kept:?}");
    }
}
