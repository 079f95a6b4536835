//! `siem:` configuration: the sinks the audit log is shipped to, each named, each with its
//! event shape, batching and retry settings, and exactly one destination
//! (`splunk_hec`, `elasticsearch` or `syslog`).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::audit::shape::Shape;
use crate::secrets::config::CredentialSource;

/// `siem:` section.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SiemConfig {
    /// The sinks; the audit log is shipped to each of them on its own.
    pub sinks: Vec<SinkConfig>,
    /// How often a sink looks for new durable records when it has caught up.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
}

/// Default `siem.poll_interval`.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(100);

impl SiemConfig {
    /// The poll interval, or its default when none is set.
    pub fn poll(&self) -> Duration {
        if self.poll_interval.is_zero() {
            DEFAULT_POLL_INTERVAL
        } else {
            self.poll_interval
        }
    }

    /// The sink named `name`.
    pub fn sink(&self, name: &str) -> Option<&SinkConfig> {
        self.sinks.iter().find(|s| s.name == name)
    }
}

/// The shape events are sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EventShape {
    /// Elastic Common Schema 8.
    #[default]
    Ecs,
    /// OCSF 1.x API Activity.
    Ocsf,
    /// The record as written.
    Raw,
}

impl EventShape {
    /// The audit module's shape.
    pub fn shape(self) -> Shape {
        match self {
            EventShape::Ecs => Shape::Ecs,
            EventShape::Ocsf => Shape::Ocsf,
            EventShape::Raw => Shape::Raw,
        }
    }
}

/// One sink: `name`, `shape`, `batch`, `retry` and one destination.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// The sink's name: its cursor file (`<audit dir>/cursors/<name>.json`), its metrics'
    /// `sink` label, its dead-letter file. Letters, digits, `-` and `_`.
    pub name: String,
    /// `ecs` (default), `ocsf` or `raw`.
    #[serde(default)]
    pub shape: EventShape,
    /// How records are grouped into one request.
    #[serde(default)]
    pub batch: BatchConfig,
    /// How a failed delivery is retried.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Splunk HTTP Event Collector.
    #[serde(default)]
    pub splunk_hec: Option<SplunkConfig>,
    /// Elasticsearch or OpenSearch `_bulk`.
    #[serde(default)]
    pub elasticsearch: Option<ElasticConfig>,
    /// Syslog (RFC 5424) over TCP or TLS.
    #[serde(default)]
    pub syslog: Option<SyslogConfig>,
}

/// The destination of a sink.
#[derive(Debug, Clone, Copy)]
pub enum Destination<'a> {
    Splunk(&'a SplunkConfig),
    Elastic(&'a ElasticConfig),
    Syslog(&'a SyslogConfig),
}

impl SinkConfig {
    /// Its one destination (validation makes sure there is exactly one).
    pub fn destination(&self) -> Option<Destination<'_>> {
        match (&self.splunk_hec, &self.elasticsearch, &self.syslog) {
            (Some(s), None, None) => Some(Destination::Splunk(s)),
            (None, Some(e), None) => Some(Destination::Elastic(e)),
            (None, None, Some(s)) => Some(Destination::Syslog(s)),
            _ => None,
        }
    }
}

/// `batch:` of a sink.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// Most records in one request (also the most a restart can send twice).
    pub max_events: usize,
    /// Most bytes of encoded events in one request (before compression).
    pub max_bytes: usize,
    /// How long a batch that is not full waits for more records.
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_events: 500,
            max_bytes: 1024 * 1024,
            linger: Duration::from_secs(1),
        }
    }
}

/// `retry:` of a sink.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// The first wait after a failure.
    #[serde(with = "humantime_serde")]
    pub initial: Duration,
    /// The longest wait between tries.
    #[serde(with = "humantime_serde")]
    pub max: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

/// `splunk_hec:` of a sink.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SplunkConfig {
    /// Base URL of the collector, `https://splunk.example:8088`.
    pub url: String,
    /// The HEC token: `{ env: NAME }`, `{ file: PATH }` or `{ vault: ... }`.
    pub token: CredentialSource,
    /// Wait for indexer acknowledgement before a batch counts as delivered (the token must
    /// have indexer acknowledgement enabled). Default `true`.
    #[serde(default = "yes")]
    pub acknowledgements: bool,
    /// How often pending acknowledgements are asked for.
    #[serde(default = "default_ack_interval", with = "humantime_serde")]
    pub ack_interval: Duration,
    /// A batch not acknowledged within this long is sent again (on a new channel).
    #[serde(default = "default_ack_timeout", with = "humantime_serde")]
    pub ack_timeout: Duration,
    /// `X-Splunk-Request-Channel`; default a new random one at every start.
    #[serde(default)]
    pub channel: Option<String>,
    /// Splunk index; default the token's default index.
    #[serde(default)]
    pub index: Option<String>,
    /// Default `warden:audit`.
    #[serde(default = "default_sourcetype")]
    pub sourcetype: String,
    /// Default `warden`.
    #[serde(default = "default_source")]
    pub source: String,
    /// Default this machine's host name.
    #[serde(default)]
    pub host: Option<String>,
    /// Compress request bodies with gzip. Default `true`.
    #[serde(default = "yes")]
    pub gzip: bool,
    /// PEM file of the CA that signed the collector's certificate; default the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Longest one request may take.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

