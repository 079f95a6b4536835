//! Checks that need more than one key: listener safety, issuers, routes against connectors.

use crate::secrets::config::NO_VAULT_SECTION;
use std::collections::HashMap;

use super::locate::RouteKeys;
use super::{Config, DenyStyle};
use crate::config::url::secure_url;
use crate::identity::config::CERTIFICATE_ISSUER;
use crate::route::connector::{Connectors, validate_base_url};

/// Algorithms Warden accepts from OIDC issuers. HMAC is never accepted: an issuer's public
/// key must not double as a shared secret.
pub const ASYMMETRIC_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// Returns `(key, message)` for every mistake of a configuration whose routes all parsed.
pub fn validate(config: &Config) -> Vec<(String, String)> {
    validate_as_written(config, &RouteKeys::default())
}

/// Returns `(key, message)` for every mistake, naming each route (in keys and in references
/// from one route to another) by `routes`, where it stands in the file.
pub fn validate_as_written(config: &Config, routes: &RouteKeys) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    let mut err = |key: &str, message: String| errors.push((key.to_string(), message));
    for (key, message) in config.mcp.validate() {
        err(&key, message);
    }
    for (key, message) in crate::siem::config::validate(&config.siem) {
        err(&key, message);
    }
    for (key, cap) in config.listen.max_connections.each() {
        if cap == 0 {
            err(
                key,
                "must be at least 1: the listener accepts no connection beyond it".into(),
            );
        }
    }
    for listener in crate::listener::config::Listener::ALL {
        let (idle_timeout, streams) = config.listen.http_bounds(listener);
        let listener = listener.name();
        if idle_timeout < std::time::Duration::from_secs(1) {
            err(
                &format!("listen.idle_timeout.{listener}"),
                "must be at least 1s: a connection with no request in flight that long is closed"
                    .into(),
            );
        }
        if streams == 0 {
            err(
                &format!("listen.max_concurrent_streams.{listener}"),
                "must be at least 1: the streams one HTTP/2 connection may have open at once"
                    .into(),
            );
        }
    }
    let unauthenticated = &config.audit.unauthenticated;
    if unauthenticated.interval < std::time::Duration::from_secs(1) {
        err(
            "audit.unauthenticated.interval",
            "must be at least 1s: refusals beyond per_source are summed up once per interval"
                .into(),
        );
    }
    if unauthenticated.max_sources == 0 {
        err(
            "audit.unauthenticated.max_sources",
            "must be at least 1: the sources whose refusals are counted apart in one interval"
                .into(),
        );
    }
    for (key, prefix, bits) in [
        (
            "audit.unauthenticated.ipv6_prefix",
            unauthenticated.ipv6_prefix,
            128,
        ),
        (
            "audit.unauthenticated.ipv4_prefix",
            unauthenticated.ipv4_prefix,
            32,
        ),
    ] {
        if prefix > bits {
            err(
                key,
                format!("must be 0 to {bits}: the prefix length sources are counted by"),
            );
        }
    }
    let mut taken = vec![
        ("listen.proxy", config.listen.proxy),
        ("listen.admin", config.listen.admin),
    ];
    if config.console.oidc.is_some() {
        taken.push(("console.listen", config.console.listen));
    }
    for (key, message) in config.egress.validate(config.identity.required, &taken) {
        err(&key, message);
    }
    if let Err(e) = config.propose.validate() {
        err(&e.key(), e.to_string());
    }
    for (key, message) in config.rate_limits.validate() {
        err(&key, message);
    }
    for (key, message) in config.sessions.validate() {
        err(&key, message);
    }
    for (key, message) in config.budgets.validate() {
        err(&key, message);
    }
    for (key, message) in config.canaries.validate() {
        err(&key, message);
    }
    for (key, message) in crate::inspect::validate(&config.inspect) {
        err(&key, message);
    }
    for (key, message) in config.admin.validate(
        config.listen.admin,
        config.listen.admin_tls.is_some(),
        &config.identity,
    ) {
        err(&key, message);
    }
    for (key, message) in config.fleet.quarantine.validate() {
        err(&key, message);
    }
    for (key, message) in config.approvals.validate() {
        err(&key, message);
    }
    for (key, message) in config
        .console
        .validate(config.approvals.console_url.as_deref())
    {
        err(&key, message);
    }
    for (key, source) in config.console.secrets() {
        if matches!(source, crate::secrets::CredentialSource::Vault(_)) && config.vault.is_none() {
            err(&format!("console.{key}.vault"), NO_VAULT_SECTION.into());
        }
    }
    if config.console.oidc.is_some()
        && [config.listen.proxy, config.listen.admin].contains(&config.console.listen)
    {
        err(
            "console.listen",
            format!(
                "the console must not share the address {} of the proxy or admin listener",
                config.console.listen
            ),
        );
    }
    for (key, source) in config.approvals.secrets() {
        if matches!(source, crate::secrets::CredentialSource::Vault(_)) && config.vault.is_none() {
            err(&format!("approvals.{key}.vault"), NO_VAULT_SECTION.into());
        }
    }
    for (key, message) in config.vault.iter().flat_map(|v| v.validate()) {
        err(&key, message);
    }
    for (key, message) in config.traces.iter().flat_map(|t| t.validate()) {
        err(&key, message);
    }
    if let (Some(traces), None) = (&config.traces, &config.vault) {
        for (name, source) in &traces.headers {
            if let crate::telemetry::config::HeaderSource::Secret(
                crate::secrets::config::CredentialSource::Vault(_),
            ) = source
            {
                err(
                    &format!("traces.headers.{name}.vault"),
                    NO_VAULT_SECTION.into(),
                );
            }
        }
    }

    let listen = &config.listen;
    if listen.proxy == listen.admin {
        err(
            "listen.admin",
            format!(
                "the admin listener must not share the proxy's address {}",
                listen.proxy
            ),
        );
    }
    if !config.identity.required && !listen.proxy.ip().is_loopback() {
        err(
            "listen.proxy",
            format!(
                "refusing to listen on {} while agent authentication is off (identity.required: false): \
                 anyone who reaches this address could use your provider keys. Turn authentication on \
                 or listen on 127.0.0.1",
                listen.proxy
            ),
        );
    }

    let threads = config.runtime.worker_threads;
    if threads > super::WorkersConfig::MAX_WORKER_THREADS {
        err(
            "runtime.worker_threads",
            format!(
                "{threads} worker threads is more than the {} allowed; use 0 for one per CPU core",
                super::WorkersConfig::MAX_WORKER_THREADS
            ),
        );
    }

    if config.upstream.ca_only && config.upstream.ca_file.is_none() {
        err(
            "upstream.ca_only",
            "trusts only upstream.ca_file, which is not set: nothing would be trusted. Set \
             upstream.ca_file to the CA bundle (PEM) to trust, or remove ca_only"
                .into(),
        );
    }

    let id = &config.identity;
    if let Some(problem) = crate::identity::config::max_ttl_problem(id.warden_issuer.max_ttl) {
        err("identity.warden_issuer.max_ttl", problem);
    }
    if let Some(problem) = crate::identity::config::leeway_problem(id.leeway_seconds) {
        err("identity.leeway_seconds", problem);
    }
    for (key, problem) in crate::identity::config::previous_keys_problems(
        &id.warden_issuer,
        std::time::SystemTime::now(),
    ) {
        err(&key, problem);
    }
    if id.jwks_refresh_interval.is_zero() {
        err(
            "identity.jwks_refresh_interval",
            "must be longer than zero (e.g. 5m)".into(),
        );
    }
    if id.required && !id.warden_issuer.enabled && id.issuers.is_empty() {
        err(
            "identity",
            "agent authentication is required but no issuer is trusted: enable identity.warden_issuer \
             or add identity.issuers"
                .into(),
        );
    }
    let mut issuers: HashMap<&str, usize> = HashMap::new();
    for (i, iss) in id.issuers.iter().enumerate() {
        let key = format!("identity.issuers[{i}]");
        // What start-up requires too: https, or plain http to a loopback address only.
        let url = validate_base_url(&iss.issuer).and_then(|_| secure_url(&iss.issuer).map(drop));
        if iss.issuer == CERTIFICATE_ISSUER {
            err(&format!("{key}.issuer"), certificate_issuer());
        } else if let Err(m) = url {
            err(&format!("{key}.issuer"), m);
        }
        let first = *issuers.entry(iss.issuer.as_str()).or_insert(i);
        if first != i {
            err(
                &format!("{key}.issuer"),
                format!(
                    "{:?} is already trusted by identity.issuers[{first}]; list each issuer once",
                    iss.issuer
                ),
            );
        }
        if iss.audiences.is_empty() {
            err(
                &format!("{key}.audiences"),
                "list at least one accepted audience (the token's aud)".into(),
            );
        } else if iss.audiences.iter().all(|a| a.is_empty()) {
            err(
                &format!("{key}.audiences"),
                "every audience is empty: list at least one accepted audience (the token's aud), \
                 or tokens minted for any other service of this issuer would be accepted"
                    .into(),
            );
        }
        if iss.algorithms.is_empty() {
            err(
                &format!("{key}.algorithms"),
                "list at least one accepted algorithm".into(),
            );
        }
        for (j, alg) in iss.algorithms.iter().enumerate() {
            if !ASYMMETRIC_ALGORITHMS.contains(&alg.as_str()) {
                err(
                    &format!("{key}.algorithms[{j}]"),
                    format!(
                        "{alg:?} is not accepted; use one of {}",
                        ASYMMETRIC_ALGORITHMS.join(", ")
                    ),
                );
            }
        }
        if let Some(uri) = &iss.jwks_uri
            && let Err(m) = validate_base_url(uri).and_then(|_| secure_url(uri).map(drop))
        {
            err(&format!("{key}.jwks_uri"), m);
        }
    }
    if id.warden_issuer.issuer == CERTIFICATE_ISSUER {
        err("identity.warden_issuer.issuer", certificate_issuer());
    } else if id.warden_issuer.enabled
        && id
            .issuers
            .iter()
            .any(|i| i.issuer == id.warden_issuer.issuer)
    {
        err(
            "identity.warden_issuer.issuer",
            "must differ from every identity.issuers[].issuer".into(),
        );
    }

    for (key, message) in config.pins.validate() {
        err(&key, message);
    }

    if config.limits.max_request_bytes == 0 {
        err("limits.max_request_bytes", "must be greater than 0".into());
    }
    if config.limits.max_in_flight_per_agent == 0 {
        err(
            "limits.max_in_flight_per_agent",
            "must be at least 1: the requests one agent may have in flight at once (default 256)"
                .into(),
        );
    }
    let flush_interval = config.audit.flush_interval;
    if flush_interval.is_zero() || flush_interval > std::time::Duration::from_secs(1) {
        err(
            "audit.flush_interval",
            "must be more than 0 and at most 1s: a lost machine loses up to this much of the \
             log in process durability"
                .into(),
        );
    }
    let signing = &config.audit.signing;
    if signing.checkpoint_records == 0 {
        err(
            "audit.signing.checkpoint_records",
            "must be at least 1: a signed checkpoint after at most this many records".into(),
        );
    }
    let interval = signing.checkpoint_interval;
    if interval.is_zero() || interval > std::time::Duration::from_secs(3600) {
        err(
            "audit.signing.checkpoint_interval",
            "must be more than 0 and at most 1h: records written since the last checkpoint \
             are unsigned until the next one"
                .into(),
        );
    }
    if config.audit.segment_max_age.is_zero() {
        err(
            "audit.segment_max_age",
            "must be more than 0 (for example 24h): a segment this old is closed".into(),
        );
    }
    if let Some(crate::audit::replica::ReplicaIdSource::Name(name)) = &config.audit.replica_id
        && let Err(e) = crate::audit::replica::check(name)
    {
        let message = e.to_string();
        let message = message
            .strip_prefix("audit.replica_id: ")
            .unwrap_or(&message);
        err("audit.replica_id", message.to_owned());
    }
    let retention = &config.audit.retention;
    if let Some(max_bytes) = retention.max_bytes {
        let floor = config.audit.segment_bytes.saturating_mul(2);
        if max_bytes < floor {
            err(
                "audit.retention.max_bytes",
                format!(
                    "{max_bytes} is less than two segments (2 x audit.segment_bytes = {floor}): \
                     the segment being written is never deleted, so the bound could not be kept; \
                     raise it or lower audit.segment_bytes"
                ),
            );
        }
    }
    if retention
        .max_age
        .is_some_and(|age| age < config.audit.segment_max_age)
    {
        err(
            "audit.retention.max_age",
            "is shorter than audit.segment_max_age: a segment is deleted only once closed, so \
             records would outlive max_age; lower audit.segment_max_age or raise max_age"
                .into(),
        );
    }
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&config.log.level) {
        err(
            "log.level",
            format!("{:?} is not a valid filter: {e}", config.log.level),
        );
    } else if let Some(word) = bare_word_not_a_level(&config.log.level) {
        // The filter reads a bare word as a module to log at every level, so `warning` would
        // silence everything else.
        err(
            "log.level",
            format!(
                "{word:?} is not a level: write error, warn, info, debug, trace or off, or \
                 TARGET=LEVEL (e.g. info,warden::proxy=debug)"
            ),
        );
    }

    let connectors = match Connectors::load(config.connectors_dir.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            err("connectors_dir", e.to_string());
            return errors;
        }
    };
    let mut prefixes: HashMap<&str, usize> = HashMap::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, route) in config.routes.iter().enumerate() {
        let key = routes.key(i);
        let p = route.prefix.as_str();
        if !p.starts_with('/') || (p.len() > 1 && p.ends_with('/')) || p.contains("//") {
            err(
                &format!("{key}.prefix"),
                format!("{p:?} must start with / and not end with / (e.g. /openai)"),
            );
        }
        if let Some(first) = prefixes.insert(p, i) {
            err(
                &format!("{key}.prefix"),
                format!("{p:?} is already used by {}", routes.key(first)),
            );
        }
        let name = route
            .name
            .clone()
            .unwrap_or_else(|| route.connector.clone());
        if let Some(first) = names.insert(name.clone(), i) {
            err(
                &format!("{key}.name"),
                format!(
                    "route name {name:?} is already used by {}; give this route a name of its \
                     own (name: {name}-2): names tell routes apart in metrics, audit records and \
                     context.route",
                    routes.key(first)
                ),
            );
        }
        let Some(connector) = connectors.get(&route.connector) else {
            let known = connectors.names();
            err(
                &format!("{key}.connector"),
                format!(
                    "unknown connector {:?}{}; known: {}",
                    route.connector,
                    super::suggest::did_you_mean(&route.connector, known.iter().copied()),
                    known.join(", ")
                ),
            );
            continue;
        };
        if let Some(up) = &route.upstream
            && let Err(m) = validate_base_url(up)
        {
            err(&format!("{key}.upstream"), m);
        } else if let Some(m) =
            route.plaintext_credential(route.upstream.as_deref().unwrap_or(&connector.base_url))
        {
            let at = if route.upstream.is_some() {
                "upstream"
            } else {
                "credential"
            };
            err(&format!("{key}.{at}"), m);
        }
        if route.refusal_finish.is_some() && route.on_deny == DenyStyle::HttpError {
            err(
                &format!("{key}.refusal_finish"),
                "says how a completion refusal ends, but this route answers refusals with \
                 on_deny: http_error; remove refusal_finish or set on_deny: completion"
                    .into(),
            );
        }
        let placed = route
            .inject
            .as_ref()
            .is_some_and(|i| i.header.is_some() || i.query.is_some() || i.basic.is_some());
        if route.credential.is_some() && connector.credential.is_none() && !placed {
            err(
                &format!("{key}.credential"),
                format!(
                    "connector {:?} sends no credential; say where it goes (inject: {{ header: NAME }}, {{ query: NAME }} or {{ basic: ... }}), remove credential:, or use a connector that does",
                    route.connector
                ),
            );
        }
        if route.inject.is_some() && route.credential.is_none() {
            err(
                &format!("{key}.inject"),
                "says how a credential is sent, but the route has no credential: give its source (credential: { env: NAME }, { file: PATH } or { vault: ... })".into(),
            );
        }
        if let Some(crate::secrets::CredentialSource::Vault(_)) = &route.credential
            && config.vault.is_none()
        {
            err(&format!("{key}.credential.vault"), NO_VAULT_SECTION.into());
        }
    }
    let warden = &config.identity.warden_issuer;
    if warden.key.is_some() && warden.key_file.is_some() {
        err(
            "identity.warden_issuer.key",
            "give the signing key either as key (a secret source) or as key_file, not both".into(),
        );
    }
    if let Some(crate::secrets::CredentialSource::Vault(_)) = &warden.key
        && config.vault.is_none()
    {
        err("identity.warden_issuer.key.vault", NO_VAULT_SECTION.into());
    }
    if let Some(postgres) = &config.state.postgres {
        if config.state.sqlite.is_some() {
            err(
                "state.postgres",
                "the state is either in a SQLite file (state.sqlite) or in PostgreSQL \
                 (state.postgres), not both: remove one"
                    .into(),
            );
        }
        if matches!(postgres.url, crate::secrets::CredentialSource::Vault(_))
            && config.vault.is_none()
        {
            err("state.postgres.url.vault", NO_VAULT_SECTION.into());
        }
        if postgres.pool_size == 0 {
            err("state.postgres.pool_size", "must be at least 1".into());
        }
        if postgres.query_timeout < std::time::Duration::from_millis(100) {
            err(
                "state.postgres.query_timeout",
                "must be at least 100ms (e.g. 5s)".into(),
            );
        }
    }
    for (i, sink) in config.siem.sinks.iter().enumerate() {
        for (key, source) in sink.secrets() {
            if matches!(source, crate::secrets::CredentialSource::Vault(_))
                && config.vault.is_none()
            {
                err(
                    &format!("siem.sinks[{i}].{key}.vault"),
                    NO_VAULT_SECTION.into(),
                );
            }
        }
    }
    for (i, endpoint) in config.mcp.endpoints.iter().enumerate() {
        let key = format!("mcp.endpoints[{i}]");
        let prefix = endpoint.prefix();
        if let Some(first) = prefixes.get(prefix.as_str()) {
            err(
                &format!("{key}.prefix"),
                format!("{prefix:?} is already used by {}", routes.key(*first)),
            );
        }
        if let Some(first) = names.get(&endpoint.name) {
            err(
                &format!("{key}.name"),
                format!(
                    "route name {:?} is already used by {}",
                    endpoint.name,
                    routes.key(*first)
                ),
            );
        }
    }
    errors
}

