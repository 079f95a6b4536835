//! Approval requests and votes, on both backends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Backend;
use crate::state::approvals::{
    ApprovalFilter, ApprovalRecord, ApprovalRepository, ApprovalStatus, ConsumeOutcome,
    NewApproval, SecondFactor, Vote, VoteDecision, VoteOutcome,
};
use crate::state::error::StateError;
use crate::state::pins::now_ms;

on_both_backends!(
    one_person_votes_once_under_whichever_of_their_names,
    an_agent_retrying_the_same_action_finds_its_request,
    a_single_approval_approves_and_is_consumed_once_for_its_own_digest,
    a_two_person_rule_needs_two_different_approvers,
    a_deny_ends_the_request,
    a_request_past_its_time_refuses_votes_and_a_retry_gets_a_new_one,
    an_approval_left_unused_expires,
    expire_due_marks_what_is_past_its_time,
    pending_and_recent_lists,
    a_vote_keeps_who_how_and_from_where,
    concurrent_votes_on_two_handles_decide_once,
    concurrent_requests_for_one_action_on_two_handles_make_one,
    a_decision_on_one_handle_wakes_a_watcher_on_another_within_a_second,
    an_approval_given_under_a_laxer_policy_does_not_stand_for_a_stricter_one,
    a_tightened_policy_gets_a_new_request_and_a_loosened_one_joins_the_open_one,
    a_withdrawn_request_leaves_the_pending_list_and_can_be_neither_decided_nor_used,
    an_agent_opens_at_most_its_cap_of_pending_requests_and_still_finds_its_own,
    concurrent_requests_of_one_agent_on_two_handles_stay_within_its_cap,
    a_vote_that_waited_for_the_lock_past_the_end_is_refused_and_decides_nothing,
    votes_racing_the_end_of_approvals_each_settle_them_one_way,
    a_withdraw_that_waited_for_the_lock_past_the_end_finds_it_expired,
    a_request_that_waited_for_the_agents_count_past_the_end_of_its_pending_one_is_opened,
);

fn request(digest: &str, required: u32, ttl: Duration) -> NewApproval {
    NewApproval {
        digest: format!("sha256:{digest}"),
        principal: r#"Agent::"ci-bot""#.into(),
        action: r#"Action::"mcp:call_tool""#.into(),
        resource: r#"Tool::"github__create_issue""#.into(),
        context: serde_json::json!({"arguments": {"title": "x", "labels": ["a"]}, "z": 1}),
        policy: "issues-need-approval".into(),
        reason: "creating issues needs a human".into(),
        approver_groups: vec!["sre".into(), "security".into()],
        required,
        ttl,
        pending_cap: None,
    }
}

/// `request` for action `a`, asked by `policy` of `groups`, `required` of them.
fn under(policy: &str, groups: &[&str], required: u32) -> NewApproval {
    NewApproval {
        policy: policy.into(),
        approver_groups: groups.iter().map(|g| (*g).into()).collect(),
        ..request("a", required, HOUR)
    }
}

fn vote(approver: &str, decision: VoteDecision) -> Vote {
    Vote {
        approver: approver.into(),
        names: Vec::new(),
        decision,
        factor: SecondFactor::Totp,
        source: Some("192.0.2.7".parse().unwrap()),
        at_ms: now_ms(),
    }
}

const HOUR: Duration = Duration::from_secs(3600);

/// A handle's approvals.
type Approvals = Arc<dyn ApprovalRepository>;

/// Asks `approvals` for `new`: the request, and whether it is a new one.
async fn ask(approvals: &Approvals, new: NewApproval) -> (ApprovalRecord, bool) {
    approvals.create_or_find(new).await.unwrap()
}

/// `approver`'s `decision` on request `id`, and what came of it.
async fn outcome(
    approvals: &Approvals,
    id: &str,
    approver: &str,
    decision: VoteDecision,
) -> VoteOutcome {
    approvals.vote(id, vote(approver, decision)).await.unwrap()
}

/// Request `id` once `approver`'s `decision` is recorded (it must be).
async fn recorded(
    approvals: &Approvals,
    id: &str,
    approver: &str,
    decision: VoteDecision,
) -> ApprovalRecord {
    let VoteOutcome::Recorded(record) = outcome(approvals, id, approver, decision).await else {
        panic!("vote not recorded")
    };
    *record
}

