//! The schema, versioned in the binary: migration N brings the file from version N-1 to N
//! (`PRAGMA user_version`). Never edit a released step; add the next one.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use crate::state::error::StateError;
use crate::state::migrated::Migrated;

/// Every step, in order; the schema version is the number of steps applied.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: tool-definition pins, and the revision counters other processes poll.
    "CREATE TABLE tool_pins (
        server              TEXT    NOT NULL,
        tool                TEXT    NOT NULL,
        first_seen_ms       INTEGER NOT NULL,
        approved_digest     TEXT,
        approved_json       TEXT,
        approved_at_ms      INTEGER,
        approved_by         TEXT,
        pending_digest      TEXT,
        pending_json        TEXT,
        pending_since_ms    INTEGER,
        PRIMARY KEY (server, tool)
    ) STRICT;
    CREATE TABLE revisions (
        concern   TEXT    PRIMARY KEY,
        revision  INTEGER NOT NULL
    ) STRICT;
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
        required      INTEGER NOT NULL CHECK (required >= 1),
        created_ms    INTEGER NOT NULL,
        expires_ms    INTEGER NOT NULL,
        status        TEXT    NOT NULL
            CHECK (status IN ('pending', 'approved', 'denied', 'expired', 'consumed')),
        decided_ms    INTEGER
    ) STRICT;
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
        at_ms         INTEGER NOT NULL,
        PRIMARY KEY (approval_id, approver)
    ) STRICT;
    INSERT INTO revisions (concern, revision) VALUES ('approvals', 0);
    CREATE TABLE totp_enrolments (
        subject        TEXT    PRIMARY KEY,
        sealed_secret  BLOB    NOT NULL,
        last_step      INTEGER,
        created_ms     INTEGER NOT NULL,
        confirmed_ms   INTEGER
    ) STRICT;
    CREATE TABLE webauthn_credentials (
        credential_id  BLOB    PRIMARY KEY,
        subject        TEXT    NOT NULL,
        passkey        TEXT    NOT NULL,
        sign_count     INTEGER NOT NULL,
        created_ms     INTEGER NOT NULL,
        last_used_ms   INTEGER
    ) STRICT;
    CREATE INDEX webauthn_credentials_subject ON webauthn_credentials (subject);
    CREATE TABLE console_sessions (
        id_hash        TEXT    PRIMARY KEY,
        subject        TEXT    NOT NULL,
        display_name   TEXT    NOT NULL,
        groups_json    TEXT    NOT NULL,
        csrf_hash      TEXT    NOT NULL,
        created_ms     INTEGER NOT NULL,
        expires_ms     INTEGER NOT NULL,
        last_seen_ms   INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX console_sessions_expires ON console_sessions (expires_ms);",
    // 3: the other names an approver goes by (verified e-mail, preferred username), so that an
    // agent owned by any of them is their own.
    "ALTER TABLE console_sessions ADD COLUMN aliases_json TEXT NOT NULL DEFAULT '[]';",
    // 4: canary tokens: planted credentials and documents whose appearance in traffic is a leak.
    "CREATE TABLE canaries (
        id           TEXT    NOT NULL PRIMARY KEY,
        kind         TEXT    NOT NULL,
        label        TEXT    NOT NULL,
        needles_json TEXT    NOT NULL,
        created_ms   INTEGER NOT NULL,
        revoked_ms   INTEGER
    ) STRICT;",
    // 5: quarantined agents and groups (fleet controls), and their revision.
    "CREATE TABLE quarantines (
        kind        TEXT    NOT NULL CHECK (kind IN ('agent', 'group')),
        name        TEXT    NOT NULL,
        reason      TEXT    NOT NULL,
        trigger     TEXT    NOT NULL,
        by          TEXT    NOT NULL,
        created_ms  INTEGER NOT NULL,
        until_ms    INTEGER,
        PRIMARY KEY (kind, name)
    ) STRICT;
    INSERT INTO revisions (concern, revision) VALUES ('quarantine', 0);",
    // 6: fleet counters the replicas add up: budget spend per account and period, each
    // replica's rate-limit counts, and the labels sessions earned.
    "CREATE TABLE budget_spend (
        scope          TEXT    NOT NULL CHECK (scope IN ('agent', 'group', 'fleet')),
        name           TEXT    NOT NULL,
        period         TEXT    NOT NULL CHECK (period IN ('day', 'month')),
        period_index   INTEGER NOT NULL,
        input_tokens   INTEGER NOT NULL,
        output_tokens  INTEGER NOT NULL,
        micro_usd      INTEGER NOT NULL,
        updated_ms     INTEGER NOT NULL,
        PRIMARY KEY (scope, name, period, period_index)
    ) STRICT;
    CREATE TABLE rate_counts (
        replica      TEXT    NOT NULL,
        bucket       TEXT    NOT NULL,
        admitted     INTEGER NOT NULL,
        interval_ns  INTEGER NOT NULL,
        updated_ms   INTEGER NOT NULL,
        PRIMARY KEY (replica, bucket)
    ) STRICT;
    CREATE INDEX rate_counts_updated ON rate_counts (updated_ms);
    CREATE TABLE session_labels (
        session     TEXT    NOT NULL,
        label       TEXT    NOT NULL,
        expires_ms  INTEGER NOT NULL,
        updated_ms  INTEGER NOT NULL,
        PRIMARY KEY (session, label)
    ) STRICT;
    CREATE INDEX session_labels_updated ON session_labels (updated_ms);",
    // 7: each replica's per-session counts (actions, per action and per resource), and the
    // replicas seen lately (how many share a budget when the store stops answering).
    "CREATE TABLE session_counts (
        replica     TEXT    NOT NULL,
        session     TEXT    NOT NULL,
        actions     INTEGER NOT NULL,
        keys        TEXT    NOT NULL,
        expires_ms  INTEGER NOT NULL,
        updated_ms  INTEGER NOT NULL,
        PRIMARY KEY (replica, session)
    ) STRICT;
    CREATE INDEX session_counts_updated ON session_counts (updated_ms);
    CREATE INDEX session_counts_expires ON session_counts (expires_ms);
    CREATE TABLE fleet_replicas (
        replica  TEXT    NOT NULL PRIMARY KEY,
        seen_ms  INTEGER NOT NULL
    ) STRICT;",
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
        created_ms   INTEGER NOT NULL,
        by           TEXT    NOT NULL,
        by_issuer    TEXT    NOT NULL,
        released_ms  INTEGER NOT NULL,
        PRIMARY KEY (kind, name, created_ms)
    ) STRICT;
    CREATE INDEX quarantine_releases_released ON quarantine_releases (released_ms);",
    // 10: an open approval is one per action and terms (policy, approvers, count), no longer
    // one per action: a request under stricter terms than the open one gets its own.
    "DROP INDEX approvals_open_digest;
    CREATE UNIQUE INDEX approvals_open_terms ON approvals (digest, policy, groups_json, required)
        WHERE status IN ('pending', 'approved');",
    // 11: the wrong-code brake, shared by every process on the store: each approver's wrong
    // second-factor codes and when the window they are counted in began.
    "CREATE TABLE code_attempts (
        subject   TEXT    NOT NULL PRIMARY KEY,
        failures  INTEGER NOT NULL,
        since_ms  INTEGER NOT NULL
    ) STRICT;",
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
        created_ms  INTEGER NOT NULL,
        expires_ms  INTEGER NOT NULL,
        PRIMARY KEY (kind, name)
    ) STRICT;
    CREATE INDEX token_revocations_expires ON token_revocations (expires_ms);
    INSERT INTO revisions (concern, revision) VALUES ('revocations', 0);",
    // 14: a console session keeps its sign-in's access token at the SSO provider, sealed with
    // the factor key for the session's id (which the store does not hold), so that a vote can
    // ask the provider again who the approver is.
    "ALTER TABLE console_sessions ADD COLUMN sealed_idp_token BLOB;",
    // 15: why an approval was withdrawn (the request it was for no longer exists: an MCP
    // server's request whose session ended, or which the server cancelled). Its status is
    // stored as 'expired', so that a replica of an earlier version reads it as expired.
    "ALTER TABLE approvals ADD COLUMN withdrawn TEXT;",
    // 16: the sealed sign-in tokens (now with the refresh token) are replaced when the console
    // refreshes them: `idp_token_version` counts the replacements (compare-and-swap), and
    // `idp_refreshing_until_ms` is the claim of the one replica refreshing them now, so that
    // two replicas never spend the same refresh token (a provider that rotates them ends the
    // whole sign-in when one is used twice).
    "ALTER TABLE console_sessions ADD COLUMN idp_token_version INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE console_sessions ADD COLUMN idp_refreshing_until_ms INTEGER;",
    // 17: who removed a tool pin with `warden tools forget`, and why, so that the
    // `tool_change` record each Warden writes of the removal names them.
    "CREATE TABLE tool_pin_removals (
        server         TEXT    NOT NULL,
        tool           TEXT    NOT NULL,
        removed_by     TEXT    NOT NULL,
        reason         TEXT,
        removed_at_ms  INTEGER NOT NULL,
        PRIMARY KEY (server, tool)
    ) STRICT;",
    // 18: the rollback floors of signed policy bundles, shared by every replica: the newest
    // time of signing (nanoseconds since the Unix epoch) any gateway loaded, for the enforced
    // set and for the shadow set, per set of trusted public keys (`trusted_keys`, their
    // fingerprint), so that deployments with keys of their own sharing a database do not
    // block each other; a gateway refuses a bundle signed before its set's floor.
    "CREATE TABLE policy_bundle_floors (
        trusted_keys  TEXT    NOT NULL,
        bundle        TEXT    NOT NULL CHECK (bundle IN ('enforced', 'shadow')),
        signed_ns     INTEGER NOT NULL,
        raised_ms     INTEGER NOT NULL,
        PRIMARY KEY (trusted_keys, bundle)
    ) STRICT;",
    // 19: the agent (a digest of it) a shared session label or count belongs to, so that a
    // replica that learns of the session counts it against that agent's sessions
    // (`sessions.max_per_agent`), not the fleet's; empty in rows of earlier versions.
    "ALTER TABLE session_labels ADD COLUMN owner TEXT NOT NULL DEFAULT '';
    ALTER TABLE session_counts ADD COLUMN owner TEXT NOT NULL DEFAULT '';",
    // 20: the rollback floors removed with `warden policy floor reset`: the floor removed,
    // who removed it, why and when, so that every Warden's audit log names the reset when it
    // next checks the floors, and so does the record of a bundle loaded below the old floor.
    "CREATE TABLE policy_bundle_floor_resets (
        id             INTEGER PRIMARY KEY AUTOINCREMENT,
        trusted_keys   TEXT    NOT NULL,
        bundle         TEXT    NOT NULL CHECK (bundle IN ('enforced', 'shadow')),
        old_signed_ns  INTEGER NOT NULL,
        old_raised_ms  INTEGER NOT NULL,
        reset_by       TEXT    NOT NULL,
        reason         TEXT    NOT NULL,
        reset_at_ms    INTEGER NOT NULL
    ) STRICT;",
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
        fired_ms    INTEGER NOT NULL DEFAULT 0,
        expires_ms  INTEGER NOT NULL,
        updated_ms  INTEGER NOT NULL,
        PRIMARY KEY (replica, agent)
    ) STRICT;
    CREATE INDEX quarantine_denies_expires ON quarantine_denies (expires_ms);",
    // 23: the budget spend resets (`warden budgets reset`), written with the wipe: what was
    // reset (a scope and name, a scope, or every account when both are NULL), by whom, when,
    // and how many accounts, so that every gateway's audit log names the reset at its next
    // budget sync. Numbered in the order they were committed; kept 35 days.
    "CREATE TABLE budget_resets (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        scope            TEXT,
        name             TEXT,
        accounts         INTEGER NOT NULL,
        reset_by         TEXT    NOT NULL,
        reset_by_issuer  TEXT    NOT NULL,
        reset_at_ms      INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX budget_resets_at ON budget_resets (reset_at_ms);",
];

