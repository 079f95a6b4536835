//! The load harness's parts, each checked against the real thing it drives: the bench
//! upstream over loopback, Warden's own config loader, the nginx configuration text.

use http::HeaderValue;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use warden_bench::loadgen::{self, LoadSpec, Workload};
use warden_bench::report::{Machine, Params, RateLatency, Report, TargetReport, Versions};
use warden_bench::{HarnessError, nginx, process, upstream, warden};

async fn start_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(upstream::serve(listener));
    addr
}

fn spec(addr: SocketAddr, path: &'static str) -> LoadSpec {
    LoadSpec {
        target: "test".into(),
        addr,
        path: http::Uri::from_static(path),
        authorization: Some(HeaderValue::from_static(
            "Bearer not-checked-by-the-upstream",
        )),
        body: loadgen::chat_body(1024),
        connections: 4,
        warmup: Duration::from_millis(50),
        duration: Duration::from_millis(300),
        max_requests: 1_000_000,
        rate: None,
        workload: Workload::Chat,
    }
}

#[test]
fn chat_body_is_valid_json_of_the_requested_size() {
    let body = loadgen::chat_body(1024);
    assert_eq!(body.len(), 1024);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["model"], "gpt-4o-mini");
    assert_eq!(json["messages"][1]["role"], "user");
}

#[tokio::test]
async fn load_through_the_bench_upstream_measures_requests_without_errors() {
    let addr = start_upstream().await;
    let spec = spec(addr, "/v1/chat/completions");
    loadgen::probe(&spec).await.unwrap();
    let result = loadgen::run(&spec).await.unwrap();
    assert_eq!(result.errors, 0, "first error: {:?}", result.first_error);
    assert!(result.requests > 100, "only {} requests", result.requests);
    assert_eq!(result.histogram.len(), result.requests);
    assert!(result.latency_us(0.5) > 0);
    assert!(result.elapsed <= spec.duration);
    assert!(result.rps() > 0.0);
}

#[tokio::test]
async fn mcp_load_opens_a_session_per_connection_and_calls_the_echo_tool() {
    let addr = start_upstream().await;
    let mcp = LoadSpec {
        workload: Workload::Mcp { tool: "echo" },
        body: bytes::Bytes::from_static(b"hello"),
        ..spec(addr, "/mcp")
    };
    loadgen::probe(&mcp).await.unwrap();
    let result = loadgen::run(&mcp).await.unwrap();
    assert_eq!(result.errors, 0, "first error: {:?}", result.first_error);
    assert!(result.requests > 100, "only {} requests", result.requests);
    // The chat path is not the MCP server: a wrong route shows up as a failed probe.
    let wrong = LoadSpec {
        workload: Workload::Mcp { tool: "echo" },
        ..spec(addr, "/v1/chat/completions")
    };
    assert!(loadgen::probe(&wrong).await.is_err());
}

#[test]
fn mcp_calls_are_json_rpc_tools_call_of_echo() {
    let call: serde_json::Value =
        serde_json::from_slice(&loadgen::mcp_call(7, "echo", b"hi")).unwrap();
    assert_eq!(call["jsonrpc"], "2.0");
    assert_eq!(call["id"], 7);
    assert_eq!(call["method"], "tools/call");
    assert_eq!(call["params"]["name"], "echo");
    assert_eq!(call["params"]["arguments"]["text"], "hi");
}

