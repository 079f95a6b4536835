//! The schema, versioned in the binary: step N brings the database from version N-1 to N
//! (the `warden_schema` table). Never edit a released step; add the next one. The same tables
//! as SQLite's (`state/sqlite/migrations.rs`), in PostgreSQL's types.
//!
//! Every replica migrates at start: in one transaction that first takes an advisory lock, so
//! two replicas starting at once take turns and the second finds the work done.

use crate::state::error::StateError;
use crate::state::migrated::Migrated;

/// The advisory lock migrations take (an arbitrary number: "warden" in ASCII).
const MIGRATION_LOCK: i64 = 0x7761_7264_656e;

/// Every step, in order; the schema version is the number of steps applied.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: tool-definition pins, and the revision counters other processes poll.
    "CREATE TABLE tool_pins (
        server              TEXT   NOT NULL,
        tool                TEXT   NOT NULL,
        first_seen_ms       BIGINT NOT NULL,
        approved_digest     TEXT,
        approved_json       TEXT,
        approved_at_ms      BIGINT,
        approved_by         TEXT,
        pending_digest      TEXT,
        pending_json        TEXT,
        pending_since_ms    BIGINT,
        PRIMARY KEY (server, tool)
    );
    CREATE TABLE revisions (
        concern   TEXT   PRIMARY KEY,
        revision  BIGINT NOT NULL
    );
    INSERT INTO revisions (concern, revision) VALUES ('pins', 0);",
    // 2: approvals and their votes, approvers' second factors, console sessions.
    "CREATE TABLE approvals (
        id            TEXT    PRIMARY KEY,
        digest        TEXT    NOT NULL,
        principal     TEXT    NOT NULL,
        action        TEXT    NOT NULL,
        resource      TEXT    NOT NULL,
        context_json  TEXT    NOT NULL,
        policy        TEXT    NOT NULL,
        reason        TEXT    NOT NULL,
        groups_json   TEXT    NOT NULL,
        required      BIGINT  NOT NULL CHECK (required >= 1),
        created_ms    BIGINT  NOT NULL,
        expires_ms    BIGINT  NOT NULL,
        status        TEXT    NOT NULL
            CHECK (status IN ('pending', 'approved', 'denied', 'expired', 'consumed')),
        decided_ms    BIGINT
    );
    CREATE UNIQUE INDEX approvals_open_digest ON approvals (digest)
        WHERE status IN ('pending', 'approved');
    CREATE INDEX approvals_status ON approvals (status, expires_ms);
    CREATE INDEX approvals_created ON approvals (created_ms);
    CREATE TABLE approval_votes (
        approval_id   TEXT    NOT NULL REFERENCES approvals (id) ON DELETE CASCADE,
        approver      TEXT    NOT NULL,
        decision      TEXT    NOT NULL CHECK (decision IN ('approve', 'deny')),
        factor        TEXT    NOT NULL CHECK (factor IN ('totp', 'webauthn')),
        source        TEXT,
        at_ms         BIGINT  NOT NULL,
        PRIMARY KEY (approval_id, approver)
    );
    INSERT INTO revisions (concern, revision) VALUES ('approvals', 0);
    CREATE TABLE totp_enrolments (
        subject        TEXT    PRIMARY KEY,
        sealed_secret  BYTEA   NOT NULL,
        last_step      BIGINT,
        created_ms     BIGINT  NOT NULL,
        confirmed_ms   BIGINT
    );
    CREATE TABLE webauthn_credentials (
        credential_id  BYTEA   PRIMARY KEY,
        subject        TEXT    NOT NULL,
        passkey        TEXT    NOT NULL,
        sign_count     BIGINT  NOT NULL,
        created_ms     BIGINT  NOT NULL,
        last_used_ms   BIGINT
    );
    CREATE INDEX webauthn_credentials_subject ON webauthn_credentials (subject);
    CREATE TABLE console_sessions (
        id_hash        TEXT    PRIMARY KEY,
        subject        TEXT    NOT NULL,
        display_name   TEXT    NOT NULL,
        groups_json    TEXT    NOT NULL,
        csrf_hash      TEXT    NOT NULL,
        created_ms     BIGINT  NOT NULL,
        expires_ms     BIGINT  NOT NULL,
        last_seen_ms   BIGINT  NOT NULL
    );
    CREATE INDEX console_sessions_expires ON console_sessions (expires_ms);",
    // 3: the other names an approver goes by (verified e-mail, preferred username), so that an
    // agent owned by any of them is their own.
    "ALTER TABLE console_sessions ADD COLUMN aliases_json TEXT NOT NULL DEFAULT '[]';",
    // 4: canary tokens: planted credentials and documents whose appearance in traffic is a leak.
    "CREATE TABLE canaries (
        id           TEXT   NOT NULL PRIMARY KEY,
        kind         TEXT   NOT NULL,
        label        TEXT   NOT NULL,
        needles_json TEXT   NOT NULL,
        created_ms   BIGINT NOT NULL,
        revoked_ms   BIGINT
    );",
    // 5: quarantined agents and groups (fleet controls), and their revision.
    "CREATE TABLE quarantines (
        kind        TEXT    NOT NULL CHECK (kind IN ('agent', 'group')),
        name        TEXT    NOT NULL,
        reason      TEXT    NOT NULL,
        trigger     TEXT    NOT NULL,
        by          TEXT    NOT NULL,
        created_ms  BIGINT  NOT NULL,
        until_ms    BIGINT,
        PRIMARY KEY (kind, name)
    );
    INSERT INTO revisions (concern, revision) VALUES ('quarantine', 0);",
    // 6: fleet counters the replicas add up: budget spend per account and period, each
    // replica's rate-limit counts, and the labels sessions earned.
    "CREATE TABLE budget_spend (
        scope          TEXT   NOT NULL CHECK (scope IN ('agent', 'group', 'fleet')),
        name           TEXT   NOT NULL,
        period         TEXT   NOT NULL CHECK (period IN ('day', 'month')),
        period_index   BIGINT NOT NULL,
        input_tokens   BIGINT NOT NULL,
        output_tokens  BIGINT NOT NULL,
        micro_usd      BIGINT NOT NULL,
        updated_ms     BIGINT NOT NULL,
        PRIMARY KEY (scope, name, period, period_index)
    );
    CREATE TABLE rate_counts (
        replica      TEXT   NOT NULL,
        bucket       TEXT   NOT NULL,
        admitted     BIGINT NOT NULL,
        interval_ns  BIGINT NOT NULL,
        updated_ms   BIGINT NOT NULL,
        PRIMARY KEY (replica, bucket)
    );
    CREATE INDEX rate_counts_updated ON rate_counts (updated_ms);
    CREATE TABLE session_labels (
        session     TEXT   NOT NULL,
        label       TEXT   NOT NULL,
        expires_ms  BIGINT NOT NULL,
        updated_ms  BIGINT NOT NULL,
        PRIMARY KEY (session, label)
    );
    CREATE INDEX session_labels_updated ON session_labels (updated_ms);",
    // 7: each replica's per-session counts (actions, per action and per resource), and the
    // replicas seen lately (how many share a budget when the store stops answering).
    "CREATE TABLE session_counts (
        replica     TEXT   NOT NULL,
        session     TEXT   NOT NULL,
        actions     BIGINT NOT NULL,
        keys        TEXT   NOT NULL,
        expires_ms  BIGINT NOT NULL,
        updated_ms  BIGINT NOT NULL,
        PRIMARY KEY (replica, session)
    );
    CREATE INDEX session_counts_updated ON session_counts (updated_ms);
    CREATE INDEX session_counts_expires ON session_counts (expires_ms);
    CREATE TABLE fleet_replicas (
        replica  TEXT   NOT NULL PRIMARY KEY,
        seen_ms  BIGINT NOT NULL
    );",
    // 8: who put a quarantine in force is a name and the issuer that vouched for it (two
    // operators named alike at two identity providers are two people). Rows written before
    // keep their name without its prefix: `operator:<name>` was the command line's
    // (`warden-cli`), `warden` Warden's own; the admin API's `admin:<subject>` did not record
    // its issuer (`unrecorded`).
    "ALTER TABLE quarantines ADD COLUMN by_issuer TEXT NOT NULL DEFAULT 'unrecorded';
    UPDATE quarantines SET by_issuer = 'warden-cli', by = substr(by, 10) WHERE by LIKE 'operator:%';
    UPDATE quarantines SET by_issuer = 'warden' WHERE by = 'warden';
    UPDATE quarantines SET by = substr(by, 7) WHERE by LIKE 'admin:%';",
    // 9: who released a quarantine and when (kept for a week), so that every replica audits
    // the release with its operator: a quarantine is its target and when it was put in force.
    "CREATE TABLE quarantine_releases (
        kind         TEXT    NOT NULL CHECK (kind IN ('agent', 'group')),
        name         TEXT    NOT NULL,
        created_ms   BIGINT  NOT NULL,
        by           TEXT    NOT NULL,
        by_issuer    TEXT    NOT NULL,
        released_ms  BIGINT  NOT NULL,
        PRIMARY KEY (kind, name, created_ms)
    );
    CREATE INDEX quarantine_releases_released ON quarantine_releases (released_ms);",
    // 10: an open approval is one per action and terms (policy, approvers, count), no longer
    // one per action: a request under stricter terms than the open one gets its own.
    "DROP INDEX approvals_open_digest;
    CREATE UNIQUE INDEX approvals_open_terms ON approvals (digest, policy, groups_json, required)
        WHERE status IN ('pending', 'approved');",
    // 11: the wrong-code brake, shared by every replica: each approver's wrong second-factor
    // codes and when the window they are counted in began.
    "CREATE TABLE code_attempts (
        subject   TEXT   NOT NULL PRIMARY KEY,
        failures  BIGINT NOT NULL,
        since_ms  BIGINT NOT NULL
    );",
    // 12: the other names a voter goes by (the console's `sub`, preferred username, e-mail
    // address), so that one person votes once whether in the console or on the command line.
    "ALTER TABLE approval_votes ADD COLUMN names_json TEXT NOT NULL DEFAULT '[]';",
    // 13: revoked Warden agent tokens, by id (`jti`) or every token of an agent issued until
    // a time, each kept until every token it stops has expired anyway; and their revision.
    "CREATE TABLE token_revocations (
        kind        TEXT    NOT NULL CHECK (kind IN ('token', 'agent')),
        name        TEXT    NOT NULL,
        reason      TEXT    NOT NULL,
        by          TEXT    NOT NULL,
        by_issuer   TEXT    NOT NULL,
        created_ms  BIGINT  NOT NULL,
        expires_ms  BIGINT  NOT NULL,
        PRIMARY KEY (kind, name)
    );
    CREATE INDEX token_revocations_expires ON token_revocations (expires_ms);
    INSERT INTO revisions (concern, revision) VALUES ('revocations', 0);",
    // 14: a console session keeps its sign-in's access token at the SSO provider, sealed with
    // the factor key for the session's id (which the store does not hold), so that a vote can
    // ask the provider again who the approver is.
    "ALTER TABLE console_sessions ADD COLUMN sealed_idp_token BYTEA;",
    // 15: why an approval was withdrawn (the request it was for no longer exists: an MCP
    // server's request whose session ended, or which the server cancelled). Its status is
    // stored as 'expired', so that a replica of an earlier version reads it as expired.
    "ALTER TABLE approvals ADD COLUMN withdrawn TEXT;",
    // 16: the sealed sign-in tokens (now with the refresh token) are replaced when the console
    // refreshes them: `idp_token_version` counts the replacements (compare-and-swap), and
    // `idp_refreshing_until_ms` is the claim of the one replica refreshing them now, so that
    // two replicas never spend the same refresh token (a provider that rotates them ends the
    // whole sign-in when one is used twice).
    "ALTER TABLE console_sessions ADD COLUMN idp_token_version BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE console_sessions ADD COLUMN idp_refreshing_until_ms BIGINT;",
    // 17: who removed a tool pin with `warden tools forget`, and why, so that the
    // `tool_change` record each Warden writes of the removal names them.
    "CREATE TABLE tool_pin_removals (
        server         TEXT   NOT NULL,
        tool           TEXT   NOT NULL,
        removed_by     TEXT   NOT NULL,
        reason         TEXT,
        removed_at_ms  BIGINT NOT NULL,
        PRIMARY KEY (server, tool)
    );",
    // 18: the rollback floors of signed policy bundles, shared by every replica: the newest
    // time of signing (nanoseconds since the Unix epoch) any gateway loaded, for the enforced
    // set and for the shadow set, per set of trusted public keys (`trusted_keys`, their
    // fingerprint), so that deployments with keys of their own sharing a database do not
    // block each other; a gateway refuses a bundle signed before its set's floor.
    "CREATE TABLE policy_bundle_floors (
        trusted_keys  TEXT    NOT NULL,
        bundle        TEXT    NOT NULL CHECK (bundle IN ('enforced', 'shadow')),
        signed_ns     BIGINT  NOT NULL,
        raised_ms     BIGINT  NOT NULL,
        PRIMARY KEY (trusted_keys, bundle)
    );",
    // 19: the agent (a digest of it) a shared session label or count belongs to, so that a
    // replica that learns of the session counts it against that agent's sessions
    // (`sessions.max_per_agent`), not the fleet's; empty in rows of earlier versions.
    "ALTER TABLE session_labels ADD COLUMN owner TEXT NOT NULL DEFAULT '';
    ALTER TABLE session_counts ADD COLUMN owner TEXT NOT NULL DEFAULT '';",
    // 20: the rollback floors removed with `warden policy floor reset`: the floor removed,
    // who removed it, why and when, so that every Warden's audit log names the reset when it
    // next checks the floors, and so does the record of a bundle loaded below the old floor.
    "CREATE TABLE policy_bundle_floor_resets (
        id             BIGSERIAL PRIMARY KEY,
        trusted_keys   TEXT    NOT NULL,
        bundle         TEXT    NOT NULL CHECK (bundle IN ('enforced', 'shadow')),
        old_signed_ns  BIGINT  NOT NULL,
        old_raised_ms  BIGINT  NOT NULL,
        reset_by       TEXT    NOT NULL,
        reason         TEXT    NOT NULL,
        reset_at_ms    BIGINT  NOT NULL
    );",
    // 21: the signature of a floor reset (`warden policy floor reset --sign-key`), by a key of
    // `policy.bundle.public_keys`: only a signed reset lifts a gateway's own floor, so that a
    // row written into the store by hand lowers no more than the fleet's floor.
    "ALTER TABLE policy_bundle_floor_resets ADD COLUMN signature TEXT;",
    // 22: each replica's recent denies per agent, so that the quarantine trigger on denies
    // counts the fleet's denies within its window, not each replica's; and when it last fired
    // for the agent there, so that the other replicas drop their denies it counted.
    "CREATE TABLE quarantine_denies (
        replica     TEXT    NOT NULL,
        agent       TEXT    NOT NULL,
        at_ms       TEXT    NOT NULL,
        fired_ms    BIGINT  NOT NULL DEFAULT 0,
        expires_ms  BIGINT  NOT NULL,
        updated_ms  BIGINT  NOT NULL,
        PRIMARY KEY (replica, agent)
    );
    CREATE INDEX quarantine_denies_expires ON quarantine_denies (expires_ms);",
    // 23: the budget spend resets (`warden budgets reset`), written with the wipe: what was
    // reset (a scope and name, a scope, or every account when both are NULL), by whom, when,
    // and how many accounts, so that every gateway's audit log names the reset at its next
    // budget sync. Numbered in the order they were committed; kept 35 days.
    "CREATE TABLE budget_resets (
        id               BIGSERIAL PRIMARY KEY,
        scope            TEXT,
        name             TEXT,
        accounts         BIGINT  NOT NULL,
        reset_by         TEXT    NOT NULL,
        reset_by_issuer  TEXT    NOT NULL,
        reset_at_ms      BIGINT  NOT NULL
    );
    CREATE INDEX budget_resets_at ON budget_resets (reset_at_ms);",
];

