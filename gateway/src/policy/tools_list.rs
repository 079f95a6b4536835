//! Fetches an MCP server's tools over Streamable HTTP, for `warden policy schema --from-mcp
//! URL`: `initialize`, `notifications/initialized`, `tools/list` page by page (following
//! `nextCursor`), then ends the session. Answers may come as JSON or as an SSE stream.
//!
//! The server is dialled under the address guard of Warden's upstream connections (as an
//! endpoint's `mcp.servers` are): an address that is not globally reachable is refused unless
//! `--allow-private` allows it ([`PrivateAllowance`], the syntax of `upstream.allow_private`).
//! Unlike in the configuration, an address written in the URL is judged too: the URL is often
//! pasted from elsewhere, and the --header credentials go wherever it points.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::{Value, json};

use crate::upstream::address_guard::{AddressGuard, AddressRefused, PrivateAllowance};
use crate::upstream::guarded_http;

/// The protocol revision Warden asks for; the server may answer with another it supports.
const PROTOCOL_VERSION: &str = "2025-11-25";
/// Time limit of each request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;
/// Pages of `tools/list` read at most.
const MAX_PAGES: usize = 100;

/// Why the tools could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum ToolsListError {
    /// The URL or a header is malformed.
    #[error("{0}")]
    Usage(String),
    /// The server's address is not globally reachable and no --allow-private allows it.
    #[error(
        "{host} {resolves}{ip}, a {class} address: --from-mcp reaches a server at an address \
         that is not globally reachable only when --allow-private allows it; if this is the \
         server you mean, run again with --allow-private {suggest} (--allow-private takes an \
         address, a network such as 10.0.0.0/8, a host name or *.domain, as \
         upstream.allow_private does)"
    )]
    Private {
        host: String,
        resolves: &'static str,
        ip: IpAddr,
        class: String,
        suggest: String,
    },
    /// The server could not be reached or answered at the HTTP level with an error.
    #[error("{method}: {message}")]
    Http {
        method: &'static str,
        message: String,
    },
    /// The server answered with a JSON-RPC error.
    #[error("{method}: the server answered error {code}: {message}")]
    Rpc {
        method: &'static str,
        code: i64,
        message: String,
    },
    /// The answer is not what MCP specifies.
    #[error("{method}: {message}")]
    Protocol {
        method: &'static str,
        message: String,
    },
}

/// What the server told about itself and its tools.
#[derive(Debug, Clone)]
pub struct Listed {
    /// `serverInfo.name` from `initialize`.
    pub server_name: Option<String>,
    /// Every tool of every page.
    pub tools: Vec<Value>,
}

impl ToolsListError {
    /// The guard's refusal of `host` (a name, or the address written in the URL).
    fn private(refused: &AddressRefused, literal: bool) -> ToolsListError {
        ToolsListError::Private {
            host: refused.host.clone(),
            resolves: if literal { "is " } else { "resolves to " },
            ip: refused.ip,
            class: refused.class.to_string(),
            // The address alone is the narrowest grant; a name allows whatever it resolves to
            // later (a DNS answer can change), so it is offered as the wider option only.
            suggest: if literal {
                refused.ip.to_string()
            } else {
                format!(
                    "{ip} (that address only), or with --allow-private {host} (the wider \
                     grant: any address the name resolves to)",
                    ip = refused.ip,
                    host = refused.host
                )
            },
        }
    }
}

