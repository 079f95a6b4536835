//! `warden connector import-openapi`: a REST connector from an OpenAPI 3.0 or 3.1 description
//! (JSON or YAML), one operation per OpenAPI operation.
//!
//! Each operation's action is its `operationId`, sanitised (`issues/create` → `issues.create`:
//! every run of characters other than ASCII letters, digits, `_` and `-` becomes one `.`), or,
//! without one, its method and path (`get.repos.owner.repo`); a name taken twice gets `-2`,
//! `-3`, ... in path order, so the output is stable. Path parameters become template
//! parameters (`{owner}`; `x-multi-segment: true` makes `{ref+}`), their names reduced to
//! Cedar identifiers (`user-id` → `user_id`). The credential comes from the description's
//! first security scheme (HTTP bearer or basic, an API key in a header, OAuth 2 and OpenID
//! Connect as bearer tokens), else a bearer token. Paths whose parameters share a segment
//! with text (`/files/{name}.{ext}`) cannot be templates: they are listed in the output's
//! header and left to `http:request`.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use serde_json::Value;

use crate::protocol::rest::{OperationSpec, Operations, is_operation_name};

/// Why a description cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// Neither JSON nor YAML.
    #[error("the description is neither JSON nor YAML: {0}")]
    Syntax(String),
    /// Not OpenAPI 3 (Swagger 2.0, or no `openapi` field).
    #[error(
        "the description is not OpenAPI 3.0 or 3.1 (its openapi field is {0}); convert Swagger \
         2.0 descriptions first"
    )]
    Version(String),
    /// A Swagger 2.0 (OpenAPI 2) description.
    #[error(
        "the description is Swagger {0} (OpenAPI 2), which import-openapi does not read: convert \
         it to OpenAPI 3 first (e.g. `npx swagger2openapi spec.yaml -o spec-v3.yaml`) and import \
         that"
    )]
    Swagger(String),
    /// No base URL in `servers` and none given.
    #[error("the description names no absolute server URL; give one with --base-url")]
    NoBaseUrl,
    /// No name given and none can be made from `info.title`.
    #[error("no connector name can be made from info.title; give one with --name")]
    NoName,
    /// The operations do not make a valid connector.
    #[error("the operations do not make a valid connector:\n{0}")]
    Operations(String),
}

/// What to import, beyond the description itself.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The connector's name (its actions' namespace); default: from `info.title`.
    pub name: Option<String>,
    /// The upstream base URL; default: the first server's.
    pub base_url: Option<String>,
    /// Path parameters (and fields) the API takes in any case (the connector's `fold_case:`).
    pub fold_case: Vec<String>,
}

/// The connector file (YAML) for the OpenAPI description `text`.
pub fn import(text: &str, options: &ImportOptions) -> Result<String, ImportError> {
    let doc: Value = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| ImportError::Syntax(e.to_string()))?
    } else {
        serde_saphyr::from_str(text).map_err(|e| ImportError::Syntax(e.to_string()))?
    };
    let version = doc.get("openapi").and_then(Value::as_str).unwrap_or("");
    let swagger = doc.get("swagger").and_then(Value::as_str);
    if let Some(v) = swagger.or(version.starts_with('2').then_some(version)) {
        return Err(ImportError::Swagger(v.to_owned()));
    }
    if !version.starts_with("3.") {
        return Err(ImportError::Version(format!("{version:?}")));
    }
    let title = doc
        .pointer("/info/title")
        .and_then(Value::as_str)
        .unwrap_or("");
    let name = match &options.name {
        Some(n) => n.clone(),
        None => connector_name(title).ok_or(ImportError::NoName)?,
    };
    let base_url = match &options.base_url {
        Some(url) => url.clone(),
        None => server_url(&doc).ok_or(ImportError::NoBaseUrl)?,
    };
    let (specs, skipped) = operations(&doc);
    Operations::compile(&name, &specs)
        .and_then(|table| table.folding_case(&options.fold_case))
        .map_err(|errors| {
            ImportError::Operations(
                errors
                    .iter()
                    .map(|e| format!("{}: {}", e.key, e.message))
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        })?;
    let connector = Imported {
        name: &name,
        title,
        base_url: &base_url,
        fold_case: &options.fold_case,
    };
    Ok(render(&doc, &connector, &specs, &skipped))
}