async fn an_agent_retrying_the_same_action_finds_its_request(backend: Backend) {
    let approvals = backend.open().await.approvals();
    let (first, created) = ask(&approvals, request("a", 1, HOUR)).await;
    assert!(created);
    assert_eq!(first.status, ApprovalStatus::Pending);
    assert!(first.id.starts_with("apr_"));
    assert_eq!(first.expires_ms - first.created_ms, 3_600_000);
    assert_eq!(first.context, request("a", 1, HOUR).context);
    assert_eq!(first.approver_groups, ["sre", "security"]);
    let (again, created) = ask(&approvals, request("a", 1, HOUR)).await;
    assert!(!created);
    assert_eq!(again.id, first.id);
    // Other arguments are another action: another request.
    let (other, created) = ask(&approvals, request("b", 1, HOUR)).await;
    assert!(created);
    assert_ne!(other.id, first.id);
    assert_eq!(approvals.get(&first.id).await.unwrap().unwrap(), first);
    assert_eq!(approvals.get("apr_nope").await.unwrap(), None);
}

async fn a_single_approval_approves_and_is_consumed_once_for_its_own_digest(backend: Backend) {
    let approvals = backend.open().await.approvals();
    let (record, _) = ask(&approvals, request("a", 1, HOUR)).await;
    // Not approved yet: nothing to use.
    assert_eq!(
        approvals.consume(&record.id, "sha256:a").await.unwrap(),
        ConsumeOutcome::NotApproved(ApprovalStatus::Pending)
    );
    let approved = recorded(&approvals, &record.id, "alice", VoteDecision::Approve).await;
    assert_eq!(approved.status, ApprovalStatus::Approved);
    assert!(approved.decided_ms.is_some());
    // The agent retrying finds the approved request.
    let (found, created) = ask(&approvals, request("a", 1, HOUR)).await;
    assert!(!created);
    assert_eq!(found.status, ApprovalStatus::Approved);
    // Replayed for other arguments: refused, and still usable for its own.
    assert_eq!(
        approvals.consume(&record.id, "sha256:b").await.unwrap(),
        ConsumeOutcome::DigestMismatch
    );
    let ConsumeOutcome::Consumed(used) = approvals.consume(&record.id, "sha256:a").await.unwrap()
    else {
        panic!("not consumed")
    };
    assert_eq!(used.status, ApprovalStatus::Consumed);
    assert_eq!(
        approvals.consume(&record.id, "sha256:a").await.unwrap(),
        ConsumeOutcome::NotApproved(ApprovalStatus::Consumed)
    );
    assert_eq!(
        approvals.consume("apr_nope", "sha256:a").await.unwrap(),
        ConsumeOutcome::Unknown
    );
    // The same action once more needs a new approval.
    let (next, created) = ask(&approvals, request("a", 1, HOUR)).await;
    assert!(created);
    assert_ne!(next.id, record.id);
}

async fn a_two_person_rule_needs_two_different_approvers(backend: Backend) {
    let approvals = backend.open().await.approvals();
    let (record, _) = ask(&approvals, request("a", 2, HOUR)).await;
    let after_one = recorded(&approvals, &record.id, "alice", VoteDecision::Approve).await;
    assert_eq!(after_one.status, ApprovalStatus::Pending);
    assert!(matches!(
        outcome(&approvals, &record.id, "alice", VoteDecision::Approve).await,
        VoteOutcome::AlreadyVoted(r) if r.votes.len() == 1
    ));
    assert_eq!(
        approvals.consume(&record.id, "sha256:a").await.unwrap(),
        ConsumeOutcome::NotApproved(ApprovalStatus::Pending)
    );
    let after_two = recorded(&approvals, &record.id, "bob", VoteDecision::Approve).await;
    assert_eq!(after_two.status, ApprovalStatus::Approved);
    let approvers: Vec<_> = after_two
        .votes
        .iter()
        .map(|v| v.approver.as_str())
        .collect();
    assert_eq!(approvers.len(), 2);
    assert!(approvers.contains(&"alice") && approvers.contains(&"bob"));
    // Decided: a third vote changes nothing.
    assert!(matches!(
        outcome(&approvals, &record.id, "carol", VoteDecision::Deny).await,
        VoteOutcome::NotPending(r) if r.status == ApprovalStatus::Approved
    ));
}

