//! Reading a list a server answers in pages (`tools/list`, `tasks/list`, ...), following its
//! cursor to the end, within a bound: at most [`MAX_PAGES`] pages, [`MAX_LIST_BYTES`] of items
//! and [`MAX_LIST_ITEMS`] items across all of them ([`PageError::TooLarge`] past either), so a
//! server cannot make Warden hold more of one list than of one answer.

use http::{Response, StatusCode};
use serde_json::{Map, Value, json};

use super::answer::json_response;
use crate::json_len::json_len;
use crate::mcp::{Link, McpError};
use crate::protocol::mcp::jsonrpc;
use crate::proxy::exchange::{Exchange, ProxyBody};
use crate::text::{FIELD_MAX, bounded};

/// Pages of one server's list Warden reads at most.
pub(super) const MAX_PAGES: usize = 32;

/// Bytes of items (as JSON) of one server's list Warden holds at most, across its pages: the
/// bound of one answer.
pub(super) const MAX_LIST_BYTES: usize = 16 * 1024 * 1024;

/// Items of one server's list Warden holds at most, across its pages.
pub(super) const MAX_LIST_ITEMS: usize = 10_000;

/// Why one server's list could not be read.
#[derive(Debug, thiserror::Error)]
pub(super) enum PageError {
    /// A page could not be had.
    #[error(transparent)]
    Mcp(#[from] McpError),
    /// The list grew past a bound across its pages.
    #[error(
        "MCP server {server}'s {method} holds more than {limit} across its pages, the most \
         Warden reads of one list; its items are left out (the server's operator should list \
         fewer or smaller items)"
    )]
    TooLarge {
        /// The server, bounded.
        server: String,
        /// The list's method.
        method: String,
        /// The bound passed, in words.
        limit: String,
    },
}

/// The items of one server's list gathered so far, within [`MAX_LIST_BYTES`] and
/// [`MAX_LIST_ITEMS`].
struct Gathered {
    items: Vec<Value>,
    bytes: usize,
}

impl Gathered {
    fn new() -> Gathered {
        Gathered {
            items: Vec::new(),
            bytes: 0,
        }
    }

    /// Adds one page's items; past a bound, which one.
    fn add(&mut self, page: &[Value]) -> Result<(), String> {
        if self.items.len() + page.len() > MAX_LIST_ITEMS {
            return Err(format!("{MAX_LIST_ITEMS} items"));
        }
        for item in page {
            self.bytes = self.bytes.saturating_add(json_len(item));
            if self.bytes > MAX_LIST_BYTES {
                return Err(format!("{MAX_LIST_BYTES} bytes"));
            }
        }
        self.items.extend(page.iter().cloned());
        Ok(())
    }
}

/// The items under `key` of every page (at most [`MAX_PAGES`], [`MAX_LIST_ITEMS`] items and
/// [`MAX_LIST_BYTES`] in all) `method` answers, following the server's `nextCursor`.
pub(super) async fn read_pages(
    link: &Link,
    method: &str,
    key: &str,
) -> Result<Vec<Value>, PageError> {
    let mut gathered = Gathered::new();
    let mut cursor: Option<Value> = None;
    for _ in 0..MAX_PAGES {
        let mut params = Map::new();
        if let Some(c) = cursor.take() {
            params.insert("cursor".into(), c);
        }
        let response = link.request(method, params).await.map_err(McpError::from)?;
        let Some(result) = response.get("result") else {
            let why = response
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("no result");
            return Err(McpError::NoServer(bounded(why, FIELD_MAX).into_owned()).into());
        };
        if let Some(Value::Array(page)) = result.get(key)
            && let Err(limit) = gathered.add(page)
        {
            // Logged by the caller, which leaves the server's items out.
            return Err(PageError::TooLarge {
                server: bounded(&link.router.server, FIELD_MAX).into_owned(),
                method: method.to_owned(),
                limit,
            });
        }
        match result.get("nextCursor") {
            Some(c) if !c.is_null() => cursor = Some(c.clone()),
            _ => break,
        }
    }
    Ok(gathered.items)
}

/// The servers whose items a list answer leaves out, by why.
pub(super) struct Left<'a> {
    /// Their list failed: all their items are left out (`_meta["warden/unavailable"]`).
    pub unavailable: &'a [String],
    /// They have as many items of the list's kind pinned as Warden keeps: their new ones are
    /// left out (`_meta["warden/pin_limit"]`).
    pub pin_limit: &'a [String],
}

/// The answer to the agent's list request `id`: `items` under `key`, and the servers whose
/// items are left out (`left`) named in its `_meta`; its outcome recorded.
pub(super) fn answer_list(
    ex: &mut Exchange,
    key: &str,
    items: Vec<Value>,
    left: Left<'_>,
    id: &Value,
) -> Response<ProxyBody> {
    let mut result = Map::new();
    result.insert(key.into(), Value::Array(items));
    let mut meta = Map::new();
    if !left.unavailable.is_empty() {
        meta.insert("warden/unavailable".into(), json!(left.unavailable));
    }
    if !left.pin_limit.is_empty() {
        meta.insert("warden/pin_limit".into(), json!(left.pin_limit));
    }
    if !meta.is_empty() {
        result.insert("_meta".into(), Value::Object(meta));
    }
    ex.outcome(StatusCode::OK).mcp_result(None, None);
    json_response(StatusCode::OK, &jsonrpc::result(id, Value::Object(result)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_is_bounded_in_items_across_pages() {
        let mut gathered = Gathered::new();
        let page: Vec<Value> = (0..MAX_LIST_ITEMS / 2)
            .map(|i| json!({"name": i}))
            .collect();
        gathered.add(&page).unwrap();
        gathered.add(&page).unwrap();
        assert_eq!(gathered.items.len(), MAX_LIST_ITEMS);
        let limit = gathered.add(&[json!({"name": "one more"})]).unwrap_err();
        assert_eq!(limit, "10000 items");
        assert_eq!(gathered.items.len(), MAX_LIST_ITEMS);
    }

    #[test]
    fn a_list_is_bounded_in_bytes_across_pages() {
        // Four pages of 5 MiB each, every one under the bound of one answer.
        let big = "x".repeat(5 * 1024 * 1024);
        let page = vec![json!({"name": "t", "description": big})];
        let mut gathered = Gathered::new();
        for _ in 0..3 {
            gathered.add(&page).unwrap();
        }
        let limit = gathered.add(&page).unwrap_err();
        assert_eq!(limit, format!("{MAX_LIST_BYTES} bytes"));
        assert_eq!(gathered.items.len(), 3);
    }

    #[test]
    fn the_error_names_the_server_and_the_limit() {
        let e = PageError::TooLarge {
            server: "evil2".into(),
            method: "tools/list".into(),
            limit: format!("{MAX_LIST_BYTES} bytes"),
        };
        let text = e.to_string();
        assert!(text.contains("evil2"), "{text}");
        assert!(text.contains("tools/list"), "{text}");
        assert!(text.contains("16777216 bytes"), "{text}");
    }
}
