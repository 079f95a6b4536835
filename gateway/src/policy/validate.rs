//! Validates a policy set against a directory's schema (Cedar's strict mode), with tool
//! arguments typed per tool.
//!
//! A policy that reads `context.arguments` and can apply to `mcp:call_tool` or
//! `mcp:receive_result` (a tool's answer carries its call's arguments) is validated once for
//! each tool its resource scope reaches (`tool_schemas::ToolTypes::reach`): in a schema where
//! both actions' contexts carry that tool's arguments; on `mcp:receive_result`, a scope that
//! reaches a server itself reaches its prompts' and resources' answers too, whose arguments
//! are untyped (`{}`). Every other policy is validated against the schema as written. An
//! error found for some of the tools only names them.

use std::collections::HashMap;
use std::str::FromStr;

use cedar_policy::{
    ActionConstraint, Entities, EntityUid, Policy, PolicyId, PolicySet, ResourceConstraint,
    ValidationMode, Validator,
};

use super::context_keys::{ContextKeys, Key};
use super::error::flatten_diagnostic;
use super::schema_files::Schemas;
use super::tool_schemas;

/// Tools named at most in one error.
const TOOLS_NAMED: usize = 3;

/// One problem: the policy, the byte offset in its text when known, and the message.
pub(crate) type Diagnostic = (PolicyId, Option<usize>, String);

/// What validation found.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

