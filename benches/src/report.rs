//! The harness's report: a table for people, the same figures as JSON for docs and CI.

use serde::Serialize;
use std::fmt::Write as _;

use crate::audit_share::AuditShare;
use crate::loadgen::LoadResult;
use crate::trace_spans::TraceSpans;
use crate::vault_reads::VaultReads;

/// `process` durability: Warden must serve at least this share of nginx's requests per second.
pub const RPS_RATIO_TARGET: f64 = 0.6;
/// `process` durability: Warden's p99 latency may be at most this multiple of nginx's (at the
/// same request rate).
pub const P99_RATIO_TARGET: f64 = 1.3;
/// `disk` durability: Warden must serve at least this share of the durability floor's
/// (`hyper-audit`'s) requests per second, measured in the same run.
pub const FLOOR_RATIO_TARGET: f64 = 0.85;
/// Warden's peak resident memory must stay below this, MiB, in both durabilities.
pub const PEAK_MIB_TARGET: f64 = 40.0;
/// Warden's CPU per request against the baseline binary's: within this share counts as the
/// same.
pub const BASELINE_CPU_TOLERANCE: f64 = 0.05;
/// Above this share of the machine's time stolen by the host in a measured window, the
/// report warns that its figures are not a quiet machine's.
pub const STEAL_WARN_PERCENT: f64 = 2.0;

/// The Warden in `process` durability.
pub const WARDEN_PROCESS: &str = "warden-process";
/// The Warden in `disk` durability.
pub const WARDEN_DISK: &str = "warden-disk";
/// Another Warden binary, given by path (`--baseline-bin`), run with its own defaults.
pub const WARDEN_BASELINE: &str = "warden-baseline";
/// The durability floor: the bare proxy recording through Warden's audit log in `disk`
/// durability.
pub const FLOOR: &str = "hyper-audit";
/// Warden (`process` durability) exporting traces over OTLP (every request sampled).
pub const WARDEN_TRACED: &str = "warden-traced";
/// Warden (`process` durability) with the route's credential in an environment variable.
pub const WARDEN_ENV: &str = "warden-env";
/// The same Warden with the route's credential in Vault (OpenBao KV), cached after the first
/// request.
pub const WARDEN_VAULT: &str = "warden-vault";

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// When the run started (RFC 3339, UTC).
    pub date: String,
    pub machine: Machine,
    pub versions: Versions,
    pub params: Params,
    pub targets: Vec<TargetReport>,
    /// Targets that could not be measured, and why.
    pub skipped: Vec<Skipped>,
    /// The marks of `process` durability: `warden-process` against nginx, when both ran.
    pub process_marks: Option<ProcessMarks>,
    /// The marks of `disk` durability: `warden-disk` against the durability floor, when both
    /// ran.
    pub disk_marks: Option<DiskMarks>,
    /// `warden-disk` against the baseline binary, when both ran.
    pub baseline: Option<BaselineComparison>,
    /// `warden-vault` against `warden-env`, when both ran.
    pub credentials: Option<CredentialComparison>,
    /// `warden-traced` against `warden-process`, when both ran.
    pub tracing: Option<TracingComparison>,
}

/// Where the run happened.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu_model: String,
    pub kernel: String,
    /// 1-minute load average when the run started: above half the cores, other work was
    /// competing for the CPU and the figures are not comparable.
    pub load_average: f64,
}

/// What was measured.
#[derive(Debug, Clone, Serialize)]
pub struct Versions {
    pub harness: String,
    pub nginx: Option<String>,
    pub warden: Option<String>,
    /// `--version` of the binary run as `warden-baseline`.
    pub warden_baseline: Option<String>,
}

/// How the load was shaped.
#[derive(Debug, Clone, Serialize)]
pub struct Params {
    pub warmup_s: f64,
    pub duration_s: f64,
    pub connections: usize,
    pub body_bytes: usize,
    pub client_threads: usize,
    pub upstream_threads: usize,
    /// How often the sequence of targets ran; each target reports its median round.
    pub rounds: u32,
    /// Warden's `log.access` (false in the measured setup, as Warden's default).
    pub warden_access_log: bool,
    /// Warden's `runtime.worker_threads` (1 in the measured setup, as nginx's one worker).
    pub warden_workers: usize,
    /// nginx's `worker_processes` (1 in the measured setup; 0: `auto`).
    pub nginx_workers: usize,
    /// Requests per second offered to every target in the fixed-rate latency phase; `None`
    /// when it did not run.
    pub latency_rate: Option<f64>,
    /// The binary run as `warden-baseline`, when one was given.
    pub baseline_bin: Option<String>,
}

