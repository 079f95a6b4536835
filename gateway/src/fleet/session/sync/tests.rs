//! Two replicas' sessions on one store: a label earned through one is seen by the other after
//! a tick; labels queued during an outage are stored afterwards; counts add up across
//! replicas, and counts made during an outage are published afterwards.

use super::super::Named;
use super::super::sharing::QUEUE_MAX;
use super::super::tests::{call, config};
use super::*;
use crate::action::SessionFacts;
use crate::state::flaky::Flaky;

fn replica() -> AgentSessions {
    let sessions = AgentSessions::default();
    sessions.share();
    sessions
}

/// Agent `a` reads a private file through `sessions`, in session `name`.
fn read_private(sessions: &AgentSessions, name: &str) {
    read_private_as(sessions, &config(), "a", name);
}

fn upload_after_private(sessions: &AgentSessions, agent: &str, named: Named<'_>) -> bool {
    sessions
        .facts(&config(), &call(agent, "upload"), named)
        .labelled(SessionFacts::PRIVATE)
}

#[tokio::test]
async fn a_label_earned_on_one_replica_reaches_the_session_on_another() {
    let dir = tempfile::tempdir().unwrap();
    let store = Flaky::sqlite(dir.path()).await;
    let (a, b) = (replica(), replica());
    read_private(&a, "s1");
    assert!(!upload_after_private(&b, "a", Named::By("s1")), "not yet");
    a.sync(&*store, &config()).await.unwrap();
    b.sync(&*store, &config()).await.unwrap();
    assert!(upload_after_private(&b, "a", Named::By("s1")));
    // That agent's other sessions too (its trail), not another agent's.
    assert!(upload_after_private(&b, "a", Named::By("s2")));
    assert!(!upload_after_private(&b, "other", Named::By("s1")));
    // Earning it again queues only the trail's renewal, not the session's label.
    read_private(&a, "s1");
    assert_eq!(a.sharing.get().unwrap().queue.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn labels_queued_during_an_outage_are_stored_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    let store = Flaky::sqlite(dir.path()).await;
    let (a, b) = (replica(), replica());
    store.set_down(true);
    read_private(&a, "s1");
    assert!(a.sync(&*store, &config()).await.is_err());
    // The session's label and the agent's trail.
    assert_eq!(a.sharing.get().unwrap().queue.lock().unwrap().len(), 2);
    store.set_down(false);
    a.sync(&*store, &config()).await.unwrap();
    b.sync(&*store, &config()).await.unwrap();
    assert!(upload_after_private(&b, "a", Named::By("s1")));
}

#[tokio::test]
async fn a_windows_labels_are_shared_too() {
    let dir = tempfile::tempdir().unwrap();
    let store = Flaky::sqlite(dir.path()).await;
    let (a, b) = (replica(), replica());
    let facts = a.facts(&config(), &call("a", "read_file"), Named::Window);
    a.remember(&config(), &facts);
    a.sync(&*store, &config()).await.unwrap();
    b.sync(&*store, &config()).await.unwrap();
    assert!(upload_after_private(&b, "a", Named::Window));
}

/// Agent `a` calls `tool` through `sessions`, in session `name`; the facts it was judged on.
fn call_tool(sessions: &AgentSessions, name: &str, tool: &str) -> SessionFacts {
    let facts = sessions.facts(&config(), &call("a", tool), Named::By(name));
    sessions.remember(&config(), &facts);
    facts
}

fn counts(facts: &SessionFacts) -> (u64, u64, u64) {
    (facts.actions, facts.action_count, facts.resource_count)
}

#[tokio::test]
async fn counts_made_on_every_replica_add_up_after_a_tick() {
    let dir = tempfile::tempdir().unwrap();
    let store = Flaky::sqlite(dir.path()).await;
    let (a, b) = (replica(), replica());
    call_tool(&a, "s1", "read_file");
    call_tool(&a, "s1", "read_file");
    call_tool(&b, "s1", "upload");
    assert_eq!(
        counts(&call_tool(&b, "s1", "read_file")),
        (1, 1, 0),
        "not yet"
    );
    a.sync(&*store, &config()).await.unwrap();
    b.sync(&*store, &config()).await.unwrap();
    // B: its own two calls, and A's two reads.
    let facts = b.facts(&config(), &call("a", "read_file"), Named::By("s1"));
    assert_eq!(counts(&facts), (4, 4, 3));
    let facts = b.facts(&config(), &call("a", "upload"), Named::By("s1"));
    assert_eq!(counts(&facts), (4, 4, 1));
    // A learns B's at its next tick; a count is replaced, not added again.
    a.sync(&*store, &config()).await.unwrap();
    a.sync(&*store, &config()).await.unwrap();
    let facts = a.facts(&config(), &call("a", "read_file"), Named::By("s1"));
    assert_eq!(counts(&facts), (4, 4, 3));
    // Only that session of that agent.
    let other = a.facts(&config(), &call("a", "read_file"), Named::By("s2"));
    assert_eq!(counts(&other), (0, 0, 0));
    let other = a.facts(&config(), &call("b", "read_file"), Named::By("s1"));
    assert_eq!(counts(&other), (0, 0, 0));
    // Nothing new counted: nothing published.
    assert!(
        a.unpublished(a.sharing.get().unwrap(), &config(), 0)
            .is_empty()
    );
}

#[tokio::test]
async fn counts_made_during_an_outage_are_published_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    let store = Flaky::sqlite(dir.path()).await;
    let (a, b) = (replica(), replica());
    call_tool(&a, "s1", "read_file");
    a.sync(&*store, &config()).await.unwrap();
    b.sync(&*store, &config()).await.unwrap();
    store.set_down(true);
    call_tool(&a, "s1", "read_file");
    assert!(a.sync(&*store, &config()).await.is_err());
    assert!(b.sync(&*store, &config()).await.is_err());
    // B goes on with what it last read, A with its own.
    let facts = b.facts(&config(), &call("a", "read_file"), Named::By("s1"));
    assert_eq!(counts(&facts), (1, 1, 1));
    store.set_down(false);
    a.sync(&*store, &config()).await.unwrap();
    b.sync(&*store, &config()).await.unwrap();
    let facts = b.facts(&config(), &call("a", "read_file"), Named::By("s1"));
    assert_eq!(counts(&facts), (2, 2, 2));
}

