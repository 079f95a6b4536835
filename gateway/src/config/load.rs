//! Reading the configuration file: YAML syntax, then each section on its own so that one
//! mistake does not hide the next, then the checks that need the whole picture.

use serde::de::DeserializeOwned;
use std::path::Path;

use super::error::{ConfigError, ConfigErrors, saphyr_message};
use super::locate::{RouteKeys, Source, join_key};
use super::section::MISTAKES_MAX;
use super::{Config, RouteConfig};

/// The top-level keys, in the order the documentation lists them.
const SECTIONS: &[&str] = &[
    "data_dir",
    "state",
    "pins",
    "listen",
    "identity",
    "policy",
    "audit",
    "upstream",
    "limits",
    "rate_limits",
    "sessions",
    "budgets",
    "log",
    "traces",
    "runtime",
    "connectors_dir",
    "routes",
    "vault",
    "mcp",
    "siem",
    "approvals",
    "console",
    "egress",
    "propose",
    "inspect",
    "canaries",
    "fleet",
    "admin",
];

/// A configuration read as far as it could be: each section that has a mistake keeps its
/// defaults, so callers can still use the sections that parsed (e.g. `policy.dir`).
#[derive(Debug)]
pub struct Parsed {
    /// The configuration; sections with mistakes hold their defaults.
    pub config: Config,
    /// Where it came from, to locate further mistakes.
    pub source: Source,
    /// Every mistake found, each with file, line and key.
    pub errors: Vec<ConfigError>,
}

impl Parsed {
    /// The embedded defaults, read from no file.
    pub fn defaults() -> Parsed {
        Parsed {
            config: Config::default(),
            source: Source::default(),
            errors: Vec::new(),
        }
    }

    /// The configuration, or every mistake found.
    pub fn into_result(self) -> Result<Config, ConfigErrors> {
        if self.errors.is_empty() {
            Ok(self.config)
        } else {
            Err(ConfigErrors(self.errors))
        }
    }
}

/// Reads and parses `path`. Every mistake is reported with file, line and key.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    load_file_partial(path).into_result()
}

/// Reads and parses `path`, keeping what parsed alongside the mistakes.
pub fn load_file_partial(path: &Path) -> Parsed {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_partial(&text, Some(path)),
        Err(e) => {
            let source = Source::new("", Some(path));
            let errors = vec![source.error("", format!("cannot read the configuration file: {e}"))];
            Parsed {
                config: Config::default(),
                source,
                errors,
            }
        }
    }
}

/// Parses configuration `text` (from `file`, for messages).
pub fn parse(text: &str, file: Option<&Path>) -> Result<Config, ConfigErrors> {
    parse_partial(text, file).into_result()
}

