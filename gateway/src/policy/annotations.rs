//! What Warden reads from policy annotations: `@id`, `@reason`, `@approval`, `@approvers`,
//! `@approval_ttl`, `@approvals`, `@egress`, `@mode`, `@on_match`.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use cedar_policy::{Effect, EntityUid, Policy};

use super::error::Position;

/// `@approval("required")`: a matching permit asks a human first.
const APPROVAL_REQUIRED: &str = "required";
/// `@egress("internal")`: a matching permit lets egress reach addresses that are not globally
/// reachable (loopback, private, link-local, ...).
const EGRESS_INTERNAL: &str = "internal";
/// `@mode("shadow")`: the policy is judged beside the enforced set, never deciding.
const MODE_SHADOW: &str = "shadow";
/// `@mode("enforce")`: the default, written out when promoting a shadow policy.
const MODE_ENFORCE: &str = "enforce";
/// `@on_match("quarantine")`: a matching forbid that determines a deny also quarantines the
/// agent (`fleet.quarantine.triggers.on_match`).
const ON_MATCH_QUARANTINE: &str = "quarantine";
/// `@on_match("redact")`: a matching forbid redacts the findings it tests in place instead of
/// denying (`inspect/redact.rs`).
const ON_MATCH_REDACT: &str = "redact";

/// The shortest `@approval_ttl`: a human needs time to see the notification and sign in.
pub const MIN_APPROVAL_TTL: Duration = Duration::from_secs(60);
/// The longest `@approval_ttl`: an approval older than a week no longer reflects a decision.
pub const MAX_APPROVAL_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// The most distinct approvers `@approvals` may ask for.
pub const MAX_APPROVALS: u8 = 5;

/// What a permit with `@approval("required")` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRule {
    /// `@approvers`: who may approve, as Cedar entity references (empty: the gate's default).
    pub approvers: Vec<String>,
    /// `@approval_ttl`: how long the pending approval lives before it expires into a deny
    /// (`None`: the gate's default).
    pub ttl: Option<Duration>,
    /// `@approvals`: how many distinct approvers must approve (1 unless a two-person rule).
    pub approvals: u8,
}

/// Warden's view of one loaded policy.
#[derive(Debug, Clone)]
pub struct PolicyMeta {
    /// The policy id (`@id`, or `<file>:<line>` when it has none).
    pub id: Arc<str>,
    /// Permit or forbid.
    pub effect: Effect,
    /// `@reason`: shown to the agent when this policy determines the decision.
    pub reason: Option<String>,
    /// `Some(rule)` when the policy carries `@approval("required")`.
    pub approval: Option<ApprovalRule>,
    /// `@own_agent("allowed")`: a permit of `approval:decide` that lets an approver approve
    /// their own agent's action (refused otherwise, whatever else permits it).
    pub own_agent: bool,
    /// The permit carries `@egress("internal")`: egress it allows may reach internal
    /// addresses.
    pub egress_internal: bool,
    /// `@mode("shadow")`: judged beside the enforced set on live traffic, where its decision
    /// differs recorded, never enforced.
    pub shadow: bool,
    /// The forbid carries `@on_match("quarantine")`: a deny it determines quarantines the
    /// agent.
    pub on_match_quarantine: bool,
    /// The forbid carries `@on_match("redact")`: the string literals its conditions compare
    /// (the detector names it tests in `context.findings`, among others). A deny it alone
    /// determines becomes a redaction of those findings.
    pub on_match_redact: Option<Vec<String>>,
    /// The file that defines the policy (policy directory joined with the relative path).
    pub file: PathBuf,
    /// Where the policy starts in that file.
    pub position: Position,
    /// Load order: files sorted by path, policies in file order.
    pub order: usize,
}

impl PolicyMeta {
    /// Whether a deny this policy determines quarantines the agent (`@on_match("quarantine")`).
    pub fn quarantines(&self) -> bool {
        self.on_match_quarantine
    }

    /// `file:line:column` of the policy.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file.display(), self.position)
    }
}

