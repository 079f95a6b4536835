//! A REST connector's operations: how a connector file declares them ([`OperationSpec`]) and
//! the table a route matches requests against ([`Operations`]).
//!
//! A template is a path of `/`-separated segments: literals (`repos`), parameters that take one
//! segment (`{owner}`) and parameters that take one or more (`{ref+}`, for Git refs such as
//! `heads/main`). Matching is per method; at each segment a literal beats a parameter, and a
//! multi-segment parameter takes as few segments as it can, so `/branches/a/protection` is the
//! protection of branch `a`. Literals match without regard to ASCII case; the request goes
//! upstream with the template's spelling (see `path.rs`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use http::Method;
use serde::Deserialize;

/// One operation as a connector file declares it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OperationSpec {
    /// The operation's name: the Cedar action is `<connector>:<action>`, the resource
    /// `Operation::"<api>/<action>"`.
    pub action: String,
    /// HTTP method (`GET`, `POST`, ...).
    pub method: String,
    /// Path template below the base URL: `/repos/{owner}/{repo}/issues`.
    pub path: String,
    /// Values of the request given to policy as `context.fields.<name>`.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldSpec>,
    /// Whether the operation only reads (its action joins `<connector>:read`). Default: GET
    /// and HEAD operations read, the others write.
    #[serde(default)]
    pub read: Option<bool>,
}

/// Where a field's value is read, and its type: `body.title` (a string), or
/// `{ from: body.labels[].name, type: strings }`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum FieldSpec {
    /// A string read from the place named.
    From(String),
    /// A value of `type` read from `from`.
    Typed {
        from: String,
        #[serde(rename = "type", default)]
        kind: FieldKind,
    },
}

impl FieldSpec {
    fn parts(&self) -> (&str, FieldKind) {
        match self {
            FieldSpec::From(from) => (from, FieldKind::String),
            FieldSpec::Typed { from, kind } => (from, *kind),
        }
    }
}

/// A field's type in policy.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    /// Cedar `String`.
    #[default]
    String,
    /// Cedar `Long`.
    Long,
    /// Cedar `Bool`.
    Bool,
    /// Cedar `Set<String>`: an array of strings, or every value an `[]` path reaches.
    Strings,
}

impl FieldKind {
    /// The Cedar type.
    pub fn cedar_type(self) -> &'static str {
        match self {
            FieldKind::String => "String",
            FieldKind::Long => "Long",
            FieldKind::Bool => "Bool",
            FieldKind::Strings => "Set<String>",
        }
    }
}

/// Where a field is read: a query parameter, or a path into the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldSource {
    /// `query.<name>`.
    Query(String),
    /// `body.<a>.<b>[].<c>`: keys, each possibly followed by `[]` (every element).
    Body(Vec<BodyStep>),
}

/// One step of a body path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyStep {
    pub key: String,
    /// The value at `key` is an array: go on in every element.
    pub each: bool,
}

/// One field of an operation, ready to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Its name in `context.fields`.
    pub name: Arc<str>,
    pub source: FieldSource,
    pub kind: FieldKind,
}

/// One operation, ready to judge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// The Cedar action: `github:issues.create`.
    pub action: Arc<str>,
    /// The operation's own name: `issues.create`.
    pub name: Arc<str>,
    pub method: Method,
    /// The template as declared.
    pub template: String,
    /// Its parameters' names, in path order.
    pub params: Vec<Arc<str>>,
    /// Its fields; `None` when it declares none (its context then has no `fields`).
    pub fields: Option<Vec<Field>>,
    /// It only reads.
    pub read: bool,
}

/// A segment of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    Multi(String),
}

/// One trie node: the templates that share a prefix of segments.
#[derive(Debug, Default)]
struct Node {
    /// Literal children by lower-case spelling, with the spelling the template gives.
    literals: HashMap<String, (String, Node)>,
    param: Option<Box<Node>>,
    multi: Option<Box<Node>>,
    /// Operations whose template ends here, by method.
    ends: HashMap<Method, usize>,
}