/// Applies the steps the file lacks, each in its own transaction with its version, logging
/// each at DEBUG once committed and, at the end, from which version to which (or that there was
/// nothing to apply) at INFO, also when a step fails after others were committed; refuses a
/// file from a newer Warden. Two processes opening one file at once: the write lock taken
/// before reading the version makes the second see the first's work.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<Migrated, StateError> {
    let store = path.display().to_string();
    let mut migrated: Option<Migrated> = None;
    loop {
        match apply_next(conn, path) {
            Ok(Next::Applied { from }) => {
                Migrated { from, to: from + 1 }.log_steps(&store);
                migrated.get_or_insert(Migrated { from, to: from }).to = from + 1;
            }
            Ok(Next::Current(at)) => {
                let migrated = Migrated {
                    from: migrated.map_or(at, |m| m.from),
                    to: at,
                };
                migrated.log(&store);
                return Ok(migrated);
            }
            Err(error) => {
                if let Some(migrated) = migrated {
                    migrated.log(&store);
                }
                return Err(error);
            }
        }
    }
}

/// What [`apply_next`] did.
enum Next {
    /// Applied the step from version `from`.
    Applied { from: usize },
    /// Nothing: the file is at this version, the latest.
    Current(usize),
}

/// Applies the step after the file's version, in one transaction with its version.
fn apply_next(conn: &mut Connection, path: &Path) -> Result<Next, StateError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|source| StateError::Open {
            path: path.to_path_buf(),
            source,
        })?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|source| StateError::Open {
            path: path.to_path_buf(),
            source,
        })?;
    let at = usize::try_from(version)
        .ok()
        .filter(|at| *at <= MIGRATIONS.len())
        .ok_or_else(|| too_new(path, version))?;
    let Some(step) = MIGRATIONS.get(at) else {
        return Ok(Next::Current(at));
    };
    let next = at + 1;
    let failed = |source| StateError::Migrate {
        path: path.to_path_buf(),
        version: next,
        source,
    };
    tx.execute_batch(step).map_err(failed)?;
    tx.execute_batch(&format!("PRAGMA user_version = {next}"))
        .map_err(failed)?;
    tx.commit().map_err(failed)?;
    Ok(Next::Applied { from: at })
}

fn too_new(path: &Path, found: i64) -> StateError {
    StateError::TooNew {
        path: path.to_path_buf(),
        found,
        known: MIGRATIONS.len(),
    }
}
