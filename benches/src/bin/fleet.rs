//! `fleet [--seconds N] [--connections N] [--rounds N]`: what fleet controls cost the request
//! path, in one run: the same chat load through Warden with rate limits, budgets and session
//! facts off, and on (an agent and a model rate rule, agent and fleet budgets read by the
//! example budget policy, session tags read by the baseline session rule, and all three shared
//! through the state store on their tick). Rules and budgets are set far above the load, so
//! every request is admitted and both setups forward the same requests; the figure compared is
//! Warden's CPU time per request (its process tree, measured window only), and the mark is
//! on ÷ off ≤ 1.10. Rounds alternate off and on so that machine noise falls on both.
//!
//! The upstream is the bench upstream on a thread of this process; Warden is
//! `target/release/warden` (or `$WARDEN_BIN`), one worker, `audit.durability: process`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use http::HeaderValue;
use warden_bench::loadgen::{self, LoadSpec, Workload};
use warden_bench::process::{self, Proc, free_loopback_addr};
use warden_bench::upstream;
use warden_bench::warden::{Credential, WardenSetup, locate, repo_policies};

/// The mark: fleet controls on may cost at most this much more CPU per request.
const MARK: f64 = 1.10;

/// The sections that turn fleet controls on, far above the load.
const FLEET_ON: &str = r#"rate_limits:
  rules:
    - { scope: agent, rate: 1000000, burst: 1000000 }
    - { scope: model, rate: 1000000, burst: 1000000 }
budgets:
  limits:
    - { scope: agent, name: '*', period: day, tokens: 1000000000000 }
    - { scope: fleet, period: month, usd: 1000000000 }
sessions:
  tags:
    'Model::"openai/gpt-4o-mini"': [private]
    'Model::"openai/gpt-4o"': [external]
"#;

/// The session rule's id in the baseline pack: dropped from the "off" copy, so that nothing
/// reads `context.session` there.
const SESSION_RULE: &str = "baseline-private-then-external-approval";

const BUDGET_POLICY: &str = r#"@id("bench-budget")
@reason("the agent's budget is spent")
forbid (principal is Agent, action in [Action::"llm:chat", Action::"llm:embed"], resource)
when { context has budget && context.budget.exceeded };
"#;

struct Args {
    seconds: u64,
    connections: usize,
    rounds: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut args = Args {
        seconds: 10,
        connections: 32,
        rounds: 2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--seconds" => args.seconds = value()?.parse()?,
            "--connections" => args.connections = value()?.parse()?,
            "--rounds" => args.rounds = value()?.parse()?,
            other => bail!(
                "unknown argument {other:?}; usage: fleet [--seconds N] [--connections N] [--rounds N]"
            ),
        }
    }
    Ok(args)
}

/// One measured window: requests, CPU µs per request, p99 µs.
struct Measured {
    rps: f64,
    cpu_us: f64,
    p99_us: u64,
}

fn main() -> anyhow::Result<()> {
    let args = args()?;
    let upstream = free_loopback_addr()?;
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("upstream runtime");
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind(upstream).await.expect("bind");
            upstream::serve(listener).await.expect("bench upstream");
        });
    });
    let dir = tempfile::tempdir()?;
    let binary = locate()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let targets = ["fleet-off", "fleet-on"];
    let mut results: Vec<Vec<Measured>> = vec![Vec::new(), Vec::new()];
    for round in 0..args.rounds {
        for (i, name) in targets.iter().enumerate() {
            let setup = setup(dir.path(), &binary, name, upstream)?;
            let mut warden = setup.start()?;
            let token = setup.issue_token()?;
            let measured = runtime.block_on(measure(&args, &setup, &token, &mut warden))?;
            println!(
                "round {round} {name:<9} {:>8.0} req/s {:>7.1} CPU µs/req  p99 {:>6} µs",
                measured.rps, measured.cpu_us, measured.p99_us
            );
            warden.stop();
            results[i].push(measured);
        }
    }
    let mean = |m: &[Measured], f: fn(&Measured) -> f64| {
        m.iter().map(f).sum::<f64>() / m.len().max(1) as f64
    };
    println!();
    println!("| target | req/s | CPU µs/req | p99 µs |");
    println!("|---|---|---|---|");
    for (name, m) in targets.iter().zip(&results) {
        println!(
            "| {name} | {:.0} | {:.1} | {:.0} |",
            mean(m, |x| x.rps),
            mean(m, |x| x.cpu_us),
            mean(m, |x| x.p99_us as f64)
        );
    }
    let ratio = mean(&results[1], |x| x.cpu_us) / mean(&results[0], |x| x.cpu_us);
    let verdict = if ratio <= MARK { "meets" } else { "MISSES" };
    println!("\nCPU per request, on ÷ off: {ratio:.3} ({verdict} the mark ≤ {MARK:.2})");
    if ratio > MARK {
        std::process::exit(1);
    }
    Ok(())
}

