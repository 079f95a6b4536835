//! An upstream that echoes the credential Warden injected in a gzipped body and in HTTP/1.1
//! trailers: the agent gets the body decoded and redacted, on the wire as it arrives (a raw
//! HTTP/1.1 client that asks for trailers, `te: trailers`), the trailers redacted like the
//! body, and the secret nowhere in clear.

use serde_json::json;
use warden_e2e::fake_llm::FakeLlm;
use warden_e2e::trailing_echo::{TrailingEcho, get_with_trailers, get_without_trailers};
use warden_e2e::warden::{Warden, WardenBuilder};

const SECRET: &str = "sk-e2e-echoed-in-trailers-4242";

async fn stage() -> (FakeLlm, TrailingEcho, Warden, String) {
    let fake = FakeLlm::start().await.unwrap();
    let echo = TrailingEcho::start().await.unwrap();
    let warden = WardenBuilder::new(&fake)
        .set(
            "/routes/3",
            json!({"name": "echo", "prefix": "/echo", "connector": "openai",
                   "upstream": echo.url(), "credential": {"env": "E2E_ECHO_KEY"}}),
        )
        .env("E2E_ECHO_KEY", SECRET)
        .start()
        .await
        .unwrap();
    let token = warden.token("echo-agent").await.unwrap();
    (fake, echo, warden, token)
}

/// Checks that `raw`, an answer as the agent received it, is the echo with the secret
/// redacted in its body, and nowhere in clear.
fn assert_redacted(raw: &str) {
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(
        !raw.contains(SECRET),
        "the secret never reaches the agent: {raw}"
    );
    let (body, _trailers) = body_and_trailers(raw);
    assert_eq!(body, r#"{"authorization":"Bearer [REDACTED]"}"#, "{raw}");
}

/// The answer's body (chunks joined) and trailer section, from its raw text.
fn body_and_trailers(raw: &str) -> (String, String) {
    let (_, mut rest) = raw.split_once("\r\n\r\n").expect("a head");
    let mut body = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").expect("a chunk size");
        let size = usize::from_str_radix(size.trim(), 16).expect("a hex chunk size");
        if size == 0 {
            return (body, after.to_owned());
        }
        body.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

#[tokio::test]
async fn a_credential_echoed_in_a_gzipped_body_reaches_the_agent_decoded_and_redacted() {
    let (_fake, _echo, warden, token) = stage().await;
    let raw = get_with_trailers(&warden.url(""), "/echo/models?gzip=1", &token)
        .await
        .unwrap();
    let head = raw.split("\r\n\r\n").next().unwrap_or_default();
    assert!(
        !head.to_ascii_lowercase().contains("content-encoding"),
        "served decoded: {raw}"
    );
    assert_redacted(&raw);
}

#[tokio::test]
async fn a_credential_echoed_in_an_http1_trailer_reaches_an_agent_that_asks_for_trailers_redacted()
{
    let (_fake, _echo, warden, token) = stage().await;
    for path in ["/echo/models", "/echo/models?gzip=1"] {
        let raw = get_with_trailers(&warden.url(""), path, &token)
            .await
            .unwrap();
        assert_redacted(&raw);
        // `te: trailers` went upstream (the echo sends its trailer only then), and the
        // `Trailer` declaration came back, without which hyper sends no trailer field.
        let head = raw.split("\r\n\r\n").next().unwrap_or_default();
        assert!(
            head.to_ascii_lowercase()
                .contains("\r\ntrailer: x-echo-authorization"),
            "{path}: {raw}"
        );
        let (_, trailers) = body_and_trailers(&raw);
        assert_eq!(
            trailers, "x-echo-authorization: Bearer [REDACTED]\r\n\r\n",
            "{path}: {raw}"
        );
    }
}

#[tokio::test]
async fn an_agent_that_does_not_ask_for_trailers_gets_neither_trailers_nor_their_declaration() {
    let (_fake, _echo, warden, token) = stage().await;
    let raw = get_without_trailers(&warden.url(""), "/echo/models", &token)
        .await
        .unwrap();
    assert_redacted(&raw);
    let head = raw.split("\r\n\r\n").next().unwrap_or_default();
    assert!(!head.to_ascii_lowercase().contains("\r\ntrailer:"), "{raw}");
    let (_, trailers) = body_and_trailers(&raw);
    assert_eq!(trailers, "\r\n", "{raw}");
}
