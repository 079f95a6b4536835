//! Approving from the command line (`warden approvals …`, `warden approvers enroll`), for
//! operators without a browser: the same rules as the console. The approver is one of
//! `approvals.operators` (a subject and its groups), proves it with a fresh TOTP code of their
//! own enrolment (refused when replayed, on any replica), must be allowed by Cedar
//! (`approval:decide` on the `Approval`), must be in a group the policy's `@approvers` names,
//! and may not approve their own agent's action. Every vote is kept with who, when and which
//! factor; the gate records it with the request it released.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::attempts::{self, Person};
use super::config::{ApprovalsConfig, OperatorConfig};
use super::sealed::{Purpose, Sealer};
use super::totp::{CodeRefused, NewEnrolment, Totp, TotpSecret};
use crate::action::{Action, ActionContext, Principal, PrincipalKind, Resource, Verb};
use crate::decision::Decision;
use crate::policy::{Approvers, PolicyEngine};
use crate::state::Store;
use crate::state::approvals::{
    ApprovalFilter, ApprovalRecord, SecondFactor, Vote, VoteDecision, VoteOutcome, same_name,
};

/// Why an operator's step was refused.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error(
        "{0:?} is not an approver on the command line: add it to approvals.operators (with its groups)"
    )]
    NotAnOperator(String),
    #[error("{0} has no confirmed TOTP enrolment: run `warden approvers enroll {0}` first")]
    NotEnrolled(String),
    #[error("the TOTP code was refused: {0}")]
    Code(#[from] CodeRefused),
    #[error("the TOTP code was used already (a code counts once, on every replica)")]
    Replayed,
    #[error(transparent)]
    Brake(#[from] super::attempts::BrakeError),
    #[error("no approval has the id {0:?}; `warden approvals list` shows the pending ones")]
    Unknown(String),
    #[error("approval {id} is {status}: only a pending approval can be decided")]
    NotPending { id: String, status: String },
    /// Another approver's vote decided it first (two voting at once: one wins); this vote was
    /// not counted.
    #[error(
        "approval {id} was already decided: {status} by {by}; only a pending approval can be \
         decided, so your vote was not counted"
    )]
    AlreadyDecided {
        id: String,
        status: String,
        by: String,
    },
    #[error("approval {id} cannot be decided: this request was withdrawn: {why}")]
    Withdrawn { id: String, why: String },
    #[error("{subject} has decided approval {id} already")]
    AlreadyVoted { subject: String, id: String },
    #[error("{subject} may not decide approval {id}: it must be approved by a member of {groups}")]
    NotInGroup {
        subject: String,
        id: String,
        groups: String,
    },
    #[error("{subject} may not approve their own agent's action (approval {id})")]
    OwnAgent { subject: String, id: String },
    #[error("policy does not permit {subject} to decide approval {id} (approval:decide): {reason}")]
    Policy {
        subject: String,
        id: String,
        reason: String,
    },
    #[error("the second-factor secret cannot be used: {0}")]
    Sealed(#[from] super::sealed::SealError),
    #[error("{0}")]
    Totp(#[from] super::totp::TotpError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

/// The command line's view of approvals.
pub struct Operator {
    store: Store,
    sealer: Sealer,
    operators: Vec<OperatorConfig>,
    policy: Arc<PolicyEngine>,
}

impl Operator {
    /// Approvals in `store`, secrets opened with `sealer`, approvers judged by `policy`.
    pub fn new(
        config: &ApprovalsConfig,
        store: Store,
        sealer: Sealer,
        policy: Arc<PolicyEngine>,
    ) -> Operator {
        Operator {
            store,
            sealer,
            operators: config.operators.clone(),
            policy,
        }
    }

    fn operator(&self, subject: &str) -> Result<&OperatorConfig, OperatorError> {
        self.operators
            .iter()
            .find(|o| o.subject == subject)
            .ok_or_else(|| OperatorError::NotAnOperator(subject.to_owned()))
    }

    /// Starts `subject`'s TOTP enrolment: the secret, sealed in the store, and how to enrol an
    /// app with it. It counts once [`Operator::confirm`] accepts a first code.
    pub async fn enroll(&self, subject: &str) -> Result<NewEnrolment, OperatorError> {
        self.operator(subject)?;
        begin_totp(&self.store, &self.sealer, subject).await
    }

    /// Confirms `subject`'s enrolment with a first code of the new secret: only for one of
    /// `approvals.operators` (a second factor of someone who is no approver on the command
    /// line confirms nothing; console approvers enrol in the console).
    pub async fn confirm(&self, subject: &str, code: &str) -> Result<(), OperatorError> {
        self.operator(subject)?;
        let person = Person::new(subject, &[]);
        checked_code(&self.store, &self.sealer, &person, code, true).await
    }

    /// The second factors `subject` has.
    pub async fn factors_of(&self, subject: &str) -> Result<HeldFactors, OperatorError> {
        let factors = self.store.factors();
        Ok(HeldFactors {
            totp: factors.totp(subject).await?.is_some(),
            passkeys: factors.webauthn_credentials(subject).await?.len(),
        })
    }

    /// Removes every second factor of `subject` (an administrator's reset): what was removed.
    pub async fn reset(&self, subject: &str) -> Result<HeldFactors, OperatorError> {
        let factors = self.store.factors();
        let mut removed = HeldFactors::default();
        for passkey in factors.webauthn_credentials(subject).await? {
            if factors
                .remove_webauthn(subject, &passkey.credential_id)
                .await?
            {
                removed.passkeys += 1;
            }
        }
        removed.totp = factors.remove_totp(subject).await?;
        tracing::warn!(
            subject,
            totp = removed.totp,
            passkeys = removed.passkeys,
            "second factors reset"
        );
        Ok(removed)
    }

    /// The pending approvals, oldest first.
    pub async fn pending(&self) -> Result<Vec<ApprovalRecord>, OperatorError> {
        Ok(self.store.approvals().list(ApprovalFilter::Pending).await?)
    }

    /// One approval.
    pub async fn show(&self, id: &str) -> Result<ApprovalRecord, OperatorError> {
        self.store
            .approvals()
            .get(id)
            .await?
            .ok_or_else(|| OperatorError::Unknown(id.to_owned()))
    }

    /// `subject` approves or denies approval `id`, confirmed by `code`.
    pub async fn decide(
        &self,
        id: &str,
        subject: &str,
        code: &str,
        decision: VoteDecision,
        source: Option<IpAddr>,
    ) -> Result<ApprovalRecord, OperatorError> {
        let operator = self.operator(subject)?;
        let record = self.show(id).await?;
        if record.status != crate::state::approvals::ApprovalStatus::Pending {
            return Err(not_pending(&record));
        }
        let approver = Approver {
            subject: operator.subject.clone(),
            groups: operator.groups.clone(),
            aliases: Vec::new(),
            issuer: "warden-cli".into(),
        };
        may_decide(&self.policy, &approver, &record, decision, "cli", source)?;
        // The factor last: a refused decision does not use a code up.
        let person = Person::new(subject, &[]);
        checked_code(&self.store, &self.sealer, &person, code, false).await?;
        let vote = Vote {
            approver: subject.to_owned(),
            names: Vec::new(),
            decision,
            factor: SecondFactor::Totp,
            source,
            at_ms: crate::state::pins::now_ms(),
        };
        cast(&self.store, id, vote).await
    }
}

/// The second factors one approver has (or had removed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeldFactors {
    /// An authenticator app, confirmed or not.
    pub totp: bool,
    /// How many passkeys.
    pub passkeys: usize,
}

impl HeldFactors {
    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        !self.totp && self.passkeys == 0
    }
}

