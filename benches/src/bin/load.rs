//! Side-by-side load harness: the same chat-completion load sent direct to an upstream,
//! through nginx, through the bare proxies Warden is built on, and through Warden
//! (authentication, Cedar and the audit log on) in each audit durability.
//!
//! `cargo build --release -p warden && cargo run --release -p warden-bench --bin load -- --help`

use anyhow::{Context, Result, bail};
use clap::Parser;
use http::HeaderValue;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::warden::audit::AuditLog;
use ::warden::audit::config::{AuditConfig, Durability};
use warden_bench::audit_share::AuditCounters;
use warden_bench::bare_proxy::{self, Recorder};
use warden_bench::inline_log::InlineLog;
use warden_bench::loadgen::{self, LoadSpec, Workload};
use warden_bench::openbao::{self, OpenBao};
use warden_bench::process::{self, Proc};
use warden_bench::profile::{self, ProfileFiles};
use warden_bench::report::{
    self, Params, RateLatency, Report, Skipped, TargetReport, Versions, WARDEN_BASELINE,
    WARDEN_DISK, WARDEN_PROCESS,
};
use warden_bench::trace_spans::{self, TraceSpans};
use warden_bench::vault_reads::{self, VaultReads};
use warden_bench::{nginx, upstream, warden};

/// Measure Warden against nginx and against no proxy at all, with the same load.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Measured time per target.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Unmeasured warm-up before each measurement.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Persistent HTTP/1.1 connections, each sending requests back to back.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=4096))]
    connections: u16,
    /// Approximate size of each chat-completion request body, bytes.
    #[arg(long, default_value_t = 1024)]
    body_bytes: usize,
    /// Stop a target's run after this many requests (warm-up included), even if time remains.
    #[arg(long, default_value_t = 20_000_000)]
    max_requests: u64,
    /// Which targets to measure, in order: `direct` (no proxy), `nginx`, `hyper` (a bare
    /// hyper-util proxy: the stack Warden is built on, without Warden's stages),
    /// `hyper-audit` (the same proxy making a decision record durable through Warden's audit
    /// writer before each upstream call, and nothing else: the floor under `disk`
    /// durability), `hyper-audit-process` (the same in `process` durability: what the record
    /// alone costs Warden's `process` mode; not in the default run), `warden-disk`,
    /// `warden-process` (Warden in each `audit.durability`),
    /// `warden-baseline` (the binary given by `--baseline-bin`, added at the end when given);
    /// `mcp-direct`, `mcp-warden`: MCP `tools/call` in a session per connection, straight to
    /// the bench upstream's MCP server and through a Warden MCP endpoint (`process`
    /// durability), not in the default run; `warden-env`, `warden-vault`: Warden (`process`
    /// durability) with the route's credential from an environment variable, and from an
    /// OpenBao dev server the harness starts (`bao`: `$WARDEN_BAO`, tests/.venv or the
    /// PATH), read once and then served from Warden's memory; not in the default run;
    /// `warden-siem`: `warden-process` shipping its audit log (ECS, syslog over TCP) to a
    /// collector of the harness's while it serves: compare it with `warden-process`.
    /// `warden-traced`: `warden-process` exporting a span pair per request over OTLP to the
    /// bench upstream (`traces:` defaults: every request sampled); not in the default run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "direct,nginx,hyper,hyper-audit,warden-disk,warden-process"
    )]
    targets: Vec<Target>,
    /// Another Warden binary to measure in the same run as `warden-baseline` (e.g. a release
    /// build of an earlier commit), with the same configuration less the keys it may not
    /// know (`audit.durability`: it runs with its own default); the report compares
    /// `warden-disk`'s CPU per request with it.
    #[arg(long)]
    baseline_bin: Option<PathBuf>,
    /// Repeat the whole sequence this many times; each target reports its median round (by
    /// requests per second), and the JSON lists every round's rate.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    rounds: u32,
    /// Profile each proxy with `perf` during the last round's measured window; the data and a
    /// flat report go beside the JSON report (`<target>.perf.data`, `<target>.perf.txt`).
    #[arg(long)]
    perf: bool,
    /// Diagnostics: run Warden with `log.access: true` (a JSON line per request), which the
    /// measured setup leaves at its default, off.
    #[arg(long)]
    access_log: bool,
    /// Requests per second offered to every target in the latency phase (open loop, after
    /// the saturation rounds); `auto`: half the slowest proxy's saturated rate, so every
    /// target is measured at the same load, well within what each can serve; `0`: skip it.
    #[arg(long, default_value = "auto", value_parser = parse_rate)]
    latency_rate: Rate,
    /// Warden's `runtime.worker_threads`: 1 by default, as the nginx baseline runs one worker
    /// process; 0 lets Warden take one thread per core.
    #[arg(long, default_value_t = 1)]
    warden_workers: usize,
    /// nginx's `worker_processes`: 1 by default; 0 is `auto` (one per core). Give both this and
    /// `--warden-workers` to compare the two at the same parallelism.
    #[arg(long, default_value_t = 1)]
    nginx_workers: usize,
    /// Threads of the load generator's runtime.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Threads of the bench upstream's runtime.
    #[arg(long, default_value_t = 1)]
    upstream_threads: usize,
    /// Where to write the JSON report.
    #[arg(long, default_value_os_t = default_json_path())]
    json: PathBuf,
    /// Policy directory copied into Warden's temporary configuration.
    #[arg(long, default_value_os_t = warden::repo_policies())]
    policies: PathBuf,
    /// Policy directory for `warden-baseline` (default: `--policies`): an earlier binary may
    /// not know the current schema, e.g. `git archive <rev> policies | tar -x -C /tmp/old`.
    #[arg(long)]
    baseline_policies: Option<PathBuf>,
    /// Run only the bench upstream on this address (used by the harness itself).
    #[arg(long, hide = true)]
    serve_upstream: Option<SocketAddr>,
    /// Run only the bare hyper proxy on this address, to `--proxy-upstream` (used by the
    /// harness itself).
    #[arg(long, hide = true, requires = "proxy_upstream")]
    serve_proxy: Option<SocketAddr>,
    /// The bare hyper proxy's upstream.
    #[arg(long, hide = true)]
    proxy_upstream: Option<SocketAddr>,
    /// The bare hyper proxy's audit directory: with it, the proxy records every request
    /// durably before forwarding it (used by the harness itself).
    #[arg(long, hide = true)]
    proxy_audit: Option<PathBuf>,
    /// The bare hyper proxy's audit log in `process` durability (the record handed to the
    /// operating system before forwarding) rather than `disk`.
    #[arg(long, hide = true, requires = "proxy_audit")]
    proxy_audit_process: bool,
    /// The bare hyper proxy writes its records itself, with no writer thread (experiment).
    #[arg(long, hide = true, requires = "proxy_audit")]
    proxy_inline: bool,
}