#[tokio::test]
async fn load_stops_at_the_request_budget() {
    let addr = start_upstream().await;
    let spec = LoadSpec {
        warmup: Duration::ZERO,
        duration: Duration::from_secs(10),
        max_requests: 200,
        rate: None,
        ..spec(addr, "/v1/chat/completions")
    };
    let started = std::time::Instant::now();
    let result = loadgen::run(&spec).await.unwrap();
    assert!(result.requests <= 200);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn probe_refuses_a_target_that_does_not_reach_the_upstream_reply() {
    let addr = start_upstream().await;
    let err = loadgen::probe(&spec(addr, "/v1/embeddings"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, HarnessError::BadProbe { status: 404, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn run_reports_failure_when_every_request_fails() {
    let addr = start_upstream().await;
    let err = loadgen::run(&spec(addr, "/v1/embeddings"))
        .await
        .unwrap_err();
    match err {
        HarnessError::NoSuccess { errors, first, .. } => {
            assert!(errors > 0);
            assert!(first.contains("404"), "{first}");
        }
        other => panic!("expected NoSuccess, got {other}"),
    }
}

#[test]
fn nginx_config_keeps_one_worker_and_upstream_keepalive() {
    let listen: SocketAddr = "127.0.0.1:18080".parse().unwrap();
    let up: SocketAddr = "127.0.0.1:18081".parse().unwrap();
    let conf = nginx::config(std::path::Path::new("/tmp/x"), listen, up, 1);
    for line in [
        "daemon off;",
        "worker_processes 1;",
        "access_log off;",
        "server 127.0.0.1:18081;",
        "keepalive 64;",
        "listen 127.0.0.1:18080;",
        "proxy_http_version 1.1;",
        "proxy_set_header Connection \"\";",
    ] {
        assert!(conf.contains(line), "missing {line:?} in\n{conf}");
    }
}

#[test]
fn nginx_workers_are_given_or_auto() {
    let listen: SocketAddr = "127.0.0.1:18080".parse().unwrap();
    let up: SocketAddr = "127.0.0.1:18081".parse().unwrap();
    let dir = std::path::Path::new("/tmp/x");
    let two = nginx::config(dir, listen, up, 2);
    assert!(two.contains("worker_processes 2;"), "{two}");
    let auto = nginx::config(dir, listen, up, 0);
    assert!(auto.contains("worker_processes auto;"), "{auto}");
}

/// The setup of Warden target `name` in `dir`.
fn setup(
    dir: &std::path::Path,
    name: &str,
    durability: Option<&'static str>,
) -> warden::WardenSetup {
    warden::WardenSetup {
        name: name.into(),
        binary: PathBuf::from("warden"),
        dir: dir.to_path_buf(),
        proxy: "127.0.0.1:18090".parse().unwrap(),
        admin: "127.0.0.1:18091".parse().unwrap(),
        upstream: "127.0.0.1:18092".parse().unwrap(),
        durability,
        access_log: false,
        workers: 1,
        mcp: false,
        traces: false,
        credential: warden::Credential::Env,
        siem: None,
    }
}

#[test]
fn the_siem_target_config_ships_to_syslog() {
    let dir = tempfile::tempdir().unwrap();
    let setup = warden::WardenSetup {
        siem: Some(warden::siem_section("127.0.0.1:18093".parse().unwrap())),
        ..setup(dir.path(), "warden-siem", Some("process"))
    };
    let config = ::warden::config::load::parse(&setup.config(), None)
        .unwrap_or_else(|e| panic!("Warden refuses the generated config: {e}"));
    assert_eq!(config.siem.sinks.len(), 1);
    assert!(config.siem.sinks[0].syslog.is_some());
}

#[test]
fn the_mcp_target_config_routes_an_endpoint_to_the_bench_server_and_permits_its_calls() {
    let dir = tempfile::tempdir().unwrap();
    let setup = warden::WardenSetup {
        mcp: true,
        ..setup(dir.path(), "mcp-warden", Some("process"))
    };
    let config = ::warden::config::load::parse(&setup.config(), None)
        .unwrap_or_else(|e| panic!("Warden refuses the generated config: {e}"));
    assert_eq!(config.mcp.endpoints.len(), 1);
    assert_eq!(config.mcp.servers.len(), 1);
    // Warden's policy loader accepts the repository's policies with the bench permit.
    setup.prepare(&warden::repo_policies()).unwrap();
    ::warden::policy::PolicyEngine::load(&setup.policies_dir()).unwrap();
    assert!(setup.policies_dir().join("bench-mcp.cedar").is_file());
}

#[test]
fn the_traced_target_exports_every_request_to_the_bench_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let traced = warden::WardenSetup {
        traces: true,
        ..setup(dir.path(), "warden-traced", Some("process"))
    };
    let config = ::warden::config::load::parse(&traced.config(), None)
        .unwrap_or_else(|e| panic!("Warden refuses the generated config: {e}"));
    let traces = config.traces.expect("a traces section");
    assert_eq!(traces.endpoint, "http://127.0.0.1:18092/v1/traces");
    assert_eq!(traces.sample_ratio, 1.0, "every request");
    let untraced = setup(dir.path(), "warden-process", Some("process"));
    let config = ::warden::config::load::parse(&untraced.config(), None).unwrap();
    assert_eq!(config.traces, None);
}

#[test]
fn warden_configs_are_accepted_by_wardens_loader_with_auth_cedar_and_each_durability() {
    use ::warden::audit::config::Durability;
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("warden-disk", Some("disk"), Durability::Disk),
        ("warden-process", Some("process"), Durability::Process),
        // The baseline binary is given no key it may not know: it runs its own default.
        ("warden-baseline", None, Durability::Disk),
    ];
    let mut audit_dirs = Vec::new();
    for (name, durability, expected) in cases {
        let setup = setup(dir.path(), name, durability);
        let text = setup.config();
        assert_eq!(text.contains("durability"), durability.is_some(), "{text}");
        let config = ::warden::config::load::parse(&text, None)
            .unwrap_or_else(|e| panic!("Warden refuses the generated config: {e}"));
        assert_eq!(config.audit.durability, expected, "{name}");
        audit_dirs.push(config.audit.dir.clone().expect("an audit dir of its own"));
        assert_eq!(
            config.data_dir,
            dir.path().join("data"),
            "one data dir: one key, one token"
        );
        assert!(config.identity.required);
        assert_eq!(config.runtime.worker_threads, 1);
        assert!(config.identity.warden_issuer.enabled);
        assert!(
            !config.log.access,
            "the measured setup runs Warden's defaults: no access log"
        );
        assert_eq!(config.policy.dir, setup.policies_dir());
        assert_eq!(config.listen.proxy, setup.proxy);
        assert_eq!(config.routes.len(), 1);
        let route = &config.routes[0];
        assert_eq!(route.prefix, "/openai");
        assert_eq!(route.connector, "openai");
        assert_eq!(route.upstream.as_deref(), Some("http://127.0.0.1:18092/v1"));
        assert_eq!(
            route.credential,
            Some(::warden::secrets::CredentialSource::Env(
                warden_bench::warden::KEY_ENV.into()
            ))
        );
        assert!(setup.config_path().ends_with(format!("{name}.yaml")));
    }
    audit_dirs.dedup();
    assert_eq!(audit_dirs.len(), 3, "each Warden writes its own log");
}

/// One target's figures with the given rate, p50, p99 and peak memory.
fn target(name: &str, rps: f64, p50: u64, p99: u64, peak: Option<u64>) -> TargetReport {
    TargetReport {
        name: name.into(),
        requests: 1000,
        errors: 0,
        first_error: None,
        rps,
        p50_us: p50,
        p90_us: p50,
        p99_us: p99,
        p999_us: p99,
        max_us: p99,
        added_p50_us: None,
        added_p99_us: None,
        peak_rss_kib: peak,
        proxy_cpu_us_per_req: None,
        upstream_cpu_us_per_req: 1.0,
        rps_rounds: vec![rps],
        proxy_cpu_rounds: Vec::new(),
        steal_percent: None,
        steal_percent_rounds: Vec::new(),
        audit: None,
        vault_reads: Vec::new(),
        trace_spans: Vec::new(),
        at_rate: None,
    }
}

/// A report of `targets`, not yet compared.
fn report_of(targets: Vec<TargetReport>, rounds: u32) -> Report {
    Report {
        date: "2026-11-22T00:00:00Z".into(),
        machine: Machine {
            cores: 2,
            cpu_model: "test".into(),
            kernel: "test".into(),
            load_average: 0.0,
        },
        versions: Versions {
            harness: "0".into(),
            nginx: None,
            warden: None,
            warden_baseline: None,
        },
        params: Params {
            warmup_s: 1.0,
            duration_s: 1.0,
            connections: 32,
            body_bytes: 1024,
            client_threads: 1,
            upstream_threads: 1,
            rounds,
            warden_access_log: false,
            warden_workers: 1,
            nginx_workers: 1,
            latency_rate: None,
            baseline_bin: None,
        },
        targets,
        skipped: Vec::new(),
        process_marks: None,
        disk_marks: None,
        baseline: None,
        credentials: None,
        tracing: None,
    }
}

#[test]
fn process_durability_is_judged_against_nginx() {
    let mut report = report_of(
        vec![
            target("direct", 50_000.0, 300, 700, None),
            target("nginx", 20_000.0, 800, 1500, Some(12 * 1024)),
            target("warden-process", 10_000.0, 1500, 2100, Some(50 * 1024)),
        ],
        1,
    );
    report.compare();
    let warden = &report.targets[2];
    assert_eq!(warden.added_p50_us, Some(1200));
    assert_eq!(warden.added_p99_us, Some(1400));
    let c = report.process_marks.as_ref().unwrap();
    assert!((c.rps_ratio - 0.5).abs() < 1e-9);
    assert!((c.p99_ratio - 1.4).abs() < 1e-9);
    assert!(!c.rps_target_met);
    assert!(!c.p99_target_met);
    assert_eq!(c.memory_target_met, Some(false));
    assert!(!c.p99_at_same_rate);
    let table = report.table();
    assert!(table.contains("MISSED"), "{table}");
    assert!(table.contains("+1200"), "{table}");

    // With the fixed-rate phase, p99 is compared at the same rate; saturation stays as info.
    let at = |name: &str, p50: u64, p99: u64| {
        let t = target(name, 5_000.0, p50, p99, None);
        RateLatency::from_run(5_000.0, &t)
    };
    report.targets[0].at_rate = Some(at("direct", 100, 200));
    report.targets[1].at_rate = Some(at("nginx", 150, 400));
    report.targets[2].at_rate = Some(at("warden-process", 250, 500));
    report.compare();
    let warden = report.targets[2].at_rate.as_ref().unwrap();
    assert_eq!(warden.added_p50_us, Some(150));
    assert_eq!(warden.added_p99_us, Some(300));
    let c = report.process_marks.as_ref().unwrap();
    assert!(c.p99_at_same_rate);
    assert!((c.p99_ratio - 1.25).abs() < 1e-9);
    assert!((c.p99_ratio_saturated - 1.4).abs() < 1e-9);
    assert!(c.p99_target_met);
    let table = report.table();
    assert!(table.contains("latency at 5000 req/s offered"), "{table}");
    assert!(
        table.contains("process durability (warden-process/nginx): rps 0.50x (target >= 0.6: MISSED), p99 1.25x at the same rate (target <= 1.3: met), peak 50.0 MiB (target < 40 MiB: MISSED)"),
        "{table}"
    );
    assert!(report.disk_marks.is_none() && !table.contains("disk durability"));
}

#[test]
fn disk_durability_is_judged_against_the_floor_of_the_same_run() {
    let nginx = rounds_of("nginx", &[20_000.0, 22_000.0, 21_000.0], &[]);
    let floor = rounds_of("hyper-audit", &[10_000.0, 10_000.0, 10_500.0], &[]);
    let mut warden = rounds_of("warden-disk", &[9_000.0, 8_800.0, 9_450.0], &[]);
    warden.peak_rss_kib = Some(25 * 1024);
    let mut report = report_of(vec![nginx, floor, warden], 3);
    report.compare();
    let d = report.disk_marks.as_ref().unwrap();
    assert!((d.rps_ratio - 0.9).abs() < 1e-9, "{}", d.rps_ratio);
    let rounds: Vec<String> = d
        .rps_ratio_rounds
        .iter()
        .map(|r| format!("{r:.2}"))
        .collect();
    assert_eq!(
        rounds,
        ["0.90", "0.88", "0.90"],
        "each round against the floor's"
    );
    assert!(d.rps_target_met);
    assert_eq!(d.memory_target_met, Some(true));
    assert!((d.floor_rps_vs_nginx.unwrap() - 10_000.0 / 21_000.0).abs() < 1e-9);
    let table = report.table();
    assert!(
        table.contains("disk durability (warden-disk/hyper-audit, the durability floor): rps 0.90x (target >= 0.85: met), peak 25.0 MiB (target < 40 MiB: met); the floor served 0.48x nginx's rate\n  round by round: rps 0.90 0.88 0.90"),
        "{table}"
    );

    // Below 0.85 of the floor, the mark is missed.
    report.targets[2].rps = 8_000.0;
    report.compare();
    assert!(!report.disk_marks.as_ref().unwrap().rps_target_met);
    assert!(
        report
            .table()
            .contains("rps 0.80x (target >= 0.85: MISSED)")
    );

    // Without the floor in the run, no verdict.
    report.targets.remove(1);
    report.compare();
    assert!(report.disk_marks.is_none());
    assert!(!report.table().contains("disk durability"));
}

#[test]
fn the_vault_target_reads_its_credential_from_kv_with_a_token_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let vault_setup = warden::WardenSetup {
        credential: warden::Credential::Vault {
            address: "http://127.0.0.1:18200".into(),
        },
        ..setup(dir.path(), "warden-vault", Some("process"))
    };
    let config = ::warden::config::load::parse(&vault_setup.config(), None)
        .unwrap_or_else(|e| panic!("Warden refuses the generated config: {e}"));
    let vault = config.vault.as_ref().expect("a vault section");
    assert_eq!(vault.address, "http://127.0.0.1:18200");
    assert!(
        vault_setup.config().contains(warden::VAULT_TOKEN_ENV),
        "the token comes from the environment"
    );
    assert_eq!(config.routes.len(), 1);
    assert_eq!(
        config.routes[0].credential,
        Some(::warden::secrets::CredentialSource::Vault(
            ::warden::secrets::config::VaultSource {
                kv: Some(warden_bench::openbao::KV_SECRET.into()),
                field: Some(warden_bench::openbao::KV_FIELD.into()),
                ..Default::default()
            }
        ))
    );
    // The env target has no vault section.
    let env = setup(dir.path(), "warden-env", Some("process"));
    let config = ::warden::config::load::parse(&env.config(), None).unwrap();
    assert!(config.vault.is_none());
}

#[test]
fn a_credential_from_vault_is_compared_with_one_from_env_by_cpu_per_request() {
    use warden_bench::vault_reads::VaultReads;
    let cpu_rounds = |name: &str, rps: &[f64], cpu: &[f64]| {
        let runs = rps.iter().zip(cpu).map(|(&rps, &cpu)| {
            let mut t = target(name, rps, 1, 1, None);
            t.proxy_cpu_us_per_req = Some(cpu);
            t.proxy_cpu_rounds = vec![cpu];
            if name == "warden-vault" {
                t.vault_reads = vec![VaultReads {
                    in_window: 0,
                    since_start: 1,
                    requests: 1000,
                }];
            }
            t
        });
        TargetReport::median_by_rps(runs.collect()).unwrap()
    };
    let env = cpu_rounds("warden-env", &[10_000.0, 11_000.0], &[40.0, 40.0]);
    let vault = cpu_rounds("warden-vault", &[10_000.0, 10_000.0], &[40.0, 41.0]);
    assert_eq!(
        vault.proxy_cpu_rounds,
        [40.0, 41.0],
        "every round, in order"
    );
    assert_eq!(vault.vault_reads.len(), 2);
    let mut report = report_of(vec![env, vault], 2);
    report.compare();
    let c = report.credentials.as_ref().unwrap();
    assert_eq!(c.cpu_ratio, Some(1.0));
    assert_eq!(c.cpu_ratio_rounds, [1.0, 41.0 / 40.0]);
    assert_eq!(c.cpu_within_tolerance, Some(true));
    assert_eq!(c.vault_reads_in_windows, 0);
    assert_eq!(c.vault_reads_per_start, 1);
    assert_eq!(c.vault_requests, 2000);
    let table = report.table();
    assert!(
        table.contains("credential from Vault (warden-vault/warden-env): CPU per request 1.00x (within 5%), rps 1.00x; 0 reads from Vault in the measured windows (2000 requests), at most 1 per Warden start"),
        "{table}"
    );
    assert!(
        table.contains("round by round: CPU per request 1.00 1.02; rps 1.00 0.91"),
        "{table}"
    );
    assert!(
        table.contains(
            "warden-vault: reads from Vault, round by round: 0 in the window (1 since start)"
        ),
        "{table}"
    );
}

#[test]
fn the_baseline_binary_is_compared_by_cpu_per_request() {
    let mut warden = rounds_of("warden-disk", &[9_000.0, 10_000.0], &[]);
    let mut baseline = rounds_of("warden-baseline", &[10_000.0, 10_000.0], &[]);
    warden.proxy_cpu_us_per_req = Some(84.0);
    baseline.proxy_cpu_us_per_req = Some(80.0);
    let mut report = report_of(vec![warden, baseline], 2);
    report.params.baseline_bin = Some("/work/warden-before".into());
    report.compare();
    let b = report.baseline.as_ref().unwrap();
    assert!((b.cpu_ratio.unwrap() - 1.05).abs() < 1e-9);
    assert_eq!(b.cpu_within_tolerance, Some(true));
    assert_eq!(b.rps_ratio_rounds, [0.9, 1.0]);
    let table = report.table();
    assert!(
        table.contains("warden-baseline: /work/warden-before"),
        "{table}"
    );
    assert!(
        table.contains("warden-disk/warden-baseline: CPU per request 1.05x (within 5%), rps 0.90x (rounds 0.90 1.00)"),
        "{table}"
    );
    report.targets[0].proxy_cpu_us_per_req = Some(85.0);
    report.compare();
    assert_eq!(
        report.baseline.as_ref().unwrap().cpu_within_tolerance,
        Some(false)
    );
    assert!(report.table().contains("(NOT within 5%)"));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["baseline"]["cpu_within_tolerance"], false, "{json}");
}

#[tokio::test]
async fn open_loop_keeps_to_the_offered_rate() {
    let addr = start_upstream().await;
    let spec = LoadSpec {
        warmup: Duration::from_millis(100),
        duration: Duration::from_millis(1000),
        rate: Some(400.0),
        ..spec(addr, "/v1/chat/completions")
    };
    let result = loadgen::run(&spec).await.unwrap();
    assert_eq!(result.errors, 0, "first error: {:?}", result.first_error);
    // 400 req/s for 1 s; a closed loop on loopback would send thousands.
    assert!(
        (330..=430).contains(&result.requests),
        "{} requests at 400 req/s for 1 s",
        result.requests
    );
    assert!(result.latency_us(0.5) < 50_000);
}

#[tokio::test]
async fn open_loop_charges_a_late_request_from_when_it_was_due() {
    // A target that answers each request after 50 ms, offered 100 req/s over 2 connections:
    // each connection can do 20 req/s of its 50 due, so requests fall ever further behind
    // schedule, and their latency must grow with it rather than stay at 50 ms.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"ok")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let spec = LoadSpec {
        connections: 2,
        warmup: Duration::ZERO,
        duration: Duration::from_millis(1000),
        rate: Some(100.0),
        ..spec(addr, "/v1/chat/completions")
    };
    let result = loadgen::run(&spec).await.unwrap();
    assert!(result.requests > 10, "{} requests", result.requests);
    assert!(
        result.latency_us(0.99) > 200_000,
        "p99 {} µs: late requests must count from when they were due",
        result.latency_us(0.99)
    );
}