/// Fetches the tools of the MCP server at `url`, sending `headers` (`Name: value`, e.g. an
/// `Authorization`) with every request, dialling only addresses that are globally reachable
/// or that `allow_private` allows.
pub async fn fetch(
    url: &str,
    headers: &[String],
    allow_private: &[PrivateAllowance],
) -> Result<Listed, ToolsListError> {
    let url = reqwest::Url::parse(url)
        .map_err(|e| ToolsListError::Usage(format!("`{url}` is not a URL: {e}")))?;
    let guard = AddressGuard::new(allow_private);
    // reqwest resolves no address written in the URL: it is judged here.
    let literal = url
        .host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
        .and_then(|h| h.parse::<IpAddr>().ok());
    if let Some(ip) = literal {
        guard
            .judge(&ip.to_string(), &[ip])
            .map_err(|refused| ToolsListError::private(&refused, true))?;
    }
    let mut header_map = reqwest::header::HeaderMap::new();
    for header in headers {
        let (name, value) = header.split_once(':').ok_or_else(|| {
            ToolsListError::Usage(format!(
                "--header needs `Name: value` (got `{}`)",
                header.split(':').next().unwrap_or_default()
            ))
        })?;
        let name = reqwest::header::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|e| ToolsListError::Usage(format!("header name `{}`: {e}", name.trim())))?;
        let value = reqwest::header::HeaderValue::from_str(value.trim()).map_err(|_| {
            // Never echo the value: it is often a credential.
            ToolsListError::Usage(format!(
                "the value of header `{name}` is not a valid header value"
            ))
        })?;
        header_map.append(name, value);
    }
    // No redirect: one would carry the operator's --header credentials (and a Referer) to
    // wherever the server points: the server is reached only where named.
    let client = guarded_http::builder(guard, &[], REQUEST_TIMEOUT)
        .map_err(|e| ToolsListError::Usage(format!("cannot set up name resolution: {e}")))?
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("warden/", env!("CARGO_PKG_VERSION")))
        .default_headers(header_map)
        .build()
        .map_err(|e| ToolsListError::Usage(format!("cannot build an HTTP client: {e}")))?;
    let mut session = Session {
        client,
        url,
        id: None,
        version: None,
        next_id: 1,
    };
    let init = session
        .call(
            "initialize",
            json!({
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": { "name": "warden", "version": env!("CARGO_PKG_VERSION") }
            }),
        )
        .await?;
    session.version = init
        .get("protocolVersion")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let server_name = init
        .pointer("/serverInfo/name")
        .and_then(Value::as_str)
        .map(str::to_owned);
    session.notify("notifications/initialized").await?;
    let mut tools = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let params = match &cursor {
            Some(c) => json!({ "cursor": c }),
            None => json!({}),
        };
        let page = session.call("tools/list", params).await?;
        let Some(list) = page.get("tools").and_then(Value::as_array) else {
            return Err(ToolsListError::Protocol {
                method: "tools/list",
                message: "the result has no `tools` array".into(),
            });
        };
        tools.extend(list.iter().cloned());
        cursor = page
            .get("nextCursor")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if cursor.is_none() {
            session.end().await;
            return Ok(Listed { server_name, tools });
        }
    }
    session.end().await;
    Err(ToolsListError::Protocol {
        method: "tools/list",
        message: format!("more than {MAX_PAGES} pages"),
    })
}

/// Why a request could not be sent: the address guard's refusal, or what reqwest says.
fn sent(method: &'static str, error: &reqwest::Error) -> ToolsListError {
    match guarded_http::refusal_in(error) {
        Some(refused) => ToolsListError::private(refused, false),
        None => ToolsListError::Http {
            method,
            message: error.to_string(),
        },
    }
}

/// What an unsuccessful answer says: its status, and for a redirect where it points (not
/// followed: the --header credentials would go along).
fn refused(response: &reqwest::Response) -> String {
    let status = response.status();
    if !status.is_redirection() {
        return format!("HTTP {status}");
    }
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .map(|l| {
            crate::text::Quoted::with_max(&String::from_utf8_lossy(l.as_bytes()), 200).to_string()
        })
        .unwrap_or_else(|| "nowhere".into());
    format!(
        "HTTP {status}: the server redirects to {location}, which Warden does not follow (the \
         --header values would go along); give that URL to --from-mcp if it is the server"
    )
}

/// One MCP session over Streamable HTTP.
struct Session {
    client: reqwest::Client,
    url: reqwest::Url,
    /// `Mcp-Session-Id`, once the server gave one.
    id: Option<String>,
    /// The negotiated protocol revision, sent as `MCP-Protocol-Version` after `initialize`.
    version: Option<String>,
    next_id: i64,
}

