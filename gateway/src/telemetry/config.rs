//! `log:` process logs (not the audit log) and `traces:` OpenTelemetry spans.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::secrets::config::CredentialSource;

/// `log:` process logs (not the audit log).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `tracing` filter, e.g. `info` or `warden=debug`. `RUST_LOG` overrides it.
    pub level: String,
    /// `json` or `text`.
    pub format: LogFormat,
    /// One log line per request. Off by default: the audit log already records every request
    /// (with its request id and principal) durably.
    pub access: bool,
}

/// Log line format.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Text,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Json,
            access: false,
        }
    }
}

/// `traces:` OpenTelemetry spans per request, exported over OTLP/HTTP (protobuf). Absent:
/// no tracing, and `traceparent` passes upstream as the agent sent it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TracesConfig {
    /// The collector's OTLP/HTTP traces URL, e.g. `http://127.0.0.1:4318/v1/traces`.
    pub endpoint: String,
    /// Headers sent with every export (a collector's or vendor's API key): each a plain value
    /// or a secret source.
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderSource>,
    /// `service.name` of the spans' resource.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Share of new traces (no sampled parent decision from the agent) that are recorded:
    /// 0.0 to 1.0. A `traceparent`'s sampled flag is honoured as it is.
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
    /// Extra CA bundle (PEM) trusted for the collector's TLS, besides the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Longest wait for one export (connect, TLS, answer).
    #[serde(default = "default_export_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// How finished spans are queued and sent.
    #[serde(default)]
    pub batch: BatchConfig,
}

/// `traces.batch:` the export queue.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// Most finished spans waiting to be sent; beyond it spans are dropped (and counted),
    /// never waited for.
    pub max_queue_size: usize,
    /// Most spans in one export.
    pub max_export_batch_size: usize,
    /// Longest a finished span waits for its batch to fill before it is sent.
    #[serde(with = "humantime_serde")]
    pub scheduled_delay: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_queue_size: 2048,
            max_export_batch_size: 512,
            scheduled_delay: Duration::from_secs(5),
        }
    }
}

/// The value of an export header: as written, or read from a secret source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderSource {
    Value(String),
    Secret(CredentialSource),
}

/// A string is the value; a mapping is read as a secret source, whose own errors (a misspelt
/// `env:`, what it expected) reach the message, which they would not through an untagged
/// enum's "did not match any variant".
impl<'de> Deserialize<'de> for HeaderSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Header;
        impl<'de> serde::de::Visitor<'de> for Header {
            type Value = HeaderSource;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a header value: a string, or a secret source ({ env: NAME }, { file: PATH } \
                     or { vault: { ... } })",
                )
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<HeaderSource, E> {
                Ok(HeaderSource::Value(v.to_owned()))
            }

            // A header value may be a credential written bare (`x-api-key: 1234…` reads as a
            // number): refused with what to do, never quoting it (serde's own message would).
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<HeaderSource, E> {
                Err(unquoted("a boolean"))
            }

            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<HeaderSource, E> {
                Err(unquoted("a number"))
            }

            fn visit_i128<E: serde::de::Error>(self, _: i128) -> Result<HeaderSource, E> {
                Err(unquoted("a number"))
            }

            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<HeaderSource, E> {
                Err(unquoted("a number"))
            }

            fn visit_u128<E: serde::de::Error>(self, _: u128) -> Result<HeaderSource, E> {
                Err(unquoted("a number"))
            }

            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<HeaderSource, E> {
                Err(unquoted("a number"))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<HeaderSource, A::Error> {
                // The trait's reading (refusing without quoting), not the derived one the
                // type's own `deserialize` is.
                let map = serde::de::value::MapAccessDeserializer::new(map);
                <CredentialSource as Deserialize>::deserialize(map).map(HeaderSource::Secret)
            }
        }
        d.deserialize_any(Header)
    }
}

/// The refusal of a header value YAML read as `found` (not a string): what to do, and not the
/// value, which may be a credential.
fn unquoted<E: serde::de::Error>(found: &str) -> E {
    E::custom(format_args!(
        "a header value is a string or a secret source ({{ env: NAME }}, {{ file: PATH }} or \
         {{ vault: {{ ... }} }}), found {found}: quote it (\"...\") to send it as written, or \
         read it from a secret source (the value is not shown)"
    ))
}

fn default_service_name() -> String {
    "warden".into()
}

fn default_sample_ratio() -> f64 {
    1.0
}

fn default_export_timeout() -> Duration {
    Duration::from_secs(10)
}

