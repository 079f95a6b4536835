//! Elasticsearch and OpenSearch `_bulk`: each record a `create` into the sink's data stream
//! with `_id` = the record's stable id, so a redelivered record is the same document (its
//! 409 conflict counts as delivered). Each item's result is read: 429 and 5xx items are sent
//! again, other rejections (a mapping error, 400) are dead-lettered with their reason.

use serde_json::{Value, json};

use super::config::{ElasticConfig, EventShape};
use super::elastic_template::{Template, TemplateError};
use super::http::{error_text, gzip, short};
use super::spool::Entry;
use super::verdict::{SendError, Verdict};
use crate::audit::shape::terminal_line;

pub use super::elastic_auth::Auth;

/// An Elasticsearch or OpenSearch destination.
pub struct ElasticSink {
    config: ElasticConfig,
    shape: EventShape,
    client: reqwest::Client,
    auth: Auth,
    bulk_url: reqwest::Url,
    /// The index template Warden manages (`manage_template`), until it is installed.
    template: Option<Template>,
}

/// What one item's status means.
#[derive(Debug, PartialEq, Eq)]
pub enum ItemResult {
    /// Stored (201), or already there from an earlier delivery (409).
    Delivered,
    /// Could not be taken now (429, 5xx).
    Retry,
    /// Rejected for good, with the reason.
    Rejected(String),
}

/// Classifies one `_bulk` response item (`{"create": {"status": N, "error": {...}}}`).
pub fn classify_item(item: &Value) -> ItemResult {
    let result = item
        .as_object()
        .and_then(|o| o.values().next())
        .unwrap_or(&Value::Null);
    let status = result["status"].as_u64().unwrap_or(0);
    match status {
        200..=299 | 409 => ItemResult::Delivered,
        429 | 500..=599 => ItemResult::Retry,
        _ => {
            let error = &result["error"];
            let reason = match (error["type"].as_str(), error["reason"].as_str()) {
                (Some(t), Some(r)) => format!("{status} {t}: {r}"),
                _ => format!("{status} {}", short(&error.to_string())),
            };
            ItemResult::Rejected(reason)
        }
    }
}

/// Reads a `_bulk` answer for a batch of `count` records.
pub fn parse_bulk(body: &[u8], count: usize) -> Result<Verdict, SendError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        SendError::Retry(format!("the _bulk answer is not JSON ({e}); sending again"))
    })?;
    if v["errors"] == json!(false) {
        return Ok(Verdict::delivered());
    }
    let items = v["items"].as_array().map(Vec::as_slice).unwrap_or_default();
    if items.len() != count {
        return Err(SendError::Retry(format!(
            "the _bulk answer has {} items for {count} records; sending again",
            items.len()
        )));
    }
    let mut verdict = Verdict::default();
    for (i, item) in items.iter().enumerate() {
        match classify_item(item) {
            ItemResult::Delivered => {}
            ItemResult::Retry => verdict.retry.push(i),
            ItemResult::Rejected(reason) => verdict.rejected.push((i, reason)),
        }
    }
    Ok(verdict)
}

impl ElasticSink {
    /// A sink for `config`, its credential already read.
    pub fn new(
        config: ElasticConfig,
        shape: EventShape,
        client: reqwest::Client,
        auth: Auth,
    ) -> Result<ElasticSink, String> {
        let base = crate::config::url::secure_url(&config.url)?;
        let mut bulk_url = base.clone();
        bulk_url
            .path_segments_mut()
            .map_err(|_| format!("{}: cannot be a base URL", config.url))?
            .pop_if_empty()
            .push(&config.data_stream)
            .push("_bulk");
        let template = Template::of(config.manage_template, shape, &config.data_stream, &base)?;
        Ok(ElasticSink {
            config,
            shape,
            client,
            auth,
            bulk_url,
            template,
        })
    }

    /// Installs the index template the sink manages, if it does and has not yet; nothing is
    /// delivered before it is (the first records would fix the mappings).
    pub async fn install_template(&mut self) -> Result<(), TemplateError> {
        let Some(template) = &self.template else {
            return Ok(());
        };
        let engine = template.install(&self.client, &self.auth).await?;
        tracing::info!(template = %template.name, ?engine, data_stream = %self.config.data_stream,
            "installed Warden's index template");
        self.template = None;
        Ok(())
    }

    /// The batch as `_bulk` NDJSON: a `create` action with `_id` and the document, per
    /// record.
    pub fn encode(&self, batch: &[&Entry]) -> Vec<u8> {
        encode(self.shape, batch)
    }

