//! Reads a policy directory: the schema (`schema.cedarschema` and any fragments beside it),
//! every `*.cedar` file, each policy under its `@id`, validated against the schema. Collects
//! every problem instead of stopping at the first.

use super::fragment::SchemaFragment;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;

use cedar_policy::{Entities, Policy, PolicyId, PolicySet, Request, Schema};

use super::actions::{self, FactsKind, sample_context};
use super::annotations::{self, PolicyMeta};
use super::arguments::ToolArguments;
use super::bundle::{self, BundleError, Manifest, Trust};
use super::error::{PolicyError, PolicyErrorKind, PolicyErrors, Position, flatten_diagnostic};
use super::request::{self, CedarNames};
use super::schema_files::{self, SCHEMA_FILE};
use super::tool_schemas::ToolTypes;
use super::validate;
use crate::action::{Action, Principal, PrincipalKind, Resource, Verb};

/// Subdirectories that hold material other than the active policy set.
const SKIPPED_DIRS: [&str; 2] = ["tests", "examples"];

/// The most policy and schema-fragment files a set may have (a real one has tens): past it
/// the walk stops and the set is refused, so that a directory filled with files cannot make a
/// start or a reload read and digest without end.
pub const MAX_POLICY_FILES: usize = 10_000;

/// A validated policy set and what Warden knows about each policy.
pub(crate) struct Loaded {
    pub schema: Schema,
    pub set: PolicySet,
    pub meta: Vec<PolicyMeta>,
    pub warnings: Vec<PolicyError>,
    /// The tools whose arguments the schema fragments type.
    pub tools: ToolTypes,
    /// The set's content digest (`bundle::Manifest::version`).
    pub version: String,
    /// When its verified bundle manifest says it was signed.
    pub signed: Option<SystemTime>,
}

/// Loads `dir/schema.cedarschema`, every other `*.cedarschema` (schema fragments) and every
/// `*.cedar` below `dir` except under `tests/` and `examples/`; when `trust` holds keys, only
/// if `dir` is a bundle signed by one of them that lists exactly those files.
pub(crate) fn load_dir(
    dir: &Path,
    extra: &[SchemaFragment],
    trust: &Trust,
) -> Result<Loaded, PolicyErrors> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    find_policy_files(dir, Path::new(""), &mut files, &mut errors);
    if files.len() > MAX_POLICY_FILES {
        return Err(PolicyErrors(errors));
    }
    files.sort();
    let listed = with_schema(&files);
    let before = Manifest::of(dir, &listed);
    let mut signed = None;
    if !trust.is_empty() && errors.is_empty() {
        let manifest = before.as_ref().map_err(|e| bundle_error(dir, e))?;
        signed = bundle::verify(dir, manifest, trust).map_err(|e| bundle_error(dir, &e))?;
    }
    let mut loaded = load_files(dir, &files, errors, extra)?;
    loaded.signed = signed;
    // What was verified (and what the version names) is what was parsed.
    match before {
        Ok(before) if before.version(extra) == loaded.version => Ok(loaded),
        _ => Err(bundle_error(
            dir,
            &BundleError::Tampered {
                dir: dir.display().to_string(),
                changes: "files changed while the set loaded; reload again".into(),
            },
        )),
    }
}

/// The policy and schema-fragment files below `dir` (relative, sorted), as [`load_dir`] loads
/// them: what a bundle's manifest lists besides `schema.cedarschema`.
pub(crate) fn policy_files(dir: &Path) -> Result<Vec<PathBuf>, PolicyErrors> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    find_policy_files(dir, Path::new(""), &mut files, &mut errors);
    if !errors.is_empty() {
        return Err(PolicyErrors(errors));
    }
    files.sort();
    Ok(files)
}

/// `files` and `schema.cedarschema`: every file a set is made of.
pub(crate) fn with_schema(files: &[PathBuf]) -> Vec<PathBuf> {
    let mut listed = files.to_vec();
    listed.push(PathBuf::from(SCHEMA_FILE));
    listed
}

