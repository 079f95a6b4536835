//! `warden audit verify --against-siem`: the checkpoints (and the newest record) an
//! Elasticsearch or OpenSearch sink holds, compared with the local log. A checkpoint the
//! SIEM holds must be in the local log with the same id (the SHA-256 of its line), and so
//! must the record it covers (`detail.to`, whose line hash is `detail.hash`): a local log
//! that was rewritten, cut or deleted after it was shipped shows, from the SIEM alone.
//! Several replicas may ship to one data stream, each with its own chain and its own seqs:
//! only the records of the local log's replicas (the `replica` field every shape carries) are
//! compared.

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
    /// The replicas whose records were compared (`replica`; empty for records without one).
    pub replicas: Vec<String>,
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
                "the local log matches the SIEM (replica {}): {} checkpoints{}",
                self.replicas
                    .iter()
                    .map(|r| if r.is_empty() { "(none)" } else { r.as_str() })
                    .collect::<Vec<_>>()
                    .join(", "),
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

/// Where a shape puts the record's fields the comparison reads.
struct Fields {
    kind: &'static str,
    seq: &'static str,
    detail: &'static str,
    replica: &'static str,
}

fn fields(shape: EventShape) -> Fields {
    match shape {
        EventShape::Ecs => Fields {
            kind: "warden.kind",
            seq: "warden.seq",
            detail: "warden.detail",
            replica: "warden.replica",
        },
        EventShape::Ocsf => Fields {
            kind: "unmapped.warden.kind",
            seq: "unmapped.warden.seq",
            detail: "unmapped.warden.detail",
            replica: "unmapped.warden.replica",
        },
        EventShape::Raw => Fields {
            kind: "kind",
            seq: "seq",
            detail: "detail",
            replica: "replica",
        },
    }
}

/// A query for documents whose replica is one of `replicas` ("" for documents without
/// one): an exact match on the field as a keyword, or on its `.keyword` sub-field where
/// dynamic mapping made it text.
fn of_replicas(field: &str, replicas: &BTreeSet<String>) -> Value {
    let named: Vec<&String> = replicas.iter().filter(|r| !r.is_empty()).collect();
    let mut should = vec![
        json!({"terms": {field: named}}),
        json!({"terms": {format!("{field}.keyword"): named}}),
    ];
    if replicas.contains("") {
        should.push(json!({"bool": {"must_not": {"exists": {"field": field}}}}));
    }
    json!({"bool": {"should": should, "minimum_should_match": 1}})
}

/// The replicas that wrote the log in `dir` ("" for records without one).
pub fn local_replicas(dir: &Path) -> Result<BTreeSet<String>, AgainstError> {
    let mut replicas = BTreeSet::new();
    Reader::new(dir).each_new(|r| {
        replicas.insert(r.value["replica"].as_str().unwrap_or_default().to_owned());
    })?;
    Ok(replicas)
}

fn pointer(path: &str) -> String {
    format!("/{}", path.replace('.', "/"))
}

/// Reads one hit as a shipped record, if one of `replicas` wrote it.
fn shipped(hit: &Value, shape: EventShape, replicas: &BTreeSet<String>) -> Option<Shipped> {
    let fields = fields(shape);
    let source = &hit["_source"];
    let replica = source
        .pointer(&pointer(fields.replica))
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !replicas.contains(replica) {
        return None;
    }
    let seq = source.pointer(&pointer(fields.seq))?.as_u64()?;
    let detail = source.pointer(&pointer(fields.detail));
    let covers = detail.and_then(|d| Some((d["to"].as_u64()?, d["hash"].as_str()?.to_owned())));
    Some(Shipped {
        seq,
        id: hit["_id"].as_str()?.to_owned(),
        covers,
    })
}

