//! Inspect: content checks on what a request sends out, before policy judges it. What they find
//! becomes `context.findings` (the detectors that matched) for Cedar and is recorded with the
//! decision (detector and location, never the content).
//!
//! Findings come from interpretation (identifiers that imitate others) and from the content
//! detectors here: `private_key`, a PEM private key block anywhere in the body
//! (`-----BEGIN … PRIVATE KEY-----`), which no agent has reason to send to a model, and the
//! credential and payment detectors of [`secrets`] (cloud and SaaS keys, JWTs, card numbers,
//! IBANs), the personal-data detectors of [`personal`] (e-mail addresses, telephone numbers)
//! and the generic secret detector of [`entropy`], all found in one pass ([`scan`]). Which run
//! is `inspect:` ([`config`]).
//!
//! What comes back matters too: [`tool_description`] looks for hidden instructions in the tool
//! definitions an MCP server offers ("tool poisoning"), and [`server_content`] reads with the
//! same detectors (and the content detectors) what a server answers to a `prompts/get` or a
//! `resources/read`.

pub mod config;
pub mod decoded;
mod detector;
mod entropy;
mod personal;
pub mod redact;
mod scan;
pub mod secrets;
pub mod server_content;
pub mod stream;
pub mod tool_description;

pub use config::InspectConfig;

use std::sync::{Arc, LazyLock};

use memchr::memmem::Finder;

use crate::action::{Finding, Findings};

/// The opening of a PEM block.
const PEM_BEGIN: &[u8] = b"-----BEGIN ";
/// How a private key block's label ends (`RSA PRIVATE KEY`, `OPENSSH PRIVATE KEY`,
/// `ENCRYPTED PRIVATE KEY`, `PGP PRIVATE KEY BLOCK`).
const PRIVATE_KEY: &[u8] = b"PRIVATE KEY";
/// Longest PEM label looked at after `-----BEGIN `.
const LABEL_MAX: usize = 40;

/// Searchers for the fixed needles of a PEM block, built once (`memmem::find` builds one per
/// call, on every request body).
static FIND_PEM_BEGIN: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(PEM_BEGIN));
static FIND_PEM_END: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"-----END "));
static FIND_DASHES: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"-----"));
static FIND_PRIVATE_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(PRIVATE_KEY));

/// The detector of PEM private key blocks.
const PRIVATE_KEY_DETECTOR: &str = "private_key";

/// Every content detector's name, as policies test it in `context.findings`.
pub static DETECTOR_NAMES: std::sync::LazyLock<Vec<&'static str>> =
    std::sync::LazyLock::new(|| {
        std::iter::once(PRIVATE_KEY_DETECTOR)
            .chain(scan::names())
            .collect()
    });

/// `warden_dlp_findings_total{detector,channel,outcome}`: findings in outgoing requests by what
/// became of the request (`allowed`, `denied`, `held`, `redacted`).
pub static FINDINGS: std::sync::LazyLock<prometheus::IntCounterVec> = std::sync::LazyLock::new(
    || {
        prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "warden_dlp_findings_total",
                "Findings in outgoing requests by detector, channel (llm, mcp, rest, egress) and outcome: allowed, denied, held, redacted",
            ),
            &["detector", "channel", "outcome"],
        )
        .expect("static metric definition")
    },
);

/// `(key, message)` for every mistake in `config`.
pub fn validate(config: &InspectConfig) -> Vec<(String, String)> {
    config.validate(&DETECTOR_NAMES)
}

/// Adds to `findings` (what interpretation reported) what the content of `body` shows, with
/// the detectors `config` enables; `multipart`: the boundary of a multipart body
/// ([`decoded::multipart::boundary`] of its `Content-Type`).
pub fn inspect(
    findings: &mut Findings,
    body: &[u8],
    multipart: Option<&[u8]>,
    config: &InspectConfig,
) {
    inspect_body(findings, body, multipart, config);
}

