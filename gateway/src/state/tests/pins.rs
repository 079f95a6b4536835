//! Tool-definition pins, on both backends.

use super::Backend;
use crate::state::pins::{ApproveOutcome, Approver, REMOVAL_KEPT_MS, Removal, StoredDefinition};

on_both_backends!(
    a_new_store_starts_at_revision_zero,
    pins_survive_a_reopen,
    first_use_pins_once_and_later_definitions_wait_for_approval,
    approving_moves_the_pending_definition_only_if_it_is_the_one_expected,
    an_operator_approval_confirms_a_first_use_pin,
    a_configured_approval_clears_the_same_pending_definition_only,
    every_change_bumps_the_revision_another_handle_reads,
    concurrent_writers_on_two_handles_record_a_change_once,
    a_pin_is_replaced_under_another_name_or_removed_once,
    a_forgotten_pin_says_who_removed_it_and_why,
    a_pin_written_again_no_longer_names_who_removed_the_old_one,
);

fn definition(digest: &str) -> StoredDefinition {
    StoredDefinition {
        digest: format!("sha256:{digest}"),
        json: format!(r#"{{"description":"{digest}","name":"t"}}"#),
        at_ms: 1_790_000_000_000,
    }
}

async fn a_new_store_starts_at_revision_zero(backend: Backend) {
    let store = backend.open().await.pins();
    assert_eq!(store.revision().await.unwrap(), 0);
    assert!(store.all().await.unwrap().is_empty());
}

async fn pins_survive_a_reopen(backend: Backend) {
    {
        let store = backend.open().await.pins();
        store
            .pin_first_use("fs", "read_file", definition("a"))
            .await
            .unwrap();
    }
    // The first handle is gone; another process (or replica) opens the same store.
    let again = backend.open().await.pins();
    let pins = again.all().await.unwrap();
    assert_eq!(pins.len(), 1);
    assert_eq!(pins[0].tool, "read_file");
    assert_eq!(
        pins[0]
            .approved
            .as_ref()
            .map(|(d, by)| (d.digest.as_str(), by)),
        Some(("sha256:a", &Approver::FirstUse))
    );
}

async fn first_use_pins_once_and_later_definitions_wait_for_approval(backend: Backend) {
    let store = backend.open().await.pins();
    let (pin, created) = store
        .pin_first_use("fs", "t", definition("a"))
        .await
        .unwrap();
    assert!(created);
    assert_eq!(pin.approved.unwrap().0.digest, "sha256:a");
    // A second first use (another replica racing) keeps the first pin.
    let (pin, created) = store
        .pin_first_use("fs", "t", definition("b"))
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(pin.approved.unwrap().0.digest, "sha256:a");

    let (pin, recorded) = store.propose("fs", "t", definition("b")).await.unwrap();
    assert!(recorded);
    assert_eq!(pin.pending.unwrap().digest, "sha256:b");
    // The same change seen again is not news; the approved definition is never pending.
    assert!(!store.propose("fs", "t", definition("b")).await.unwrap().1);
    assert!(!store.propose("fs", "t", definition("a")).await.unwrap().1);
    // A tool never seen before waits, with nothing approved.
    let (pin, recorded) = store.propose("fs", "new", definition("c")).await.unwrap();
    assert!(recorded);
    assert_eq!(pin.approved, None);
    assert_eq!(pin.pending.unwrap().digest, "sha256:c");
}

async fn approving_moves_the_pending_definition_only_if_it_is_the_one_expected(backend: Backend) {
    let store = backend.open().await.pins();
    store
        .pin_first_use("fs", "t", definition("a"))
        .await
        .unwrap();
    store.propose("fs", "t", definition("b")).await.unwrap();
    let alice = Approver::Operator("alice".into());

    let outcome = store
        .approve_pending("fs", "t", Some("sha256:zzz"), alice.clone())
        .await
        .unwrap();
    assert!(matches!(outcome, ApproveOutcome::DigestMismatch(_)));

    let ApproveOutcome::Approved(pin) = store
        .approve_pending("fs", "t", Some("sha256:b"), alice.clone())
        .await
        .unwrap()
    else {
        panic!("not approved")
    };
    assert_eq!(pin.pending, None);
    let (approved, by) = pin.approved.unwrap();
    assert_eq!((approved.digest.as_str(), by), ("sha256:b", alice.clone()));

    assert!(matches!(
        store
            .approve_pending("fs", "t", None, alice.clone())
            .await
            .unwrap(),
        ApproveOutcome::AlreadyApproved(_)
    ));
    assert_eq!(
        store
            .approve_pending("fs", "nope", None, alice)
            .await
            .unwrap(),
        ApproveOutcome::Unknown
    );
}

async fn an_operator_approval_confirms_a_first_use_pin(backend: Backend) {
    let store = backend.open().await.pins();
    store
        .pin_first_use("fs", "t", definition("a"))
        .await
        .unwrap();
    let bob = Approver::Operator("bob".into());
    let ApproveOutcome::Approved(pin) = store
        .approve_pending("fs", "t", None, bob.clone())
        .await
        .unwrap()
    else {
        panic!("not approved")
    };
    let (approved, by) = pin.approved.unwrap();
    assert_eq!((approved.digest.as_str(), by), ("sha256:a", bob));
}

async fn a_configured_approval_clears_the_same_pending_definition_only(backend: Backend) {
    let store = backend.open().await.pins();
    store.propose("fs", "t", definition("a")).await.unwrap();
    let pin = store
        .approve_definition("fs", "t", definition("a"), Approver::Configuration)
        .await
        .unwrap();
    assert_eq!(pin.pending, None);
    store.propose("fs", "t", definition("b")).await.unwrap();
    let pin = store
        .approve_definition("fs", "t", definition("c"), Approver::Configuration)
        .await
        .unwrap();
    assert_eq!(pin.approved.unwrap().0.digest, "sha256:c");
    assert_eq!(pin.pending.unwrap().digest, "sha256:b");
}

async fn every_change_bumps_the_revision_another_handle_reads(backend: Backend) {
    let writer = backend.open().await.pins();
    let reader = backend.open().await.pins();
    let before = reader.revision().await.unwrap();
    writer
        .pin_first_use("fs", "t", definition("a"))
        .await
        .unwrap();
    let after_pin = reader.revision().await.unwrap();
    assert!(after_pin > before);
    // Nothing changed: the revision stays.
    writer.propose("fs", "t", definition("a")).await.unwrap();
    assert_eq!(reader.revision().await.unwrap(), after_pin);
    writer.propose("fs", "t", definition("b")).await.unwrap();
    assert!(reader.revision().await.unwrap() > after_pin);
}

async fn concurrent_writers_on_two_handles_record_a_change_once(backend: Backend) {
    let first = backend.open().await.pins();
    let second = backend.open().await.pins();
    first
        .pin_first_use("fs", "t", definition("a"))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = if i % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        tasks.push(tokio::spawn(async move {
            store.propose("fs", "t", definition("b")).await.unwrap().1
        }));
    }
    let mut recorded = 0;
    for task in tasks {
        recorded += usize::from(task.await.unwrap());
    }
    assert_eq!(recorded, 1, "exactly one writer records the change");
    // And many tools at once, from both handles: every one is there afterwards.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = if i % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        tasks.push(tokio::spawn(async move {
            store
                .pin_first_use("fs", &format!("tool{i}"), definition("a"))
                .await
                .unwrap()
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(first.all().await.unwrap().len(), 21);
}

