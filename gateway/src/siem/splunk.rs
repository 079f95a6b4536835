//! Splunk HTTP Event Collector: batches of event objects, concatenated, to
//! `/services/collector/event` with `Authorization: Splunk <token>` and a channel
//! (`X-Splunk-Request-Channel`); with indexer acknowledgement on, a batch counts as delivered
//! only once `/services/collector/ack` says its `ackId` is indexed. Each event carries its
//! stable id as the indexed field `event_id`, so a redelivered batch deduplicates at search
//! time (`| dedup event_id`).

use std::time::Instant;

use serde_json::{Value, json};

use super::config::{EventShape, SplunkConfig};
use super::http::{Secret, error_text, gzip, short};
use super::spool::Entry;
use super::verdict::{SendError, Verdict};

/// A Splunk HEC destination.
pub struct SplunkSink {
    config: SplunkConfig,
    shape: EventShape,
    client: reqwest::Client,
    token: Secret,
    host: String,
    channel: String,
    event_url: reqwest::Url,
    ack_url: reqwest::Url,
    /// Sends in a row whose acknowledgement did not come within their wait.
    unacknowledged: u32,
}

/// The most an unacknowledged batch's wait grows to, in `ack_timeout`s.
pub const ACK_WAIT_GROWTH: u32 = 16;

/// How long to wait for the acknowledgement of a batch after `unacknowledged` sends in a row
/// went unacknowledged: `ack_timeout`, doubling with each, up to `ACK_WAIT_GROWTH` times it.
/// Each re-send is a duplicate in Splunk, so their number grows with the log of the outage's
/// length, not with the length itself.
pub fn ack_wait(ack_timeout: std::time::Duration, unacknowledged: u32) -> std::time::Duration {
    ack_timeout * (1u32 << unacknowledged.min(ACK_WAIT_GROWTH.ilog2()))
}

/// What HEC answered to a request, by its documented status codes.
#[derive(Debug, PartialEq, Eq)]
pub enum HecReply {
    /// 200, code 0: taken; `ack_id` when acknowledgement is on.
    Success { ack_id: Option<u64> },
    /// 503 or code 9: the server is busy; try again later.
    Busy,
    /// Codes 1–4 (401, 403): the token is disabled, missing or invalid.
    Token(String),
    /// Codes 10, 11: the channel is missing or unknown (after a restart of the collector).
    Channel(String),
    /// Codes 7 (incorrect index), 14 (ACK is disabled), 16: a configuration mismatch an
    /// operator must fix; try again later.
    Configuration(String),
    /// Codes 5, 6, 12, 13, 15, or a 400 or 422 without a code: the data was refused.
    Data(String),
    /// 413 (Splunk's `max_content_length`, a proxy's body limit): the request is too large.
    TooLarge(String),
    /// A 2xx answer without HEC's success body (`{"code":0}`): a proxy's or login page's
    /// answer, not the collector's; nothing says the batch was received.
    Unconfirmed(String),
    /// Anything else (5xx, unknown answers): try again later.
    Other(String),
}

/// Reads HEC's answer: its HTTP status and JSON body `{"text": ..., "code": N, "ackId": M}`.
pub fn parse_reply(status: u16, body: &[u8]) -> HecReply {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let code = v["code"].as_u64();
    let text = v["text"]
        .as_str()
        .map(short)
        .unwrap_or_else(|| short(&String::from_utf8_lossy(body)));
    let what = format!(
        "HTTP {status}, code {}: {text}",
        code.map_or("none".into(), |c| c.to_string())
    );
    match (status, code) {
        (200..=299, Some(0)) => HecReply::Success {
            ack_id: v["ackId"].as_u64(),
        },
        (200..=299, _) => HecReply::Unconfirmed(what),
        (413, _) => HecReply::TooLarge(what),
        (503, _) | (_, Some(9)) => HecReply::Busy,
        (_, Some(1..=4)) | (401 | 403, _) => HecReply::Token(what),
        (_, Some(10 | 11)) => HecReply::Channel(what),
        (_, Some(7 | 14 | 16)) => HecReply::Configuration(what),
        (400, Some(5 | 6 | 12 | 13 | 15)) | (400 | 422, None) => HecReply::Data(what),
        _ => HecReply::Other(what),
    }
}