/// Parses configuration `text` (from `file`, for messages), keeping what parsed alongside
/// the mistakes.
pub fn parse_partial(text: &str, file: Option<&Path>) -> Parsed {
    let source = Source::new(text, file);
    let error = |key: &str, message: String| source.error(key, message);
    let failed = |errors: Vec<ConfigError>| Parsed {
        config: Config::default(),
        source: source.clone(),
        errors,
    };
    let root: serde_json::Value = if text.trim().is_empty() {
        serde_json::Value::Object(Default::default())
    } else {
        match super::yaml::parse(text) {
            Ok(root) => root,
            Err(e) => {
                return failed(vec![ConfigError {
                    file: file.map(Into::into),
                    line: e.location().map(|l| l.line() as usize),
                    key: String::new(),
                    message: format!("invalid YAML: {}", saphyr_message(&e)),
                }]);
            }
        }
    };
    let serde_json::Value::Object(map) = root else {
        return failed(vec![error(
            "",
            "the file must be a mapping of sections (listen:, routes:, ...)".into(),
        )]);
    };

    let mut config = Config::default();
    let mut errors = Vec::new();
    // Where each route that parsed stands in the file, to name it there in what validation
    // finds.
    let mut route_keys = RouteKeys::default();
    // Kept for the secret files every `{file: PATH}` source names, which sandboxed MCP
    // servers must not reach.
    let raw = serde_json::Value::Object(map.clone());
    for (key, value) in map {
        match key.as_str() {
            "data_dir" => section(&key, value, &mut config.data_dir, &error, &mut errors),
            "state" => section(&key, value, &mut config.state, &error, &mut errors),
            "pins" => section(&key, value, &mut config.pins, &error, &mut errors),
            "listen" => section(&key, value, &mut config.listen, &error, &mut errors),
            "identity" => section(&key, value, &mut config.identity, &error, &mut errors),
            "policy" => section(&key, value, &mut config.policy, &error, &mut errors),
            "audit" => section(&key, value, &mut config.audit, &error, &mut errors),
            "upstream" => section(&key, value, &mut config.upstream, &error, &mut errors),
            "limits" => section(&key, value, &mut config.limits, &error, &mut errors),
            "rate_limits" => section(&key, value, &mut config.rate_limits, &error, &mut errors),
            "sessions" => section(&key, value, &mut config.sessions, &error, &mut errors),
            "budgets" => section(&key, value, &mut config.budgets, &error, &mut errors),
            "log" => section(&key, value, &mut config.log, &error, &mut errors),
            "traces" => section(&key, value, &mut config.traces, &error, &mut errors),
            "runtime" => section(&key, value, &mut config.runtime, &error, &mut errors),
            "connectors_dir" => {
                section(&key, value, &mut config.connectors_dir, &error, &mut errors)
            }
            "routes" => (config.routes, route_keys) = routes(value, &error, &mut errors),
            "vault" => section(&key, value, &mut config.vault, &error, &mut errors),
            "mcp" => section(&key, value, &mut config.mcp, &error, &mut errors),
            "siem" => section(&key, value, &mut config.siem, &error, &mut errors),
            "approvals" => section(&key, value, &mut config.approvals, &error, &mut errors),
            "console" => section(&key, value, &mut config.console, &error, &mut errors),
            "egress" => section(&key, value, &mut config.egress, &error, &mut errors),
            "propose" => section(&key, value, &mut config.propose, &error, &mut errors),
            "inspect" => section(&key, value, &mut config.inspect, &error, &mut errors),
            "canaries" => section(&key, value, &mut config.canaries, &error, &mut errors),
            "fleet" => section(&key, value, &mut config.fleet, &error, &mut errors),
            "admin" => section(&key, value, &mut config.admin, &error, &mut errors),
            other => {
                let guess = super::suggest::did_you_mean(other, SECTIONS.iter().copied());
                errors.push(error(
                    other,
                    format!(
                        "unknown section{guess}; expected one of: {}",
                        SECTIONS.join(", ")
                    ),
                ))
            }
        }
    }
    errors.extend(
        super::validate::validate_as_written(&config, &route_keys)
            .into_iter()
            .map(|(key, message)| error(&key, message)),
    );
    // A local server that must run sandboxed on a kernel that cannot confine it.
    errors.extend(
        crate::mcp::sandbox::kernel::check(&config.mcp, crate::mcp::sandbox::kernel::abi())
            .into_iter()
            .map(|(key, message)| error(&key, message)),
    );
    // A local server with network: egress that must run sandboxed where no network
    // namespace can be made.
    errors.extend(
        crate::mcp::sandbox::kernel::check_namespaces(
            &config.mcp,
            crate::mcp::sandbox::netns::available,
        )
        .into_iter()
        .map(|(key, message)| error(&key, message)),
    );
    // Checked here, and again at every start of a sandboxed server against what it opens.
    let protected = crate::mcp::sandbox::protected::protected(&config, file, &raw);
    errors.extend(
        crate::mcp::sandbox::protected::check(&config, &protected)
            .into_iter()
            .map(|(key, message)| error(&key, message)),
    );
    config.mcp.sandbox.protected = protected;
    let errors = bounded(errors, error);
    Parsed {
        config,
        source,
        errors,
    }
}