async fn a_deny_ends_the_request(backend: Backend) {
    let approvals = backend.open().await.approvals();
    let (record, _) = ask(&approvals, request("a", 2, HOUR)).await;
    outcome(&approvals, &record.id, "alice", VoteDecision::Approve).await;
    let denied = recorded(&approvals, &record.id, "bob", VoteDecision::Deny).await;
    assert_eq!(denied.status, ApprovalStatus::Denied);
    assert!(matches!(
        outcome(&approvals, &record.id, "carol", VoteDecision::Approve).await,
        VoteOutcome::NotPending(r) if r.status == ApprovalStatus::Denied
    ));
    assert_eq!(
        approvals.consume(&record.id, "sha256:a").await.unwrap(),
        ConsumeOutcome::NotApproved(ApprovalStatus::Denied)
    );
    // Asking again after a deny is a new request.
    let (again, created) = ask(&approvals, request("a", 2, HOUR)).await;
    assert!(created);
    assert_ne!(again.id, record.id);
}

/// `request` for action `digest` by `principal`, with at most `cap` pending.
fn capped(digest: &str, principal: &str, cap: u32) -> NewApproval {
    NewApproval {
        principal: format!("Agent::\"{principal}\""),
        pending_cap: Some(cap),
        ..request(digest, 1, HOUR)
    }
}

async fn an_agent_opens_at_most_its_cap_of_pending_requests_and_still_finds_its_own(
    backend: Backend,
) {
    let approvals = backend.open().await.approvals();
    let mut opened = Vec::new();
    for digest in ["a", "b", "c"] {
        let (record, created) = approvals
            .create_or_find(capped(digest, "ci-bot", 3))
            .await
            .unwrap();
        assert!(created);
        opened.push(record);
    }
    let refused = approvals
        .create_or_find(capped("d", "ci-bot", 3))
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            StateError::TooManyPending {
                pending: 3,
                cap: 3,
                ..
            }
        ),
        "{refused}"
    );
    assert!(
        refused
            .to_string()
            .contains("approvals.max_pending_per_agent")
    );
    let pending = approvals.list(ApprovalFilter::Pending).await.unwrap();
    assert_eq!(pending.len(), 3, "nothing written for the refused one");
    // The agent retrying an action it asked about finds its request.
    let (again, created) = approvals
        .create_or_find(capped("a", "ci-bot", 3))
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(again.id, opened[0].id);
    // Another agent has a cap of its own.
    let (_, created) = approvals
        .create_or_find(capped("d", "other-bot", 3))
        .await
        .unwrap();
    assert!(created);
    // Once one is decided, there is room again.
    approvals
        .vote(&opened[1].id, vote("alice", VoteDecision::Deny))
        .await
        .unwrap();
    let (_, created) = approvals
        .create_or_find(capped("e", "ci-bot", 3))
        .await
        .unwrap();
    assert!(created);
}

