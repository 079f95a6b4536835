//! The operator's view: every query of the Grafana dashboard (`deploy/grafana/warden.json`,
//! the chart's `dashboards/warden.json`) and of the Prometheus alert rules
//! (`deploy/prometheus/warden-rules.yaml`) parses as PromQL and names only metrics Warden
//! exports: those a running warden serves on `/metrics` after traffic, or, for those that
//! appear only with a component configured (a SIEM sink, Vault), those its code registers.
//! The chart ships the same dashboard in an optional ConfigMap Grafana's sidecar picks up.
//! The approval panels' metrics are served once approvals resolve: a held request approved,
//! one denied and one its agent left are each observed in `warden_approval_wait_seconds`, and
//! `warden_approvals_pending` follows the store.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use promql_parser::parser::{self, Expr};
use promql_parser::util::{ExprVisitor, walk_expr};
use serde_json::{Value, json};
use warden_e2e::fake_llm::FakeLlm;
use warden_e2e::helm;
use warden_e2e::operator::{NEEDS_SRE, approve, enrol, first_pending, oathtool, text as text_of};
use warden_e2e::paths;
use warden_e2e::stack::{Stack, openai_chat};
use warden_e2e::warden::{Warden, WardenBuilder};

/// Collects the metric names a query selects.
struct Names(BTreeSet<String>);

impl ExprVisitor for Names {
    type Error = String;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, String> {
        let selector = match expr {
            Expr::VectorSelector(vs) => Some(vs),
            Expr::MatrixSelector(ms) => Some(&ms.vs),
            _ => None,
        };
        if let Some(vs) = selector {
            let name = vs
                .name
                .clone()
                .ok_or_else(|| format!("a selector without a metric name: {expr}"))?;
            self.0.insert(name);
        }
        Ok(true)
    }
}

/// The metric names `query` selects; panics with the parser's message when it does not parse.
/// Grafana's `$__rate_interval` is substituted as Grafana does before Prometheus sees it.
fn metrics_of(query: &str, whence: &str) -> BTreeSet<String> {
    let promql = query.replace("$__rate_interval", "5m");
    let expr =
        parser::parse(&promql).unwrap_or_else(|e| panic!("{whence}: `{query}` is not PromQL: {e}"));
    let mut names = Names(BTreeSet::new());
    walk_expr(&mut names, &expr).unwrap_or_else(|e| panic!("{whence}: {e}"));
    names.0
}

/// Every `(panel title, query)` of the dashboard.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    panels
        .iter()
        .flat_map(|panel| {
            let title = panel["title"].as_str().unwrap_or_default().to_owned();
            let targets = panel["targets"].as_array().expect("targets").clone();
            assert!(!targets.is_empty(), "panel {title} has no query");
            targets
                .into_iter()
                .map(move |t| (title.clone(), t["expr"].as_str().expect("expr").to_owned()))
        })
        .collect()
}

/// Every `(alert name, expression)` of the rules file.
fn rule_queries(text: &str) -> Vec<(String, String)> {
    let rules: Value = serde_saphyr::from_str(text).expect("the rules file is YAML");
    rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").clone())
        .map(|r| {
            (
                r["alert"].as_str().expect("alert name").to_owned(),
                r["expr"].as_str().expect("expr").to_owned(),
            )
        })
        .collect()
}

/// The metric names a `/metrics` text serves, with a histogram's `_bucket`, `_sum`, `_count`.
fn served(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            names.insert(name.to_owned());
            if kind == "histogram" || kind == "summary" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
        }
    }
    names
}

/// The metric names Warden's code registers (`"warden_…"` literals under gateway/src), with
/// the histogram suffixes.
fn registered() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for (i, _) in text.match_indices("\"warden_") {
                    let name: String = text[i + 1..]
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect();
                    if text[i + 1 + name.len()..].starts_with('"') {
                        for suffix in ["", "_bucket", "_sum", "_count"] {
                            out.insert(format!("{name}{suffix}"));
                        }
                    }
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(&paths::repo_root().join("gateway/src"), &mut out);
    out
}