/// Reads an answer of `/services/collector/ack`: `{"acks": {"7": true}}`; whether `id` is
/// indexed.
pub fn parse_ack(body: &[u8], id: u64) -> Option<bool> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v["acks"][id.to_string()].as_bool()
}

impl SplunkSink {
    /// A sink for `config`, its token already read.
    pub fn new(
        config: SplunkConfig,
        shape: EventShape,
        client: reqwest::Client,
        token: Secret,
    ) -> Result<SplunkSink, String> {
        let base = crate::config::url::secure_url(&config.url)?;
        let join = |path: &str| base.join(path).map_err(|e| format!("{}: {e}", config.url));
        let event_url = join("services/collector/event")?;
        let ack_url = join("services/collector/ack")?;
        let channel = config
            .channel
            .clone()
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        Ok(SplunkSink {
            host: config.host.clone().unwrap_or_else(super::host::host_name),
            config,
            shape,
            client,
            token,
            channel,
            event_url,
            ack_url,
            unacknowledged: 0,
        })
    }

    /// The batch as HEC's event format: one event object after the other.
    pub fn encode(&self, batch: &[&Entry]) -> Vec<u8> {
        let mut body = Vec::with_capacity(batch.iter().map(|e| e.bytes + 256).sum());
        for entry in batch {
            let time = entry
                .record
                .time()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| json!((d.as_millis() as f64) / 1000.0));
            let mut event = json!({
                "host": self.host,
                "source": self.config.source,
                "sourcetype": self.config.sourcetype,
                "event": self.shape.shape().of(&entry.record),
                "fields": {"event_id": entry.record.id, "seq": entry.seq.to_string()},
            });
            if let Some(time) = time {
                event["time"] = time;
            }
            if let Some(index) = &self.config.index {
                event["index"] = json!(index);
            }
            // Escaped as the CLI prints it: a SIEM's table shows no raw bidi or invisible text.
            body.extend_from_slice(crate::audit::shape::terminal_line(&event).as_bytes());
            body.push(b'\n');
        }
        body
    }

    fn request(&self, url: &reqwest::Url, body: Vec<u8>) -> reqwest::RequestBuilder {
        let mut request = self
            .client
            .post(url.clone())
            .header("authorization", format!("Splunk {}", self.token.value()))
            .header("x-splunk-request-channel", &self.channel)
            .header("content-type", "application/json");
        if self.config.gzip && body.len() > 512 {
            request = request.header("content-encoding", "gzip").body(gzip(&body));
        } else {
            request = request.body(body);
        }
        request
    }

    async fn post(&self, url: &reqwest::Url, body: Vec<u8>) -> Result<HecReply, SendError> {
        let response = self
            .request(url, body)
            .send()
            .await
            .map_err(|e| SendError::Retry(format!("Splunk HEC: {}", error_text(&e))))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| SendError::Retry(format!("Splunk HEC: {}", error_text(&e))))?;
        Ok(parse_reply(status, &body))
    }

    /// Sends the batch and, with acknowledgement on, waits until it is indexed.
    pub async fn send(&mut self, batch: &[&Entry]) -> Result<Verdict, SendError> {
        let reply = self
            .post(&self.event_url.clone(), self.encode(batch))
            .await?;
        let ack_id = match reply {
            HecReply::Success { ack_id } => ack_id,
            other => return Err(self.failure(other).await),
        };
        if !self.config.acknowledgements {
            return Ok(Verdict::delivered());
        }
        let Some(ack_id) = ack_id else {
            return Err(SendError::Retry(
                "Splunk HEC answered without an ackId: enable indexer acknowledgement on the token, or set acknowledgements: false".into(),
            ));
        };
        self.wait_for_ack(ack_id).await?;
        Ok(Verdict::delivered())
    }

    /// Asks for `ack_id` every `ack_interval` until it is indexed or `ack_timeout` passes.
    async fn wait_for_ack(&mut self, ack_id: u64) -> Result<(), SendError> {
        let wait = ack_wait(self.config.ack_timeout, self.unacknowledged);
        let deadline = Instant::now() + wait;
        let body = serde_json::to_vec(&json!({"acks": [ack_id]})).unwrap_or_default();
        loop {
            tokio::time::sleep(self.config.ack_interval).await;
            let sent = self
                .request(&self.ack_url.clone(), body.clone())
                .send()
                .await;
            match sent {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let bytes = response.bytes().await.unwrap_or_default();
                    if (200..300).contains(&status) {
                        if parse_ack(&bytes, ack_id) == Some(true) {
                            self.unacknowledged = 0;
                            return Ok(());
                        }
                    } else {
                        // An ack query refused for its body says nothing of the batch's data:
                        // asked again until the wait ends.
                        match parse_reply(status, &bytes) {
                            HecReply::Busy
                            | HecReply::Other(_)
                            | HecReply::Data(_)
                            | HecReply::TooLarge(_) => {}
                            other => return Err(self.failure(other).await),
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %error_text(&e), "Splunk HEC ack query failed"),
            }
            if Instant::now() >= deadline {
                self.new_channel();
                self.unacknowledged = self.unacknowledged.saturating_add(1);
                return Err(SendError::Retry(format!(
                    "Splunk HEC did not acknowledge ackId {ack_id} within {wait:?}; sending the batch again (a duplicate, with the same event_id), then waiting {:?} for its acknowledgement",
                    ack_wait(self.config.ack_timeout, self.unacknowledged)
                )));
            }
        }
    }

    /// A new channel: the collector forgot the old one (a restart), or its acknowledgements
    /// are lost.
    fn new_channel(&mut self) {
        if self.config.channel.is_none() {
            self.channel = uuid::Uuid::now_v7().to_string();
        }
    }

    async fn failure(&mut self, reply: HecReply) -> SendError {
        match reply {
            HecReply::Success { .. } => SendError::Retry("Splunk HEC: unexpected success".into()),
            HecReply::Busy => SendError::Retry("Splunk HEC is busy (503, code 9)".into()),
            HecReply::Token(what) => {
                self.token.refresh().await;
                SendError::Retry(format!(
                    "Splunk HEC refused the token ({what}); check the token's source"
                ))
            }
            HecReply::Channel(what) => {
                self.new_channel();
                SendError::Retry(format!(
                    "Splunk HEC: {what}; sending again on a new channel"
                ))
            }
            HecReply::Configuration(what) => SendError::Retry(format!(
                "Splunk HEC refused the request ({what}); check the sink's index and the token's settings"
            )),
            HecReply::Data(what) => {
                SendError::Rejected(format!("Splunk HEC rejected the data: {what}"))
            }
            HecReply::TooLarge(what) => SendError::Rejected(format!(
                "Splunk HEC refused the request as too large ({what}); to ship records this large, raise the collector's body limit (Splunk's max_content_length, a proxy's)"
            )),
            HecReply::Unconfirmed(what) => SendError::Retry(format!(
                "Splunk HEC answered {what}, which is not the collector's success answer ({{\"text\":\"Success\",\"code\":0}}): the batch is not known to be received; check that the sink's url is the HEC endpoint, not a proxy's or a login page"
            )),
            HecReply::Other(what) => SendError::Retry(format!("Splunk HEC: {what}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bidi_and_invisible_text_is_shipped_escaped_in_every_shape_and_reads_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("hec");
        std::fs::write(&token, "t").unwrap();
        let config: SplunkConfig = serde_json::from_value(
            json!({"url": "https://splunk.example:8088", "token": {"file": token}}),
        )
        .unwrap();
        let entry = Entry::hostile();
        for shape in [EventShape::Ecs, EventShape::Ocsf, EventShape::Raw] {
            let token = Secret::read(&config.token, "splunk_hec.token", None)
                .await
                .unwrap();
            let sink =
                SplunkSink::new(config.clone(), shape, reqwest::Client::new(), token).unwrap();
            let body = String::from_utf8(sink.encode(&[&entry])).unwrap();
            crate::audit::shape::assert_escaped(&body);
            assert!(
                body.contains(r"\u202e") && body.contains(r"\u200b"),
                "{body}"
            );
            let event: Value = serde_json::from_str(body.trim_end()).unwrap();
            assert_eq!(
                event["event"],
                shape.shape().of(&entry.record),
                "{shape:?}: the same value for a JSON reader"
            );
        }
    }

    #[test]
    fn replies_are_read_by_their_documented_codes() {
        assert_eq!(
            parse_reply(200, br#"{"text":"Success","code":0,"ackId":7}"#),
            HecReply::Success { ack_id: Some(7) }
        );
        assert_eq!(
            parse_reply(200, br#"{"text":"Success","code":0}"#),
            HecReply::Success { ack_id: None }
        );
        assert_eq!(
            parse_reply(503, br#"{"text":"Server is busy","code":9}"#),
            HecReply::Busy
        );
        assert!(matches!(
            parse_reply(403, br#"{"text":"Invalid token","code":4}"#),
            HecReply::Token(t) if t.contains("Invalid token")
        ));
        assert!(matches!(
            parse_reply(401, br#"{"text":"Token is required","code":2}"#),
            HecReply::Token(_)
        ));
        assert!(matches!(
            parse_reply(400, br#"{"text":"Data channel is missing","code":10}"#),
            HecReply::Channel(_)
        ));
        assert!(matches!(
            parse_reply(400, br#"{"text":"Invalid data channel","code":11}"#),
            HecReply::Channel(_)
        ));
        assert!(matches!(
            parse_reply(
                400,
                br#"{"text":"Incorrect index","code":7,"invalid-event-number":0}"#
            ),
            HecReply::Configuration(_)
        ));
        assert!(matches!(
            parse_reply(
                400,
                br#"{"text":"Invalid data format","code":6,"invalid-event-number":3}"#
            ),
            HecReply::Data(_)
        ));
        assert!(matches!(
            parse_reply(502, b"<html>bad gateway</html>"),
            HecReply::Other(_)
        ));
    }

    #[test]
    fn a_2xx_without_the_success_code_is_not_a_delivery() {
        for (status, body) in [
            (200, &b"<html>ok</html>"[..]),
            (200, b""),
            (200, br#"{"text":"Success"}"#),
            (204, b""),
            (200, br#"{"text":"Success","code":"0"}"#),
        ] {
            assert!(
                matches!(parse_reply(status, body), HecReply::Unconfirmed(_)),
                "{status} {}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn a_request_too_large_or_malformed_is_refused_for_its_data() {
        assert!(matches!(
            parse_reply(413, b"<html>413 Request Entity Too Large</html>"),
            HecReply::TooLarge(t) if t.contains("413")
        ));
        assert!(matches!(
            parse_reply(413, br#"{"text":"Content-Length too large","code":-1}"#),
            HecReply::TooLarge(_)
        ));
        assert!(matches!(
            parse_reply(400, b"<html>400 Bad Request</html>"),
            HecReply::Data(_)
        ));
        assert!(matches!(parse_reply(404, b"not found"), HecReply::Other(_)));
    }

    #[test]
    fn the_wait_for_an_acknowledgement_doubles_while_none_comes_up_to_a_bound() {
        let timeout = std::time::Duration::from_secs(1);
        let waits: Vec<u64> = (0..8).map(|n| ack_wait(timeout, n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 16, 16, 16]);
        assert_eq!(ack_wait(timeout, u32::MAX).as_secs(), 16);
    }

    #[test]
    fn acks_are_read_for_their_id() {
        let body = br#"{"acks":{"3":true,"4":false}}"#;
        assert_eq!(parse_ack(body, 3), Some(true));
        assert_eq!(parse_ack(body, 4), Some(false));
        assert_eq!(parse_ack(body, 5), None);
        assert_eq!(parse_ack(b"nope", 3), None);
    }
}
