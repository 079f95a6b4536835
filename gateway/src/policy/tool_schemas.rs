//! Tool argument types from schema fragments, and the schemas policies on arguments are
//! validated against.
//!
//! Cedar gives each action one context type, but every tool of every MCP server takes
//! different arguments, and `tools/call` stays one action (`mcp:call_tool`) on
//! `Tool::"<server>/<tool>"`. So a schema fragment (written by `warden policy schema
//! --from-mcp`) declares each tool's arguments as a common type in a namespace of its own,
//! annotated with the server and tool names:
//!
//! ```cedarschema
//! @mcp_server("filesystem")
//! namespace Mcp_filesystem {
//!   @mcp_tool("write_file")
//!   type write_file = { "path": String, "content": String };
//! }
//! ```
//!
//! and Warden validates each policy that reads `context.arguments` once per tool its
//! resource scope reaches, in a schema where `mcp:call_tool`'s context has that tool's
//! arguments ([`specialized`]). `resource == Tool::"filesystem/write_file"` reaches one
//! tool, `resource in McpServer::"filesystem"` every tool of the fragment, an unconstrained
//! resource every typed tool and the tools no fragment describes (whose arguments are the
//! empty record of the base schema, `ToolArguments`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use cedar_policy::{ResourceConstraint, Schema, SchemaFragment};
use serde_json::Value;

use super::arguments::{ArgType, Attribute, ToolArguments};
use super::error::{PolicyError, PolicyErrorKind, Position};
use crate::action::Resource;

/// The namespace annotation naming the MCP server a fragment types.
pub(crate) const SERVER_ANNOTATION: &str = "mcp_server";

/// The common type annotation naming the tool whose arguments it is.
pub(crate) const TOOL_ANNOTATION: &str = "mcp_tool";

/// The base schema's type for a value given as its JSON text.
pub(crate) const JSON_TEXT: &str = "JsonText";

/// Nesting of argument types read at most.
const MAX_TYPE_DEPTH: usize = 32;

/// One typed tool.
#[derive(Debug, Clone)]
struct ToolType {
    /// Its arguments.
    ty: Arc<ArgType>,
    /// Their declaration in Cedar's JSON form, which names no other type but built-in ones
    /// and the base schema's `JsonText` (`arg_type` refuses any other).
    definition: Value,
    /// The fragment's file in the policy directory, as messages name it (also to agents:
    /// never the directory itself).
    file: Arc<str>,
}

/// The tools whose arguments the schema fragments type.
#[derive(Debug, Clone, Default)]
pub(crate) struct ToolTypes {
    /// By tool id (`filesystem/write_file`), in id order.
    tools: BTreeMap<String, ToolType>,
    /// The servers the fragments describe, and the file of each.
    servers: HashMap<String, Arc<str>>,
}

/// Which tools a policy's resource scope reaches, for `mcp:call_tool`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Reach {
    /// Typed tools, by id.
    pub typed: Vec<String>,
    /// Tools no fragment describes (arguments `{}`).
    pub untyped: bool,
    /// Tools named in the scope that their server's fragment does not list.
    pub unlisted: Vec<(String, Arc<str>)>,
}

impl ToolTypes {
    /// What policies know of the arguments of `resource` (an MCP server's tool).
    pub(crate) fn arguments_of(&self, resource: &Resource) -> ToolArguments {
        let Resource::Tool { server, name } = resource else {
            return ToolArguments::Hidden;
        };
        let Some(file) = self.servers.get(&**server) else {
            return ToolArguments::Hidden;
        };
        match self.tools.get(&format!("{server}/{name}")) {
            Some(tool) => ToolArguments::Typed {
                ty: Arc::clone(&tool.ty),
                file: Arc::clone(&tool.file),
            },
            None => ToolArguments::Unknown {
                file: Arc::clone(file),
            },
        }
    }

    /// The declaration of the tool `id`'s arguments (Cedar's JSON form), and the fragment
    /// declaring it.
    pub(crate) fn definition(&self, id: &str) -> Option<(&Value, &str)> {
        self.tools.get(id).map(|t| (&t.definition, &*t.file))
    }