/// [`inspect`], read also as the receiver decodes the body ([`decoded`]: JSON string escapes,
/// form encoding, base64 `data:` URIs of text, multipart parts in quoted-printable or base64):
/// a detector found only in the decoded text is a finding located at the string, pair, URI or
/// part it came from. The decoded text, when there is one, is returned for the canary search.
pub fn inspect_body(
    findings: &mut Findings,
    body: &[u8],
    multipart: Option<&[u8]>,
    config: &InspectConfig,
) -> Option<decoded::Decoded> {
    inspect_in(findings, body, &"body", config);
    let decoded = decoded::decoded(body, multipart)?;
    for (detector, at) in found(&decoded.text, config) {
        let known = findings
            .0
            .iter()
            .any(|f| *f.detector == *detector && f.location.starts_with("body"));
        if !known {
            let (from, how) = decoded.origin(at);
            findings.0.push(Finding {
                detector: Arc::from(detector),
                location: format!("body, byte {from}, in {how}"),
            });
        }
    }
    Some(decoded)
}

/// What records keep instead of a path a detector found a secret in.
pub const WITHHELD_PATH: &str = "(withheld: a detector found a secret in the url)";

/// Where [`inspect_head`] locates what it finds in the request's target.
const URL: &str = "url";
/// What [`inspect_head`] locates a header's finding with, before its name.
const HEADER: &str = "header ";

/// Headers not inspected on a request to the egress proxy itself: `Proxy-Authorization`
/// carries the agent's Warden token, Warden reads it and it never leaves. Everything else is
/// inspected, `Authorization` and `Cookie` included: they reach the destination as the agent
/// wrote them, so a secret or a canary could leave in them. In a tunnel (plain HTTP, or read
/// out of intercepted TLS) `Proxy-Authorization` is the agent's content like any other header.
pub const EGRESS_UNINSPECTED: [http::HeaderName; 1] = [http::header::PROXY_AUTHORIZATION];

/// Adds to `findings` what the content of a request's head shows: its target (path and
/// query, percent-decoded; location `url`) and its header values (`header <name>`), but those
/// of the headers named in `uninspected` (the caller's credentials, which it says where they
/// go: [`EGRESS_UNINSPECTED`] on a request to the egress proxy, or for a REST route the
/// headers Warden strips).
pub fn inspect_head(
    findings: &mut Findings,
    uri: &http::Uri,
    headers: &http::HeaderMap,
    uninspected: &[http::HeaderName],
    config: &InspectConfig,
) {
    inspect_url(findings, uri, config);
    let inspected = || {
        headers
            .iter()
            .filter(|(name, _)| !uninspected.contains(name))
    };
    // One pass over every value says whether any could hold a finding (most heads hold none):
    // only then is each value read on its own, to say where.
    let mut values = Vec::with_capacity(512);
    for (_, value) in inspected() {
        values.extend_from_slice(value.as_bytes());
        values.push(b'\n');
    }
    if !may_match(&values) {
        return;
    }
    for (name, value) in inspected() {
        let telemetry = is_telemetry(name);
        for (detector, at) in found(value.as_bytes(), config) {
            // The identifiers of these headers match shape-only detectors by chance: a 32-hex
            // Sentry public key in `baggage`, a Luhn-valid digit run in `traceparent`.
            if telemetry && scan::by_shape(detector) {
                continue;
            }
            findings.0.push(Finding {
                detector: Arc::from(detector),
                location: format!("{HEADER}{name}, byte {at}"),
            });
        }
    }
}

/// The headers in which [`inspect_head`] found a credential (a finding of any detector but
/// the personal-data ones), by name, each once, in the order found.
pub fn credential_headers(findings: &Findings) -> Vec<&str> {
    let mut names = Vec::new();
    for finding in &findings.0 {
        if let Some(rest) = finding.location.strip_prefix(HEADER)
            && let Some((name, _)) = rest.split_once(", byte ")
            && !personal::is_personal(&finding.detector)
            && !names.contains(&name)
        {
            names.push(name);
        }
    }
    names
}

/// Whether `name` is a header of tracing or of an SDK's own (trace context, baggage, Sentry,
/// the OpenAI/Anthropic/Google SDKs' version and retry headers, the user agent): the detectors
/// that match by shape alone (each declares it: `detector::Evidence`) are not run on it, every
/// other detector and the canary search are.
fn is_telemetry(name: &http::HeaderName) -> bool {
    const NAMES: [&str; 10] = [
        "traceparent",
        "tracestate",
        "baggage",
        "sentry-trace",
        "user-agent",
        "x-goog-api-client",
        "anthropic-version",
        "anthropic-beta",
        "openai-beta",
        "idempotency-key",
    ];
    let name = name.as_str();
    NAMES.contains(&name) || name.starts_with("x-stainless-")
}

