//! The index template Warden manages for an Elasticsearch or OpenSearch sink
//! (`elasticsearch.manage_template`). Without one, the cluster maps fields dynamically, by the
//! first value it sees: a free-form field (a record's `detail`, `facts`, `content`) that is a
//! string in one record and an object in another is then refused record by record (a mapping
//! error, dead-lettered). The template maps the free-form parts as one field each
//! (`flattened` on Elasticsearch, `flat_object` on OpenSearch; `content`, which may be any
//! JSON, is kept in `_source` without being indexed), the ids as `keyword` and `seq` as
//! `long`, for the sink's data stream (or index) and its event shape.

use serde_json::{Map, Value, json};

use super::config::{EventShape, ManageTemplate};
use super::elastic_auth::Auth;
use super::http::{error_text, short};

/// Above the built-in `logs-*-*` template of Elasticsearch (100), so ours applies.
const PRIORITY: u64 = 200;

/// The engine a cluster runs: its free-form field type differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Elasticsearch: `flattened`.
    Elasticsearch,
    /// OpenSearch: `flat_object`.
    OpenSearch,
}

impl Engine {
    /// The engine of a cluster, from its `GET /` answer (OpenSearch says
    /// `version.distribution: opensearch`).
    pub fn of(root: &Value) -> Engine {
        match root["version"]["distribution"].as_str() {
            Some("opensearch") => Engine::OpenSearch,
            _ => Engine::Elasticsearch,
        }
    }

    /// The type that maps a whole JSON object as one field.
    fn free_form(self) -> &'static str {
        match self {
            Engine::Elasticsearch => "flattened",
            Engine::OpenSearch => "flat_object",
        }
    }
}

/// Why the template could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The cluster answered, and refused it (a missing privilege, a setting it rejects).
    #[error(
        "the cluster refused Warden's index template {name} ({what}: HTTP {status}: {reason}); \
         give the sink's credential the cluster privileges monitor and manage_index_templates, \
         or set manage_template: none and install a template yourself \
         (docs/audit.md#elastic--opensearch-setup)"
    )]
    Refused {
        /// The template's name.
        name: String,
        /// The request refused.
        what: &'static str,
        /// Its HTTP status.
        status: u16,
        /// The cluster's reason.
        reason: String,
    },
    /// The cluster could not be reached, or failed (5xx): it is tried again.
    #[error(
        "cannot install index template {name} ({what}): {reason}; tried again before each delivery until it is"
    )]
    Unreachable {
        /// The template's name.
        name: String,
        /// The request that failed.
        what: &'static str,
        /// What failed.
        reason: String,
    },
}

/// The template Warden installs for a sink's `data_stream`, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// `warden-<data_stream>`.
    pub name: String,
    shape: EventShape,
    data_stream: String,
    manage: ManageTemplate,
    /// The cluster's root (`GET /` tells its engine).
    root: reqwest::Url,
    /// `<root>/_index_template/<name>`.
    url: reqwest::Url,
}

impl Template {
    /// The template for a sink of the cluster at `root` writing `shape` into `data_stream`;
    /// `None` when the sink does not manage one.
    pub fn of(
        manage: ManageTemplate,
        shape: EventShape,
        data_stream: &str,
        root: &reqwest::Url,
    ) -> Result<Option<Template>, String> {
        if manage == ManageTemplate::None {
            return Ok(None);
        }
        let name = format!("warden-{data_stream}");
        let mut url = root.clone();
        url.path_segments_mut()
            .map_err(|()| format!("{root}: cannot be a base URL"))?
            .pop_if_empty()
            .push("_index_template")
            .push(&name);
        Ok(Some(Template {
            name,
            shape,
            data_stream: data_stream.to_owned(),
            manage,
            root: root.clone(),
            url,
        }))
    }