/// What a request path matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched<'t> {
    pub operation: &'t Operation,
    /// The parameters' decoded values, in the operation's order (a multi-segment parameter's
    /// segments joined with `/`).
    pub values: Vec<String>,
    /// The path's segments in order: a literal as the template spells it, or the index of a
    /// parameter in `values`.
    pieces: Vec<Piece<'t>>,
}

/// One piece of a matched path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece<'t> {
    Literal(&'t str),
    Param(usize),
}

impl Matched<'_> {
    /// The path to send upstream with the parameters' `values` as judged (in the operation's
    /// order): literals as the template spells them, each value percent-encoded in one
    /// spelling (a multi-segment value's `/` kept as separators).
    pub fn path(&self, values: &[String]) -> String {
        let mut path = String::new();
        for piece in &self.pieces {
            path.push('/');
            match piece {
                Piece::Literal(literal) => path.push_str(literal),
                Piece::Param(i) => {
                    let value = values.get(*i).map_or("", String::as_str);
                    for (n, part) in value.split('/').enumerate() {
                        if n > 0 {
                            path.push('/');
                        }
                        path.push_str(&super::path::encode_segment(part));
                    }
                }
            }
        }
        if path.is_empty() {
            path.push('/');
        }
        path
    }
}

/// A connector's operations: what a REST route matches requests against.
#[derive(Debug, Default)]
pub struct Operations {
    /// The connector's name: the namespace of its actions (`github`).
    namespace: Arc<str>,
    operations: Vec<Operation>,
    root: Node,
    /// The path parameters and fields whose values are folded to lower case.
    fold_case: Vec<Arc<str>>,
}

/// A mistake in a connector's operations: the key (`operations[3].path`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub key: String,
    pub message: String,
}

/// Namespaces Warden's own actions use; a connector cannot take them.
pub const RESERVED_NAMESPACES: [&str; 8] = [
    "llm", "mcp", "http", "egress", "tool", "secret", "approval", "warden",
];