/// A connector name from a title: lower-case ASCII letters and digits, runs of anything else
/// as one `-`.
fn connector_name(title: &str) -> Option<String> {
    let mut out = String::new();
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-').to_owned();
    out.starts_with(|c: char| c.is_ascii_lowercase())
        .then_some(out)
}

/// The first server's URL, its variables replaced by their defaults, when it is absolute.
fn server_url(doc: &Value) -> Option<String> {
    let server = doc.get("servers")?.as_array()?.first()?;
    let mut url = server.get("url")?.as_str()?.to_owned();
    if let Some(vars) = server.get("variables").and_then(Value::as_object) {
        for (name, var) in vars {
            if let Some(default) = var.get("default").and_then(Value::as_str) {
                url = url.replace(&format!("{{{name}}}"), default);
            }
        }
    }
    let url = url.trim_end_matches('/').to_owned();
    (url.starts_with("https://") || url.starts_with("http://")).then_some(url)
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The operations of `doc`, in path then method order, and the `METHOD path` of those that
/// cannot be templates.
fn operations(doc: &Value) -> (Vec<OperationSpec>, Vec<String>) {
    let mut specs = Vec::new();
    let mut skipped = Vec::new();
    let mut taken: HashSet<String> = HashSet::new();
    let Some(paths) = doc.get("paths").and_then(Value::as_object) else {
        return (specs, skipped);
    };
    let sorted: BTreeMap<&String, &Value> = paths.iter().collect();
    for (path, item) in sorted {
        let shared = item.get("parameters");
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let upper = method.to_ascii_uppercase();
            let multi = multi_segment_params(doc, shared, op.get("parameters"));
            let Some(template) = template(path, &multi) else {
                skipped.push(format!("{upper} {path}"));
                continue;
            };
            let base = op
                .get("operationId")
                .and_then(Value::as_str)
                .map(sanitise)
                .filter(|n| is_operation_name(n))
                .unwrap_or_else(|| sanitise(&format!("{method}.{path}")));
            let base = if matches!(base.as_str(), "read" | "write") {
                format!("{base}-op")
            } else {
                base
            };
            let mut action = base.clone();
            let mut n = 2;
            while !taken.insert(action.clone()) {
                action = format!("{base}-{n}");
                n += 1;
            }
            specs.push(OperationSpec {
                action,
                method: upper,
                path: template,
                fields: BTreeMap::new(),
                read: None,
            });
        }
    }
    (specs, skipped)
}

/// Runs of characters other than ASCII letters, digits, `_` and `-` as one `.`, none at
/// either end.
fn sanitise(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for c in id.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '_' | '-') {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('.') {
            out.push('.');
        }
    }
    out.trim_end_matches('.').to_owned()
}

/// The names of the path parameters marked `x-multi-segment: true`.
fn multi_segment_params(doc: &Value, shared: Option<&Value>, own: Option<&Value>) -> Vec<String> {
    let mut out = Vec::new();
    for list in [shared, own].into_iter().flatten() {
        for param in list.as_array().into_iter().flatten() {
            let param = resolve(doc, param);
            let is_path = param.get("in").and_then(Value::as_str) == Some("path");
            let multi = param.get("x-multi-segment").and_then(Value::as_bool) == Some(true);
            if let (true, true, Some(name)) =
                (is_path, multi, param.get("name").and_then(Value::as_str))
            {
                out.push(name.to_owned());
            }
        }
    }
    out
}

/// A `$ref` to a local component, followed; anything else as it is.
fn resolve<'d>(doc: &'d Value, value: &'d Value) -> &'d Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(r) => r
            .strip_prefix('#')
            .and_then(|pointer| doc.pointer(pointer))
            .unwrap_or(value),
        None => value,
    }
}

