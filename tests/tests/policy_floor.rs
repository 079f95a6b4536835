//! `warden policy floor`: an operator lists the fleet's rollback floors of signed bundles and
//! resets one on purpose to go back to an older bundle. A reset needs a reason, a dry run
//! changes nothing, and the reset is recorded with who and why: the running Warden names it
//! in its audit log at its next reload (once). An unsigned reset, or a row forged in the
//! store, lowers only the fleet's floor: the gateway keeps its own and refuses the older
//! bundle. A reset signed with a trusted key lifts its own floor: it loads the older bundle
//! and names the reset in the reload's record; a restart then keeps the older bundle. A store that
//! does not answer is named without its password.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use warden_e2e::fake_llm::FakeLlm;
use warden_e2e::warden::{Warden, WardenBuilder, bundle_keygen, cli, run_bounded};

const WAIT: Duration = Duration::from_secs(30);

/// What the record of a signed reset says of the gateway's own floor.
const OWN_FLOOR_LIFTED: &str = "signed: own floor lifted if at or below the old floor";

/// Runs `warden <args>` (no configuration): its exit status, stdout and stderr.
async fn warden(args: &[&str]) -> (bool, String, String) {
    cli(args, WAIT).await
}

/// `warden policy floor ARGS… --config <w's>`: its exit status, stdout and stderr.
async fn floor(w: &Warden, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["policy", "floor"];
    all.extend_from_slice(args);
    let out = w.cli(&all).await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `warden policy floor show --json`.
async fn show(w: &Warden) -> Value {
    let (ok, out, err) = floor(w, &["show", "--json"]).await;
    assert!(ok, "{out}{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn reload_applied(r: &Value) -> bool {
    r["detail"]["event"] == "reload" && r["detail"]["result"] == "applied"
}

fn reset_record(r: &Value) -> bool {
    r["kind"] == "system" && r["detail"]["event"] == "policy_floor_reset"
}

fn rollback_refused(r: &Value) -> bool {
    r["detail"]["event"] == "reload"
        && r["detail"]["result"] == "refused"
        && r["reasons"]
            .to_string()
            .contains("an older bundle put back is refused")
}

/// Waits (bounded) until `w`'s audit log holds `count` records `pred` matches.
async fn wait_count(w: &Warden, count: usize, pred: impl Fn(&Value) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let records = w.audit_records();
        if records.iter().filter(|r| pred(r)).count() >= count {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "fewer than {count} matching records among {} after {WAIT:?}",
            records.len()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn an_operator_resets_a_floor_and_the_older_bundle_loads_with_the_reset_named() {
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = bundle_keygen(keys.path()).await;
    let fake = FakeLlm::start().await.unwrap();
    let setup = WardenBuilder::new(&fake)
        .set("/policy/bundle/public_keys", json!([public]))
        .write()
        .unwrap();
    let policy_dir = setup.policy_dir.clone();
    let sign = async |dir: &Path| {
        let (ok, out, err) =
            warden(&["policy", "bundle", dir.to_str().unwrap(), "--sign", &key]).await;
        assert!(ok, "{out}{err}");
    };

    // Bundle A, kept aside; then bundle B (a forbid more), signed later, loaded on reload.
    sign(&policy_dir).await;
    let kept = keys.path().join("bundle-a");
    std::fs::create_dir(&kept).unwrap();
    for file in ["bundle.manifest", "bundle.sig"] {
        std::fs::copy(policy_dir.join(file), kept.join(file)).unwrap();
    }
    let mut w = setup.spawn().unwrap();
    w.wait_ready(WAIT).await.unwrap();
    let started = w
        .wait_for_audit(WAIT, |r| r["detail"]["event"] == "start")
        .await
        .unwrap();
    let version_a = started["detail"]["policy_version"].clone();
    w.write_policy("e2e-forbid.cedar", warden_e2e::stack::FORBID_GPT41)
        .unwrap();
    sign(&policy_dir).await;
    let kept_b = keys.path().join("bundle-b");
    std::fs::create_dir(&kept_b).unwrap();
    for file in ["bundle.manifest", "bundle.sig"] {
        std::fs::copy(policy_dir.join(file), kept_b.join(file)).unwrap();
    }
    w.signal(libc::SIGHUP).unwrap();
    w.wait_for_audit(WAIT, |r| {
        reload_applied(r) && r["detail"]["policy_version"] != version_a
    })
    .await
    .unwrap();

    // show: B's floor, as a table and as JSON.
    let shown = show(&w).await;
    let floors = shown["floors"].as_array().unwrap();
    assert_eq!(floors.len(), 1, "{shown}");
    assert_eq!(floors[0]["set"], "enforced", "{shown}");
    let fingerprint = floors[0]["trusted_keys"].as_str().unwrap().to_owned();
    let floor_b = floors[0]["signed_ns"].as_i64().unwrap();
    assert!(shown["resets"].as_array().unwrap().is_empty(), "{shown}");
    let (ok, table, err) = floor(&w, &["show"]).await;
    assert!(ok, "{err}");
    assert!(
        table.contains("enforced") && table.contains(&fingerprint),
        "{table}"
    );

    // Refused without a reason; a dry run says what would go and changes nothing.
    let (ok, out, err) = floor(&w, &["reset", "--set", "enforced", "--as", "alice"]).await;
    assert!(!ok, "{out}");
    assert!(err.contains("--reason is required"), "{err}");
    let (ok, out, err) = floor(&w, &["reset", "--set", "enforced", "--dry-run"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("would reset the enforced floor"), "{out}");
    assert_eq!(show(&w).await["floors"], shown["floors"]);

    // A put back: refused as a rollback while the floor stands.
    let put_back = |dir: &Path| {
        let _ = std::fs::remove_file(policy_dir.join("e2e-forbid.cedar"));
        for file in ["bundle.manifest", "bundle.sig"] {
            std::fs::copy(dir.join(file), policy_dir.join(file)).unwrap();
        }
    };
    put_back(&kept);
    w.signal(libc::SIGHUP).unwrap();
    wait_count(&w, 1, rollback_refused).await;

    // An unsigned reset, and a row written into the store by hand that claims to remove a
    // floor at the end of time: the fleet's floor goes, but this gateway's own stays.
    let (ok, out, err) = floor(
        &w,
        &[
            "reset",
            "--set",
            "enforced",
            "--as",
            "bob",
            "--reason",
            "unsigned try",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("unsigned (no --sign-key)"), "{out}");
    let forged = format!(
        "INSERT INTO policy_bundle_floor_resets (trusted_keys, bundle, old_signed_ns, \
         old_raised_ms, reset_by, reason, reset_at_ms, signature) VALUES ('{fingerprint}', \
         'enforced', {}, 0, 'mallory', 'forged', 1, \
         '{{\"alg\":\"Ed25519\",\"kid\":\"x\",\"signature\":\"AAAA\"}}')",
        i64::MAX
    );
    let db = w.setup.data_dir.join("state.db");
    let mut cmd = tokio::process::Command::new("sqlite3");
    cmd.arg(&db).arg(&forged);
    let out = run_bounded(cmd, WAIT).await.unwrap();
    assert!(out.status.success(), "{out:?}");
    w.signal(libc::SIGHUP).unwrap();
    wait_count(&w, 2, rollback_refused).await;
    for reason in ["unsigned try", "forged"] {
        let named = w
            .wait_for_audit(WAIT, |r| reset_record(r) && r["detail"]["reason"] == reason)
            .await
            .unwrap();
        assert_eq!(named["detail"]["signed"], false, "{named}");
        assert_eq!(
            named["detail"]["own_floor"], "unsigned: own floor kept",
            "{named}"
        );
    }

    // B back, and a restart that raises the fleet's floor to B again.
    std::fs::copy(
        kept_b.join("bundle.manifest"),
        policy_dir.join("bundle.manifest"),
    )
    .unwrap();
    std::fs::copy(kept_b.join("bundle.sig"), policy_dir.join("bundle.sig")).unwrap();
    w.write_policy("e2e-forbid.cedar", warden_e2e::stack::FORBID_GPT41)
        .unwrap();
    let setup = w.stop_and_take_setup().await;
    let mut w = setup.spawn().unwrap();
    w.wait_ready(WAIT).await.unwrap();
    assert_eq!(show(&w).await["floors"][0]["signed_ns"], floor_b);
    put_back(&kept);

    // A reset signed with a key the gateways do not trust is refused, and changes nothing.
    let stranger = keys.path().join("stranger.pem");
    let (ok, out, err) = warden(&["policy", "keygen", stranger.to_str().unwrap()]).await;
    assert!(ok, "{out}{err}");
    let (ok, out, err) = floor(
        &w,
        &[
            "reset",
            "--set",
            "enforced",
            "--reason",
            "stranger",
            "--sign-key",
            stranger.to_str().unwrap(),
        ],
    )
    .await;
    assert!(!ok, "{out}");
    assert!(
        err.contains("not one of policy.bundle.public_keys"),
        "{err}"
    );
    assert_eq!(show(&w).await["floors"][0]["signed_ns"], floor_b);

    // The reset, recorded with who and why.
    let (ok, out, err) = floor(
        &w,
        &[
            "reset",
            "--set",
            "enforced",
            "--keys",
            &fingerprint,
            "--as",
            "alice",
            "--reason",
            "withdraw bundle B",
            "--sign-key",
            &key,
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("reset the enforced floor"), "{out}");
    assert!(out.contains("signed: each lifts its own floor"), "{out}");
    let shown = show(&w).await;
    assert!(shown["floors"].as_array().unwrap().is_empty(), "{shown}");
    let resets = shown["resets"].as_array().unwrap();
    assert_eq!(resets.len(), 3, "{shown}");
    assert_eq!(resets[2]["reset_by"], "alice", "{shown}");
    assert_eq!(resets[2]["reason"], "withdraw bundle B", "{shown}");
    assert_eq!(resets[2]["signed"], true, "{shown}");

    // The next reload names the reset, loads A and names the reset it loaded below.
    w.signal(libc::SIGHUP).unwrap();
    let named = w
        .wait_for_audit(WAIT, |r| {
            reset_record(r) && r["detail"]["reset_by"] == "alice"
        })
        .await
        .unwrap();
    assert_eq!(named["detail"]["own_floor"], OWN_FLOOR_LIFTED, "{named}");
    assert_eq!(named["detail"]["reason"], "withdraw bundle B", "{named}");
    assert_eq!(named["detail"]["set"], "enforced", "{named}");
    let applied = w
        .wait_for_audit(WAIT, |r| {
            reload_applied(r) && r["detail"]["policy_version"] == version_a
        })
        .await
        .unwrap();
    let below = &applied["detail"]["floor_resets"][0];
    assert_eq!(below["reset_by"], "alice", "{applied}");
    assert_eq!(below["reason"], "withdraw bundle B", "{applied}");
    // The fleet's floor is A's now.
    let floors = show(&w).await["floors"].clone();
    assert!(
        floors[0]["signed_ns"].as_i64().unwrap() < floor_b,
        "{floors}"
    );

    // A restart keeps A (this gateway's own floor went down with the reset), and does not
    // name the reset again.
    let setup = w.stop_and_take_setup().await;
    let mut w = setup.spawn().unwrap();
    w.wait_ready(WAIT).await.unwrap();
    let starts = |w: &Warden| {
        w.audit_records()
            .into_iter()
            .filter(|r| r["detail"]["event"] == "start")
            .count()
    };
    assert_eq!(starts(&w), 3, "{:?}", w.audit_records());
    assert_eq!(
        w.audit_records().iter().filter(|r| reset_record(r)).count(),
        3
    );
}

#[tokio::test]
async fn a_store_that_does_not_answer_is_named_without_its_password() {
    let fake = FakeLlm::start().await.unwrap();
    let setup = WardenBuilder::new(&fake)
        .replica_of("postgres://warden:floor-s3cret@127.0.0.1:1/warden", None)
        .write()
        .unwrap();
    for args in [
        &["policy", "floor", "show"][..],
        &[
            "policy", "floor", "reset", "--set", "enforced", "--keys", "sha256:x", "--reason", "r",
        ],
    ] {
        let mut cmd = setup.command();
        cmd.args(args).arg("--config").arg(&setup.config_path);
        let out = run_bounded(cmd, WAIT).await.unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains("127.0.0.1:1"), "{err}");
        assert!(!err.contains("floor-s3cret"), "{err}");
    }
}