impl Session {
    fn post(&self, body: &Value) -> reqwest::RequestBuilder {
        let mut request = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                reqwest::header::ACCEPT,
                "application/json, text/event-stream",
            )
            .body(body.to_string());
        if let Some(id) = &self.id {
            request = request.header("mcp-session-id", id);
        }
        if let Some(version) = &self.version {
            request = request.header("mcp-protocol-version", version);
        }
        request
    }

    /// Sends request `method` and returns its result.
    async fn call(&mut self, method: &'static str, params: Value) -> Result<Value, ToolsListError> {
        let id = self.next_id;
        self.next_id += 1;
        let body = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        let http = |message: String| ToolsListError::Http { method, message };
        let protocol = |message: String| ToolsListError::Protocol { method, message };
        let mut response = self
            .post(&body)
            .send()
            .await
            .map_err(|e| sent(method, &e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(http(refused(&response)));
        }
        if let Some(session) = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
        {
            self.id = Some(session.to_owned());
        }
        let is_sse = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/event-stream"));
        let mut buffer: Vec<u8> = Vec::new();
        let answer = loop {
            if is_sse && let Some(answer) = answer_in_events(&buffer, id) {
                break answer;
            }
            match response.chunk().await.map_err(|e| http(e.to_string()))? {
                Some(chunk) => {
                    if buffer.len() + chunk.len() > MAX_ANSWER_BYTES {
                        return Err(protocol(format!("answer over {MAX_ANSWER_BYTES} bytes")));
                    }
                    buffer.extend_from_slice(&chunk);
                }
                None if is_sse => {
                    return Err(protocol("the event stream ended without the answer".into()));
                }
                None => {
                    break serde_json::from_slice(&buffer)
                        .map_err(|e| protocol(format!("the answer is not JSON: {e}")))?;
                }
            }
        };
        if let Some(error) = answer.get("error") {
            return Err(ToolsListError::Rpc {
                method,
                code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: error
                    .get("message")
                    .and_then(Value::as_str)
                    .map(|m| crate::text::Quoted::with_max(m, 200).to_string())
                    .unwrap_or_default(),
            });
        }
        answer
            .get("result")
            .cloned()
            .ok_or_else(|| protocol("the answer has neither `result` nor `error`".into()))
    }

    /// Sends notification `method`.
    async fn notify(&self, method: &'static str) -> Result<(), ToolsListError> {
        let body = json!({ "jsonrpc": "2.0", "method": method });
        let response = self
            .post(&body)
            .send()
            .await
            .map_err(|e| sent(method, &e))?;
        if !response.status().is_success() {
            return Err(ToolsListError::Http {
                method,
                message: refused(&response),
            });
        }
        Ok(())
    }

    /// Ends the session (a courtesy: errors do not matter).
    async fn end(&self) {
        if let Some(id) = &self.id {
            let _ = self
                .client
                .delete(self.url.clone())
                .header("mcp-session-id", id)
                .send()
                .await;
        }
    }
}