/// Whether `name` may name an operation: ASCII letters, digits, `.`, `_`, `-`, starting with a
/// letter or digit, at most 128 bytes.
pub fn is_operation_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Whether `name` may name a field or a connector namespace: a Cedar identifier.
pub fn is_identifier(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Operations {
    /// Compiles the operations of connector `namespace`; every mistake is reported.
    pub fn compile(namespace: &str, specs: &[OperationSpec]) -> Result<Operations, Vec<SpecError>> {
        let mut table = Operations {
            namespace: Arc::from(namespace),
            ..Operations::default()
        };
        let mut errors = Vec::new();
        if RESERVED_NAMESPACES.contains(&namespace) || !is_connector_name(namespace) {
            errors.push(SpecError {
                key: "name".into(),
                message: format!(
                    "{namespace:?} cannot name a REST connector's actions: use lower-case \
                     letters, digits, `-` and `_`, and none of {}",
                    RESERVED_NAMESPACES.join(", ")
                ),
            });
        }
        for (i, spec) in specs.iter().enumerate() {
            let key = |k: &str| format!("operations[{i}].{k}");
            let mut fail = |k: &str, message: String| {
                errors.push(SpecError {
                    key: key(k),
                    message,
                })
            };
            if !is_operation_name(&spec.action) || matches!(spec.action.as_str(), "read" | "write")
            {
                fail(
                    "action",
                    format!(
                        "{:?} is not an operation name: use ASCII letters, digits, `.`, `_` and \
                         `-` (e.g. issues.create); read and write name the connector's groups",
                        spec.action
                    ),
                );
            }
            let method = match Method::from_bytes(spec.method.as_bytes()) {
                Ok(m) if spec.method.bytes().all(|b| b.is_ascii_uppercase()) => m,
                _ => {
                    fail(
                        "method",
                        format!("{:?} is not an upper-case HTTP method", spec.method),
                    );
                    continue;
                }
            };
            let segments = match parse_template(&spec.path) {
                Ok(s) => s,
                Err(message) => {
                    fail("path", message);
                    continue;
                }
            };
            let fields = match compile_fields(&spec.fields) {
                Ok(f) => f,
                Err((name, message)) => {
                    fail(&format!("fields.{name}"), message);
                    continue;
                }
            };
            let params: Vec<Arc<str>> = segments
                .iter()
                .filter_map(|s| match s {
                    Segment::Param(p) | Segment::Multi(p) => Some(Arc::from(p.as_str())),
                    Segment::Literal(_) => None,
                })
                .collect();
            let index = table.operations.len();
            let node = table.root.insert(&segments);
            if let Some(first) = node.ends.get(&method) {
                let other = &table.operations[*first];
                fail(
                    "path",
                    format!(
                        "{method} {} is already operation {:?} ({method} {}): one request must \
                         match one operation",
                        spec.path, other.name, other.template
                    ),
                );
                continue;
            }
            node.ends.insert(method.clone(), index);
            table.operations.push(Operation {
                action: Arc::from(format!("{namespace}:{}", spec.action)),
                name: Arc::from(spec.action.as_str()),
                method,
                template: spec.path.clone(),
                params,
                fields,
                read: spec
                    .read
                    .unwrap_or(matches!(spec.method.as_str(), "GET" | "HEAD")),
            });
        }
        unify_fields(&mut table.operations, &mut errors);
        if errors.is_empty() {
            Ok(table)
        } else {
            Err(errors)
        }
    }

    /// The connector's name, its actions' namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Every operation, in file order.
    pub fn iter(&self) -> impl Iterator<Item = &Operation> {
        self.operations.iter()
    }

    /// How many operations there are.
    pub fn len(&self) -> usize {
        self.operations.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }

    /// The operation `method` and `segments` (a canonical path's raw and decoded segments)
    /// call, if any.
    pub fn find<'t>(&'t self, method: &Method, segments: &[(&str, String)]) -> Option<Matched<'t>> {
        let mut captured: Vec<(usize, usize)> = Vec::new();
        let mut spelled: Vec<&'t str> = Vec::new();
        // A HEAD is a GET without the body (RFC 9110, 9.3.2): a server runs the GET's handler
        // for it, so a path with no HEAD operation is the GET operation's.
        let index = self
            .root
            .find(method, segments, 0, &mut captured, &mut spelled)
            .or_else(|| {
                captured.clear();
                spelled.clear();
                let get = (method == Method::HEAD).then_some(&Method::GET)?;
                self.root
                    .find(get, segments, 0, &mut captured, &mut spelled)
            })?;
        let operation = &self.operations[index];
        let values = captured
            .iter()
            .map(|&(from, to)| {
                segments[from..to]
                    .iter()
                    .map(|(_, decoded)| decoded.as_str())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect();
        // The path's pieces: literals in the template's spelling, parameters by index.
        let mut pieces = Vec::with_capacity(segments.len());
        let mut literal = spelled.iter();
        let mut i = 0;
        let mut params = captured.iter().enumerate().peekable();
        while i < segments.len() {
            match params.peek() {
                Some(&(n, &(from, to))) if from == i => {
                    params.next();
                    pieces.push(Piece::Param(n));
                    i = to;
                }
                _ => {
                    pieces.push(Piece::Literal(literal.next().copied().unwrap_or("")));
                    i += 1;
                }
            }
        }
        Some(Matched {
            operation,
            values,
            pieces,
        })
    }

    /// Whether path parameter or field `name` is folded to lower case (`fold_case:` in the
    /// connector): the API takes its values in any case.
    pub fn folds_case(&self, name: &str) -> bool {
        self.fold_case.iter().any(|f| &**f == name)
    }

    /// The table with the path parameters and text fields `names` folded to lower case (the
    /// connector's `fold_case:`); a name that is neither a parameter of some operation's path
    /// nor a `string` or `strings` field of some operation is a mistake (key `fold_case[i]`).
    pub fn folding_case(mut self, names: &[String]) -> Result<Operations, Vec<SpecError>> {
        let errors: Vec<SpecError> = names
            .iter()
            .enumerate()
            .filter_map(|(i, name)| {
                let problem = self.fold_case_problem(name)?;
                Some(SpecError {
                    key: format!("fold_case[{i}]"),
                    message: problem,
                })
            })
            .collect();
        if !errors.is_empty() {
            return Err(errors);
        }
        self.fold_case = names.iter().map(|n| Arc::from(n.as_str())).collect();
        Ok(self)
    }

    /// Why `fold_case:` cannot name `name`, if it cannot.
    fn fold_case_problem(&self, name: &str) -> Option<String> {
        let fields = || {
            self.operations
                .iter()
                .flat_map(|op| op.fields.iter().flatten())
        };
        let param = self
            .operations
            .iter()
            .any(|op| op.params.iter().any(|p| &**p == name));
        let text = fields()
            .any(|f| &*f.name == name && matches!(f.kind, FieldKind::String | FieldKind::Strings));
        if param || text {
            return None;
        }
        if let Some(field) = fields().find(|f| &*f.name == name) {
            return Some(format!(
                "field {name:?} is of type {}: fold_case folds text, fields of type string or \
                 strings",
                field.kind.cedar_type()
            ));
        }
        Some(format!(
            "{name:?} is no path parameter nor field of any operation: fold_case names path \
             parameters ({{owner}} in /repos/{{owner}}/...) and fields (fields: {{ {name}: \
             body.{name} }})"
        ))
    }
}

/// Checks that the entries of one action give each field one type, and gives `fields` to every
/// entry of an action that has fields: one action has one context type, and a policy reading
/// `context.fields` must find it on each of them.
fn unify_fields(operations: &mut [Operation], errors: &mut Vec<SpecError>) {
    let mut by_action: HashMap<Arc<str>, Vec<Field>> = HashMap::new();
    for (i, op) in operations.iter().enumerate() {
        let Some(fields) = &op.fields else { continue };
        let all = by_action.entry(Arc::clone(&op.action)).or_default();
        for field in fields {
            match all.iter().find(|f| f.name == field.name) {
                Some(known) if known.kind != field.kind => errors.push(SpecError {
                    key: format!("operations[{i}].fields.{}", field.name),
                    message: format!(
                        "another entry of action {:?} gives field {:?} another type",
                        op.name, field.name
                    ),
                }),
                Some(_) => {}
                None => all.push(field.clone()),
            }
        }
    }
    for op in operations.iter_mut() {
        if op.fields.is_none() && by_action.contains_key(&op.action) {
            // Its context has `fields` too, without any: `context.fields has x` is false.
            op.fields = Some(Vec::new());
        }
    }
}

/// Whether `name` may name a REST connector (its actions' namespace): lower-case ASCII
/// letters, digits, `-` and `_`.
fn is_connector_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_'))
}