async fn concurrent_requests_of_one_agent_on_two_handles_stay_within_its_cap(backend: Backend) {
    let handles = [
        backend.open().await.approvals(),
        backend.open().await.approvals(),
    ];
    let asked = futures_util::future::join_all((0..12).map(|i| {
        let store = handles[i % 2].clone();
        tokio::spawn(async move {
            store
                .create_or_find(capped(&format!("x{i}"), "ci-bot", 4))
                .await
        })
    }))
    .await;
    let mut created = 0;
    for answer in asked {
        match answer.unwrap() {
            Ok((_, new)) => created += usize::from(new),
            Err(StateError::TooManyPending { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(created, 4);
}

async fn a_request_past_its_time_refuses_votes_and_a_retry_gets_a_new_one(backend: Backend) {
    let approvals = backend.open().await.approvals();
    let (record, _) = ask(&approvals, request("a", 1, Duration::from_millis(50))).await;
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(
        approvals.get(&record.id).await.unwrap().unwrap().status,
        ApprovalStatus::Expired
    );
    assert!(matches!(
        outcome(&approvals, &record.id, "alice", VoteDecision::Approve).await,
        VoteOutcome::NotPending(r) if r.status == ApprovalStatus::Expired && r.votes.is_empty()
    ));
    let (again, created) = ask(&approvals, request("a", 1, HOUR)).await;
    assert!(created);
    assert_ne!(again.id, record.id);
}

async fn an_approval_left_unused_expires(backend: Backend) {
    let approvals = backend.open().await.approvals();
    let (record, _) = ask(&approvals, request("a", 1, Duration::from_secs(1))).await;
    assert!(matches!(
        outcome(&approvals, &record.id, "alice", VoteDecision::Approve).await,
        VoteOutcome::Recorded(r) if r.status == ApprovalStatus::Approved
    ));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        approvals.consume(&record.id, "sha256:a").await.unwrap(),
        ConsumeOutcome::NotApproved(ApprovalStatus::Expired)
    );
    assert_eq!(
        approvals.consume(&record.id, "sha256:a").await.unwrap(),
        ConsumeOutcome::NotApproved(ApprovalStatus::Expired)
    );
}

async fn expire_due_marks_what_is_past_its_time(backend: Backend) {
    let approvals = backend.open().await.approvals();
    let (short, _) = ask(&approvals, request("a", 1, Duration::from_millis(50))).await;
    let (long, _) = ask(&approvals, request("b", 1, HOUR)).await;
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(
        approvals.expire_due().await.unwrap(),
        vec![short.id.clone()]
    );
    assert!(approvals.expire_due().await.unwrap().is_empty());
    let expired = approvals.get(&short.id).await.unwrap().unwrap();
    assert_eq!(expired.status, ApprovalStatus::Expired);
    assert!(expired.decided_ms.is_some());
    assert_eq!(
        approvals.get(&long.id).await.unwrap().unwrap().status,
        ApprovalStatus::Pending
    );
}

async fn pending_and_recent_lists(backend: Backend) {
    let approvals = backend.open().await.approvals();
    let mut ids = Vec::new();
    for digest in ["a", "b", "c"] {
        let (record, _) = ask(&approvals, request(digest, 1, HOUR)).await;
        ids.push(record.id);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    outcome(&approvals, &ids[1], "alice", VoteDecision::Deny).await;
    let pending: Vec<_> = approvals
        .list(ApprovalFilter::Pending)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(pending, [ids[0].clone(), ids[2].clone()]);
    let recent = approvals
        .list(ApprovalFilter::Recent { limit: 2 })
        .await
        .unwrap();
    let recent_ids: Vec<_> = recent.iter().map(|r| r.id.clone()).collect();
    assert_eq!(recent_ids, [ids[2].clone(), ids[1].clone()]);
    assert_eq!(recent[1].status, ApprovalStatus::Denied);
    assert_eq!(recent[1].votes.len(), 1);
}

async fn a_vote_keeps_who_how_and_from_where(backend: Backend) {
    let approvals = backend.open().await.approvals();
    let (record, _) = ask(&approvals, request("a", 2, HOUR)).await;
    let cast = Vote {
        approver: "alice@example.com".into(),
        names: vec!["u-1".into()],
        decision: VoteDecision::Approve,
        factor: SecondFactor::Webauthn,
        source: Some("2001:db8::1".parse().unwrap()),
        at_ms: 1_790_000_000_123,
    };
    approvals.vote(&record.id, cast.clone()).await.unwrap();
    let no_source = Vote {
        approver: "bob".into(),
        names: Vec::new(),
        source: None,
        factor: SecondFactor::Totp,
        ..cast.clone()
    };
    approvals.vote(&record.id, no_source.clone()).await.unwrap();
    let stored = backend
        .open()
        .await
        .approvals()
        .get(&record.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.votes, [cast, no_source]);
}

async fn concurrent_votes_on_two_handles_decide_once(backend: Backend) {
    let first = backend.open().await.approvals();
    let second = backend.open().await.approvals();
    let (record, _) = ask(&first, request("a", 2, HOUR)).await;
    // The same approver voting from two places at once: one vote counts.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = if i % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        let id = record.id.clone();
        tasks.push(tokio::spawn(async move {
            outcome(&store, &id, "alice", VoteDecision::Approve).await
        }));
    }
    let mut recorded = 0;
    for task in tasks {
        recorded += usize::from(matches!(task.await.unwrap(), VoteOutcome::Recorded(_)));
    }
    assert_eq!(recorded, 1);
    // Two approvers at once, on two replicas: both count and it is approved.
    let (record, _) = ask(&first, request("b", 2, HOUR)).await;
    let (a, b) = tokio::join!(
        first.vote(&record.id, vote("alice", VoteDecision::Approve)),
        second.vote(&record.id, vote("bob", VoteDecision::Approve)),
    );
    assert!(matches!(a.unwrap(), VoteOutcome::Recorded(_)));
    assert!(matches!(b.unwrap(), VoteOutcome::Recorded(_)));
    let decided = first.get(&record.id).await.unwrap().unwrap();
    assert_eq!(decided.status, ApprovalStatus::Approved);
    // Both replicas' requests try to use it at once: one does.
    let (a, b) = tokio::join!(
        first.consume(&record.id, "sha256:b"),
        second.consume(&record.id, "sha256:b"),
    );
    let used = [a.unwrap(), b.unwrap()]
        .iter()
        .filter(|o| matches!(o, ConsumeOutcome::Consumed(_)))
        .count();
    assert_eq!(used, 1);
}

async fn concurrent_requests_for_one_action_on_two_handles_make_one(backend: Backend) {
    let first = backend.open().await.approvals();
    let second = backend.open().await.approvals();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = if i % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        tasks.push(tokio::spawn(async move {
            ask(&store, request("a", 1, HOUR)).await
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    let mut created = 0;
    for task in tasks {
        let (record, new) = task.await.unwrap();
        ids.insert(record.id);
        created += usize::from(new);
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(created, 1);
}

async fn a_decision_on_one_handle_wakes_a_watcher_on_another_within_a_second(backend: Backend) {
    let holder = backend.open().await.approvals();
    let console = backend.open().await.approvals();
    let (record, _) = ask(&holder, request("a", 1, HOUR)).await;
    let mut watch = holder.watch(&record.id);
    let id = record.id.clone();
    let waiter = tokio::spawn(async move {
        let started = Instant::now();
        loop {
            tokio::time::timeout(Duration::from_secs(5), watch.changed())
                .await
                .expect("no change announced within 5 s")
                .unwrap();
            let now = holder.get(&id).await.unwrap().unwrap();
            if now.status != ApprovalStatus::Pending {
                return (now.status, started.elapsed());
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let decided_at = Instant::now();
    outcome(&console, &record.id, "alice", VoteDecision::Approve).await;
    let (status, _) = waiter.await.unwrap();
    assert_eq!(status, ApprovalStatus::Approved);
    let latency = decided_at.elapsed();
    assert!(
        latency < Duration::from_secs(1),
        "the other handle learned of the decision after {latency:?}"
    );
}

/// The same call through a lax route (one approver of `dev`) and then a strict one (two of
/// `sre`): the strict request gets its own approval, the lax one keeps its own.
async fn an_approval_given_under_a_laxer_policy_does_not_stand_for_a_stricter_one(
    backend: Backend,
) {
    let approvals = backend.open().await.approvals();
    let lax = || under("lax-route", &[r#"Group::"dev""#], 1);
    let strict = || under("strict-route", &[r#"Group::"sre""#], 2);
    let (given, _) = ask(&approvals, lax()).await;
    let given = recorded(&approvals, &given.id, "dan", VoteDecision::Approve).await;
    assert_eq!(given.status, ApprovalStatus::Approved);
    let (asked, created) = ask(&approvals, strict()).await;
    assert!(created, "the strict request must not find the lax approval");
    assert_ne!(asked.id, given.id);
    assert_eq!(asked.status, ApprovalStatus::Pending);
    assert_eq!(asked.policy, "strict-route");
    assert_eq!(asked.approver_groups, [r#"Group::"sre""#]);
    assert_eq!(asked.required, 2);
    // Each route finds its own again; the lax approval is still there for the lax route.
    let (again, created) = ask(&approvals, strict()).await;
    assert!(!created);
    assert_eq!(again.id, asked.id);
    let (lax_again, created) = ask(&approvals, lax()).await;
    assert!(!created);
    assert_eq!(lax_again.id, given.id);
    assert_eq!(lax_again.status, ApprovalStatus::Approved);
}

/// A policy tightened while its approval waits: the request asks anew under the new terms; a
/// policy loosened is served by the stricter approval already open.
async fn a_tightened_policy_gets_a_new_request_and_a_loosened_one_joins_the_open_one(
    backend: Backend,
) {
    let approvals = backend.open().await.approvals();
    let (two, created) = ask(&approvals, under("p", &["sre"], 2)).await;
    assert!(created);
    // Fewer approvals asked: the open one, which asks more, stands for it.
    let (joined, created) = ask(&approvals, under("p", &["sre"], 1)).await;
    assert!(!created);
    assert_eq!(joined.id, two.id);
    // More approvals asked: a new request, with the new count.
    let (three, created) = ask(&approvals, under("p", &["sre"], 3)).await;
    assert!(created);
    assert_ne!(three.id, two.id);
    assert_eq!(three.required, 3);
    // Other approvers: a new request, with the new approvers; the same in another order
    // finds it.
    let (other, created) = ask(&approvals, under("p", &["sre", "security"], 2)).await;
    assert!(created);
    assert!(other.id != two.id && other.id != three.id);
    let (reordered, created) = ask(&approvals, under("p", &["security", "sre"], 2)).await;
    assert!(!created);
    assert_eq!(reordered.id, other.id);
    // Another policy with the same approvers and count: a new request.
    let (renamed, created) = ask(&approvals, under("q", &["sre"], 2)).await;
    assert!(created);
    assert_eq!(renamed.policy, "q");
}

async fn one_person_votes_once_under_whichever_of_their_names(backend: Backend) {
    let approvals = backend.open().await.approvals();
    let (record, _) = ask(&approvals, request("a", 2, HOUR)).await;
    // In the console as their SSO subject, with the other names the provider gave.
    let console = Vote {
        names: vec!["alice".into(), "Alice@Example.com".into()],
        ..vote("u-123", VoteDecision::Approve)
    };
    assert!(matches!(
        approvals.vote(&record.id, console).await.unwrap(),
        VoteOutcome::Recorded(_)
    ));
    // Then on the command line, at another replica, as the operator named by e-mail: the
    // same person, refused.
    let other = backend.open().await.approvals();
    assert!(matches!(
        outcome(&other, &record.id, "alice@example.com", VoteDecision::Approve).await,
        VoteOutcome::AlreadyVoted(r) if r.votes.len() == 1 && r.status == ApprovalStatus::Pending
    ));
    // Another person completes it.
    assert!(matches!(
        outcome(&other, &record.id, "bob", VoteDecision::Approve).await,
        VoteOutcome::Recorded(r) if r.status == ApprovalStatus::Approved
    ));
}

async fn a_withdrawn_request_leaves_the_pending_list_and_can_be_neither_decided_nor_used(
    backend: Backend,
) {
    let approvals = backend.open().await.approvals();
    let (record, _) = approvals
        .create_or_find(request("a", 1, HOUR))
        .await
        .unwrap();
    let mut watch = approvals.watch(&record.id);
    let withdrawn = approvals
        .withdraw(&record.id, "its MCP session ended")
        .await
        .unwrap()
        .expect("known");
    assert_eq!(withdrawn.status, ApprovalStatus::Withdrawn);
    assert_eq!(
        withdrawn.withdrawn.as_deref(),
        Some("its MCP session ended")
    );
    assert!(withdrawn.decided_ms.is_some());
    tokio::time::timeout(Duration::from_secs(2), watch.changed())
        .await
        .expect("a waiter is told")
        .unwrap();
    let pending = approvals.list(ApprovalFilter::Pending).await.unwrap();
    assert!(pending.iter().all(|r| r.id != record.id), "not pending");
    assert!(matches!(
        approvals.vote(&record.id, vote("alice", VoteDecision::Approve)).await.unwrap(),
        VoteOutcome::NotPending(r) if r.status == ApprovalStatus::Withdrawn && r.votes.is_empty()
    ));
    assert_eq!(
        approvals.consume(&record.id, &record.digest).await.unwrap(),
        ConsumeOutcome::NotApproved(ApprovalStatus::Withdrawn)
    );
    // The same action asked again is a new request, not the withdrawn one.
    let (again, created) = approvals
        .create_or_find(request("a", 1, HOUR))
        .await
        .unwrap();
    assert!(created);
    assert_ne!(again.id, record.id);
    // A decided request stays as it was decided; an unknown one is none.
    approvals
        .vote(&again.id, vote("alice", VoteDecision::Deny))
        .await
        .unwrap();
    let denied = approvals
        .withdraw(&again.id, "gone")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(denied.status, ApprovalStatus::Denied);
    assert_eq!(denied.withdrawn, None);
    assert!(
        approvals
            .withdraw("apr_unknown", "gone")
            .await
            .unwrap()
            .is_none()
    );
}

/// Holds approval `id`'s row (PostgreSQL: `FOR UPDATE`) or the whole store (SQLite: a write
/// transaction) from another connection, as another replica's vote, use or expiry would, until
/// `until_ms`; returns once the lock is held.
async fn hold_lock(backend: &Backend, id: &str, until_ms: i64) -> tokio::task::JoinHandle<()> {
    super::hold_lock(
        backend,
        &format!("SELECT id FROM approvals WHERE id = '{id}' FOR UPDATE"),
        "l.relation = 'approvals'::regclass AND l.mode = 'RowShareLock'",
        until_ms,
    )
    .await
}

/// A vote that asked before an approval's end but, waiting for another replica's lock, is
/// made after it, finds it expired: refused, no vote stored, and a request waiting for it is
/// told it expired. Never "recorded" on an approval the store then calls expired.
async fn a_vote_that_waited_for_the_lock_past_the_end_is_refused_and_decides_nothing(
    backend: Backend,
) {
    let approvals = backend.open().await.approvals();
    let (record, _) = ask(&approvals, request("late", 1, Duration::from_secs(3))).await;
    let holding = hold_lock(&backend, &record.id, record.expires_ms + 400).await;
    assert!(
        now_ms() < record.expires_ms,
        "the lock was taken before the approval's end"
    );
    let voted = outcome(&approvals, &record.id, "alice", VoteDecision::Approve).await;
    holding.await.unwrap();
    assert!(
        matches!(&voted, VoteOutcome::NotPending(r) if r.status == ApprovalStatus::Expired),
        "a vote made past the end is refused as expired: {voted:?}"
    );
    let now = approvals.get(&record.id).await.unwrap().unwrap();
    assert_eq!(now.status, ApprovalStatus::Expired);
    assert!(now.votes.is_empty(), "{:?}", now.votes);
    assert_eq!(
        approvals.consume(&record.id, "sha256:late").await.unwrap(),
        ConsumeOutcome::NotApproved(ApprovalStatus::Expired)
    );
}

/// A withdraw asked before an approval's end but made after it, having waited for another
/// replica's lock, finds it ended: it changes nothing, the approval stays expired (never
/// withdrawn after its end).
async fn a_withdraw_that_waited_for_the_lock_past_the_end_finds_it_expired(backend: Backend) {
    let approvals = backend.open().await.approvals();
    let (record, _) = ask(&approvals, request("gone", 1, Duration::from_secs(3))).await;
    let holding = hold_lock(&backend, &record.id, record.expires_ms + 400).await;
    assert!(
        now_ms() < record.expires_ms,
        "the lock was taken before the approval's end"
    );
    let after = approvals
        .withdraw(&record.id, "the session ended")
        .await
        .unwrap()
        .unwrap();
    holding.await.unwrap();
    assert_eq!(after.status, ApprovalStatus::Expired, "{after:?}");
    assert_eq!(after.withdrawn, None);
    let now = approvals.get(&record.id).await.unwrap().unwrap();
    assert_eq!(now.status, ApprovalStatus::Expired);
}

/// An agent at its cap of pending requests whose pending one ends while its next request
/// waits for the count of its requests (PostgreSQL: the principal's advisory lock, held here
/// as another replica opening one of its requests holds it; SQLite: the store's write lock)
/// gets the new one: what is pending is counted, and the new one's time starts, once the lock
/// is held.
async fn a_request_that_waited_for_the_agents_count_past_the_end_of_its_pending_one_is_opened(
    backend: Backend,
) {
    let approvals = backend.open().await.approvals();
    let capped = |digest: &str, ttl| NewApproval {
        pending_cap: Some(1),
        ..request(digest, 1, ttl)
    };
    let (first, _) = ask(&approvals, capped("first", Duration::from_secs(3))).await;
    // The class of the principal's lock is "wapp" in ASCII (postgres/approvals.rs).
    let holding = super::hold_lock(
        &backend,
        &format!(
            r#"SELECT pg_advisory_xact_lock({}, hashtext('Agent::"ci-bot"'))"#,
            0x7761_7070
        ),
        "l.locktype = 'advisory'",
        first.expires_ms + 400,
    )
    .await;
    assert!(
        now_ms() < first.expires_ms,
        "the lock was taken before the first request's end"
    );
    let opened = approvals.create_or_find(capped("second", HOUR)).await;
    holding.await.unwrap();
    let (second, created) =
        opened.expect("not refused for a pending request that ended while it waited");
    assert!(created);
    assert!(
        second.created_ms >= first.expires_ms,
        "its time starts once the lock is held: {} < {}",
        second.created_ms,
        first.expires_ms
    );
}

/// Approvals whose one vote lands around their end, each with a request waiting for it on
/// another handle (as a gate on another replica waits: watch, read, use once decided): each
/// settles one way. The vote recorded in time (the approval approved, one vote stored) and
/// the waiting request let through or told it expired, as the store then says; or the vote
/// refused as expired, nothing stored, and the request told it expired.
async fn votes_racing_the_end_of_approvals_each_settle_them_one_way(backend: Backend) {
    let voter = backend.open().await.approvals();
    let waiter = backend.open().await.approvals();
    const TTL: Duration = Duration::from_millis(600);
    let rounds = (0..12u64).map(|n| {
        let (voter, waiter) = (voter.clone(), waiter.clone());
        async move {
            let digest = format!("race-{n}");
            let (record, _) = ask(&voter, request(&digest, 1, TTL)).await;
            let waiting = {
                let (waiter, id, digest) = (waiter.clone(), record.id.clone(), digest.clone());
                tokio::spawn(async move {
                    let deadline = Instant::now() + Duration::from_secs(30);
                    loop {
                        let mut watch = waiter.watch(&id);
                        let now = waiter.get(&id).await.unwrap().unwrap();
                        if now.status != ApprovalStatus::Pending {
                            break;
                        }
                        assert!(Instant::now() < deadline, "never settled: {now:?}");
                        let _ =
                            tokio::time::timeout(Duration::from_millis(50), watch.changed()).await;
                    }
                    waiter
                        .consume(&id, &format!("sha256:{digest}"))
                        .await
                        .unwrap()
                })
            };
            // Around the end: from 60 ms before it to 60 ms after, 10 ms apart.
            let at = record.expires_ms - 60 + i64::try_from(n * 10).unwrap();
            tokio::time::sleep(Duration::from_millis(
                u64::try_from(at - now_ms()).unwrap_or(0),
            ))
            .await;
            let voted = outcome(&voter, &record.id, "alice", VoteDecision::Approve).await;
            let used = waiting.await.unwrap();
            let settled = voter.get(&record.id).await.unwrap().unwrap();
            (voted, used, settled)
        }
    });
    let mut approved_in_time = 0;
    for (voted, used, settled) in futures_util::future::join_all(rounds).await {
        match &voted {
            VoteOutcome::Recorded(r) => {
                approved_in_time += 1;
                assert_eq!(r.status, ApprovalStatus::Approved, "{voted:?}");
                assert_eq!(settled.votes.len(), 1, "{settled:?}");
                match &used {
                    ConsumeOutcome::Consumed(_) => {
                        assert_eq!(settled.status, ApprovalStatus::Consumed, "{settled:?}")
                    }
                    ConsumeOutcome::NotApproved(ApprovalStatus::Expired) => {
                        assert_eq!(settled.status, ApprovalStatus::Expired, "{settled:?}")
                    }
                    other => panic!("the waiting request got {other:?} for {settled:?}"),
                }
            }
            VoteOutcome::NotPending(r) => {
                assert_eq!(r.status, ApprovalStatus::Expired, "{voted:?}");
                assert!(settled.votes.is_empty(), "{settled:?}");
                assert_eq!(settled.status, ApprovalStatus::Expired, "{settled:?}");
                assert_eq!(
                    used,
                    ConsumeOutcome::NotApproved(ApprovalStatus::Expired),
                    "{settled:?}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
    println!("votes racing the end: {approved_in_time} of 12 recorded in time");
}
