//! Token verification: `Identifier::identify` on a Warden-issued token, the first time it is
//! seen (signature check, claims, principal built) and from the verified-token cache.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, header};
use std::time::Duration;
use warden::identity::config::IdentityConfig;
use warden::identity::{Identifier, TokenIssuer};

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let value =
        HeaderValue::try_from(format!("Bearer {token}")).expect("a JWT is a valid header value");
    headers.insert(header::AUTHORIZATION, value);
    headers
}

fn identify(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = IdentityConfig::default();
    let issuer =
        TokenIssuer::load_or_create(&config.warden_issuer, dir.path()).expect("signing key");
    let identifier = runtime
        .block_on(Identifier::new(&config, dir.path()))
        .expect("identifier");
    let ttl = Duration::from_secs(3600);

    let cached = bearer(&issuer.issue("bench", ttl, &[]).expect("token"));
    runtime
        .block_on(identifier.identify(&cached, None, None))
        .expect("the issued token verifies");

    let mut group = c.benchmark_group("identify");
    group.bench_function("cached", |b| {
        b.iter(|| {
            runtime
                .block_on(identifier.identify(&cached, None, None))
                .expect("verifies")
        })
    });
    // A distinct agent per iteration: a token the cache has never seen.
    let mut n = 0u64;
    group.bench_function("cold", |b| {
        b.iter_batched(
            || {
                n += 1;
                bearer(
                    &issuer
                        .issue(&format!("bench-{n}"), ttl, &[])
                        .expect("token"),
                )
            },
            |headers| {
                runtime
                    .block_on(identifier.identify(&headers, None, None))
                    .expect("verifies")
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, identify);
criterion_main!(benches);