/// `elasticsearch:` of a sink.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ElasticConfig {
    /// Base URL, `https://elastic.example:9200`.
    pub url: String,
    /// The data stream (or index) written to with `create`. Default `logs-warden-default`.
    #[serde(default = "default_data_stream")]
    pub data_stream: String,
    /// `{ api_key: SOURCE }` or `{ username: NAME, password: SOURCE }`; none by default.
    #[serde(default)]
    pub auth: Option<ElasticAuth>,
    /// Compress request bodies with gzip. Default `false`.
    #[serde(default)]
    pub gzip: bool,
    /// PEM file of the CA that signed the cluster's certificate; default the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Longest one request may take.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Install Warden's index template for `data_stream` at start (`data_stream` or
    /// `index`), so free-form fields never conflict; `none` (default): the cluster's own.
    #[serde(default)]
    pub manage_template: ManageTemplate,
}

/// `elasticsearch.manage_template`: whether Warden installs the index template of its data
/// stream (or index), and as which.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ManageTemplate {
    /// No template: the cluster's own (Elasticsearch's built-in `logs-*-*`, or yours).
    #[default]
    None,
    /// A template that makes `data_stream` a data stream (Elasticsearch, OpenSearch).
    DataStream,
    /// A template for a plain index named `data_stream`.
    Index,
}

/// How Warden authenticates to Elasticsearch.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ElasticAuth {
    /// An API key (the base64 `encoded` value), sent as `Authorization: ApiKey <key>`.
    #[serde(default)]
    pub api_key: Option<CredentialSource>,
    /// Basic authentication user.
    #[serde(default)]
    pub username: Option<String>,
    /// Basic authentication password.
    #[serde(default)]
    pub password: Option<CredentialSource>,
}

/// `syslog:` of a sink.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// `host:port` of the collector.
    pub address: String,
    /// TLS (RFC 5425) with a verified certificate; plain TCP without it.
    #[serde(default)]
    pub tls: Option<SyslogTls>,
    /// `structured` (the event's key fields as structured data and a short text) or `json`
    /// (the same structured data and the whole event as JSON). Default `json`.
    #[serde(default)]
    pub format: SyslogFormat,
    /// Facility number (0–23). Default 13, log audit.
    #[serde(default = "default_facility")]
    pub facility: u8,
    /// APP-NAME. Default `warden`.
    #[serde(default = "default_app_name")]
    pub app_name: String,
    /// HOSTNAME; default this machine's host name.
    #[serde(default)]
    pub host: Option<String>,
    /// Longest a connect or write may take.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

/// `syslog.tls:` of a sink.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SyslogTls {
    /// PEM file of the CA that signed the collector's certificate; default the system roots.
    pub ca_file: Option<PathBuf>,
    /// The name the certificate must carry; default the host of `address`.
    pub server_name: Option<String>,
}

/// The body of a syslog message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SyslogFormat {
    /// Structured data and a short text.
    Structured,
    /// Structured data and the event as JSON.
    #[default]
    Json,
}

fn yes() -> bool {
    true
}
fn default_ack_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_ack_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_sourcetype() -> String {
    "warden:audit".into()
}
fn default_source() -> String {
    "warden".into()
}
fn default_data_stream() -> String {
    "logs-warden-default".into()
}
fn default_facility() -> u8 {
    13
}
fn default_app_name() -> String {
    "warden".into()
}

impl SinkConfig {
    /// The secret sources the sink reads, each with its key below the sink
    /// (`splunk_hec.token`, `elasticsearch.auth.api_key`, ...).
    pub fn secrets(&self) -> Vec<(&'static str, &CredentialSource)> {
        let mut out = Vec::new();
        if let Some(s) = &self.splunk_hec {
            out.push(("splunk_hec.token", &s.token));
        }
        if let Some(auth) = self.elasticsearch.as_ref().and_then(|e| e.auth.as_ref()) {
            out.extend(
                auth.api_key
                    .iter()
                    .map(|k| ("elasticsearch.auth.api_key", k)),
            );
            out.extend(
                auth.password
                    .iter()
                    .map(|p| ("elasticsearch.auth.password", p)),
            );
        }
        out
    }
}