fn bundle_error(dir: &Path, e: &BundleError) -> PolicyErrors {
    // The error is said of `dir` already: its own message need not name it again.
    let message = e.to_string();
    let message = message
        .strip_prefix(&format!("{}: ", dir.display()))
        .unwrap_or(&message);
    PolicyErrors(vec![PolicyError::new(
        dir,
        None,
        PolicyErrorKind::Bundle(message.to_owned()),
    )])
}

/// Loads `dir/schema.cedarschema` and the given policy files and schema fragments (paths
/// relative to `dir`).
pub(crate) fn load_files(
    dir: &Path,
    files: &[PathBuf],
    mut errors: Vec<PolicyError>,
    extra: &[SchemaFragment],
) -> Result<Loaded, PolicyErrors> {
    let mut warnings = Vec::new();
    let (fragments, policies): (Vec<PathBuf>, Vec<PathBuf>) = files
        .iter()
        .cloned()
        .partition(|f| schema_files::is_schema_file(f));
    // A schema out of step with Warden is reported, and nothing is validated against it.
    let schemas = schema_files::load(dir, &fragments, extra, &mut errors).filter(|schemas| {
        let before = errors.len();
        check_schema_matches_warden(&schemas.schema, &dir.join(SCHEMA_FILE), &mut errors);
        errors.len() == before
    });
    let mut set = PolicySet::new();
    let mut meta: Vec<PolicyMeta> = Vec::new();
    let mut sources: HashMap<PathBuf, String> = HashMap::new();
    for rel in &policies {
        let path = dir.join(rel);
        let text = match super::policy_file::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                errors.push(PolicyError::new(&path, None, PolicyErrorKind::Io(e)));
                continue;
            }
        };
        parse_file(&path, rel, &text, &mut set, &mut meta, &mut errors);
        sources.insert(path, text);
    }
    if let Some(schemas) = &schemas {
        let by_id: HashMap<&str, &PolicyMeta> = meta.iter().map(|m| (&*m.id, m)).collect();
        let place = |policy: &PolicyId, offset: Option<usize>| -> (PathBuf, Option<Position>) {
            match by_id.get(<PolicyId as AsRef<str>>::as_ref(policy)) {
                Some(m) => {
                    let pos = offset
                        .and_then(|o| sources.get(&m.file).map(|t| Position::of_offset(t, o)))
                        .unwrap_or(m.position);
                    (m.file.clone(), Some(pos))
                }
                None => (dir.to_path_buf(), None),
            }
        };
        let outcome = validate::validate(&set, schemas);
        for (policy, offset, message) in outcome.errors {
            let (file, pos) = place(&policy, offset);
            errors.push(PolicyError::new(
                &file,
                pos,
                PolicyErrorKind::Validation(message),
            ));
        }
        for (policy, offset, message) in outcome.warnings {
            let (file, pos) = place(&policy, offset);
            warnings.push(PolicyError::new(
                &file,
                pos,
                PolicyErrorKind::Warning(message),
            ));
        }
    }
    // Digested once the set is known good (an unreadable file is reported above).
    let version = match (&schemas, errors.is_empty()) {
        (Some(_), true) => match Manifest::of(dir, &with_schema(files)) {
            Ok(manifest) => manifest.version(extra),
            Err(e) => return Err(bundle_error(dir, &e)),
        },
        _ => String::new(),
    };
    match schemas {
        Some(schemas) if errors.is_empty() => Ok(Loaded {
            schema: schemas.schema,
            set,
            meta,
            warnings,
            tools: schemas.tools,
            version,
            signed: None,
        }),
        _ => {
            errors.sort_by(|a, b| (&a.file, a.position).cmp(&(&b.file, b.position)));
            Err(PolicyErrors(errors))
        }
    }
}

