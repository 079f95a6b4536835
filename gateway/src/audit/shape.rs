//! A record in the shapes SIEMs read: Elastic Common Schema 8 (`ecs`) and OCSF 1.x API
//! Activity (`ocsf`), beside the record as written (`raw`). `warden audit export` writes them;
//! the SIEM sinks send them.

use serde_json::{Map, Value, json};

use super::read::Record;

/// The shape of exported records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// The record as written (with `seq` and `prev`, so the chain can be checked).
    Raw,
    /// Elastic Common Schema 8.
    Ecs,
    /// OCSF 1.x, class API Activity (6003).
    Ocsf,
}

impl Shape {
    /// `record` in this shape.
    pub fn of(self, record: &Record) -> Value {
        match self {
            Shape::Raw => record.value.clone(),
            Shape::Ecs => ecs(record),
            Shape::Ocsf => ocsf(record),
        }
    }
}

/// `value` as one line of JSON that a terminal or a SIEM's table shows as it is: every control,
/// bidirectional or invisible character written as its `\uXXXX` escape, which any JSON reader
/// reads as the same value. Text in records that an agent or an upstream chose (an MCP
/// server's error message, a tool's description, a reason, a path) then cannot move the
/// cursor, recolour the screen (a C1 `CSI`, U+009B, which JSON leaves as it is) or make a line
/// read in another order (U+202E) in `warden audit tail`, `search` and `export`, nor in the
/// events the SIEM sinks ship (ECS, OCSF and raw documents to Elastic, Splunk and syslog):
/// every JSON Warden prints or ships of a record is written by this one function.
pub fn terminal_line(value: &Value) -> String {
    let text = value.to_string();
    let shown = |c: char| !(c.is_control() || crate::text::is_hidden(c));
    if text.chars().all(shown) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if shown(c) {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// Whether the record says the action succeeded: `success`, `failure` or `unknown` (ECS
/// `event.outcome`).
fn outcome(v: &Value) -> &'static str {
    match v["kind"].as_str() {
        Some("decision") => match v["decision"].as_str() {
            Some("allow") => "success",
            Some(_) => "failure",
            None => "unknown",
        },
        Some("rejected") => "failure",
        Some("outcome") => {
            let status = v["outcome"]["status"].as_u64().unwrap_or(0);
            let failed = status >= 400
                || v["outcome"]["error"].is_string()
                || v["outcome"]["is_error"] == json!(true);
            if failed { "failure" } else { "success" }
        }
        _ => "unknown",
    }
}

/// The record's reasons as one text (`null` when it has none).
fn reasons(v: &Value) -> Value {
    json!(v["reasons"].as_array().map(|r| {
        r.iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("; ")
    }))
}

/// The record's fields both shapes carry as they are, under `warden.*` (ECS) or
/// `unmapped.warden.*` (OCSF), beside those mapped to the shape's own fields. Left out of
/// both: `content` (a request's body, with `audit.record_content`), which only `raw` carries.
const WARDEN_FIELDS: [&str; 18] = [
    "replica",
    "decision",
    "decision_id",
    "seq",
    "prev",
    "content_digest",
    "action_digest",
    "policy_version",
    "shadow",
    "findings",
    "outcome",
    "secret",
    "detail",
    "client_certificate",
    "code",
    "overruled_by",
    "facts",
    "facts_omitted",
];

/// Puts `value` at `path` (`a.b.c`) in `doc`, unless it is null.
fn put(doc: &mut Map<String, Value>, path: &str, value: Value) {
    if value.is_null() || value == json!("") || value == json!([]) {
        return;
    }
    let mut keys = path.split('.').peekable();
    let mut node = doc;
    while let Some(key) = keys.next() {
        if keys.peek().is_none() {
            node.insert(key.to_owned(), value);
            return;
        }
        let next = node
            .entry(key.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(map) = next else { return };
        node = map;
    }
}

/// The record in Elastic Common Schema 8: `@timestamp`, `event.*` (`id` is the line's hash,
/// so a redelivered record is the same document), `user.*`, `source.ip`,
/// `http.response.status_code`, `rule.id`, and Warden's own fields under `warden.*`.
pub fn ecs(record: &Record) -> Value {
    let v = &record.value;
    let kind = v["kind"].as_str().unwrap_or_default();
    let mut doc = Map::new();
    put(&mut doc, "@timestamp", v["time"].clone());
    put(&mut doc, "ecs.version", json!("8.11.0"));
    put(&mut doc, "event.id", json!(record.id));
    put(&mut doc, "event.kind", json!("event"));
    put(&mut doc, "event.module", json!("warden"));
    put(&mut doc, "event.dataset", json!(format!("warden.{kind}")));
    put(&mut doc, "event.action", v["action"].clone());
    put(&mut doc, "event.outcome", json!(outcome(v)));
    let (category, kind_type) = match kind {
        "decision" => (
            "web",
            if v["decision"] == "allow" {
                "allowed"
            } else {
                "denied"
            },
        ),
        "rejected" => ("authentication", "denied"),
        "outcome" => ("web", "access"),
        "tool_change" => ("configuration", "change"),
        "retention" => ("file", "deletion"),
        _ => ("process", "info"),
    };
    put(&mut doc, "event.category", json!([category]));
    put(&mut doc, "event.type", json!([kind_type]));
    if let Some(ms) = v["outcome"]["latency_ms"].as_f64() {
        put(&mut doc, "event.duration", json!((ms * 1_000_000.0) as u64));
    }
    put(&mut doc, "event.reason", reasons(v));
    put(&mut doc, "user.id", v["principal"]["id"].clone());
    put(&mut doc, "user.name", v["principal"]["id"].clone());
    put(&mut doc, "user.domain", v["principal"]["issuer"].clone());
    put(&mut doc, "source.ip", v["source_ip"].clone());
    put(
        &mut doc,
        "http.response.status_code",
        v["outcome"]["status"].clone(),
    );
    put(&mut doc, "rule.id", v["policies"].clone());
    put(&mut doc, "trace.id", v["request_id"].clone());
    put(&mut doc, "service.node.name", v["replica"].clone());
    put(&mut doc, "error.code", v["code"].clone());
    for field in WARDEN_FIELDS
        .iter()
        .chain(["request_id", "resource", "route"].iter())
    {
        put(&mut doc, &format!("warden.{field}"), v[*field].clone());
    }
    put(&mut doc, "warden.kind", json!(kind));
    put(
        &mut doc,
        "warden.principal.kind",
        v["principal"]["kind"].clone(),
    );
    Value::Object(doc)
}

/// The record as an OCSF 1.x API Activity event (class 6003, category Application Activity):
/// the actor, the API operation (Warden's action on its resource), the source endpoint, the
/// status, and Warden's fields under `unmapped`.
pub fn ocsf(record: &Record) -> Value {
    let v = &record.value;
    let kind = v["kind"].as_str().unwrap_or_default();
    let action = v["action"].as_str().unwrap_or_default();
    // Create, Read, Update, Delete, Other.
    let activity_id = match action.rsplit([':', '.']).next().unwrap_or_default() {
        a if a.starts_with("create") || a.starts_with("post") => 1,
        a if a.starts_with("get") || a.starts_with("list") || a.starts_with("read") => 2,
        a if a.starts_with("update") || a.starts_with("edit") => 3,
        a if a.starts_with("delete") || a.starts_with("remove") => 4,
        _ => 99,
    };
    let (status_id, status) = match outcome(v) {
        "success" => (1, "Success"),
        "failure" => (2, "Failure"),
        _ => (0, "Unknown"),
    };
    let time_ms = record
        .time()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64);
    let mut doc = Map::new();
    put(&mut doc, "class_uid", json!(6003));
    put(&mut doc, "class_name", json!("API Activity"));
    put(&mut doc, "category_uid", json!(6));
    put(&mut doc, "category_name", json!("Application Activity"));
    put(&mut doc, "activity_id", json!(activity_id));
    put(&mut doc, "type_uid", json!(6003 * 100 + activity_id));
    // A canary token in traffic is a leak: High (4); other failures Medium (3).
    let canary = v["findings"]
        .as_array()
        .is_some_and(|f| f.iter().any(|f| f["detector"] == "canary"));
    put(
        &mut doc,
        "severity_id",
        json!(match (canary, status_id) {
            (true, _) => 4,
            (false, 2) => 3,
            _ => 1,
        }),
    );
    put(&mut doc, "time", json!(time_ms));
    put(&mut doc, "status_id", json!(status_id));
    put(&mut doc, "status", json!(status));
    put(&mut doc, "message", reasons(v));
    put(&mut doc, "metadata.version", json!("1.3.0"));
    put(&mut doc, "metadata.uid", json!(record.id));
    put(&mut doc, "metadata.log_name", json!("warden-audit"));
    put(&mut doc, "metadata.product.name", json!("Warden"));
    put(&mut doc, "metadata.product.vendor_name", json!("Warden"));
    put(
        &mut doc,
        "metadata.correlation_uid",
        v["request_id"].clone(),
    );
    put(&mut doc, "actor.user.uid", v["principal"]["id"].clone());
    put(&mut doc, "actor.user.name", v["principal"]["id"].clone());
    put(&mut doc, "actor.user.type", v["principal"]["kind"].clone());
    put(&mut doc, "actor.idp.name", v["principal"]["issuer"].clone());
    put(&mut doc, "api.operation", v["action"].clone());
    put(&mut doc, "api.service.name", v["route"].clone());
    put(&mut doc, "api.request.uid", v["request_id"].clone());
    put(&mut doc, "src_endpoint.ip", v["source_ip"].clone());
    put(
        &mut doc,
        "http_response.code",
        v["outcome"]["status"].clone(),
    );
    if let Some(resource) = v["resource"].as_str() {
        put(
            &mut doc,
            "resources",
            json!([{"uid": resource, "type": resource.split("::").next().unwrap_or_default()}]),
        );
    }
    put(&mut doc, "status_code", v["code"].clone());
    for field in WARDEN_FIELDS.iter().chain(["policies"].iter()) {
        put(
            &mut doc,
            &format!("unmapped.warden.{field}"),
            v[*field].clone(),
        );
    }
    put(&mut doc, "unmapped.warden.kind", json!(kind));
    Value::Object(doc)
}

/// For the sinks' tests: an outcome whose free text (an MCP server's error message, a reason,
/// the resource's path, a tool's description in `detail`) carries a C1 control, bidirectional
/// overrides and isolates, zero-width characters and a line separator, each of which a SIEM's
/// table would show reordered, hidden or split if shipped raw.
#[cfg(test)]
pub fn hostile_record() -> Record {
    Record {
        value: json!({
            "seq": 3, "time": "2026-12-01T00:00:00Z", "kind": "outcome",
            "principal": {"kind": "agent", "id": "ci-bot", "issuer": "warden"},
            "action": "mcp:tools/call", "route": "tools",
            "resource": "Operation::\"/repos/\u{2066}x\u{2069}/issues\"",
            "reasons": ["tool ok\u{202e}deny"],
            "outcome": {"status": 500, "error": "boom\u{9b}2J \u{200b}ci-bot\u{200f}\u{2028}x"},
            "detail": "Reads files\u{2067}\u{200d}",
        }),
        id: "ef".repeat(32),
    }
}

/// For the sinks' tests: panics unless `shipped` carries none of the characters
/// [`terminal_line`] escapes, raw.
#[cfg(test)]
pub fn assert_escaped(shipped: &str) {
    let raw: Vec<String> = shipped
        .chars()
        .filter(|&c| c != '\n' && (c.is_control() || crate::text::is_hidden(c)))
        .map(|c| format!("U+{:04X}", u32::from(c)))
        .collect();
    assert!(raw.is_empty(), "shipped raw: {raw:?} in {shipped}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(v: Value) -> Record {
        Record {
            value: v,
            id: "ab".repeat(32),
        }
    }

    fn deny() -> Record {
        record(json!({
            "seq": 7, "prev": "00", "time": "2026-12-03T10:00:00.123Z", "kind": "decision",
            "request_id": "r1", "decision_id": "d1",
            "principal": {"kind": "agent", "id": "ci-bot", "issuer": "warden"},
            "action": "github:issues.create", "resource": "Operation::\"github/issues.create\"",
            "route": "github", "source_ip": "127.0.0.1", "decision": "deny",
            "reasons": ["no policy permits it"], "policies": ["p1"]
        }))
    }

    #[test]
    fn a_terminal_line_escapes_what_would_act_on_the_terminal_and_reads_as_the_same_json() {
        let record = json!({"kind": "outcome", "principal": {"id": "ci-bot"},
            "outcome": {"error": "boom\u{9b}2J\u{1b}[31m\u{7f} ci-bot\u{202e}tob-live \u{200b}\u{2028} caf\u{e9} \u{e0041}"}});
        let line = terminal_line(&record);
        assert!(
            line.chars()
                .all(|c| !c.is_control() && !crate::text::is_hidden(c)),
            "{line}"
        );
        for escape in [
            r"\u009b",
            r"\u001b",
            r"\u007f",
            r"\u202e",
            r"\u200b",
            r"\u2028",
            r"\udb40\udc41",
        ] {
            assert!(line.contains(escape), "{escape} in {line}");
        }
        assert!(line.contains("café"), "readable text stays: {line}");
        let back: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back, record);
        let plain = json!({"kind": "decision", "principal": {"id": "ci-bot"}});
        assert_eq!(terminal_line(&plain), plain.to_string());
    }

    #[test]
    fn a_decision_maps_to_ecs_with_its_stable_id_and_outcome() {
        let doc = ecs(&deny());
        assert_eq!(doc["@timestamp"], "2026-12-03T10:00:00.123Z");
        assert_eq!(doc["event"]["id"], "ab".repeat(32));
        assert_eq!(doc["event"]["outcome"], "failure");
        assert_eq!(doc["event"]["type"], json!(["denied"]));
        assert_eq!(doc["event"]["action"], "github:issues.create");
        assert_eq!(doc["user"]["id"], "ci-bot");
        assert_eq!(doc["source"]["ip"], "127.0.0.1");
        assert_eq!(doc["rule"]["id"], json!(["p1"]));
        assert_eq!(doc["warden"]["seq"], 7);
        assert_eq!(doc["event"]["reason"], "no policy permits it");
    }

    #[test]
    fn a_decision_maps_to_ocsf_api_activity() {
        let doc = ocsf(&deny());
        assert_eq!(doc["class_uid"], 6003);
        assert_eq!(doc["activity_id"], 1, "issues.create is a Create");
        assert_eq!(doc["type_uid"], 600301);
        assert_eq!(doc["status_id"], 2);
        assert_eq!(doc["time"], 1_796_292_000_123u64);
        assert_eq!(doc["actor"]["user"]["uid"], "ci-bot");
        assert_eq!(doc["api"]["operation"], "github:issues.create");
        assert_eq!(doc["metadata"]["uid"], "ab".repeat(32));
        assert_eq!(doc["resources"][0]["type"], "Operation");
        assert_eq!(doc["unmapped"]["warden"]["decision"], "deny");
    }

    #[test]
    fn a_refusal_code_overruling_and_facts_reach_ecs_and_ocsf() {
        let rejected = record(json!({
            "seq": 9, "time": "2026-12-03T10:00:00Z", "kind": "rejected",
            "principal": {"kind": "agent", "id": "ci-bot"}, "code": "agent_quarantined",
            "reasons": ["the agent is quarantined"]
        }));
        let doc = ecs(&rejected);
        assert_eq!(doc["error"]["code"], "agent_quarantined");
        assert_eq!(doc["warden"]["code"], "agent_quarantined");
        let doc = ocsf(&rejected);
        assert_eq!(doc["status_code"], "agent_quarantined");
        assert_eq!(doc["unmapped"]["warden"]["code"], "agent_quarantined");

        let facts = json!({"principal": {"id": "ci-bot"}, "action": "llm:chat", "context": {}});
        let overruled = record(json!({
            "seq": 10, "time": "2026-12-03T10:00:00Z", "kind": "decision", "decision": "deny",
            "overruled_by": "quarantine", "facts": facts, "facts_omitted": ""
        }));
        let omitted = record(json!({
            "seq": 11, "time": "2026-12-03T10:00:00Z", "kind": "decision", "decision": "allow",
            "facts_omitted": "arguments not recorded"
        }));
        for (doc, warden) in [
            (ecs(&overruled), "/warden"),
            (ocsf(&overruled), "/unmapped/warden"),
        ] {
            let at = |field: &str| doc.pointer(&format!("{warden}/{field}")).cloned();
            assert_eq!(at("overruled_by"), Some(json!("quarantine")), "{doc}");
            assert_eq!(at("facts"), Some(facts.clone()), "{doc}");
        }
        assert_eq!(
            ecs(&omitted)["warden"]["facts_omitted"],
            "arguments not recorded"
        );
        assert_eq!(
            ocsf(&omitted)["unmapped"]["warden"]["facts_omitted"],
            "arguments not recorded"
        );
    }

    #[test]
    fn an_outcome_with_an_error_status_is_a_failure() {
        let r = record(json!({"kind": "outcome", "time": "2026-12-03T10:00:00Z",
                              "outcome": {"status": 502, "latency_ms": 1.5}}));
        let doc = ecs(&r);
        assert_eq!(doc["event"]["outcome"], "failure");
        assert_eq!(doc["event"]["duration"], 1_500_000);
        assert_eq!(doc["http"]["response"]["status_code"], 502);
    }
}
