//! The schema of a policy directory: Warden's `schema.cedarschema` and the schema fragments
//! beside it (any other `*.cedarschema`: a connector's actions, the argument types of an MCP
//! server's tools), composed into one schema. Every problem is reported with its file and,
//! where Cedar gives one, its line.

use std::path::{Path, PathBuf};

use cedar_policy::{Schema, SchemaFragment};
use serde_json::Value;

use super::error::{PolicyError, PolicyErrorKind, Position, flatten_diagnostic};
use super::fragment::SchemaFragment as SchemaFragment_;
use super::tool_schemas::{self, ToolTypes};

/// The schema's file name inside a policy directory.
pub const SCHEMA_FILE: &str = "schema.cedarschema";

/// A policy directory's schema files, composed.
pub(crate) struct Schemas {
    /// Every file together.
    pub schema: Schema,
    /// Warden's `schema.cedarschema` in Cedar's JSON form: the base of the schemas for
    /// policies on tool arguments (`tool_schemas::specialized`).
    pub base: Value,
    /// The other files without the tools' argument types: what the schemas for policies
    /// on tool arguments take from them.
    pub others: Vec<SchemaFragment>,
    /// The tools whose arguments the files type.
    pub tools: ToolTypes,
}

/// Whether `path` names a schema file.
pub(crate) fn is_schema_file(path: &Path) -> bool {
    path.extension().is_some_and(|x| x == "cedarschema")
}

/// Reads `dir/schema.cedarschema` and the fragments `others` (paths relative to `dir`), adds
/// `extra` (schema text made in memory), and composes them; `None`, with the problems in `errors`, when they do not make a schema.
pub(crate) fn load(
    dir: &Path,
    others: &[PathBuf],
    extra: &[SchemaFragment_],
    errors: &mut Vec<PolicyError>,
) -> Option<Schemas> {
    let before = errors.len();
    let base_path = dir.join(SCHEMA_FILE);
    let mut tools = ToolTypes::default();
    let base = read_fragment(&base_path, Path::new(SCHEMA_FILE), errors, &mut tools);
    let mut fragments = Vec::with_capacity(others.len());
    let mut paths = Vec::with_capacity(others.len());
    for rel in others {
        let path = dir.join(rel);
        if path == base_path {
            continue;
        }
        if let Some(fragment) = read_fragment(&path, rel, errors, &mut tools) {
            fragments.push(fragment);
            paths.push(path);
        }
    }
    // Text made in memory (the routed connectors' actions), named by where it came from.
    for e in extra {
        if let Some(fragment) = parse_fragment(&e.origin, &e.origin, &e.text, errors, &mut tools) {
            fragments.push(fragment);
            paths.push(e.origin.clone());
        }
    }
    let base = base?;
    if errors.len() != before {
        return None;
    }
    let base_json = match base.clone().to_json_value() {
        Ok(json) => json,
        Err(e) => {
            errors.push(schema_error(&base_path, None, e.to_string()));
            return None;
        }
    };
    let all = || std::iter::once(base.clone()).chain(fragments.iter().cloned());
    let schema = match Schema::from_schema_fragments(all()) {
        Ok(schema) => schema,
        Err(e) => {
            // Name the first fragment that does not compose with those before it.
            let culprit = (0..fragments.len())
                .find(|&n| {
                    Schema::from_schema_fragments(
                        std::iter::once(base.clone()).chain(fragments[..=n].iter().cloned()),
                    )
                    .is_err()
                })
                .map_or(base_path.as_path(), |n| paths[n].as_path());
            for (_, message) in flatten_diagnostic(&e) {
                errors.push(schema_error(culprit, None, message));
            }
            return None;
        }
    };
    let mut others = Vec::with_capacity(fragments.len());
    for (fragment, path) in fragments.iter().zip(&paths) {
        match tool_schemas::without_tools(fragment) {
            Ok(other) => others.push(other),
            Err(message) => {
                errors.push(schema_error(path, None, message));
                return None;
            }
        }
    }
    Some(Schemas {
        schema,
        base: base_json,
        others,
        tools,
    })
}

fn schema_error(path: &Path, position: Option<Position>, message: String) -> PolicyError {
    PolicyError::new(path, position, PolicyErrorKind::Schema(message))
}

/// Reads one schema file (`rel` in the policy directory) and the tool argument types it
/// declares.
fn read_fragment(
    path: &Path,
    rel: &Path,
    errors: &mut Vec<PolicyError>,
    tools: &mut ToolTypes,
) -> Option<SchemaFragment> {
    let text = match super::policy_file::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && path.ends_with(SCHEMA_FILE) => {
            errors.push(PolicyError::new(path, None, PolicyErrorKind::MissingSchema));
            return None;
        }
        Err(e) => {
            errors.push(PolicyError::new(path, None, PolicyErrorKind::Io(e)));
            return None;
        }
    };
    parse_fragment(path, rel, &text, errors, tools)
}

/// Parses schema text from `path` (`rel` as messages name it) in Cedar's schema syntax, or
/// in its JSON syntax when it starts with `{`, and reads the tool argument types it declares.
pub(crate) fn parse_fragment(
    path: &Path,
    rel: &Path,
    text: &str,
    errors: &mut Vec<PolicyError>,
    tools: &mut ToolTypes,
) -> Option<SchemaFragment> {
    let parsed = if text.trim_start().starts_with('{') {
        SchemaFragment::from_json_str(text).map_err(|e| flatten_diagnostic(&e))
    } else {
        SchemaFragment::from_cedarschema_str(text)
            .map(|(fragment, _warnings)| fragment)
            .map_err(|e| flatten_diagnostic(&e))
    };
    match parsed {
        Ok(fragment) => {
            tools.read(&fragment, path, rel, text, errors);
            Some(fragment)
        }
        Err(problems) => {
            for (offset, message) in problems {
                let pos = offset.map(|o| Position::of_offset(text, o));
                errors.push(schema_error(path, pos, message));
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fragments_in_either_syntax_with_their_tools() {
        let cedar = "@mcp_server(\"fs\")\nnamespace Mcp_fs {\n  @mcp_tool(\"w\")\n  type w = { \"path\": String };\n}\n";
        let (fragment, _) = SchemaFragment::from_cedarschema_str(cedar).expect("parses");
        let json = fragment.to_json_string().expect("json");
        for text in [cedar, json.as_str()] {
            let mut tools = ToolTypes::default();
            let mut errors = Vec::new();
            let parsed = parse_fragment(
                Path::new("x"),
                Path::new("x"),
                text,
                &mut errors,
                &mut tools,
            );
            assert!(parsed.is_some() && errors.is_empty(), "{errors:?}");
            let resource = crate::action::Resource::Tool {
                server: "fs".into(),
                name: "w".into(),
            };
            assert!(matches!(
                tools.arguments_of(&resource),
                super::super::arguments::ToolArguments::Typed { .. }
            ));
        }
        let mut errors = Vec::new();
        let parsed = parse_fragment(
            Path::new("bad.cedarschema"),
            Path::new("bad.cedarschema"),
            "namespace X {\n  type t = { \"a\" String };\n}\n",
            &mut errors,
            &mut ToolTypes::default(),
        );
        assert!(parsed.is_none());
        assert!(
            errors[0].to_string().starts_with("bad.cedarschema:2:"),
            "{errors:?}"
        );
    }
}