/// Applies the steps the database lacks, in one transaction under the advisory lock, and logs
/// what it did once committed (from which version to which at INFO, each step at DEBUG);
/// refuses a database from a newer Warden.
pub(super) async fn migrate(
    client: &mut tokio_postgres::Client,
    database: &str,
) -> Result<Migrated, StateError> {
    let failed = |version: usize| {
        let database = database.to_owned();
        move |source| StateError::PostgresMigrate {
            database,
            version,
            source,
        }
    };
    let first = 1;
    let tx = client.transaction().await.map_err(failed(first))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(failed(first))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS warden_schema (version BIGINT NOT NULL);
         INSERT INTO warden_schema (version)
             SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM warden_schema);",
    )
    .await
    .map_err(failed(first))?;
    let found: i64 = tx
        .query_one("SELECT max(version) FROM warden_schema", &[])
        .await
        .map_err(failed(first))?
        .get(0);
    let applied = usize::try_from(found)
        .ok()
        .filter(|applied| *applied <= MIGRATIONS.len())
        .ok_or_else(|| StateError::PostgresTooNew {
            database: database.to_owned(),
            found,
            known: MIGRATIONS.len(),
        })?;
    let migrated = Migrated {
        from: applied,
        to: MIGRATIONS.len(),
    };
    if applied == MIGRATIONS.len() {
        tx.commit().await.map_err(failed(applied))?;
        migrated.log(database);
        return Ok(migrated);
    }
    for (index, step) in MIGRATIONS.iter().enumerate().skip(applied) {
        tx.batch_execute(step).await.map_err(failed(index + 1))?;
    }
    let latest = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    tx.execute("UPDATE warden_schema SET version = $1", &[&latest])
        .await
        .map_err(failed(MIGRATIONS.len()))?;
    tx.commit().await.map_err(failed(MIGRATIONS.len()))?;
    migrated.log_steps(database);
    migrated.log(database);
    Ok(migrated)
}
