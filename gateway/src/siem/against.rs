//! `warden audit verify --against-siem`: the checkpoints (and the newest record) an
//! Elasticsearch or OpenSearch sink holds, compared with the local log. A checkpoint the
//! SIEM holds must be in the local log with the same id (the SHA-256 of its line), and so
//! must the record it covers (`detail.to`, whose line hash is `detail.hash`): a local log
//! that was rewritten, cut or deleted after it was shipped shows, from the SIEM alone.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use serde_json::{Value, json};

use super::config::{ElasticConfig, EventShape};
use super::elastic::Auth;
use super::http::{error_text, short};
use crate::audit::read::Reader;
use crate::audit::retention;

/// Most hits asked for in one search.
const PAGE: usize = 500;

/// What the SIEM holds of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shipped {
    pub seq: u64,
    /// The document id: the record's stable id.
    pub id: String,
    /// For a checkpoint: the last seq it covers and the hash of that record's line.
    pub covers: Option<(u64, String)>,
}

/// The comparison's result.
#[derive(Debug, Default)]
pub struct Comparison {
    /// Checkpoints found in the SIEM.
    pub checkpoints: usize,
    /// The highest seq the SIEM holds.
    pub newest: Option<u64>,
    /// What does not match, one line each.
    pub problems: Vec<String>,
    /// Records the SIEM holds that local retention removed (a `retention` record in the
    /// local log names their segments).
    pub removed_by_retention: usize,
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.problems.is_empty() {
            write!(
                f,
                "the local log matches the SIEM: {} checkpoints{}",
                self.checkpoints,
                self.newest
                    .map(|n| format!(", newest shipped record seq {n}"))
                    .unwrap_or_default()
            )?;
            if self.removed_by_retention > 0 {
                write!(
                    f,
                    " ({} of what the SIEM holds was removed locally by retention)",
                    self.removed_by_retention
                )?;
            }
            Ok(())
        } else {
            for p in &self.problems {
                writeln!(f, "{p}")?;
            }
            write!(
                f,
                "{} problems: the local log differs from what the SIEM received",
                self.problems.len()
            )
        }
    }
}

/// Why the SIEM could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum AgainstError {
    #[error("cannot query the SIEM at {url}: {reason}")]
    Query { url: String, reason: String },
    #[error("{0}")]
    Sink(String),
    #[error("cannot read the local log: {0}")]
    Local(#[from] crate::audit::read::ReadError),
}

/// The fields of the warden record in a shape: (kind, seq, detail).
fn fields(shape: EventShape) -> (&'static str, &'static str, &'static str) {
    match shape {
        EventShape::Ecs => ("warden.kind", "warden.seq", "warden.detail"),
        EventShape::Ocsf => (
            "unmapped.warden.kind",
            "unmapped.warden.seq",
            "unmapped.warden.detail",
        ),
        EventShape::Raw => ("kind", "seq", "detail"),
    }
}

fn pointer(path: &str) -> String {
    format!("/{}", path.replace('.', "/"))
}

/// Reads one hit as a shipped record.
fn shipped(hit: &Value, shape: EventShape) -> Option<Shipped> {
    let (_, seq, detail) = fields(shape);
    let source = &hit["_source"];
    let seq = source.pointer(&pointer(seq))?.as_u64()?;
    let detail = source.pointer(&pointer(detail));
    let covers = detail.and_then(|d| Some((d["to"].as_u64()?, d["hash"].as_str()?.to_owned())));
    Some(Shipped {
        seq,
        id: hit["_id"].as_str()?.to_owned(),
        covers,
    })
}