/// The connector template for OpenAPI path `path`: parameters as whole segments, their names
/// as Cedar identifiers; `None` when a parameter shares a segment with text.
fn template(path: &str, multi: &[String]) -> Option<String> {
    let mut out = String::with_capacity(path.len());
    for segment in path.trim_start_matches('/').split('/') {
        out.push('/');
        if segment.is_empty() {
            continue;
        }
        match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) if !name.contains(['{', '}']) => {
                let ident: String = name
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                let ident = if ident.starts_with(|c: char| c.is_ascii_digit()) {
                    format!("_{ident}")
                } else {
                    ident
                };
                let plus = if multi.iter().any(|m| m == name) {
                    "+"
                } else {
                    ""
                };
                let _ = write!(out, "{{{ident}{plus}}}");
            }
            _ if segment.contains(['{', '}']) => return None,
            _ => out.push_str(segment),
        }
    }
    if out.len() > 1 && out.ends_with('/') {
        return None;
    }
    Some(out)
}

/// The credential injection the description's first security scheme asks for.
fn credential(doc: &Value) -> (String, String) {
    let bearer = ("authorization".to_owned(), "Bearer {secret}".to_owned());
    let Some(schemes) = doc
        .pointer("/components/securitySchemes")
        .and_then(Value::as_object)
    else {
        return bearer;
    };
    let Some(scheme) = schemes.values().next().map(|s| resolve(doc, s)) else {
        return bearer;
    };
    let field = |k: &str| scheme.get(k).and_then(Value::as_str).unwrap_or("");
    match (field("type"), field("scheme").to_ascii_lowercase().as_str()) {
        ("http", "basic") => (
            "authorization".to_owned(),
            "Basic {secret_base64}".to_owned(),
        ),
        ("apiKey", _) if field("in") == "header" && !field("name").is_empty() => {
            (field("name").to_ascii_lowercase(), "{secret}".to_owned())
        }
        _ => bearer,
    }
}

/// A YAML double-quoted scalar (JSON's string syntax is one).
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// What the connector file says of itself besides its operations.
struct Imported<'a> {
    name: &'a str,
    title: &'a str,
    base_url: &'a str,
    fold_case: &'a [String],
}