/// The annotations Warden reads.
pub const KNOWN: [&str; 10] = [
    "id",
    "reason",
    "approval",
    "approvers",
    "approval_ttl",
    "approvals",
    "own_agent",
    "egress",
    "mode",
    "on_match",
];

/// The annotation Warden reads that `key`, which it does not, looks like a misspelling of:
/// the same letters in another case or with other separators, or, for the names of five
/// letters or more, one edit away (so that `@model`, `@ids`, `@region` or `@ingress` of one's
/// own stay free). Annotations of one's own that are not that close are allowed: Cedar keeps
/// them, Warden ignores them.
fn misspelt(key: &str) -> Option<&'static str> {
    if KNOWN.contains(&key) {
        return None;
    }
    let plain = |k: &str| {
        k.chars()
            .filter(|c| !matches!(c, '_' | '-'))
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    let key = plain(key);
    KNOWN.into_iter().find(|known| {
        let known = plain(known);
        let reach = if known.len() < 5 { 0 } else { 1 };
        strsim::damerau_levenshtein(&key, &known) <= reach
    })
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
    for (key, _) in policy.annotations() {
        if let Some(meant) = misspelt(key) {
            return Err(format!(
                "@{key} is not an annotation Warden reads; did you mean @{meant}? (Cedar itself \
                 ignores annotations, so a misspelt one would silently have no effect)"
            ));
        }
    }
    let reason = match policy.annotation("reason") {
        Some(r) if r.trim().is_empty() => {
            return Err("@reason is empty; write the sentence the agent should see".into());
        }
        r => r.map(str::to_owned),
    };
    let approval = match policy.annotation("approval") {
        None => {
            if let Some(other) = ["approvers", "approval_ttl", "approvals"]
                .into_iter()
                .find(|a| policy.annotation(a).is_some())
            {
                return Err(format!(
                    "@{other} has no effect without @approval(\"required\"); add it or remove @{other}"
                ));
            }
            None
        }
        Some(v) if v != APPROVAL_REQUIRED => {
            return Err(format!(
                "@approval(\"{v}\") is not understood; the only value is @approval(\"required\")"
            ));
        }
        Some(_) if effect == Effect::Forbid => {
            return Err("@approval applies to permit policies only; a forbid always denies".into());
        }
        Some(_) => Some(ApprovalRule {
            approvers: parse_approvers(policy.annotation("approvers").unwrap_or(""))?,
            ttl: policy
                .annotation("approval_ttl")
                .map(parse_ttl)
                .transpose()?,
            approvals: policy
                .annotation("approvals")
                .map(parse_approvals)
                .transpose()?
                .unwrap_or(1),
        }),
    };
    let own_agent = match policy.annotation("own_agent") {
        None => false,
        Some("allowed") if effect == Effect::Permit => true,
        Some("allowed") => {
            return Err(
                "@own_agent applies to permit policies of approval:decide only; a forbid always denies"
                    .into(),
            );
        }
        Some(v) => {
            return Err(format!(
                "@own_agent(\"{v}\") is not understood; the only value is @own_agent(\"allowed\")"
            ));
        }
    };
    let egress_internal = match policy.annotation("egress") {
        None => false,
        Some(v) if v != EGRESS_INTERNAL => {
            return Err(format!(
                "@egress(\"{v}\") is not understood; the only value is @egress(\"internal\")"
            ));
        }
        Some(_) if effect == Effect::Forbid => {
            return Err(
                "@egress(\"internal\") applies to permit policies only: it widens what a permit allows"
                    .into(),
            );
        }
        Some(_) => true,
    };
    let shadow = match policy.annotation("mode") {
        None | Some(MODE_ENFORCE) => false,
        Some(MODE_SHADOW) => true,
        Some(v) => {
            return Err(format!(
                "@mode(\"{v}\") is not understood; write @mode(\"shadow\") to judge the policy \
                 beside the enforced set without enforcing it, or @mode(\"enforce\")"
            ));
        }
    };
    let on_match_quarantine = match policy.annotation("on_match") {
        None => false,
        Some(ON_MATCH_QUARANTINE) if effect == Effect::Forbid => true,
        Some(ON_MATCH_QUARANTINE) => {
            return Err(
                "@on_match(\"quarantine\") applies to forbid policies only: it acts on the denies a forbid determines"
                    .into(),
            );
        }
        Some(ON_MATCH_REDACT) => false,
        Some(v) => {
            return Err(format!(
                "@on_match(\"{v}\") is not understood; write @on_match(\"quarantine\") (a deny \
                 quarantines the agent) or @on_match(\"redact\")"
            ));
        }
    };
    let on_match_redact = match policy.annotation("on_match") {
        Some(ON_MATCH_REDACT) if effect == Effect::Forbid => Some(literals(policy)),
        Some(ON_MATCH_REDACT) => {
            return Err(
                "@on_match(\"redact\") applies to forbid policies only: it redacts what a forbid's conditions find instead of denying"
                    .into(),
            );
        }
        _ => None,
    };
    Ok(PolicyMeta {
        id,
        effect,
        reason,
        approval,
        own_agent,
        egress_internal,
        shadow,
        on_match_quarantine,
        on_match_redact,
        file,
        position,
        order,
    })
}