#[test]
fn proc_readings_see_this_process() {
    let me = std::process::id();
    assert!(process::peak_rss_kib(me).unwrap() > 0);
    assert!(process::process_tree(me).contains(&me));
    let busy_until = std::time::Instant::now() + Duration::from_millis(50);
    while std::time::Instant::now() < busy_until {}
    assert!(process::cpu_seconds(&[me]) > 0.0);
}

#[test]
fn steal_is_read_from_the_cpu_line_of_proc_stat() {
    let stat = "cpu  4204536 0 704434 2316946 85815 0 222908 35912 0 0\n\
                cpu0 2102268 0 352217 1158473 42907 0 111454 17956 0 0\n\
                intr 1 2 3\n";
    let before = process::MachineTicks::parse(stat).unwrap();
    assert_eq!(before.steal, 35912);
    assert_eq!(
        before.total,
        4204536 + 704434 + 2316946 + 85815 + 222908 + 35912
    );
    let later = process::MachineTicks {
        total: before.total + 1000,
        steal: before.steal + 173,
    };
    assert_eq!(before.steal_percent_until(later), Some(17.3));
    assert_eq!(
        later.steal_percent_until(before),
        None,
        "counters went back"
    );
    assert_eq!(before.steal_percent_until(before), None, "no time passed");
    assert!(process::MachineTicks::parse("intr 1 2 3\n").is_none());
    assert!(process::MachineTicks::parse("cpu  1 2 3\n").is_none());
    assert!(
        process::MachineTicks::now().is_some(),
        "this machine has /proc/stat"
    );
}

