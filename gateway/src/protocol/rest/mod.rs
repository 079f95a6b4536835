//! The REST dialect: requests to a SaaS API described by a connector's operations
//! (`connectors/github.yaml`, ...).
//!
//! A request that matches an operation is that operation's action (`github:issues.create`) on
//! `Operation::"<api>/<operation>"` in `Api::"<api>"`, with the path parameters as the
//! resource's tags and the operation's fields in `context.fields`. A request that matches none
//! is `http:request` on `Api::"<api>"`: denied unless a policy permits it. The path is read so
//! that no operation is reached under another's name (`path.rs`); the request goes upstream
//! exactly as it was judged. Refusals are 403s with a JSON error body; REST calls carry no
//! usage.

pub(crate) mod error;
mod fields;
mod fold;
pub(crate) mod operations;
mod path;
mod schema;
mod sent;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::Full;

pub use error::RestError;
pub use operations::{
    FieldKind, FieldSpec, Operation, OperationSpec, Operations, SpecError, is_operation_name,
};
pub use schema::fragment as schema_fragment;

use super::dialect::{Dialect, Inbound, Interpreted, Shape};
use super::errors::ProtocolError;
use super::identifier::LOOKALIKE_FINDING;
use super::refusal::{self as refusals, Refusal};
use super::usage::Usage;
use crate::action::{Facts, Finding, Findings, HttpFacts, Resource, Verb};
use crate::text::{PATH_MAX, Quoted};

/// The REST dialect's name in configuration.
pub const NAME: &str = "rest";

