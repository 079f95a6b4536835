//! Approvers' second factors, on both backends.

use super::Backend;
use crate::state::factors::{CodeAttempt, FactorRepository};

on_both_backends!(
    a_totp_step_is_accepted_once_and_only_after_the_last,
    a_confirmed_totp_enrolment_is_not_replaced_by_a_new_one,
    passkeys_are_added_once_and_their_counter_only_grows,
    the_code_brake_counts_for_every_replica_and_opens_after_its_window,
    code_attempts_sent_to_two_replicas_at_once_cannot_pass_the_brake_together,
    one_persons_names_share_one_brake,
    code_attempts_of_one_person_under_two_names_at_once_cannot_pass_the_brake_together,
    wrong_code_counts_past_their_window_are_purged,
);

/// A person's names as the brake is given them.
fn names(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

/// Counts an attempt of the person known by `who` at `now` (a window of 5 minutes, 5 tries).
async fn count(factors: &dyn FactorRepository, who: &[&str], now: i64) -> CodeAttempt {
    factors
        .count_code_attempt(&names(who), now, now - 300_000, 5)
        .await
        .unwrap()
}

async fn a_totp_step_is_accepted_once_and_only_after_the_last(backend: Backend) {
    let factors = backend.open().await.factors();
    assert_eq!(factors.totp("alice").await.unwrap(), None);
    assert!(!factors.accept_totp_step("alice", 100, true).await.unwrap());
    assert!(
        factors
            .begin_totp("alice", vec![0, 1, 2, 255])
            .await
            .unwrap()
    );
    let enrolment = factors.totp("alice").await.unwrap().unwrap();
    assert_eq!(enrolment.sealed_secret, [0, 1, 2, 255]);
    assert_eq!((enrolment.last_step, enrolment.confirmed_ms), (None, None));

    assert!(factors.accept_totp_step("alice", 100, true).await.unwrap());
    let enrolment = factors.totp("alice").await.unwrap().unwrap();
    assert_eq!(enrolment.last_step, Some(100));
    assert!(enrolment.confirmed_ms.is_some());
    // The same code again, or an older one: a replay.
    assert!(!factors.accept_totp_step("alice", 100, false).await.unwrap());
    assert!(!factors.accept_totp_step("alice", 99, false).await.unwrap());
    assert!(factors.accept_totp_step("alice", 101, false).await.unwrap());

    // Two replicas given the same code at once: one accepts it.
    let other = backend.open().await.factors();
    let (a, b) = tokio::join!(
        factors.accept_totp_step("alice", 102, false),
        other.accept_totp_step("alice", 102, false),
    );
    assert_eq!(u8::from(a.unwrap()) + u8::from(b.unwrap()), 1);

    assert!(factors.remove_totp("alice").await.unwrap());
    assert!(!factors.remove_totp("alice").await.unwrap());
    assert_eq!(factors.totp("alice").await.unwrap(), None);
}

async fn a_confirmed_totp_enrolment_is_not_replaced_by_a_new_one(backend: Backend) {
    let factors = backend.open().await.factors();
    assert!(factors.begin_totp("bob", vec![1]).await.unwrap());
    // Unconfirmed: a new enrolment replaces it.
    assert!(factors.begin_totp("bob", vec![2]).await.unwrap());
    assert_eq!(
        factors.totp("bob").await.unwrap().unwrap().sealed_secret,
        [2]
    );
    assert!(factors.accept_totp_step("bob", 7, true).await.unwrap());
    assert!(!factors.begin_totp("bob", vec![3]).await.unwrap());
    let enrolment = factors.totp("bob").await.unwrap().unwrap();
    assert_eq!(enrolment.sealed_secret, [2]);
    assert_eq!(enrolment.last_step, Some(7));
}

async fn passkeys_are_added_once_and_their_counter_only_grows(backend: Backend) {
    let factors = backend.open().await.factors();
    let id = b"\x01credential\xff".as_slice();
    assert!(
        factors
            .add_webauthn("alice", id, r#"{"cred":1}"#.into(), 0)
            .await
            .unwrap()
    );
    assert!(
        !factors
            .add_webauthn("mallory", id, r#"{"cred":2}"#.into(), 0)
            .await
            .unwrap()
    );
    assert!(
        factors
            .add_webauthn("alice", b"second", r#"{"cred":3}"#.into(), 5)
            .await
            .unwrap()
    );
    let passkeys = factors.webauthn_credentials("alice").await.unwrap();
    assert_eq!(passkeys.len(), 2);
    assert_eq!(passkeys[0].credential_id, id);
    assert_eq!(passkeys[0].last_used_ms, None);
    assert!(
        factors
            .webauthn_credentials("mallory")
            .await
            .unwrap()
            .is_empty()
    );

    // Counterless authenticators stay at 0.
    assert!(
        factors
            .use_webauthn("alice", id, r#"{"cred":1,"n":1}"#.into(), 0)
            .await
            .unwrap()
    );
    assert!(
        factors
            .use_webauthn("alice", b"second", r#"{"cred":3}"#.into(), 6)
            .await
            .unwrap()
    );
    // A counter that does not grow is a cloned authenticator.
    assert!(
        !factors
            .use_webauthn("alice", b"second", r#"{"cred":3}"#.into(), 6)
            .await
            .unwrap()
    );
    // Another user's passkey is not this user's.
    assert!(
        !factors
            .use_webauthn("mallory", id, r#"{}"#.into(), 9)
            .await
            .unwrap()
    );
    let passkeys = factors.webauthn_credentials("alice").await.unwrap();
    assert_eq!(passkeys[0].passkey, r#"{"cred":1,"n":1}"#);
    assert!(passkeys[0].last_used_ms.is_some());
    assert_eq!(passkeys[1].sign_count, 6);

    assert!(!factors.remove_webauthn("mallory", id).await.unwrap());
    assert!(factors.remove_webauthn("alice", id).await.unwrap());
    assert_eq!(
        factors.webauthn_credentials("alice").await.unwrap().len(),
        1
    );
}

async fn the_code_brake_counts_for_every_replica_and_opens_after_its_window(backend: Backend) {
    let (a, b) = (
        backend.open().await.factors(),
        backend.open().await.factors(),
    );
    let (window, t0) = (300_000, 1_000_000_000);
    let at = |t: i64| (t, t - window);
    for (i, replica) in [&a, &b, &a, &b, &a].into_iter().enumerate() {
        let (now, start) = at(t0 + i64::try_from(i).unwrap());
        assert_eq!(
            replica
                .count_code_attempt(&names(&["alice"]), now, start, 5)
                .await
                .unwrap(),
            CodeAttempt::Counted
        );
    }
    // The sixth, at either replica: refused, naming when the window began.
    for replica in [&a, &b] {
        let (now, start) = at(t0 + 10);
        assert_eq!(
            replica
                .count_code_attempt(&names(&["alice"]), now, start, 5)
                .await
                .unwrap(),
            CodeAttempt::Refused { since_ms: t0 }
        );
    }
    // Someone else is not braked by alice's codes.
    let (now, start) = at(t0 + 10);
    assert_eq!(
        b.count_code_attempt(&names(&["bob"]), now, start, 5)
            .await
            .unwrap(),
        CodeAttempt::Counted
    );
    // An attempt given back (refused for another reason) makes room for one more.
    b.give_back_code_attempt(&names(&["alice"])).await.unwrap();
    assert_eq!(
        a.count_code_attempt(&names(&["alice"]), now, start, 5)
            .await
            .unwrap(),
        CodeAttempt::Counted
    );
    assert!(matches!(
        a.count_code_attempt(&names(&["alice"]), now, start, 5)
            .await
            .unwrap(),
        CodeAttempt::Refused { .. }
    ));
    // Once the window is over, a new one begins with this attempt.
    let (now, start) = at(t0 + window);
    assert_eq!(
        b.count_code_attempt(&names(&["alice"]), now, start, 5)
            .await
            .unwrap(),
        CodeAttempt::Counted
    );
    for _ in 0..4 {
        a.count_code_attempt(&names(&["alice"]), now, start, 5)
            .await
            .unwrap();
    }
    assert_eq!(
        a.count_code_attempt(&names(&["alice"]), now, start, 5)
            .await
            .unwrap(),
        CodeAttempt::Refused { since_ms: now }
    );
    // A right code clears the count, on every replica.
    b.clear_code_attempts(&names(&["alice"])).await.unwrap();
    assert_eq!(
        a.count_code_attempt(&names(&["alice"]), now, start, 5)
            .await
            .unwrap(),
        CodeAttempt::Counted
    );
}

/// How many of 24 attempts sent at once, alternately to two replicas, the brake counted (the
/// `i`th under the names `who(i)`).
async fn counted_at_once(backend: &Backend, who: fn(usize) -> Vec<String>) -> usize {
    let replicas = [
        backend.open().await.factors(),
        backend.open().await.factors(),
    ];
    let now = 1_000_000_000;
    let tries = (0..24).map(|i| {
        let replica = replicas[i % 2].clone();
        let names = who(i);
        tokio::spawn(async move {
            replica
                .count_code_attempt(&names, now, now - 300_000, 5)
                .await
                .unwrap()
        })
    });
    futures_util::future::join_all(tries)
        .await
        .into_iter()
        .filter(|attempt| *attempt.as_ref().unwrap() == CodeAttempt::Counted)
        .count()
}

async fn code_attempts_sent_to_two_replicas_at_once_cannot_pass_the_brake_together(
    backend: Backend,
) {
    let counted = counted_at_once(&backend, |_| names(&["eve"])).await;
    assert_eq!(counted, 5, "checked and counted in one statement");
}

async fn one_persons_names_share_one_brake(backend: Backend) {
    let (console, cli) = (
        backend.open().await.factors(),
        backend.open().await.factors(),
    );
    let (now, start) = (1_000_000_000, 1_000_000_000 - 300_000);
    // dave in the console (his subject and the provider's names for him), then on the
    // command line under the one name approvals.operators gives him.
    let in_console = names(&["u-42", "dave", "dave@example.com"]);
    let on_cli = names(&["dave@example.com"]);
    for _ in 0..3 {
        let counted = console.count_code_attempt(&in_console, now, start, 5);
        assert_eq!(counted.await.unwrap(), CodeAttempt::Counted);
    }
    for _ in 0..2 {
        let counted = cli.count_code_attempt(&on_cli, now, start, 5);
        assert_eq!(counted.await.unwrap(), CodeAttempt::Counted);
    }
    // Five in all under dave@example.com: refused under any set of names that holds it.
    assert_eq!(
        console
            .count_code_attempt(&in_console, now + 1, start, 5)
            .await
            .unwrap(),
        CodeAttempt::Refused { since_ms: now }
    );
    assert!(matches!(
        cli.count_code_attempt(&on_cli, now + 1, start, 5)
            .await
            .unwrap(),
        CodeAttempt::Refused { .. }
    ));
    // A refused attempt is counted under none of the names: u-42 alone has 3.
    for _ in 0..2 {
        assert_eq!(count(&*cli, &["u-42"], now).await, CodeAttempt::Counted);
    }
    assert!(matches!(
        count(&*cli, &["u-42"], now).await,
        CodeAttempt::Refused { .. }
    ));
    // Given back and cleared under every name.
    cli.give_back_code_attempt(&in_console).await.unwrap();
    let counted = console.count_code_attempt(&in_console, now, start, 5);
    assert_eq!(counted.await.unwrap(), CodeAttempt::Counted);
    console.clear_code_attempts(&in_console).await.unwrap();
    for _ in 0..5 {
        let counted = cli.count_code_attempt(&on_cli, now, start, 5);
        assert_eq!(counted.await.unwrap(), CodeAttempt::Counted);
    }
}

async fn code_attempts_of_one_person_under_two_names_at_once_cannot_pass_the_brake_together(
    backend: Backend,
) {
    // The command line's name and the console's names, alternately, on both replicas.
    let counted = counted_at_once(&backend, |i| {
        if i % 3 == 0 {
            names(&["eve@example.com"])
        } else {
            names(&["u-9", "eve", "eve@example.com"])
        }
    })
    .await;
    assert_eq!(counted, 5, "checked and counted in one transaction");
}

async fn wrong_code_counts_past_their_window_are_purged(backend: Backend) {
    let factors = backend.open().await.factors();
    let window = 300_000;
    // mallory guessed long ago and never entered a right code; alice guessed just now.
    let long_ago = 1_000_000_000;
    let now = long_ago + 2 * window;
    for _ in 0..5 {
        assert_eq!(
            count(&*factors, &["mallory"], long_ago).await,
            CodeAttempt::Counted
        );
    }
    assert_eq!(
        count(&*factors, &["alice"], now).await,
        CodeAttempt::Counted
    );
    let other = backend.open().await.factors();
    assert_eq!(other.purge_code_attempts(now - window).await.unwrap(), 1);
    assert_eq!(other.purge_code_attempts(now - window).await.unwrap(), 0);
    // alice's count is kept: four more and she is stopped.
    for _ in 0..4 {
        assert_eq!(
            count(&*factors, &["alice"], now).await,
            CodeAttempt::Counted
        );
    }
    assert!(matches!(
        count(&*factors, &["alice"], now).await,
        CodeAttempt::Refused { .. }
    ));
    assert_eq!(other.purge_code_attempts(now - window).await.unwrap(), 0);
    assert_eq!(other.purge_code_attempts(now).await.unwrap(), 1);
}