/// `--latency-rate`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rate {
    Auto,
    Skip,
    PerSecond(f64),
}

fn parse_rate(text: &str) -> Result<Rate, String> {
    if text == "auto" {
        return Ok(Rate::Auto);
    }
    match text.parse::<f64>() {
        Ok(0.0) => Ok(Rate::Skip),
        Ok(r) if r.is_finite() && r > 0.0 => Ok(Rate::PerSecond(r)),
        _ => Err(format!(
            "{text:?} is not a rate: give requests per second (e.g. 10000), auto, or 0 to skip"
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Target {
    Direct,
    Nginx,
    Hyper,
    HyperAudit,
    /// The bare proxy recording through the audit log in `process` durability: what Warden's
    /// `process` mode costs with no stage but the record.
    HyperAuditProcess,
    /// Experiment: the bare proxy writing each record on its worker thread, no writer thread.
    HyperInline,
    WardenDisk,
    WardenProcess,
    WardenBaseline,
    McpDirect,
    McpWarden,
    WardenEnv,
    WardenVault,
    WardenSiem,
    WardenTraced,
    /// One Warden behind haproxy.
    #[value(name = "replicas-1")]
    Replicas1,
    /// Three Wardens behind haproxy.
    #[value(name = "replicas-3")]
    Replicas3,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Nginx => "nginx",
            Target::Hyper => "hyper",
            Target::HyperAudit => report::FLOOR,
            Target::HyperAuditProcess => "hyper-audit-process",
            Target::HyperInline => "hyper-inline",
            Target::WardenDisk => WARDEN_DISK,
            Target::WardenProcess => WARDEN_PROCESS,
            Target::WardenBaseline => WARDEN_BASELINE,
            Target::McpDirect => "mcp-direct",
            Target::McpWarden => "mcp-warden",
            Target::WardenEnv => report::WARDEN_ENV,
            Target::WardenVault => report::WARDEN_VAULT,
            Target::WardenSiem => "warden-siem",
            Target::WardenTraced => report::WARDEN_TRACED,
            Target::Replicas1 => "replicas-1",
            Target::Replicas3 => "replicas-3",
        }
    }

    /// A Warden target's binary and `audit.durability` (`None`: the binary's own default).
    fn warden(self, args: &Args) -> Option<Result<(PathBuf, Option<&'static str>)>> {
        let this = || warden::locate().map_err(anyhow::Error::from);
        match self {
            Target::WardenDisk => Some(this().map(|bin| (bin, Some("disk")))),
            Target::WardenProcess
            | Target::McpWarden
            | Target::WardenEnv
            | Target::WardenVault
            | Target::WardenSiem
            | Target::WardenTraced
            | Target::Replicas1
            | Target::Replicas3 => Some(this().map(|bin| (bin, Some("process")))),
            Target::WardenBaseline => Some(match &args.baseline_bin {
                Some(bin) if bin.is_file() => Ok((bin.clone(), None)),
                Some(bin) => Err(anyhow::anyhow!(
                    "--baseline-bin {} is not a file",
                    bin.display()
                )),
                None => Err(anyhow::anyhow!("give the binary with --baseline-bin PATH")),
            }),
            _ => None,
        }
    }
}

fn report_dir(args: &Args) -> PathBuf {
    args.json
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn default_json_path() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .unwrap_or(manifest)
        .join("target/warden-bench/load.json")
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(addr) = args.serve_upstream {
        return serve_upstream(addr, args.upstream_threads);
    }
    if let (Some(addr), Some(upstream)) = (args.serve_proxy, args.proxy_upstream) {
        let durability = if args.proxy_audit_process {
            Durability::Process
        } else {
            Durability::Disk
        };
        return serve_bare_proxy(
            addr,
            upstream,
            args.proxy_audit.as_deref(),
            durability,
            args.proxy_inline,
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.max(1))
        .enable_all()
        .build()
        .context("starting the load generator's runtime")?;
    let dir = report_dir(&args);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let report = runtime.block_on(measure(&args))?;
    print!("{}", report.table());
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(&args.json, json + "\n")
        .with_context(|| format!("writing {}", args.json.display()))?;
    println!("JSON report: {}", args.json.display());
    Ok(())
}

fn serve_upstream(addr: SocketAddr, threads: usize) -> Result<()> {
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
    .context("starting the upstream's runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the bench upstream to {addr}"))?;
        upstream::serve(listener).await.context("bench upstream")
    })
}

