//! Redaction of the injected credential from an LLM's streamed answer: 64 chat deltas of 1 KB
//! of prose each, every delta its own chunk, through the byte-level redactor alone (`bytes`,
//! what Warden did before it joined deltas) and through the one that reads each event and joins
//! each choice's deltas as the agent's SDK does (`joined`); per delta is the time / 64.

use std::sync::Arc;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use warden::protocol::Protocol;
use warden::secrets::redact::{Echo, Redactor, StreamKind};
use zeroize::Zeroizing;

const DELTAS: usize = 64;

/// Ordinary prose: nothing in it that begins the secret but the odd letter.
const SENTENCE: &str = "The quarterly report covers 1234 orders shipped on 2026-12-04; \
                        see ticket ABCD-1234 and ask the front desk with questions. ";

/// `DELTAS` Chat Completions chunks of about 1 KB of text each.
fn stream() -> Vec<Bytes> {
    let mut text = String::new();
    while text.len() < 1024 {
        text.push_str(SENTENCE);
    }
    (0..DELTAS)
        .map(|_| {
            let chunk = serde_json::json!({"id": "chatcmpl-1", "object": "chat.completion.chunk",
                "created": 1, "model": "gpt-4o-mini",
                "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]});
            Bytes::from(format!("data: {chunk}\n\n"))
        })
        .collect()
}

fn run(redactor: &mut Redactor, stream: &[Bytes]) -> usize {
    let mut out = 0;
    for chunk in stream {
        out += redactor.push(chunk.clone()).len();
    }
    out + redactor.finish().len()
}

fn redact(c: &mut Criterion) {
    let echo = Arc::new(Echo::new(
        [Zeroizing::new("sk-proj-Xy7Qz9Lm2Pk4Wv8Rt6Ab3Cd".to_owned())],
        [],
    ));
    let stream = stream();
    let mut group = c.benchmark_group("stream_redact");
    group.throughput(Throughput::Elements(DELTAS as u64));
    group.bench_with_input(BenchmarkId::new("bytes", "1k"), &stream, |b, s| {
        b.iter(|| {
            let mut r = Redactor::new(Arc::clone(&echo)).expect("an echo");
            run(&mut r, s)
        })
    });
    group.bench_with_input(BenchmarkId::new("joined", "1k"), &stream, |b, s| {
        b.iter(|| {
            let mut r = Redactor::new(Arc::clone(&echo))
                .expect("an echo")
                .joining(Protocol::Openai.dialect(), StreamKind::Chat);
            run(&mut r, s)
        })
    });
    group.finish();
}

criterion_group!(benches, redact);
criterion_main!(benches);