/// Asks the cluster of `config` for the checkpoints and the newest record of `replicas`.
pub async fn query(
    config: &ElasticConfig,
    shape: EventShape,
    auth: &Auth,
    replicas: &BTreeSet<String>,
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
    let Fields {
        kind, seq, replica, ..
    } = fields(shape);
    let replica = of_replicas(replica, replicas);
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
    // Paged by seq, each page from the last seq of the one before (included, as another
    // record of that seq may not have fitted), the documents already read left out by id.
    let mut checkpoints = Vec::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut from = 0;
    loop {
        let body = json!({
            "size": PAGE,
            "query": {"bool": {"filter": [
                {"term": {kind: "checkpoint"}},
                replica.clone(),
                {"range": {seq: {"gte": from}}},
            ]}},
            "sort": [{seq: "asc"}],
        });
        let hits = search(body).await?;
        let full = hits.len() >= PAGE;
        let mut new = 0;
        for hit in &hits {
            let Some(id) = hit["_id"].as_str() else {
                continue;
            };
            if !seen.insert(id.to_owned()) {
                continue;
            }
            new += 1;
            if let Some(shipped) = shipped(hit, shape, replicas) {
                from = from.max(shipped.seq);
                checkpoints.push(shipped);
            }
        }
        if !full {
            break;
        }
        if new == 0 {
            return Err(AgainstError::Query {
                url: url.to_string(),
                reason: format!(
                    "more than {PAGE} checkpoints of seq {from} for replica {}: the data stream holds several logs of one replica; compare them one at a time",
                    replicas.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            });
        }
    }
    let newest = search(json!({
        "size": 1,
        "query": {"bool": {"filter": [replica]}},
        "sort": [{seq: "desc"}],
    }))
    .await?
    .first()
    .and_then(|h| shipped(h, shape, replicas));
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
        replicas: Vec::new(),
        checkpoints: checkpoints.len(),
        newest: newest.map(|n| n.seq),
        problems,
        removed_by_retention,
    })
}

/// Compares the log in `dir` with what sink `target` of `siem` holds (`target` is a sink's
/// name, or the URL of a cluster holding the default data stream in ECS): the records of the
/// replicas that wrote the local log, and of `replica` (the configuration's
/// `audit.replica_id`), so that a log deleted or rewritten under another name still shows.
pub async fn against(
    siem: &super::config::SiemConfig,
    target: &str,
    dir: &Path,
    vault: Option<std::sync::Arc<crate::vault::SecretStore>>,
    replica: Option<&str>,
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
    let mut replicas = local_replicas(dir)?;
    replicas.extend(replica.map(str::to_owned));
    let (checkpoints, newest) = query(&config, shape, &auth, &replicas).await?;
    let mut comparison = compare(dir, &checkpoints, newest.as_ref())?;
    comparison.replicas = replicas.into_iter().collect();
    Ok(comparison)
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

    #[test]
    fn only_the_hits_of_the_local_replicas_are_read_in_every_shape() {
        let ours: BTreeSet<String> = ["replica-a".to_owned()].into();
        for shape in [EventShape::Ecs, EventShape::Ocsf, EventShape::Raw] {
            let hit = |replica: &str| {
                let mut record = json!({"seq": 4, "kind": "checkpoint", "replica": replica,
                                        "detail": {"to": 3, "hash": "ab"}});
                if replica.is_empty() {
                    record.as_object_mut().unwrap().remove("replica");
                }
                let record = crate::audit::read::Record {
                    value: record,
                    id: "cd".repeat(32),
                };
                json!({"_id": "cd".repeat(32), "_source": shape.shape().of(&record)})
            };
            let read = shipped(&hit("replica-a"), shape, &ours).expect("our replica's");
            assert_eq!((read.seq, read.covers), (4, Some((3, "ab".into()))));
            assert_eq!(shipped(&hit("replica-b"), shape, &ours), None, "{shape:?}");
            assert_eq!(
                shipped(&hit("replica-a-2"), shape, &ours),
                None,
                "{shape:?}"
            );
            assert_eq!(shipped(&hit(""), shape, &ours), None, "{shape:?}");
            let unnamed: BTreeSet<String> = [String::new()].into();
            assert!(shipped(&hit(""), shape, &unnamed).is_some(), "{shape:?}");
        }
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