/// The bare hyper proxy, on one single-threaded runtime as each Warden worker runs; with
/// `audit`, recording through Warden's audit log in `durability`.
fn serve_bare_proxy(
    addr: SocketAddr,
    upstream: SocketAddr,
    audit: Option<&Path>,
    durability: Durability,
    inline: bool,
) -> Result<()> {
    let config = AuditConfig {
        durability,
        ..AuditConfig::default()
    };
    let audit = audit
        .map(|dir| {
            if inline {
                InlineLog::open(dir)
                    .map(|log| Recorder::Inline(Arc::new(log)))
                    .with_context(|| format!("opening the inline log in {}", dir.display()))
            } else {
                AuditLog::open(dir, &config)
                    .map(|log| Recorder::Log(Arc::new(log)))
                    .with_context(|| {
                        format!("opening the bare proxy's audit log in {}", dir.display())
                    })
            }
        })
        .transpose()?;
    let runtime = ::warden::listener::workers::worker_runtime()
        .context("starting the bare proxy's runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the bare proxy to {addr}"))?;
        bare_proxy::serve(listener, upstream, audit)
            .await
            .context("bare proxy")
    })
}

async fn measure(args: &Args) -> Result<Report> {
    let date = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let tmp = tempfile::Builder::new().prefix("warden-bench-").tempdir()?;
    let upstream_addr = process::free_loopback_addr()?;
    let mut upstream_cmd = Command::new(std::env::current_exe()?);
    upstream_cmd
        .arg("--serve-upstream")
        .arg(upstream_addr.to_string())
        .arg("--upstream-threads")
        .arg(args.upstream_threads.to_string());
    let upstream_log = tmp.path().join("upstream.out");
    let mut upstream = Proc::spawn("bench upstream", upstream_cmd, &upstream_log)?;
    upstream.wait_for_port(upstream_addr)?;

    let body = loadgen::chat_body(args.body_bytes);
    let mut report = Report {
        date,
        machine: report::machine(),
        versions: Versions {
            harness: env!("CARGO_PKG_VERSION").into(),
            nginx: None,
            warden: None,
            warden_baseline: None,
        },
        params: Params {
            warmup_s: args.warmup.as_secs_f64(),
            duration_s: args.duration.as_secs_f64(),
            connections: usize::from(args.connections),
            body_bytes: body.len(),
            client_threads: args.client_threads,
            upstream_threads: args.upstream_threads,
            rounds: args.rounds,
            warden_access_log: args.access_log,
            warden_workers: args.warden_workers,
            nginx_workers: args.nginx_workers,
            latency_rate: None,
            baseline_bin: args.baseline_bin.as_ref().map(|b| b.display().to_string()),
        },
        targets: Vec::new(),
        skipped: Vec::new(),
        process_marks: None,
        disk_marks: None,
        baseline: None,
        credentials: None,
        tracing: None,
    };

    // The Wardens are set up first so that every target receives the same request, token
    // included.
    let mut targets = args.targets.clone();
    if args.baseline_bin.is_some() && !targets.contains(&Target::WardenBaseline) {
        targets.push(Target::WardenBaseline);
    }
    // Stopped when the run ends (dropped).
    let openbao = start_openbao(tmp.path(), &mut targets, &mut report);
    let (wardens, token) = prepare_wardens(
        &tmp.path().join("warden"),
        args,
        &mut targets,
        upstream_addr,
        openbao.as_ref().map(OpenBao::address),
        &mut report,
    );
    let base = LoadSpec {
        target: String::new(),
        addr: upstream_addr,
        path: http::Uri::from_static("/v1/chat/completions"),
        authorization: token,
        body,
        connections: usize::from(args.connections),
        warmup: args.warmup,
        duration: args.duration,
        max_requests: args.max_requests,
        rate: None,
        workload: Workload::Chat,
    };

    let mut bench = Bench {
        args,
        tmp: tmp.path(),
        upstream: &mut upstream,
        wardens: &wardens,
    };
    let saturated = Phase {
        spec: &base,
        label: String::new(),
        dir: "",
        profile: args.perf,
    };
    let mut measured = Vec::new();
    for m in bench
        .rounds(&targets, &saturated, &mut report.versions)
        .await?
    {
        if let Some((_, e)) = &m.failure {
            skip(&mut report, m.target, e);
        }
        if let Some(median) = TargetReport::median_by_rps(m.runs) {
            measured.push(m.target);
            report.targets.push(median);
        }
    }
    if let Some(rate) = latency_rate(args.latency_rate, &report.targets) {
        report.params.latency_rate = Some(rate);
        let fixed = LoadSpec {
            rate: Some(rate),
            ..base.clone()
        };
        let at_rate = Phase {
            spec: &fixed,
            label: format!("latency at {rate:.0} req/s: "),
            dir: "-rate",
            profile: false,
        };
        for m in bench
            .rounds(&measured, &at_rate, &mut report.versions)
            .await?
        {
            if let Some((round, e)) = &m.failure {
                eprintln!(
                    "{}: latency at {rate:.0} req/s not measured in round {round}: {e:#}",
                    m.target.name()
                );
            }
            let runs = m.runs.iter().map(|run| RateLatency::from_run(rate, run));
            if let Some(t) = report
                .targets
                .iter_mut()
                .find(|t| t.name == m.target.name())
            {
                t.at_rate = RateLatency::median_by_p99(runs.collect());
            }
        }
    }
    if report.targets.is_empty() {
        bail!("no target could be measured; see the messages above");
    }
    report.compare();
    Ok(report)
}