async fn a_pin_is_replaced_under_another_name_or_removed_once(backend: Backend) {
    let store = backend.open().await.pins();
    for tool in ["resource:old", "resource:gone", "resource:taken"] {
        store
            .approve_definition(
                "fs",
                tool,
                definition("a"),
                Approver::Operator("alice".into()),
            )
            .await
            .unwrap();
    }
    let before = store.revision().await.unwrap();
    let mut moved = store.get("fs", "resource:old").await.unwrap().unwrap();
    moved.tool = "resource:new".into();
    moved.approved.as_mut().unwrap().0 = definition("b");
    assert!(
        store
            .replace("fs", "resource:old", Some(moved))
            .await
            .unwrap()
    );
    assert!(store.revision().await.unwrap() > before);
    let new = store.get("fs", "resource:new").await.unwrap().unwrap();
    assert_eq!(
        new.approved.as_ref().map(|(d, by)| (d.digest.as_str(), by)),
        Some(("sha256:b", &Approver::Operator("alice".into())))
    );
    assert_eq!(store.get("fs", "resource:old").await.unwrap(), None);
    // Removed; and a second replace of the same pin (another replica's) changes nothing.
    assert!(store.replace("fs", "resource:gone", None).await.unwrap());
    let after = store.revision().await.unwrap();
    assert!(!store.replace("fs", "resource:gone", None).await.unwrap());
    assert_eq!(store.revision().await.unwrap(), after);
    // Onto a name that has a pin: that pin stays as it is.
    let mut onto = store.get("fs", "resource:new").await.unwrap().unwrap();
    onto.tool = "resource:taken".into();
    onto.approved.as_mut().unwrap().0 = definition("c");
    assert!(
        store
            .replace("fs", "resource:new", Some(onto))
            .await
            .unwrap()
    );
    let taken = store.get("fs", "resource:taken").await.unwrap().unwrap();
    assert_eq!(taken.approved.unwrap().0.digest, "sha256:a");
    assert_eq!(store.all().await.unwrap().len(), 1);
}