/// Adds to `findings` what a request's target shows (path and query, percent-decoded;
/// location `url`).
pub fn inspect_url(findings: &mut Findings, uri: &http::Uri, config: &InspectConfig) {
    if let Some(target) = uri.path_and_query() {
        inspect_in(findings, &decoded_target(target), &URL, config);
    }
}

/// Adds to `findings` what `uri` (a request's target as it goes on, when it differs from the
/// one [`inspect_head`] read) shows of detectors not found in the url already.
pub fn inspect_url_also(findings: &mut Findings, uri: &http::Uri, config: &InspectConfig) {
    let mut more = Findings::none();
    inspect_url(&mut more, uri, config);
    for finding in more.0 {
        let known = findings
            .0
            .iter()
            .any(|f| f.detector == finding.detector && in_url(&f.location));
        if !known {
            findings.0.push(finding);
        }
    }
}

/// Where [`inspect_host`] locates what it finds in the host a `CONNECT` names.
pub const CONNECT_TARGET: &str = "CONNECT target";
/// Where [`inspect_host`] locates what it finds in the host of an absolute-form `http://`
/// URL.
pub const URL_HOST: &str = "url host";

/// Adds to `findings` what the host name a tunnel or a plain-HTTP request is asked for shows,
/// read without regard to case (a DNS name has none: a key written in lower case reaches a
/// resolver as the key), each detector once; located `location` ([`CONNECT_TARGET`],
/// [`URL_HOST`]).
pub fn inspect_host(
    findings: &mut Findings,
    host: &str,
    location: &'static str,
    config: &InspectConfig,
) {
    let mut found_here = Findings::none();
    inspect_in(&mut found_here, host.as_bytes(), &location, config);
    inspect_in(
        &mut found_here,
        host.to_ascii_uppercase().as_bytes(),
        &location,
        config,
    );
    for finding in found_here.0 {
        if !findings.0.iter().any(|f| f.detector == finding.detector) {
            findings.0.push(finding);
        }
    }
}

/// A request's path and query, percent-decoded, as detectors and canaries read them.
pub fn decoded_target(target: &http::uri::PathAndQuery) -> Vec<u8> {
    percent_encoding::percent_decode(target.as_str().as_bytes()).collect()
}

/// Whether a detector found something in the request's url (its path or query): then its
/// path is not recorded ([`WITHHELD_PATH`]).
pub fn found_in_url(findings: &Findings) -> bool {
    findings.0.iter().any(|f| in_url(&f.location))
}

/// Whether a detector found something in the host the request names (a `CONNECT`'s, or an
/// absolute-form URL's), which a DNS query for the name would carry out.
pub fn found_in_host(findings: &Findings) -> bool {
    findings.0.iter().any(|f| in_host(&f.location))
}

/// Whether a finding's `location` is outside the body (an egress request's host, url or a
/// header), where a redaction does not reach.
pub fn outside_body(location: &str) -> bool {
    in_url(location) || location.starts_with(HEADER) || in_host(location)
}

/// Whether a finding's `location` is the host a request names, as [`inspect_host`] locates
/// it.
fn in_host(location: &str) -> bool {
    [CONNECT_TARGET, URL_HOST].iter().any(|at| {
        location
            .strip_prefix(at)
            .is_some_and(|rest| rest.starts_with(','))
    })
}

/// Whether `location` is in the request's url, as [`inspect_head`] locates it.
fn in_url(location: &str) -> bool {
    location
        .strip_prefix(URL)
        .is_some_and(|rest| rest.starts_with(','))
}

/// [`inspect`] of `bytes` found in `place` of the request (`body`, `url`, `header x-name`),
/// each finding located there (`place` is written only for a finding).
fn inspect_in(
    findings: &mut Findings,
    bytes: &[u8],
    place: &dyn std::fmt::Display,
    config: &InspectConfig,
) {
    for (detector, at) in found(bytes, config) {
        findings.0.push(Finding {
            detector: Arc::from(detector),
            location: format!("{place}, byte {at}"),
        });
    }
}

