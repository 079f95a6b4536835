//! The inspect stage: every content detector over a chat request body of 1 KB, 16 KB and
//! 256 KB of ordinary prose (nothing to find: the common case), and over 16 KB with a key in it;
//! redacting that key in place (`@on_match("redact")`), and redacting a key in every KiB of a
//! 16 KB and a 256 KB body, scanned the same way first (`keys/*`: whether redaction grows with
//! the matches); and a 1 MiB body inspected whole and streamed (`inspect.stream_above`) in
//! chunks of 64, 16 and 4 KiB, each scanned after the 4 KiB carried from before.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use warden::action::Findings;

/// A chat request body of about `kb` KiB of prose.
fn body(kb: usize, extra: &str) -> Vec<u8> {
    let mut text = String::new();
    while text.len() < kb * 1024 {
        text.push_str(SENTENCE);
    }
    text.push_str(extra);
    chat(text)
}

/// Ordinary prose: nothing in it for a detector.
const SENTENCE: &str = "The quarterly report covers 1234 orders shipped on 2026-12-04; \
                        see ticket ABCD-1234 and ask the front desk with questions. ";

/// What every enabled detector finds in `body`.
fn scan(body: &[u8], config: &warden::inspect::InspectConfig) -> Findings {
    let mut findings = Findings::none();
    warden::inspect::inspect(&mut findings, body, None, config);
    findings
}

/// A chat request body with `text` as its one user message.
fn chat(text: String) -> Vec<u8> {
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
            b.iter(|| scan(body, &config))
        });
    }
    let with_key = body(16, " use AKIAIOSFODNN7EXAMPLE");
    group.throughput(Throughput::Bytes(with_key.len() as u64));
    group.bench_with_input(BenchmarkId::new("aws_key", 16), &with_key, |b, body| {
        b.iter(|| scan(body, &config))
    });
    let wanted = |d: &str| d == "aws_access_key";
    group.bench_with_input(BenchmarkId::new("redact", 16), &with_key, |b, body| {
        b.iter(|| warden::inspect::redact::redact(body, &config, &wanted))
    });
    for kb in [16, 256] {
        let keys = with_keys(kb);
        group.throughput(Throughput::Bytes(keys.len() as u64));
        group.bench_with_input(BenchmarkId::new("keys_scan", kb), &keys, |b, body| {
            b.iter(|| scan(body, &config))
        });
        group.bench_with_input(BenchmarkId::new("keys_redact", kb), &keys, |b, body| {
            b.iter(|| warden::inspect::redact::redact(body, &config, &wanted))
        });
    }
    let large = body(1024, "");
    let shared = std::sync::Arc::new(config.clone());
    group.throughput(Throughput::Bytes(large.len() as u64));
    group.bench_with_input(BenchmarkId::new("whole", 1024), &large, |b, body| {
        b.iter(|| scan(body, &config))
    });
    for chunk_kib in [64, 16, 4] {
        let id = BenchmarkId::new(format!("stream_{chunk_kib}k"), 1024);
        group.bench_with_input(id, &large, |b, body| {
            b.iter(|| {
                let mut scan =
                    warden::inspect::stream::StreamScan::new(std::sync::Arc::clone(&shared));
                let chunks: Vec<&[u8]> = body.chunks(chunk_kib * 1024).collect();
                let (mut found, mut left) = (0, 0);
                for (i, chunk) in chunks.iter().enumerate() {
                    found += scan.feed(chunk, i + 1 == chunks.len()).len();
                    left += scan.release().map_or(0, |r| r.bytes.len());
                }
                (found, left)
            })
        });
    }
    group.finish();
}

/// A chat request body of about `kb` KiB of prose with an AWS key id in every KiB.
fn with_keys(kb: usize) -> Vec<u8> {
    let mut text = String::new();
    while text.len() < kb * 1024 {
        while text.len() % 1024 < 1024 - SENTENCE.len() - 32 {
            text.push_str(SENTENCE);
        }
        text.push_str(" use AKIAIOSFODNN7EXAMPLE. ");
        while !text.len().is_multiple_of(1024) {
            text.push(' ');
        }
    }
    chat(text)
}

criterion_group!(benches, inspect);
criterion_main!(benches);
