//! The `context.session` and `context.budget` records (`SessionFacts` and `BudgetFacts` in
//! `policies/schema.cedarschema`): their fields by name and each field's value in an
//! action's context, read alike by the Cedar context builder (`request.rs`) and by the
//! compiled conditions (`native.rs`), so that both judge the same facts.

use std::sync::Arc;

use cedar_policy::{ExpressionConstructionError, RestrictedExpression};

use super::context_keys::Key;
use crate::action::{ActionContext, SessionFacts};

/// A field of `context.session` or `context.budget`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Field {
    // `SessionFacts`.
    Actions,
    ActionCount,
    ResourceCount,
    Labels,
    ResourceTags,
    ReadPrivate,
    SentExternal,
    AnswerFindings,
    // `BudgetFacts`.
    TokensLeft,
    CostLeftMicroUsd,
    UsedRatioPercent,
    Exceeded,
}

/// A field's value: Cedar's long (a count saturated at `i64::MAX`), boolean, or set of
/// strings (tags, possibly repeated: a Cedar set of them holds each once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldValue<'a> {
    Long(i64),
    Bool(bool),
    Tags(&'a [Arc<str>]),
}

impl Field {
    /// The fields of `context.session`, in the schema's order.
    pub(crate) const SESSION: [Field; 8] = [
        Field::Actions,
        Field::ActionCount,
        Field::ResourceCount,
        Field::Labels,
        Field::ResourceTags,
        Field::ReadPrivate,
        Field::SentExternal,
        Field::AnswerFindings,
    ];

    /// The fields of `context.budget`, in the schema's order.
    pub(crate) const BUDGET: [Field; 4] = [
        Field::TokensLeft,
        Field::CostLeftMicroUsd,
        Field::UsedRatioPercent,
        Field::Exceeded,
    ];

    /// The field's name in Cedar: `context.session.<name>`, `context.budget.<name>`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Field::Actions => "actions",
            Field::ActionCount => "action_count",
            Field::ResourceCount => "resource_count",
            Field::Labels => "labels",
            Field::ResourceTags => "resource_tags",
            Field::ReadPrivate => "read_private",
            Field::SentExternal => "sent_external",
            Field::AnswerFindings => "answer_findings",
            Field::TokensLeft => "tokens_left",
            Field::CostLeftMicroUsd => "cost_left_micro_usd",
            Field::UsedRatioPercent => "used_ratio_percent",
            Field::Exceeded => "exceeded",
        }
    }

    /// The field called `name` of `record` ([`Key::Session`] or [`Key::Budget`]).
    pub(crate) fn of(record: Key, name: &str) -> Option<Field> {
        let fields: &[Field] = match record {
            Key::Session => &Field::SESSION,
            Key::Budget => &Field::BUDGET,
            _ => return None,
        };
        fields.iter().copied().find(|f| f.name() == name)
    }

    /// The field's value in `ctx`; `None` when `ctx` has not its record (Cedar's missing
    /// attribute).
    pub(crate) fn value(self, ctx: &ActionContext) -> Option<FieldValue<'_>> {
        let session = || ctx.session.as_deref();
        Some(match self {
            Field::Actions => FieldValue::Long(long(session()?.actions)),
            Field::ActionCount => FieldValue::Long(long(session()?.action_count)),
            Field::ResourceCount => FieldValue::Long(long(session()?.resource_count)),
            Field::Labels => FieldValue::Tags(&session()?.labels),
            Field::ResourceTags => FieldValue::Tags(&session()?.resource_tags),
            Field::ReadPrivate => FieldValue::Bool(session()?.labelled(SessionFacts::PRIVATE)),
            Field::SentExternal => FieldValue::Bool(session()?.labelled(SessionFacts::EXTERNAL)),
            Field::AnswerFindings => FieldValue::Tags(&session()?.answer_findings),
            Field::TokensLeft => FieldValue::Long(long(ctx.budget?.tokens_left)),
            Field::CostLeftMicroUsd => FieldValue::Long(long(ctx.budget?.cost_left_micro_usd)),
            Field::UsedRatioPercent => FieldValue::Long(long(ctx.budget?.used_ratio_percent)),
            Field::Exceeded => FieldValue::Bool(ctx.budget?.exceeded),
        })
    }
}

/// A count as the Cedar long Warden puts in the context (saturating).
fn long(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `context.session` or `context.budget` (`record`) as a Cedar record; `None` when `ctx` has
/// not the record.
pub(crate) fn to_cedar(
    record: Key,
    ctx: &ActionContext,
) -> Option<Result<RestrictedExpression, ExpressionConstructionError>> {
    let fields: &[Field] = match record {
        Key::Session if ctx.session.is_some() => &Field::SESSION,
        Key::Budget if ctx.budget.is_some() => &Field::BUDGET,
        _ => return None,
    };
    let pairs = fields.iter().filter_map(|field| {
        let value = match field.value(ctx)? {
            FieldValue::Long(n) => RestrictedExpression::new_long(n),
            FieldValue::Bool(b) => RestrictedExpression::new_bool(b),
            FieldValue::Tags(tags) => RestrictedExpression::new_set(
                tags.iter()
                    .map(|t| RestrictedExpression::new_string(t.to_string())),
            ),
        };
        Some((field.name().to_owned(), value))
    });
    Some(RestrictedExpression::new_record(pairs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_field_belongs_to_its_record_by_its_name() {
        for field in Field::SESSION {
            assert_eq!(Field::of(Key::Session, field.name()), Some(field));
            assert_eq!(Field::of(Key::Budget, field.name()), None);
        }
        for field in Field::BUDGET {
            assert_eq!(Field::of(Key::Budget, field.name()), Some(field));
            assert_eq!(Field::of(Key::Session, field.name()), None);
        }
        assert_eq!(Field::of(Key::Route, "actions"), None);
        assert_eq!(Field::of(Key::Session, "nonexistent"), None);
    }
}