/// The string literals in `policy`'s conditions (`context.findings.contains("email")` gives
/// `email`).
fn literals(policy: &Policy) -> Vec<String> {
    fn walk(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, item) in map {
                    match (key.as_str(), item) {
                        ("Value", serde_json::Value::String(s)) => out.push(s.clone()),
                        _ => walk(item, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(json) = policy.to_json() {
        walk(&json["conditions"], &mut out);
    }
    out.sort();
    out.dedup();
    out
}

/// Splits `Group::"sre", User::"alice"` on commas; each entry must be a Cedar reference to a
/// `Group` (its members approve) or a `User` (that approver).
fn parse_approvers(list: &str) -> Result<Vec<String>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|entry| match Approvers::parse(entry) {
            Some(_) => Ok(entry.to_owned()),
            None => Err(format!(
                "@approvers entry `{entry}` is not a Cedar reference to a Group or a User; write e.g. @approvers(\"Group::\\\"sre\\\", User::\\\"alice\\\"\")"
            )),
        })
        .collect()
}

/// Who one `@approvers` entry names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approvers {
    /// The members of this group (`Group::"sre"`).
    Group(String),
    /// This approver (`User::"alice"`: one of their names).
    User(String),
}

impl Approvers {
    /// The entry `Group::"…"` or `User::"…"`; `None` for any other text.
    pub fn parse(entry: &str) -> Option<Approvers> {
        let uid = EntityUid::from_str(entry.trim()).ok()?;
        let id = uid.id().unescaped().to_owned();
        match uid.type_name().to_string().as_str() {
            "Group" => Some(Approvers::Group(id)),
            "User" => Some(Approvers::User(id)),
            _ => None,
        }
    }
}

/// `@approval_ttl("15m")`: a duration (humantime) from [`MIN_APPROVAL_TTL`] to
/// [`MAX_APPROVAL_TTL`].
fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(text.trim()).map_err(|e| {
        format!(
            "@approval_ttl(\"{text}\") is not a duration ({e}); write e.g. @approval_ttl(\"15m\"), \
             @approval_ttl(\"2h\") or @approval_ttl(\"1day\")"
        )
    })?;
    if !(MIN_APPROVAL_TTL..=MAX_APPROVAL_TTL).contains(&ttl) {
        return Err(format!(
            "@approval_ttl(\"{text}\") is out of bounds; an approval may wait from 1m to 7d"
        ));
    }
    Ok(ttl)
}