/// One target's figures.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    /// `direct`, `nginx`, `hyper`, `hyper-audit`, `warden-disk`, `warden-process`,
    /// `warden-baseline`, `mcp-direct`, `mcp-warden`, `warden-env` or `warden-vault`.
    pub name: String,
    pub requests: u64,
    pub errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    pub rps: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    /// p50 minus the direct run's p50 (µs), when the direct run happened.
    pub added_p50_us: Option<i64>,
    /// p99 minus the direct run's p99 (µs).
    pub added_p99_us: Option<i64>,
    /// Peak resident memory (VmHWM) of the proxy's processes, KiB.
    pub peak_rss_kib: Option<u64>,
    /// CPU time the proxy's processes spent per measured request, µs.
    pub proxy_cpu_us_per_req: Option<f64>,
    /// CPU time the bench upstream spent per measured request, µs.
    pub upstream_cpu_us_per_req: f64,
    /// Requests per second of every round, in order (the figures above are the median's).
    pub rps_rounds: Vec<f64>,
    /// CPU µs per request of every round, in order, where the proxy's CPU was measured.
    pub proxy_cpu_rounds: Vec<f64>,
    /// Share of the machine's CPU time the hypervisor gave to other guests (steal) during
    /// the measured window, percent; `None` where `/proc/stat` cannot tell.
    pub steal_percent: Option<f64>,
    /// The same for every round, in order.
    pub steal_percent_rounds: Vec<f64>,
    /// Wardens only: how long decisions waited for the audit log over the measured window,
    /// from the target's `/metrics`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditShare>,
    /// Wardens with a credential from Vault: its reads from Vault, every round, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vault_reads: Vec<VaultReads>,
    /// Traced Wardens: what became of their spans, every round, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trace_spans: Vec<TraceSpans>,
    /// Latency at the fixed rate every target was offered (open loop), when measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_rate: Option<RateLatency>,
}

/// Latency at a fixed request rate: requests leave on schedule whatever the target does, and
/// a late one counts from when it was due.
#[derive(Debug, Clone, Serialize)]
pub struct RateLatency {
    /// Offered requests per second.
    pub rate: f64,
    /// Requests per second that completed (below `rate` when the target could not keep up).
    pub achieved_rps: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    /// p50 minus the direct run's p50 at the same rate (µs).
    pub added_p50_us: Option<i64>,
    /// p99 minus the direct run's p99 at the same rate (µs).
    pub added_p99_us: Option<i64>,
    /// CPU time the proxy's processes spent per request at this rate, µs.
    pub proxy_cpu_us_per_req: Option<f64>,
    pub errors: u64,
    /// p99 of every round at this rate, in order (the figures above are the median's).
    pub p99_rounds: Vec<u64>,
    /// Steal during the median round's window, percent (see [`TargetReport`]).
    pub steal_percent: Option<f64>,
    /// Wardens only: the audit wait during the median round's window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditShare>,
}

impl RateLatency {
    /// The latency figures of an open-loop run at `rate`.
    pub fn from_run(rate: f64, run: &TargetReport) -> RateLatency {
        RateLatency {
            rate,
            achieved_rps: run.rps,
            p50_us: run.p50_us,
            p90_us: run.p90_us,
            p99_us: run.p99_us,
            p999_us: run.p999_us,
            max_us: run.max_us,
            added_p50_us: None,
            added_p99_us: None,
            proxy_cpu_us_per_req: run.proxy_cpu_us_per_req,
            errors: run.errors,
            p99_rounds: vec![run.p99_us],
            steal_percent: run.steal_percent,
            audit: run.audit,
        }
    }

    /// The round with the median p99 (the lower middle one for an even count), carrying
    /// every round's p99; `None` when there were no rounds.
    pub fn median_by_p99(mut rounds: Vec<RateLatency>) -> Option<RateLatency> {
        let all: Vec<u64> = rounds.iter().map(|r| r.p99_us).collect();
        rounds.sort_by_key(|r| r.p99_us);
        let middle = rounds.len().checked_sub(1)? / 2;
        let mut median = rounds.swap_remove(middle);
        median.p99_rounds = all;
        Some(median)
    }
}

/// A target that was not measured.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub name: String,
    pub reason: String,
}