#[test]
fn a_run_the_host_stole_from_is_flagged_by_target_and_round() {
    let round = |rps: f64, steal: f64| {
        let mut t = target("warden-process", rps, 1, 1, None);
        t.steal_percent = Some(steal);
        t
    };
    let warden = TargetReport::median_by_rps(vec![
        round(300.0, 0.5),
        round(100.0, 17.3),
        round(200.0, 1.0),
    ])
    .unwrap();
    assert_eq!(
        warden.steal_percent,
        Some(1.0),
        "the median round's own window"
    );
    assert_eq!(warden.steal_percent_rounds, vec![0.5, 17.3, 1.0]);
    let mut nginx = target("nginx", 400.0, 1, 1, None);
    nginx.steal_percent = Some(0.2);
    let mut report = report_of(vec![nginx.clone(), warden], 3);
    report.compare();
    let warning = report.steal_warning().expect("a warning");
    assert!(warning.contains("warden-process up to 17.3%"), "{warning}");
    assert!(!warning.contains("nginx"), "{warning}");
    assert!(report.table().contains(&warning));

    let quiet = report_of(vec![nginx], 1);
    assert_eq!(quiet.steal_warning(), None);
    assert!(!quiet.table().contains("steal"));

    // A fixed-rate window alone can carry it.
    let mut at_rate = target("hyper", 1000.0, 1, 1, None);
    at_rate.steal_percent = Some(9.0);
    let mut hyper = target("hyper", 400.0, 1, 1, None);
    hyper.at_rate = Some(RateLatency::from_run(1000.0, &at_rate));
    let flagged = report_of(vec![hyper], 1);
    assert!(
        flagged
            .steal_warning()
            .unwrap()
            .contains("hyper up to 9.0%")
    );
}

