//! Building a sink from its configuration: its client, its TLS, its secrets read now.

use std::sync::Arc;

use super::config::{self, Destination, SinkConfig};
use super::elastic_template::TemplateError;
use super::http::{self, SetupError};
use super::sink::Sink;
use super::{elastic, splunk, syslog};
use crate::vault::SecretStore;

/// The sink of `config`, its secrets read (`key` names it in errors).
pub async fn build(
    key: &str,
    config: &SinkConfig,
    vault: Option<Arc<SecretStore>>,
) -> Result<Sink, SetupError> {
    let invalid = |k: &str, reason: String| SetupError::Client {
        key: format!("{key}.{k}"),
        reason,
    };
    match config.destination() {
        Some(Destination::Splunk(s)) => {
            let k = format!("{key}.splunk_hec");
            let client = http::client(&k, s.ca_file.as_deref(), s.timeout)?;
            let token = http::Secret::read(&s.token, &format!("{k}.token"), vault).await?;
            splunk::SplunkSink::new(s.clone(), config.shape, client, token)
                .map(|s| Sink::Splunk(Box::new(s)))
                .map_err(|e| invalid("splunk_hec.url", e))
        }
        Some(Destination::Elastic(e)) => {
            let k = format!("{key}.elasticsearch");
            let client = http::client(&k, e.ca_file.as_deref(), e.timeout)?;
            let auth = elastic_auth(&k, e, vault).await?;
            let mut sink = elastic::ElasticSink::new(e.clone(), config.shape, client, auth)
                .map_err(|err| invalid("elasticsearch.url", err))?;
            match sink.install_template().await {
                Ok(()) => {}
                Err(refused @ TemplateError::Refused { .. }) => {
                    return Err(SetupError::Template {
                        key: format!("{k}.manage_template"),
                        reason: refused.to_string(),
                    });
                }
                Err(error) => {
                    tracing::warn!(sink = %config.name, %error, "the SIEM sink's index template is not installed yet; it is before the first delivery");
                }
            }
            Ok(Sink::Elastic(Box::new(sink)))
        }
        Some(Destination::Syslog(s)) => {
            syslog::SyslogSink::new(&format!("{key}.syslog"), s.clone(), config.shape)
                .map(|s| Sink::Syslog(Box::new(s)))
        }
        None => Err(invalid(
            "",
            "needs exactly one destination: splunk_hec, elasticsearch or syslog".into(),
        )),
    }
}

/// The credential of an Elasticsearch sink, read now.
pub async fn elastic_auth(
    key: &str,
    config: &config::ElasticConfig,
    vault: Option<Arc<SecretStore>>,
) -> Result<elastic::Auth, SetupError> {
    let Some(auth) = &config.auth else {
        return Ok(elastic::Auth::None);
    };
    if let Some(source) = &auth.api_key {
        let key = format!("{key}.auth.api_key");
        return Ok(elastic::Auth::ApiKey(
            http::Secret::read(source, &key, vault).await?,
        ));
    }
    match (&auth.username, &auth.password) {
        (Some(username), Some(source)) => Ok(elastic::Auth::Basic {
            username: username.clone(),
            password: http::Secret::read(source, &format!("{key}.auth.password"), vault).await?,
        }),
        _ => Err(SetupError::Secret {
            key: format!("{key}.auth"),
            reason: "give either api_key, or username and password".into(),
        }),
    }
}
