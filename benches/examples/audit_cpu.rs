//! CPU cost per audit record: a fixed number of appends (each request's pair: a decision record
//! awaited with `append`, an outcome record with `append_detached`), with the process's and
//! the writer thread's utime+stime read from /proc around them.
//!
//! `cargo run --release -p warden-bench --example audit_cpu [-- TASKS REQUESTS_PER_TASK]`

use std::sync::Arc;
use std::time::Instant;
use warden::audit::AuditLog;
use warden::audit::config::AuditConfig;
use warden::audit::event::{AuditEvent, AuditOutcome};
use warden_bench::records;

fn outcome_event() -> AuditEvent {
    let mut event = records::outcome(200);
    event.outcome = Some(AuditOutcome {
        status: 200,
        latency_ms: 1.25,
        upstream_ms: Some(0.9),
        input_tokens: Some(12),
        output_tokens: Some(34),
        usage_estimated: false,
        response_model: None,
        error: None,
        is_error: None,
        bytes_up: None,
        bytes_down: None,
        answer: None,
        reserved: None,
    });
    event
}

/// utime + stime in clock ticks from a /proc stat file.
fn cpu_ticks(stat: &str) -> u64 {
    let after_comm = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // After "pid (comm)": state is field 0, utime field 11, stime field 12.
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

fn process_ticks() -> u64 {
    cpu_ticks(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default())
}

/// CPU ticks and voluntary context switches of the thread named `warden-audit`.
fn writer_stats() -> (u64, u64) {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return (0, 0);
    };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() == "warden-audit" {
            let ticks =
                cpu_ticks(&std::fs::read_to_string(task.path().join("stat")).unwrap_or_default());
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            let switches = status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            return (ticks, switches);
        }
    }
    (0, 0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let tasks: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(32);
    let per_task: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let base = std::env::var_os("AUDIT_CPU_DIR").map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let log =
        Arc::new(AuditLog::open(dir.path(), &AuditConfig::default()).expect("audit log opens"));
    let (decision, outcome) = (records::decision(), outcome_event());
    // Warm up: the writer thread exists, the first segment is open.
    runtime
        .block_on(log.append(decision.clone()))
        .expect("append");

    let ticks_per_sec = 100.0; // USER_HZ on Linux
    let (writer_before, switches_before) = writer_stats();
    let cpu_before = process_ticks();
    let started = Instant::now();
    runtime.block_on(async {
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let (log, decision, outcome) = (log.clone(), decision.clone(), outcome.clone());
                tokio::spawn(async move {
                    for _ in 0..per_task {
                        log.append(decision.clone()).await.expect("append");
                        log.append_detached(outcome.clone());
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.await.expect("append task");
        }
    });
    // The detached records of the last requests may still be in flight: commit them.
    let (writer_after, switches_after) = writer_stats();
    runtime.block_on(log.close()).expect("close");
    let wall = started.elapsed();
    let cpu = (process_ticks() - cpu_before) as f64 / ticks_per_sec;
    let writer = (writer_after.saturating_sub(writer_before)) as f64 / ticks_per_sec;
    let records = (tasks * per_task * 2) as f64;
    println!(
        "tasks {tasks} records {records} wall {:.2}s ({:.0} rec/s) process cpu {:.2}s = {:.1} us/record; writer thread cpu {:.2}s = {:.1} us/record, {} voluntary switches",
        wall.as_secs_f64(),
        records / wall.as_secs_f64(),
        cpu,
        cpu * 1e6 / records,
        writer,
        writer * 1e6 / records,
        switches_after.saturating_sub(switches_before),
    );
}