const SHADOW: &str = "@id(\"e2e-shadow\")\n@mode(\"shadow\")\nforbid (principal, action, resource == Model::\"openai/gpt-4.1\");\n";

#[tokio::test]
async fn every_dashboard_and_alert_query_parses_and_names_only_metrics_warden_exports() {
    let root = paths::repo_root();
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("deploy/grafana/warden.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let rules = std::fs::read_to_string(root.join("deploy/prometheus/warden-rules.yaml")).unwrap();
    let queries: Vec<(String, String)> = dashboard_queries(&dashboard)
        .into_iter()
        .map(|(t, q)| (format!("dashboard panel {t:?}"), q))
        .chain(
            rule_queries(&rules)
                .into_iter()
                .map(|(a, q)| (format!("alert {a}"), q)),
        )
        .collect();
    assert!(queries.len() > 20, "{} queries", queries.len());

    // Traffic that makes the decision metrics appear: allowed, denied, shadowed, refused.
    let s = Stack::start_with(|b| {
        b.policy("e2e-shadow.cedar", SHADOW).policy(
            "e2e-forbid.cedar",
            warden_e2e::stack::FORBID_GPT41
                .replace("gpt-4.1", "gpt-4o-mini")
                .as_str(),
        )
    })
    .await
    .unwrap();
    for model in ["gpt-4o", "gpt-4.1", "gpt-4o-mini"] {
        s.post("/openai/chat/completions", &openai_chat(model, false))
            .await
            .unwrap();
    }
    let unauthenticated = s
        .warden
        .http()
        .post(s.warden.url("/openai/chat/completions"))
        .json(&openai_chat("gpt-4o", false))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    let live = served(&s.warden.metrics().await.unwrap());
    let code = registered();

    let mut used = BTreeSet::new();
    for (whence, query) in &queries {
        for name in metrics_of(query, whence) {
            assert!(
                live.contains(&name) || code.contains(&name),
                "{whence}: `{name}` is not a metric Warden exports (query `{query}`)"
            );
            used.insert(name);
        }
    }
    // The decision metrics the panels rest on are served, not only declared.
    for name in [
        "warden_requests_total",
        "warden_policy_decisions_total",
        "warden_shadow_differences_total",
        "warden_policy_info",
        "warden_request_duration_seconds_bucket",
        "warden_policy_duration_seconds_bucket",
        "warden_auth_failures_total",
        "warden_tokens_total",
    ] {
        assert!(used.contains(name), "no query uses {name}");
        assert!(live.contains(name), "{name} is not served:\n{live:?}");
    }

    // The chart's optional ConfigMap carries the same dashboard, labelled for the sidecar.
    let case = helm::case("grafana").await;
    let configmap = case
        .manifests
        .iter()
        .find(|m| {
            m["kind"] == "ConfigMap"
                && m["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with("-grafana-dashboard"))
        })
        .expect("the grafana case renders the dashboard ConfigMap");
    assert_eq!(configmap["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(
        configmap["metadata"]["annotations"]["grafana_folder"],
        "Security"
    );
    let shipped: Value =
        serde_json::from_str(configmap["data"]["warden.json"].as_str().unwrap()).unwrap();
    assert_eq!(shipped, dashboard);
    let minimal = helm::case("minimal").await;
    assert!(
        !minimal.manifests.iter().any(|m| m["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n.ends_with("-grafana-dashboard"))),
        "off by default"
    );
}

/// The value of the series `series` (name and labels as served) in a `/metrics` text.
fn value_of(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Reads `/metrics` until `series` has `want`, within 15 s (the pending gauges are read from
/// the store every 5 s); the last text.
async fn metric_reaches(w: &Warden, series: &str, want: f64) -> String {
    let mut text = String::new();
    for _ in 0..75 {
        text = w.metrics().await.unwrap();
        if value_of(&text, series) == Some(want) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{series} never reached {want}:\n{text}");
}

/// A chat on gpt-4o saying `content`, as `token`, spawned: it waits for its approval.
fn held_chat(
    w: &Warden,
    token: &str,
    content: &str,
    stream: bool,
) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    let mut body = openai_chat("gpt-4o", stream);
    body["messages"][0]["content"] = json!(content);
    let request = w
        .http()
        .post(w.url("/openai/chat/completions"))
        .bearer_auth(token)
        .json(&body)
        .timeout(Duration::from_secs(30));
    tokio::spawn(request.send())
}

#[tokio::test]
async fn approval_waits_and_pending_approvals_are_served_as_the_dashboard_charts_them() {
    let upstream = FakeLlm::start().await.unwrap();
    let w = WardenBuilder::new(&upstream)
        .policy("needs-sre.cedar", NEEDS_SRE)
        .set(
            "/approvals",
            json!({
                "mode": "wait",
                "wait_timeout": "25s",
                "keepalive_interval": "200ms",
                "operators": [
                    {"subject": "alice", "groups": ["sre"]},
                    {"subject": "carol", "groups": ["sre"]},
                ],
            }),
        )
        .start()
        .await
        .unwrap();
    let token = w.token("billing-bot").await.unwrap();
    let alice = enrol(&w, "alice").await;
    let carol = enrol(&w, "carol").await;
    metric_reaches(&w, "warden_approvals_pending", 0.0).await;

    // Approved: the held request goes on, and its wait is observed once.
    let held = held_chat(&w, &token, "summarise the invoices", false);
    let id = first_pending(&w)
        .await
        .expect("the held request's approval");
    metric_reaches(&w, "warden_approvals_pending", 1.0).await;
    let text = w.metrics().await.unwrap();
    assert!(
        value_of(&text, "warden_approval_oldest_pending_seconds").is_some_and(|s| s >= 0.0),
        "{text}"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let out = approve(&w, &id, "alice", &alice).await;
    assert!(out.status.success(), "{}", text_of(&out));
    assert_eq!(held.await.unwrap().unwrap().status(), 200);
    let text = metric_reaches(&w, "warden_approvals_pending", 0.0).await;
    let approved = "warden_approval_wait_seconds_count{outcome=\"approved\"}";
    assert_eq!(value_of(&text, approved), Some(1.0), "{text}");
    let waited = value_of(
        &text,
        "warden_approval_wait_seconds_sum{outcome=\"approved\"}",
    );
    assert!(
        waited.is_some_and(|s| (1.0..25.0).contains(&s)),
        "from the request to alice's approval: {waited:?}"
    );

    // Denied: the held request is refused, its wait observed as denied.
    let held = held_chat(&w, &token, "delete the invoices", false);
    let id = first_pending(&w)
        .await
        .expect("the held request's approval");
    let out = w
        .cli(&[
            "approvals",
            "deny",
            &id,
            "--as",
            "carol",
            "--code",
            &oathtool(&carol, 1),
        ])
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text_of(&out));
    let refused = held.await.unwrap().unwrap().text().await.unwrap();
    assert!(refused.contains(&format!("{id} was denied")), "{refused}");
    let text = w.metrics().await.unwrap();
    assert_eq!(
        value_of(
            &text,
            "warden_approval_wait_seconds_count{outcome=\"denied\"}"
        ),
        Some(1.0),
        "{text}"
    );

    // Cancelled: the agent leaves a streamed request while it waits.
    let held = held_chat(&w, &token, "archive the invoices", true);
    let mut response = held.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let first = tokio::time::timeout(Duration::from_secs(10), response.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap_or_default();
    assert!(
        String::from_utf8_lossy(&first).contains("waiting for approval"),
        "{first:?}"
    );
    drop(response);
    metric_reaches(
        &w,
        "warden_approval_wait_seconds_count{outcome=\"cancelled\"}",
        1.0,
    )
    .await;
    // The approval the agent left stays pending for its next try.
    metric_reaches(&w, "warden_approvals_pending", 1.0).await;
    let text = w.metrics().await.unwrap();
    assert_eq!(value_of(&text, approved), Some(1.0), "counted once: {text}");
}
