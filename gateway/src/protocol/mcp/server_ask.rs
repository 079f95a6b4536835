//! What a request a server sends the agent asks for: `sampling/createMessage` (the agent's
//! model generates for the server), `elicitation/create` (the agent's user is asked),
//! `roots/list` (the agent's filesystem roots), each judged as a Cedar action on the server
//! before it reaches the agent; `ping`, which carries nothing; or a method Warden does not
//! relay.

use serde_json::{Map, Value};

use super::jsonrpc::code;
use super::meaning::MeaningError;
use crate::action::{ElicitFacts, Facts, SampleFacts, Verb};
use crate::text::{FIELD_MAX, bounded};

/// What a server's request to the agent asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerAsk {
    /// Judged as `verb` on the server, with `facts`, before it reaches the agent.
    Judged { verb: Verb, facts: Facts },
    /// `ping`: reaches the agent without a decision; it asks for nothing.
    Ping,
}

/// The values of `includeContext` MCP defines.
const INCLUDE_CONTEXT: [&str; 3] = ["none", "thisServer", "allServers"];

/// What the request `method` with `params`, from a server, asks of the agent; an error
/// (answered to the server, never relayed) for a method MCP does not define for servers or
/// parameters that do not say what they ask.
pub fn interpret(method: &str, params: &Map<String, Value>) -> Result<ServerAsk, MeaningError> {
    // Warden relays tasks one way: the agent's tool calls run as tasks by servers. A server's
    // request run as a task by the agent would be followed by the server's `tasks/get` and
    // `tasks/result`, which carry what Warden could not judge where the request was judged.
    if params.contains_key("task") {
        return Err(invalid(
            "Warden relays no task-augmented request from a server to the agent; send it \
             without params.task",
        ));
    }
    match method {
        "ping" => Ok(ServerAsk::Ping),
        "roots/list" => Ok(ServerAsk::Judged {
            verb: Verb::McpListRoots,
            facts: Facts::None,
        }),
        "sampling/createMessage" => Ok(ServerAsk::Judged {
            verb: Verb::McpSample,
            facts: Facts::Sample(sample(params)?),
        }),
        "elicitation/create" => Ok(ServerAsk::Judged {
            verb: Verb::McpElicit,
            facts: Facts::Elicit(elicit(params)?),
        }),
        other => Err(MeaningError {
            code: code::METHOD_NOT_FOUND,
            message: format!(
                "Warden relays no {:?} request from a server to the agent (only ping, \
                 sampling/createMessage, elicitation/create and roots/list; no tasks/*)",
                bounded(other, FIELD_MAX)
            ),
        }),
    }
}

fn invalid(message: &str) -> MeaningError {
    MeaningError {
        code: code::INVALID_PARAMS,
        message: message.to_owned(),
    }
}

/// A sampling request's facts: `maxTokens` (required), `includeContext` (default `none`),
/// the model hints, the system prompt's size, the number of messages.
fn sample(params: &Map<String, Value>) -> Result<SampleFacts, MeaningError> {
    let max_tokens = params
        .get("maxTokens")
        .and_then(Value::as_u64)
        .ok_or_else(|| invalid("sampling/createMessage needs params.maxTokens, a whole number"))?;
    let include_context = match params.get("includeContext") {
        None | Some(Value::Null) => "none",
        Some(Value::String(s)) if INCLUDE_CONTEXT.contains(&s.as_str()) => s.as_str(),
        Some(_) => {
            return Err(invalid(
                "sampling/createMessage: params.includeContext must be \"none\", \
                 \"thisServer\" or \"allServers\"",
            ));
        }
    };
    let messages = match params.get("messages") {
        Some(Value::Array(all)) => all.len() as u64,
        _ => {
            return Err(invalid(
                "sampling/createMessage needs params.messages, a list of messages",
            ));
        }
    };
    let system_prompt_bytes = match params.get("systemPrompt") {
        None | Some(Value::Null) => 0,
        Some(Value::String(s)) => s.len() as u64,
        Some(_) => {
            return Err(invalid(
                "sampling/createMessage: params.systemPrompt must be text",
            ));
        }
    };
    let model_hints = params
        .get("modelPreferences")
        .and_then(|p| p.get("hints"))
        .and_then(Value::as_array)
        .map(|hints| {
            hints
                .iter()
                .filter_map(|h| h.get("name").and_then(Value::as_str))
                .map(|name| bounded(name, FIELD_MAX).into_owned())
                .collect()
        })
        .unwrap_or_default();
    Ok(SampleFacts {
        max_tokens,
        include_context: include_context.to_owned(),
        model_hints,
        system_prompt_bytes,
        messages,
    })
}