/// Whether any content detector could match `bytes`: `false` means none does (enabled or
/// not); `true` only that one may, which [`found`] then says.
fn may_match(bytes: &[u8]) -> bool {
    private_key(bytes).is_some() || scan::may_match(bytes)
}

/// Each enabled content detector that matches `bytes`, with the byte its match starts at.
fn found(bytes: &[u8], config: &InspectConfig) -> Vec<(&'static str, usize)> {
    let key = config
        .enabled(PRIVATE_KEY_DETECTOR)
        .then(|| private_key(bytes))
        .flatten()
        .map(|at| (PRIVATE_KEY_DETECTOR, at));
    key.into_iter().chain(scan::find(bytes, config)).collect()
}

/// Every match in `text` of the credential detectors (the key, token and payment formats of
/// [`secrets`] and the generic secret of [`entropy`], not the personal-data ones), each
/// enabled whatever `inspect:` says: what Warden must not keep of a text it records, a
/// resource URI it pins say.
pub fn credential_spans(text: &[u8]) -> Vec<std::ops::Range<usize>> {
    static ALL: std::sync::LazyLock<InspectConfig> =
        std::sync::LazyLock::new(InspectConfig::default);
    if !scan::may_match(text) {
        return Vec::new();
    }
    scan::all_spans(text, &ALL, &|name| !personal::is_personal(name))
        .into_iter()
        .map(|(_, span)| span)
        .collect()
}

/// `text` (a message that quotes what a refused request said: its path, a tool's name) with
/// every match of an enabled content detector replaced by `[redacted: <detector>]`; `Err` with
/// the detector when only the text percent-decoded (`+` as a space) shows a match, so that
/// nothing of it can be kept.
pub fn scrubbed<'t>(
    text: &'t str,
    config: &InspectConfig,
) -> Result<std::borrow::Cow<'t, str>, &'static str> {
    let bytes = text.as_bytes();
    let mut spans = scan::all_spans(bytes, config, &|_| true);
    if config.enabled(PRIVATE_KEY_DETECTOR) {
        spans.extend(
            private_keys(bytes)
                .into_iter()
                .map(|span| (PRIVATE_KEY_DETECTOR, span)),
        );
    }
    let out = if spans.is_empty() {
        std::borrow::Cow::Borrowed(text)
    } else {
        spans.sort_by_key(|(_, span)| (span.start, std::cmp::Reverse(span.end)));
        let mut out = Vec::with_capacity(bytes.len());
        let mut at = 0;
        for (detector, span) in spans {
            if span.start < at {
                continue;
            }
            out.extend_from_slice(&bytes[at..span.start]);
            out.extend_from_slice(format!("[redacted: {detector}]").as_bytes());
            at = span.end;
        }
        out.extend_from_slice(&bytes[at..]);
        std::borrow::Cow::Owned(String::from_utf8_lossy(&out).into_owned())
    };
    let decoded = decoded::form_decoded(out.as_bytes());
    if decoded != out.as_bytes()
        && let Some((detector, _)) = found(&decoded, config).first()
    {
        return Err(detector);
    }
    Ok(out)
}

/// Most bytes a PEM private key block spans (an RSA 16384-bit key is about 13 KB).
const PEM_MAX: usize = 32 * 1024;

/// Every PEM private key block in `body`: from `-----BEGIN` to the end of its `-----END …
/// PRIVATE KEY-----` line, or to the end of the body (of [`PEM_MAX`] bytes) when it has none.
fn private_keys(body: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut blocks = Vec::new();
    let mut from = 0;
    while let Some(at) = private_key(&body[from..]).map(|at| from + at) {
        let window = &body[at..body.len().min(at + PEM_MAX)];
        let end = FIND_PEM_END
            .find(window)
            .and_then(|end| {
                let label_end = FIND_DASHES.find(&window[end + 9..])?;
                Some(end + 9 + label_end + 5)
            })
            .unwrap_or(window.len());
        blocks.push(at..at + end);
        from = at + end.max(1);
    }
    blocks
}