    /// The tools `mcp:call_tool` can be judged on under a policy with this resource scope.
    pub(crate) fn reach(&self, scope: &ResourceConstraint) -> Reach {
        let all = || Reach {
            typed: self.tools.keys().cloned().collect(),
            untyped: true,
            unlisted: Vec::new(),
        };
        let untyped = Reach {
            untyped: true,
            ..Reach::default()
        };
        let uid = match scope {
            ResourceConstraint::Any => return all(),
            ResourceConstraint::Is(ty) if ty.to_string() == "Tool" => return all(),
            ResourceConstraint::Is(_) => return untyped,
            ResourceConstraint::Eq(uid)
            | ResourceConstraint::In(uid)
            | ResourceConstraint::IsIn(_, uid) => uid,
        };
        let id: &str = uid.id().unescaped();
        match uid.type_name().to_string().as_str() {
            "Tool" => {
                let server = id.split_once('/').map_or(id, |(server, _)| server);
                match (self.tools.get(id), self.servers.get(server)) {
                    (Some(_), _) => Reach {
                        typed: vec![id.to_owned()],
                        ..Reach::default()
                    },
                    (None, Some(file)) => Reach {
                        unlisted: vec![(id.to_owned(), Arc::clone(file))],
                        ..Reach::default()
                    },
                    (None, None) => untyped,
                }
            }
            "McpServer" if self.servers.contains_key(id) => Reach {
                typed: self
                    .tools
                    .keys()
                    .filter(|t| t.split_once('/').is_some_and(|(s, _)| s == id))
                    .cloned()
                    .collect(),
                ..Reach::default()
            },
            _ => untyped,
        }
    }

    /// Reads the tool types of one schema file (`fragment`, parsed from `text`, at `path`,
    /// `rel` in the policy directory); problems go to `errors` with their line.
    pub(crate) fn read(
        &mut self,
        fragment: &SchemaFragment,
        path: &Path,
        rel: &Path,
        text: &str,
        errors: &mut Vec<PolicyError>,
    ) {
        let file: Arc<str> = Arc::from(rel.display().to_string());
        let at = |needle: &str| text.find(needle).map(|o| Position::of_offset(text, o));
        let mut error = |needle: &str, message: String| {
            errors.push(PolicyError::new(
                path,
                at(needle),
                PolicyErrorKind::Schema(message),
            ));
        };
        let json = match fragment.clone().to_json_value() {
            Ok(json) => json,
            Err(e) => return error("", e.to_string()),
        };
        let Some(namespaces) = json.as_object() else {
            return;
        };
        for body in namespaces.values() {
            let server = body
                .pointer(&format!("/annotations/{SERVER_ANNOTATION}"))
                .and_then(Value::as_str);
            let Some(types) = body.get("commonTypes").and_then(Value::as_object) else {
                continue;
            };
            for definition in types.values() {
                let Some(tool) = definition
                    .pointer(&format!("/annotations/{TOOL_ANNOTATION}"))
                    .and_then(Value::as_str)
                else {
                    continue;
                };
                let needle = format!("@{TOOL_ANNOTATION}(\"{tool}\")");
                let Some(server) = server else {
                    error(
                        &needle,
                        format!(
                            "@{TOOL_ANNOTATION}(\"{tool}\") is outside a namespace with \
                             @{SERVER_ANNOTATION}(\"<server>\"): put it in the namespace of \
                             its MCP server"
                        ),
                    );
                    continue;
                };
                let ty = match arg_type(definition, 0) {
                    Ok(ty @ ArgType::Record(_)) => ty,
                    Ok(_) => {
                        error(
                            &needle,
                            format!("the arguments of tool `{tool}` must be a record type"),
                        );
                        continue;
                    }
                    Err(message) => {
                        error(
                            &needle,
                            format!("the arguments of tool `{tool}`: {message}"),
                        );
                        continue;
                    }
                };
                let id = format!("{server}/{tool}");
                if let Some(first) = self.tools.get(&id) {
                    error(
                        &needle,
                        format!(
                            "tool `{id}` is typed twice: also in {}; keep one",
                            first.file
                        ),
                    );
                    continue;
                }
                let mut definition = definition.clone();
                if let Some(map) = definition.as_object_mut() {
                    map.remove("annotations");
                }
                self.tools.insert(
                    id,
                    ToolType {
                        ty: Arc::new(ty),
                        definition,
                        file: Arc::clone(&file),
                    },
                );
            }
            if let Some(server) = server {
                match self.servers.get(server) {
                    Some(first) if **first != *file => error(
                        &format!("@{SERVER_ANNOTATION}(\"{server}\")"),
                        format!(
                            "MCP server `{server}` is described twice: also in {first}; keep \
                             one fragment per server"
                        ),
                    ),
                    _ => {
                        self.servers.insert(server.to_owned(), Arc::clone(&file));
                    }
                }
            }
        }
    }
}