/// An elicitation request's facts: its mode (`form` unless it says `url`) and, for a form,
/// the names of the fields it asks for.
fn elicit(params: &Map<String, Value>) -> Result<ElicitFacts, MeaningError> {
    let mode = match params.get("mode") {
        None | Some(Value::Null) => "form",
        Some(Value::String(s)) if s == "form" || s == "url" => s.as_str(),
        Some(_) => {
            return Err(invalid(
                "elicitation/create: params.mode must be \"form\" or \"url\"",
            ));
        }
    };
    let mut field_names: Vec<String> = params
        .get("requestedSchema")
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .map(|fields| {
            fields
                .keys()
                .map(|name| bounded(name, FIELD_MAX).into_owned())
                .collect()
        })
        .unwrap_or_default();
    field_names.sort();
    Ok(ElicitFacts {
        mode: mode.to_owned(),
        field_names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn a_sampling_request_is_judged_on_what_it_asks_of_the_model() {
        let asked = interpret(
            "sampling/createMessage",
            &params(json!({
                "messages": [{"role": "user", "content": {"type": "text", "text": "hi"}}],
                "maxTokens": 500,
                "includeContext": "allServers",
                "systemPrompt": "You are helpful",
                "modelPreferences": {"hints": [{"name": "claude-3"}, {"other": 1}]},
            })),
        )
        .unwrap();
        assert_eq!(
            asked,
            ServerAsk::Judged {
                verb: Verb::McpSample,
                facts: Facts::Sample(SampleFacts {
                    max_tokens: 500,
                    include_context: "allServers".into(),
                    model_hints: vec!["claude-3".into()],
                    system_prompt_bytes: 15,
                    messages: 1,
                }),
            }
        );
    }

    #[test]
    fn an_elicitation_is_judged_on_its_mode_and_field_names() {
        let asked = interpret(
            "elicitation/create",
            &params(json!({
                "message": "Who are you?",
                "requestedSchema": {"type": "object",
                    "properties": {"name": {"type": "string"}, "email": {"type": "string"}}},
            })),
        )
        .unwrap();
        let ServerAsk::Judged { verb, facts } = asked else {
            panic!("judged")
        };
        assert_eq!(verb, Verb::McpElicit);
        assert_eq!(
            facts,
            Facts::Elicit(ElicitFacts {
                mode: "form".into(),
                field_names: vec!["email".into(), "name".into()],
            })
        );
        let url = interpret(
            "elicitation/create",
            &params(
                json!({"mode": "url", "url": "https://x.example", "message": "m",
                           "elicitationId": "e1"}),
            ),
        )
        .unwrap();
        assert!(
            matches!(url, ServerAsk::Judged { facts: Facts::Elicit(ElicitFacts { ref mode, .. }), .. } if mode == "url")
        );
    }

    #[test]
    fn roots_and_ping_are_known_and_other_methods_are_not_relayed() {
        assert_eq!(
            interpret("roots/list", &Map::new()).unwrap(),
            ServerAsk::Judged {
                verb: Verb::McpListRoots,
                facts: Facts::None
            }
        );
        assert_eq!(interpret("ping", &Map::new()).unwrap(), ServerAsk::Ping);
        let e = interpret("tools/call", &Map::new()).unwrap_err();
        assert_eq!(e.code, code::METHOD_NOT_FOUND);
        assert!(e.message.contains("tools/call"), "{e}");
        let e = interpret("tasks/get", &params(json!({"taskId": "t"}))).unwrap_err();
        assert_eq!(e.code, code::METHOD_NOT_FOUND);
    }

    #[test]
    fn a_server_cannot_have_the_agent_run_its_request_as_a_task() {
        let asked = params(json!({"messages": [], "maxTokens": 5, "task": {"ttl": 60000}}));
        let e = interpret("sampling/createMessage", &asked).unwrap_err();
        assert_eq!(e.code, code::INVALID_PARAMS);
        assert!(e.message.contains("task-augmented"), "{e}");
        let asked = params(
            json!({"message": "why?", "requestedSchema": {"type": "object",
            "properties": {}}, "task": {}}),
        );
        assert!(interpret("elicitation/create", &asked).is_err());
    }

    #[test]
    fn a_request_that_does_not_say_what_it_asks_is_refused() {
        for (method, p) in [
            ("sampling/createMessage", json!({"messages": []})),
            (
                "sampling/createMessage",
                json!({"messages": [], "maxTokens": -1}),
            ),
            (
                "sampling/createMessage",
                json!({"messages": [], "maxTokens": 5, "includeContext": "everything"}),
            ),
            ("sampling/createMessage", json!({"maxTokens": 5})),
            ("elicitation/create", json!({"mode": "popup"})),
        ] {
            let e = interpret(method, &params(p.clone())).unwrap_err();
            assert_eq!(e.code, code::INVALID_PARAMS, "{method} {p}");
        }
    }
}
