//! Two replicas' sessions on one store: a label earned through one is seen by the other after
//! a tick; labels queued during an outage are stored afterwards.

use super::super::Named;
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
    let facts = sessions.facts(&config(), &call("a", "read_file"), Named::By(name));
    sessions.remember(&config(), &facts);
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
    // Only that session of that agent.
    assert!(!upload_after_private(&b, "a", Named::By("s2")));
    assert!(!upload_after_private(&b, "other", Named::By("s1")));
    // Earning it again queues nothing new.
    read_private(&a, "s1");
    assert!(a.sharing.get().unwrap().queue.lock().unwrap().is_empty());
}

#[tokio::test]
async fn labels_queued_during_an_outage_are_stored_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    let store = Flaky::sqlite(dir.path()).await;
    let (a, b) = (replica(), replica());
    store.set_down(true);
    read_private(&a, "s1");
    assert!(a.sync(&*store, &config()).await.is_err());
    assert_eq!(a.sharing.get().unwrap().queue.lock().unwrap().len(), 1);
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