/// Asks the cluster of `config` for its checkpoints and its newest record.
pub async fn query(
    config: &ElasticConfig,
    shape: EventShape,
    auth: &Auth,
) -> Result<(Vec<Shipped>, Option<Shipped>), AgainstError> {
    let client =
        super::http::client("siem", config.ca_file.as_deref(), config.timeout).map_err(|e| {
            AgainstError::Query {
                url: config.url.clone(),
                reason: e.to_string(),
            }
        })?;
    let base =
        crate::config::url::secure_url(&config.url).map_err(|reason| AgainstError::Query {
            url: config.url.clone(),
            reason,
        })?;
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|_| AgainstError::Query {
            url: config.url.clone(),
            reason: "cannot be a base URL".into(),
        })?
        .pop_if_empty()
        .push(&config.data_stream)
        .push("_search");
    let (kind, seq, _) = fields(shape);
    let search = |body: Value| {
        let request = client.post(url.clone()).json(&body);
        let request = auth.apply(request);
        let url = url.to_string();
        async move {
            let err = |reason: String| AgainstError::Query {
                url: url.clone(),
                reason,
            };
            let response = request.send().await.map_err(|e| err(error_text(&e)))?;
            let status = response.status();
            let text = response.text().await.map_err(|e| err(error_text(&e)))?;
            if !status.is_success() {
                return Err(err(format!("HTTP {status}: {}", short(&text))));
            }
            let v: Value = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
            Ok(v["hits"]["hits"].as_array().cloned().unwrap_or_default())
        }
    };
    let mut checkpoints = Vec::new();
    let mut after: Option<u64> = None;
    loop {
        let mut body = json!({
            "size": PAGE,
            "query": {"term": {kind: "checkpoint"}},
            "sort": [{seq: "asc"}],
        });
        if let Some(after) = after {
            body["search_after"] = json!([after]);
        }
        let hits = search(body).await?;
        let page: Vec<Shipped> = hits.iter().filter_map(|h| shipped(h, shape)).collect();
        let Some(last) = page.last() else { break };
        after = Some(last.seq);
        let full = hits.len() >= PAGE;
        checkpoints.extend(page);
        if !full {
            break;
        }
    }
    let newest = search(json!({"size": 1, "query": {"match_all": {}}, "sort": [{seq: "desc"}]}))
        .await?
        .first()
        .and_then(|h| shipped(h, shape));
    Ok((checkpoints, newest))
}

/// Compares what the SIEM holds with the log in `dir`.
pub fn compare(
    dir: &Path,
    checkpoints: &[Shipped],
    newest: Option<&Shipped>,
) -> Result<Comparison, AgainstError> {
    let mut wanted: BTreeSet<u64> = BTreeSet::new();
    for c in checkpoints.iter().chain(newest) {
        wanted.insert(c.seq);
        if let Some((to, _)) = &c.covers {
            wanted.insert(*to);
        }
    }
    let mut local: BTreeMap<u64, String> = BTreeMap::new();
    let mut last_local = 0;
    let mut first_local = None;
    // The last seq local retention records say they removed.
    let mut removed_through = 0;
    Reader::new(dir).each_new(|r| {
        if let Some(seq) = r.value["seq"].as_u64() {
            last_local = last_local.max(seq);
            first_local.get_or_insert(seq);
            if wanted.contains(&seq) {
                local.insert(seq, r.id);
            }
            if r.value["kind"] == "retention" {
                for (last, _) in retention::removed_ends(&r.value["detail"]) {
                    removed_through = removed_through.max(last);
                }
            }
        }
    })?;
    let first_local = first_local.unwrap_or(0);
    let mut problems = Vec::new();
    let mut removed_by_retention = 0;
    let mut check = |what: &str, seq: u64, id: &str| {
        if seq < first_local && seq <= removed_through {
            removed_by_retention += 1;
            return;
        }
        match local.get(&seq) {
        None => problems.push(format!(
            "{what} (seq {seq}) is in the SIEM but not in the local log, which ends at seq {last_local}: records were deleted or cut"
        )),
        Some(have) if have != id => problems.push(format!(
            "{what} (seq {seq}) differs from the one the SIEM received (SIEM id {id}, local {have}): the local log was rewritten"
        )),
        Some(_) => {}
    }
    };
    for c in checkpoints {
        check("checkpoint", c.seq, &c.id);
        if let Some((to, hash)) = &c.covers {
            check(
                &format!("the record checkpoint {} covers", c.seq),
                *to,
                hash,
            );
        }
    }
    if let Some(n) = newest {
        check("the newest shipped record", n.seq, &n.id);
    }
    Ok(Comparison {
        checkpoints: checkpoints.len(),
        newest: newest.map(|n| n.seq),
        problems,
        removed_by_retention,
    })
}