#[tokio::test]
async fn a_restarted_replica_reads_the_counts_of_sessions_still_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = Flaky::sqlite(dir.path()).await;
    let a = replica();
    call_tool(&a, "s1", "read_file");
    let facts = a.facts(&config(), &call("a", "read_file"), Named::Window);
    a.remember(&config(), &facts);
    a.sync(&*store, &config()).await.unwrap();
    let restarted = replica();
    restarted.sync(&*store, &config()).await.unwrap();
    let named = restarted.facts(&config(), &call("a", "read_file"), Named::By("s1"));
    assert_eq!(counts(&named), (1, 1, 1));
    let window = restarted.facts(&config(), &call("a", "upload"), Named::Window);
    assert_eq!(counts(&window), (1, 1, 0));
}

/// Agent `agent` reads a private file through `sessions`, in session `name`, with `config`.
fn read_private_as(sessions: &AgentSessions, config: &SessionsConfig, agent: &str, name: &str) {
    let facts = sessions.facts(config, &call(agent, "read_file"), Named::By(name));
    sessions.remember(config, &facts);
}

#[tokio::test]
async fn an_agent_reading_again_and_again_cannot_crowd_anothers_label_out_of_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let store = Flaky::sqlite(dir.path()).await;
    let (a, b) = (replica(), replica());
    // Between two ticks (or while the store is away) the flooder earns its trail's label
    // again and again, more times than the queue holds.
    for _ in 0..QUEUE_MAX + 10 {
        read_private_as(&a, &config(), "flooder", "f");
    }
    read_private_as(&a, &config(), "victim", "v");
    a.sync(&*store, &config()).await.unwrap();
    b.sync(&*store, &config()).await.unwrap();
    assert!(
        upload_after_private(&b, "victim", Named::By("v")),
        "the victim's label reached the other replica"
    );
    assert!(upload_after_private(&b, "flooder", Named::By("other")));
}