/// `process` durability's marks: `warden-process` against nginx.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessMarks {
    /// warden rps / nginx rps, both saturated (target ≥ 0.6).
    pub rps_ratio: f64,
    /// warden p99 / nginx p99 at the same offered rate (target ≤ 1.3); at saturation when
    /// the fixed-rate phase did not run.
    pub p99_ratio: f64,
    /// Whether `p99_ratio` compares the fixed-rate runs (true) or the saturated ones.
    pub p99_at_same_rate: bool,
    /// warden p99 / nginx p99 at saturation, where each runs at its own (different) rate
    /// and latency is mostly queueing: for information.
    pub p99_ratio_saturated: f64,
    /// warden rps / nginx rps of each round (the two ran one after the other): the spread
    /// behind `rps_ratio`, which compares the median rounds.
    pub rps_ratio_rounds: Vec<f64>,
    /// warden p99 / nginx p99 at the same rate, each round.
    pub p99_ratio_rounds: Vec<f64>,
    /// Warden's peak resident memory, MiB (target < 40).
    pub warden_peak_mib: Option<f64>,
    pub rps_target_met: bool,
    pub p99_target_met: bool,
    pub memory_target_met: Option<bool>,
}

/// `disk` durability's marks: `warden-disk` against the durability floor (`hyper-audit`, the
/// bare proxy that only makes each decision record durable before forwarding, with Warden's
/// audit log in the same durability), measured in the same run.
#[derive(Debug, Clone, Serialize)]
pub struct DiskMarks {
    /// warden rps / floor rps, median rounds (target ≥ 0.85).
    pub rps_ratio: f64,
    /// The same, each round.
    pub rps_ratio_rounds: Vec<f64>,
    /// Warden's peak resident memory, MiB (target < 40).
    pub warden_peak_mib: Option<f64>,
    /// floor rps / nginx rps, when nginx ran: what the disk leaves of a proxy's rate.
    pub floor_rps_vs_nginx: Option<f64>,
    pub rps_target_met: bool,
    pub memory_target_met: Option<bool>,
}

/// `warden-disk` against `warden-baseline` (another binary, run in the same durability with
/// its own defaults): what a change costs, in the same run.
#[derive(Debug, Clone, Serialize)]
pub struct BaselineComparison {
    /// warden CPU per request / baseline CPU per request, saturated median rounds.
    pub cpu_ratio: Option<f64>,
    /// warden rps / baseline rps, median rounds.
    pub rps_ratio: f64,
    /// The same, each round.
    pub rps_ratio_rounds: Vec<f64>,
    /// Whether the CPU per request is within 5% of the baseline's (or below it).
    pub cpu_within_tolerance: Option<bool>,
}

/// `warden-traced` against `warden-process` (the same Warden and route, every request traced
/// and its spans exported, or tracing off), measured in the same run.
#[derive(Debug, Clone, Serialize)]
pub struct TracingComparison {
    /// traced CPU per request / untraced CPU per request, saturated median rounds.
    pub cpu_ratio: Option<f64>,
    /// The same, each round.
    pub cpu_ratio_rounds: Vec<f64>,
    /// traced rps / untraced rps, median rounds.
    pub rps_ratio: f64,
    /// The same, each round.
    pub rps_ratio_rounds: Vec<f64>,
    /// The traced Warden's spans over all its measured windows.
    pub spans: TraceSpans,
}

/// `warden-vault` against `warden-env` (the same Warden and route, the credential from Vault
/// or from an environment variable), measured in the same run: what a credential from
/// Vault costs per request once Warden holds it.
#[derive(Debug, Clone, Serialize)]
pub struct CredentialComparison {
    /// vault CPU per request / env CPU per request, saturated median rounds.
    pub cpu_ratio: Option<f64>,
    /// The same, each round.
    pub cpu_ratio_rounds: Vec<f64>,
    /// vault rps / env rps, median rounds.
    pub rps_ratio: f64,
    /// The same, each round.
    pub rps_ratio_rounds: Vec<f64>,
    /// Whether the CPU per request is within 5% of env's (or below it).
    pub cpu_within_tolerance: Option<bool>,
    /// Reads from Vault in all of `warden-vault`'s measured windows together.
    pub vault_reads_in_windows: u64,
    /// Most reads from Vault by one `warden-vault` from its start to its window's end.
    pub vault_reads_per_start: u64,
    /// Requests `warden-vault` answered in its measured windows, every round.
    pub vault_requests: u64,
}