/// The first comma-separated word of the `log.level` filter that is neither a level nor a
/// `TARGET=LEVEL` directive (nor a target path, `warden::proxy`, or a span filter).
/// Why a token issuer may not be the issuer of agents named by client certificates.
fn certificate_issuer() -> String {
    format!(
        "{CERTIFICATE_ISSUER:?} is the issuer of agents a client certificate names \
         (identity.client_certificate): a token issuer of that name would share their \
         {{principal.issuer}} in secret paths and policy; choose another (the default is \
         \"warden\")"
    )
}

fn bare_word_not_a_level(filter: &str) -> Option<&str> {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    filter.split(',').map(str::trim).find(|word| {
        !word.is_empty()
            && !word.contains(['=', '[', ':'])
            && !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(word))
    })
}

#[cfg(test)]
mod tests {
    use crate::config::load::parse;
    use std::path::Path;

    fn errors_of(yaml: &str) -> String {
        parse(yaml, Some(Path::new("warden.yaml")))
            .expect_err("config must be rejected")
            .to_string()
    }

    #[test]
    fn a_route_naming_a_connector_that_does_not_exist_is_told_the_nearest_one() {
        let text = errors_of("routes:\n  - { prefix: /o, connector: opnai }\n");
        assert!(
            text.contains(
                "warden.yaml:2: routes[0].connector: unknown connector \"opnai\" (did you mean \
                 `openai`?); known: "
            ),
            "{text}"
        );
        let text = errors_of("routes:\n  - { prefix: /o, connector: mistral }\n");
        assert!(
            text.contains("unknown connector \"mistral\"; known: ")
                && !text.contains("did you mean"),
            "{text}"
        );
    }

