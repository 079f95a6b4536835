//! `audit:` configuration.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Default size at which a segment is closed and the next one started: 128 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 128 * 1024 * 1024;

/// Default `audit.signing.checkpoint_records`.
pub const DEFAULT_CHECKPOINT_RECORDS: u64 = 1000;

/// Default `audit.signing.checkpoint_interval`: 10 s.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);

/// Default `audit.segment_max_age`: a day.
pub const DEFAULT_SEGMENT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Default `audit.flush_interval`: 10 ms.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(10);

/// When a decision record counts as recorded, so that its request may go on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// The record is on disk (its commit's `fdatasync` returned): a lost machine loses no
    /// forwarded request's record.
    #[default]
    Disk,
    /// The record is handed to the operating system (written to the segment file): a killed
    /// Warden loses nothing; a flush follows within `flush_interval`, so a lost machine loses
    /// at most the records of that window.
    Process,
}

/// `audit:` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Directory of the audit log. Default: `<data_dir>/audit`.
    pub dir: Option<PathBuf>,
    /// When a decision record counts as recorded: on disk (`disk`, the default) or handed to
    /// the operating system (`process`).
    pub durability: Durability,
    /// `process` durability: a flush to disk starts at most this long after a record is
    /// written.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Segment size limit in bytes: the log continues in a new `audit-NNNNNN.jsonl` file
    /// before a record would take the current one past it.
    pub segment_bytes: u64,
    /// Record request content (prompts, tool arguments) in decision records.
    pub record_content: bool,
    /// Record in each decision record the facts policy judged (`facts`), for `warden policy
    /// replay` and `warden policy explain --decision`.
    pub decision_facts: bool,
    /// Bound of a decision record's `facts` in bytes of JSON; larger facts are left out
    /// (`facts_omitted: too large`).
    pub decision_facts_max_bytes: usize,
    /// Refuse requests when the audit log cannot be written (fail closed).
    pub fail_closed: bool,
    /// A segment older than this is closed (with a checkpoint) and the log continues in a new
    /// one, however small it is.
    #[serde(with = "humantime_serde")]
    pub segment_max_age: Duration,
    /// The audit key: signed checkpoints and decision receipts.
    pub signing: SigningConfig,
    /// Answer every decided request with `x-warden-receipt`, a signed receipt of its decision.
    pub receipts: bool,
    /// When closed segments are deleted, and what happens when the log reaches its bound.
    pub retention: RetentionConfig,
    /// The replica id every record carries (`replica`): a name or `{ env: NAME }`. Default:
    /// the host name (`HOSTNAME`, else the system's), which in Kubernetes is the pod's name.
    pub replica_id: Option<super::replica::ReplicaIdSource>,
    /// How refusals of callers who were never identified are recorded (folded per source).
    pub unauthenticated: UnauthenticatedConfig,
    /// How an identified agent's refusals before any decision are recorded (folded per agent).
    pub refusals: RefusalsConfig,
}

/// `audit.refusals:` an identified agent's refusals before any decision is made (quarantined,
/// rate limited, a body that could not be read): per agent and refusal code, the first
/// `per_agent` of each `audit.unauthenticated.interval` are recorded one by one, the rest
/// counted into one summary record, so that an agent cannot fill the log with requests it
/// knows are refused. Its decisions (allowed, denied, held) are never folded.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RefusalsConfig {
    /// Refusals recorded one by one per agent and code in each interval.
    pub per_agent: u32,
}

impl Default for RefusalsConfig {
    fn default() -> Self {
        RefusalsConfig { per_agent: 20 }
    }
}

