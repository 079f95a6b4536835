//! Audit append: `AuditLog::append` awaited until durable (fsync on), from one task and from
//! 32 concurrent tasks (group commit shares each fsync), with commits written by direct I/O
//! and by a buffered write and fdatasync.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden::audit::AuditLog;
use warden::audit::config::AuditConfig;
use warden_bench::records;

fn append(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let event = records::decision();
    // `direct`: commits written with O_DIRECT | O_DSYNC (the default where the filesystem
    // does it); `buffered`: a write and fdatasync (`audit.direct_io: false`).
    for (name, direct_io) in [("direct", true), ("buffered", false)] {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = AuditConfig {
            fsync: true,
            direct_io,
            ..AuditConfig::default()
        };
        let log = Arc::new(AuditLog::open(dir.path(), &config).expect("audit log opens"));
        let mut group = c.benchmark_group(format!("audit_append_fsync/{name}"));
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