/// The latency phase's rate: as asked, or half the slowest proxy's saturated rate (the
/// slowest target's, when no proxy was measured).
fn latency_rate(asked: Rate, measured: &[TargetReport]) -> Option<f64> {
    match asked {
        Rate::Skip => None,
        Rate::PerSecond(rate) => Some(rate),
        Rate::Auto => {
            let proxies = measured.iter().filter(|t| t.name != "direct");
            let slowest = proxies
                .map(|t| t.rps)
                .reduce(f64::min)
                .or_else(|| measured.iter().map(|t| t.rps).reduce(f64::min))?;
            // Round to a figure people can repeat with --latency-rate.
            let half = slowest / 2.0;
            let step = if half >= 10_000.0 { 1000.0 } else { 100.0 };
            Some(((half / step).floor() * step).max(step))
        }
    }
}

/// Starts `target`'s proxy (if any), measures it with `spec`, stops it.
/// What every phase of a run measures with: the options, the run's directory, the bench
/// upstream and Warden's setup.
struct Bench<'a> {
    args: &'a Args,
    tmp: &'a Path,
    upstream: &'a mut Proc,
    wardens: &'a [warden::WardenSetup],
}

/// One phase: its load, a prefix for its progress lines, a suffix for its directories, and
/// whether its last round is profiled (`--perf`).
struct Phase<'a> {
    spec: &'a LoadSpec,
    label: String,
    dir: &'static str,
    profile: bool,
}

/// One target's runs in a phase, in round order, and the failure that stopped it (its round).
struct Measured {
    target: Target,
    runs: Vec<TargetReport>,
    failure: Option<(u32, anyhow::Error)>,
}