#[test]
fn median_round_is_reported_with_every_rounds_rate() {
    let round = |rps: f64| target("nginx", rps, rps as u64, 0, None);
    let median =
        TargetReport::median_by_rps(vec![round(300.0), round(100.0), round(200.0)]).unwrap();
    assert_eq!(median.rps, 200.0);
    assert_eq!(median.p50_us, 200, "the figures come from the median round");
    assert_eq!(median.rps_rounds, vec![300.0, 100.0, 200.0]);
    assert!(TargetReport::median_by_rps(Vec::new()).is_none());
}

/// A target measured in rounds of the given rates and fixed-rate p99s, as the harness
/// reports it: its median rounds, carrying every round's figure.
fn rounds_of(name: &str, rps_rounds: &[f64], p99_rounds: &[u64]) -> TargetReport {
    let runs = rps_rounds.iter().map(|&rps| target(name, rps, 1, 1, None));
    let mut median = TargetReport::median_by_rps(runs.collect()).unwrap();
    let at_rate = p99_rounds
        .iter()
        .map(|&p99| RateLatency::from_run(1000.0, &target(name, 1000.0, 1, p99, None)));
    median.at_rate = RateLatency::median_by_p99(at_rate.collect());
    median
}

#[test]
fn medians_are_judged_and_every_round_is_shown_paired() {
    let nginx = rounds_of(
        "nginx",
        &[20_000.0, 24_000.0, 22_000.0],
        &[2000, 4000, 3000],
    );
    let warden = rounds_of(
        "warden-process",
        &[12_000.0, 12_000.0, 13_200.0],
        &[3000, 4000, 9000],
    );
    let at = warden.at_rate.as_ref().unwrap();
    assert_eq!(at.p99_us, 4000, "median round by p99");
    assert_eq!(at.p99_rounds, [3000, 4000, 9000], "in round order");
    let mut report = report_of(vec![nginx, warden], 3);
    report.compare();
    let c = report.process_marks.as_ref().unwrap();
    assert!(
        (c.rps_ratio - 12_000.0 / 22_000.0).abs() < 1e-9,
        "ratio of the medians"
    );
    assert!(!c.rps_target_met);
    let rounds: Vec<String> = c
        .rps_ratio_rounds
        .iter()
        .map(|r| format!("{r:.2}"))
        .collect();
    assert_eq!(
        rounds,
        ["0.60", "0.50", "0.60"],
        "each round against its own nginx run"
    );
    assert!((c.p99_ratio - 4000.0 / 3000.0).abs() < 1e-9);
    assert_eq!(c.p99_ratio_rounds, [1.5, 1.0, 3.0]);
    let table = report.table();
    assert!(
        table.contains("round by round: rps 0.60 0.50 0.60; p99 at the same rate 1.50 1.00 3.00"),
        "{table}"
    );
}