    /// The `PUT _index_template/<name>` body for a cluster running `engine`.
    pub fn body(&self, engine: Engine) -> Value {
        let mut body = json!({
            "index_patterns": [self.data_stream],
            "priority": PRIORITY,
            "_meta": {"managed_by": "warden", "shape": shape_name(self.shape)},
            "template": {"mappings": mappings(self.shape, engine)},
        });
        if self.manage == ManageTemplate::DataStream {
            body["data_stream"] = json!({});
        }
        // Elasticsearch's own ECS mappings for the rest of an ECS document, where it has them.
        if self.shape == EventShape::Ecs && engine == Engine::Elasticsearch {
            body["composed_of"] = json!(["ecs@mappings"]);
            body["ignore_missing_component_templates"] = json!(["ecs@mappings"]);
        }
        body
    }

    /// Installs the template: asks the cluster which engine it runs, then puts the template
    /// (a `PUT` replaces one of the same name: installing it again changes nothing).
    pub async fn install(
        &self,
        client: &reqwest::Client,
        auth: &Auth,
    ) -> Result<Engine, TemplateError> {
        let root = self
            .call("GET /", auth.apply(client.get(self.root.clone())))
            .await?;
        let engine = Engine::of(&root);
        let put = client.put(self.url.clone()).json(&self.body(engine));
        self.call("PUT _index_template", auth.apply(put)).await?;
        Ok(engine)
    }

    /// Sends `request`; its JSON answer when 2xx.
    async fn call(
        &self,
        what: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<Value, TemplateError> {
        let unreachable = |reason: String| TemplateError::Unreachable {
            name: self.name.clone(),
            what,
            reason,
        };
        let response = request
            .send()
            .await
            .map_err(|e| unreachable(error_text(&e)))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| unreachable(error_text(&e)))?;
        let text = || short(&String::from_utf8_lossy(&body));
        match status {
            200..=299 => Ok(serde_json::from_slice(&body).unwrap_or(Value::Null)),
            408 | 429 | 500..=599 => Err(unreachable(format!("HTTP {status}: {}", text()))),
            _ => Err(TemplateError::Refused {
                name: self.name.clone(),
                what,
                status,
                reason: text(),
            }),
        }
    }
}

/// The shape's name, as configured.
fn shape_name(shape: EventShape) -> &'static str {
    match shape {
        EventShape::Ecs => "ecs",
        EventShape::Ocsf => "ocsf",
        EventShape::Raw => "raw",
    }
}

/// Record fields that name or classify it: `keyword` (exact, aggregatable).
const KEYWORDS: [&str; 12] = [
    "prev",
    "request_id",
    "decision_id",
    "replica",
    "kind",
    "decision",
    "code",
    "content_digest",
    "action_digest",
    "policy_version",
    "overruled_by",
    "facts_omitted",
];

/// The mappings of a document in `shape`: Warden's record fields are at the top (`raw`),
/// under `warden.` (ECS) or `unmapped.warden.` (OCSF).
fn mappings(shape: EventShape, engine: Engine) -> Value {
    let (prefix, id) = match shape {
        EventShape::Raw => ("", None),
        EventShape::Ecs => ("warden.", Some("event.id")),
        EventShape::Ocsf => ("unmapped.warden.", Some("metadata.uid")),
    };
    let mut properties = Map::new();
    let mut map = |path: &str, mapping: Value| put(&mut properties, path, mapping);
    map("@timestamp", json!({"type": "date"}));
    for field in ["detail", "facts"] {
        map(
            &format!("{prefix}{field}"),
            json!({"type": engine.free_form()}),
        );
    }
    for field in KEYWORDS {
        map(&format!("{prefix}{field}"), json!({"type": "keyword"}));
    }
    map(&format!("{prefix}seq"), json!({"type": "long"}));
    if let Some(id) = id {
        map(id, json!({"type": "keyword"}));
    }
    if shape == EventShape::Raw {
        map("time", json!({"type": "date"}));
        // A recorded request body: any JSON (an object, an array, a string when it was not
        // JSON). Kept in `_source`, not indexed.
        map("content", json!({"type": "object", "enabled": false}));
    }
    json!({ "properties": properties })
}