impl TargetReport {
    /// Figures of one run; `proxy_cpu_s` and `upstream_cpu_s` are CPU seconds spent in the
    /// measured window.
    pub fn new(
        name: &str,
        result: &LoadResult,
        peak_rss_kib: Option<u64>,
        proxy_cpu_s: Option<f64>,
        upstream_cpu_s: f64,
    ) -> TargetReport {
        let per_req = |cpu_s: f64| cpu_s * 1e6 / result.requests.max(1) as f64;
        TargetReport {
            name: name.to_owned(),
            requests: result.requests,
            errors: result.errors,
            first_error: result.first_error.clone(),
            rps: result.rps(),
            p50_us: result.latency_us(0.50),
            p90_us: result.latency_us(0.90),
            p99_us: result.latency_us(0.99),
            p999_us: result.latency_us(0.999),
            max_us: result.histogram.max(),
            added_p50_us: None,
            added_p99_us: None,
            peak_rss_kib,
            proxy_cpu_us_per_req: proxy_cpu_s.map(per_req),
            upstream_cpu_us_per_req: per_req(upstream_cpu_s),
            rps_rounds: vec![result.rps()],
            proxy_cpu_rounds: Vec::new(),
            steal_percent: None,
            steal_percent_rounds: Vec::new(),
            audit: None,
            vault_reads: Vec::new(),
            trace_spans: Vec::new(),
            at_rate: None,
        }
    }

    /// The round with the median rate (the lower middle one for an even count), carrying
    /// every round's rate; `None` when there were no rounds.
    pub fn median_by_rps(mut rounds: Vec<TargetReport>) -> Option<TargetReport> {
        let all: Vec<f64> = rounds.iter().map(|r| r.rps).collect();
        let cpu: Vec<f64> = rounds
            .iter()
            .filter_map(|r| r.proxy_cpu_us_per_req)
            .collect();
        let steal: Vec<f64> = rounds.iter().filter_map(|r| r.steal_percent).collect();
        let reads: Vec<VaultReads> = rounds.iter().flat_map(|r| r.vault_reads.clone()).collect();
        let spans: Vec<TraceSpans> = rounds.iter().flat_map(|r| r.trace_spans.clone()).collect();
        rounds.sort_by(|a, b| a.rps.total_cmp(&b.rps));
        let middle = rounds.len().checked_sub(1)? / 2;
        let mut median = rounds.swap_remove(middle);
        median.rps_rounds = all;
        median.proxy_cpu_rounds = cpu;
        median.steal_percent_rounds = steal;
        median.vault_reads = reads;
        median.trace_spans = spans;
        Some(median)
    }
}

impl Report {
    /// Fills in the figures that compare targets: added latency against `direct`, and
    /// warden against nginx.
    pub fn compare(&mut self) {
        let direct = self.target("direct").map(|d| (d.p50_us, d.p99_us));
        if let Some((p50, p99)) = direct {
            for t in self.targets.iter_mut().filter(|t| t.name != "direct") {
                t.added_p50_us = Some(t.p50_us as i64 - p50 as i64);
                t.added_p99_us = Some(t.p99_us as i64 - p99 as i64);
            }
        }
        let direct_at_rate = self
            .target("direct")
            .and_then(|d| d.at_rate.as_ref())
            .map(|d| (d.p50_us, d.p99_us));
        if let Some((p50, p99)) = direct_at_rate {
            for t in self.targets.iter_mut().filter(|t| t.name != "direct") {
                if let Some(r) = t.at_rate.as_mut() {
                    r.added_p50_us = Some(r.p50_us as i64 - p50 as i64);
                    r.added_p99_us = Some(r.p99_us as i64 - p99 as i64);
                }
            }
        }
        self.process_marks = self
            .target(WARDEN_PROCESS)
            .zip(self.target("nginx"))
            .map(|(w, n)| process_marks(w, n));
        self.disk_marks = self
            .target(WARDEN_DISK)
            .zip(self.target(FLOOR))
            .map(|(w, f)| {
                let rps_ratio = ratio_of_rates(w.rps, f.rps);
                let warden_peak_mib = peak_mib(w);
                DiskMarks {
                    rps_ratio,
                    rps_ratio_rounds: paired(&w.rps_rounds, &f.rps_rounds, ratio_of_rates),
                    warden_peak_mib,
                    floor_rps_vs_nginx: self.target("nginx").map(|n| ratio_of_rates(f.rps, n.rps)),
                    rps_target_met: rps_ratio >= FLOOR_RATIO_TARGET,
                    memory_target_met: warden_peak_mib.map(|m| m < PEAK_MIB_TARGET),
                }
            });
        self.baseline = self
            .target(WARDEN_DISK)
            .zip(self.target(WARDEN_BASELINE))
            .map(|(w, b)| {
                let cpu_ratio = w
                    .proxy_cpu_us_per_req
                    .zip(b.proxy_cpu_us_per_req)
                    .map(|(w, b)| w / b.max(f64::MIN_POSITIVE));
                BaselineComparison {
                    cpu_ratio,
                    rps_ratio: ratio_of_rates(w.rps, b.rps),
                    rps_ratio_rounds: paired(&w.rps_rounds, &b.rps_rounds, ratio_of_rates),
                    cpu_within_tolerance: cpu_ratio.map(|r| r <= 1.0 + BASELINE_CPU_TOLERANCE),
                }
            });
        self.credentials = self
            .target(WARDEN_VAULT)
            .zip(self.target(WARDEN_ENV))
            .map(|(v, e)| credential_comparison(v, e));
        self.tracing = self
            .target(WARDEN_TRACED)
            .zip(self.target(WARDEN_PROCESS))
            .map(|(t, p)| tracing_comparison(t, p));
    }