/// An argument type from a fragment's JSON form.
fn arg_type(json: &Value, depth: usize) -> Result<ArgType, String> {
    if depth > MAX_TYPE_DEPTH {
        return Err(format!("types nest deeper than {MAX_TYPE_DEPTH} levels"));
    }
    let named = |name: &str| -> Result<ArgType, String> {
        Ok(match name.trim_start_matches("__cedar::") {
            "String" => ArgType::String,
            "Long" => ArgType::Long,
            "Bool" | "Boolean" => ArgType::Bool,
            "decimal" => ArgType::Decimal,
            JSON_TEXT => ArgType::JsonText,
            other => {
                return Err(format!(
                    "type `{other}` cannot be an argument: use String, Long, Bool, decimal, \
                     {JSON_TEXT}, Set<...> and records"
                ));
            }
        })
    };
    let name = || json.get("name").and_then(Value::as_str).unwrap_or_default();
    match json.get("type").and_then(Value::as_str).unwrap_or_default() {
        "Set" => Ok(ArgType::Set(Box::new(arg_type(
            json.get("element").unwrap_or(&Value::Null),
            depth + 1,
        )?))),
        "Record" => {
            let mut attributes = Vec::new();
            if let Some(attrs) = json.get("attributes").and_then(Value::as_object) {
                for (attr, definition) in attrs {
                    attributes.push(Attribute {
                        name: attr.clone(),
                        required: definition
                            .get("required")
                            .and_then(Value::as_bool)
                            .unwrap_or(true),
                        ty: arg_type(definition, depth + 1)
                            .map_err(|e| format!("`{attr}`: {e}"))?,
                    });
                }
            }
            Ok(ArgType::Record(attributes))
        }
        "Extension" | "EntityOrCommon" | "Entity" => named(name()),
        other => named(other),
    }
}

/// A fragment without the tools' argument types (common types with `@mcp_tool`): what the
/// schemas of [`specialized`] take from it, so that each is built in time independent of the
/// number of tools.
pub(crate) fn without_tools(fragment: &SchemaFragment) -> Result<SchemaFragment, String> {
    let mut json = fragment
        .clone()
        .to_json_value()
        .map_err(|e| e.to_string())?;
    if let Some(namespaces) = json.as_object_mut() {
        for body in namespaces.values_mut() {
            if let Some(types) = body.get_mut("commonTypes").and_then(Value::as_object_mut) {
                types.retain(|_, t| {
                    t.pointer(&format!("/annotations/{TOOL_ANNOTATION}"))
                        .is_none()
                });
            }
        }
    }
    SchemaFragment::from_json_value(json).map_err(|e| e.to_string())
}