/// Collects `*.cedar` and `*.cedarschema` files below `dir/rel` (but `dir`'s own
/// `schema.cedarschema`), as paths relative to `dir`.
fn find_policy_files(
    dir: &Path,
    rel: &Path,
    out: &mut Vec<PathBuf>,
    errors: &mut Vec<PolicyError>,
) {
    let here = dir.join(rel);
    let entries = match std::fs::read_dir(&here) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && rel.as_os_str().is_empty() => {
            let guess = crate::config::suggest::nearby_file(&here)
                .map(|meant| format!(" (did you mean `{}`?)", meant.display()))
                .unwrap_or_default();
            errors.push(PolicyError::new(
                &here,
                None,
                PolicyErrorKind::NoDirectory { guess },
            ));
            return;
        }
        Err(e) => {
            errors.push(PolicyError::new(&here, None, PolicyErrorKind::Io(e)));
            return;
        }
    };
    for entry in entries {
        if out.len() > MAX_POLICY_FILES {
            return;
        }
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                errors.push(PolicyError::new(&here, None, PolicyErrorKind::Io(e)));
                continue;
            }
        };
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') {
            continue;
        }
        let child = rel.join(name);
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir {
            if !SKIPPED_DIRS.contains(&name) {
                find_policy_files(dir, &child, out, errors);
            }
        } else if name.ends_with(".cedar")
            || (name.ends_with(".cedarschema") && child != Path::new(SCHEMA_FILE))
        {
            out.push(child);
            if out.len() > MAX_POLICY_FILES {
                errors.push(PolicyError::new(
                    dir,
                    None,
                    PolicyErrorKind::TooManyFiles {
                        bound: MAX_POLICY_FILES,
                    },
                ));
                return;
            }
        }
    }
}

/// Checks that the schema describes what Warden sends: every action it declares has the
/// context Warden builds for it, and for each of Warden's own actions a sample request and its
/// entities validate, on each kind of resource Warden sends with it, with every optional
/// attribute set and with none. A schema edited out of step with Warden fails at load instead
/// of silently never matching.
fn check_schema_matches_warden(schema: &Schema, path: &Path, errors: &mut Vec<PolicyError>) {
    let mismatch = |action: &str, message: String| {
        PolicyError::new(
            path,
            None,
            PolicyErrorKind::SchemaMismatch {
                action: action.to_owned(),
                message,
            },
        )
    };
    let names = match CedarNames::new() {
        Ok(n) => n,
        Err(message) => {
            errors.push(PolicyError::new(
                path,
                None,
                PolicyErrorKind::Schema(message),
            ));
            return;
        }
    };
    let (declared, undeclarable) = actions::declared(schema);
    for e in undeclarable {
        errors.push(mismatch(&e.action, e.message));
    }
    for verb in Verb::BUILT_IN {
        if !declared.iter().any(|d| d.verb == verb) {
            errors.push(mismatch(
                verb.as_str(),
                "the schema does not declare it (copy policies/schema.cedarschema from this \
                 version of Warden)"
                    .into(),
            ));
            continue;
        }
        let failed = sample_actions(&verb)
            .into_iter()
            .find_map(|action| check_sample(schema, &names, &action).err());
        if let Some(message) = failed {
            errors.push(mismatch(verb.as_str(), message));
        }
    }
}

fn check_sample(schema: &Schema, names: &CedarNames, action: &Action) -> Result<(), String> {
    let (principal, verb, resource, context) = request::cedar_parts(
        names,
        &request::IpCache::default(),
        super::context_keys::ContextKeys::all(),
        action,
        &ToolArguments::Hidden,
    )?;
    let on = |e: String| format!("on {}: {e}", action.resource.cedar_type());
    Request::new(principal, verb, resource, context, Some(schema))
        .map_err(|e| on(e.to_string()))?;
    let principal_entity = names.principal_entity(&action.principal)?;
    let (_, resource_entity) = names.resource_entity(&action.resource)?;
    Entities::from_entities([principal_entity, resource_entity], Some(schema))
        .map_err(|e| on(e.to_string()))?;
    Ok(())
}