/// The JSON-RPC answer with `id` among the complete events of an SSE stream so far.
fn answer_in_events(buffer: &[u8], id: i64) -> Option<Value> {
    let text = String::from_utf8_lossy(buffer);
    let text = text.replace("\r\n", "\n");
    // Only complete events: those followed by a blank line.
    let complete = &text[..text.rfind("\n\n")?];
    for event in complete.split("\n\n") {
        let data: Vec<&str> = event
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        if data.is_empty() {
            continue;
        }
        let Ok(message) = serde_json::from_str::<Value>(&data.join("\n")) else {
            continue;
        };
        if message.get("id").and_then(Value::as_i64) == Some(id)
            && (message.get("result").is_some() || message.get("error").is_some())
        {
            return Some(message);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_redirect_is_not_followed_and_names_its_location() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // Where the redirect points: any request reaching it is counted.
        let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target_addr = target.local_addr().unwrap();
        let reached = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&reached);
        tokio::spawn(async move {
            while let Ok((_socket, _)) = target.accept().await {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        });
        let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server_addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = server.accept().await {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let answer = format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://{target_addr}/steal\r\ncontent-length: 0\r\n\r\n"
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        let err = fetch(
            &format!("http://{server_addr}/mcp"),
            &["x-api-key: SECRET-123".to_owned()],
            &[loopback()],
        )
        .await
        .expect_err("a redirect fails");
        let said = err.to_string();
        assert!(said.contains("HTTP 307"), "{said}");
        assert!(
            said.contains(&format!("http://{target_addr}/steal")),
            "{said}"
        );
        assert!(!said.contains("SECRET-123"), "{said}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !reached.load(std::sync::atomic::Ordering::SeqCst),
            "the redirect was followed"
        );
    }

    fn loopback() -> PrivateAllowance {
        PrivateAllowance::try_from("127.0.0.0/8".to_owned()).unwrap()
    }

    #[tokio::test]
    async fn a_private_address_is_not_dialled_without_allow_private_and_the_error_names_it() {
        let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let reached = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&reached);
        tokio::spawn(async move {
            while let Ok((_socket, _)) = server.accept().await {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        });
        for url in [
            format!("http://{addr}/mcp"),
            "http://[::1]:9/mcp".to_owned(),
            "http://169.254.169.254/mcp".to_owned(),
            "http://10.1.2.3:8080/mcp".to_owned(),
        ] {
            let err = fetch(&url, &["authorization: Bearer SECRET-9".to_owned()], &[])
                .await
                .expect_err("refused");
            let said = err.to_string();
            assert!(
                matches!(err, ToolsListError::Private { .. }),
                "{url}: {said}"
            );
            assert!(said.contains("--allow-private "), "{said}");
            assert!(!said.contains("SECRET-9"), "{said}");
        }
        let said = fetch(&format!("http://{addr}/mcp"), &[], &[])
            .await
            .unwrap_err()
            .to_string();
        assert!(said.contains("--allow-private 127.0.0.1 "), "{said}");
        assert!(said.contains("loopback"), "{said}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !reached.load(std::sync::atomic::Ordering::SeqCst),
            "a refused address was dialled"
        );
        // Allowed, the server is reached (here it answers nothing MCP).
        let err = tokio::time::timeout(
            Duration::from_secs(5),
            fetch(&format!("http://{addr}/mcp"), &[], &[loopback()]),
        )
        .await;
        assert!(
            !matches!(err, Ok(Err(ToolsListError::Private { .. }))),
            "{err:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(reached.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[test]
    fn a_refusal_is_found_in_the_error_chain() {
        #[derive(Debug)]
        struct Wrapper(UpstreamResolveErrorBox);
        type UpstreamResolveErrorBox = Box<dyn std::error::Error + Send + Sync>;
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("error sending request")
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&*self.0)
            }
        }
        let refused = AddressRefused {
            host: "mcp.internal".into(),
            ip: "10.0.0.5".parse().unwrap(),
            class: crate::egress::ip_guard::classify("10.0.0.5".parse().unwrap()),
        };
        let error = Wrapper(Box::new(
            crate::upstream::address_guard::UpstreamResolveError::Refused(refused.clone()),
        ));
        assert_eq!(guarded_http::refusal_in(&error), Some(&refused));
        let said = ToolsListError::private(&refused, false).to_string();
        assert!(
            said.starts_with("mcp.internal resolves to 10.0.0.5, a "),
            "{said}"
        );
        assert!(
            said.contains("run again with --allow-private 10.0.0.5 (that address only), or with --allow-private mcp.internal (the wider"),
            "the resolved address first, the name as the wider option: {said}"
        );
        let other = Wrapper(Box::new(std::io::Error::other("refused")));
        assert_eq!(guarded_http::refusal_in(&other), None);
    }

    #[test]
    fn finds_the_answer_among_complete_events_only() {
        let stream = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n\
                       id: 7\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"tools\":[]}}\n\n";
        assert_eq!(
            answer_in_events(stream, 2),
            Some(json!({"jsonrpc": "2.0", "id": 2, "result": {"tools": []}}))
        );
        assert_eq!(answer_in_events(stream, 3), None);
        let partial = b"data: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n";
        assert_eq!(answer_in_events(partial, 2), None);
    }
}