#[tokio::test]
async fn an_agent_naming_many_sessions_cannot_crowd_a_trail_out_of_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let store = Flaky::sqlite(dir.path()).await;
    let (a, b) = (replica(), replica());
    store.set_down(true);
    // During an outage the flooder labels more new sessions than the queue holds.
    for i in 0..QUEUE_MAX + 10 {
        read_private_as(&a, &config(), "flooder", &format!("f{i}"));
    }
    read_private_as(&a, &config(), "victim", "v");
    assert!(a.sync(&*store, &config()).await.is_err());
    store.set_down(false);
    a.sync(&*store, &config()).await.unwrap();
    b.sync(&*store, &config()).await.unwrap();
    assert!(
        upload_after_private(&b, "victim", Named::By("elsewhere")),
        "the victim's trail reached the other replica"
    );
}

#[tokio::test]
async fn sessions_learnt_from_other_replicas_count_against_their_agents_cap() {
    let dir = tempfile::tempdir().unwrap();
    let store = Flaky::sqlite(dir.path()).await;
    let a = replica();
    let b = AgentSessions {
        epoch: std::time::Instant::now()
            .checked_sub(Duration::from_secs(100))
            .expect("up for 100 s"),
        ..AgentSessions::default()
    };
    b.share();
    let config = SessionsConfig {
        max_sessions: 20,
        max_per_agent: 3,
        ..config()
    };
    // The victim worked through replica B a minute ago: a session there, and its trail.
    read_private_as(&b, &config, "victim", "v");
    for mut session in b.sessions.iter_mut() {
        session.last -= 60;
    }
    // The flooder names many sessions through replica A, each reading something private:
    // A keeps three of them, but each one's label is stored for the other replicas.
    for i in 0..40 {
        read_private_as(&a, &config, "flooder", &format!("f{i}"));
        a.sync(&*store, &config).await.unwrap();
    }
    b.sync(&*store, &config).await.unwrap();
    let victim = b.facts(&config, &call("victim", "upload"), Named::By("v"));
    assert_eq!(victim.actions, 1, "the victim's session on B is kept");
    assert!(victim.labelled(SessionFacts::PRIVATE));
    // The flooder's own trail is held on B too (it is its agent's, not one of its sessions).
    assert!(upload_after_private(&b, "flooder", Named::By("new")));
}

#[tokio::test]
async fn an_agent_naming_many_sessions_cannot_take_every_place_for_the_others_counts() {
    let dir = tempfile::tempdir().unwrap();
    let store = Flaky::sqlite(dir.path()).await;
    let (a, b) = (replica(), replica());
    let config = SessionsConfig {
        max_sessions: 20,
        max_per_agent: 3,
        ..config()
    };
    let list = |sessions: &AgentSessions, agent: &str, name: &str| {
        let facts = sessions.facts(&config, &call(agent, "list"), Named::By(name));
        sessions.remember(&config, &facts);
        facts
    };
    // The flooder counts one action in each of forty sessions through replica A, each
    // published before A forgets it.
    for i in 0..40 {
        list(&a, "flooder", &format!("f{i}"));
        a.sync(&*store, &config).await.unwrap();
    }
    b.sync(&*store, &config).await.unwrap();
    // Then the victim counts twice in its session through A, and once through B.
    list(&a, "victim", "v");
    list(&a, "victim", "v");
    a.sync(&*store, &config).await.unwrap();
    b.sync(&*store, &config).await.unwrap();
    let on_b = list(&b, "victim", "v");
    assert_eq!(
        on_b.actions, 2,
        "B counts what A counted in the victim's session"
    );
    // The flooder's newest sessions are still counted on B, its oldest forgotten.
    let newest = b.facts(&config, &call("flooder", "list"), Named::By("f39"));
    assert_eq!(newest.actions, 1);
    let oldest = b.facts(&config, &call("flooder", "list"), Named::By("f0"));
    assert_eq!(oldest.actions, 0);
}