async fn a_forgotten_pin_says_who_removed_it_and_why(backend: Backend) {
    let store = backend.open().await.pins();
    for tool in ["add", "sub"] {
        store
            .pin_first_use("calc", tool, definition("a"))
            .await
            .unwrap();
    }
    let now = 1_790_000_000_000;
    let alice = Removal {
        by: "alice".into(),
        reason: Some("server retired".into()),
        at_ms: now,
    };
    let before = store.revision().await.unwrap();
    assert!(store.forget("calc", "add", &alice).await.unwrap());
    assert!(store.revision().await.unwrap() > before);
    assert_eq!(store.get("calc", "add").await.unwrap(), None);
    // Another handle (another replica) reads who removed it.
    let other = backend.open().await.pins();
    assert_eq!(
        other.forgotten_by("calc", "add").await.unwrap(),
        Some(alice.clone())
    );
    // A pin that is not there is not removed, and nothing is recorded.
    assert!(!store.forget("calc", "gone", &alice).await.unwrap());
    assert_eq!(store.forgotten_by("calc", "gone").await.unwrap(), None);
    // Pinned and removed again, by bob without a reason, a week and more later: his removal
    // replaces alice's, and what is older than a week is tidied away.
    store
        .pin_first_use("calc", "add", definition("b"))
        .await
        .unwrap();
    let bob = Removal {
        by: "bob".into(),
        reason: None,
        at_ms: now + REMOVAL_KEPT_MS + 1,
    };
    let carol = Removal {
        by: "carol".into(),
        reason: None,
        at_ms: now,
    };
    assert!(store.forget("calc", "sub", &carol).await.unwrap());
    assert!(store.forget("calc", "add", &bob).await.unwrap());
    assert_eq!(store.forgotten_by("calc", "add").await.unwrap(), Some(bob));
    assert_eq!(store.forgotten_by("calc", "sub").await.unwrap(), None);
}

async fn a_pin_written_again_no_longer_names_who_removed_the_old_one(backend: Backend) {
    let store = backend.open().await.pins();
    let alice = Removal {
        by: "alice".into(),
        reason: Some("server retired".into()),
        at_ms: 1_790_000_000_000,
    };
    // Each way a pin is written anew: pinned on first use, a definition waiting for
    // approval, an operator's approval.
    for tool in ["first-use", "proposed", "approved"] {
        store
            .pin_first_use("calc", tool, definition("a"))
            .await
            .unwrap();
        assert!(store.forget("calc", tool, &alice).await.unwrap());
        assert_eq!(
            store.forgotten_by("calc", tool).await.unwrap(),
            Some(alice.clone())
        );
        match tool {
            "first-use" => {
                store
                    .pin_first_use("calc", tool, definition("b"))
                    .await
                    .unwrap();
            }
            "proposed" => {
                store.propose("calc", tool, definition("b")).await.unwrap();
            }
            _ => {
                store
                    .approve_definition(
                        "calc",
                        tool,
                        definition("b"),
                        Approver::Operator("bob".into()),
                    )
                    .await
                    .unwrap();
            }
        }
        // A later removal of the new pin (by a re-key, say) is not alice's.
        assert_eq!(
            store.forgotten_by("calc", tool).await.unwrap(),
            None,
            "{tool}"
        );
    }
}