impl Node {
    fn insert(&mut self, segments: &[Segment]) -> &mut Node {
        let mut node = self;
        for segment in segments {
            node = match segment {
                Segment::Literal(l) => {
                    &mut node
                        .literals
                        .entry(l.to_ascii_lowercase())
                        .or_insert_with(|| (l.clone(), Node::default()))
                        .1
                }
                Segment::Param(_) => node.param.get_or_insert_with(Box::default),
                Segment::Multi(_) => node.multi.get_or_insert_with(Box::default),
            };
        }
        node
    }

    /// The operation index for `segments[at..]`, recording each parameter's segment range in
    /// `captured` and each literal's spelling in `spelled`; literals first, then a one-segment
    /// parameter, then a multi-segment one taking as few segments as it can.
    fn find<'t>(
        &'t self,
        method: &Method,
        segments: &[(&str, String)],
        at: usize,
        captured: &mut Vec<(usize, usize)>,
        spelled: &mut Vec<&'t str>,
    ) -> Option<usize> {
        let Some((_, decoded)) = segments.get(at) else {
            return self.ends.get(method).copied();
        };
        if let Some((spelling, child)) = self.literals.get(&decoded.to_ascii_lowercase()) {
            spelled.push(spelling);
            if let Some(found) = child.find(method, segments, at + 1, captured, spelled) {
                return Some(found);
            }
            spelled.pop();
        }
        if let Some(child) = &self.param {
            captured.push((at, at + 1));
            if let Some(found) = child.find(method, segments, at + 1, captured, spelled) {
                return Some(found);
            }
            captured.pop();
        }
        if let Some(child) = &self.multi {
            for end in at + 1..=segments.len() {
                captured.push((at, end));
                if let Some(found) = child.find(method, segments, end, captured, spelled) {
                    return Some(found);
                }
                captured.pop();
            }
        }
        None
    }
}