#[test]
fn a_target_that_stopped_early_is_paired_on_the_rounds_it_ran() {
    let nginx = rounds_of("nginx", &[20_000.0, 24_000.0, 22_000.0], &[2000]);
    let warden = rounds_of("warden-process", &[10_000.0], &[]);
    let mut report = report_of(vec![nginx, warden], 3);
    report.compare();
    let c = report.process_marks.as_ref().unwrap();
    assert_eq!(c.rps_ratio_rounds, [0.5]);
    assert!(
        c.p99_ratio_rounds.is_empty(),
        "warden has no fixed-rate round"
    );
    assert!(!c.p99_at_same_rate);
    assert!(RateLatency::median_by_p99(Vec::new()).is_none());
}

#[test]
fn the_table_tells_how_long_each_warden_waited_for_its_audit_log() {
    let mut warden = target("warden-disk", 100.0, 1, 1, None);
    warden.audit = Some(warden_bench::audit_share::AuditShare {
        wait_us: 2021.4,
        request_us: 4390.0,
        share_percent: 46.05,
        commit_us: 901.0,
        records_per_commit: 24.8,
    });
    // The fixed-rate phase's window has its own figures.
    let mut at_rate = warden.clone();
    at_rate.audit = Some(warden_bench::audit_share::AuditShare {
        wait_us: 800.0,
        request_us: 1000.0,
        share_percent: 80.0,
        commit_us: 400.0,
        records_per_commit: 6.0,
    });
    warden.at_rate = Some(RateLatency::from_run(100.0, &at_rate));
    let mut report = report_of(vec![target("nginx", 200.0, 1, 1, None), warden], 1);
    report.compare();
    let table = report.table();
    assert!(
        table.contains("warden-disk: a decision waited 2021 µs on average for its audit record, 46% of its 4390 µs in Warden; commits took 901 µs, 24.8 records each"),
        "{table}"
    );
    assert!(
        table.contains("warden-disk at 100 req/s: a decision waited 800 µs on average for its audit record, 80% of its 1000 µs in Warden; commits took 400 µs, 6.0 records each"),
        "{table}"
    );
    let json = serde_json::to_value(&report).expect("json");
    let audit = &json["targets"][1]["audit"];
    assert_eq!(audit["records_per_commit"], 24.8, "{json}");
    let audit = &json["targets"][1]["at_rate"]["audit"];
    assert_eq!(audit["records_per_commit"], 6.0, "{json}");
    // Without the figures (nginx, or Warden's metrics unreadable), no line and no field.
    let quiet = report_of(vec![target("warden-process", 100.0, 1, 1, None)], 1);
    assert!(!quiet.table().contains("audit record"));
    let json = serde_json::to_value(&quiet).expect("json");
    assert!(json["targets"][0].get("audit").is_none(), "{json}");
}