/// Headers asking a server to take a request for another method (Google APIs honour
/// `X-HTTP-Method-Override`): refused, since the method is judged as sent.
const METHOD_OVERRIDES: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Headers naming the path a server is to route a request to, instead of its own (IIS's URL
/// Rewrite module honours both): refused, since the path is judged as sent.
const PATH_OVERRIDES: [&str; 2] = ["x-original-url", "x-rewrite-url"];

/// The query parameter (or form or JSON body key: `fields.rs`) that has Rails (form bodies),
/// Laravel and Symfony take a POST for another method.
const METHOD_PARAMETER: &str = "_method";

/// The REST dialect.
pub struct Rest;

impl Dialect for Rest {
    fn name(&self) -> &'static str {
        NAME
    }

    fn interpret(&self, request: &Inbound<'_>) -> Result<Interpreted, ProtocolError> {
        Ok(interpret(request)?)
    }

    fn refusal(&self, _shape: &Shape, refusal: &Refusal<'_>) -> Option<Response<Full<Bytes>>> {
        let answer = error::denied(&refusal.message(), refusal.decision_id);
        Some(refusals::mark(answer, refusal))
    }

    fn error(&self, status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
        error::response(status, code, message)
    }

    fn usage_event_wanted(&self, _event: &[u8]) -> bool {
        false
    }

    fn usage_from_event(&self, _event: &[u8], _data: &[u8]) -> Usage {
        Usage::default()
    }

    fn usage_from_body(&self, _body: &[u8]) -> Usage {
        Usage::default()
    }

    fn sent_body(
        &self,
        shape: &Shape,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Option<Bytes>, ProtocolError> {
        let Shape::Rest { folded, .. } = shape else {
            return Ok(None);
        };
        Ok(sent::body(headers, body, folded)?.map(Bytes::from))
    }
}

/// Whether judging a `method` request to `path` needs fields from its body (the operation it
/// reaches declares `body.…` fields): such a body is read whole, within
/// `limits.max_request_bytes`; any other may stream past `inspect.stream_above`.
pub fn reads_body(operations: Option<&Operations>, method: &http::Method, path: &str) -> bool {
    // A path that cannot be read is refused by interpretation, whatever its body.
    let Ok(segments) = path::segments(path) else {
        return false;
    };
    operations
        .and_then(|ops| ops.find(method, &segments))
        .and_then(|matched| matched.operation.fields.as_deref())
        .is_some_and(|fields| {
            fields
                .iter()
                .any(|f| matches!(f.source, operations::FieldSource::Body(_)))
        })
}

/// What a REST request means.
fn interpret(request: &Inbound<'_>) -> Result<Interpreted, RestError> {
    refuse_redirection(request.headers, request.query, request.method)?;
    let segments = path::segments(request.path).map_err(|problem| RestError::Path {
        path: Quoted::with_max(request.path, PATH_MAX),
        problem,
    })?;
    let method = request.method.as_str().to_owned();
    let matched = request
        .operations
        .and_then(|ops| ops.find(request.method, &segments));
    let Some(matched) = matched else {
        let path = path::canonical(&segments);
        return Ok(Interpreted {
            verb: Verb::HttpRequest,
            resource: Resource::Api {
                name: Arc::clone(request.upstream),
            },
            facts: Facts::Http(HttpFacts {
                method,
                path: path.clone(),
                fields: None,
                undeclared: Vec::new(),
            }),
            findings: Findings::none(),
            shape: Shape::Rest {
                path,
                query: None,
                folded: Vec::new(),
            },
        });
    };
    let op = matched.operation;
    let mut findings = Findings::none();
    let mut params = Vec::with_capacity(op.params.len());
    let mut judged = Vec::with_capacity(op.params.len());
    let folds = |name: &str| request.operations.is_some_and(|ops| ops.folds_case(name));
    for (name, value) in op.params.iter().zip(&matched.values) {
        let value = parameter(name, value, folds(name), &mut findings)?;
        judged.push(value.clone());
        params.push((Arc::clone(name), value));
    }
    let (mut fields, undeclared) = match &op.fields {
        Some(fields) => {
            let (values, undeclared) =
                fields::read_with_undeclared(fields, request.query, request.headers, request.body)?;
            (Some(values), undeclared)
        }
        None => (None, Vec::new()),
    };
    // Fields `fold_case:` names are judged folded, and go upstream so.
    let folded: Vec<operations::Field> = op
        .fields
        .iter()
        .flatten()
        .filter(|f| folds(&f.name))
        .cloned()
        .collect();
    if let Some(values) = &mut fields {
        fold::fields(values, folds, &mut findings)?;
    }
    let query = match request.query {
        Some(query) if !folded.is_empty() => sent::query(query, &folded)?,
        _ => None,
    };
    // The parameters go upstream as policy judged them.
    let path = matched.path(&judged);
    Ok(Interpreted {
        verb: Verb::Operation(Arc::clone(&op.action)),
        resource: Resource::Operation {
            api: Arc::clone(request.upstream),
            name: Arc::clone(&op.name),
            params,
        },
        facts: Facts::Http(HttpFacts {
            method,
            path: path.clone(),
            fields,
            undeclared,
        }),
        findings,
        shape: Shape::Rest {
            path,
            query,
            folded,
        },
    })
}

/// Refuses a request that asks its server to take it for another method than the one judged
/// (REST routes and plain-HTTP egress alike).
fn refuse_method_override(headers: &HeaderMap, method: &http::Method) -> Result<(), RestError> {
    match METHOD_OVERRIDES.iter().find(|h| headers.contains_key(**h)) {
        Some(header) => Err(RestError::MethodOverride {
            header,
            method: Quoted::of(method.as_str()),
        }),
        None => Ok(()),
    }
}

/// Refuses a request that asks its server to take it for another method or route it elsewhere
/// than judged: a method-override header, a path in a header, or `_method` in the query (REST
/// routes, plain-HTTP and intercepted egress alike).
pub(crate) fn refuse_redirection(
    headers: &HeaderMap,
    query: Option<&str>,
    method: &http::Method,
) -> Result<(), RestError> {
    refuse_method_override(headers, method)?;
    refuse_rerouting(headers, query, method)
}

/// Refuses a request that asks its server to route it elsewhere than judged: a path in a
/// header ([`PATH_OVERRIDES`]), or a method in the query (`_method`, any spelling of it that
/// decodes so, or that PHP reads so: [`php_key`]).
fn refuse_rerouting(
    headers: &HeaderMap,
    query: Option<&str>,
    method: &http::Method,
) -> Result<(), RestError> {
    if let Some(header) = PATH_OVERRIDES.iter().find(|h| headers.contains_key(**h)) {
        return Err(RestError::PathOverride { header });
    }
    let named = |key: &str| {
        let key = key.replace('+', " ");
        names_method(&percent_encoding::percent_decode_str(&key).decode_utf8_lossy())
    };
    let pairs = query.into_iter().flat_map(|q| q.split(['&', ';']));
    match pairs
        .map(|p| p.split('=').next().unwrap_or(p))
        .find(|k| named(k))
    {
        Some(key) => Err(RestError::MethodParameter {
            parameter: Quoted::of(key),
            method: Quoted::of(method.as_str()),
        }),
        None => Ok(()),
    }
}

/// Whether a decoded query or body key is `_method` as a server reads it: however cased, or
/// spelled as PHP reads it so ([`php_key`]).
pub(super) fn names_method(key: &str) -> bool {
    // PHP drops a key's leading spaces; read with them made `_` too, to refuse either way.
    [key, key.trim_start_matches(' ')]
        .iter()
        .any(|key| php_key(key).eq_ignore_ascii_case(METHOD_PARAMETER))
}

/// A decoded query key as PHP names the variable (Laravel and Symfony read `_method` from
/// PHP's): cut at a NUL, and `.`, ` ` and `[` (an array key left unclosed) made `_`. Mapping
/// every `[` is broader than PHP (which keeps `a[b]` an array): refusing more is the safe side.
fn php_key(key: &str) -> String {
    key.split('\0')
        .next()
        .unwrap_or_default()
        .chars()
        .map(|c| if matches!(c, '.' | ' ' | '[') { '_' } else { c })
        .collect()
}

/// A path parameter's value as policy judges it and as it goes upstream: each segment folded
/// as `fold.rs` folds identifiers (with `fold_case`, lower-cased). A value whose folding yields
/// a path separator or a dot segment is refused: sent, it would reach another path.
fn parameter(
    name: &Arc<str>,
    value: &str,
    fold_case: bool,
    findings: &mut Findings,
) -> Result<String, RestError> {
    let mut looked_alike = false;
    let mut parts = Vec::new();
    for part in value.split('/') {
        let part = fold::value(part, fold_case, &mut looked_alike).map_err(|problem| {
            RestError::Parameter {
                name: Arc::clone(name),
                problem,
            }
        })?;
        if part.contains(['/', '\\']) || matches!(part.as_str(), "." | "..") {
            return Err(RestError::FoldedSeparator {
                name: Arc::clone(name),
            });
        }
        parts.push(part);
    }
    if looked_alike {
        findings.0.push(Finding {
            detector: Arc::from(LOOKALIKE_FINDING),
            location: format!("path parameter {name}"),
        });
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn ops() -> Operations {
        let spec = |action: &str, method: &str, path: &str| OperationSpec {
            action: action.into(),
            method: method.into(),
            path: path.into(),
            fields: Default::default(),
            read: None,
        };
        Operations::compile(
            "github",
            &[
                spec("issues.create", "POST", "/repos/{owner}/{repo}/issues"),
                spec("repos.get", "GET", "/repos/{owner}/{repo}"),
            ],
        )
        .expect("valid")
    }

    fn read(method: Method, path: &str, headers: HeaderMap) -> Result<Interpreted, RestError> {
        read_in(&ops(), method, path, headers)
    }

    fn read_in(
        ops: &Operations,
        method: Method,
        path: &str,
        headers: HeaderMap,
    ) -> Result<Interpreted, RestError> {
        let upstream: Arc<str> = Arc::from("github");
        interpret(&Inbound {
            method: &method,
            path,
            query: None,
            headers: &headers,
            body: b"",
            upstream: &upstream,
            operations: Some(ops),
            allow_cached_content: false,
        })
    }

    #[test]
    fn an_operation_is_its_action_on_its_resource_with_the_parameters_as_tags() {
        let meaning =
            read(Method::POST, "/Repos/acme/app/issues/", HeaderMap::new()).expect("reads");
        assert_eq!(meaning.verb, Verb::Operation("github:issues.create".into()));
        assert_eq!(
            meaning.resource,
            Resource::Operation {
                api: "github".into(),
                name: "issues.create".into(),
                params: vec![
                    ("owner".into(), "acme".into()),
                    ("repo".into(), "app".into())
                ],
            }
        );
        assert_eq!(
            meaning.shape,
            Shape::Rest {
                path: "/repos/acme/app/issues".into(),
                query: None,
                folded: Vec::new(),
            },
            "the request goes upstream as judged"
        );
    }

    #[test]
    fn an_unknown_operation_is_an_http_request_on_the_api() {
        let meaning = read(Method::DELETE, "/repos/acme/app", HeaderMap::new()).expect("reads");
        assert_eq!(meaning.verb, Verb::HttpRequest);
        assert_eq!(meaning.resource.cedar_ref(), r#"Api::"github""#);
    }

    #[test]
    fn an_unknown_operations_path_is_judged_and_sent_in_one_canonical_spelling() {
        // `/%61dmin/x` is `/admin/x` to the upstream: policy must not see it otherwise.
        let meaning = read(Method::GET, "/%61dmin/x%20y/caf%C3%A9/", HeaderMap::new()).unwrap();
        let Facts::Http(facts) = &meaning.facts else {
            panic!("{meaning:?}")
        };
        assert_eq!(facts.path, "/admin/x%20y/caf%C3%A9");
        assert_eq!(
            meaning.shape,
            Shape::Rest {
                path: facts.path.clone(),
                query: None,
                folded: Vec::new(),
            },
            "the request goes upstream as judged"
        );
        let same = read(Method::GET, "/admin/x%20y/café", HeaderMap::new()).unwrap();
        assert_eq!(same.facts, meaning.facts);
    }

    fn judged(meaning: &Interpreted) -> (Vec<String>, String) {
        let Resource::Operation { params, .. } = &meaning.resource else {
            panic!("{meaning:?}")
        };
        let Shape::Rest { path, .. } = &meaning.shape else {
            panic!("{meaning:?}")
        };
        (
            params.iter().map(|(_, v)| v.clone()).collect(),
            path.clone(),
        )
    }

    #[test]
    fn a_lookalike_parameter_is_judged_folded_sent_as_judged_and_a_hidden_one_refused() {
        // Cyrillic а (U+0430): judged as `app`, and `app` is what goes upstream, so a permit
        // on `app` cannot carry the call to another repository `аpp`.
        let meaning = read(Method::GET, "/repos/acme/%D0%B0pp", HeaderMap::new()).expect("reads");
        assert_eq!(
            judged(&meaning),
            (vec!["acme".into(), "app".into()], "/repos/acme/app".into())
        );
        assert_eq!(&*meaning.findings.0[0].detector, LOOKALIKE_FINDING);
        // Fullwidth ／ folds to `/`: sent as judged it would be another path.
        let split = read(Method::GET, "/repos/acme/a%EF%BC%8Fb", HeaderMap::new());
        assert!(
            matches!(split, Err(RestError::FoldedSeparator { .. })),
            "{split:?}"
        );
        let dots = read(
            Method::GET,
            "/repos/acme/%EF%BC%8E%EF%BC%8E",
            HeaderMap::new(),
        );
        assert!(
            matches!(dots, Err(RestError::FoldedSeparator { .. })),
            "{dots:?}"
        );
        // Characters without an ASCII look-alike are judged and sent as they are.
        let plain = read(Method::GET, "/repos/acme/caf%C3%A9", HeaderMap::new()).unwrap();
        assert_eq!(judged(&plain).1, "/repos/acme/caf%C3%A9");
        assert!(plain.findings.0.is_empty());
        let hidden = read(Method::GET, "/repos/acme/ap%E2%80%8Bp", HeaderMap::new());
        assert!(
            matches!(hidden, Err(RestError::Parameter { .. })),
            "{hidden:?}"
        );
    }

    #[test]
    fn fold_case_parameters_are_judged_and_sent_in_lower_case() {
        let ops = ops()
            .folding_case(&["owner".to_owned(), "repo".to_owned()])
            .expect("both are parameters");
        let read = |path: &str| read_in(&ops, Method::GET, path, HeaderMap::new());
        for path in [
            "/repos/Acme/PAYROLL",
            "/repos/acme/payroll",
            "/repos/ACME/Pa%D1%83roll",
            "/repos/%EF%BC%A1cme/%EF%BD%90ayroll",
        ] {
            let meaning = read(path).expect(path);
            assert_eq!(
                judged(&meaning),
                (
                    vec!["acme".into(), "payroll".into()],
                    "/repos/acme/payroll".into()
                ),
                "{path}"
            );
        }
        // Unicode-aware: `É` is `é`, sent percent-encoded in one spelling.
        let meaning = read("/repos/acme/CAF%C3%89").unwrap();
        assert_eq!(
            judged(&meaning),
            (
                vec!["acme".into(), "café".into()],
                "/repos/acme/caf%C3%A9".into()
            )
        );
        // Without fold_case a parameter keeps its case, as the API may tell cases apart.
        let kept = read_in(
            &self::ops(),
            Method::GET,
            "/repos/Acme/App",
            HeaderMap::new(),
        )
        .unwrap();
        assert_eq!(judged(&kept).1, "/repos/Acme/App");
    }

    #[test]
    fn only_an_operation_with_body_fields_reads_its_body_whole() {
        let mut create = OperationSpec {
            action: "issues.create".into(),
            method: "POST".into(),
            path: "/repos/{owner}/{repo}/issues".into(),
            fields: Default::default(),
            read: None,
        };
        let mut upload = create.clone();
        upload.action = "repos.upload".into();
        upload.method = "PUT".into();
        upload.path = "/repos/{owner}/{repo}/contents/{path+}".into();
        upload
            .fields
            .insert("branch".into(), FieldSpec::From("query.branch".into()));
        create
            .fields
            .insert("title".into(), FieldSpec::From("body.title".into()));
        let ops = Operations::compile("github", &[create, upload]).expect("valid");
        let reads = |method: Method, path: &str| reads_body(Some(&ops), &method, path);
        assert!(reads(Method::POST, "/repos/acme/app/issues"));
        assert!(!reads(Method::PUT, "/repos/acme/app/contents/big.json"));
        assert!(!reads(Method::POST, "/unknown"), "an http:request");
        assert!(!reads_body(None, &Method::POST, "/repos/acme/app/issues"));
    }

    /// A header naming another path, or `_method` in the query (however spelled), would have
    /// some servers run another operation than the one judged: refused.
    #[test]
    fn a_path_in_a_header_or_a_method_in_the_query_is_refused() {
        for header in ["x-original-url", "X-Rewrite-URL"] {
            let mut headers = HeaderMap::new();
            headers.insert(
                http::HeaderName::from_bytes(header.as_bytes()).unwrap(),
                "/repos/acme/secret".parse().unwrap(),
            );
            let refused = read(Method::GET, "/repos/acme/app", headers);
            assert!(
                matches!(refused, Err(RestError::PathOverride { .. })),
                "{header}: {refused:?}"
            );
        }
        let upstream: Arc<str> = Arc::from("github");
        let ops = ops();
        let with_query = |query: &'static str| {
            interpret(&Inbound {
                method: &Method::POST,
                path: "/repos/acme/app/issues",
                query: Some(query),
                headers: &HeaderMap::new(),
                body: b"",
                upstream: &upstream,
                operations: Some(&ops),
                allow_cached_content: false,
            })
        };
        for query in [
            "_method=DELETE",
            "a=1&_METHOD=delete",
            "%5Fmethod=DELETE",
            "_method",
            // PHP (Laravel, Symfony) reads each of these keys as `_method`.
            ".method=DELETE",
            "+method=DELETE",
            "%20method=DELETE",
            "[method=DELETE",
            "%2Emethod=DELETE",
            "%5bMETHOD=delete",
            "+_method=DELETE",
            "_method%00x=DELETE",
        ] {
            let refused = with_query(query);
            assert!(
                matches!(refused, Err(RestError::MethodParameter { .. })),
                "{query}: {refused:?}"
            );
        }
        for query in [
            "method=DELETE",
            "a=_method",
            "x_method=1",
            "a.method=1",
            "_methods=1",
        ] {
            assert!(with_query(query).is_ok(), "{query}");
        }
    }

    #[test]
    fn a_method_override_is_refused() {
        let mut headers = HeaderMap::new();
        headers.insert("x-http-method-override", "DELETE".parse().unwrap());
        let refused = read(Method::GET, "/repos/acme/app", headers);
        assert!(
            matches!(refused, Err(RestError::MethodOverride { .. })),
            "{refused:?}"
        );
    }
}
