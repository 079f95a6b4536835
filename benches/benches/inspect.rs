//! The inspect stage: every content detector over a chat request body of 1 KB, 16 KB and
//! 256 KB of ordinary prose (nothing to find: the common case), and over 16 KB with a key in it;
//! redacting that key in place; and the streaming scan of a 1 MiB body in 64 KiB chunks.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use warden::action::Findings;

/// A chat request body of about `kb` KiB of prose.
fn body(kb: usize, extra: &str) -> Vec<u8> {
    let sentence = "The quarterly report covers 1234 orders shipped on 2026-12-04; \
                    see ticket ABCD-1234 and ask the front desk with questions. ";
    let mut text = String::new();
    while text.len() < kb * 1024 {
        text.push_str(sentence);
    }
    text.push_str(extra);
    serde_json::to_vec(&serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [{ "role": "user", "content": text }],
    }))
    .expect("json")
}

fn inspect(c: &mut Criterion) {
    let config = warden::inspect::InspectConfig::default();
    let mut group = c.benchmark_group("inspect");
    for kb in [1, 16, 256] {
        let clean = body(kb, "");
        group.throughput(Throughput::Bytes(clean.len() as u64));
        group.bench_with_input(BenchmarkId::new("clean", kb), &clean, |b, body| {
            b.iter(|| {
                let mut findings = Findings::none();
                warden::inspect::inspect(&mut findings, body, &config);
                findings
            })
        });
    }
    let with_key = body(16, " use AKIAIOSFODNN7EXAMPLE");
    group.throughput(Throughput::Bytes(with_key.len() as u64));
    group.bench_with_input(BenchmarkId::new("aws_key", 16), &with_key, |b, body| {
        b.iter(|| {
            let mut findings = Findings::none();
            warden::inspect::inspect(&mut findings, body, &config);
            findings
        })
    });
    let wanted = |d: &str| d == "aws_access_key";
    group.bench_with_input(BenchmarkId::new("redact", 16), &with_key, |b, body| {
        b.iter(|| warden::inspect::redact::redact(body, &config, &wanted))
    });
    let large = body(1024, "");
    let shared = std::sync::Arc::new(config.clone());
    group.throughput(Throughput::Bytes(large.len() as u64));
    group.bench_with_input(BenchmarkId::new("stream", 1024), &large, |b, body| {
        b.iter(|| {
            let mut scan = warden::inspect::stream::StreamScan::new(std::sync::Arc::clone(&shared));
            let chunks: Vec<&[u8]> = body.chunks(64 * 1024).collect();
            let (mut found, mut left) = (0, 0);
            for (i, chunk) in chunks.iter().enumerate() {
                found += scan.feed(chunk, i + 1 == chunks.len()).len();
                left += scan.release().map_or(0, |r| r.bytes.len());
            }
            (found, left)
        })
    });
    group.finish();
}

criterion_group!(benches, inspect);
criterion_main!(benches);
