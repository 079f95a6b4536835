//! Syslog (RFC 5424) over TCP, or TLS (RFC 5425) with a verified certificate, each message
//! framed by octet counting (RFC 6587: `LEN SP MSG`). Each message carries the record's id
//! and seq as structured data (`[warden@32473 id="…" seq="…" …]`; 32473 is the enterprise
//! number RFC 5612 reserves for examples) and, in `json` format, the event as JSON.
//! Syslog has no acknowledgement: a batch counts as delivered once written to the
//! connection and flushed.

use std::sync::Arc;

use serde_json::Value;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::config::{EventShape, SyslogConfig, SyslogFormat};
use super::http::SetupError;
use super::spool::Entry;
use super::verdict::{SendError, Verdict};

/// The SD-ID of Warden's structured data.
pub const SD_ID: &str = "warden@32473";

type Connection = Box<dyn AsyncWrite + Unpin + Send + Sync>;

/// A syslog destination.
pub struct SyslogSink {
    config: SyslogConfig,
    shape: EventShape,
    host: String,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls_pki_types::ServerName<'static>,
    )>,
    connection: Option<Connection>,
}

impl SyslogSink {
    /// A sink for `config` (`key` names it in errors).
    pub fn new(
        key: &str,
        config: SyslogConfig,
        shape: EventShape,
    ) -> Result<SyslogSink, SetupError> {
        let tls = match &config.tls {
            None => {
                let host = config.address.rsplit_once(':').map_or("", |(h, _)| h);
                if !crate::config::url::is_loopback(host) {
                    tracing::warn!(
                        sink = key,
                        address = %config.address,
                        "audit records go to this syslog collector over plain TCP: anyone on \
                         the network between can read them; set `tls:` for the collector"
                    );
                }
                None
            }
            Some(tls) => {
                let err = |reason: String| SetupError::Tls {
                    key: format!("{key}.tls"),
                    reason,
                };
                let mut roots = rustls::RootCertStore::empty();
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
                if let Some(path) = &tls.ca_file {
                    let certs =
                        crate::listener::read_certificates(path).map_err(|e| err(e.to_string()))?;
                    if certs.is_empty() {
                        return Err(err(format!("{} holds no certificate", path.display())));
                    }
                    for cert in certs {
                        roots
                            .add(cert)
                            .map_err(|e| err(format!("{}: {e}", path.display())))?;
                    }
                }
                let client =
                    rustls::ClientConfig::builder_with_provider(crate::listener::crypto_provider())
                        .with_safe_default_protocol_versions()
                        .map_err(|e| err(e.to_string()))?
                        .with_root_certificates(roots)
                        .with_no_client_auth();
                let host = tls.server_name.clone().unwrap_or_else(|| {
                    config
                        .address
                        .rsplit_once(':')
                        .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']').to_owned())
                        .unwrap_or_default()
                });
                let name = rustls_pki_types::ServerName::try_from(host.clone())
                    .map_err(|e| err(format!("{host:?} is not a server name: {e}")))?;
                Some((tokio_rustls::TlsConnector::from(Arc::new(client)), name))
            }
        };
        Ok(SyslogSink {
            host: config.host.clone().unwrap_or_else(super::host::host_name),
            config,
            shape,
            tls,
            connection: None,
        })
    }

    async fn connect(&self) -> Result<Connection, String> {
        let tcp = TcpStream::connect(&self.config.address)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", self.config.address))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some((connector, name)) => {
                let stream = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS with {}: {e}", self.config.address))?;
                Ok(Box::new(stream))
            }
        }
    }

    /// The batch as octet-counted RFC 5424 messages.
    pub fn encode(&self, batch: &[&Entry]) -> Vec<u8> {
        let mut out = Vec::new();
        for entry in batch {
            let message = message(&self.config, self.shape, &self.host, entry);
            out.extend_from_slice(message.len().to_string().as_bytes());
            out.push(b' ');
            out.extend_from_slice(message.as_bytes());
        }
        out
    }

    /// Writes the batch to the connection (connecting first if need be) and flushes it.
    pub async fn send(&mut self, batch: &[&Entry]) -> Result<Verdict, SendError> {
        let bytes = self.encode(batch);
        let timeout = self.config.timeout;
        let result = tokio::time::timeout(timeout, async {
            if self.connection.is_none() {
                self.connection = Some(self.connect().await?);
            }
            let Some(connection) = self.connection.as_mut() else {
                return Err("not connected".to_owned());
            };
            connection
                .write_all(&bytes)
                .await
                .map_err(|e| format!("write to {}: {e}", self.config.address))?;
            connection
                .flush()
                .await
                .map_err(|e| format!("write to {}: {e}", self.config.address))
        })
        .await;
        match result {
            Ok(Ok(())) => Ok(Verdict::delivered()),
            Ok(Err(e)) => {
                self.connection = None;
                Err(SendError::Retry(format!("syslog: {e}")))
            }
            Err(_) => {
                self.connection = None;
                Err(SendError::Retry(format!(
                    "syslog: {} did not take the batch within {timeout:?}",
                    self.config.address
                )))
            }
        }
    }
}

