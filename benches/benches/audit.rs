//! Audit append: `AuditLog::append` awaited until committed, from one task and from 32
//! concurrent tasks (group commit shares each commit), in `disk` durability (each commit
//! flushed before it is answered) and in `process` durability (answered once written, flushed
//! within the flush interval).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden::audit::AuditLog;
use warden::audit::config::{AuditConfig, Durability};
use warden_bench::records;

fn append(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let event = records::decision();
    for (name, durability) in [("disk", Durability::Disk), ("process", Durability::Process)] {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = AuditConfig {
            durability,
            ..AuditConfig::default()
        };
        let log = Arc::new(AuditLog::open(dir.path(), &config).expect("audit log opens"));
        let mut group = c.benchmark_group(format!("audit_append/{name}"));
        group.measurement_time(Duration::from_secs(5));
        group.throughput(Throughput::Elements(1));
        group.bench_function("1_task", |b| {
            b.iter(|| runtime.block_on(log.append(event.clone())).expect("append"))
        });
        // Time per append with 32 tasks appending at once: wall time of the batch over its
        // size.
        group.bench_function("32_tasks", |b| {
            b.iter_custom(|iters| {
                let per_task = iters.div_ceil(32);
                let started = Instant::now();
                runtime.block_on(async {
                    let tasks: Vec<_> = (0..32)
                        .map(|_| {
                            let (log, event) = (log.clone(), event.clone());
                            tokio::spawn(async move {
                                for _ in 0..per_task {
                                    log.append(event.clone()).await.expect("append");
                                }
                            })
                        })
                        .collect();
                    for task in tasks {
                        task.await.expect("append task");
                    }
                });
                started
                    .elapsed()
                    .mul_f64(iters as f64 / (per_task * 32) as f64)
            })
        });
        group.finish();
    }
}

criterion_group!(benches, append);
criterion_main!(benches);