/// Puts `mapping` at `path` (`a.b.c`) in a mapping's `properties`, with the objects on the way.
fn put(properties: &mut Map<String, Value>, path: &str, mapping: Value) {
    match path.split_once('.') {
        None => {
            properties.insert(path.to_owned(), mapping);
        }
        Some((head, rest)) => {
            let object = properties
                .entry(head.to_owned())
                .or_insert_with(|| json!({"properties": {}}));
            if let Some(inner) = object["properties"].as_object_mut() {
                put(inner, rest, mapping);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(manage: ManageTemplate, shape: EventShape, data_stream: &str) -> Option<Template> {
        let root = reqwest::Url::parse("https://es.example:9200/").unwrap();
        Template::of(manage, shape, data_stream, &root).unwrap()
    }

    #[test]
    fn the_free_form_parts_are_one_field_each_and_the_ids_keywords_in_every_shape() {
        for (shape, prefix) in [
            (EventShape::Raw, "/template/mappings/properties"),
            (
                EventShape::Ecs,
                "/template/mappings/properties/warden/properties",
            ),
            (
                EventShape::Ocsf,
                "/template/mappings/properties/unmapped/properties/warden/properties",
            ),
        ] {
            let template = of(ManageTemplate::Index, shape, "warden-audit").unwrap();
            for (engine, free_form) in [
                (Engine::OpenSearch, "flat_object"),
                (Engine::Elasticsearch, "flattened"),
            ] {
                let body = template.body(engine);
                let at = |field: &str| body.pointer(&format!("{prefix}/{field}/type")).cloned();
                assert_eq!(at("detail"), Some(json!(free_form)), "{shape:?} {body}");
                assert_eq!(at("facts"), Some(json!(free_form)), "{shape:?} {body}");
                assert_eq!(at("request_id"), Some(json!("keyword")), "{body}");
                assert_eq!(at("prev"), Some(json!("keyword")), "{body}");
                assert_eq!(at("seq"), Some(json!("long")), "{body}");
                assert_eq!(body["index_patterns"], json!(["warden-audit"]));
                assert!(body.get("data_stream").is_none(), "an index: {body}");
            }
        }
        let raw = of(ManageTemplate::Index, EventShape::Raw, "w").unwrap();
        let body = raw.body(Engine::OpenSearch);
        assert_eq!(
            body["template"]["mappings"]["properties"]["content"],
            json!({"type": "object", "enabled": false}),
            "a body may be any JSON: kept, not indexed"
        );
        let ecs = of(ManageTemplate::Index, EventShape::Ecs, "w").unwrap();
        assert_eq!(
            ecs.body(Engine::Elasticsearch)["template"]["mappings"]["properties"]["event"]["properties"]
                ["id"],
            json!({"type": "keyword"})
        );
    }

    #[test]
    fn a_data_stream_template_says_so_and_none_is_no_template() {
        let stream = of(ManageTemplate::DataStream, EventShape::Ecs, "logs-warden-x").unwrap();
        assert_eq!(stream.name, "warden-logs-warden-x");
        assert_eq!(
            stream.url.as_str(),
            "https://es.example:9200/_index_template/warden-logs-warden-x"
        );
        let body = stream.body(Engine::Elasticsearch);
        assert_eq!(body["data_stream"], json!({}));
        assert_eq!(body["priority"], json!(200), "above the built-in logs-*-*");
        assert_eq!(body["composed_of"], json!(["ecs@mappings"]));
        assert!(
            stream.body(Engine::OpenSearch).get("composed_of").is_none(),
            "OpenSearch has no ecs@mappings"
        );
        assert_eq!(of(ManageTemplate::None, EventShape::Ecs, "x"), None);
    }

    #[test]
    fn the_engine_is_read_from_the_clusters_root() {
        let opensearch = json!({"version": {"distribution": "opensearch", "number": "2.19.0"}});
        assert_eq!(Engine::of(&opensearch), Engine::OpenSearch);
        let elastic = json!({"version": {"number": "8.17.0", "build_flavor": "default"}});
        assert_eq!(Engine::of(&elastic), Engine::Elasticsearch);
    }
}