/// The segments of template `path`, or what is wrong with it.
fn parse_template(path: &str) -> Result<Vec<Segment>, String> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(format!("{path:?} must start with /"));
    };
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let mut names = Vec::new();
    let mut out = Vec::new();
    for segment in rest.split('/') {
        if segment.is_empty() {
            return Err(format!(
                "{path:?} has an empty segment (`//` or a trailing /)"
            ));
        }
        if let Some(inner) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let (name, multi) = match inner.strip_suffix('+') {
                Some(name) => (name, true),
                None => (inner, false),
            };
            if !is_identifier(name) {
                return Err(format!(
                    "{{{inner}}} in {path:?}: a parameter is named by letters, digits and _"
                ));
            }
            if names.contains(&name) {
                return Err(format!("{path:?} names parameter {name:?} twice"));
            }
            names.push(name);
            out.push(if multi {
                Segment::Multi(name.to_owned())
            } else {
                Segment::Param(name.to_owned())
            });
        } else if segment.contains(['{', '}']) {
            return Err(format!(
                "segment {segment:?} of {path:?}: a parameter takes a whole segment ({{name}})"
            ));
        } else if matches!(segment, "." | "..")
            || !segment
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'%' | b'?' | b'#' | b'\\'))
        {
            return Err(format!(
                "segment {segment:?} of {path:?} must be printable ASCII without %, ?, #, \\ \
                 and not . or .."
            ));
        } else {
            out.push(Segment::Literal(segment.to_owned()));
        }
    }
    Ok(out)
}

/// The fields of one operation, or the name of the first bad one and why.
fn compile_fields(
    specs: &BTreeMap<String, FieldSpec>,
) -> Result<Option<Vec<Field>>, (String, String)> {
    if specs.is_empty() {
        return Ok(None);
    }
    let mut fields = Vec::with_capacity(specs.len());
    for (name, spec) in specs {
        let fail = |m: String| (name.clone(), m);
        if !is_identifier(name) {
            return Err(fail(format!(
                "{name:?} is not a field name: letters, digits and _ (policies write \
                 context.fields.{name})"
            )));
        }
        let (from, kind) = spec.parts();
        let source = parse_source(from).map_err(fail)?;
        let many = matches!(&source, FieldSource::Body(steps) if steps.iter().any(|s| s.each));
        if many && kind != FieldKind::Strings {
            return Err(fail(format!(
                "{from:?} reaches every element of an array: give it type: strings"
            )));
        }
        fields.push(Field {
            name: Arc::from(name.as_str()),
            source,
            kind,
        });
    }
    Ok(Some(fields))
}