impl TracesConfig {
    /// Returns `(key, message)` for every mistake in `traces:`.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        let mut err = |key: &str, message: String| errors.push((format!("traces.{key}"), message));
        match http::Uri::try_from(self.endpoint.as_str()) {
            Ok(uri) if uri.authority().is_some_and(|a| a.as_str().contains('@')) => err(
                "endpoint",
                "carries user information (user:password@); give credentials in `headers` \
                 from env, file or Vault, never in the URL (it is logged)"
                    .into(),
            ),
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https"))
                    && uri.host().is_some_and(|h| !h.is_empty()) =>
            {
                // A credential header goes with every export: not over a network in the clear.
                let secret_headers: Vec<&str> = self
                    .headers
                    .iter()
                    .filter(|(_, v)| matches!(v, HeaderSource::Secret(_)))
                    .map(|(name, _)| name.as_str())
                    .collect();
                if !secret_headers.is_empty()
                    && let Err(problem) = crate::config::url::secure_url(&self.endpoint)
                {
                    err(
                        "endpoint",
                        format!(
                            "{problem}: the export carries the credential header(s) {}; use \
                             the collector's https URL",
                            secret_headers.join(", ")
                        ),
                    );
                }
            }
            _ => err(
                "endpoint",
                format!(
                    "\"{}\" is not an http:// or https:// URL; give the collector's OTLP/HTTP \
                     traces URL, e.g. http://127.0.0.1:4318/v1/traces",
                    crate::text::Quoted::of(&self.endpoint)
                ),
            ),
        }
        for (name, value) in &self.headers {
            let key = format!("headers.{name}");
            match http::HeaderName::try_from(name.as_str()) {
                Err(_) => err(&key, "is not a valid HTTP header name".into()),
                Ok(h) if RESERVED_HEADERS.contains(&h) => err(
                    &key,
                    "is set by Warden itself (content type, length, host, connection); remove it"
                        .into(),
                ),
                Ok(_) => {}
            }
            match value {
                HeaderSource::Value(v) if http::HeaderValue::try_from(v.as_str()).is_err() => {
                    err(
                        &key,
                        "is not a valid HTTP header value (control characters?)".into(),
                    );
                }
                HeaderSource::Secret(s) if s.names_principal() => err(
                    &key,
                    "a Vault path of an export header cannot name principal attributes: \
                     exports serve every agent"
                        .into(),
                ),
                _ => {}
            }
        }
        if self.service_name.trim().is_empty() {
            err("service_name", "must not be empty (default: warden)".into());
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            err(
                "sample_ratio",
                format!(
                    "{} is not between 0.0 (no new traces) and 1.0 (every new trace)",
                    self.sample_ratio
                ),
            );
        }
        if self.timeout.is_zero() {
            err("timeout", "must be longer than zero (e.g. 10s)".into());
        }
        let batch = &self.batch;
        if batch.max_queue_size == 0 {
            err(
                "batch.max_queue_size",
                "must be at least 1 (e.g. 2048)".into(),
            );
        }
        if batch.max_export_batch_size == 0 || batch.max_export_batch_size > batch.max_queue_size {
            err(
                "batch.max_export_batch_size",
                format!(
                    "must be between 1 and batch.max_queue_size ({})",
                    batch.max_queue_size
                ),
            );
        }
        if batch.scheduled_delay.is_zero() {
            err(
                "batch.scheduled_delay",
                "must be longer than zero (e.g. 5s)".into(),
            );
        }
        errors
    }
}

/// Headers an export sets itself.
const RESERVED_HEADERS: [http::HeaderName; 5] = [
    http::header::CONTENT_TYPE,
    http::header::CONTENT_LENGTH,
    http::header::HOST,
    http::header::CONNECTION,
    http::header::TRANSFER_ENCODING,
];

#[cfg(test)]
mod tests {
    use super::*;

    fn traces(yaml: &str) -> TracesConfig {
        serde_saphyr::from_str(yaml).expect("parses")
    }

    #[test]
    fn defaults_sample_everything_and_name_the_service_warden() {
        let t = traces("endpoint: http://127.0.0.1:4318/v1/traces\n");
        assert_eq!(t.service_name, "warden");
        assert_eq!(t.sample_ratio, 1.0);
        assert_eq!(t.batch, BatchConfig::default());
        assert!(t.validate().is_empty(), "{:?}", t.validate());
    }

    #[test]
    fn header_values_are_plain_or_secret_sources() {
        let t = traces(
            "endpoint: https://otlp.example.com/v1/traces\n\
             headers:\n  x-tenant: acme\n  x-api-key: { env: OTLP_KEY }\n",
        );
        assert_eq!(t.headers["x-tenant"], HeaderSource::Value("acme".into()));
        assert_eq!(
            t.headers["x-api-key"],
            HeaderSource::Secret(CredentialSource::Env("OTLP_KEY".into()))
        );
    }