/// Deserializes one section into `slot`, recording a located error for each mistake in it
/// (`config/section.rs`), as many as there is room for under [`MISTAKES_MAX`].
fn section<T: DeserializeOwned>(
    key: &str,
    value: serde_json::Value,
    slot: &mut T,
    error: &impl Fn(&str, String) -> ConfigError,
    errors: &mut Vec<ConfigError>,
) {
    let room = MISTAKES_MAX.saturating_sub(errors.len()).max(1);
    match super::section::read::<T>(value, room) {
        Ok(v) => *slot = v,
        Err(mistakes) => {
            for mistake in mistakes {
                let path = if mistake.path == "." {
                    key.to_string()
                } else {
                    join_key(key, &mistake.path)
                };
                let message = super::suggest::unknown_name(&mistake.message);
                errors.push(error(&path, plain_expectation(&message)));
            }
        }
    }
}

/// `errors` cut to [`MISTAKES_MAX`], the last saying how many more there are and what to do.
fn bounded(
    mut errors: Vec<ConfigError>,
    error: impl Fn(&str, String) -> ConfigError,
) -> Vec<ConfigError> {
    if errors.len() > MISTAKES_MAX {
        let more = errors.len() - MISTAKES_MAX;
        errors.truncate(MISTAKES_MAX);
        errors.push(error(
            "",
            format!(
                "the first {MISTAKES_MAX} mistakes are shown; fix them and run `warden check` again \
                 to see the rest ({more} more found so far)"
            ),
        ));
    }
    errors
}

/// What serde expected, in words a reader of the YAML file knows rather than Rust's type
/// names: `expected u64` is `expected a whole number (0 or more)`.
fn plain_expectation(message: &str) -> String {
    const PLAIN: &[(&str, &str)] = &[
        ("u8", "a whole number (0 or more)"),
        ("u16", "a whole number (0 or more)"),
        ("u32", "a whole number (0 or more)"),
        ("u64", "a whole number (0 or more)"),
        ("usize", "a whole number (0 or more)"),
        ("i32", "a whole number"),
        ("i64", "a whole number"),
        ("f32", "a number"),
        ("f64", "a number"),
        ("a boolean", "true or false"),
        (
            "socket address",
            "an address and port, such as 127.0.0.1:8080",
        ),
    ];
    let mut out = message.to_string();
    for (rust, plain) in PLAIN {
        let from = format!("expected {rust}");
        let mut search = 0;
        while let Some(at) = out[search..].find(&from).map(|i| i + search) {
            let end = at + from.len();
            if out[end..].starts_with(|c: char| c.is_alphanumeric() || c == '_') {
                search = end;
                continue;
            }
            let to = format!("expected {plain}");
            out.replace_range(at..end, &to);
            search = at + to.len();
        }
    }
    out
}