/// Compares the log in `dir` with what sink `target` of `siem` holds (`target` is a sink's
/// name, or the URL of a cluster holding the default data stream in ECS).
pub async fn against(
    siem: &super::config::SiemConfig,
    target: &str,
    dir: &Path,
    vault: Option<std::sync::Arc<crate::vault::SecretStore>>,
) -> Result<Comparison, AgainstError> {
    let (config, shape) = if target.starts_with("http://") || target.starts_with("https://") {
        let config: ElasticConfig =
            serde_json::from_value(json!({"url": target})).map_err(|e| AgainstError::Query {
                url: target.to_owned(),
                reason: e.to_string(),
            })?;
        (config, EventShape::Ecs)
    } else {
        let Some(sink) = siem.sink(target) else {
            return Err(AgainstError::Sink(format!(
                "the configuration has no SIEM sink named {target:?} (its sinks: {})",
                siem.sinks
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let Some(config) = &sink.elasticsearch else {
            return Err(AgainstError::Sink(format!(
                "sink {target:?} is not an elasticsearch sink; for Splunk, run the search in docs/audit.md"
            )));
        };
        (config.clone(), sink.shape)
    };
    let auth = super::setup::elastic_auth("siem", &config, vault)
        .await
        .map_err(|e| AgainstError::Sink(e.to_string()))?;
    let (checkpoints, newest) = query(&config, shape, &auth).await?;
    compare(dir, &checkpoints, newest.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditLog;
    use crate::audit::config::AuditConfig;
    use crate::audit::event::{AuditEvent, EventKind};

    #[tokio::test]
    async fn a_rewritten_or_cut_log_differs_from_what_was_shipped() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), &AuditConfig::default()).unwrap();
        for _ in 0..4 {
            log.append(AuditEvent::now(EventKind::System))
                .await
                .unwrap();
        }
        log.close().await.unwrap();
        let mut ids = Vec::new();
        Reader::new(dir.path())
            .each_new(|r| ids.push(r.id))
            .unwrap();
        let checkpoint = Shipped {
            seq: 3,
            id: ids[2].clone(),
            covers: Some((2, ids[1].clone())),
        };
        let newest = Shipped {
            seq: 4,
            id: ids[3].clone(),
            covers: None,
        };
        let same = compare(dir.path(), std::slice::from_ref(&checkpoint), Some(&newest)).unwrap();
        assert!(same.problems.is_empty(), "{same}");
        let forged = Shipped {
            id: "00".repeat(32),
            ..checkpoint.clone()
        };
        let differs = compare(dir.path(), &[forged], None).unwrap();
        assert!(differs.problems[0].contains("rewritten"), "{differs}");
        let beyond = Shipped {
            seq: 9,
            id: "11".repeat(32),
            covers: None,
        };
        let cut = compare(dir.path(), &[], Some(&beyond)).unwrap();
        assert!(cut.problems[0].contains("deleted or cut"), "{cut}");
    }

    #[tokio::test]
    async fn what_local_retention_removed_is_accounted_for_not_missing() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = AuditConfig {
            segment_bytes: 2048,
            retention: crate::audit::config::RetentionConfig {
                max_bytes: Some(3 * 2048),
                ..Default::default()
            },
            ..AuditConfig::default()
        };
        let log = AuditLog::open(dir.path(), &cfg).unwrap();
        for _ in 0..80 {
            log.append(AuditEvent::now(EventKind::System))
                .await
                .unwrap();
        }
        log.close().await.unwrap();
        let mut first = None;
        Reader::new(dir.path())
            .each_new(|r| {
                first.get_or_insert(r.value["seq"].as_u64().unwrap());
            })
            .unwrap();
        let first = first.unwrap();
        assert!(first > 2, "retention removed nothing");
        let early = Shipped {
            seq: 2,
            id: "22".repeat(32),
            covers: Some((1, "11".repeat(32))),
        };
        let comparison = compare(dir.path(), &[early], None).unwrap();
        assert!(comparison.problems.is_empty(), "{comparison}");
        assert_eq!(comparison.removed_by_retention, 2);
        assert!(
            comparison
                .to_string()
                .contains("removed locally by retention")
        );
        // Beyond what retention removed, a missing record is still missing.
        let later = Shipped {
            seq: 500,
            id: "33".repeat(32),
            covers: None,
        };
        let comparison = compare(dir.path(), &[], Some(&later)).unwrap();
        assert!(
            comparison.problems[0].contains("deleted or cut"),
            "{comparison}"
        );
    }
}