    /// A warning naming each target whose measured windows the host stole time from (above
    /// [`STEAL_WARN_PERCENT`] in any round or at the fixed rate), with the worst share.
    pub fn steal_warning(&self) -> Option<String> {
        let stolen: Vec<String> = self
            .targets
            .iter()
            .filter_map(|t| {
                let worst = t
                    .steal_percent_rounds
                    .iter()
                    .copied()
                    .chain(t.steal_percent)
                    .chain(t.at_rate.as_ref().and_then(|r| r.steal_percent))
                    .fold(0.0_f64, f64::max);
                (worst > STEAL_WARN_PERCENT).then(|| format!("{} up to {worst:.1}%", t.name))
            })
            .collect();
        (!stolen.is_empty()).then(|| {
            format!(
                "WARNING: the host took CPU time from this machine while it was measured (steal: {}): these figures are not comparable with a quiet host's",
                stolen.join(", ")
            )
        })
    }

    fn target(&self, name: &str) -> Option<&TargetReport> {
        self.targets.iter().find(|t| t.name == name)
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let p = &self.params;
        let _ = writeln!(
            out,
            "{} connections, {} B POSTs, {:.0}s warm-up + {:.0}s measured, {} round(s), {} cores ({}), load average {:.2} at start; nginx {}, Warden {}",
            p.connections,
            p.body_bytes,
            p.warmup_s,
            p.duration_s,
            p.rounds,
            self.machine.cores,
            self.machine.cpu_model,
            self.machine.load_average,
            match p.nginx_workers {
                0 => "a worker per core".to_owned(),
                1 => "1 worker".to_owned(),
                n => format!("{n} workers"),
            },
            match p.warden_workers {
                0 => "a worker thread per core".to_owned(),
                1 => "1 worker thread".to_owned(),
                n => format!("{n} worker threads"),
            },
        );
        if p.warden_access_log {
            let _ = writeln!(
                out,
                "DIAGNOSTIC RUN: Warden with log.access true: not the measured setup"
            );
        }
        if let Some(bin) = &p.baseline_bin {
            let _ = writeln!(out, "{WARDEN_BASELINE}: {bin}");
        }
        if self.machine.load_average > self.machine.cores as f64 / 2.0 {
            let _ = writeln!(
                out,
                "WARNING: other work was running (1-minute load average {:.2} on {} cores): these figures are not comparable with a quiet machine's",
                self.machine.load_average, self.machine.cores
            );
        }
        if let Some(warning) = self.steal_warning() {
            let _ = writeln!(out, "{warning}");
        }
        let _ = writeln!(
            out,
            "{:<15} {:>7} {:>8} {:>8} {:>8} {:>10} {:>10} {:>9} {:>9} {:>7}",
            "target",
            "req/s",
            "p50 µs",
            "p99 µs",
            "p99.9µs",
            "+p50 µs",
            "+p99 µs",
            "peak MiB",
            "CPU µs/r",
            "errors"
        );
        for t in &self.targets {
            let opt_i = |v: Option<i64>| v.map_or("-".to_owned(), |v| format!("{v:+}"));
            let _ = writeln!(
                out,
                "{:<15} {:>7.0} {:>8} {:>8} {:>8} {:>10} {:>10} {:>9} {:>9} {:>7}",
                t.name,
                t.rps,
                t.p50_us,
                t.p99_us,
                t.p999_us,
                opt_i(t.added_p50_us),
                opt_i(t.added_p99_us),
                t.peak_rss_kib
                    .map_or("-".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0)),
                t.proxy_cpu_us_per_req
                    .map_or("-".to_owned(), |c| format!("{c:.1}")),
                t.errors,
            );
        }
        if let Some(rate) = self
            .targets
            .iter()
            .find_map(|t| t.at_rate.as_ref().map(|r| r.rate))
        {
            let _ = writeln!(
                out,
                "latency at {rate:.0} req/s offered to every target (open loop; a late request counts from when it was due):"
            );
            let _ = writeln!(
                out,
                "{:<15} {:>7} {:>8} {:>8} {:>8} {:>10} {:>10} {:>9} {:>9} {:>7}",
                "target",
                "req/s",
                "p50 µs",
                "p99 µs",
                "p99.9µs",
                "+p50 µs",
                "+p99 µs",
                "",
                "CPU µs/r",
                "errors"
            );
            for t in &self.targets {
                let Some(r) = &t.at_rate else { continue };
                let opt_i = |v: Option<i64>| v.map_or("-".to_owned(), |v| format!("{v:+}"));
                let _ = writeln!(
                    out,
                    "{:<15} {:>7.0} {:>8} {:>8} {:>8} {:>10} {:>10} {:>9} {:>9} {:>7}",
                    t.name,
                    r.achieved_rps,
                    r.p50_us,
                    r.p99_us,
                    r.p999_us,
                    opt_i(r.added_p50_us),
                    opt_i(r.added_p99_us),
                    "",
                    r.proxy_cpu_us_per_req
                        .map_or("-".to_owned(), |c| format!("{c:.1}")),
                    r.errors,
                );
            }
        }
        for t in self.targets.iter().filter(|t| t.name.starts_with("warden")) {
            if let Some(a) = &t.audit {
                let _ = writeln!(out, "{}: {}", t.name, audit_line(a));
            }
            if !t.vault_reads.is_empty() {
                let _ = writeln!(out, "{}: {}", t.name, vault_reads_line(&t.vault_reads));
            }
            if let Some((rate, a)) = t
                .at_rate
                .as_ref()
                .and_then(|r| Some((r.rate, r.audit.as_ref()?)))
            {
                let _ = writeln!(out, "{} at {rate:.0} req/s: {}", t.name, audit_line(a));
            }
        }
        for s in &self.skipped {
            let _ = writeln!(out, "{:<8} skipped: {}", s.name, s.reason);
        }
        if let Some(m) = &self.process_marks {
            let _ = writeln!(out, "{}", process_line(m));
        }
        if let Some(m) = &self.disk_marks {
            let _ = writeln!(out, "{}", disk_line(m));
        }
        if let Some(b) = &self.baseline {
            let _ = writeln!(out, "{}", baseline_line(b));
        }
        if let Some(c) = &self.credentials {
            let _ = writeln!(out, "{}", credentials_line(c));
        }
        if let Some(t) = &self.tracing {
            let _ = writeln!(out, "{}", tracing_line(t));
        }
        out
    }
}

