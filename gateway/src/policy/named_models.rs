//! The models loaded policies name (`Model::"<provider>/<name>"` literals, in a scope or a
//! condition): real ones, which a `model` rate rule matching `*` counts by name before any
//! upstream has answered them (`fleet/limits`), instead of in the agent's `other` bucket.

use std::collections::HashSet;
use std::sync::Arc;

use cedar_policy::Policy;

/// Model names kept from one policy set; a set naming more keeps the first (the buckets a
/// `*` rule keeps stay bounded whatever the policies say).
const NAMED_MAX: usize = 4096;

/// The model names (`gpt-4o` of `Model::"openai/gpt-4o"`) a policy set names.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct NamedModels(HashSet<Arc<str>>);

impl NamedModels {
    /// The models `policies` name, at most [`NAMED_MAX`].
    pub(super) fn of<'a>(policies: impl IntoIterator<Item = &'a Policy>) -> NamedModels {
        let mut names = HashSet::new();
        for policy in policies {
            for uid in policy.entity_literals() {
                if names.len() >= NAMED_MAX {
                    return NamedModels(names);
                }
                if uid.type_name().basename() != "Model" {
                    continue;
                }
                // A model's id is its provider and its name: `openai/gpt-4o`,
                // `bedrock/meta.llama3/70b` (a name may hold `/` itself).
                if let Some((_, name)) = uid.id().unescaped().split_once('/')
                    && !name.is_empty()
                {
                    names.insert(Arc::from(name));
                }
            }
        }
        NamedModels(names)
    }

    /// Whether a policy names `model` (any provider's).
    pub(super) fn contains(&self, model: &str) -> bool {
        self.0.contains(model)
    }

    /// How many are named.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cedar_policy::PolicySet;

    fn named(text: &str) -> NamedModels {
        let set: PolicySet = text.parse().expect("policies");
        NamedModels::of(set.policies())
    }

    #[test]
    fn models_named_in_scopes_and_conditions_are_known_by_their_name() {
        let models = named(
            r#"
            permit (principal, action, resource == Model::"openai/gpt-4o");
            permit (principal, action, resource)
              when { [Model::"anthropic/claude-sonnet-4-5"].contains(resource) };
            forbid (principal, action, resource)
              when { resource == Model::"bedrock/meta.llama3/70b" || resource == Tool::"fs/x" };
            permit (principal, action == Action::"llm:chat", resource == Model::"noslash");
            "#,
        );
        for model in ["gpt-4o", "claude-sonnet-4-5", "meta.llama3/70b"] {
            assert!(models.contains(model), "{model}: {models:?}");
        }
        // Not a model, not a provider's model, not named.
        for other in ["fs/x", "x", "noslash", "openai/gpt-4o", "gpt-4o-mini"] {
            assert!(!models.contains(other), "{other}");
        }
        assert_eq!(models.len(), 3);
    }

    #[test]
    fn a_set_naming_very_many_models_keeps_a_bounded_number() {
        let text: String = (0..NAMED_MAX + 10)
            .map(|i| format!("permit (principal, action, resource == Model::\"p/m{i}\");\n"))
            .collect();
        assert_eq!(named(&text).len(), NAMED_MAX);
    }
}
