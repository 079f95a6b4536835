//! The bench's floors: the bare proxy forwards, and with an audit log (target `hyper-audit`)
//! it makes each request's decision record durable before the upstream sees the request, as
//! Warden does, and appends its outcome after.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use warden::audit::AuditLog;
use warden::audit::config::AuditConfig;
use warden_bench::bare_proxy;
use warden_bench::loadgen::{self, LoadSpec, Workload};
use warden_bench::upstream::REPLY;

/// Decision records in the log's segments as they are on disk now.
fn decisions_on_disk(dir: &Path) -> u64 {
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.starts_with("audit-") && name.ends_with(".jsonl")) {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        // A segment's data ends at its first NUL byte (space reserved ahead is zero-filled).
        let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
        count += String::from_utf8_lossy(&data[..end])
            .lines()
            .filter(|line| line.contains(r#""kind":"decision""#))
            .count() as u64;
    }
    count
}

/// An upstream that answers the bench reply only if, when a request reaches it, the log in
/// `dir` already holds a decision record for it (and every request before it); 500 if not.
async fn checking_upstream(dir: PathBuf, seen: Arc<AtomicU64>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (dir, seen) = (dir.clone(), seen.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
                    let durable = decisions_on_disk(&dir);
                    let status = if durable >= n {
                        StatusCode::OK
                    } else {
                        StatusCode::INTERNAL_SERVER_ERROR
                    };
                    let body = if durable >= n {
                        REPLY.to_owned()
                    } else {
                        format!("request {n} arrived with {durable} decision records on disk")
                    };
                    async move {
                        let mut response = Response::new(Full::new(Bytes::from(body)));
                        *response.status_mut() = status;
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Starts the bare proxy to `upstream`, recording through `log` if given.
async fn start_proxy(upstream: SocketAddr, log: Option<Arc<AuditLog>>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let proxy = listener.local_addr().unwrap();
    tokio::spawn(bare_proxy::serve(
        listener,
        upstream,
        log.map(bare_proxy::Recorder::Log),
    ));
    proxy
}

/// Chat completions to `proxy`, at most `max_requests` of them.
fn spec(proxy: SocketAddr, connections: usize, max_requests: u64) -> LoadSpec {
    LoadSpec {
        target: "bare proxy".into(),
        addr: proxy,
        path: http::Uri::from_static("/v1/chat/completions"),
        authorization: None,
        body: loadgen::chat_body(1024),
        connections,
        warmup: Duration::ZERO,
        duration: Duration::from_secs(5),
        max_requests,
        rate: None,
        workload: Workload::Chat,
    }
}

#[tokio::test]
async fn the_durable_floor_records_each_decision_before_the_upstream_call() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(AuditLog::open(dir.path(), &AuditConfig::default()).unwrap());
    let seen = Arc::new(AtomicU64::new(0));
    let upstream = checking_upstream(dir.path().to_path_buf(), seen.clone()).await;
    let spec = spec(start_proxy(upstream, Some(log.clone())).await, 4, 200);
    loadgen::probe(&spec).await.unwrap();
    let result = loadgen::run(&spec).await.unwrap();
    assert_eq!(result.errors, 0, "first error: {:?}", result.first_error);
    assert!(result.requests > 0);

    // Every forwarded request left a decision and an outcome, in one intact chain.
    log.close().await.unwrap();
    let forwarded = seen.load(Ordering::SeqCst);
    let report = warden::audit::verify(dir.path()).unwrap();
    assert_eq!(report.records, 2 * forwarded, "{report}");
    assert_eq!(decisions_on_disk(dir.path()), forwarded);
}

#[tokio::test]
async fn the_bare_floor_forwards_without_a_log() {
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    let upstream = checking_upstream(dir.path().to_path_buf(), seen.clone()).await;
    let spec = spec(start_proxy(upstream, None).await, 1, 1);
    // No log: the checking upstream sees no decision record and answers 500, which the
    // bare proxy passes through unchanged.
    let err = loadgen::probe(&spec).await.unwrap_err();
    assert!(err.to_string().contains("500"), "{err}");
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}