/// The resources Warden sends `verb` on, with every optional attribute set (`full`) or none.
fn sample_resources(verb: &Verb, full: bool) -> Vec<Resource> {
    let model = Resource::Model {
        provider: Arc::from("openai"),
        name: "gpt-4o".into(),
    };
    let server = Resource::McpServer {
        name: Arc::from("github"),
    };
    match verb {
        Verb::LlmChat | Verb::LlmEmbed => vec![model],
        Verb::LlmModels => vec![
            Resource::Provider {
                name: Arc::from("openai"),
            },
            model,
        ],
        Verb::McpListTools
        | Verb::McpReadResource
        | Verb::McpGetPrompt
        | Verb::McpComplete
        | Verb::McpSample
        | Verb::McpElicit
        | Verb::McpListRoots => vec![server],
        Verb::McpCallTool => vec![Resource::Tool {
            server: Arc::from("github"),
            name: "create_issue".into(),
        }],
        Verb::McpReceiveResult => vec![
            server,
            Resource::Tool {
                server: Arc::from("github"),
                name: "create_issue".into(),
            },
        ],
        Verb::HttpRequest | Verb::Operation(_) => vec![
            Resource::Api {
                name: Arc::from("github"),
            },
            Resource::Operation {
                api: Arc::from("github"),
                name: Arc::from("issues.create"),
                params: if full {
                    vec![(Arc::from("owner"), "acme".into())]
                } else {
                    Vec::new()
                },
            },
        ],
        Verb::EgressConnect | Verb::EgressRequest => vec![Resource::Host {
            name: "pypi.org".into(),
        }],
        Verb::ToolPropose => vec![Resource::AgentTool {
            name: "exec".into(),
            group: full.then(|| Arc::from("shell")),
        }],
        Verb::SecretUse => vec![Resource::Secret {
            path: "secret/agents/ci/github".into(),
        }],
        Verb::ApprovalDecide => vec![Resource::Approval {
            id: Arc::from("a-1"),
            principal: Arc::from("Agent::\"ci-bot\""),
            action: Arc::from("llm:chat"),
            resource: Arc::from("Model::\"openai/gpt-4o\""),
            owner: full.then(|| Arc::from("dave")),
        }],
        Verb::AdminQuarantine | Verb::AdminRelease => vec![
            Resource::Quarantine {
                kind: "agent",
                name: Arc::from("ci-bot"),
            },
            Resource::Quarantine {
                kind: "group",
                name: Arc::from("ci"),
            },
        ],
        Verb::AdminList => vec![Resource::Quarantine {
            kind: "all",
            name: Arc::from("*"),
        }],
        Verb::AdminRevoke => vec![
            Resource::Quarantine {
                kind: "agent",
                name: Arc::from("ci-bot"),
            },
            Resource::Quarantine {
                kind: "token",
                name: Arc::from("0190c3e2-5b7a-7c1e-9f3a-1b2c3d4e5f60"),
            },
        ],
    }
}

/// Sample actions for `verb` as Warden builds them: each resource it is sent on, with every
/// optional fact set and with none.
fn sample_actions(verb: &Verb) -> Vec<Action> {
    let kind = match verb {
        Verb::ApprovalDecide
        | Verb::AdminQuarantine
        | Verb::AdminRelease
        | Verb::AdminList
        | Verb::AdminRevoke => PrincipalKind::User,
        _ => PrincipalKind::Agent,
    };
    let mut out = Vec::new();
    for full in [true, false] {
        let some = |s: &str| full.then(|| Arc::from(s));
        let principal = Arc::new(Principal {
            kind,
            id: Arc::from("sample"),
            issuer: Arc::from("warden"),
            fleet: some("fleet"),
            owner: some("owner"),
            environment: some("prod"),
            scopes: vec![Arc::from("llm")],
            groups: vec![Arc::from("group")],
            client_certificate: some("CN=sample"),
            expires_at: None,
        });
        for resource in sample_resources(verb, full) {
            out.push(Action {
                principal: Arc::clone(&principal),
                verb: verb.clone(),
                resource,
                context: sample_context(FactsKind::of_verb(verb), full),
            });
        }
    }
    out
}