/// Warden `name` (`fleet-off` or `fleet-on`), its configuration and policies written.
fn setup(
    dir: &Path,
    binary: &Path,
    name: &str,
    upstream: SocketAddr,
) -> anyhow::Result<WardenSetup> {
    let setup = WardenSetup {
        name: name.to_owned(),
        binary: binary.to_path_buf(),
        dir: dir.to_path_buf(),
        proxy: free_loopback_addr()?,
        admin: free_loopback_addr()?,
        upstream,
        durability: Some("process"),
        access_log: false,
        workers: 1,
        mcp: false,
        traces: false,
        credential: Credential::Env,
        siem: None,
    };
    setup.prepare(&repo_policies())?;
    let baseline = setup.policies_dir().join("baseline.cedar");
    if name == "fleet-on" {
        std::fs::OpenOptions::new()
            .append(true)
            .open(setup.config_path())?
            .write_all(FLEET_ON.as_bytes())?;
        std::fs::write(
            setup.policies_dir().join("bench-budget.cedar"),
            BUDGET_POLICY,
        )?;
    } else {
        // The copy is made once per run: the rule is gone after the first round.
        let pack = std::fs::read_to_string(&baseline)?;
        if let Some(start) = pack.find(&format!("@id(\"{SESSION_RULE}\")")) {
            let end = start + pack[start..].find("};").context("the rule ends")? + 2;
            std::fs::write(&baseline, format!("{}{}", &pack[..start], &pack[end..]))?;
        }
    }
    Ok(setup)
}

/// Runs the load against `setup` and measures Warden's CPU over the window after warm-up.
async fn measure(
    args: &Args,
    setup: &WardenSetup,
    token: &str,
    warden: &mut Proc,
) -> anyhow::Result<Measured> {
    let spec = LoadSpec {
        target: setup.name.clone(),
        addr: setup.proxy,
        path: "/openai/chat/completions".parse()?,
        authorization: Some(HeaderValue::from_str(&format!("Bearer {token}"))?),
        body: loadgen::chat_body(1024),
        connections: args.connections,
        warmup: Duration::from_secs(2),
        duration: Duration::from_secs(args.seconds),
        max_requests: u64::MAX,
        rate: None,
        workload: Workload::Chat,
    };
    loadgen::probe(&spec).await?;
    let pids = process::process_tree(warden.pid());
    let sampler = {
        let (warmup, duration, pids) = (spec.warmup, spec.duration, pids.clone());
        tokio::spawn(async move {
            tokio::time::sleep(warmup).await;
            let before = process::cpu_seconds(&pids);
            tokio::time::sleep(duration).await;
            process::cpu_seconds(&pids) - before
        })
    };
    let result = loadgen::run(&spec).await?;
    let cpu = sampler.await?;
    warden.check_running()?;
    if result.errors > 0 {
        bail!(
            "{}: {} requests failed (first: {:?}); both setups must forward every request",
            setup.name,
            result.errors,
            result.first_error
        );
    }
    Ok(Measured {
        rps: result.rps(),
        cpu_us: cpu * 1e6 / result.requests.max(1) as f64,
        p99_us: result.latency_us(0.99),
    })
}
