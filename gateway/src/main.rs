//! The `warden` command line.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use warden::config::Config;
use warden::config::error::ConfigErrors;
use warden::config::files::check_files;
use warden::config::load::{Parsed, load_file, load_file_partial};
use warden::snapshot::CredentialFault;

// std's printing macros, except that a reader of stdout or stderr that has gone ends the
// command quietly by SIGPIPE instead of a panic (cli_out.rs); defined before the modules so
// that every command's module uses them.
macro_rules! print {
    ($($arg:tt)*) => { crate::cli_out::print(format_args!($($arg)*)) };
}
macro_rules! println {
    () => { crate::cli_out::print(format_args!("\n")) };
    ($($arg:tt)*) => { crate::cli_out::print(format_args!("{}\n", format_args!($($arg)*))) };
}
macro_rules! eprint {
    ($($arg:tt)*) => { crate::cli_out::eprint(format_args!($($arg)*)) };
}
macro_rules! eprintln {
    () => { crate::cli_out::eprint(format_args!("\n")) };
    ($($arg:tt)*) => { crate::cli_out::eprint(format_args!("{}\n", format_args!($($arg)*))) };
}

mod cli_agents;
mod cli_approvals;
mod cli_budgets;
mod cli_canary;
mod cli_egress;
mod cli_floor;
mod cli_keys;
mod cli_out;
mod cli_policy;
mod cli_state;
mod cli_tokens;

/// Warden: a security gateway for AI agent fleets.
///
/// Agents send their LLM traffic through Warden, which authenticates them, judges every call
/// with Cedar policies, injects the provider credential the agent never sees, and records
/// every decision in a tamper-evident audit log.
#[derive(Parser)]
#[command(
    name = "warden",
    version = warden::build_info::VERSION_LINE,
    about,
    long_about,
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway. Without --config: proxy on 127.0.0.1:8080, admin on 127.0.0.1:9090,
    /// state and audit log under ./warden-data, policies from ./policies.
    Serve {
        /// Configuration file (YAML). See docs/configuration.md.
        #[arg(short, long, env = "WARDEN_CONFIG")]
        config: Option<PathBuf>,
        /// Start although the audit log names an audit or agent-token key this Warden neither
        /// holds nor lists in previous_keys (a restore without keys/): go on with the new
        /// keys; the start record says so. Without it, such a start is refused.
        #[arg(long, env = "WARDEN_ACCEPT_NEW_KEYS")]
        accept_new_keys: bool,
    },
    /// Validate a configuration file, its connectors and its policies; report every mistake
    /// with file, line and key.
    Check {
        /// Configuration file to check (without one, the embedded defaults are checked).
        #[arg(short, long, env = "WARDEN_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Validate and test Cedar policies.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Inspect the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Check decision receipts (`x-warden-receipt`).
    Receipt {
        #[command(subcommand)]
        command: ReceiptCommand,
    },
    /// Issue agent tokens signed by Warden's own key (for setups without an IdP), revoke
    /// them, list the revocations.
    Token {
        #[command(subcommand)]
        command: cli_tokens::TokenCommand,
    },
    /// Work with connector files (REST APIs described for Warden).
    Connector {
        #[command(subcommand)]
        command: ConnectorCommand,
    },
    /// Review and approve the tool definitions MCP servers offer (tool pinning, in the state
    /// store of the configuration). A running Warden picks approvals up within
    /// pins.refresh_interval.
    Tools {
        #[command(subcommand)]
        command: ToolsCommand,
    },
    /// Decide pending approvals from the command line (a TOTP code of your own enrolment
    /// confirms each decision); the gateways holding the requests see it at once.
    Approvals {
        #[command(subcommand)]
        command: cli_approvals::ApprovalsCommand,
    },
    /// Enrol approvers' second factor for the command line.
    Approvers {
        #[command(subcommand)]
        command: cli_approvals::ApproversCommand,
    },
    /// Issue, list and revoke canary tokens: planted credentials and documents whose
    /// appearance in outbound traffic is denied, recorded and alerted.
    Canary {
        #[command(subcommand)]
        command: cli_canary::CanaryCommand,
    },
    /// The egress proxy: the CA certificate agents trust for intercepted hosts.
    Egress {
        #[command(subcommand)]
        command: cli_egress::EgressCommand,
    },
    /// Quarantine agents or groups (refused at once on every gateway sharing the state
    /// store), release them, list them.
    Agents {
        #[command(subcommand)]
        command: cli_agents::AgentsCommand,
    },
    /// What agents, groups and the fleet spent this day and month against their budgets, as
    /// every gateway sharing the state store recorded it; reset an account's spend.
    Budgets {
        #[command(subcommand)]
        command: cli_budgets::BudgetsCommand,
    },
    /// The state store: bring its schema up to date ahead of a rollout.
    State {
        #[command(subcommand)]
        command: cli_state::StateCommand,
    },
    /// Warden's own signing keys: print a key file's public half (what a key rotation keeps in
    /// previous_keys).
    Keys {
        #[command(subcommand)]
        command: cli_keys::KeysCommand,
    },
}