/// Every mistake in `siem:` as (key, message).
pub fn validate(config: &SiemConfig) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, sink) in config.sinks.iter().enumerate() {
        let key = |k: &str| format!("siem.sinks[{i}].{k}");
        if sink.name.is_empty()
            || sink.name.len() > 64
            || !sink
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            errors.push((
                key("name"),
                "must be 1 to 64 letters, digits, '-' or '_' (it names the sink's cursor file)"
                    .into(),
            ));
        } else if !seen.insert(sink.name.clone()) {
            errors.push((
                key("name"),
                format!(
                    "another sink is also named {:?}; each needs its own name",
                    sink.name
                ),
            ));
        }
        if sink.batch.max_events == 0 || sink.batch.max_bytes == 0 {
            errors.push((
                key("batch"),
                "max_events and max_bytes must be more than 0".into(),
            ));
        }
        if sink.retry.initial.is_zero() || sink.retry.max < sink.retry.initial {
            errors.push((
                key("retry"),
                "initial must be more than 0 and max at least initial".into(),
            ));
        }
        match sink.destination() {
            None => errors.push((
                format!("siem.sinks[{i}]"),
                "needs exactly one destination: splunk_hec, elasticsearch or syslog".into(),
            )),
            Some(Destination::Splunk(s)) => {
                if let Err(e) = crate::config::url::secure_url(&s.url) {
                    errors.push((key("splunk_hec.url"), e));
                }
                if s.ack_interval.is_zero() || s.ack_timeout <= s.ack_interval {
                    errors.push((
                        key("splunk_hec.ack_timeout"),
                        "ack_interval must be more than 0 and ack_timeout longer than it".into(),
                    ));
                }
                if s.channel
                    .as_deref()
                    .is_some_and(|c| uuid::Uuid::parse_str(c).is_err())
                {
                    errors.push((
                        key("splunk_hec.channel"),
                        "must be a UUID (Splunk's channel identifiers are GUIDs)".into(),
                    ));
                }
            }
            Some(Destination::Elastic(e)) => {
                if let Err(message) = crate::config::url::secure_url(&e.url) {
                    errors.push((key("elasticsearch.url"), message));
                }
                if e.data_stream.is_empty()
                    || e.data_stream.contains(['/', ' ', ',', '#', '?', '*'])
                {
                    errors.push((
                        key("elasticsearch.data_stream"),
                        "must be a data stream or index name".into(),
                    ));
                }
                if let Some(auth) = &e.auth {
                    let basic = auth.username.is_some() && auth.password.is_some();
                    let half = auth.username.is_some() != auth.password.is_some();
                    if half || basic == auth.api_key.is_some() {
                        errors.push((
                            key("elasticsearch.auth"),
                            "give either api_key, or username and password".into(),
                        ));
                    }
                }
            }
            Some(Destination::Syslog(s)) => {
                if s.address
                    .rsplit_once(':')
                    .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
                {
                    errors.push((key("syslog.address"), "must be host:port".into()));
                }
                if s.facility > 23 {
                    errors.push((key("syslog.facility"), "must be 0 to 23".into()));
                }
                if s.app_name.is_empty()
                    || s.app_name.len() > 48
                    || !s.app_name.chars().all(|c| c.is_ascii_graphic())
                {
                    errors.push((
                        key("syslog.app_name"),
                        "must be 1 to 48 printable ASCII characters without spaces".into(),
                    ));
                }
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> SiemConfig {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn a_sink_needs_one_destination_and_a_unique_name() {
        let config = parse(
            "sinks:\n\
             - {name: a, syslog: {address: 'h:514'}}\n\
             - {name: a, syslog: {address: 'h:514'}}\n\
             - {name: b}\n\
             - {name: 'c d', elasticsearch: {url: 'http://es.example:9200'}}\n",
        );
        let errors = validate(&config);
        let keys: Vec<&str> = errors.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "siem.sinks[1].name",
                "siem.sinks[2]",
                "siem.sinks[3].name",
                "siem.sinks[3].elasticsearch.url"
            ],
            "{errors:?}"
        );
    }

    #[test]
    fn a_vault_token_without_a_vault_section_is_refused_where_it_is_named() {
        let text = "siem:\n  sinks:\n  - name: s\n    splunk_hec: {url: 'https://s:8088', token: {vault: {kv: secret/hec}}}\n";
        let e = crate::config::load::parse(text, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("siem.sinks[0].splunk_hec.token.vault"), "{e}");
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let config =
            parse("sinks:\n- {name: s, splunk_hec: {url: 'https://s:8088', token: {env: T}}}\n");
        assert!(validate(&config).is_empty());
        let sink = &config.sinks[0];
        assert_eq!(sink.shape, EventShape::Ecs);
        assert_eq!(sink.batch, BatchConfig::default());
        let Some(Destination::Splunk(s)) = sink.destination() else {
            panic!("splunk")
        };
        assert!(s.acknowledgements && s.gzip);
        assert_eq!(s.sourcetype, "warden:audit");
        assert_eq!(config.poll(), DEFAULT_POLL_INTERVAL);
    }
}