impl std::fmt::Display for HeldFactors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let app = if self.totp {
            "an authenticator app"
        } else {
            "no authenticator app"
        };
        let s = if self.passkeys == 1 { "" } else { "s" };
        write!(f, "{app} and {} passkey{s}", self.passkeys)
    }
}

/// Who decides an approval: their subject, their groups (as Cedar sees them: `sre` is
/// `Group::"sre"`), the other names they go by (a verified e-mail address, the preferred
/// username: an agent owned by any of them is theirs) and who vouched for them (the SSO
/// issuer, or `warden-cli`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approver {
    pub subject: String,
    pub groups: Vec<String>,
    pub aliases: Vec<String>,
    pub issuer: String,
}

impl Approver {
    /// Whether `name` is one of this approver's names (e-mail addresses compared without
    /// regard to case).
    pub fn is(&self, name: &str) -> bool {
        std::iter::once(&self.subject)
            .chain(&self.aliases)
            .any(|mine| same_name(mine, name))
    }

    /// Whether the `@approvers` entry `entry` names this approver: `Group::"sre"` when they
    /// are in the group `sre`, `User::"alice"` when `alice` is one of their names. Any other
    /// text (refused when policies load) names no one.
    pub fn is_named_by(&self, entry: &str) -> bool {
        match Approvers::parse(entry) {
            Some(Approvers::Group(group)) => self.groups.contains(&group),
            Some(Approvers::User(user)) => self.is(&user),
            None => false,
        }
    }
}