/// One RFC 5424 message: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG`.
pub fn message(config: &SyslogConfig, shape: EventShape, host: &str, entry: &Entry) -> String {
    let v = &entry.record.value;
    let kind = v["kind"].as_str().unwrap_or("record");
    let failed = v["decision"].as_str().is_some_and(|d| d != "allow")
        || kind == "rejected"
        || v["outcome"]["status"].as_u64().is_some_and(|s| s >= 400);
    // Warning for refusals and failures, informational otherwise.
    let severity = if failed { 4 } else { 6 };
    let pri = u16::from(config.facility) * 8 + severity;
    let time = v["time"].as_str().filter(|t| !t.is_empty()).unwrap_or("-");
    let mut sd = format!("[{SD_ID} id=\"{}\" seq=\"{}\"", entry.record.id, entry.seq);
    for (name, value) in [
        ("kind", &v["kind"]),
        ("action", &v["action"]),
        ("decision", &v["decision"]),
        ("principal", &v["principal"]["id"]),
        ("request_id", &v["request_id"]),
    ] {
        if let Some(text) = value.as_str().filter(|t| !t.is_empty()) {
            sd.push_str(&format!(" {name}=\"{}\"", sd_escape(text)));
        }
    }
    sd.push(']');
    let body = match config.format {
        SyslogFormat::Json => {
            let event: Value = shape.shape().of(&entry.record);
            // Escaped as the CLI prints it: a SIEM's table shows no raw bidi or invisible text.
            format!("\u{feff}{}", crate::audit::shape::terminal_line(&event))
        }
        SyslogFormat::Structured => {
            let words: Vec<String> = [
                &v["kind"],
                &v["decision"],
                &v["action"],
                &v["principal"]["id"],
            ]
            .into_iter()
            .filter_map(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(printable)
            .collect();
            format!("\u{feff}{}", words.join(" "))
        }
    };
    format!(
        "<{pri}>1 {time} {} {} {} {} {sd} {body}",
        header_field(host, 255),
        header_field(&config.app_name, 48),
        std::process::id(),
        header_field(kind, 32),
    )
}

/// A header field: printable US-ASCII without spaces, at most `max` characters, `-` if empty.
fn header_field(text: &str, max: usize) -> String {
    let field: String = text
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if field.is_empty() { "-".into() } else { field }
}

/// A PARAM-VALUE with `"`, `\` and `]` escaped (RFC 5424 section 6.3.3), and no line break
/// or other control character ([`printable`]).
fn sd_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in printable(text).chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `text` with control characters, line separators and bidirectional and invisible characters
/// written as `\u{…}`: a value an agent chose (its id, from a claim it may edit) cannot split
/// the message for a relay that writes one line per message, nor forge a line of its own, nor
/// read as another value in a collector's table (U+202E reverses what follows it).
fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() || crate::text::is_hidden(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::read::Record;
    use serde_json::json;

    fn config(format: SyslogFormat) -> SyslogConfig {
        let format = match format {
            SyslogFormat::Json => "json",
            SyslogFormat::Structured => "structured",
        };
        serde_json::from_value(json!({"address": "127.0.0.1:514", "format": format})).unwrap()
    }

    fn entry() -> Entry {
        Entry {
            record: Record {
                value: json!({"seq": 9, "time": "2026-12-01T10:00:00.123Z", "kind": "decision",
                    "action": "llm:chat", "decision": "deny", "principal": {"id": "bot \"x\"]"}}),
                id: "cd".repeat(32),
            },
            seq: 9,
            segment: 1,
            end: 100,
            bytes: 100,
        }
    }

    #[test]
    fn bidi_and_invisible_text_is_shipped_escaped_in_every_shape_and_reads_the_same() {
        let hostile = Entry::hostile();
        for shape in [EventShape::Ecs, EventShape::Ocsf, EventShape::Raw] {
            let m = message(&config(SyslogFormat::Json), shape, "gw-1", &hostile);
            let (_, body) = m.split_once('\u{feff}').unwrap();
            crate::audit::shape::assert_escaped(body);
            assert!(
                body.contains(r"\u202e") && body.contains(r"\u2028"),
                "{body}"
            );
            let event: Value = serde_json::from_str(body).unwrap();
            assert_eq!(event, shape.shape().of(&hostile.record), "{shape:?}");
        }
    }

    #[test]
    fn an_agent_id_with_line_breaks_cannot_split_the_message() {
        let mut forged = entry();
        forged.record.value["principal"]["id"] =
            json!("bot\n<110>1 2026-12-01T10:00:00Z gw-1 warden 1 decision - allow\u{2028}x");
        for format in [SyslogFormat::Json, SyslogFormat::Structured] {
            let m = message(&config(format), EventShape::Ecs, "gw-1", &forged);
            // (JSON keeps U+2028 inside its string: no relay splits lines on it.)
            assert!(!m.contains('\n'), "{m}");
            // `\` escaped again, as RFC 5424 wants in a PARAM-VALUE.
            assert!(m.contains(r#"principal="bot\\u{a}<110>1"#), "{m}");
        }
        let s = message(
            &config(SyslogFormat::Structured),
            EventShape::Ecs,
            "gw-1",
            &forged,
        );
        assert!(s.ends_with(r"allow\u{2028}x"), "{s}");
        assert!(!s.contains('\u{2028}'), "{s}");
    }

    #[test]
    fn a_value_with_bidi_or_invisible_characters_shows_them_escaped() {
        let mut forged = entry();
        forged.record.value["principal"]["id"] = json!("ci-bot\u{202e}\u{200b}x");
        forged.record.value["request_id"] = json!("r\u{2066}1");
        for format in [SyslogFormat::Json, SyslogFormat::Structured] {
            let m = message(&config(format), EventShape::Ecs, "gw-1", &forged);
            assert!(
                m.contains(r#"principal="ci-bot\\u{202e}\\u{200b}x""#),
                "{m}"
            );
            assert!(m.contains(r#"request_id="r\\u{2066}1""#), "{m}");
        }
        let s = message(
            &config(SyslogFormat::Structured),
            EventShape::Ecs,
            "gw-1",
            &forged,
        );
        assert!(s.ends_with(r"ci-bot\u{202e}\u{200b}x"), "{s}");
    }

    #[test]
    fn a_record_is_an_rfc_5424_message_with_its_id_as_structured_data() {
        let m = message(
            &config(SyslogFormat::Json),
            EventShape::Ecs,
            "gw-1",
            &entry(),
        );
        // facility 13 (log audit) * 8 + severity 4 (warning: a denial)
        assert!(
            m.starts_with("<108>1 2026-12-01T10:00:00.123Z gw-1 warden "),
            "{m}"
        );
        assert!(m.contains(&format!(
            "[warden@32473 id=\"{}\" seq=\"9\"",
            "cd".repeat(32)
        )));
        assert!(m.contains(r#"principal="bot \"x\"\]""#), "{m}");
        let json_start = m.find('\u{feff}').unwrap() + 3;
        let event: Value = serde_json::from_str(&m[json_start..]).unwrap();
        assert_eq!(event["event"]["id"], "cd".repeat(32));
        let s = message(
            &config(SyslogFormat::Structured),
            EventShape::Ecs,
            "gw-1",
            &entry(),
        );
        assert!(
            s.ends_with("\u{feff}decision deny llm:chat bot \"x\"]"),
            "{s}"
        );
    }

    #[test]
    fn messages_are_framed_by_octet_counting() {
        let sink = SyslogSink::new("k", config(SyslogFormat::Json), EventShape::Raw).unwrap();
        let e = entry();
        let bytes = sink.encode(&[&e, &e]);
        let text = String::from_utf8(bytes).unwrap();
        let (len, rest) = text.split_once(' ').unwrap();
        let len: usize = len.parse().unwrap();
        let first = &rest[..len];
        assert!(first.starts_with("<108>1 "));
        assert!(rest[len..].starts_with(&format!("{len} <108>1 ")));
    }
}