impl Bench<'_> {
    /// Runs `phase` `--rounds` times, targets in turn, so that a slow spell of the machine
    /// falls on every target alike; a target that fails is not run again, so the runs of
    /// every target are the first rounds.
    async fn rounds(
        &mut self,
        targets: &[Target],
        phase: &Phase<'_>,
        versions: &mut Versions,
    ) -> Result<Vec<Measured>> {
        let rounds = self.args.rounds;
        let mut measured: Vec<Measured> = targets
            .iter()
            .map(|&target| Measured {
                target,
                runs: Vec::new(),
                failure: None,
            })
            .collect();
        for round in 1..=rounds {
            for m in measured.iter_mut().filter(|m| m.failure.is_none()) {
                let name = m.target.name();
                let dir = self.tmp.join(format!("{name}{}-{round}", phase.dir));
                std::fs::create_dir_all(&dir)?;
                eprintln!(
                    "round {round}/{rounds}: {}measuring {name} ...",
                    phase.label
                );
                let profile = (phase.profile && round == rounds)
                    .then(|| ProfileFiles::new(&report_dir(self.args), name));
                let outcome = run_target(
                    m.target,
                    phase.spec,
                    &dir,
                    self.upstream,
                    versions,
                    Proxies {
                        wardens: self.wardens,
                        nginx_workers: self.args.nginx_workers,
                    },
                    profile,
                )
                .await;
                match outcome {
                    Ok(run) => m.runs.push(run),
                    Err(e) => m.failure = Some((round, e)),
                }
            }
        }
        Ok(measured)
    }
}

/// How the proxies under test are set up: the run's Wardens and nginx's worker count.
#[derive(Clone, Copy)]
struct Proxies<'a> {
    wardens: &'a [warden::WardenSetup],
    nginx_workers: usize,
}

async fn run_target(
    target: Target,
    spec: &LoadSpec,
    dir: &Path,
    upstream: &mut Proc,
    versions: &mut Versions,
    proxies: Proxies<'_>,
    profile: Option<ProfileFiles>,
) -> Result<TargetReport> {
    let wardens = proxies.wardens;
    match target {
        Target::Direct => run_direct(spec, upstream).await,
        Target::Nginx => {
            run_nginx(
                spec,
                dir,
                upstream,
                versions,
                proxies.nginx_workers,
                profile,
            )
            .await
        }
        Target::Hyper => run_bare_proxy(spec, dir, upstream, profile, None).await,
        Target::HyperAudit => {
            run_bare_proxy(spec, dir, upstream, profile, Some(BareAudit::Disk)).await
        }
        Target::HyperAuditProcess => {
            run_bare_proxy(spec, dir, upstream, profile, Some(BareAudit::Process)).await
        }
        Target::HyperInline => {
            run_bare_proxy(spec, dir, upstream, profile, Some(BareAudit::Inline)).await
        }
        Target::WardenDisk
        | Target::WardenProcess
        | Target::WardenBaseline
        | Target::WardenEnv
        | Target::WardenVault
        | Target::WardenSiem
        | Target::WardenTraced => match wardens.iter().find(|w| w.name == target.name()) {
            Some(setup) => run_warden(spec, setup, upstream, profile).await,
            None => bail!("{} was not set up", target.name()),
        },
        Target::Replicas1 | Target::Replicas3 => {
            match wardens.iter().find(|w| w.name == target.name()) {
                Some(setup) => {
                    let n = if target == Target::Replicas3 { 3 } else { 1 };
                    run_replicas(spec, dir, setup, n, upstream, profile).await
                }
                None => bail!("{} was not set up", target.name()),
            }
        }
        Target::McpDirect => {
            let spec = LoadSpec {
                path: http::Uri::from_static("/mcp"),
                ..mcp_spec(spec, "mcp-direct", "echo")
            };
            measure_target(&spec, &mut [], upstream, None, None).await
        }
        Target::McpWarden => match wardens.iter().find(|w| w.name == target.name()) {
            Some(setup) => {
                let mut proxy = setup.start()?;
                let spec = LoadSpec {
                    addr: setup.proxy,
                    path: http::Uri::from_static(warden::MCP_PATH),
                    ..mcp_spec(spec, "mcp-warden", warden::MCP_TOOL)
                };
                let result = measure_target(
                    &spec,
                    &mut [&mut proxy],
                    upstream,
                    profile,
                    Some(setup.admin),
                )
                .await;
                proxy.stop();
                result
            }
            None => bail!("{} was not set up", target.name()),
        },
    }
}