fn render(
    doc: &Value,
    connector: &Imported<'_>,
    specs: &[OperationSpec],
    skipped: &[String],
) -> String {
    let Imported {
        name,
        title,
        base_url,
        fold_case,
    } = *connector;
    let version = doc
        .pointer("/info/version")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let mut out = String::with_capacity(256 + specs.len() * 96);
    let _ = writeln!(
        out,
        "# {} (version {}), generated by `warden connector import-openapi` from its OpenAPI\n\
         # description: {} operations, one per OpenAPI operation. Regenerating it replaces\n\
         # it: apply again what was added by hand (`fields:` for policies, see docs/tools.md).",
        one_line(title),
        one_line(version),
        specs.len()
    );
    if !skipped.is_empty() {
        let _ = writeln!(
            out,
            "# Not imported (a parameter shares a path segment with text): {}",
            skipped
                .iter()
                .map(|s| one_line(s))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let (header, format) = credential(doc);
    let _ = writeln!(out, "name: {name}");
    let _ = writeln!(out, "description: {}", quoted(title));
    let _ = writeln!(out, "protocol: rest");
    let _ = writeln!(out, "provider: {name}");
    let _ = writeln!(out, "base_url: {}", quoted(base_url));
    let _ = writeln!(
        out,
        "credential:\n  header: {}\n  format: {}",
        quoted(&header),
        quoted(&format)
    );
    if !fold_case.is_empty() {
        let _ = writeln!(out, "fold_case: [{}]", fold_case.join(", "));
    }
    let _ = writeln!(out, "operations:");
    for spec in specs {
        let _ = writeln!(
            out,
            "  - {{ action: {}, method: {}, path: {} }}",
            quoted(&spec.action),
            spec.method,
            quoted(&spec.path)
        );
    }
    out
}

/// `text` on one line, at most 120 characters.
fn one_line(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(120)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PETSTORE: &str = r##"
openapi: 3.1.0
info: { title: Pet Store API, version: "2.0" }
servers:
  - url: "https://{region}.pets.example/v1"
    variables: { region: { default: eu } }
components:
  parameters:
    ref:
      name: ref
      in: path
      required: true
      x-multi-segment: true
      schema: { type: string }
  securitySchemes:
    basic: { type: http, scheme: basic }
paths:
  /pets:
    get: { operationId: listPets }
    post: { operationId: "pets/create" }
  /pets/{pet-id}:
    parameters:
      - { name: pet-id, in: path, required: true, schema: { type: string } }
    get: { operationId: "pets/get" }
    delete: {}
  /pets/{pet-id}/refs/{ref}:
    get:
      operationId: "pets/get"
      parameters: [ { $ref: "#/components/parameters/ref" } ]
  /files/{name}.{ext}:
    get: { operationId: getFile }
"##;

    #[test]
    fn imports_one_action_per_operation_with_path_parameters() {
        let text = import(PETSTORE, &ImportOptions::default()).expect("imports");
        for line in [
            "name: pet-store-api",
            "base_url: \"https://eu.pets.example/v1\"",
            "  format: \"Basic {secret_base64}\"",
            "  - { action: \"listPets\", method: GET, path: \"/pets\" }",
            "  - { action: \"pets.create\", method: POST, path: \"/pets\" }",
            "  - { action: \"pets.get\", method: GET, path: \"/pets/{pet_id}\" }",
            "  - { action: \"delete.pets.pet-id\", method: DELETE, path: \"/pets/{pet_id}\" }",
            "  - { action: \"pets.get-2\", method: GET, path: \"/pets/{pet_id}/refs/{ref+}\" }",
            "# Not imported (a parameter shares a path segment with text): GET /files/{name}.{ext}",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert_eq!(
            import(PETSTORE, &ImportOptions::default()).expect("imports"),
            text,
            "the output is stable"
        );
    }

    #[test]
    fn the_import_is_a_valid_connector() {
        let text = import(
            PETSTORE,
            &ImportOptions {
                name: Some("pets".into()),
                base_url: None,
                fold_case: vec!["pet_id".into()],
            },
        )
        .expect("imports");
        assert!(text.lines().any(|l| l == "fold_case: [pet_id]"), "{text}");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("pets.yaml"), &text).expect("write");
        let connectors = crate::route::connector::Connectors::load(Some(dir.path()))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        let operations = connectors.operations("pets");
        assert_eq!(operations.map(|o| o.len()), Some(5));
        assert!(operations.is_some_and(|o| o.folds_case("pet_id")));
        let unknown = ImportOptions {
            fold_case: vec!["owner".into()],
            ..ImportOptions::default()
        };
        let err = import(PETSTORE, &unknown).unwrap_err();
        assert!(err.to_string().contains("fold_case[0]"), "{err}");
    }

    #[test]
    fn a_path_cannot_write_lines_into_the_connector_from_its_comment() {
        // A path the import skips is named in the file's header comment: a line break in it
        // would end the comment and add keys of the description's choosing.
        let doc = json!({
            "openapi": "3.1.0",
            "info": { "title": "Pets", "version": "1" },
            "servers": [{ "url": "https://pets.example" }],
            "paths": {
                "/pets/{pet_id}": { "get": { "operationId": "get" } },
                "/x{a}b\nfold_case: [pet_id]\n#": { "get": { "operationId": "x" } }
            }
        });
        let text = import(&doc.to_string(), &ImportOptions::default()).expect("imports");
        let header: Vec<&str> = text
            .lines()
            .take_while(|l| !l.starts_with("name:"))
            .collect();
        assert!(header.iter().all(|l| l.starts_with('#')), "{text}");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("pets.yaml"), &text).expect("write");
        let connectors = crate::route::connector::Connectors::load(Some(dir.path()))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        let operations = connectors.operations("pets").expect("the connector");
        assert!(!operations.folds_case("pet_id"), "{text}");
    }

    #[test]
    fn swagger_2_is_refused_with_what_to_do() {
        for doc in ["{\"swagger\": \"2.0\"}", "openapi: \"2.0\"\n"] {
            let err = import(doc, &ImportOptions::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("Swagger 2.0"), "{err}");
            assert!(err.contains("swagger2openapi"), "{err}");
            assert!(!err.contains("openapi field"), "{err}");
        }
    }
}