#[derive(Subcommand)]
enum ConnectorCommand {
    /// Generate a REST connector from an OpenAPI 3.0 or 3.1 description (JSON or YAML): one
    /// action per operation, named from its operationId, path parameters as attributes.
    ImportOpenapi {
        /// The OpenAPI description file.
        spec: PathBuf,
        /// Connector name, the namespace of its actions (`github` → `github:issues.create`).
        /// Default: from the description's title.
        #[arg(long)]
        name: Option<String>,
        /// Upstream base URL. Default: the description's first server.
        #[arg(long)]
        base_url: Option<String>,
        /// Path parameters (and fields) the API takes in any case (`owner,repo`): lower-cased
        /// before policy judges them and sent so (the connector's `fold_case:`).
        #[arg(long, value_delimiter = ',')]
        fold_case: Vec<String>,
        /// Write the connector here instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ToolsCommand {
    /// List the pinned definitions (tools; prompts, resources and resource templates as
    /// `prompt:NAME`, `resource:URI`, `resource-template:URI_TEMPLATE`; a server's
    /// `(instructions)`): state (trusted, changed, unapproved), digests, when first seen, who
    /// approved, and what the hidden-instruction detectors found.
    List {
        /// Only this MCP server's tools.
        #[arg(long)]
        server: Option<String>,
        /// Configuration file the gateway runs with: the command acts on its state store
        /// (`state`, else `<data_dir>/state.db`). Relative paths in it are taken from the working
        /// directory.
        #[arg(short, long, env = "WARDEN_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Approve the definitions that wait for approval (a changed definition, a new tool in
    /// `approved` mode, or one trusted only on first use).
    Approve {
        /// The MCP server.
        server: String,
        /// The tools to approve, by pinned name (`add`, `prompt:summarize`,
        /// `resource:file:///readme.md`, `(instructions)`).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        tools: Vec<String>,
        /// Approve every tool of the server that waits.
        #[arg(long)]
        all: bool,
        /// Approve only if the waiting definition has this digest (as `list` and `diff` show
        /// it), so that nothing offered since is approved unseen. With one TOOL.
        #[arg(long)]
        digest: Option<String>,
        /// Configuration file the gateway runs with: the command acts on its state store
        /// (`state`, else `<data_dir>/state.db`). Relative paths in it are taken from the working
        /// directory.
        #[arg(short, long, env = "WARDEN_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Show what changed: a diff from the approved definition to the one waiting, and the
    /// detectors' findings in it.
    Diff {
        /// The MCP server.
        server: String,
        /// The tool, by pinned name (`add`, `prompt:summarize`, `resource:URI`).
        tool: String,
        /// Configuration file the gateway runs with: the command acts on its state store
        /// (`state`, else `<data_dir>/state.db`). Relative paths in it are taken from the working
        /// directory.
        #[arg(short, long, env = "WARDEN_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Drop pins from the state store: every pin of a server (--all), some by pinned name, or
    /// the masked resource pins keyed under another factor key id (--key-id: a retired key's,
    /// or pins past the per-server cap). A dropped tool is pinned again when next listed
    /// (`tofu`), or waits for an operator's approval (`approved`). Each running Warden on the
    /// store records every pin that leaves it (a `tool_change` record, `change: removed`),
    /// naming who dropped it and why (`removed_by`, `reason`), as the store keeps them.
    Forget {
        /// The MCP server.
        server: String,
        /// The pins to drop, by pinned name (`add`, `prompt:summarize`, `resource:URI`).
        #[arg(required_unless_present_any = ["all", "key_id"], conflicts_with_all = ["all", "key_id"])]
        tools: Vec<String>,
        /// Drop every pin of the server.
        #[arg(long, conflicts_with = "key_id")]
        all: bool,
        /// Drop the server's masked resource and template pins keyed under this factor key id
        /// (the 8 hex digits after `uri hmac` in `warden tools list`), never this Warden's own.
        #[arg(long, value_name = "KEY_ID")]
        key_id: Option<String>,
        /// Only list what would be dropped.
        #[arg(long)]
        dry_run: bool,
        /// Why, as the audit records of the removal say.
        #[arg(long)]
        reason: Option<String>,
        /// Who drops them, as recorded (default: $USER, else $LOGNAME).
        #[arg(long = "as", value_name = "NAME")]
        operator: Option<String>,
        /// Configuration file the gateway runs with: the command acts on its state store
        /// (`state`, else `<data_dir>/state.db`). Relative paths in it are taken from the working
        /// directory.
        #[arg(short, long, env = "WARDEN_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Parse every policy and validate it against the schema.
    Validate {
        /// Policy directory (schema.cedarschema, schema fragments and *.cedar files).
        #[arg(default_value = "policies")]
        dir: PathBuf,
        /// Configuration file: the actions of the REST connectors its routes use are declared.
        #[arg(short, long, env = "WARDEN_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Run the decision cases in DIR/tests/*.yaml; exits non-zero on any mismatch.
    Test {
        /// Policy directory; its cases are in DIR/tests/*.yaml (and *.yml).
        #[arg(default_value = "policies")]
        dir: PathBuf,
        /// Configuration file: the actions of the REST connectors its routes use are declared.
        #[arg(short, long, env = "WARDEN_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Explain a decision: the decision, the policies that determined it with their @reason,
    /// and for every other policy why it did not apply (scope, condition false, error).
    Explain {
        /// Policy directory.
        #[arg(default_value = "policies")]
        dir: PathBuf,
        /// Who asks: `Agent::"ci-bot"`, `User::"alice"`, a bare agent id, or a test case's
        /// principal with attributes: `{ id: ci-bot, fleet: ci, owner: alice, groups: [ci] }`.
        #[arg(long, required_unless_present = "decision")]
        principal: Option<String>,
        /// The Cedar action, e.g. `llm:chat`, `mcp:call_tool`, `github:issues.create`.
        #[arg(long, required_unless_present = "decision")]
        action: Option<String>,
        /// On what: `Model::"openai/gpt-4o"`, `Tool::"github/create_issue"`, `Host::"pypi.org"`,
        /// ... or a test case's resource: `{ server: github, tool: create_issue }`.
        #[arg(long, required_unless_present = "decision")]
        resource: Option<String>,
        /// Instead of --principal/--action/--resource: explain a recorded decision, by its id
        /// (the `decision_id` of its audit record, shown to agents in refusals), from the facts
        /// its record carries (`audit.decision_facts`). Needs --audit.
        #[arg(long, value_name = "ID", requires = "audit", conflicts_with_all = ["principal", "action", "resource", "context"])]
        decision: Option<String>,
        /// The audit directory holding the decision record (with --decision).
        #[arg(long, value_name = "DIR")]
        audit: Option<PathBuf>,
        /// A YAML or JSON file with the request's context, as a test case writes it
        /// (`arguments`, `findings`, `time`, `source_ip`, `max_tokens`, ...); the time is now
        /// when it names none.
        #[arg(long, value_name = "FILE")]
        context: Option<PathBuf>,
        /// Configuration file: the actions of the REST connectors its routes use are declared.
        #[arg(short, long, env = "WARDEN_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Judge the decisions recorded in an audit log again with the policies in DIR (a
    /// candidate set) and print what would change (allow-to-deny, deny-to-allow,
    /// approval-added, approval-removed), grouped by policy and agent, with counts and
    /// example request ids. Decision records carry the facts policy judged
    /// (`audit.decision_facts`); records without them are counted as skipped.
    Replay {
        /// The candidate policy directory (or --policies DIR).
        #[arg(value_name = "DIR", required_unless_present = "policies_flag")]
        policies: Option<PathBuf>,
        /// The candidate policy directory, as a flag.
        #[arg(long = "policies", value_name = "DIR", conflicts_with = "policies")]
        policies_flag: Option<PathBuf>,
        /// The audit directory to replay.
        #[arg(long, value_name = "DIR")]
        audit: PathBuf,
        /// Decisions from this time on (RFC 3339, e.g. 2026-12-01T00:00:00Z; or 1h).
        #[arg(long, value_parser = parse_time)]
        since: Option<std::time::SystemTime>,
        /// Decisions before this time (RFC 3339, or a duration back from now).
        #[arg(long, value_parser = parse_time)]
        until: Option<std::time::SystemTime>,
        /// Exit with status 1 when a change of this kind is found: allow-to-deny,
        /// deny-to-allow, approval-added, approval-removed or any. Repeatable.
        #[arg(long = "fail-on", value_name = "CHANGE")]
        fail_on: Vec<String>,
        /// Configuration file: the actions of the REST connectors its routes use are declared.
        #[arg(short, long, env = "WARDEN_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Make DIR a signed bundle: write DIR/bundle.manifest (the SHA-256 of every policy and
    /// schema file) and DIR/bundle.sig (its Ed25519 signature). With
    /// `policy.bundle.public_keys` configured, Warden loads only a bundle signed by one of them.
    Bundle {
        /// Policy directory.
        dir: PathBuf,
        /// The Ed25519 private key (PKCS#8 PEM) to sign with (`warden policy keygen`).
        #[arg(long, value_name = "KEY")]
        sign: PathBuf,
    },
    /// Create an Ed25519 key pair for signing policy bundles: KEY (private, PKCS#8 PEM, mode
    /// 0600) and KEY.pub (public, SPKI PEM, for `policy.bundle.public_keys`).
    Keygen {
        /// Where to write the private key; refused if it exists.
        key: PathBuf,
    },
    /// The fleet's rollback floors of signed bundles in the state store: list them, or remove
    /// one on purpose (recorded, and named in every Warden's audit log).
    Floor {
        #[command(subcommand)]
        command: cli_floor::FloorCommand,
    },
    /// Write a Cedar schema fragment that types the arguments of an MCP server's tools
    /// (`context.arguments` of `mcp:call_tool`), so policies on arguments are checked at load.
    /// Put the fragment in the policy directory beside schema.cedarschema.
    Schema {
        /// The server: a URL (MCP Streamable HTTP: initialize, then tools/list page by page),
        /// or a file holding its tools/list result or a JSON array of tools.
        #[arg(long, value_name = "URL|FILE")]
        from_mcp: String,
        /// The server's name in Warden's configuration (`Tool::"<server>/<tool>"`). Default:
        /// the file's name without extension, or the name the server gives itself.
        #[arg(long)]
        server: Option<String>,
        /// A header sent with every request to a URL, `Name: value` (e.g.
        /// `Authorization: Bearer ...`). Repeatable.
        #[arg(long = "header", value_name = "NAME: VALUE")]
        headers: Vec<String>,
        /// Allow reaching the URL's server at an address that is not globally reachable
        /// (loopback, private, link-local...): an address or network (`127.0.0.1`,
        /// `10.0.0.0/8`), a host name (`mcp.internal`) or a domain (`*.svc.cluster.local`), as
        /// `upstream.allow_private` takes. Repeatable. Without it such an address is refused,
        /// also when written in the URL; `localhost` may be loopback.
        #[arg(long = "allow-private", value_name = "ADDRESS|NETWORK|HOST")]
        allow_private: Vec<String>,
        /// Write the fragment to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ReceiptCommand {
    /// Verify a receipt with the audit public key and print what it says: the signature of
    /// its batch's signed head, and that its claims are in that batch (their inclusion proof
    /// reaches the signed root); with --audit, also check that the decision record it names
    /// says the same. Each way a receipt fails is named (docs/audit.md#receipts).
    Verify {
        /// The receipt (the `x-warden-receipt` header's value), or - to read it from stdin.
        receipt: String,
        #[command(flatten)]
        keys: AuditKeyArgs,
        /// The audit directory holding the decision record.
        #[arg(long, value_name = "DIR")]
        audit: Option<PathBuf>,
    },
}

/// The audit public key(s) signatures are checked with.
#[derive(clap::Args)]
struct AuditKeyArgs {
    /// The audit public key: a PEM public key, or the private key file itself
    /// (`<data_dir>/keys/audit-signing.pem`, whose public half is used). Repeatable: a log
    /// signed before and after a key rotation verifies with the old key and the new.
    #[arg(long, value_name = "FILE")]
    key: Vec<PathBuf>,
    /// The audit keys as a JWK Set: a file, or a URL such as
    /// http://127.0.0.1:9090/.well-known/warden-audit-keys.json.
    #[arg(long, value_name = "FILE|URL")]
    jwks: Option<String>,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify the hash chain and the signed checkpoints; name the first record that was
    /// edited, deleted, reordered, truncated or forged, report records no checkpoint covers,
    /// and exit non-zero if there is a bad one.
    Verify {
        #[command(flatten)]
        dir: AuditDir,
        #[command(flatten)]
        keys: AuditKeyArgs,
        /// Fail unless every record is covered by a checkpoint whose signature verifies
        /// (needs --key or --jwks), and unless the last run ended with its stop record (or a
        /// process is writing the log: then only its records of the last --live-window may
        /// be unsigned).
        #[arg(long)]
        require_signed: bool,
        /// With --require-signed, accept the unsigned tail of a run that ended without its
        /// stop record (Warden killed or crashed before its next checkpoint); it is reported.
        /// Check it against the SIEM's copy first (--against-siem).
        #[arg(long)]
        accept_unsigned_crash_tail: bool,
        /// With --require-signed on a log a process is writing: how old its records after the
        /// last checkpoint may be (audit.signing.checkpoint_interval plus slack).
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
        live_window: std::time::Duration,
        /// A head kept off this host, SEQ:HASH (what an earlier verify printed, or a shipped
        /// checkpoint's detail.to:detail.hash): fail unless the log still holds record SEQ
        /// with that hash. Repeatable. Detects a log cut back to any record before it.
        #[arg(long = "head", value_name = "SEQ:HASH")]
        heads: Vec<warden::audit::Anchor>,
        #[command(flatten)]
        siem: AgainstSiem,
    },
    /// Print the last records, one JSON object a line; with --follow, new ones as they are
    /// written.
    Tail {
        #[command(flatten)]
        dir: AuditDir,
        /// How many of the last records to print first.
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: usize,
        /// Keep printing records as they are written, until interrupted.
        #[arg(short, long)]
        follow: bool,
        /// raw (as written), ecs (Elastic Common Schema 8) or ocsf (OCSF API Activity).
        #[arg(long, value_enum, default_value = "raw")]
        format: warden::audit::shape::Shape,
    },
    /// Print the records written in a time range, in a SIEM's shape, one JSON object a line
    /// (to load into a SIEM, or to hand to an auditor).
    Export {
        #[command(flatten)]
        dir: AuditDir,
        /// From this time on: RFC 3339 (2026-12-01T00:00:00Z), a date, or a duration back
        /// from now (1h: the last hour).
        #[arg(long, value_parser = parse_time)]
        since: Option<std::time::SystemTime>,
        /// Before this time: RFC 3339, a date, or a duration back from now.
        #[arg(long, value_parser = parse_time)]
        until: Option<std::time::SystemTime>,
        /// raw, ecs or ocsf.
        #[arg(long, value_enum, default_value = "ecs")]
        format: warden::audit::shape::Shape,
    },
    /// Print the records that match every filter given.
    Search {
        #[command(flatten)]
        dir: AuditDir,
        /// The principal's id (an agent's, or an approver's).
        #[arg(long)]
        agent: Option<String>,
        /// The Cedar action (llm:chat, mcp:call_tool, github:issues.create, ...).
        #[arg(long)]
        action: Option<String>,
        /// A decision (allow, deny, approval_required) or a record kind (decision, outcome,
        /// rejected, system, tool_change, checkpoint, retention).
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(SEARCH_DECISIONS))]
        decision: Option<String>,
        /// From this time on: RFC 3339, a date, or a duration back from now (1h: the last
        /// hour).
        #[arg(long, value_parser = parse_time)]
        since: Option<std::time::SystemTime>,
        /// Before this time: RFC 3339, a date, or a duration back from now.
        #[arg(long, value_parser = parse_time)]
        until: Option<std::time::SystemTime>,
        /// raw, ecs or ocsf.
        #[arg(long, value_enum, default_value = "raw")]
        format: warden::audit::shape::Shape,
    },
}

/// `warden audit verify --against-siem`: compare the local log with what a SIEM received.
#[derive(clap::Args)]
struct AgainstSiem {
    /// Also compare the checkpoints (and the newest record) an Elasticsearch/OpenSearch sink
    /// holds with the local log: a sink's name from --config, or a cluster's URL (data stream
    /// logs-warden-default, ECS). Exits non-zero when the local log lacks or differs from
    /// what was shipped.
    #[arg(long, value_name = "SINK|URL")]
    against_siem: Option<String>,
}

/// What `warden audit search --decision` matches: a record's decision or its kind.
const SEARCH_DECISIONS: [&str; 10] = [
    "allow",
    "deny",
    "approval_required",
    "decision",
    "outcome",
    "rejected",
    "system",
    "tool_change",
    "checkpoint",
    "retention",
];

/// The audit directory a `warden audit` command reads: DIR, else the configuration's.
#[derive(clap::Args)]
struct AuditDir {
    /// Audit directory (default: the configuration's audit.dir, else <data_dir>/audit; without
    /// a configuration, ./warden-data/audit).
    dir: Option<PathBuf>,
    /// Configuration file: its audit directory (and, for `verify`, the SIEM sinks
    /// --against-siem names).
    #[arg(short, long, env = "WARDEN_CONFIG")]
    config: Option<PathBuf>,
}

impl AuditDir {
    /// DIR when given, else the configuration's audit directory.
    fn resolve(&self) -> Result<PathBuf> {
        Ok(match (&self.dir, &self.config) {
            (Some(dir), _) => dir.clone(),
            (None, Some(path)) => warden::server::audit_dir(&load(Some(path))?),
            (None, None) => warden::server::audit_dir(&Config::default()),
        })
    }

    /// [`Self::resolve`], refused with one clear message when there is no log there.
    fn existing(&self) -> Result<PathBuf> {
        let dir = self.resolve()?;
        if !dir.is_dir() {
            bail!(
                "no audit log in {}: the directory does not exist (pass the audit directory, or \
                 --config for its audit.dir; a relative one is taken from the working directory)",
                warden::config::workdir::FromWorkdir(&dir)
            );
        }
        Ok(dir)
    }
}

/// An RFC 3339 time (`2026-12-01T00:00:00Z`; a date alone is midnight UTC).
/// A time as an operator gives it: RFC 3339 (`2026-12-01T09:00:00Z`), a date (its midnight,
/// UTC), or a duration back from now (`1h`, `30m`, `2d`: the last hour in an incident).
fn parse_time(text: &str) -> Result<std::time::SystemTime, String> {
    if text.starts_with(|c: char| c.is_ascii_digit())
        && let Ok(ago) = humantime::parse_duration(text)
    {
        return std::time::SystemTime::now()
            .checked_sub(ago)
            .ok_or_else(|| format!("{text:?} reaches before 1970"));
    }
    humantime::parse_rfc3339_weak(text)
        .or_else(|_| humantime::parse_rfc3339_weak(&format!("{text}T00:00:00Z")))
        .map_err(|e| {
            format!(
                "{text:?} is neither an RFC 3339 time (2026-12-01T00:00:00Z), a date \
                 (2026-12-01) nor a duration back from now (1h, 30m): {e}"
            )
        })
}

/// `warden policy schema --from-mcp`: reads the tools (from a file or a server), writes the
/// fragment, and tells on standard error what it could not type precisely.
fn schema_from_mcp(
    source: &str,
    server: Option<String>,
    (headers, allow_private): (&[String], &[String]),
    output: Option<&Path>,
) -> Result<ExitCode> {
    use warden::policy::{from_mcp, tools_list};
    use warden::upstream::address_guard::PrivateAllowance;
    let is_url = source.starts_with("http://") || source.starts_with("https://");
    let (tools, own_name) = if is_url {
        let allow_private = allow_private
            .iter()
            .map(|entry| PrivateAllowance::try_from(entry.clone()))
            .collect::<Result<Vec<_>, _>>()
            .context("--allow-private")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let listed = runtime
            .block_on(tools_list::fetch(source, headers, &allow_private))
            .with_context(|| format!("cannot list the tools of {source}"))?;
        (listed.tools, listed.server_name)
    } else {
        if !headers.is_empty() {
            bail!("--header applies to a URL only; {source} is read as a file");
        }
        if !allow_private.is_empty() {
            bail!("--allow-private applies to a URL only; {source} is read as a file");
        }
        let text =
            std::fs::read_to_string(source).with_context(|| format!("cannot read {source}"))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{source} is not JSON"))?;
        let tools = from_mcp::tools_of(&json)
            .with_context(|| source.to_owned())?
            .to_vec();
        let stem = Path::new(source)
            .file_stem()
            .and_then(|s| s.to_str())
            .map(str::to_owned);
        (tools, stem)
    };
    let server = match server.or(own_name) {
        Some(name) if !name.is_empty() && !name.contains('/') => name,
        Some(name) => bail!(
            "`{name}` cannot be a server name (Tool ids are `<server>/<tool>`): name the server \
             as Warden's configuration does with --server"
        ),
        None => bail!("name the server as Warden's configuration does with --server"),
    };
    let fragment = from_mcp::fragment(&server, &tools, source)?;
    for note in &fragment.notes {
        eprintln!("note: {note}");
    }
    match output {
        Some(path) => {
            std::fs::write(path, &fragment.text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "{}: the arguments of {} tools of MCP server `{server}`",
                path.display(),
                tools.len()
            );
        }
        None => print!("{}", fragment.text),
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("warden: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Serve {
            config,
            accept_new_keys,
        } => serve(config, accept_new_keys),
        Command::Check { config } => check(config.as_deref()),
        Command::Policy {
            command: PolicyCommand::Validate { dir, config },
        } => with_connector_note(config.as_deref(), || {
            let fragments = connector_actions(config.as_deref())?;
            let engine = warden::policy::PolicyEngine::load_with(&dir, &fragments)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            for warning in engine.warnings() {
                // The warning says it is one ("FILE:LINE:COL: warning: ...").
                eprintln!("{warning}");
            }
            println!(
                "{}: {} policies valid against the schema",
                dir.display(),
                engine.policy_count()
            );
            Ok(ExitCode::SUCCESS)
        }),
        Command::Policy {
            command: PolicyCommand::Test { dir, config },
        } => with_connector_note(config.as_deref(), || {
            let fragments = connector_actions(config.as_deref())?;
            let report = warden::policy::testing::run_tests_with(&dir, &fragments)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{report}");
            Ok(if report.failed() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }),
        Command::Policy {
            command:
                PolicyCommand::Explain {
                    dir,
                    principal,
                    action,
                    resource,
                    context,
                    decision,
                    audit,
                    config,
                },
        } => with_connector_note(config.as_deref(), || {
            let fragments = connector_actions(config.as_deref())?;
            match (decision, audit) {
                (Some(id), Some(audit)) => {
                    cli_policy::explain_decision(&dir, &fragments, &id, &audit)
                }
                _ => cli_policy::explain(
                    &dir,
                    &fragments,
                    principal.as_deref().unwrap_or_default(),
                    action.as_deref().unwrap_or_default(),
                    resource.as_deref().unwrap_or_default(),
                    context.as_deref(),
                ),
            }
        }),
        Command::Policy {
            command:
                PolicyCommand::Replay {
                    policies,
                    policies_flag,
                    audit,
                    since,
                    until,
                    fail_on,
                    config,
                },
        } => with_connector_note(config.as_deref(), || {
            let fragments = connector_actions(config.as_deref())?;
            let window = warden::audit::read::Filter {
                since,
                until,
                ..Default::default()
            };
            let policies = policies
                .or(policies_flag)
                .context("name the candidate policy directory: warden policy replay DIR")?;
            cli_policy::replay(&policies, &fragments, &audit, &window, &fail_on)
        }),
        Command::Policy {
            command: PolicyCommand::Bundle { dir, sign },
        } => cli_policy::bundle(&dir, &sign),
        Command::Policy {
            command: PolicyCommand::Keygen { key },
        } => cli_policy::keygen(&key),
        Command::Policy {
            command: PolicyCommand::Floor { command },
        } => cli_floor::floor(command),
        Command::Connector {
            command:
                ConnectorCommand::ImportOpenapi {
                    spec,
                    name,
                    base_url,
                    fold_case,
                    output,
                },
        } => {
            let text = std::fs::read_to_string(&spec)
                .with_context(|| format!("cannot read {}", spec.display()))?;
            let options = warden::openapi::ImportOptions {
                name,
                base_url,
                fold_case,
            };
            let connector = warden::openapi::import(&text, &options)
                .with_context(|| format!("cannot import {}", spec.display()))?;
            match output {
                Some(path) => std::fs::write(&path, connector)
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None => print!("{connector}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy {
            command:
                PolicyCommand::Schema {
                    from_mcp,
                    server,
                    headers,
                    allow_private,
                    output,
                },
        } => schema_from_mcp(
            &from_mcp,
            server,
            (&headers, &allow_private),
            output.as_deref(),
        ),
        Command::Audit {
            command:
                AuditCommand::Tail {
                    dir,
                    lines,
                    follow,
                    format,
                },
        } => audit_tail(&dir.existing()?, lines, follow, format),
        Command::Audit {
            command:
                AuditCommand::Export {
                    dir,
                    since,
                    until,
                    format,
                },
        } => audit_print(
            &dir.existing()?,
            &warden::audit::read::Filter {
                since,
                until,
                ..Default::default()
            },
            format,
        ),
        Command::Audit {
            command:
                AuditCommand::Search {
                    dir,
                    agent,
                    action,
                    decision,
                    since,
                    until,
                    format,
                },
        } => audit_print(
            &dir.existing()?,
            &warden::audit::read::Filter {
                agent,
                action,
                decision,
                since,
                until,
            },
            format,
        ),
        Command::Receipt {
            command:
                ReceiptCommand::Verify {
                    receipt,
                    keys,
                    audit,
                },
        } => receipt_verify(&receipt, &keys, audit.as_deref()),
        Command::Audit {
            command:
                AuditCommand::Verify {
                    dir,
                    keys,
                    require_signed,
                    accept_unsigned_crash_tail,
                    live_window,
                    heads,
                    siem,
                },
        } => {
            let config = dir.config.clone();
            let dir = dir.resolve()?;
            let options = warden::audit::VerifyOptions {
                keys: audit_keys(&keys)?,
                require_signed,
                require_stopped: require_signed,
                accept_crash_tails: accept_unsigned_crash_tail,
                live_window,
                heads,
            };
            let local = match warden::audit::verify_with(&dir, &options) {
                Ok(report) => {
                    println!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!(
                        "warden: audit log in {} FAILED verification: {e}",
                        dir.display()
                    );
                    ExitCode::from(1)
                }
            };
            match siem.against_siem {
                Some(target) => {
                    let against = verify_against_siem(&dir, &target, config.as_deref())?;
                    Ok(if local == ExitCode::SUCCESS {
                        against
                    } else {
                        local
                    })
                }
                None => Ok(local),
            }
        }
        Command::Token { command } => cli_tokens::token(command),
        Command::Tools { command } => tools(command),
        Command::Approvals { command } => cli_approvals::approvals(command),
        Command::Approvers { command } => cli_approvals::approvers(command),
        Command::Canary { command } => cli_canary::canary(command),
        Command::Egress { command } => cli_egress::egress(command),
        Command::Agents { command } => cli_agents::agents(command),
        Command::Budgets { command } => cli_budgets::budgets(command),
        Command::State { command } => cli_state::state(command),
        Command::Keys { command } => cli_keys::keys(command),
    }
}

/// The schema declarations of the REST connectors the routes of the configuration at `path`
/// use (none without one).
/// Runs a policy command; when it ran without a configuration and its policies name an action
/// it does not know, its error says that the actions of REST connectors (`github:issues.create`)
/// are declared only with `--config`, from the routes that use them.
fn with_connector_note(
    config: Option<&Path>,
    run: impl FnOnce() -> Result<ExitCode>,
) -> Result<ExitCode> {
    run().map_err(|e| match config {
        None if format!("{e:#}").contains("unrecognized action") => anyhow::anyhow!(
            "{e:#}\nnote: an action of a REST connector (`github:issues.create`) is declared \
             only with --config, from the configuration whose routes use that connector: pass \
             the file the gateway runs with (or set WARDEN_CONFIG)"
        ),
        _ => e,
    })
}

fn connector_actions(path: Option<&Path>) -> Result<Vec<warden::policy::SchemaFragment>> {
    let Some(path) = path else {
        return Ok(Vec::new());
    };
    let config = load(Some(path))?;
    let secrets = offline_secrets(&config)?;
    let routes = warden::route::RouteTable::build(&config, secrets.as_ref())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(routes.schema_fragments().to_vec())
}

/// `warden tools …`: against the state store of the configuration, on a runtime of its own.
fn tools(command: ToolsCommand) -> Result<ExitCode> {
    use warden::pins::review::{self, Selection};
    use warden::state::pins::{ApproveOutcome, Approver};

    let path = match &command {
        ToolsCommand::List { config, .. }
        | ToolsCommand::Approve { config, .. }
        | ToolsCommand::Diff { config, .. }
        | ToolsCommand::Forget { config, .. } => config.clone(),
    };
    let config = load(path.as_deref())?;
    let file = config.state.sqlite_path(&config.data_dir);
    if config.state.postgres.is_none() && !file.exists() {
        bail!(
            "no state store at {}: Warden has not pinned any tool yet with this configuration              (it creates the store when it starts); check --config and state.sqlite",
            file.display()
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        // A PostgreSQL URL and the factor key may be Vault secrets, read once here.
        let needs_secrets =
            config.state.postgres.is_some() || config.approvals.factor_key.is_some();
        let secrets = match needs_secrets {
            true => config
                .vault
                .as_ref()
                .map(|v| warden::vault::SecretStore::new(v.clone()))
                .transpose()
                .map_err(|e| anyhow::anyhow!("{e}"))?,
            false => None,
        };
        let store =
            warden::state::Store::open_existing(&config.state, &config.data_dir, secrets.as_ref())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"));
        // The key a typed resource URI with a credential is pinned under (`approve`, `diff`).
        let uri_key = match &command {
            ToolsCommand::List { .. } => None,
            _ => Some(
                warden::approval::sealed::existing_sealer(
                    &config.approvals,
                    &config.data_dir,
                    secrets.as_ref(),
                )
                .await
                .map(|sealer| {
                    warden::pins::uri::UriKey::new(
                        sealer.derive_key(warden::pins::uri::KEY_PURPOSE),
                    )
                })
                .map_err(|e| anyhow::anyhow!("{e}")),
            ),
        };
        if let Some(secrets) = &secrets {
            secrets.shutdown(std::time::Duration::from_secs(5)).await;
        }
        let store = store?;
        let uri_key = uri_key.transpose()?;
        let pins = store.pins();
        match command {
            ToolsCommand::List { server, .. } => {
                let reviews = review::list(&*pins, &config.pins, server.as_deref())
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                print!("{}", review::format_list(&reviews));
                Ok(ExitCode::SUCCESS)
            }
            ToolsCommand::Forget {
                server,
                tools,
                all,
                key_id,
                dry_run,
                reason,
                operator,
                ..
            } => {
                let key = uri_key.as_ref().context("the pin URI key")?;
                let forgetting = match (all, key_id) {
                    (true, _) => review::Forgetting::All,
                    (false, Some(id)) => review::Forgetting::KeyId(id),
                    (false, None) => review::Forgetting::Named(tools),
                };
                let by = forgetter(operator, reason)?;
                let forgotten = review::forget(&*pins, &server, &forgetting, key, dry_run, &by)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                print!("{}", review::format_forgotten(&server, &forgotten, dry_run));
                Ok(ExitCode::SUCCESS)
            }
            ToolsCommand::Diff { server, tool, .. } => {
                let key = uri_key.as_ref().context("the pin URI key")?;
                let diff = review::diff(&*pins, &server, &tool, key)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                print!("{diff}");
                Ok(ExitCode::SUCCESS)
            }
            ToolsCommand::Approve {
                server,
                tools,
                all,
                digest,
                ..
            } => {
                if digest.is_some() && (all || tools.len() != 1) {
                    bail!("--digest approves one definition: name exactly one TOOL");
                }
                let selection = if all {
                    Selection::All
                } else {
                    Selection::Named(tools, digest.clone())
                };
                let operator = std::env::var("USER")
                    .or_else(|_| std::env::var("LOGNAME"))
                    .unwrap_or_else(|_| "operator".into());
                let key = uri_key.as_ref().context("the pin URI key")?;
                let approver = Approver::Operator(operator);
                let outcomes = review::approve(&*pins, &server, &selection, &approver, key)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                if outcomes.is_empty() {
                    println!("nothing waits for approval on MCP server {server}");
                }
                let mut ok = true;
                for (tool, outcome) in outcomes {
                    match outcome {
                        ApproveOutcome::Approved(pin) => {
                            let digest = pin.approved.map(|(d, _)| d.digest).unwrap_or_default();
                            println!("approved {server}/{tool} {digest}");
                        }
                        ApproveOutcome::AlreadyApproved(pin) => {
                            let (digest, by) = pin
                                .approved
                                .map(|(d, by)| (d.digest, by.to_string()))
                                .unwrap_or_default();
                            println!("{server}/{tool}: already approved ({digest}, by {by})");
                        }
                        ApproveOutcome::DigestMismatch(pin) => {
                            ok = false;
                            let waiting = pin
                                .pending
                                .map(|d| d.digest)
                                .or(pin.approved.map(|(d, _)| d.digest))
                                .unwrap_or_default();
                            eprintln!(
                                "warden: {server}/{tool} not approved: the definition waiting is                                  {waiting}, not {}; review it with `warden tools diff {server} {tool}`",
                                digest.as_deref().unwrap_or("the one expected")
                            );
                        }
                        ApproveOutcome::Unknown => {
                            ok = false;
                            eprintln!("warden: {server}/{tool}: no such tool pinned");
                        }
                    }
                }
                Ok(if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                })
            }
        }
    })
}

/// Who runs `warden tools forget` and why, as the store records it: `--as`, else $USER, else
/// $LOGNAME; a name or reason given empty is refused, for the audit records would say nothing.
fn forgetter(
    operator: Option<String>,
    reason: Option<String>,
) -> Result<warden::state::pins::Removal> {
    let by = operator_name(operator)?;
    if reason.as_deref().is_some_and(|r| r.trim().is_empty()) {
        bail!("--reason is empty; say why the pins are dropped, or leave --reason out");
    }
    Ok(warden::state::pins::Removal {
        by,
        reason: reason.map(|r| r.trim().to_owned()),
        at_ms: warden::state::pins::now_ms(),
    })
}

/// The operator a command's change is recorded under: `--as`, else $USER, else $LOGNAME;
/// `--as` given empty is refused, and so is a command with none of them (a shell in a
/// container has neither variable): the audit log names who changed what, never `unknown`.
fn operator_name(operator: Option<String>) -> Result<String> {
    let from_env = |name| std::env::var(name).ok();
    operator_from(operator, from_env("USER"), from_env("LOGNAME"))
}

/// [`operator_name`] from `--as` and the values of $USER and $LOGNAME.
fn operator_from(
    operator: Option<String>,
    user: Option<String>,
    logname: Option<String>,
) -> Result<String> {
    let named =
        |value: Option<String>| value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    match operator {
        Some(name) if name.trim().is_empty() => {
            bail!("--as is empty; name the operator the audit records should name")
        }
        Some(name) => Ok(name.trim().to_owned()),
        None => named(user).or_else(|| named(logname)).ok_or_else(|| {
            anyhow::anyhow!(
                "who is doing this? Neither $USER nor $LOGNAME is set (as in a container \
                 shell): name yourself with --as NAME, which the audit records keep"
            )
        }),
    }
}

/// The configuration at `path`, or the embedded defaults.
fn load(path: Option<&Path>) -> Result<Config> {
    match path {
        Some(p) => load_file(p).map_err(|e| anyhow::anyhow!("{e}")),
        None => Ok(Config::default()),
    }
}

/// The configuration at `path` (or the embedded defaults) as far as it parsed, with every
/// mistake found in it.
fn parse_partial(path: Option<&Path>) -> Parsed {
    match path {
        Some(p) => load_file_partial(p),
        None => Parsed::defaults(),
    }
}

/// The configuration at `path` (or the embedded defaults), refused on any mistake in it or
/// in the files it names (certificates, keys, CA bundles), each with file, line and key.
fn parse_and_check_files(path: Option<&Path>) -> Parsed {
    let mut parsed = parse_partial(path);
    let file_errors = check_files(&parsed.config, &parsed.source);
    parsed.errors.extend(file_errors);
    parsed
}

fn check(path: Option<&Path>) -> Result<ExitCode> {
    let Parsed {
        config,
        source,
        mut errors,
    } = parse_partial(path);
    // Routes are resolved only from a configuration without mistakes of its own; a bad file
    // it names does not stop them.
    let config_ok = errors.is_empty();
    errors.extend(check_files(&config, &source));
    let mut ok = errors.is_empty();
    if !ok {
        eprintln!("{}", ConfigErrors(errors));
    }
    let routes = if config_ok {
        match offline_secrets(&config)
            .map_err(|e| e.to_string())
            .and_then(|secrets| {
                warden::route::RouteTable::build(&config, secrets.as_ref())
                    .map_err(|e| e.to_string())
            }) {
            Ok(routes) => Some(routes),
            Err(e) => {
                eprintln!("{e}");
                ok = false;
                None
            }
        }
    } else {
        None
    };
    // Policies are checked even when the configuration has mistakes, in the directory the
    // `policy` section names if it parsed, else the default one, with the actions of the REST
    // connectors the routes use.
    let fragments = routes.as_ref().map_or(&[][..], |r| r.schema_fragments());
    let floors =
        warden::policy::rollback::Floors::remembered(&config.data_dir).unwrap_or_else(|e| {
            eprintln!("{e}");
            ok = false;
            warden::policy::rollback::Floors::default()
        });
    match warden::snapshot::load_policies(&config.policy, fragments, floors) {
        Ok(engine) => println!(
            "policies: {} valid in {} (version {})",
            engine.policy_count(),
            config.policy.dir.display(),
            engine.version()
        ),
        Err(e) => {
            eprintln!("{e}");
            ok = false;
        }
    }
    let faults = routes
        .iter()
        .flat_map(|routes| warden::snapshot::credential_faults(&config, routes));
    for (r, fault) in faults {
        if let Some(endpoint) = &r.mcp {
            println!(
                "route {} {} -> MCP servers {}",
                r.name,
                r.prefix,
                endpoint.names.join(", ")
            );
            continue;
        }
        match fault {
            None => println!(
                "route {} {} -> {}://{}{}",
                r.name, r.prefix, r.upstream.scheme, r.upstream.authority, r.upstream.base_path
            ),
            // Every credential's source is explicit: a route that needs one and names none is
            // a mistake, not a warning.
            Some(CredentialFault::Missing { error, .. }) => {
                eprintln!("route {} {}: error: {error}", r.name, r.prefix);
                ok = false;
            }
            Some(CredentialFault::Unavailable(e)) => {
                println!("route {} {}: warning: {e}", r.name, r.prefix)
            }
        }
    }
    if let Some(plain) = config
        .state
        .postgres
        .as_ref()
        .and_then(warden::state::postgres::configured_plain_text)
    {
        println!("warning: {plain}");
    }
    if let Some(fault) = config
        .state
        .postgres
        .as_ref()
        .and_then(warden::state::postgres::configured_tls_fault)
    {
        eprintln!("{fault}");
        ok = false;
    }
    if ok {
        println!(
            "{}: configuration is valid",
            path.map_or_else(|| "embedded defaults".into(), |p| p.display().to_string())
        );
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(1))
    }
}

/// `warden receipt verify`: the receipt's signature, and with `audit`, its decision record.
fn receipt_verify(receipt: &str, keys: &AuditKeyArgs, audit: Option<&Path>) -> Result<ExitCode> {
    let keys = audit_keys(keys)?;
    if keys.is_empty() {
        bail!(
            "give the audit public key: --key FILE or --jwks FILE|URL (the admin listener's \
             /.well-known/warden-audit-keys.json)"
        );
    }
    let text = if receipt == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read the receipt from stdin")?
    } else {
        receipt.to_owned()
    };
    let verified = match warden::audit::receipt::verify(&text, &keys) {
        Ok(verified) => verified,
        Err(e) => {
            eprintln!("warden: receipt INVALID: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let claims = &verified.claims;
    println!("{}", serde_json::to_string_pretty(claims)?);
    let signed = format!(
        "signed by the audit key {} (receipt {} of a batch of {})",
        verified.kid,
        verified.index + 1,
        verified.size
    );
    let Some(dir) = audit else {
        println!("receipt valid: {signed}");
        return Ok(ExitCode::SUCCESS);
    };
    let mut found = None;
    warden::audit::read::Reader::new(dir).each_new(|record| {
        if found.is_none() && record.value["seq"].as_u64() == Some(claims.seq) {
            found = Some(record.value);
        }
    })?;
    let Some(record) = found else {
        eprintln!(
            "warden: receipt valid, but the audit log in {} has no record at seq {}",
            dir.display(),
            claims.seq
        );
        return Ok(ExitCode::from(1));
    };
    let same = record["kind"] == "decision"
        && record["decision_id"] == claims.decision_id.as_str()
        && record["action_digest"] == claims.action_digest.as_str()
        && record["decision"] == claims.decision.as_str();
    if !same {
        eprintln!(
            "warden: receipt valid, but the record at seq {} in {} does not match it (decision \
             id, action digest or decision differ): the log was changed, or this receipt is \
             from another log",
            claims.seq,
            dir.display()
        );
        return Ok(ExitCode::from(1));
    }
    println!(
        "receipt valid: {signed}, and the decision record at seq {} matches",
        claims.seq
    );
    Ok(ExitCode::SUCCESS)
}

/// The audit public keys of `--key` and `--jwks` (none when neither is given).
fn audit_keys(args: &AuditKeyArgs) -> Result<warden::audit::checkpoint::Keys> {
    let mut keys = Vec::new();
    for path in &args.key {
        let key = warden::keys::public_from_file(path)
            .with_context(|| format!("cannot use the audit key {}", path.display()))?;
        keys.push((warden::keys::thumbprint(&key.to_bytes()), key));
    }
    if let Some(source) = &args.jwks {
        let text = if source.starts_with("http://") || source.starts_with("https://") {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime
                .block_on(async {
                    let response = reqwest::Client::builder()
                        .timeout(Duration::from_secs(10))
                        .build()?
                        .get(source)
                        .send()
                        .await?
                        .error_for_status()?;
                    response.text().await
                })
                .with_context(|| format!("cannot fetch the audit keys from {source}"))?
        } else {
            std::fs::read_to_string(source)
                .with_context(|| format!("cannot read the audit keys {source}"))?
        };
        let jwks: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{source} is not a JWK Set (JSON)"))?;
        keys.extend(warden::keys::public_from_jwks(&jwks, source)?);
    }
    Ok(warden::audit::checkpoint::Keys::new(keys))
}

/// `warden audit export` and `search`: the records of `dir` that `filter` keeps, in `shape`.
fn audit_print(
    dir: &Path,
    filter: &warden::audit::read::Filter,
    shape: warden::audit::shape::Shape,
) -> Result<ExitCode> {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(cli_out::stdout());
    let mut written = Ok(());
    warden::audit::read::Reader::new(dir).each_new(|record| {
        if written.is_ok() && filter.keeps(&record) {
            written = writeln!(
                out,
                "{}",
                warden::audit::shape::terminal_line(&shape.of(&record))
            );
        }
    })?;
    written?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `warden audit tail`: the last `lines` records of `dir`, then (`follow`) new ones as they
/// are written.
fn audit_tail(
    dir: &Path,
    lines: usize,
    follow: bool,
    shape: warden::audit::shape::Shape,
) -> Result<ExitCode> {
    use std::io::Write as _;
    let mut reader = warden::audit::read::Reader::new(dir);
    let records = reader.next_batch()?;
    let mut out = cli_out::stdout();
    for record in &records[records.len().saturating_sub(lines)..] {
        writeln!(
            out,
            "{}",
            warden::audit::shape::terminal_line(&shape.of(record))
        )?;
    }
    out.flush()?;
    if !follow {
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        std::thread::sleep(std::time::Duration::from_millis(250));
        for record in reader.next_batch()? {
            writeln!(
                out,
                "{}",
                warden::audit::shape::terminal_line(&shape.of(&record))
            )?;
        }
        out.flush()?;
    }
}

/// `warden audit verify --against-siem TARGET`: the SIEM's checkpoints and newest record
/// compared with the log in `dir`; exit 1 when they differ (whatever the local check said,
/// which is printed before).
fn verify_against_siem(dir: &Path, target: &str, config: Option<&Path>) -> Result<ExitCode> {
    let config = match config {
        Some(path) => load(Some(path))?,
        None => Config::default(),
    };
    warden::listener::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let comparison = runtime.block_on(async {
        let store = config
            .vault
            .as_ref()
            .map(|v| warden::vault::SecretStore::new(v.clone()))
            .transpose()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let replica = warden::audit::replica::resolve(config.audit.replica_id.as_ref()).ok();
        let result = warden::siem::against::against(
            &config.siem,
            target,
            dir,
            store.clone(),
            replica.as_deref(),
        )
        .await;
        if let Some(store) = &store {
            store.shutdown(Duration::from_secs(5)).await;
        }
        result.map_err(|e| anyhow::anyhow!("{e}"))
    })?;
    if comparison.problems.is_empty() {
        println!("{comparison}");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "warden: audit log in {} does not match the SIEM ({target}):",
            dir.display()
        );
        eprintln!("{comparison}");
        Ok(ExitCode::from(1))
    }
}

/// Warden's token issuer: its signing key from `identity.warden_issuer.key` (read now, from
/// Vault if it says so) or its key file, which must exist unless `create` (a command never
/// makes a key no gateway uses by accident).
fn token_issuer(
    config: &warden::config::Config,
    create: bool,
) -> Result<warden::identity::TokenIssuer> {
    let cfg = &config.identity.warden_issuer;
    let Some(source) = &cfg.key else {
        let key_file = warden::identity::issuer_key_path(cfg, &config.data_dir);
        let new = !key_file.exists();
        if new && !create {
            bail!(
                "there is no agent signing key at {}: a gateway creates it at its first start, \
                 and a token signed with any other key is refused by it. Pass --config (or \
                 WARDEN_CONFIG) with the file the gateway runs with, in the gateway's working \
                 directory when its paths are relative; or start the gateway first; or, to set \
                 up the key before any gateway runs, pass --create-key. If the gateway ran with \
                 this data_dir and its keys/ directory was lost, restore it from a backup \
                 (docs/operations.md#backup-and-restore)",
                warden::config::workdir::FromWorkdir(&key_file)
            );
        }
        let issuer = warden::identity::TokenIssuer::load_or_create(cfg, &config.data_dir)?;
        if new {
            eprintln!(
                "warden: created the agent signing key {}; a gateway accepts this token only \
                 with the same key (the same data_dir, or identity.warden_issuer.key_file)",
                warden::config::workdir::FromWorkdir(&key_file)
            );
        }
        return Ok(issuer);
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let store = config
            .vault
            .as_ref()
            .map(|v| warden::vault::SecretStore::new(v.clone()))
            .transpose()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let key = "identity.warden_issuer.key";
        let pem = warden::secrets::own::read(source, store.as_ref(), key).await;
        // A leased key's lease ends with the command.
        if let Some(store) = &store {
            store.shutdown(std::time::Duration::from_secs(5)).await;
        }
        let pem = pem.map_err(|e| anyhow::anyhow!("{key}: {e}"))?;
        Ok(warden::identity::TokenIssuer::from_pem(cfg, &pem, key)?)
    })
}

/// The secret store of the configuration's `vault:` section, for resolving routes without
/// reaching Vault (`warden check` and the other offline commands).
/// A command's runtime: one thread, for the state store and Vault.
fn cli_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The state store `config` names, opened by a command (its database password from Vault when
/// configured so); one that does not exist is an error, not made.
async fn open_store(config: &warden::config::Config) -> Result<warden::state::Store> {
    let secrets = offline_secrets(config)?;
    let store =
        warden::state::Store::open_existing(&config.state, &config.data_dir, secrets.as_ref())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    eprintln!("warden: state store {}", store.location());
    Ok(store)
}

fn offline_secrets(
    config: &warden::config::Config,
) -> Result<Option<std::sync::Arc<warden::vault::SecretStore>>> {
    config
        .vault
        .as_ref()
        .map(|v| warden::vault::SecretStore::offline(v.clone()))
        .transpose()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

fn serve(path: Option<PathBuf>, accept_new_keys: bool) -> Result<ExitCode> {
    // The same checks as `warden check`, so that a bad certificate or CA file stops start-up
    // with its file, line and key rather than later without them.
    let config = parse_and_check_files(path.as_deref())
        .into_result()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let _log_guard = warden::telemetry::logging::init(&config.log);
    // The main thread's runtime: admin listener, reloads, signals, refreshes. The proxy runs
    // on worker threads of its own (workers.rs).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime
        .block_on(warden::server::serve(config, path, accept_new_keys))
        .map_err(serve_failed)?;
    Ok(ExitCode::SUCCESS)
}

/// Why `serve` stopped, as one message: each `ServeError` already says its cause, so the
/// cause is not printed again after it (`main` prints an error's chain).
fn serve_failed(e: warden::server::ServeError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_command_without_config_says_connector_actions_need_it() {
        let unknown = || -> Result<ExitCode> {
            bail!("policies/acme.cedar:2:47: unrecognized action `Action::\"acme:items.list\"`")
        };
        let without = with_connector_note(None, unknown).unwrap_err().to_string();
        assert!(
            without.starts_with("policies/acme.cedar:2:47: "),
            "{without}"
        );
        assert!(without.contains("declared only with --config"), "{without}");
        let with = with_connector_note(Some(Path::new("warden.yaml")), unknown)
            .unwrap_err()
            .to_string();
        assert!(!with.contains("--config"), "{with}");
        let other = with_connector_note(None, || bail!("policies: no such directory"))
            .unwrap_err()
            .to_string();
        assert_eq!(other, "policies: no such directory");
    }

    /// Every argument of every subcommand, as `(command path, argument id)`, that `--help`
    /// shows without a sentence saying what it is.
    fn unexplained(command: &clap::Command, path: &str, found: &mut Vec<String>) {
        for arg in command.get_arguments() {
            let builtin = matches!(arg.get_id().as_str(), "help" | "version");
            if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                found.push(format!("{path} {}", arg.get_id()));
            }
        }
        for sub in command.get_subcommands() {
            unexplained(sub, &format!("{path} {}", sub.get_name()), found);
        }
    }

    #[test]
    fn version_names_the_commit_the_binary_was_built_from() {
        use clap::CommandFactory;
        // The commit's form (a short hash, `-dirty`, `unknown`) is build_info's test.
        assert_eq!(
            Cli::command().render_version(),
            format!(
                "warden {} (commit {})\n",
                env!("CARGO_PKG_VERSION"),
                warden::build_info::COMMIT
            )
        );
    }

    #[test]
    fn a_listener_that_cannot_bind_is_reported_with_its_cause_once() {
        let e = warden::server::ServeError::Bind {
            listener: "proxy",
            addr: "127.0.0.1:8080".parse().unwrap(),
            source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
        };
        let shown = format!("{:#}", serve_failed(e));
        let cause = std::io::Error::from(std::io::ErrorKind::AddrInUse).to_string();
        assert_eq!(shown.matches(&cause).count(), 1, "{shown}");
        assert!(shown.contains("Change listen.proxy"), "{shown}");
    }

    #[test]
    fn every_flag_and_argument_of_every_subcommand_is_explained_in_its_help() {
        use clap::CommandFactory;
        let mut found = Vec::new();
        unexplained(&Cli::command(), "warden", &mut found);
        assert!(found.is_empty(), "arguments without help: {found:#?}");
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("warden").chain(args.iter().copied()))
    }

    fn audit_dir_of(cli: Cli) -> AuditDir {
        match cli.command {
            Command::Audit {
                command:
                    AuditCommand::Verify { dir, .. }
                    | AuditCommand::Tail { dir, .. }
                    | AuditCommand::Export { dir, .. }
                    | AuditCommand::Search { dir, .. },
            } => dir,
            _ => panic!("not an audit command"),
        }
    }

    /// `--since 1h` is the last hour: an incident starts from "what did it do lately".
    #[test]
    fn since_takes_a_duration_back_from_now() {
        let before = std::time::SystemTime::now();
        let hour_ago = parse_time("1h").unwrap();
        let after = std::time::SystemTime::now();
        let hour = Duration::from_secs(3600);
        assert!(hour_ago >= before - hour && hour_ago <= after - hour);
        assert_eq!(
            parse_time("2026-12-01").unwrap(),
            parse_time("2026-12-01T00:00:00Z").unwrap()
        );
        let err = parse_time("yesterday").unwrap_err();
        assert!(err.contains("duration back from now (1h, 30m)"), "{err}");
        let cli = parse(&["audit", "search", "/a", "--agent", "demo", "--since", "30m"]);
        assert!(cli.is_ok());
    }

    /// `--key` is repeatable: a log signed before and after a rotation is verified with
    /// both keys.
    #[test]
    fn audit_verify_takes_several_keys() {
        let tmp = tempfile::tempdir().unwrap();
        let mut paths = Vec::new();
        let mut kids = Vec::new();
        for (n, seed) in [(1, [1u8; 32]), (2, [2u8; 32])] {
            let key = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
            let path = tmp.path().join(format!("k{n}.pem"));
            std::fs::write(&path, warden::keys::public_pem(&key).unwrap()).unwrap();
            kids.push(warden::keys::thumbprint(&key.to_bytes()));
            paths.push(path.to_str().unwrap().to_owned());
        }
        let cli = parse(&[
            "audit", "verify", "/a", "--key", &paths[0], "--key", &paths[1],
        ])
        .unwrap();
        let Command::Audit {
            command: AuditCommand::Verify { keys, .. },
        } = cli.command
        else {
            panic!("not audit verify");
        };
        let keys = audit_keys(&keys).unwrap();
        for kid in &kids {
            assert!(keys.get(kid).is_some(), "{kid}");
        }
    }

    #[test]
    fn every_audit_command_reads_the_configurations_audit_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("w.yaml");
        let data = tmp.path().join("data");
        std::fs::write(&config, format!("data_dir: {}\n", data.display())).unwrap();
        let config = config.to_str().unwrap();
        for sub in ["verify", "tail", "export", "search"] {
            let cli = parse(&["audit", sub, "-c", config]).unwrap_or_else(|e| panic!("{sub}: {e}"));
            assert_eq!(
                audit_dir_of(cli).resolve().unwrap(),
                data.join("audit"),
                "{sub}"
            );
            let cli = parse(&["audit", sub, "/elsewhere", "--config", config]).unwrap();
            assert_eq!(
                audit_dir_of(cli).resolve().unwrap(),
                Path::new("/elsewhere")
            );
        }
    }

    #[test]
    fn a_missing_audit_directory_is_named_once() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("audit");
        let cli = parse(&["audit", "tail", missing.to_str().unwrap()]).unwrap();
        let err = format!("{:#}", audit_dir_of(cli).existing().unwrap_err());
        assert!(
            err.contains(&format!("no audit log in {}", missing.display())),
            "{err}"
        );
        assert_eq!(err.matches("does not exist").count(), 1, "{err}");
        assert!(!err.contains("os error"), "{err}");
    }

    #[test]
    fn a_missing_relative_audit_directory_names_the_working_directory() {
        let cli = parse(&["audit", "tail", "no-such-data/audit"]).unwrap();
        let err = format!("{:#}", audit_dir_of(cli).existing().unwrap_err());
        let cwd = std::env::current_dir().unwrap();
        assert!(
            err.contains(&format!(
                "no-such-data/audit (relative to the working directory {})",
                cwd.display()
            )),
            "{err}"
        );
    }

    #[test]
    fn audit_search_accepts_only_the_documented_decisions() {
        let err = parse(&["audit", "search", "--decision", "denied"])
            .err()
            .expect("denied is not a decision")
            .to_string();
        assert!(err.contains("denied") && err.contains("deny"), "{err}");
        for ok in [
            "allow",
            "deny",
            "approval_required",
            "rejected",
            "tool_change",
        ] {
            assert!(
                parse(&["audit", "search", "--decision", ok]).is_ok(),
                "{ok}"
            );
        }
    }

    #[test]
    fn policy_replay_takes_the_candidate_directory_positionally_or_as_a_flag() {
        for args in [
            &["policy", "replay", "cand", "--audit", "a"][..],
            &["policy", "replay", "--policies", "cand", "--audit", "a"][..],
        ] {
            let cli = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            let Command::Policy {
                command:
                    PolicyCommand::Replay {
                        policies,
                        policies_flag,
                        ..
                    },
            } = cli.command
            else {
                panic!("not replay");
            };
            assert_eq!(policies.or(policies_flag), Some(PathBuf::from("cand")));
        }
        assert!(parse(&["policy", "replay", "--audit", "a"]).is_err());
    }

    #[test]
    fn budgets_reset_all_asks_for_yes() {
        let cli = parse(&["budgets", "reset", "--all"]).unwrap();
        let Command::Budgets { command } = cli.command else {
            panic!("not budgets");
        };
        let err = cli_budgets::budgets(command).unwrap_err().to_string();
        assert!(err.contains("--yes"), "{err}");
    }

    #[test]
    fn the_operator_is_as_then_user_then_logname_and_never_unknown() {
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(
            operator_from(s(" alice "), s("root"), None).unwrap(),
            "alice"
        );
        assert_eq!(operator_from(None, s("bob"), s("carol")).unwrap(), "bob");
        assert_eq!(operator_from(None, s(" "), s("carol")).unwrap(), "carol");
        let err = operator_from(None, None, s("")).unwrap_err().to_string();
        assert!(err.contains("--as NAME") && err.contains("$USER"), "{err}");
        assert!(operator_from(s(" "), s("bob"), None).is_err());
    }

    #[test]
    fn check_describes_its_config_option() {
        let help = parse(&["check", "--help"]).err().unwrap().to_string();
        assert!(help.contains("Configuration file to check"), "{help}");
    }
}
