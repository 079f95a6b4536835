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

/// What a decided request pays for its receipt: the action digest (SHA-256 over who asked
/// for what), then its share of a signed batch. `batch/N`: N receipts signed together, per
/// receipt (Criterion's throughput): each request's claims serialised and hashed as a leaf,
/// the tree built and its head signed once, each receipt's audit path and value.
/// `batch/1` is a request alone, as every request was before batching.
fn receipt(c: &mut Criterion) {
    use warden::audit::receipt::batch::sign_batch;
    use warden::audit::receipt::{Receipt, action_digest, format, merkle};
    use warden::audit::signer::Signer;
    let signer = Signer::new(ed25519_dalek::SigningKey::from_bytes(&[7; 32]));
    let header = format::head_header(&signer);
    let event = records::decision();
    let claims = |seq: u64| Receipt {
        iss: "warden".to_owned(),
        iat: 1_796_000_000,
        decision_id: "01JDZ8Q3V7Y2M4K6N8P0R2T4W6".to_owned(),
        action_digest: action_digest(&event),
        decision: "allow".to_owned(),
        policies: vec!["allow-gpt4o".to_owned()],
        policies_omitted: 0,
        seq,
    };
    let mut group = c.benchmark_group("receipt");
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    group.bench_function("action_digest", |b| b.iter(|| action_digest(&event)));
    for n in [1u64, 8, 64] {
        group.throughput(Throughput::Elements(n));
        group.bench_function(format!("batch/{n}"), |b| {
            b.iter(|| {
                let json: Vec<Vec<u8>> = (0..n)
                    .map(|seq| serde_json::to_vec(&claims(seq)).unwrap())
                    .collect();
                let leaves = json.iter().map(|j| merkle::leaf_hash(j)).collect();
                let (head, tree) = sign_batch(&signer, &header, leaves).unwrap();
                json.iter()
                    .enumerate()
                    .map(|(i, j)| format::receipt(&head, j, i, &tree.path(i)).len())
                    .sum::<usize>()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, append, receipt);
criterion_main!(benches);