    #[test]
    fn a_misspelt_secret_source_of_a_header_is_told_the_key_it_meant() {
        let text = "traces:\n  endpoint: https://otlp.example.com/v1/traces\n  headers:\n    x-api-key: { enf: OTLP_KEY }\n";
        let errors = crate::config::load::parse(text, Some(std::path::Path::new("w.yaml")))
            .expect_err("refused")
            .to_string();
        assert!(
            errors.contains("w.yaml:4: traces.headers.x-api-key: expected a secret source")
                && errors.contains("none of env, file, vault (did you mean `env`?)"),
            "{errors}"
        );
        assert!(!errors.contains("`enf`"), "{errors}");
        // Neither a string nor a mapping: what a header value is.
        let errors = crate::config::load::parse(
            "traces:\n  endpoint: https://otlp.example.com/v1/traces\n  headers:\n    x-n: [1]\n",
            None,
        )
        .expect_err("refused")
        .to_string();
        assert!(
            errors.contains("traces.headers.x-n: invalid type: sequence, expected a header value"),
            "{errors}"
        );
    }

    #[test]
    fn a_header_value_yaml_reads_as_a_number_or_boolean_is_refused_without_quoting_it() {
        for (value, found) in [
            ("123456789012", "a number"),
            ("-98765432", "a number"),
            ("1234.5678", "a number"),
            ("99999999999999999999999", "a number"),
            ("true", "a boolean"),
        ] {
            let text = format!(
                "traces:\n  endpoint: https://otlp.example.com/v1/traces\n  headers:\n    x-api-key: {value}\n"
            );
            let errors = crate::config::load::parse(&text, None)
                .expect_err("refused")
                .to_string();
            assert!(
                errors.contains(&format!("traces.headers.x-api-key: a header value is a string or a secret source ({{ env: NAME }}, {{ file: PATH }} or {{ vault: {{ ... }} }}), found {found}: quote it")),
                "{errors}"
            );
            let digits = value.trim_start_matches('-');
            assert!(
                !errors.contains(&digits[..digits.len().min(6)]),
                "{value} quoted: {errors}"
            );
        }
    }

    #[test]
    fn invalid_values_name_the_key_and_what_to_do() {
        let t = traces(
            "endpoint: 127.0.0.1:4318\nsample_ratio: 1.5\ntimeout: 0s\n\
             headers: { content-type: text, \"bad name\": v, x-ok: \"a\\u0001b\" }\n\
             batch: { max_queue_size: 10, max_export_batch_size: 20 }\n",
        );
        let errors = t.validate();
        let keys: Vec<&str> = errors.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "traces.endpoint",
                "traces.headers.bad name",
                "traces.headers.content-type",
                "traces.headers.x-ok",
                "traces.sample_ratio",
                "traces.timeout",
                "traces.batch.max_export_batch_size",
            ],
            "{errors:?}"
        );
        assert!(errors[0].1.contains("http://127.0.0.1:4318/v1/traces"));
        assert!(errors[4].1.contains("between 0.0"));
    }

    #[test]
    fn credential_headers_go_only_over_https_or_to_loopback_and_never_in_the_url() {
        let with_key = |endpoint: &str| {
            traces(&format!(
                "endpoint: {endpoint}\nheaders:\n  x-api-key: {{ env: OTLP_KEY }}\n"
            ))
            .validate()
        };
        assert!(with_key("https://otlp.example.com/v1/traces").is_empty());
        assert!(with_key("http://127.0.0.1:4318/v1/traces").is_empty());
        let errors = with_key("http://collector.corp:4318/v1/traces");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, "traces.endpoint");
        assert!(errors[0].1.contains("must use https"), "{errors:?}");
        assert!(errors[0].1.contains("x-api-key"), "{errors:?}");
        // A header that is no credential (a tenant name) may go in the clear.
        let tenant = traces(
            "endpoint: http://collector.corp:4318/v1/traces\nheaders: { x-scope-orgid: acme }\n",
        );
        assert!(tenant.validate().is_empty(), "{:?}", tenant.validate());
        let userinfo = traces("endpoint: https://user:pw@otlp.example.com/v1/traces\n").validate();
        assert_eq!(userinfo.len(), 1, "{userinfo:?}");
        assert!(userinfo[0].1.contains("user information"), "{userinfo:?}");
        assert!(!userinfo[0].1.contains("pw"), "{userinfo:?}");
    }
}