/// Parses one file; adds each static policy under its id to `set` and its metadata to `meta`.
fn parse_file(
    path: &Path,
    rel: &Path,
    text: &str,
    set: &mut PolicySet,
    meta: &mut Vec<PolicyMeta>,
    errors: &mut Vec<PolicyError>,
) {
    let parsed = match PolicySet::from_str(text) {
        Ok(parsed) => parsed,
        Err(e) => {
            for (offset, message) in flatten_diagnostic(&e) {
                let pos = offset.map(|o| Position::of_offset(text, o));
                errors.push(PolicyError::new(
                    path,
                    pos,
                    PolicyErrorKind::Syntax(message),
                ));
            }
            return;
        }
    };
    for template in parsed.templates() {
        let pos = text
            .find(&template.to_cedar())
            .map(|o| Position::of_offset(text, o));
        let name = template.annotation("id").unwrap_or("<no @id>").to_owned();
        errors.push(PolicyError::new(path, pos, PolicyErrorKind::Template(name)));
    }
    // The parser names policies `policy0`, `policy1`, ... in file order.
    let mut policies: Vec<&Policy> = parsed.policies().collect();
    policies.sort_by_key(|p| generated_index(p.id()));
    let mut cursor = 0;
    for policy in policies {
        let offset = policy.to_cedar().and_then(|src| {
            let found = text.get(cursor..)?.find(&src)? + cursor;
            cursor = found + src.len();
            Some(found)
        });
        let position = Position::of_offset(text, offset.unwrap_or(0));
        let id: Arc<str> = match policy.annotation("id") {
            Some(id) if id.trim().is_empty() => {
                errors.push(PolicyError::new(
                    path,
                    Some(position),
                    PolicyErrorKind::Annotation {
                        policy: format!("{}:{}", rel.display(), position.line),
                        message: "@id is empty; name the policy, e.g. @id(\"chat-any-model\")"
                            .into(),
                    },
                ));
                continue;
            }
            Some(id) => Arc::from(id),
            None => Arc::from(format!("{}:{}", rel.display(), position.line)),
        };
        if let Some(first) = meta.iter().find(|m| m.id == id) {
            errors.push(PolicyError::new(
                path,
                Some(position),
                PolicyErrorKind::DuplicateId {
                    id: id.to_string(),
                    first: first.location(),
                },
            ));
            continue;
        }
        let m =
            match annotations::read(policy, id.clone(), path.to_path_buf(), position, meta.len()) {
                Ok(m) => m,
                Err(message) => {
                    errors.push(PolicyError::new(
                        path,
                        Some(position),
                        PolicyErrorKind::Annotation {
                            policy: id.to_string(),
                            message,
                        },
                    ));
                    continue;
                }
            };
        if let Err(e) = set.add(policy.new_id(PolicyId::new(&*id))) {
            errors.push(PolicyError::new(
                path,
                Some(position),
                PolicyErrorKind::Validation(e.to_string()),
            ));
            continue;
        }
        meta.push(m);
    }
}

/// `policy12` → 12; anything else sorts last.
fn generated_index(id: &PolicyId) -> usize {
    let s: &str = id.as_ref();
    s.strip_prefix("policy")
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_error_names_the_directory_once() {
        let e = bundle_error(
            Path::new("cand"),
            &BundleError::Tampered {
                dir: "cand".into(),
                changes: "a.cedar was changed".into(),
            },
        )
        .to_string();
        assert_eq!(e.matches("cand").count(), 1, "{e}");
        assert!(e.contains("a.cedar was changed"), "{e}");
    }

    #[test]
    fn a_named_pipe_in_the_directory_is_refused_instead_of_waited_on() {
        let tmp = tempfile::tempdir().unwrap();
        let schema = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../policies/schema.cedarschema"
        );
        std::fs::copy(schema, tmp.path().join(SCHEMA_FILE)).unwrap();
        let pipe = std::ffi::CString::new(tmp.path().join("x.cedar").to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path and a mode; mkfifo touches nothing else.
        assert_eq!(unsafe { libc::mkfifo(pipe.as_ptr(), 0o600) }, 0);
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let public = key.verifying_key();
        let signed = Trust::of(&[public]);
        let (tx, rx) = std::sync::mpsc::channel();
        let dir = tmp.path().to_path_buf();
        std::thread::spawn(move || {
            for trust in [Trust::default(), signed] {
                let result = load_dir(&dir, &[], &trust).map(|_| ());
                let _ = tx.send(result.map_err(|e| e.to_string()));
            }
        });
        for _ in 0..2 {
            // Bounded: without the check, reading the pipe waits for a writer forever.
            let result = rx
                .recv_timeout(std::time::Duration::from_secs(60))
                .expect("the load returns instead of waiting on the pipe");
            let e = result.unwrap_err();
            assert!(e.contains("x.cedar"), "{e}");
            assert!(e.contains("not a regular file"), "{e}");
        }
    }
}