/// `process` durability's marks from `warden` (`warden-process`) and `nginx`.
fn process_marks(warden: &TargetReport, nginx: &TargetReport) -> ProcessMarks {
    let rps_ratio = ratio_of_rates(warden.rps, nginx.rps);
    let p99_ratio_saturated = ratio_of_p99s(warden.p99_us, nginx.p99_us);
    let at_same_rate = warden.at_rate.as_ref().zip(nginx.at_rate.as_ref());
    let (p99_ratio, p99_at_same_rate) = match at_same_rate {
        Some((w, n)) => (ratio_of_p99s(w.p99_us, n.p99_us), true),
        None => (p99_ratio_saturated, false),
    };
    let warden_peak_mib = peak_mib(warden);
    ProcessMarks {
        rps_ratio,
        p99_ratio,
        p99_at_same_rate,
        p99_ratio_saturated,
        rps_ratio_rounds: paired(&warden.rps_rounds, &nginx.rps_rounds, ratio_of_rates),
        p99_ratio_rounds: at_same_rate.map_or_else(Vec::new, |(w, n)| {
            paired(&w.p99_rounds, &n.p99_rounds, ratio_of_p99s)
        }),
        warden_peak_mib,
        rps_target_met: rps_ratio >= RPS_RATIO_TARGET,
        p99_target_met: p99_ratio <= P99_RATIO_TARGET,
        memory_target_met: warden_peak_mib.map(|m| m < PEAK_MIB_TARGET),
    }
}

/// A target's peak resident memory, MiB.
fn peak_mib(t: &TargetReport) -> Option<f64> {
    t.peak_rss_kib.map(|k| k as f64 / 1024.0)
}