    #[test]
    fn a_second_route_of_one_connector_is_told_to_take_a_name_of_its_own() {
        let text = errors_of(
            "routes:\n  - { prefix: /a, connector: ollama }\n  - { prefix: /b, connector: ollama }\n",
        );
        assert!(
            text.contains(
                "routes[1].name: route name \"ollama\" is already used by routes[0]; give this \
                 route a name of its own (name: ollama-2)"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_log_level_that_is_not_one_is_refused() {
        for level in ["warning", "verbose", "info,warnig"] {
            let text = errors_of(&format!("log:\n  level: {level}\n"));
            assert!(
                text.contains("log.level") && text.contains("is not a level"),
                "{text}"
            );
        }
        for level in [
            "warn",
            "INFO",
            "info,warden::proxy=debug",
            "warden=trace",
            "off",
        ] {
            parse(&format!("log:\n  level: {level:?}\n"), None).expect(level);
        }
    }

    #[test]
    fn embedded_defaults_are_valid() {
        let config = parse("", None).expect("empty file means defaults");
        assert_eq!(config.listen.proxy.to_string(), "127.0.0.1:8080");
        assert_eq!(config.listen.admin.to_string(), "127.0.0.1:9090");
        assert_eq!(config.routes.len(), 4);
    }

    #[test]
    fn audit_retention_is_read_and_a_bound_it_could_not_keep_is_refused() {
        let config = parse(
            "audit:\n  retention:\n    max_age: 90d\n    max_bytes: 10737418240\n    when_full: delete_unshipped\n",
            None,
        )
        .unwrap();
        let retention = &config.audit.retention;
        assert_eq!(
            retention.max_age,
            Some(std::time::Duration::from_secs(90 * 86400))
        );
        assert_eq!(retention.max_bytes, Some(10 << 30));
        assert_eq!(
            retention.when_full,
            crate::audit::config::WhenFull::DeleteUnshipped
        );
        let text = errors_of(
            "audit:\n  segment_bytes: 1048576\n  retention:\n    max_bytes: 1048576\n    max_age: 1h\n",
        );
        assert!(
            text.contains("audit.retention.max_bytes: 1048576 is less than two segments"),
            "{text}"
        );
        assert!(
            text.contains("audit.retention.max_age: is shorter than audit.segment_max_age"),
            "{text}"
        );
        let text = errors_of("audit:\n  retention:\n    when_full: drop\n");
        assert!(
            text.contains("warden.yaml:3: audit.retention.when_full"),
            "{text}"
        );
    }

    #[test]
    fn refuses_a_route_that_sends_its_credential_over_plain_http_off_loopback() {
        let route = |extra: &str| {
            format!(
                "routes:\n  - prefix: /llm\n    connector: openai-compatible\n    upstream: http://llm.internal:8000/v1\n    credential: {{ env: LLM_KEY }}\n{extra}"
            )
        };
        let text = errors_of(&route(""));
        assert!(
            text.contains(
                "warden.yaml:4: routes[0].upstream: \"http://llm.internal:8000/v1\" is plain http"
            ),
            "{text}"
        );
        parse(&route("    allow_plaintext: true\n"), None).expect("the operator opted in");
        let keyless = "routes:\n  - prefix: /llm\n    connector: openai-compatible\n    upstream: http://llm.internal:8000/v1\n";
        parse(keyless, None).expect("no credential crosses the network");
    }

    #[test]
    fn refuses_a_plain_http_vault_address_off_loopback() {
        let text = errors_of(
            "vault:\n  address: http://vault.internal:8200\n  auth:\n    method: token\n    token: { env: VAULT_TOKEN }\n",
        );
        assert!(
            text.contains(
                "warden.yaml:2: vault.address: \"http://vault.internal:8200\" must use https"
            ),
            "{text}"
        );
        parse(
            "vault:\n  address: http://127.0.0.1:8200\n  auth:\n    method: token\n    token: { env: VAULT_TOKEN }\n",
            None,
        )
        .expect("plain http to loopback stays allowed");
    }

    #[test]
    fn refuses_non_loopback_listener_without_authentication() {
        let text = errors_of("listen:\n  proxy: 0.0.0.0:8080\nidentity:\n  required: false\n");
        assert!(
            text.contains("warden.yaml:2: listen.proxy: refusing to listen on 0.0.0.0:8080"),
            "{text}"
        );
    }

    #[test]
    fn reports_every_mistake_with_file_line_and_key() {
        let yaml = "\
listen:
  proxy: not-an-address
identity:
  issuers:
    - issuer: https://idp.example.com
      audiences: []
      algorithms: [HS256]
routes:
  - prefix: /a
    connector: openai
  - prefix: b
    connector: nope
  - prefix: /c
    connector: ollama
    bogus: 1
colour: blue
";
        let text = errors_of(yaml);
        for expected in [
            "warden.yaml:2: listen.proxy:",
            "warden.yaml:6: identity.issuers[0].audiences: list at least one",
            "warden.yaml:7: identity.issuers[0].algorithms[0]: \"HS256\" is not accepted",
            "warden.yaml:11: routes[1].prefix:",
            "warden.yaml:12: routes[1].connector: unknown connector \"nope\"",
            "warden.yaml:15: routes[2].bogus: unknown field `bogus`",
            "warden.yaml:16: colour: unknown section",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
    }

    #[test]
    fn worker_threads_default_to_the_cores_and_are_bounded() {
        assert_eq!(parse("", None).unwrap().runtime.worker_threads, 0);
        let one = parse("runtime:\n  worker_threads: 1\n", None).unwrap();
        assert_eq!(one.runtime.worker_threads, 1);
        let text = errors_of("log:\n  level: info\nruntime:\n  worker_threads: 5000\n");
        assert!(
            text.contains("warden.yaml:4: runtime.worker_threads: 5000 worker threads"),
            "{text}"
        );
        let text = errors_of("runtime:\n  workers: 2\n");
        assert!(
            text.contains("warden.yaml:2: runtime.workers: unknown field"),
            "{text}"
        );
    }

    #[test]
    fn audit_durability_and_flush_interval_are_read_and_bounded_and_removed_keys_refused() {
        use crate::audit::config::Durability;
        let process = parse(
            "audit:\n  durability: process\n  flush_interval: 5ms\n",
            None,
        )
        .unwrap();
        assert_eq!(process.audit.durability, Durability::Process);
        assert_eq!(
            process.audit.flush_interval,
            std::time::Duration::from_millis(5)
        );
        assert_eq!(parse("", None).unwrap().audit.durability, Durability::Disk);
        let text = errors_of("audit:\n  flush_interval: 0s\n");
        assert!(
            text.contains("warden.yaml:2: audit.flush_interval: must be more than 0"),
            "{text}"
        );
        for removed in ["fsync: true", "direct_io: true", "max_commit_delay: 1ms"] {
            let key = removed.split(':').next().unwrap_or_default();
            let text = errors_of(&format!("audit:\n  {removed}\n"));
            assert!(
                text.contains(&format!("warden.yaml:2: audit.{key}: unknown field")),
                "{text}"
            );
        }
    }

    #[test]
    fn ca_only_without_ca_file_is_located_at_ca_only() {
        let text = errors_of("upstream:\n  connect_timeout: 5s\n  ca_only: true\n");
        assert!(
            text.contains(
                "warden.yaml:3: upstream.ca_only: trusts only upstream.ca_file, which is not set"
            ),
            "{text}"
        );
        let with_file = "upstream:\n  ca_only: true\n  ca_file: /etc/ca.pem\n";
        assert!(parse(with_file, None).is_ok());
    }

    #[test]
    fn zero_jwks_refresh_interval_is_located() {
        let text = errors_of("identity:\n  jwks_refresh_interval: 0s\n");
        assert!(
            text.contains(
                "warden.yaml:2: identity.jwks_refresh_interval: must be longer than zero"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_token_lifetime_or_leeway_past_what_revocations_are_kept_for_is_located() {
        let text = errors_of("identity:\n  warden_issuer:\n    max_ttl: 400d\n");
        assert!(
            text.contains("warden.yaml:3: identity.warden_issuer.max_ttl: must be at most 365d"),
            "{text}"
        );
        let text = errors_of("identity:\n  leeway_seconds: 301\n");
        assert!(
            text.contains("warden.yaml:2: identity.leeway_seconds: 301 is more clock skew"),
            "{text}"
        );
        assert!(parse("identity:\n  warden_issuer:\n    max_ttl: 365d\n", None).is_ok());
    }

    #[test]
    fn an_issuer_listed_twice_is_located_at_the_second_entry() {
        let yaml = "\
identity:
  issuers:
    - issuer: https://idp.example.com
      audiences: [warden]
    - issuer: https://other.example.com
      audiences: [warden]
    - issuer: https://idp.example.com
      audiences: [warden]
";
        let text = errors_of(yaml);
        assert!(
            text.contains(
                "warden.yaml:7: identity.issuers[2].issuer: \"https://idp.example.com\" is already \
                 trusted by identity.issuers[0]"
            ),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1, "{text}");
    }

    /// Client-certificate agents have issuer `mtls`: a token issuer of that name would share
    /// their `{principal.issuer}` segment of secret paths.
    #[test]
    fn no_token_issuer_may_be_the_client_certificate_issuer() {
        let yaml = "\
identity:
  warden_issuer:
    enabled: true
    issuer: mtls
  issuers:
    - issuer: mtls
      audiences: [warden]
";
        let text = errors_of(yaml);
        for at in [
            "warden.yaml:4: identity.warden_issuer.issuer: \"mtls\" is the issuer of agents a \
             client certificate names",
            "warden.yaml:6: identity.issuers[0].issuer: \"mtls\" is the issuer of agents a \
             client certificate names",
        ] {
            assert!(text.contains(at), "{text}");
        }
        assert_eq!(text.lines().count(), 2, "{text}");
        let other = "identity:\n  warden_issuer:\n    enabled: true\n    issuer: mtls-ca\n";
        if let Err(e) = parse(other, None) {
            assert!(!e.to_string().contains("client certificate names"), "{e}");
        }
    }

    #[test]
    fn issuer_and_jwks_uri_need_https_except_on_loopback() {
        let yaml = "\
identity:
  issuers:
    - issuer: http://idp.example.com
      audiences: [warden]
    - issuer: https://idp2.example.com
      audiences: [warden]
      jwks_uri: http://keys.example.com/jwks
";
        let text = errors_of(yaml);
        assert!(
            text.contains("warden.yaml:3: identity.issuers[0].issuer: \"http://idp.example.com\" must use https"),
            "{text}"
        );
        assert!(
            text.contains("warden.yaml:7: identity.issuers[1].jwks_uri: \"http://keys.example.com/jwks\" must use https"),
            "{text}"
        );
        let loopback = "identity:\n  issuers:\n    - { issuer: 'http://127.0.0.1:8081', audiences: [warden], jwks_uri: 'http://localhost:8081/jwks' }\n";
        assert!(parse(loopback, None).is_ok());
    }

    #[test]
    fn audiences_that_are_all_empty_are_refused() {
        let text = errors_of(
            "identity:\n  issuers:\n    - issuer: https://idp.example.com\n      audiences: [\"\"]\n",
        );
        assert!(
            text.contains("warden.yaml:4: identity.issuers[0].audiences: every audience is empty"),
            "{text}"
        );
    }

    #[test]
    fn refusal_finish_is_a_known_value_and_only_where_refusals_are_completions() {
        let ok =
            "routes:\n  - prefix: /a\n    connector: openai\n    refusal_finish: content_filter\n";
        let config = parse(ok, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            config.routes[0].refusal_finish,
            Some(crate::protocol::RefusalFinish::ContentFilter)
        );
        let text = errors_of(
            "routes:\n  - prefix: /a\n    connector: openai\n    refusal_finish: filtered\n",
        );
        assert!(
            text.contains("warden.yaml:4: routes[0].refusal_finish: unknown variant `filtered`"),
            "{text}"
        );
        let text = errors_of(
            "routes:\n  - prefix: /a\n    connector: openai\n    on_deny: http_error\n    refusal_finish: stop\n",
        );
        assert!(
            text.contains(
                "warden.yaml:5: routes[0].refusal_finish: says how a completion refusal ends"
            ),
            "{text}"
        );
    }

    #[test]
    fn yaml_syntax_error_names_the_line() {
        let text = errors_of("listen:\n  proxy: [unclosed\n");
        assert!(text.starts_with("warden.yaml:"), "{text}");
        assert!(text.contains("invalid YAML"), "{text}");
    }
}

#[cfg(test)]
mod previous_keys_tests {
    use crate::config::load::parse;
    use std::path::{Path, PathBuf};
    use std::time::{Duration, UNIX_EPOCH};

    /// A retired key is written as its path, as before, or with the time its signatures stop
    /// being accepted; both sections read both forms.
    #[test]
    fn previous_keys_read_a_path_or_a_path_with_until() {
        let yaml = "identity:\n  warden_issuer:\n    previous_keys:\n      - old.pem\n      - { path: older.pem, until: 2026-01-02T03:04:05Z }\naudit:\n  signing:\n    previous_keys: [{ path: a.pem, until: 2026-01-02T03:04:05Z }, b.pem]\n";
        let config = parse(yaml, Some(Path::new("warden.yaml"))).unwrap();
        let until = UNIX_EPOCH + Duration::from_secs(1_767_323_045);
        let token = &config.identity.warden_issuer.previous_keys;
        assert_eq!(token[0].path, PathBuf::from("old.pem"));
        assert_eq!(token[0].until, None);
        assert_eq!(token[1].path, PathBuf::from("older.pem"));
        assert_eq!(token[1].until, Some(until));
        let audit = &config.audit.signing.previous_keys;
        assert_eq!(audit[0].until, Some(until));
        assert_eq!(audit[1].path, PathBuf::from("b.pem"));
    }

    #[test]
    fn a_retired_keys_until_that_is_not_a_time_or_too_far_is_refused_with_its_key() {
        let bad =
            "identity:\n  warden_issuer:\n    previous_keys: [{ path: a.pem, until: tomorrow }]\n";
        let text = parse(bad, Some(Path::new("warden.yaml")))
            .expect_err("refused")
            .to_string();
        assert!(
            text.contains("previous_keys") && text.contains("RFC 3339"),
            "{text}"
        );
        let far = "identity:\n  warden_issuer:\n    max_ttl: 1d\n    previous_keys: [{ path: a.pem, until: 2999-01-01T00:00:00Z }]\n";
        let text = parse(far, Some(Path::new("warden.yaml")))
            .expect_err("refused")
            .to_string();
        assert!(
            text.contains("identity.warden_issuer.previous_keys[0].until")
                && text.contains("max_ttl"),
            "{text}"
        );
    }
}