/// `audit.unauthenticated:` refusals of callers who were never identified (no route, no or a
/// bad credential, an admin call without an operator's token, a console sign-in without its
/// cookie). Per source (an IPv4 address, an IPv6 /64) and refusal code, the first
/// `per_source` of each `interval` are recorded one by one, and no more than `max_records`
/// of all sources together; the rest are counted, and one summary record per source and code
/// says how many were left out, so such a flood cannot fill the log. Decisions about
/// identified callers are never folded.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct UnauthenticatedConfig {
    /// Refusals recorded one by one per source and code in each interval.
    pub per_source: u32,
    /// Refusals recorded one by one in each interval, all sources together; beyond it every
    /// refusal is counted into its source's summary.
    pub max_records: u32,
    /// The interval.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Sources (with their code) tracked in one interval; refusals from further sources are
    /// folded into one count for all of them.
    pub max_sources: usize,
    /// The prefix length an IPv6 source is counted by: its addresses are one source (a host
    /// rotating through its /64 costs nothing).
    pub ipv6_prefix: u8,
    /// The prefix length an IPv4 source is counted by (an IPv4-mapped IPv6 address is read as
    /// IPv4).
    pub ipv4_prefix: u8,
}

impl Default for UnauthenticatedConfig {
    fn default() -> Self {
        UnauthenticatedConfig {
            per_source: 20,
            max_records: 1000,
            interval: Duration::from_secs(10),
            max_sources: 10_000,
            ipv6_prefix: 64,
            ipv4_prefix: 32,
        }
    }
}

/// What happens when the log reaches `audit.retention.max_bytes` and no segment can be
/// deleted because a SIEM sink has not acknowledged it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Decisions fail closed: requests are refused (503 `audit_full`) until a sink catches up
    /// and retention can delete; nothing unshipped is deleted.
    #[default]
    Refuse,
    /// The oldest segments are deleted even though a sink has not received them; the
    /// retention record names, per sink, the records it will never receive.
    DeleteUnshipped,
}

/// `audit.retention:` which closed segments are deleted. A segment is deleted only once every
/// configured SIEM sink has acknowledged all of it (its cursor is past it), and only after a
/// signed `retention` record naming what goes is on disk, so `warden audit verify` accepts a
/// log whose beginning retention removed, and nothing else.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Delete closed segments whose last record is older than this. Default: never.
    #[serde(with = "humantime_serde")]
    pub max_age: Option<Duration>,
    /// Keep the log's segment files under this many bytes, deleting the oldest closed ones.
    /// Default: no bound (the file system's free space is the bound; a full disk fails
    /// commits, and `fail_closed` refuses requests).
    pub max_bytes: Option<u64>,
    /// At `max_bytes` with nothing deletable: `refuse` (the default) or `delete_unshipped`.
    pub when_full: WhenFull,
}

/// `audit.signing:` the key that signs checkpoints and receipts, and how often checkpoints
/// are written.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SigningConfig {
    /// The key (PKCS#8 PEM, Ed25519). Default: `<data_dir>/keys/audit-signing.pem`, created
    /// at first start.
    pub key_file: Option<PathBuf>,
    /// The key's PEM from a secret source instead (env, file, Vault).
    pub key: Option<crate::secrets::CredentialSource>,
    /// Retired audit keys (PEM files: the public key, or the old key file itself; each its
    /// path, or `{ path, until }`), published beside the signing key at
    /// `/.well-known/warden-audit-keys.json` (before their `until`) so that checkpoints and
    /// receipts they signed still verify with it; never signed with.
    pub previous_keys: Vec<crate::keys::PreviousKey>,
    /// A checkpoint after at most this many records.
    pub checkpoint_records: u64,
    /// A checkpoint at most this long after the first record it covers.
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
}

impl Default for SigningConfig {
    fn default() -> Self {
        SigningConfig {
            key_file: None,
            key: None,
            previous_keys: Vec::new(),
            checkpoint_records: DEFAULT_CHECKPOINT_RECORDS,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
        }
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            dir: None,
            durability: Durability::Disk,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            record_content: false,
            decision_facts: true,
            decision_facts_max_bytes: 8 * 1024,
            fail_closed: true,
            segment_max_age: DEFAULT_SEGMENT_MAX_AGE,
            signing: SigningConfig::default(),
            receipts: true,
            retention: RetentionConfig::default(),
            replica_id: None,
            unauthenticated: UnauthenticatedConfig::default(),
            refusals: RefusalsConfig::default(),
        }
    }
}