fn mark(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

fn peak_text(mib: Option<f64>, met: Option<bool>) -> String {
    format!(
        "peak {} (target < {PEAK_MIB_TARGET} MiB: {})",
        mib.map_or("-".to_owned(), |m| format!("{m:.1} MiB")),
        met.map_or("unknown", mark)
    )
}

/// The verdict line of `process` durability's marks (and a line per round).
fn process_line(m: &ProcessMarks) -> String {
    let mut line = format!(
        "process durability ({WARDEN_PROCESS}/nginx): rps {:.2}x (target >= {RPS_RATIO_TARGET}: {}), p99 {:.2}x {} (target <= {P99_RATIO_TARGET}: {}), {}; p99 at saturation {:.2}x",
        m.rps_ratio,
        mark(m.rps_target_met),
        m.p99_ratio,
        if m.p99_at_same_rate {
            "at the same rate"
        } else {
            "at saturation"
        },
        mark(m.p99_target_met),
        peak_text(m.warden_peak_mib, m.memory_target_met),
        m.p99_ratio_saturated,
    );
    if m.rps_ratio_rounds.len() > 1 {
        line += &format!(
            "\n  round by round: rps {}; p99 at the same rate {}",
            list(&m.rps_ratio_rounds),
            if m.p99_ratio_rounds.is_empty() {
                "-".to_owned()
            } else {
                list(&m.p99_ratio_rounds)
            },
        );
    }
    line
}

/// The verdict line of `disk` durability's marks.
fn disk_line(m: &DiskMarks) -> String {
    let mut line = format!(
        "disk durability ({WARDEN_DISK}/{FLOOR}, the durability floor): rps {:.2}x (target >= {FLOOR_RATIO_TARGET}: {}), {}",
        m.rps_ratio,
        mark(m.rps_target_met),
        peak_text(m.warden_peak_mib, m.memory_target_met),
    );
    if let Some(floor) = m.floor_rps_vs_nginx {
        line += &format!("; the floor served {floor:.2}x nginx's rate");
    }
    if m.rps_ratio_rounds.len() > 1 {
        line += &format!("\n  round by round: rps {}", list(&m.rps_ratio_rounds));
    }
    line
}

/// The comparison with the baseline binary.
fn baseline_line(b: &BaselineComparison) -> String {
    let cpu = match (b.cpu_ratio, b.cpu_within_tolerance) {
        (Some(ratio), Some(within)) => format!(
            "CPU per request {ratio:.2}x ({} {:.0}%)",
            if within { "within" } else { "NOT within" },
            BASELINE_CPU_TOLERANCE * 100.0
        ),
        _ => "CPU per request unknown".to_owned(),
    };
    let mut line = format!(
        "{WARDEN_DISK}/{WARDEN_BASELINE}: {cpu}, rps {:.2}x",
        b.rps_ratio
    );
    if b.rps_ratio_rounds.len() > 1 {
        line += &format!(" (rounds {})", list(&b.rps_ratio_rounds));
    }
    line
}

/// `warden-vault` against `warden-env`.
fn credential_comparison(vault: &TargetReport, env: &TargetReport) -> CredentialComparison {
    let cpu_ratio = vault
        .proxy_cpu_us_per_req
        .zip(env.proxy_cpu_us_per_req)
        .map(|(v, e)| v / e.max(f64::MIN_POSITIVE));
    let per_request = |v: f64, e: f64| v / e.max(f64::MIN_POSITIVE);
    CredentialComparison {
        cpu_ratio,
        cpu_ratio_rounds: paired(&vault.proxy_cpu_rounds, &env.proxy_cpu_rounds, per_request),
        rps_ratio: ratio_of_rates(vault.rps, env.rps),
        rps_ratio_rounds: paired(&vault.rps_rounds, &env.rps_rounds, ratio_of_rates),
        cpu_within_tolerance: cpu_ratio.map(|r| r <= 1.0 + BASELINE_CPU_TOLERANCE),
        vault_reads_in_windows: vault.vault_reads.iter().map(|r| r.in_window).sum(),
        vault_reads_per_start: vault
            .vault_reads
            .iter()
            .map(|r| r.since_start)
            .max()
            .unwrap_or(0),
        vault_requests: vault.vault_reads.iter().map(|r| r.requests).sum(),
    }
}

/// `warden-traced` against `warden-process`.
fn tracing_comparison(traced: &TargetReport, off: &TargetReport) -> TracingComparison {
    let per_request = |t: f64, o: f64| t / o.max(f64::MIN_POSITIVE);
    let mut spans = TraceSpans::default();
    for s in &traced.trace_spans {
        spans.exported += s.exported;
        spans.dropped += s.dropped;
        spans.failed += s.failed;
    }
    TracingComparison {
        cpu_ratio: traced
            .proxy_cpu_us_per_req
            .zip(off.proxy_cpu_us_per_req)
            .map(|(t, o)| per_request(t, o)),
        cpu_ratio_rounds: paired(&traced.proxy_cpu_rounds, &off.proxy_cpu_rounds, per_request),
        rps_ratio: ratio_of_rates(traced.rps, off.rps),
        rps_ratio_rounds: paired(&traced.rps_rounds, &off.rps_rounds, ratio_of_rates),
        spans,
    }
}

/// The cost of tracing every request.
fn tracing_line(t: &TracingComparison) -> String {
    let cpu = t
        .cpu_ratio
        .map_or("CPU per request unknown".to_owned(), |r| {
            format!("CPU per request {r:.2}x")
        });
    let mut line = format!(
        "tracing every request ({WARDEN_TRACED}/{WARDEN_PROCESS}): {cpu}, rps {:.2}x; spans in the measured windows: {} exported, {} dropped (queue full), {} failed",
        t.rps_ratio, t.spans.exported, t.spans.dropped, t.spans.failed
    );
    if t.rps_ratio_rounds.len() > 1 {
        line += &format!(
            "\n  round by round: CPU per request {}; rps {}",
            list(&t.cpu_ratio_rounds),
            list(&t.rps_ratio_rounds)
        );
    }
    line
}

/// A Warden's reads from Vault, round by round.
fn vault_reads_line(reads: &[VaultReads]) -> String {
    let rounds: Vec<String> = reads
        .iter()
        .map(|r| {
            format!(
                "{} in the window ({} since start)",
                r.in_window, r.since_start
            )
        })
        .collect();
    format!("reads from Vault, round by round: {}", rounds.join(", "))
}

/// The comparison of a credential from Vault with one from an environment variable.
fn credentials_line(c: &CredentialComparison) -> String {
    let cpu = match (c.cpu_ratio, c.cpu_within_tolerance) {
        (Some(ratio), Some(within)) => format!(
            "CPU per request {ratio:.2}x ({} {:.0}%)",
            if within { "within" } else { "NOT within" },
            BASELINE_CPU_TOLERANCE * 100.0
        ),
        _ => "CPU per request unknown".to_owned(),
    };
    let mut line = format!(
        "credential from Vault ({WARDEN_VAULT}/{WARDEN_ENV}): {cpu}, rps {:.2}x; {} reads from Vault in the measured windows ({} requests), at most {} per Warden start",
        c.rps_ratio, c.vault_reads_in_windows, c.vault_requests, c.vault_reads_per_start
    );
    if c.rps_ratio_rounds.len() > 1 {
        line += &format!(
            "\n  round by round: CPU per request {}; rps {}",
            list(&c.cpu_ratio_rounds),
            list(&c.rps_ratio_rounds)
        );
    }
    line
}

/// One rate over another (a target's over nginx's, or the floor's).
fn ratio_of_rates(rps: f64, of: f64) -> f64 {
    rps / of.max(f64::MIN_POSITIVE)
}

/// One p99 over another (a target's over nginx's).
fn ratio_of_p99s(p99_us: u64, of: u64) -> f64 {
    p99_us as f64 / of.max(1) as f64
}

/// `ratio` of the figures of the same round, for the rounds both targets ran (a target that
/// fails stops, so its rounds are the first ones).
fn paired<T: Copy>(target: &[T], of: &[T], ratio: impl Fn(T, T) -> f64) -> Vec<f64> {
    target.iter().zip(of).map(|(&t, &o)| ratio(t, o)).collect()
}

/// Ratios as `0.52 0.55 0.49`.
fn list(ratios: &[f64]) -> String {
    let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    shown.join(" ")
}

/// Facts about this machine from `/proc`.
pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split(':').nth(1))
        })
        .map_or_else(|| "unknown".to_owned(), |m| m.trim().to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".to_owned(), |k| k.trim().to_owned());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load_average = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    Machine {
        cores,
        cpu_model,
        kernel,
        load_average,
    }
}

/// A Warden's wait for its decision records during a measured window, for one line.
pub fn audit_line(a: &AuditShare) -> String {
    format!(
        "a decision waited {:.0} µs on average for its audit record, {:.0}% of its {:.0} µs in Warden; commits took {:.0} µs, {:.1} records each",
        a.wait_us, a.share_percent, a.request_us, a.commit_us, a.records_per_commit
    )
}