    /// Sends the batch; per-item results decide what is sent again or dead-lettered.
    pub async fn send(&mut self, batch: &[&Entry]) -> Result<Verdict, SendError> {
        self.install_template()
            .await
            .map_err(|e| SendError::Retry(e.to_string()))?;
        let body = self.encode(batch);
        let mut request = self
            .client
            .post(self.bulk_url.clone())
            .header("content-type", "application/x-ndjson");
        request = if self.config.gzip {
            request.header("content-encoding", "gzip").body(gzip(&body))
        } else {
            request.body(body)
        };
        let response = self
            .auth
            .apply(request)
            .send()
            .await
            .map_err(|e| SendError::Retry(format!("_bulk: {}", error_text(&e))))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| SendError::Retry(format!("_bulk: {}", error_text(&e))))?;
        match status {
            200..=299 => parse_bulk(&body, batch.len()),
            401 | 403 => {
                self.auth.refresh().await;
                Err(SendError::Retry(format!(
                    "_bulk: HTTP {status}: the cluster refused Warden's credential ({}); check the sink's auth and its privileges",
                    short(&String::from_utf8_lossy(&body))
                )))
            }
            400 | 413 => Err(SendError::Rejected(format!(
                "_bulk: HTTP {status}: {}",
                short(&String::from_utf8_lossy(&body))
            ))),
            _ => Err(SendError::Retry(format!(
                "_bulk: HTTP {status}: {}",
                short(&String::from_utf8_lossy(&body))
            ))),
        }
    }
}

/// `batch` as `_bulk` NDJSON in `shape`.
pub fn encode(shape: EventShape, batch: &[&Entry]) -> Vec<u8> {
    let mut body = Vec::with_capacity(batch.iter().map(|e| e.bytes * 2 + 128).sum());
    for entry in batch {
        let action = json!({"create": {"_id": entry.record.id}});
        let mut doc = shape.shape().of(&entry.record);
        // A data stream needs `@timestamp`; ECS has it, the other shapes get it.
        if let Some(map) = doc.as_object_mut()
            && !map.contains_key("@timestamp")
        {
            map.insert("@timestamp".into(), entry.record.value["time"].clone());
        }
        let _ = serde_json::to_writer(&mut body, &action);
        body.push(b'\n');
        // Escaped as the CLI prints it: a SIEM's table shows no raw bidi or invisible text.
        body.extend_from_slice(terminal_line(&doc).as_bytes());
        body.push(b'\n');
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::read::Record;

    #[test]
    fn bulk_items_are_delivered_retried_or_rejected_by_status() {
        let body = br#"{"errors":true,"items":[
            {"create":{"_id":"a","status":201}},
            {"create":{"_id":"b","status":409,"error":{"type":"version_conflict_engine_exception","reason":"exists"}}},
            {"create":{"_id":"c","status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},
            {"create":{"_id":"d","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [user.id]"}}},
            {"create":{"_id":"e","status":503,"error":{"type":"unavailable_shards_exception","reason":"no shard"}}}
        ]}"#;
        let verdict = parse_bulk(body, 5).unwrap();
        assert_eq!(verdict.retry, [2, 4]);
        assert_eq!(verdict.rejected.len(), 1);
        assert_eq!(verdict.rejected[0].0, 3);
        assert!(verdict.rejected[0].1.contains("mapper_parsing_exception"));
        assert_eq!(
            parse_bulk(br#"{"errors":false,"items":[]}"#, 3).unwrap(),
            Verdict::delivered()
        );
        assert!(matches!(
            parse_bulk(br#"{"errors":true,"items":[]}"#, 3),
            Err(SendError::Retry(_))
        ));
    }

    #[test]
    fn each_record_is_a_create_with_its_id_and_a_timestamp() {
        let entry = Entry {
            record: Record {
                value: json!({"seq": 1, "time": "2026-12-01T00:00:00Z", "kind": "system"}),
                id: "ab".repeat(32),
            },
            seq: 1,
            segment: 1,
            end: 10,
            bytes: 10,
        };
        for shape in [EventShape::Ecs, EventShape::Ocsf, EventShape::Raw] {
            let body = encode(shape, &[&entry]);
            let lines: Vec<Value> = body
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_slice(l).unwrap())
                .collect();
            assert_eq!(lines[0], json!({"create": {"_id": "ab".repeat(32)}}));
            assert_eq!(lines[1]["@timestamp"], "2026-12-01T00:00:00Z", "{shape:?}");
        }
    }

    #[test]
    fn bidi_and_invisible_text_is_shipped_escaped_in_every_shape_and_reads_the_same() {
        let entry = Entry::hostile();
        for shape in [EventShape::Ecs, EventShape::Ocsf, EventShape::Raw] {
            let body = String::from_utf8(encode(shape, &[&entry])).unwrap();
            crate::audit::shape::assert_escaped(&body);
            assert!(
                body.contains(r"\u202e") && body.contains(r"\u2066"),
                "{body}"
            );
            let doc: Value = serde_json::from_str(body.lines().nth(1).unwrap()).unwrap();
            let mut expected = shape.shape().of(&entry.record);
            expected
                .as_object_mut()
                .unwrap()
                .entry("@timestamp")
                .or_insert(json!("2026-12-01T00:00:00Z"));
            assert_eq!(doc, expected, "{shape:?}: the same value for a JSON reader");
        }
    }
}