/// Validates every policy of `set` against `schemas`.
pub(crate) fn validate(set: &PolicySet, schemas: &Schemas) -> Outcome {
    let call_tool = EntityUid::from_str(r#"Action::"mcp:call_tool""#).ok();
    let receive_result = EntityUid::from_str(r#"Action::"mcp:receive_result""#).ok();
    let actions = schemas.schema.action_entities().ok();
    let mut plain = PolicySet::new();
    let mut on_arguments = Vec::new();
    for policy in set.policies() {
        let reads_arguments = ContextKeys::read_by_policy(policy).contains(Key::Arguments);
        let reaches = |action: &Option<EntityUid>| {
            action
                .as_ref()
                .is_some_and(|uid| applies_to(policy, uid, actions.as_ref()))
        };
        // A policy on every action does not judge answers (`PolicyEngine::judges_answers`).
        let answers = reaches(&receive_result)
            && !matches!(policy.action_constraint(), ActionConstraint::Any);
        if reads_arguments && (answers || reaches(&call_tool)) {
            on_arguments.push((policy, answers));
        } else if plain.add(policy.clone()).is_err() {
            // Ids are unique in `set` already; keep the policy validated regardless.
            on_arguments.push((policy, answers));
        }
    }
    let base = Validator::new(schemas.schema.clone());
    let mut findings = Outcome::default();
    let result = base.validate(&plain, ValidationMode::Strict);
    for e in result.validation_errors() {
        for (offset, message) in flatten_diagnostic(e) {
            findings
                .errors
                .push((e.policy_id().clone(), offset, message));
        }
    }
    for w in result.validation_warnings() {
        for (offset, message) in flatten_diagnostic(w) {
            findings
                .warnings
                .push((w.policy_id().clone(), offset, message));
        }
    }
    let mut per_tool: HashMap<String, Result<Validator, String>> = HashMap::new();
    for (policy, answers) in on_arguments {
        validate_per_tool(
            policy,
            answers,
            schemas,
            &base,
            &mut per_tool,
            &mut findings,
        );
    }
    for (_, _, message) in &mut findings.errors {
        if let Some(hint) = undeclared_connector(message, schemas) {
            *message = hint;
        }
    }
    findings
}

/// Cedar's message for an action of a built-in connector that no route uses, said so: a
/// connector's actions are declared only for the connectors the configuration's routes use,
/// and Cedar's guess at a similar action would only mislead.
fn undeclared_connector(message: &str, schemas: &Schemas) -> Option<String> {
    const UNRECOGNIZED: &str = "unrecognized action `Action::\"";
    let start = message.find(UNRECOGNIZED)?;
    let action = &message[start + UNRECOGNIZED.len()..];
    let (namespace, _) = action.split_once(':')?;
    let prefix = format!("{namespace}:");
    let declared = schemas
        .schema
        .actions()
        .any(|a| a.id().unescaped().starts_with(&prefix));
    if declared || !crate::route::connector::built_in_names().any(|n| n == namespace) {
        return None;
    }
    let end = message.find(" (help: ").unwrap_or(message.len());
    Some(format!(
        "{}: {namespace}:… actions are declared for the connectors the configuration's routes \
         use, and no route uses `connector: {namespace}` (with `warden policy`, pass --config \
         with a route that has `connector: {namespace}`)",
        &message[..end]
    ))
}

/// Whether `policy`'s action scope can match the action `uid`.
fn applies_to(policy: &Policy, uid: &EntityUid, actions: Option<&Entities>) -> bool {
    match policy.action_constraint() {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(a) => a == *uid,
        ActionConstraint::In(list) => list
            .iter()
            .any(|a| a == uid || actions.is_none_or(|e| e.is_ancestor_of(a, uid))),
    }
}

/// A problem and the environments (by index) it was found in.
type Noted = Vec<(Option<usize>, String, Vec<usize>)>;

/// Adds a problem found in environment `env` to `list`, once per problem.
fn note(list: &mut Noted, offset: Option<usize>, message: String, env: usize) {
    match list
        .iter_mut()
        .find(|(o, m, _)| *o == offset && *m == message)
    {
        Some((_, _, envs)) => envs.push(env),
        None => list.push((offset, message, vec![env])),
    }
}

/// Validates `policy` once per tool its scope reaches; `answers`: it judges answers
/// (`mcp:receive_result`), where a scope on a server reaches its prompts and resources too.
fn validate_per_tool(
    policy: &Policy,
    answers: bool,
    schemas: &Schemas,
    base: &Validator,
    per_tool: &mut HashMap<String, Result<Validator, String>>,
    findings: &mut Outcome,
) {
    let id = policy.id().clone();
    let scope = policy.resource_constraint();
    let mut reach = schemas.tools.reach(&scope);
    let on_server = match &scope {
        ResourceConstraint::Eq(uid) | ResourceConstraint::In(uid) => {
            uid.type_name().to_string() == "McpServer"
        }
        _ => false,
    };
    let servers_too = answers && on_server;
    reach.untyped |= servers_too;
    for (tool, file) in &reach.unlisted {
        findings.errors.push((
            id.clone(),
            None,
            format!(
                "policy `{id}` reads the arguments of `Tool::\"{tool}\"`, which the schema \
                 fragment of its server ({file}) does not list: regenerate the fragment with \
                 `warden policy schema --from-mcp`"
            ),
        ));
    }
    // (label, validator) per environment; errors found for some of them name them.
    let mut envs: Vec<(Option<String>, Result<&Validator, String>)> = Vec::new();
    if reach.untyped {
        let label = match servers_too {
            true => {
                "the server's prompts and resources, and tools no schema fragment \
                     describes (their `context.arguments` is `{}`: guard the read with \
                     `resource is Tool` or `context.arguments has …`)"
            }
            false => {
                "tools no schema fragment describes (their `context.arguments` is `{}`; \
                      write one with `warden policy schema --from-mcp`)"
            }
        };
        envs.push((Some(label.to_owned()), Ok(base)));
    }
    for tool in &reach.typed {
        if let Some((definition, _)) = schemas.tools.definition(tool)
            && !per_tool.contains_key(tool)
        {
            let built = tool_schemas::specialized(&schemas.base, &schemas.others, definition)
                .map(Validator::new);
            per_tool.insert(tool.clone(), built);
        }
    }
    for tool in &reach.typed {
        let Some((_, file)) = schemas.tools.definition(tool) else {
            continue;
        };
        let label = format!("`Tool::\"{tool}\"` (arguments in {file})");
        let validator = match per_tool.get(tool) {
            Some(Ok(v)) => Ok(v),
            Some(Err(e)) => Err(e.clone()),
            None => continue,
        };
        envs.push((Some(label), validator));
    }
    if envs.is_empty() && reach.unlisted.is_empty() {
        envs.push((None, Ok(base)));
    }
    let mut single = PolicySet::new();
    if single.add(policy.clone()).is_err() {
        return;
    }
    // Each distinct problem, with the environments it was found in.
    let mut errors: Noted = Vec::new();
    let mut warnings: Noted = Vec::new();
    for (index, (label, validator)) in envs.iter().enumerate() {
        let validator = match validator {
            Ok(v) => v,
            Err(e) => {
                let label = label.as_deref().unwrap_or("the tool");
                note(
                    &mut errors,
                    None,
                    format!("cannot type the arguments of {label}: {e}"),
                    index,
                );
                continue;
            }
        };
        let result = validator.validate(&single, ValidationMode::Strict);
        for e in result.validation_errors() {
            for (offset, message) in flatten_diagnostic(e) {
                note(&mut errors, offset, message, index);
            }
        }
        for w in result.validation_warnings() {
            for (offset, message) in flatten_diagnostic(w) {
                note(&mut warnings, offset, message, index);
            }
        }
    }
    let named = |found: &[usize]| -> Option<String> {
        if found.len() == envs.len() && envs.len() > 1 {
            return None;
        }
        let mut names: Vec<&str> = found
            .iter()
            .take(TOOLS_NAMED)
            .filter_map(|&i| envs.get(i).and_then(|(label, _)| label.as_deref()))
            .collect();
        let more = found.len().saturating_sub(TOOLS_NAMED);
        let more = (more > 0).then(|| format!("{more} more tools"));
        names.extend(more.as_deref());
        (!names.is_empty()).then(|| names.join(", "))
    };
    for (offset, message, found) in errors {
        let message = match named(&found) {
            Some(tools) => format!("{message} (for {tools})"),
            None => message,
        };
        findings.errors.push((id.clone(), offset, message));
    }
    // A warning for some tools only (typically: the policy can never apply to a tool that
    // lacks the argument it tests with `has`) is no warning about the policy.
    for (offset, message, found) in warnings {
        if found.len() == envs.len() {
            findings.warnings.push((id.clone(), offset, message));
        }
    }
}