/// Deserializes each route on its own, so every bad route is reported.
/// The routes that parse, and where each stands in the file.
fn routes(
    value: serde_json::Value,
    error: &impl Fn(&str, String) -> ConfigError,
    errors: &mut Vec<ConfigError>,
) -> (Vec<RouteConfig>, RouteKeys) {
    let serde_json::Value::Array(items) = value else {
        errors.push(error(
            "routes",
            "must be a list of routes (- prefix: /openai ...)".into(),
        ));
        return (Vec::new(), RouteKeys::default());
    };
    let mut out = Vec::with_capacity(items.len());
    let mut at = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let mut route = None;
        section(&format!("routes[{i}]"), item, &mut route, error, errors);
        if let Some(route) = route {
            out.push(route);
            at.push(i);
        }
    }
    (out, RouteKeys::new(at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_after_one_that_did_not_parse_is_validated_under_its_own_index() {
        let text = "routes:\n  - { prefix: /o, connector: openai, credential: { enf: K } }\n  - { prefix: /a, connector: antropic }\n  - { prefix: /a, connector: anthropic }\n";
        let errors = parse(text, Some(Path::new("w.yaml")))
            .unwrap_err()
            .to_string();
        assert!(
            errors.contains("w.yaml:2: routes[0].credential: expected a secret source"),
            "{errors}"
        );
        assert!(
            errors.contains(
                "w.yaml:3: routes[1].connector: unknown connector \"antropic\" (did you mean \
                 `anthropic`?)"
            ),
            "{errors}"
        );
        // In a message too: the route another one collides with.
        assert!(
            errors.contains("w.yaml:4: routes[2].prefix: \"/a\" is already used by routes[1]"),
            "{errors}"
        );
    }

    /// Only the keys and route references Warden writes are moved to the file's indices: text
    /// a user wrote that reads like a key (in a prefix, a connector name, an upstream URL) is
    /// quoted as written.
    #[test]
    fn a_route_value_that_reads_like_a_route_key_is_quoted_as_written() {
        let text = "\
routes:
  - { prefix: /o, connector: openai, credential: { enf: K } }
  - { prefix: \"/a/routes[0]/\", connector: openai }
  - { prefix: /b, connector: \"routes[1]\" }
  - { prefix: /c, connector: anthropic, upstream: \"ftp://h/routes[0]\" }
  - { prefix: \"/a/routes[0]/\", connector: openai, name: o2 }
";
        let errors = parse(text, Some(Path::new("w.yaml")))
            .unwrap_err()
            .to_string();
        for said in [
            "w.yaml:3: routes[1].prefix: \"/a/routes[0]/\" must start with / and not end with /",
            "w.yaml:4: routes[2].connector: unknown connector \"routes[1]\";",
            "w.yaml:5: routes[3].upstream: \"ftp://h/routes[0]\"",
            // A reference Warden writes is the file's index, the quoted prefix is not touched.
            "w.yaml:6: routes[4].prefix: \"/a/routes[0]/\" is already used by routes[1]",
        ] {
            assert!(errors.contains(said), "{said:?} not in\n{errors}");
        }
    }

    #[test]
    fn a_value_of_the_wrong_type_says_what_to_write_in_plain_words() {
        let text = "listen:\n  proxy: 8081\nidentity:\n  leeway_seconds: ten\n";
        let errors = parse(text, Some(Path::new("w.yaml")))
            .unwrap_err()
            .to_string();
        assert!(
            errors.contains("identity.leeway_seconds: invalid type: string \"ten\", expected a whole number (0 or more)"),
            "{errors}"
        );
        assert!(
            errors.contains("listen.proxy: invalid type: integer `8081`, expected an address and port, such as 127.0.0.1:8080"),
            "{errors}"
        );
        assert!(!errors.contains("u64"), "{errors}");
        assert_eq!(plain_expectation("expected u64s"), "expected u64s");
    }

    #[test]
    fn every_mistake_of_a_section_is_reported_with_its_line_not_only_the_first() {
        let text =
            "identity:\n  leeway_seconds: ten\n  cache_entries: many\nlisten:\n  proxy: 8081\n";
        let errors = parse(text, Some(Path::new("w.yaml"))).unwrap_err().0;
        let keys: Vec<(&str, Option<usize>)> =
            errors.iter().map(|e| (e.key.as_str(), e.line)).collect();
        assert!(
            keys.contains(&("identity.leeway_seconds", Some(2)))
                && keys.contains(&("identity.cache_entries", Some(3)))
                && keys.contains(&("listen.proxy", Some(5))),
            "{errors:#?}"
        );
    }

    #[test]
    fn mistakes_past_the_bound_are_counted_not_listed() {
        let text: String = (0..80)
            .map(|i| {
                format!("- {{ prefix: /r{i}, connector: openai, upstream: 7, bogus_{i}: 1 }}\n")
            })
            .collect();
        let errors = parse(&format!("routes:\n{text}"), Some(Path::new("w.yaml")))
            .unwrap_err()
            .0;
        assert_eq!(errors.len(), MISTAKES_MAX + 1, "{errors:#?}");
        let last = errors.last().unwrap().to_string();
        assert!(
            last.contains("the first 50 mistakes are shown; fix them and run `warden check` again"),
            "{last}"
        );
    }

    /// A misspelt key, in any section and at any depth, is named at its line with the known
    /// key it most likely meant; a key close to none gets no guess.
    #[test]
    fn an_unknown_key_close_to_a_known_one_says_did_you_mean() {
        let text = "\
adit:
  dir: a
vault:
  adress: http://127.0.0.1:8200
  auth: { method: token, token: { env: T } }
  tiemout: 2s
audit:
  Fail-Closed: true
routes:
  - { prefix: /o, conector: openai, upstream: http://127.0.0.1:1 }
listen:
  Proxy: 127.0.0.1:8080
log:
  colour_scheme: dark
";
        let errors = parse(text, Some(Path::new("w.yaml"))).unwrap_err();
        let text = errors.to_string();
        for said in [
            "w.yaml:1: adit: unknown section (did you mean `audit`?); expected one of:",
            "w.yaml:4: vault.adress: unknown field `adress` (did you mean `address`?), expected",
            "w.yaml:6: vault.tiemout: unknown field `tiemout` (did you mean `timeout`?), expected",
            "w.yaml:8: audit.Fail-Closed: unknown field `Fail-Closed` (did you mean \
             `fail_closed`?), expected",
            "w.yaml:10: routes[0].conector: unknown field `conector` (did you mean \
             `connector`?), expected",
            "w.yaml:12: listen.Proxy: unknown field `Proxy` (did you mean `proxy`?), expected",
        ] {
            assert!(text.contains(said), "{said:?} not in\n{text}");
        }
        // A kind chosen from a list (an internally tagged enum) as well.
        let method = parse(
            "vault:\n  address: http://127.0.0.1:8200\n  auth: { method: tokn }\n",
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            method.contains("unknown variant `tokn` (did you mean `token`?), expected one of"),
            "{method}"
        );
        let colour = errors.0.iter().find(|e| e.key == "log.colour_scheme");
        let colour = colour.unwrap_or_else(|| panic!("{text}"));
        assert!(!colour.message.contains("did you mean"), "{text}");
    }

    #[test]
    fn a_key_given_twice_is_named_with_its_line_and_what_to_do() {
        let text = "data_dir: a\nlog: { level: info }\ndata_dir: b\n";
        let errors = parse(text, Some(Path::new("warden.yaml"))).unwrap_err();
        let message = errors.to_string();
        assert!(
            message.contains("key `data_dir` appears twice in one mapping: keep one"),
            "{message}"
        );
        assert!(message.contains("warden.yaml:3"), "{message}");
        assert!(!message.contains("DuplicateKeyPolicy"), "{message}");
    }

    #[test]
    fn partial_parse_keeps_the_sections_that_parsed() {
        let parsed = parse_partial(
            "listen:\n  proxy: nowhere\npolicy:\n  dir: /etc/warden/policies\n",
            Some(Path::new("warden.yaml")),
        );
        assert_eq!(parsed.errors.len(), 1, "{:?}", parsed.errors);
        assert_eq!(parsed.errors[0].key, "listen.proxy");
        assert_eq!(
            parsed.config.policy.dir,
            Path::new("/etc/warden/policies"),
            "the policy section parsed, so its directory is kept"
        );
        assert_eq!(parsed.config.listen, crate::config::ListenConfig::default());
    }

    #[test]
    fn partial_parse_of_broken_yaml_or_missing_file_falls_back_to_defaults() {
        let parsed = parse_partial("policy: [unclosed\n", None);
        assert_eq!(parsed.errors.len(), 1);
        assert_eq!(parsed.config, Config::default());

        let parsed = load_file_partial(Path::new("/nonexistent/warden/warden.yaml"));
        assert_eq!(parsed.errors.len(), 1);
        assert!(
            parsed.errors[0]
                .to_string()
                .starts_with("/nonexistent/warden/warden.yaml: cannot read the configuration file"),
            "{}",
            parsed.errors[0]
        );
        assert_eq!(parsed.config, Config::default());
    }

    /// The keys a section accepts, as its "unknown field" error lists them: the structs' own
    /// field names, so the check below follows the code.
    /// A secret source does not echo an unknown key (it may be the secret itself): its error
    /// lists the keys it accepts as "whose key is none of `a`, `b` (...".
    fn accepted_keys(probe: &str) -> Vec<String> {
        let errors = parse_partial(probe, None).errors;
        const SOURCE: &str = "whose key is none of";
        if let Some(message) = errors.iter().find_map(|e| {
            let at = e.message.find(SOURCE)?;
            Some(&e.message[at + SOURCE.len()..])
        }) {
            let list = &message[..message.find('(').unwrap_or(message.len())];
            return list
                .split(',')
                .flat_map(|k| k.split(" or "))
                .map(|k| k.trim().to_owned())
                .filter(|k| !k.is_empty())
                .collect();
        }
        let message = errors
            .iter()
            .map(|e| e.message.as_str())
            .find(|m| m.contains("unknown") && m.contains("expected"))
            .unwrap_or_else(|| panic!("no unknown-key error for {probe:?}: {errors:?}"));
        // serde: "expected `a`", "expected `a` or `b`", "expected one of `a`, `b`, ..."
        let list = &message[message.find("expected").unwrap() + "expected".len()..];
        let list = list
            .trim_start()
            .trim_start_matches("one of")
            .trim_start_matches(':');
        list.split(',')
            .flat_map(|k| k.split(" or "))
            .map(|k| k.trim().trim_matches('`').to_owned())
            .filter(|k| !k.is_empty())
            .collect()
    }

    /// The part of docs/configuration.md under `### \`heading\``.
    fn doc_section(doc: &str, heading: &str) -> String {
        let start = doc
            .find(&format!("### `{heading}`"))
            .or_else(|| doc.find(&format!("### `{heading}[]`")))
            .unwrap_or_else(|| panic!("docs/configuration.md has no section for `{heading}`"));
        let rest = &doc[start + 4..];
        rest[..rest.find("\n### ").unwrap_or(rest.len())].to_owned()
    }

    #[test]
    fn every_configuration_key_is_documented() {
        let doc = include_str!("../../../docs/configuration.md");
        for key in accepted_keys("zz: 1\n") {
            doc_section(doc, &key);
        }
        // (probe with an unknown key, the doc section, how a key is written there)
        let sections: &[(&str, &str, &str)] = &[
            ("listen: {zz: 1}", "listen", ""),
            ("listen: {tls: {cert: c, key: k, zz: 1}}", "listen", ""),
            ("identity: {zz: 1}", "identity", ""),
            (
                "identity: {warden_issuer: {zz: 1}}",
                "identity",
                "warden_issuer.",
            ),
            ("identity: {issuers: [{zz: 1}]}", "identity", ""),
            ("identity: {claims: {zz: 1}}", "identity", ""),
            ("policy: {zz: 1}", "policy", ""),
            ("audit: {zz: 1}", "audit", ""),
            ("upstream: {zz: 1}", "upstream", ""),
            ("limits: {zz: 1}", "limits", ""),
            ("log: {zz: 1}", "log", ""),
            ("traces: {endpoint: e, zz: 1}", "traces", ""),
            ("traces: {endpoint: e, batch: {zz: 1}}", "traces", "batch."),
            ("runtime: {zz: 1}", "runtime", ""),
            ("egress: {zz: 1}", "egress", "egress."),
            ("propose: {zz: 1}", "propose", "propose."),
            ("inspect: {zz: 1}", "inspect", "inspect."),
            ("inspect: {entropy: {zz: 1}}", "inspect", "inspect.entropy."),
            ("canaries: {zz: 1}", "canaries", "canaries."),
            (
                "canaries: {alert: {url: u, zz: 1}}",
                "canaries",
                "canaries.alert.",
            ),
            (
                "routes: [{prefix: /a, connector: openai, zz: 1}]",
                "routes[]",
                "",
            ),
            (
                "routes: [{prefix: /a, connector: openai, credential: {zz: 1}}]",
                "routes[]",
                "",
            ),
            (
                "routes: [{prefix: /a, connector: openai, credential: {vault: {zz: 1}}}]",
                "routes[]",
                "credential.vault.",
            ),
            (
                "routes: [{prefix: /a, connector: openai, inject: {zz: 1}}]",
                "routes[]",
                "inject.",
            ),
            ("state: {zz: 1}", "state", ""),
            ("budgets: {zz: 1}", "budgets", ""),
            (
                "budgets: {limits: [{scope: fleet, period: day, zz: 1}]}",
                "budgets",
                "limits[].",
            ),
            ("budgets: {reserve: {zz: 1}}", "budgets", "reserve."),
            (
                "state: {postgres: {url: {env: U}, zz: 1}}",
                "state",
                "postgres.",
            ),
            (
                "state: {postgres: {url: {env: U}, tls: {zz: 1}}}",
                "state",
                "postgres.tls.",
            ),
            ("vault: {zz: 1}", "vault", "vault."),
            ("siem: {zz: 1}", "siem", "siem."),
            ("siem: {sinks: [{zz: 1}]}", "siem", "siem.sinks[]."),
            (
                "siem: {sinks: [{batch: {zz: 1}}]}",
                "siem",
                "siem.sinks[].batch.",
            ),
            (
                "siem: {sinks: [{retry: {zz: 1}}]}",
                "siem",
                "siem.sinks[].retry.",
            ),
            (
                "siem: {sinks: [{splunk_hec: {zz: 1}}]}",
                "siem",
                "siem.sinks[].splunk_hec.",
            ),
            (
                "siem: {sinks: [{elasticsearch: {zz: 1}}]}",
                "siem",
                "siem.sinks[].elasticsearch.",
            ),
            (
                "siem: {sinks: [{syslog: {zz: 1}}]}",
                "siem",
                "siem.sinks[].syslog.",
            ),
            ("approvals: {zz: 1}", "approvals", "approvals."),
            ("console: {zz: 1}", "console", "console."),
            ("admin: {zz: 1}", "admin", "admin."),
            ("admin: {identity: {zz: 1}}", "admin", "admin.identity."),
            (
                "admin: {identity: {issuers: [{zz: 1}]}}",
                "admin",
                "admin.identity.issuers[].",
            ),
            (
                "console: {oidc: {issuer: i, client_id: c, zz: 1}}",
                "console",
                "console.oidc.",
            ),
            (
                "approvals: {notify: [{kind: json, url: u, zz: 1}]}",
                "approvals",
                "approvals.notify[].",
            ),
        ];
        for (probe, heading, prefix) in sections {
            let text = doc_section(doc, heading);
            for key in accepted_keys(probe) {
                let documented = [
                    format!("`{prefix}{key}`"),
                    format!("`{prefix}{key}[]`"),
                    format!("`{prefix}{key}."),
                    format!("`{{ {key}:"),
                ];
                assert!(
                    documented.iter().any(|form| text.contains(form)),
                    "`{prefix}{key}` (accepted by {probe:?}) is not documented under `{heading}` \
                     in docs/configuration.md"
                );
            }
        }
    }

    #[test]
    fn propose_settings_are_read_and_a_relative_workspace_is_refused_at_its_key() {
        let config = parse(
            "propose: {enabled: false, workspace: /srv/ws, tools: {deploy: {group: release}}}",
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!config.propose.enabled);
        assert_eq!(config.propose.workspace, "/srv/ws");
        assert_eq!(
            config.propose.tools.keys().collect::<Vec<_>>(),
            vec!["deploy"],
            "a catalogue given replaces the built-in one"
        );
        let error = parse("propose: {workspace: ws}", None)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("propose.workspace") && error.contains("not an absolute path"),
            "{error}"
        );
        let error = parse("propose: {tools: {exec: {group: \"a b\"}}}", None)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(error.contains("propose.tools.exec.group"), "{error}");
    }

    #[test]
    fn the_documented_complete_example_is_a_valid_configuration() {
        let doc = include_str!("../../../docs/configuration.md");
        let start = doc
            .find("## Complete example")
            .expect("the example section");
        let block = &doc[start..];
        let yaml = &block[block.find("```yaml\n").unwrap() + 8..];
        let yaml = &yaml[..yaml.find("```").unwrap()];
        let config = parse(yaml, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.routes.len(), 3);
        assert_eq!(config.routes[2].name.as_deref(), Some("vllm"));
        assert!(config.identity.required);
    }
}