/// The MCP load: `tools/call` of `tool` (with a short text), in a session per connection.
fn mcp_spec(base: &LoadSpec, target: &str, tool: &'static str) -> LoadSpec {
    LoadSpec {
        target: target.into(),
        body: bytes::Bytes::from_static(b"measure the hop"),
        workload: Workload::Mcp { tool },
        ..base.clone()
    }
}

fn skip(report: &mut Report, target: Target, error: &anyhow::Error) {
    eprintln!("{}: not measured: {error:#}", target.name());
    report.skipped.push(Skipped {
        name: target.name().into(),
        reason: format!("{error:#}"),
    });
}

async fn run_direct(base: &LoadSpec, upstream: &mut Proc) -> Result<TargetReport> {
    let spec = LoadSpec {
        target: "direct".into(),
        ..base.clone()
    };
    measure_target(&spec, &mut [], upstream, None, None).await
}

async fn run_nginx(
    base: &LoadSpec,
    dir: &Path,
    upstream: &mut Proc,
    versions: &mut Versions,
    workers: usize,
    profile: Option<ProfileFiles>,
) -> Result<TargetReport> {
    let binary = nginx::locate()?;
    versions.nginx = nginx::version(&binary);
    let listen = process::free_loopback_addr()?;
    let mut proxy = nginx::start(&binary, dir, listen, base.addr, workers)?;
    let spec = LoadSpec {
        target: "nginx".into(),
        addr: listen,
        ..base.clone()
    };
    let result = measure_target(&spec, &mut [&mut proxy], upstream, profile, None).await;
    proxy.stop();
    result
}

/// How the bare proxy records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BareAudit {
    Disk,
    Process,
    Inline,
}

async fn run_bare_proxy(
    base: &LoadSpec,
    dir: &Path,
    upstream: &mut Proc,
    profile: Option<ProfileFiles>,
    audit: Option<BareAudit>,
) -> Result<TargetReport> {
    let name = match audit {
        None => "hyper",
        Some(BareAudit::Disk) => "hyper-audit",
        Some(BareAudit::Process) => "hyper-audit-process",
        Some(BareAudit::Inline) => "hyper-inline",
    };
    let listen = process::free_loopback_addr()?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("--serve-proxy")
        .arg(listen.to_string())
        .arg("--proxy-upstream")
        .arg(base.addr.to_string());
    if let Some(durability) = audit {
        // A fresh log per round, on the same filesystem as Warden's.
        let audit_dir = tempfile::Builder::new()
            .prefix("audit-")
            .tempdir_in(dir)
            .context("creating the bare proxy's audit directory")?
            .keep();
        cmd.arg("--proxy-audit").arg(audit_dir);
        match durability {
            BareAudit::Disk => {}
            BareAudit::Process => {
                cmd.arg("--proxy-audit-process");
            }
            BareAudit::Inline => {
                cmd.arg("--proxy-inline");
            }
        }
    }
    let mut proxy = Proc::spawn(name, cmd, &dir.join(format!("{name}.out")))?;
    proxy.wait_for_port(listen)?;
    let spec = LoadSpec {
        target: name.into(),
        addr: listen,
        ..base.clone()
    };
    let result = measure_target(&spec, &mut [&mut proxy], upstream, profile, None).await;
    proxy.stop();
    result
}

/// The OpenBao dev server `warden-vault` reads its credential from, holding the bench
/// upstream's key, when that target is to run; `warden-vault` is skipped when it cannot start.
fn start_openbao(dir: &Path, targets: &mut Vec<Target>, report: &mut Report) -> Option<OpenBao> {
    if !targets.contains(&Target::WardenVault) {
        return None;
    }
    let started = openbao::locate()
        .and_then(|binary| OpenBao::start(binary, &dir.join("openbao.out"), warden::UPSTREAM_KEY));
    match started {
        Ok(bao) => Some(bao),
        Err(e) => {
            skip(report, Target::WardenVault, &e.into());
            targets.retain(|&t| t != Target::WardenVault);
            None
        }
    }
}

