//! What Warden reads from policy annotations: `@id`, `@reason`, `@approval`, `@approvers`.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{Effect, EntityUid, Policy};

use super::error::Position;

/// `@approval("required")`: a matching permit asks a human first.
const APPROVAL_REQUIRED: &str = "required";

/// Warden's view of one loaded policy.
#[derive(Debug, Clone)]
pub struct PolicyMeta {
    /// The policy id (`@id`, or `<file>:<line>` when it has none).
    pub id: Arc<str>,
    /// Permit or forbid.
    pub effect: Effect,
    /// `@reason`: shown to the agent when this policy determines the decision.
    pub reason: Option<String>,
    /// `Some(approvers)` when the policy carries `@approval("required")`.
    pub approval: Option<Vec<String>>,
    /// The file that defines the policy (policy directory joined with the relative path).
    pub file: PathBuf,
    /// Where the policy starts in that file.
    pub position: Position,
    /// Load order: files sorted by path, policies in file order.
    pub order: usize,
}

impl PolicyMeta {
    /// `file:line:column` of the policy.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file.display(), self.position)
    }
}

/// Reads Warden's annotations from `policy`; an `Err` says which annotation is wrong and how
/// to write it.
pub(crate) fn read(
    policy: &Policy,
    id: Arc<str>,
    file: PathBuf,
    position: Position,
    order: usize,
) -> Result<PolicyMeta, String> {
    let effect = policy.effect();
    let reason = match policy.annotation("reason") {
        Some(r) if r.trim().is_empty() => {
            return Err("@reason is empty; write the sentence the agent should see".into());
        }
        r => r.map(str::to_owned),
    };
    let approval = match (
        policy.annotation("approval"),
        policy.annotation("approvers"),
    ) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err(
                "@approvers has no effect without @approval(\"required\"); add it or remove @approvers"
                    .into(),
            );
        }
        (Some(v), _) if v != APPROVAL_REQUIRED => {
            return Err(format!(
                "@approval(\"{v}\") is not understood; the only value is @approval(\"required\")"
            ));
        }
        (Some(_), _) if effect == Effect::Forbid => {
            return Err("@approval applies to permit policies only; a forbid always denies".into());
        }
        (Some(_), approvers) => Some(parse_approvers(approvers.unwrap_or(""))?),
    };
    Ok(PolicyMeta {
        id,
        effect,
        reason,
        approval,
        file,
        position,
        order,
    })
}

/// Splits `Group::"sre", Group::"secops"` on commas; each entry must be a Cedar entity reference.
fn parse_approvers(list: &str) -> Result<Vec<String>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|entry| match EntityUid::from_str(entry) {
            Ok(_) => Ok(entry.to_owned()),
            Err(_) => Err(format!(
                "@approvers entry `{entry}` is not a Cedar entity reference; write e.g. @approvers(\"Group::\\\"sre\\\", User::\\\"alice\\\"\")"
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(src: &str) -> Result<PolicyMeta, String> {
        let policy = Policy::parse(None, src).map_err(|e| e.to_string())?;
        read(
            &policy,
            Arc::from("p"),
            PathBuf::from("x.cedar"),
            Position { line: 1, column: 1 },
            0,
        )
    }

    #[test]
    fn reads_approvers_split_on_commas_and_trimmed() {
        let m = meta(
            r#"@approval("required") @approvers("Group::\"sre\" ,  Group::\"secops\"")
            permit(principal, action, resource);"#,
        );
        assert_eq!(
            m.map(|m| m.approval),
            Ok(Some(vec![
                r#"Group::"sre""#.to_owned(),
                r#"Group::"secops""#.to_owned()
            ]))
        );
    }

    #[test]
    fn rejects_approval_on_forbid_and_unknown_approval_values() {
        let forbid = meta(r#"@approval("required") forbid(principal, action, resource);"#);
        assert!(forbid.is_err_and(|e| e.contains("permit policies only")));
        let odd = meta(r#"@approval("maybe") permit(principal, action, resource);"#);
        assert!(odd.is_err_and(|e| e.contains("@approval(\"maybe\")")));
    }

    #[test]
    fn rejects_approvers_that_are_not_entity_references() {
        let m =
            meta(r#"@approval("required") @approvers("sre") permit(principal, action, resource);"#);
        assert!(m.is_err_and(|e| e.contains("`sre`")));
    }

    #[test]
    fn rejects_approvers_without_approval() {
        let m = meta(r#"@approvers("Group::\"sre\"") permit(principal, action, resource);"#);
        assert!(m.is_err_and(|e| e.contains("without @approval")));
    }
}
