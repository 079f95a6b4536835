//! Reading a list a server answers in pages (`tools/list`, `tasks/list`, ...), following its
//! cursor to the end, within a bound.

use http::{Response, StatusCode};
use serde_json::{Map, Value, json};

use super::answer::json_response;
use crate::mcp::{Link, McpError};
use crate::protocol::mcp::jsonrpc;
use crate::proxy::exchange::{Exchange, ProxyBody};
use crate::text::{FIELD_MAX, bounded};

/// Pages of one server's list Warden reads at most.
pub(super) const MAX_PAGES: usize = 32;

/// The items under `key` of every page (at most [`MAX_PAGES`]) `method` answers, following
/// the server's `nextCursor`.
pub(super) async fn read_pages(
    link: &Link,
    method: &str,
    key: &str,
) -> Result<Vec<Value>, McpError> {
    let mut items = Vec::new();
    let mut cursor: Option<Value> = None;
    for _ in 0..MAX_PAGES {
        let mut params = Map::new();
        if let Some(c) = cursor.take() {
            params.insert("cursor".into(), c);
        }
        let response = link.request(method, params).await?;
        let Some(result) = response.get("result") else {
            let why = response
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("no result");
            return Err(McpError::NoServer(bounded(why, FIELD_MAX).into_owned()));
        };
        if let Some(Value::Array(page)) = result.get(key) {
            items.extend(page.iter().cloned());
        }
        match result.get("nextCursor") {
            Some(c) if !c.is_null() => cursor = Some(c.clone()),
            _ => break,
        }
    }
    Ok(items)
}

/// The answer to the agent's list request `id`: `items` under `key`, and the servers whose
/// list failed (`failures`) named in `_meta["warden/unavailable"]`; its outcome recorded.
pub(super) fn answer_list(
    ex: &mut Exchange,
    key: &str,
    items: Vec<Value>,
    failures: &[String],
    id: &Value,
) -> Response<ProxyBody> {
    let mut result = Map::new();
    result.insert(key.into(), Value::Array(items));
    if !failures.is_empty() {
        result.insert("_meta".into(), json!({"warden/unavailable": failures}));
    }
    ex.outcome(StatusCode::OK).mcp_result(None, None);
    json_response(StatusCode::OK, &jsonrpc::result(id, Value::Object(result)))
}