/// Writes each Warden target's configuration (they share one data directory, hence Warden's
/// signing key) and issues the bench token with the first one; a Warden that cannot be set
/// up is skipped. `vault`: the address of the OpenBao `warden-vault` reads from.
fn prepare_wardens(
    dir: &Path,
    args: &Args,
    targets: &mut Vec<Target>,
    upstream: SocketAddr,
    vault: Option<String>,
    report: &mut Report,
) -> (Vec<warden::WardenSetup>, Option<HeaderValue>) {
    let mut wardens = Vec::new();
    for target in targets.clone() {
        let Some(located) = target.warden(args) else {
            continue;
        };
        let credential = match (target, &vault) {
            (Target::WardenVault, Some(address)) => warden::Credential::Vault {
                address: address.clone(),
            },
            (Target::WardenVault, None) => {
                skip(report, target, &anyhow::anyhow!("no OpenBao was started"));
                targets.retain(|&t| t != target);
                continue;
            }
            _ => warden::Credential::Env,
        };
        let prepared = located.and_then(|(binary, durability)| {
            let setup = warden::WardenSetup {
                name: target.name().to_owned(),
                binary,
                dir: dir.to_path_buf(),
                proxy: process::free_loopback_addr()?,
                admin: process::free_loopback_addr()?,
                upstream,
                durability,
                access_log: args.access_log,
                workers: args.warden_workers,
                mcp: target == Target::McpWarden,
                traces: target == Target::WardenTraced,
                credential,
                siem: match target {
                    Target::WardenSiem => Some(warden::siem_section(warden::discard_collector()?)),
                    _ => None,
                },
            };
            let policies = match (target, &args.baseline_policies) {
                (Target::WardenBaseline, Some(dir)) => dir,
                _ => &args.policies,
            };
            setup.prepare(policies)?;
            Ok(setup)
        });
        match prepared {
            Ok(setup) => {
                let version = warden::version(&setup.binary);
                match target {
                    Target::WardenBaseline => report.versions.warden_baseline = version,
                    _ => report.versions.warden = version,
                }
                wardens.push(setup);
            }
            Err(e) => {
                skip(report, target, &e);
                targets.retain(|&t| t != target);
            }
        }
    }
    let Some(first) = wardens.first() else {
        return (wardens, None);
    };
    let token = first
        .issue_token()
        .map_err(anyhow::Error::from)
        .and_then(|token| {
            HeaderValue::try_from(format!("Bearer {token}"))
                .context("the issued token is not a valid header value")
        });
    match token {
        Ok(token) => (wardens, Some(token)),
        Err(e) => {
            for setup in wardens {
                let target = targets.iter().copied().find(|t| t.name() == setup.name);
                if let Some(target) = target {
                    skip(report, target, &e);
                    targets.retain(|&t| t != target);
                }
            }
            (Vec::new(), None)
        }
    }
}

async fn run_warden(
    base: &LoadSpec,
    setup: &warden::WardenSetup,
    upstream: &mut Proc,
    profile: Option<ProfileFiles>,
) -> Result<TargetReport> {
    let mut proxy = setup.start()?;
    let spec = LoadSpec {
        target: setup.name.clone(),
        addr: setup.proxy,
        path: http::Uri::from_static("/openai/chat/completions"),
        ..base.clone()
    };
    let result = measure_target(
        &spec,
        &mut [&mut proxy],
        upstream,
        profile,
        Some(setup.admin),
    )
    .await;
    proxy.stop();
    result
}

/// `n` Wardens configured as `setup` (each its own listeners and audit log; one data
/// directory, so one agent-token key and one SQLite state file) behind one haproxy: the load
/// goes to haproxy, and the CPU and memory counted are haproxy's and every Warden's.
async fn run_replicas(
    base: &LoadSpec,
    dir: &Path,
    setup: &warden::WardenSetup,
    n: usize,
    upstream: &mut Proc,
    profile: Option<ProfileFiles>,
) -> Result<TargetReport> {
    let haproxy = warden_bench::haproxy::locate()?;
    let mut replicas = Vec::new();
    for i in 0..n {
        let replica = warden::WardenSetup {
            name: format!("{}-{i}", setup.name),
            proxy: process::free_loopback_addr()?,
            admin: process::free_loopback_addr()?,
            ..setup.clone()
        };
        replica.prepare(&setup.policies_dir())?;
        replicas.push(replica);
    }
    let mut procs = Vec::new();
    for replica in &replicas {
        procs.push(replica.start()?);
    }
    let listen = process::free_loopback_addr()?;
    let backends: Vec<SocketAddr> = replicas.iter().map(|r| r.proxy).collect();
    let lb_dir = dir.join(&setup.name);
    std::fs::create_dir_all(&lb_dir).with_context(|| format!("creating {}", lb_dir.display()))?;
    let mut lb = warden_bench::haproxy::start(&haproxy, &lb_dir, listen, &backends)?;
    let spec = LoadSpec {
        target: setup.name.clone(),
        addr: listen,
        path: http::Uri::from_static("/openai/chat/completions"),
        ..base.clone()
    };
    let mut measured: Vec<&mut Proc> = std::iter::once(&mut lb).chain(procs.iter_mut()).collect();
    let result = measure_target(&spec, &mut measured, upstream, profile, None).await;
    drop(measured);
    lb.stop();
    for p in &mut procs {
        p.stop();
    }
    result
}