/// Why `record`, no longer pending, cannot be decided: how it was decided, or why it was
/// withdrawn.
pub fn not_pending(record: &ApprovalRecord) -> OperatorError {
    use crate::state::approvals::ApprovalStatus as S;
    let decided_by = |decision: VoteDecision| {
        record
            .votes
            .iter()
            .filter(|v| v.decision == decision)
            .map(|v| v.approver.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (&record.status, &record.withdrawn) {
        (S::Withdrawn, Some(why)) => OperatorError::Withdrawn {
            id: record.id.clone(),
            why: why.clone(),
        },
        // Decided by votes (and maybe used since): who decided it.
        (status @ (S::Approved | S::Consumed | S::Denied), _) => {
            let decision = if *status == S::Denied {
                VoteDecision::Deny
            } else {
                VoteDecision::Approve
            };
            OperatorError::AlreadyDecided {
                id: record.id.clone(),
                status: status.to_string(),
                by: decided_by(decision),
            }
        }
        (status, _) => OperatorError::NotPending {
            id: record.id.clone(),
            status: status.to_string(),
        },
    }
}

/// Starts `subject`'s TOTP enrolment in `store`, its secret sealed with `sealer`: refused
/// while a confirmed enrolment exists.
pub async fn begin_totp(
    store: &Store,
    sealer: &Sealer,
    subject: &str,
) -> Result<NewEnrolment, OperatorError> {
    let enrolment = NewEnrolment::start(subject)?;
    let sealed = sealer.seal(Purpose::TotpSecret, subject, enrolment.secret.as_bytes())?;
    if !store.factors().begin_totp(subject, sealed).await? {
        return Err(OperatorError::NotPending {
            id: format!("the TOTP enrolment of {subject}"),
            status: "confirmed (remove it before enrolling again)".into(),
        });
    }
    Ok(enrolment)
}

/// Checks `code` against `subject`'s TOTP enrolment and uses its step up (atomically: a code
/// counts once, on every replica); with `confirm`, an unconfirmed enrolment is accepted and
/// confirmed by it.
pub async fn check_totp(
    store: &Store,
    sealer: &Sealer,
    subject: &str,
    code: &str,
    confirm: bool,
) -> Result<(), OperatorError> {
    let factors = store.factors();
    let enrolment = factors
        .totp(subject)
        .await?
        .filter(|e| confirm || e.confirmed_ms.is_some())
        .ok_or_else(|| OperatorError::NotEnrolled(subject.to_owned()))?;
    let secret = sealer.open(Purpose::TotpSecret, subject, &enrolment.sealed_secret)?;
    let totp = Totp::new(&TotpSecret::from_bytes(&secret)?);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = enrolment.last_step.and_then(|s| u64::try_from(s).ok());
    let step = totp.accept(code, now, last)?;
    let step = i64::try_from(step).unwrap_or(i64::MAX);
    if !factors.accept_totp_step(subject, step, confirm).await? {
        return Err(OperatorError::Replayed);
    }
    Ok(())
}

/// Checks `code` against the TOTP enrolment of `person`'s subject as [`check_totp`] does,
/// behind the wrong-code brake shared by every replica and command line, counted under every
/// name of `person`: refused, its code unchecked, after too many wrong codes or when the store
/// cannot count the attempt.
pub async fn checked_code(
    store: &Store,
    sealer: &Sealer,
    person: &Person,
    code: &str,
    confirm: bool,
) -> Result<(), OperatorError> {
    attempts::begin(store, person).await?;
    match check_totp(store, sealer, person.subject(), code.trim(), confirm).await {
        Ok(()) => {
            attempts::succeeded(store, person).await;
            Ok(())
        }
        Err(e) => {
            if !matches!(e, OperatorError::Code(_) | OperatorError::Replayed) {
                attempts::given_back(store, person).await;
            }
            Err(e)
        }
    }
}

/// Records `vote` on approval `id`: the approval as it is afterwards.
pub async fn cast(store: &Store, id: &str, vote: Vote) -> Result<ApprovalRecord, OperatorError> {
    let subject = vote.approver.clone();
    match store.approvals().vote(id, vote).await? {
        VoteOutcome::Recorded(record) => Ok(*record),
        VoteOutcome::AlreadyVoted(_) => Err(OperatorError::AlreadyVoted {
            subject,
            id: id.to_owned(),
        }),
        VoteOutcome::NotPending(record) => Err(not_pending(&record)),
        VoteOutcome::Unknown => Err(OperatorError::Unknown(id.to_owned())),
    }
}

/// Whether `approver` may cast `decision` on `record`: not voted yet (under any of their
/// names), the `@approvers` groups, Cedar's `approval:decide` (judged as coming from `route`
/// and `source`), and not approving their own agent's action unless a permit that allowed it
/// says `@own_agent("allowed")`.
pub fn may_decide(
    policy: &PolicyEngine,
    approver: &Approver,
    record: &ApprovalRecord,
    decision: VoteDecision,
    route: &str,
    source: Option<IpAddr>,
) -> Result<(), OperatorError> {
    let subject = approver.subject.as_str();
    // One person votes once, under whichever of their names, in the console or on the
    // command line: a vote keeps every name its voter goes by.
    if record
        .votes
        .iter()
        .any(|v| v.all_names().any(|name| approver.is(name)))
    {
        return Err(OperatorError::AlreadyVoted {
            subject: subject.to_owned(),
            id: record.id.clone(),
        });
    }
    if !record.approver_groups.is_empty()
        && !record
            .approver_groups
            .iter()
            .any(|entry| approver.is_named_by(entry))
    {
        return Err(OperatorError::NotInGroup {
            subject: subject.to_owned(),
            id: record.id.clone(),
            groups: record.approver_groups.join(", "),
        });
    }
    let owner = record.context.get("owner").and_then(|o| o.as_str());
    let own = owner.is_some_and(|o| approver.is(o))
        || record
            .principal
            .strip_prefix("User::")
            .and_then(|quoted| serde_json::from_str::<String>(quoted).ok())
            .is_some_and(|user| approver.is(&user));
    let action = Action {
        principal: Arc::new(Principal {
            kind: PrincipalKind::User,
            id: Arc::from(subject),
            issuer: Arc::from(approver.issuer.as_str()),
            groups: approver
                .groups
                .iter()
                .map(|g| Arc::from(g.as_str()))
                .collect(),
            ..Principal::anonymous()
        }),
        verb: Verb::ApprovalDecide,
        resource: Resource::Approval {
            id: Arc::from(record.id.as_str()),
            principal: Arc::from(record.principal.as_str()),
            action: Arc::from(record.action.as_str()),
            resource: Arc::from(record.resource.as_str()),
            owner: owner.map(Arc::from),
        },
        context: ActionContext {
            route: Arc::from(route),
            time: SystemTime::now(),
            source_ip: source.unwrap_or(IpAddr::from([127, 0, 0, 1])),
            tls: false,
            client_certificate: None,
            findings: Default::default(),
            facts: Default::default(),
            session: None,
            budget: None,
        },
    };
    let permits = match policy.decide(&action) {
        Decision::Allow { policies } => policies,
        other => {
            return Err(OperatorError::Policy {
                subject: subject.to_owned(),
                id: record.id.clone(),
                reason: other.reasons().join("; "),
            });
        }
    };
    // Their own agent's action: they may deny it; approving it takes a permit that says so.
    let own_allowed = || {
        permits
            .iter()
            .any(|id| policy.policy(id).is_some_and(|p| p.own_agent))
    };
    if own && decision == VoteDecision::Approve && !own_allowed() {
        return Err(OperatorError::OwnAgent {
            subject: subject.to_owned(),
            id: record.id.clone(),
        });
    }
    Ok(())
}
/// One approval as `warden approvals show` prints it.
pub fn describe(record: &ApprovalRecord) -> String {
    let mut out = format!(
        "approval {}\n  status:    {}\n  agent:     {}\n  action:    {}\n  resource:  {}\n  policy:    {}\n",
        record.id, record.status, record.principal, record.action, record.resource, record.policy
    );
    if let Some(why) = &record.withdrawn {
        out.push_str(&format!("  withdrawn: {why}\n"));
    }
    if !record.reason.is_empty() {
        out.push_str(&format!("  reason:    {}\n", record.reason));
    }
    out.push_str(&format!(
        "  approvers: {} of {}\n  context:   {}\n",
        record.required,
        if record.approver_groups.is_empty() {
            "whoever policy allows".to_owned()
        } else {
            record.approver_groups.join(", ")
        },
        record.context
    ));
    if let Some(note) = super::rounded::note(&record.context) {
        out.push_str(&format!("  numbers:   {note}\n"));
    }
    if let Some(note) = super::undeclared::note(&record.context, true) {
        out.push_str(&format!("  unjudged:  {note}\n"));
    }
    for v in &record.votes {
        out.push_str(&format!(
            "  vote:      {} {} ({}){}\n",
            v.approver,
            v.decision.as_str(),
            v.factor.as_str(),
            v.source.map(|s| format!(" from {s}")).unwrap_or_default()
        ));
    }
    // The agent chose most of it: nothing it wrote may hide or reorder what the operator reads.
    crate::text::revealed_for_approvers(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::approvals::ApprovalStatus;

    const RULES: &str = r#"
@id("sre-decides")
permit (principal in Group::"sre", action == Action::"approval:decide", resource);

@id("leads-approve-their-own")
@own_agent("allowed")
permit (principal in Group::"leads", action == Action::"approval:decide", resource)
when { resource.action == "llm:chat" };
"#;

    fn engine() -> PolicyEngine {
        let dir = crate::policy::tests::pack(&[("decide.cedar", RULES)]);
        PolicyEngine::load(dir.path()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn record(owner: &str, action: &str, votes: &[&str]) -> ApprovalRecord {
        ApprovalRecord {
            id: "apr_1".into(),
            digest: format!("sha256:{}", "ab".repeat(32)),
            principal: r#"Agent::"billing-bot""#.into(),
            action: action.into(),
            resource: r#"Model::"openai/gpt-4o""#.into(),
            context: serde_json::json!({ "owner": owner }),
            policy: "p".into(),
            reason: String::new(),
            approver_groups: vec![],
            required: 2,
            created_ms: 0,
            expires_ms: i64::MAX,
            status: ApprovalStatus::Pending,
            decided_ms: None,
            withdrawn: None,
            votes: votes
                .iter()
                .map(|v| Vote {
                    approver: (*v).into(),
                    names: Vec::new(),
                    decision: VoteDecision::Approve,
                    factor: SecondFactor::Totp,
                    source: None,
                    at_ms: 0,
                })
                .collect(),
        }
    }

    fn dave(groups: &[&str]) -> Approver {
        Approver {
            subject: "u-42".into(),
            groups: groups.iter().map(|g| (*g).into()).collect(),
            aliases: vec!["dave".into(), "Dave@Example.com".into()],
            issuer: "https://sso.example.com".into(),
        }
    }

    fn judge(who: &Approver, r: &ApprovalRecord, d: VoteDecision) -> Result<(), OperatorError> {
        may_decide(&engine(), who, r, d, "console", None)
    }

    #[test]
    fn an_agent_owned_by_any_name_of_the_approver_is_their_own() {
        for owner in ["u-42", "dave", "dave@example.com"] {
            let r = record(owner, "llm:chat", &[]);
            assert!(
                matches!(
                    judge(&dave(&["sre"]), &r, VoteDecision::Approve),
                    Err(OperatorError::OwnAgent { .. })
                ),
                "{owner}"
            );
            judge(&dave(&["sre"]), &r, VoteDecision::Deny).unwrap();
        }
        judge(
            &dave(&["sre"]),
            &record("carol", "llm:chat", &[]),
            VoteDecision::Approve,
        )
        .unwrap();
    }

    #[test]
    fn a_permit_that_says_own_agent_allowed_lets_them_approve_their_own() {
        let r = record("dave", "llm:chat", &[]);
        judge(&dave(&["sre", "leads"]), &r, VoteDecision::Approve).unwrap();
        // Only where that permit applies.
        let elsewhere = record("dave", "mcp:call_tool", &[]);
        assert!(matches!(
            judge(&dave(&["sre", "leads"]), &elsewhere, VoteDecision::Approve),
            Err(OperatorError::OwnAgent { .. })
        ));
    }

    fn named(entries: &[&str]) -> ApprovalRecord {
        ApprovalRecord {
            approver_groups: entries.iter().map(|e| (*e).into()).collect(),
            ..record("erin", "llm:chat", &[])
        }
    }

    #[test]
    fn an_approvers_group_admits_its_members_and_not_a_group_named_like_the_entry() {
        let r = named(&[r#"Group::"sre""#]);
        judge(&dave(&["sre"]), &r, VoteDecision::Approve).unwrap();
        for groups in [&["dev"][..], &[r#"Group::"sre""#], &["Group::sre"]] {
            assert!(
                matches!(
                    judge(&dave(groups), &r, VoteDecision::Approve),
                    Err(OperatorError::NotInGroup { .. })
                ),
                "{groups:?}"
            );
        }
    }

    #[test]
    fn an_approvers_user_admits_that_approver_by_any_of_their_names() {
        for entry in [
            r#"User::"u-42""#,
            r#"User::"dave""#,
            r#"User::"dave@example.com""#,
        ] {
            judge(&dave(&["sre"]), &named(&[entry]), VoteDecision::Approve)
                .unwrap_or_else(|e| panic!("{entry}: {e}"));
        }
        let carol = Approver {
            subject: "u-7".into(),
            aliases: vec!["carol".into()],
            ..dave(&["sre"])
        };
        let r = named(&[r#"User::"dave""#]);
        assert!(matches!(
            judge(&carol, &r, VoteDecision::Approve),
            Err(OperatorError::NotInGroup { .. })
        ));
        // A group named like the user is not the user.
        assert!(matches!(
            judge(
                &dave(&["sre", "carol"]),
                &named(&[r#"User::"carol""#]),
                VoteDecision::Approve
            ),
            Err(OperatorError::NotInGroup { .. })
        ));
    }

    #[test]
    fn show_reveals_characters_that_would_hide_or_reorder_what_the_agent_sent() {
        let mut r = record("carol", "llm:chat", &[]);
        r.resource = "Tool::\"pay\u{202E}gnp.exe\"".into();
        r.context = serde_json::json!({"arguments": {"to": "\u{2066}acct\u{2069}\u{200B}9"}});
        let shown = describe(&r);
        for c in ['\u{202E}', '\u{2066}', '\u{2069}', '\u{200B}'] {
            assert!(!shown.contains(c), "{c:?} printed as is:\n{shown}");
        }
        assert!(shown.contains(r"pay\u{202e}gnp.exe"), "{shown}");
        assert!(shown.contains(r"\u{2066}acct\u{2069}\u{200b}9"), "{shown}");
    }

    #[test]
    fn show_prints_look_alikes_of_ascii_letters_as_escapes() {
        let mut r = record("carol", "mcp:call_tool", &[]);
        r.context = serde_json::json!({"arguments": {"to": "boss@c\u{43e}rp.com"}});
        let shown = describe(&r);
        assert!(!shown.contains('\u{43e}'), "printed as is:\n{shown}");
        assert!(shown.contains(r"boss@c\u{43e}rp.com"), "{shown}");
    }

    #[test]
    fn show_says_which_numbers_may_be_rounded() {
        let mut r = record("carol", "mcp:call_tool", &[]);
        r.context =
            serde_json::from_str(r#"{"arguments": {"amount": 12345678901234567890123}}"#).unwrap();
        let shown = describe(&r);
        assert!(
            shown.contains("  numbers:   1 number may not be exactly as the agent sent it")
                && shown.contains("(at /arguments/amount)"),
            "{shown}"
        );
        r.context = serde_json::json!({"arguments": {"amount": 12}});
        assert!(!describe(&r).contains("numbers:"));
    }

    #[test]
    fn show_says_a_rest_body_has_fields_no_policy_judged() {
        let mut r = record("carol", "slack:chat.postMessage", &[]);
        r.context = serde_json::json!({"undeclared_fields": {"count": 1, "names": ["as_user"]}});
        let shown = describe(&r);
        assert!(
            shown.contains(
                "  unjudged:  The body has 1 field the connector does not declare, which no \
                 policy judged: as_user"
            ),
            "{shown}"
        );
        r.context = serde_json::json!({"method": "POST"});
        assert!(!describe(&r).contains("unjudged:"));
    }

    #[test]
    fn one_person_votes_once_under_any_of_their_names() {
        let r = record("carol", "llm:chat", &["dave@example.com"]);
        assert!(matches!(
            judge(&dave(&["sre"]), &r, VoteDecision::Approve),
            Err(OperatorError::AlreadyVoted { .. })
        ));
    }

    #[test]
    fn a_console_vote_counts_against_the_same_person_on_the_command_line() {
        // dave voted in the console as u-42, the provider naming him dave and by e-mail too.
        let mut r = record("carol", "llm:chat", &[]);
        r.votes.push(Vote {
            approver: "u-42".into(),
            names: vec!["dave".into(), "Dave@Example.com".into()],
            decision: VoteDecision::Approve,
            factor: SecondFactor::Totp,
            source: None,
            at_ms: 0,
        });
        // The operator listed as dave@example.com is dave: refused.
        let operator = Approver {
            subject: "dave@example.com".into(),
            groups: vec!["sre".into()],
            aliases: Vec::new(),
            issuer: "warden-cli".into(),
        };
        assert!(matches!(
            judge(&operator, &r, VoteDecision::Approve),
            Err(OperatorError::AlreadyVoted { .. })
        ));
        // Another operator is not.
        let erin = Approver {
            subject: "erin@example.com".into(),
            ..operator
        };
        judge(&erin, &r, VoteDecision::Approve).unwrap();
    }

    #[tokio::test]
    async fn only_an_operator_may_confirm_an_enrolment_on_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::sqlite(
            crate::state::sqlite::SqliteStore::open(&dir.path().join("state.db"))
                .await
                .unwrap(),
        );
        let sealer = || {
            Sealer::new(vec![crate::approval::sealed::FactorKey::from_bytes(
                &[7; 32],
            )])
            .unwrap()
        };
        let config = ApprovalsConfig {
            operators: vec![OperatorConfig {
                subject: "alice@example.com".into(),
                groups: vec!["sre".into()],
            }],
            ..ApprovalsConfig::default()
        };
        let operator = Operator::new(&config, store.clone(), sealer(), Arc::new(engine()));
        // mallory is no operator: her app is not enrolled however it came to be started (a
        // console enrolment, a removed operator's), and her code is not even checked.
        begin_totp(&store, &sealer(), "mallory").await.unwrap();
        let refused = operator.confirm("mallory", "123456").await.unwrap_err();
        assert!(
            matches!(&refused, OperatorError::NotAnOperator(who) if who == "mallory"),
            "{refused}"
        );
        assert!(
            refused.to_string().contains("approvals.operators"),
            "says what to do: {refused}"
        );
        let enrolment = store.factors().totp("mallory").await.unwrap().unwrap();
        assert_eq!(enrolment.confirmed_ms, None);
        // An operator gets as far as the code.
        operator.enroll("alice@example.com").await.unwrap();
        assert!(matches!(
            operator.confirm("alice@example.com", "000000").await,
            Err(OperatorError::Code(_))
        ));
    }

    /// A vote that lost the race to another approver's is told it was decided already, by
    /// whom, and that it did not count; an approval that expired or was withdrawn says so.
    #[test]
    fn a_vote_on_an_approval_another_decided_first_is_told_who_decided_it() {
        let mut approved = record("alice", "llm:chat", &["alice"]);
        approved.status = ApprovalStatus::Approved;
        let told = not_pending(&approved);
        assert!(
            matches!(&told, OperatorError::AlreadyDecided { by, .. } if by == "alice"),
            "{told:?}"
        );
        assert_eq!(
            told.to_string(),
            "approval apr_1 was already decided: approved by alice; only a pending approval can \
             be decided, so your vote was not counted"
        );
        let mut denied = record("alice", "llm:chat", &["alice"]);
        denied.votes[0].decision = VoteDecision::Deny;
        denied.votes[0].approver = "bob".into();
        denied.status = ApprovalStatus::Denied;
        assert!(
            not_pending(&denied)
                .to_string()
                .contains("already decided: denied by bob"),
            "{}",
            not_pending(&denied)
        );
        let mut expired = record("alice", "llm:chat", &[]);
        expired.status = ApprovalStatus::Expired;
        assert!(matches!(
            not_pending(&expired),
            OperatorError::NotPending { status, .. } if status == "expired"
        ));
    }
}