/// `query.<name>` or `body.<key>[.<key>...]`, each key possibly followed by `[]`.
fn parse_source(from: &str) -> Result<FieldSource, String> {
    let bad = || {
        format!(
            "{from:?} must be query.<name> or body.<key>[.<key>...] (a key followed by [] \
             reads every element of an array)"
        )
    };
    if let Some(name) = from.strip_prefix("query.") {
        if name.is_empty() {
            return Err(bad());
        }
        return Ok(FieldSource::Query(name.to_owned()));
    }
    let Some(path) = from.strip_prefix("body.") else {
        return Err(bad());
    };
    let mut steps = Vec::new();
    for part in path.split('.') {
        let (key, each) = match part.strip_suffix("[]") {
            Some(key) => (key, true),
            None => (part, false),
        };
        if key.is_empty() || key.contains(['[', ']']) {
            return Err(bad());
        }
        steps.push(BodyStep {
            key: key.to_owned(),
            each,
        });
    }
    Ok(FieldSource::Body(steps))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(action: &str, method: &str, path: &str) -> OperationSpec {
        OperationSpec {
            action: action.into(),
            method: method.into(),
            path: path.into(),
            fields: BTreeMap::new(),
            read: None,
        }
    }

    fn segments(path: &str) -> Vec<(&str, String)> {
        path.trim_start_matches('/')
            .split('/')
            .map(|s| (s, s.to_owned()))
            .collect()
    }

    fn table() -> Operations {
        Operations::compile(
            "github",
            &[
                spec("repos.get", "GET", "/repos/{owner}/{repo}"),
                spec("issues.create", "POST", "/repos/{owner}/{repo}/issues"),
                spec("issues.list", "GET", "/repos/{owner}/{repo}/issues"),
                spec("user.repos", "GET", "/user/repos"),
                spec("users.get", "GET", "/users/{username}"),
                spec(
                    "repos.get-branch",
                    "GET",
                    "/repos/{owner}/{repo}/branches/{branch+}",
                ),
                spec(
                    "repos.get-protection",
                    "GET",
                    "/repos/{owner}/{repo}/branches/{branch+}/protection",
                ),
            ],
        )
        .expect("valid operations")
    }

    fn found(t: &Operations, method: Method, path: &str) -> Option<(String, Vec<String>, String)> {
        let segments = segments(path);
        t.find(&method, &segments).map(|m| {
            let path = m.path(&m.values);
            (m.operation.action.to_string(), m.values, path)
        })
    }

    #[test]
    fn a_request_finds_its_operation_by_method_and_template() {
        let t = table();
        assert_eq!(
            found(&t, Method::POST, "/repos/acme/app/issues"),
            Some((
                "github:issues.create".into(),
                vec!["acme".into(), "app".into()],
                "/repos/acme/app/issues".into()
            ))
        );
        assert_eq!(
            found(&t, Method::GET, "/repos/acme/app/issues").map(|f| f.0),
            Some("github:issues.list".into())
        );
        assert_eq!(found(&t, Method::DELETE, "/repos/acme/app/issues"), None);
        assert_eq!(found(&t, Method::GET, "/repos/acme"), None);
        assert_eq!(found(&t, Method::GET, "/repos/acme/app/issues/1"), None);
    }

    /// A server answers a HEAD with its GET handler: a HEAD where no HEAD operation is is the
    /// GET operation there, its parameters read alike; a HEAD operation, when listed, wins.
    #[test]
    fn a_head_is_the_get_operation_of_its_path_unless_one_of_its_own_is_listed() {
        let t = table();
        assert_eq!(
            found(&t, Method::HEAD, "/repos/acme/secret"),
            Some((
                "github:repos.get".into(),
                vec!["acme".into(), "secret".into()],
                "/repos/acme/secret".into()
            ))
        );
        let (action, values, _) =
            found(&t, Method::HEAD, "/repos/o/r/branches/feature/x").expect("branch");
        assert_eq!(
            (action.as_str(), values[2].as_str()),
            ("github:repos.get-branch", "feature/x")
        );
        // Only a GET is stood in for: a path with a POST operation alone has none for HEAD.
        let post_only = Operations::compile(
            "github",
            &[spec(
                "issues.create",
                "POST",
                "/repos/{owner}/{repo}/issues",
            )],
        )
        .expect("valid operations");
        assert_eq!(found(&post_only, Method::HEAD, "/repos/o/r/issues"), None);
        let own = Operations::compile(
            "github",
            &[
                spec("repos.get", "GET", "/repos/{owner}/{repo}"),
                spec("repos.exists", "HEAD", "/repos/{owner}/{repo}"),
            ],
        )
        .expect("valid operations");
        assert_eq!(
            found(&own, Method::HEAD, "/repos/o/r").map(|f| f.0),
            Some("github:repos.exists".into())
        );
    }

    #[test]
    fn literals_match_in_any_case_and_go_upstream_as_the_template_spells_them() {
        let t = table();
        assert_eq!(
            found(&t, Method::POST, "/REPOS/acme/App/Issues"),
            Some((
                "github:issues.create".into(),
                vec!["acme".into(), "App".into()],
                "/repos/acme/App/issues".into()
            ))
        );
    }

    #[test]
    fn a_literal_beats_a_parameter_and_a_multi_segment_parameter_takes_what_it_must() {
        let t = table();
        assert_eq!(
            found(&t, Method::GET, "/user/repos").map(|f| f.0),
            Some("github:user.repos".into())
        );
        let (action, values, _) =
            found(&t, Method::GET, "/repos/o/r/branches/feature/x").expect("branch");
        assert_eq!(action, "github:repos.get-branch");
        assert_eq!(values[2], "feature/x");
        let (action, values, _) =
            found(&t, Method::GET, "/repos/o/r/branches/feature/x/protection").expect("protection");
        assert_eq!(action, "github:repos.get-protection");
        assert_eq!(values[2], "feature/x");
    }

    #[test]
    fn mistakes_in_operations_name_their_key() {
        let mut dup = spec("issues.again", "POST", "/repos/{a}/{b}/issues");
        dup.fields
            .insert("title".into(), FieldSpec::From("body.title".into()));
        let errors = Operations::compile(
            "github",
            &[
                spec("issues.create", "POST", "/repos/{owner}/{repo}/issues"),
                dup,
                spec("bad name", "GET", "/x"),
                spec("x", "get", "/x"),
                spec("y", "GET", "/a/{b}c"),
                spec("z", "GET", "/a//b"),
                spec("w", "GET", "/a/{b}/{b}"),
                OperationSpec {
                    fields: BTreeMap::from([(
                        "labels".into(),
                        FieldSpec::From("body.labels[].name".into()),
                    )]),
                    ..spec("v", "POST", "/v")
                },
            ],
        )
        .expect_err("mistakes");
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "operations[1].path",
                "operations[2].action",
                "operations[3].method",
                "operations[4].path",
                "operations[5].path",
                "operations[6].path",
                "operations[7].fields.labels",
            ],
            "{errors:?}"
        );
        assert!(
            Operations::compile("llm", &[]).is_err(),
            "Warden's own namespaces are reserved"
        );
    }

    #[test]
    fn fold_case_names_path_parameters_and_text_fields() {
        let folded = table()
            .folding_case(&["owner".to_owned(), "repo".to_owned()])
            .expect("parameters");
        assert!(folded.folds_case("repo"));
        assert!(!folded.folds_case("username"));
        let errors = table()
            .folding_case(&["owner".to_owned(), "title".to_owned()])
            .expect_err("title is no parameter");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].key, "fold_case[1]");
        assert!(errors[0].message.contains("\"title\""), "{errors:?}");

        let mut post = spec("chat.postMessage", "POST", "/chat.postMessage");
        post.fields
            .insert("channel".into(), FieldSpec::From("body.channel".into()));
        post.fields.insert(
            "users".into(),
            FieldSpec::Typed {
                from: "query.users".into(),
                kind: FieldKind::Strings,
            },
        );
        post.fields.insert(
            "count".into(),
            FieldSpec::Typed {
                from: "body.count".into(),
                kind: FieldKind::Long,
            },
        );
        let slack = || Operations::compile("slack", std::slice::from_ref(&post)).unwrap();
        let folded = slack()
            .folding_case(&["channel".to_owned(), "users".to_owned()])
            .expect("text fields");
        assert!(folded.folds_case("channel") && folded.folds_case("users"));
        let errors = slack()
            .folding_case(&["count".to_owned()])
            .expect_err("count is a number");
        assert_eq!(errors[0].key, "fold_case[0]");
        assert!(errors[0].message.contains("type Long"), "{errors:?}");
    }

    #[test]
    fn a_matched_path_is_rebuilt_from_the_values_given() {
        let t = table();
        let segments = segments("/REPOS/acme/app/branches/feature/x");
        let matched = t.find(&Method::GET, &segments).expect("branch");
        let judged = [
            "acme".to_owned(),
            "app".to_owned(),
            "feature/x y".to_owned(),
        ];
        assert_eq!(
            matched.path(&judged),
            "/repos/acme/app/branches/feature/x%20y",
            "literals as spelled, values encoded segment by segment"
        );
    }
}