/// `@approvals("2")`: how many distinct approvers, from 1 to [`MAX_APPROVALS`].
fn parse_approvals(text: &str) -> Result<u8, String> {
    match text.trim().parse::<u8>() {
        Ok(n) if (1..=MAX_APPROVALS).contains(&n) => Ok(n),
        _ => Err(format!(
            "@approvals(\"{text}\") must be a whole number from 1 to {MAX_APPROVALS}: how many \
             distinct approvers must approve (e.g. @approvals(\"2\") for a two-person rule)"
        )),
    }
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
    fn a_misspelt_annotation_is_refused_with_the_one_meant() {
        for (written, meant) in [
            ("aproval", "approval"),
            ("reson", "reason"),
            ("Reason", "reason"),
            ("approvalttl", "approval_ttl"),
            ("approvalTTL", "approval_ttl"),
            ("onmatch", "on_match"),
            ("MODE", "mode"),
            ("approver", "approvers"),
        ] {
            let src = format!("@{written}(\"required\")\npermit (principal, action, resource);");
            let error = meta(&src).unwrap_err();
            assert!(
                error.contains(&format!("@{written} is not an annotation Warden reads"))
                    && error.contains(&format!("did you mean @{meant}?")),
                "{written}: {error}"
            );
        }
    }

    #[test]
    fn annotations_of_ones_own_are_kept_unread() {
        let src = "@id(\"mine\")\n@description(\"why this exists\")\n@owner(\"platform\")\n\
                   @ticket(\"SEC-12\")\n@by(\"me\")\n@note(\"x\")\n@model(\"m\")\n\
                   @ids(\"1\")\n@region(\"eu\")\n@ingress(\"x\")\npermit (principal, action, resource);";
        let read = meta(src).unwrap();
        assert_eq!(read.effect, Effect::Permit);
        assert!(read.approval.is_none());
    }

    #[test]
    fn egress_internal_is_a_permit_annotation_with_one_value() {
        let m = meta(r#"@egress("internal") permit(principal, action, resource);"#);
        assert_eq!(m.map(|m| m.egress_internal), Ok(true));
        let m = meta(r#"permit(principal, action, resource);"#);
        assert_eq!(m.map(|m| m.egress_internal), Ok(false));
        let m = meta(r#"@egress("private") permit(principal, action, resource);"#);
        assert!(
            m.unwrap_err()
                .contains("the only value is @egress(\"internal\")")
        );
        let m = meta(r#"@egress("internal") forbid(principal, action, resource);"#);
        assert!(m.unwrap_err().contains("permit policies only"));
    }

    #[test]
    fn reads_approvers_split_on_commas_and_trimmed() {
        let m = meta(
            r#"@approval("required") @approvers("Group::\"sre\" ,  Group::\"secops\"")
            permit(principal, action, resource);"#,
        );
        assert_eq!(
            m.map(|m| m.approval),
            Ok(Some(ApprovalRule {
                approvers: vec![
                    r#"Group::"sre""#.to_owned(),
                    r#"Group::"secops""#.to_owned()
                ],
                ttl: None,
                approvals: 1,
            }))
        );
    }

    #[test]
    fn own_agent_is_allowed_only_by_a_permit_that_says_so() {
        let m = |text: &str| meta(text).map(|m| m.own_agent);
        assert_eq!(m("permit(principal, action, resource);"), Ok(false));
        assert_eq!(
            m(r#"@own_agent("allowed") permit(principal, action, resource);"#),
            Ok(true)
        );
        assert!(
            m(r#"@own_agent("yes") permit(principal, action, resource);"#)
                .is_err_and(|e| e.contains(r#"only value is @own_agent("allowed")"#))
        );
        assert!(
            m(r#"@own_agent("allowed") forbid(principal, action, resource);"#)
                .is_err_and(|e| e.contains("permit policies"))
        );
    }

    #[test]
    fn reads_approval_ttl_and_the_number_of_approvals() {
        let m = meta(
            r#"@approval("required") @approval_ttl("15m") @approvals("2")
            permit(principal, action, resource);"#,
        );
        assert_eq!(
            m.map(|m| m.approval),
            Ok(Some(ApprovalRule {
                approvers: vec![],
                ttl: Some(Duration::from_secs(15 * 60)),
                approvals: 2,
            }))
        );
        for (ttl, seconds) in [("1m", 60), ("7d", 7 * 24 * 3600), ("1h 30m", 5400)] {
            let m = meta(&format!(
                r#"@approval("required") @approval_ttl("{ttl}") permit(principal, action, resource);"#
            ));
            assert_eq!(
                m.map(|m| m.approval.and_then(|a| a.ttl)),
                Ok(Some(Duration::from_secs(seconds))),
                "{ttl}"
            );
        }
    }

    #[test]
    fn rejects_approval_ttl_that_is_not_a_duration_or_out_of_bounds() {
        let m = |ttl: &str| {
            meta(&format!(
                r#"@approval("required") @approval_ttl("{ttl}") permit(principal, action, resource);"#
            ))
        };
        assert!(
            m("soon").is_err_and(|e| e.contains("@approval_ttl(\"soon\") is not a duration")
                && e.contains("@approval_ttl(\"15m\")"))
        );
        for out in ["59s", "0s", "8d", "30days"] {
            assert!(
                m(out).is_err_and(|e| e.contains("out of bounds") && e.contains("1m to 7d")),
                "{out}"
            );
        }
    }

    #[test]
    fn rejects_approvals_outside_one_to_five() {
        for bad in ["0", "6", "two", "-1", "1.5", ""] {
            let m = meta(&format!(
                r#"@approval("required") @approvals("{bad}") permit(principal, action, resource);"#
            ));
            assert!(
                m.is_err_and(|e| e.contains(&format!(
                    "@approvals(\"{bad}\") must be a whole number from 1 to 5"
                ))),
                "{bad}"
            );
        }
        let five =
            meta(r#"@approval("required") @approvals("5") permit(principal, action, resource);"#);
        assert_eq!(five.map(|m| m.approval.map(|a| a.approvals)), Ok(Some(5)));
    }

    #[test]
    fn rejects_ttl_and_approvals_without_approval() {
        let ttl = meta(r#"@approval_ttl("15m") permit(principal, action, resource);"#);
        assert!(ttl.is_err_and(|e| e.contains("@approval_ttl has no effect without @approval")));
        let count = meta(r#"@approvals("2") permit(principal, action, resource);"#);
        assert!(count.is_err_and(|e| e.contains("@approvals has no effect without @approval")));
        let forbid = meta(r#"@approval_ttl("15m") forbid(principal, action, resource);"#);
        assert!(forbid.is_err_and(|e| e.contains("without @approval")));
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
    fn rejects_approvers_that_are_neither_groups_nor_users() {
        let m = meta(
            r#"@approval("required") @approvers("Group::\"sre\", Agent::\"ci-bot\"") permit(principal, action, resource);"#,
        );
        assert!(
            m.is_err_and(|e| e.contains("`Agent::\"ci-bot\"`") && e.contains("Group or a User"))
        );
        let namespaced = meta(
            r#"@approval("required") @approvers("Corp::Group::\"sre\"") permit(principal, action, resource);"#,
        );
        assert!(namespaced.is_err());
    }

    #[test]
    fn reads_an_approvers_entry_as_a_group_or_a_user() {
        assert_eq!(
            Approvers::parse(r#"Group::"sre""#),
            Some(Approvers::Group("sre".into()))
        );
        assert_eq!(
            Approvers::parse(r#"User::"alice@example.com""#),
            Some(Approvers::User("alice@example.com".into()))
        );
        assert_eq!(
            Approvers::parse(r#"Group::"a \"quoted\" name""#),
            Some(Approvers::Group(r#"a "quoted" name"#.into()))
        );
        for other in ["sre", r#"Agent::"ci-bot""#, r#"Corp::Group::"sre""#, ""] {
            assert_eq!(Approvers::parse(other), None, "{other}");
        }
    }

    #[test]
    fn rejects_approvers_without_approval() {
        let m = meta(r#"@approvers("Group::\"sre\"") permit(principal, action, resource);"#);
        assert!(m.is_err_and(|e| e.contains("without @approval")));
    }
}