/// Probes, runs the load, and samples the proxy's and upstream's CPU time over the measured
/// window (profiling the proxy then, if asked) and the proxy's peak memory at the end; with
/// Warden's admin address, also its audit wait and Vault reads over the window.
async fn measure_target(
    spec: &LoadSpec,
    proxies: &mut [&mut Proc],
    upstream: &mut Proc,
    profile: Option<ProfileFiles>,
    warden_admin: Option<SocketAddr>,
) -> Result<TargetReport> {
    loadgen::probe(spec).await?;
    let proxy_pids: Vec<u32> = proxies
        .iter()
        .flat_map(|p| process::process_tree(p.pid()))
        .collect();
    let sampler = tokio::spawn(sample_window(
        spec.warmup,
        spec.duration,
        proxy_pids.clone(),
        upstream.pid(),
        profile,
        warden_admin,
    ));
    let result = loadgen::run(spec).await?;
    let window = sampler.await.context("CPU sampler")?;
    for p in proxies.iter_mut() {
        p.check_running()?;
    }
    upstream.check_running()?;
    let peak = (!proxy_pids.is_empty()).then(|| {
        proxy_pids
            .iter()
            .filter_map(|&pid| process::peak_rss_kib(pid))
            .sum()
    });
    let proxy_cpu = (!proxy_pids.is_empty()).then_some(window.proxy_cpu_s);
    let mut report = TargetReport::new(
        &spec.target,
        &result,
        peak,
        proxy_cpu,
        window.upstream_cpu_s,
    );
    report.steal_percent = window.steal_percent;
    report.proxy_cpu_rounds = report.proxy_cpu_us_per_req.into_iter().collect();
    let (before, after) = (
        window.metrics_before.as_deref(),
        window.metrics_after.as_deref(),
    );
    report.audit = before
        .and_then(AuditCounters::parse)
        .zip(after.and_then(AuditCounters::parse))
        .and_then(|(b, a)| b.until(&a));
    report.vault_reads = VaultReads::between(
        before.and_then(vault_reads::parse),
        after.and_then(vault_reads::parse),
        result.requests,
    )
    .into_iter()
    .collect();
    report.trace_spans = TraceSpans::between(
        before.and_then(trace_spans::parse),
        after.and_then(trace_spans::parse),
    )
    .into_iter()
    .collect();
    Ok(report)
}

/// What was sampled over a measured window.
struct Window {
    /// CPU seconds of the proxy's processes.
    proxy_cpu_s: f64,
    /// CPU seconds of the bench upstream.
    upstream_cpu_s: f64,
    steal_percent: Option<f64>,
    /// Warden's `/metrics` at the window's start and end.
    metrics_before: Option<String>,
    metrics_after: Option<String>,
}

/// Waits out the warm-up, then samples CPU time (and Warden's `/metrics`) at both ends of
/// the measured window, profiling the proxy in between if asked.
async fn sample_window(
    warmup: Duration,
    duration: Duration,
    proxy_pids: Vec<u32>,
    upstream_pid: u32,
    profile: Option<ProfileFiles>,
    warden_admin: Option<SocketAddr>,
) -> Window {
    let start = Instant::now();
    tokio::time::sleep(warmup).await;
    let metrics_before = scrape_metrics(warden_admin).await;
    let cpu = || {
        (
            process::cpu_seconds(&proxy_pids),
            process::cpu_seconds(&[upstream_pid]),
            process::MachineTicks::now(),
        )
    };
    let before = cpu();
    let window_end = tokio::time::sleep_until((start + warmup + duration).into());
    match profile {
        Some(files) if !proxy_pids.is_empty() => {
            let (_, recorded) =
                tokio::join!(window_end, profile::record(&proxy_pids, duration, &files));
            match recorded {
                Ok(()) => eprintln!("profile: {}", files.report.display()),
                Err(e) => eprintln!("profile not recorded: {e}"),
            }
        }
        _ => window_end.await,
    }
    let after = cpu();
    let metrics_after = scrape_metrics(warden_admin).await;
    Window {
        proxy_cpu_s: after.0 - before.0,
        upstream_cpu_s: after.1 - before.1,
        steal_percent: before
            .2
            .zip(after.2)
            .and_then(|(b, a)| b.steal_percent_until(a)),
        metrics_before,
        metrics_after,
    }
}

/// Warden's `/metrics`, read off the runtime's threads (the load generator shares them).
async fn scrape_metrics(admin: Option<SocketAddr>) -> Option<String> {
    let admin = admin?;
    tokio::task::spawn_blocking(move || process::http_get_body(admin, "/metrics"))
        .await
        .ok()
        .flatten()
}
