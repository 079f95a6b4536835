//! Approvers' second factors, on both backends.

use super::Backend;

on_both_backends!(
    a_totp_step_is_accepted_once_and_only_after_the_last,
    a_confirmed_totp_enrolment_is_not_replaced_by_a_new_one,
    passkeys_are_added_once_and_their_counter_only_grows,
);

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