/// The schema in which the context of `mcp:call_tool` (`ToolContext`) and of
/// `mcp:receive_result` (`ResultContext`, the tool's answer) carries, as `arguments`, the
/// type `definition` (Cedar's JSON form, naming only built-in types and `JsonText`): the base
/// schema (`base`, in Cedar's JSON form) with those changes, linked with `fragments`.
pub(crate) fn specialized(
    base: &Value,
    fragments: &[SchemaFragment],
    definition: &Value,
) -> Result<Schema, String> {
    let mut base = base.clone();
    let empty = base
        .get_mut("")
        .ok_or("the base schema has no empty namespace")?;
    for (action, context_type) in [
        ("mcp:call_tool", "ToolContext"),
        ("mcp:receive_result", "ResultContext"),
    ] {
        let mut context = empty
            .pointer(&format!("/commonTypes/{context_type}"))
            .cloned()
            .ok_or_else(|| format!("the base schema declares no `{context_type}`"))?;
        if let Some(map) = context.as_object_mut() {
            map.remove("annotations");
        }
        let arguments = context
            .pointer_mut("/attributes/arguments")
            .ok_or_else(|| format!("`{context_type}` has no `arguments`"))?;
        *arguments = definition.clone();
        let applies = empty
            .pointer_mut(&format!("/actions/{action}/appliesTo"))
            .ok_or_else(|| format!("the base schema does not declare `{action}`"))?;
        applies["context"] = context;
    }
    let base = SchemaFragment::from_json_value(base).map_err(|e| e.to_string())?;
    Schema::from_schema_fragments(std::iter::once(base).chain(fragments.iter().cloned()))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cedar_policy::EntityUid;
    use serde_json::json;
    use std::str::FromStr;

    const FRAGMENT: &str = r#"
@mcp_server("fs")
namespace Mcp_fs {
  @mcp_tool("write_file")
  type write_file = { "path": String, "content": String, "dry-run"?: Bool };
  @mcp_tool("list")
  type list = { "paths": Set<String>, "depth"?: Long, "ratio"?: decimal, "filter"?: JsonText };
}
"#;

    fn read(text: &str) -> (ToolTypes, Vec<PolicyError>) {
        let (fragment, _) = SchemaFragment::from_cedarschema_str(text).expect("parses");
        let mut types = ToolTypes::default();
        let mut errors = Vec::new();
        types.read(
            &fragment,
            Path::new("p/mcp-fs.cedarschema"),
            Path::new("mcp-fs.cedarschema"),
            text,
            &mut errors,
        );
        (types, errors)
    }

    fn tool(server: &str, name: &str) -> Resource {
        Resource::Tool {
            server: Arc::from(server),
            name: name.into(),
        }
    }

    #[test]
    fn reads_each_tools_arguments_from_its_annotated_common_type() {
        let (types, errors) = read(FRAGMENT);
        assert!(errors.is_empty(), "{errors:?}");
        let ToolArguments::Typed { ty, file } = types.arguments_of(&tool("fs", "list")) else {
            panic!("list is typed");
        };
        assert_eq!(&*file, "mcp-fs.cedarschema");
        let ArgType::Record(attributes) = &*ty else {
            panic!("a record");
        };
        let got: Vec<(&str, bool, &ArgType)> = attributes
            .iter()
            .map(|a| (a.name.as_str(), a.required, &a.ty))
            .collect();
        assert!(got.contains(&("paths", true, &ArgType::Set(Box::new(ArgType::String)))));
        assert!(got.contains(&("depth", false, &ArgType::Long)));
        assert!(got.contains(&("ratio", false, &ArgType::Decimal)));
        assert!(got.contains(&("filter", false, &ArgType::JsonText)));
        assert_eq!(
            types
                .definition("fs/write_file")
                .and_then(|(d, _)| d.pointer("/attributes/path/type")),
            Some(&json!("EntityOrCommon"))
        );
        assert!(matches!(
            types.arguments_of(&tool("fs", "delete")),
            ToolArguments::Unknown { .. }
        ));
        assert_eq!(
            types.arguments_of(&tool("github", "x")),
            ToolArguments::Hidden
        );
    }

    #[test]
    fn scopes_reach_the_tools_they_can_match() {
        let (types, _) = read(FRAGMENT);
        let uid = |s: &str| EntityUid::from_str(s).expect("uid");
        let reach = |c: ResourceConstraint| types.reach(&c);
        let one = reach(ResourceConstraint::Eq(uid(r#"Tool::"fs/write_file""#)));
        assert_eq!(one.typed, ["fs/write_file"]);
        assert!(!one.untyped);
        let server = reach(ResourceConstraint::In(uid(r#"McpServer::"fs""#)));
        assert_eq!(server.typed, ["fs/list", "fs/write_file"]);
        assert!(!server.untyped);
        let any = reach(ResourceConstraint::Any);
        assert_eq!(any.typed.len(), 2);
        assert!(any.untyped);
        let other = reach(ResourceConstraint::In(uid(r#"McpServer::"github""#)));
        assert!(other.typed.is_empty() && other.untyped);
        let unlisted = reach(ResourceConstraint::Eq(uid(r#"Tool::"fs/delete""#)));
        assert_eq!(unlisted.unlisted.len(), 1);
    }

    #[test]
    fn refuses_argument_types_cedar_values_cannot_fill() {
        let (_, errors) = read(
            r#"
@mcp_server("fs")
namespace Mcp_fs {
  entity File;
  @mcp_tool("open")
  type open = { "file": File };
}
"#,
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        let text = errors[0].to_string();
        assert!(text.starts_with("p/mcp-fs.cedarschema:5:"), "{text}");
        assert!(
            text.contains("`file`: type `File` cannot be an argument"),
            "{text}"
        );
    }

    #[test]
    fn a_tool_outside_a_server_namespace_is_an_error() {
        let (_, errors) = read(
            r#"
@mcp_tool("open")
type open = { "file": String };
"#,
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].to_string().contains("outside a namespace"));
    }
}