/// Where the first PEM private key block starts in `body`, if there is one.
fn private_key(body: &[u8]) -> Option<usize> {
    FIND_PEM_BEGIN.find_iter(body).find(|&at| {
        let label = &body[at + PEM_BEGIN.len()..];
        let label = &label[..label.len().min(LABEL_MAX)];
        let end = FIND_DASHES.find(label).unwrap_or(label.len());
        FIND_PRIVATE_KEY.find(&label[..end]).is_some()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(body: &str) -> Vec<String> {
        found_in(body, None)
    }

    /// What [`inspect`] finds in `body`, multipart with the boundary `multipart`.
    fn found_in(body: &str, multipart: Option<&[u8]>) -> Vec<String> {
        let mut findings = Findings::none();
        inspect(
            &mut findings,
            body.as_bytes(),
            multipart,
            &InspectConfig::default(),
        );
        findings
            .0
            .iter()
            .map(|f| format!("{} at {}", f.detector, f.location))
            .collect()
    }

    #[test]
    fn a_misspelt_detector_is_told_the_nearest_one() {
        let config = InspectConfig {
            disabled: vec!["privte_key".into(), "nothing-like-it".into()],
            ..InspectConfig::default()
        };
        let errors = validate(&config);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[0].0, "inspect.disabled[0]");
        assert!(
            errors[0].1.starts_with(
                "\"privte_key\" is not a detector (did you mean `private_key`?); expected one of: "
            ),
            "{errors:?}"
        );
        assert!(!errors[1].1.contains("did you mean"), "{errors:?}");
    }

    #[test]
    fn each_detector_declares_whether_it_matches_by_shape_alone() {
        let shape: Vec<&str> = DETECTOR_NAMES
            .iter()
            .copied()
            .filter(|d| scan::by_shape(d))
            .collect();
        assert_eq!(
            shape,
            [
                "payment_card",
                "iban",
                "email",
                "phone",
                "high_entropy_secret"
            ]
        );
        assert!(!scan::by_shape(PRIVATE_KEY_DETECTOR));
        assert!(!scan::by_shape("no_such_detector"));
    }

    #[test]
    fn tracing_and_sdk_headers_are_spared_the_shape_only_detectors_only() {
        let mut headers = http::HeaderMap::new();
        // A Sentry public key (32 hex) in baggage, a Luhn-valid run ending a trace id.
        // (Written in pieces: this file is itself a sample that must find nothing.)
        let key = ["49d0f7386ad6", "45858ae85020e393bef3"].concat();
        let card = ["4111", "1111", "1111", "1111"].concat();
        let baggage =
            format!("sentry-trace_id=771a43a4192642f0b136d5159a501700,sentry-public_key={key}");
        headers.insert("baggage", baggage.parse().unwrap());
        let trace = format!("00-abcdefabcdefabcd{card}-b7ad6b7169203331-01");
        headers.insert("traceparent", trace.parse().unwrap());
        headers.insert("x-stainless-retry-count", "0".parse().unwrap());
        let config = InspectConfig::default();
        for name in ["baggage", "traceparent"] {
            let value = headers[name].as_bytes();
            assert!(
                !super::found(value, &config).is_empty(),
                "{name} matches by shape"
            );
        }
        let mut findings = Findings::none();
        let uri: http::Uri = "/v1/chat/completions".parse().unwrap();
        inspect_head(&mut findings, &uri, &headers, &[], &config);
        assert!(findings.0.is_empty(), "{:?}", findings.0);
        // A credential's own shape is still found there, and anywhere in another header.
        let aws = ["AKIA", "IOSFODNN7EXAMPLE"].concat();
        headers.insert("baggage", format!("k={aws}").parse().unwrap());
        headers.insert("x-note", card.parse().unwrap());
        inspect_head(&mut findings, &uri, &headers, &[], &config);
        let detectors: Vec<&str> = findings.0.iter().map(|f| &*f.detector).collect();
        assert!(detectors.contains(&"aws_access_key"), "{detectors:?}");
        assert!(detectors.contains(&"payment_card"), "{detectors:?}");
    }

    #[test]
    fn the_headers_holding_a_credential_are_named_once_and_personal_data_is_not_one() {
        let mut headers = http::HeaderMap::new();
        // (Written in pieces: this file is itself a sample that must find nothing.)
        let aws = ["AKIA", "IOSFODNN7EXAMPLE"].concat();
        headers.insert("x-vendor-key", format!("{aws} {aws}").parse().unwrap());
        let mail = ["ops", "@corp-mail.io"].concat();
        headers.insert("x-contact", mail.parse().unwrap());
        headers.insert("x-plain", "hello".parse().unwrap());
        let mut findings = Findings::none();
        let uri: http::Uri = format!("/p?k={aws}").parse().unwrap();
        inspect_head(
            &mut findings,
            &uri,
            &headers,
            &[],
            &InspectConfig::default(),
        );
        let detectors: Vec<&str> = findings.0.iter().map(|f| &*f.detector).collect();
        assert!(detectors.contains(&"email"), "{detectors:?}");
        // The url's finding is no header's.
        assert_eq!(credential_headers(&findings), ["x-vendor-key"]);
    }

    #[test]
    fn a_private_key_in_a_prompt_is_found_where_it_starts() {
        let body = r#"{"messages":[{"role":"user","content":"deploy with -----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn...\n-----END OPENSSH PRIVATE KEY-----"}]}"#;
        let at = body.find("-----BEGIN").unwrap();
        assert_eq!(found(body), [format!("private_key at body, byte {at}")]);
        for label in [
            "RSA PRIVATE KEY",
            "EC PRIVATE KEY",
            "ENCRYPTED PRIVATE KEY",
            "PGP PRIVATE KEY BLOCK",
        ] {
            assert_eq!(
                found(&format!("x -----BEGIN {label}----- y")).len(),
                1,
                "{label}"
            );
        }
    }

    #[test]
    fn secrets_hidden_by_json_escapes_form_encoding_or_a_data_uri_are_found_where_they_are() {
        // Put together here: this file is a sample of code without secrets (secrets.rs).
        let key = ["AKIA", "IOSFODNN7EXAMPLE"].concat();
        let github = ["ghp", "_A1b2C3d4E5F6g7H8i9J0k1L2m3N4o5P6q7R8"].concat();
        let escaped_key = format!("AKIA\\u0049{}", &key[5..]);
        let escaped_github = github.replace('_', "\\u005f");
        let data = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("note: {key}"),
        );
        let json = |content: &str| format!(r#"{{"messages":[{{"content":"{content}"}}]}}"#);
        for (body, detector) in [
            (json(&format!("key {escaped_key}")), "aws_access_key"),
            (json(&escaped_github), "github_token"),
            (
                json("-----BEGIN RSA PRIVATE\\u0020KEY-----\\nMIIE"),
                "private_key",
            ),
            (
                format!(r#"{{"k\\u0065y":"x","{escaped_key}":1}}"#),
                "aws_access_key",
            ),
        ] {
            let found = found(&body);
            assert_eq!(found.len(), 1, "{body}: {found:?}");
            assert!(
                found[0].starts_with(&format!("{detector} at body, byte "))
                    && found[0].ends_with(", in a JSON string with escapes, decoded"),
                "{body}: {found:?}"
            );
        }
        let form = format!("title=x&body=AKIA%49{}", &key[5..]);
        assert_eq!(
            found(&form),
            ["aws_access_key at body, byte 8, in a form-encoded pair, decoded"]
        );
        assert_eq!(
            found("pem=-----BEGIN+RSA+PRIVATE+KEY-----"),
            ["private_key at body, byte 0, in a form-encoded pair, decoded"]
        );
        let uri = json(&format!("data:text/plain;base64,{data}"));
        let at = uri.find("data:").unwrap();
        assert_eq!(
            found(&uri),
            [format!(
                "aws_access_key at body, byte {at}, in a base64 data: URI, decoded"
            )]
        );
        let document = format!(
            r#"{{"source":{{"type":"base64","media_type":"text/plain","data":"{data}"}}}}"#
        );
        let at = document.find(&data).unwrap() - 1;
        assert_eq!(
            found(&document),
            [format!(
                "aws_access_key at body, byte {at}, in a base64 file of a text type, decoded"
            )]
        );
        // Found in the raw bytes and again decoded: one finding, the raw one.
        let both = json(&format!("{key} and {escaped_key}"));
        assert_eq!(
            found(&both),
            [format!(
                "aws_access_key at body, byte {}",
                both.find("AKIA").unwrap()
            )]
        );
    }

    #[test]
    fn secrets_in_multipart_parts_in_quoted_printable_or_base64_are_found_where_the_part_is() {
        // Put together here: this file is a sample of code without secrets (secrets.rs).
        let key = ["AKIA", "Q3EGUYTWBXLMNP4K"].concat();
        let qp = format!("=41=4b=49=41{}", &key[4..]);
        let b64 = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("note: {key}"),
        );
        let body = format!(
            "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nhello\r\n\
             --XyZ\r\nContent-Disposition: form-data; name=\"b\"\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n{qp}\r\n\
             --XyZ\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: BASE64\r\n\r\n\
             {}\r\n{}\r\n--XyZ--\r\n",
            &b64[..10],
            &b64[10..]
        );
        let found = found_in;
        let boundary = decoded::multipart::boundary(b"multipart/form-data; boundary=XyZ");
        assert_eq!(
            found(&body, boundary),
            [format!(
                "aws_access_key at body, byte {}, in a multipart part (quoted-printable), decoded",
                body.find(&qp).unwrap()
            )]
        );
        // The base64 part alone (the key found once, where it is first found).
        let only_base64 = body.replace("quoted-printable", "8bit");
        assert_eq!(
            found(&only_base64, boundary),
            [format!(
                "aws_access_key at body, byte {}, in a multipart part (base64), decoded",
                only_base64.find(&b64[..10]).unwrap()
            )]
        );
        // Not a multipart request (no boundary), or a part without the encoding: read as it is.
        assert!(found(&body, None).is_empty());
        let clean = body
            .replace(&qp, "=48=69 there")
            .replace(&b64[..10], "aGVsbG8=")
            .replace(&b64[10..], "");
        assert!(found(&clean, boundary).is_empty(), "{clean}");
    }

    #[test]
    fn a_refused_requests_text_keeps_no_secret_it_quoted() {
        let key = ["AKIA", "IOSFODNN7EXAMPLE"].concat();
        let config = InspectConfig::default();
        assert_eq!(
            scrubbed(&format!("no route matches /nosuch/{key}; check"), &config).as_deref(),
            Ok("no route matches /nosuch/[redacted: aws_access_key]; check")
        );
        assert_eq!(
            scrubbed(
                &format!("no route matches /nosuch/AKIA%49{}", &key[5..]),
                &config
            )
            .as_deref(),
            Err(&"aws_access_key")
        );
        assert!(matches!(
            scrubbed("no route matches /v2/x%20y", &config),
            Ok(std::borrow::Cow::Borrowed(_))
        ));
    }

    #[test]
    fn a_key_in_a_urls_host_is_located_there_and_outside_the_body() {
        let key = ["AKIA", "IOSFODNN7EXAMPLE"].concat().to_lowercase();
        let mut findings = Findings::none();
        inspect_host(
            &mut findings,
            &format!("{key}.evil.example.com"),
            URL_HOST,
            &InspectConfig::default(),
        );
        let found: Vec<&str> = findings.0.iter().map(|f| f.location.as_str()).collect();
        assert_eq!(found, ["url host, byte 0"]);
        // No redaction of the body reaches the host the request names.
        assert!(outside_body(&findings.0[0].location));
        assert!(outside_body("CONNECT target, byte 3"));
        assert!(!outside_body("body, byte 0"));
        assert!(!found_in_url(&findings), "the path is not withheld for it");
        assert!(found_in_host(&findings));
    }

    #[test]
    fn a_key_in_a_connect_host_name_is_found_whatever_its_case() {
        let key = ["AKIA", "IOSFODNN7EXAMPLE"].concat();
        for host in [
            format!("{key}.evil.example.com"),
            format!("{}.evil.example.com", key.to_lowercase()),
        ] {
            let mut findings = Findings::none();
            inspect_host(
                &mut findings,
                &host,
                CONNECT_TARGET,
                &InspectConfig::default(),
            );
            let found: Vec<String> = findings
                .0
                .iter()
                .map(|f| format!("{} at {}", f.detector, f.location))
                .collect();
            assert_eq!(
                found,
                ["aws_access_key at CONNECT target, byte 0"],
                "{host}"
            );
        }
        let mut findings = Findings::none();
        inspect_host(
            &mut findings,
            "api.github.com",
            CONNECT_TARGET,
            &InspectConfig::default(),
        );
        assert!(findings.0.is_empty(), "{findings:?}");
    }

    #[test]
    fn a_url_as_sent_and_as_it_goes_on_are_both_read_and_each_detector_found_once() {
        let config = InspectConfig::default();
        // Put together here: this file is a sample of code without secrets (secrets.rs).
        let key = ["AKIA", "IOSFODNN7EXAMPLE"].concat();
        let uri = |text: String| -> http::Uri { text.parse().unwrap() };
        // Folded to lower case, the key no longer reads as one: found in what was sent.
        let sent = uri(format!("/github/repos/acme/{key}"));
        let judged = uri(format!("/github/repos/acme/{}", key.to_lowercase()));
        let mut findings = Findings::none();
        inspect_url(&mut findings, &sent, &config);
        inspect_url_also(&mut findings, &judged, &config);
        let found: Vec<&str> = findings.detectors().collect();
        assert_eq!(found, ["aws_access_key"], "{findings:?}");
        assert!(found_in_url(&findings));
        // Sent with a look-alike (Cyrillic А), the key is only made by folding: found in what
        // goes on, once.
        let sent = uri(format!("/x/%D0%90{}", &key[1..]));
        let judged = uri(format!("/x/{key}"));
        let mut findings = Findings::none();
        inspect_url(&mut findings, &sent, &config);
        assert!(findings.0.is_empty(), "{findings:?}");
        inspect_url_also(&mut findings, &judged, &config);
        inspect_url_also(&mut findings, &judged, &config);
        assert_eq!(findings.0.len(), 1, "{findings:?}");
        assert!(found_in_url(&findings));
    }

    #[test]
    fn certificates_public_keys_and_prose_are_not_findings() {
        for body in [
            "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----",
            "-----BEGIN PUBLIC KEY-----",
            "keep your PRIVATE KEY safe; never paste -----BEGIN lines",
            "-----BEGIN ",
            "",
        ] {
            assert!(found(body).is_empty(), "{body}");
        }
    }

    /// The corpus committed in `tests/dlp/`: `clean/` (ordinary code in several languages,
    /// prose, configuration, lockfiles, identifiers and digests, inline images) and
    /// `positive/<detector>.txt` (one sample a line).
    fn corpus(dir: &str) -> Vec<(String, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/dlp")
            .join(dir);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| {
                let path = entry.expect("a corpus entry").path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&path).expect("a corpus file"))
            })
            .collect();
        files.sort();
        files
    }

    #[test]
    fn no_detector_fires_on_the_clean_corpus() {
        let files = corpus("clean");
        assert!(files.len() >= 10, "the clean corpus is there");
        for (name, text) in files {
            assert_eq!(found(&text), Vec::<String>::new(), "tests/dlp/clean/{name}");
        }
    }

    #[test]
    fn every_detector_finds_each_of_its_positive_samples() {
        let files = corpus("positive");
        for detector in DETECTOR_NAMES.iter() {
            let (_, text) = files
                .iter()
                .find(|(name, _)| name.strip_suffix(".txt") == Some(detector))
                .unwrap_or_else(|| panic!("tests/dlp/positive/{detector}.txt is missing"));
            for line in text
                .lines()
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
            {
                let mut findings = Findings::none();
                inspect(
                    &mut findings,
                    line.as_bytes(),
                    None,
                    &InspectConfig::default(),
                );
                assert!(
                    findings.detectors().any(|d| d == *detector),
                    "{detector} in {line:?}: {findings:?}"
                );
                let off = InspectConfig {
                    disabled: vec![(*detector).to_owned()],
                    ..InspectConfig::default()
                };
                let mut findings = Findings::none();
                inspect(&mut findings, line.as_bytes(), None, &off);
                assert!(
                    !findings.detectors().any(|d| d == *detector),
                    "{detector} disabled still finds {line:?}"
                );
            }
        }
    }
}
