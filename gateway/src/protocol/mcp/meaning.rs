//! What one agent message asks for: answered by Warden itself (initialize, ping, lists it
//! assembles), or judged as a Cedar action and forwarded to the one server its name belongs
//! to, with the name given back as that server knows it.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::jsonrpc::{Kind, Message, code};
use super::names;
use crate::action::{Facts, Finding, Findings, Resource, ToolFacts, Verb};
use crate::pins::definition::URI_MAX;
use crate::protocol::identifier::{self, LOOKALIKE_FINDING};

/// A list Warden assembles from every server of the endpoint, item by item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
    ResourceTemplates,
}

impl ListKind {
    /// The method that asks for it.
    pub fn method(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/list",
            ListKind::Prompts => "prompts/list",
            ListKind::Resources => "resources/list",
            ListKind::ResourceTemplates => "resources/templates/list",
        }
    }

    /// The key of the items in the result.
    pub fn key(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
            ListKind::ResourceTemplates => "resourceTemplates",
        }
    }

    /// The capability a server announces when it has such items.
    pub fn capability(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources | ListKind::ResourceTemplates => "resources",
        }
    }

    /// The field of an item that Warden prefixes, and whether it is a URI.
    pub fn name_field(self) -> (&'static str, bool) {
        match self {
            ListKind::Tools | ListKind::Prompts => ("name", false),
            ListKind::Resources => ("uri", true),
            ListKind::ResourceTemplates => ("uriTemplate", true),
        }
    }

    /// The action an agent needs on an item for it to be listed.
    pub fn verb(self) -> Verb {
        match self {
            ListKind::Tools => Verb::McpCallTool,
            ListKind::Prompts => Verb::McpGetPrompt,
            ListKind::Resources | ListKind::ResourceTemplates => Verb::McpReadResource,
        }
    }
}

/// What an agent's message means.
#[derive(Debug, Clone, PartialEq)]
pub enum Meaning {
    /// `initialize`: starts a session.
    Initialize,
    /// Answered by Warden itself (`ping`), or sent to every server (`logging/setLevel`,
    /// notifications), without a policy decision: they reach no tool, prompt or resource.
    Session,
    /// A list Warden assembles and filters.
    List(ListKind),
    /// A judged request for one server.
    Judged(Box<Judged>),
    /// A response to a request a server sent the agent (sampling, elicitation, roots).
    Reply,
    /// `tasks/get`, `tasks/result` or `tasks/cancel`: about one task, which only the agent
    /// and session that created it may ask about; sent to the server that runs it.
    Task(TaskAsk),
    /// `tasks/list`: the caller's tasks, from every server that lists tasks.
    TaskList,
}

/// What an agent asks about one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskAsk {
    pub method: TaskMethod,
    /// The server's id of the task (`params.taskId`).
    pub task_id: String,
}

/// The methods that ask about one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskMethod {
    /// `tasks/get`: its status.
    Get,
    /// `tasks/result`: the result of the call it runs (a tool result), once it ends.
    Result,
    /// `tasks/cancel`: stop it.
    Cancel,
}

/// A request judged as a Cedar action and sent to one server.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub verb: Verb,
    pub resource: Resource,
    pub facts: Facts,
    pub findings: Findings,
    /// The server it goes to.
    pub server: Arc<str>,
    /// The message's name or URI as the server knows it.
    pub rewrite: Rewrite,
}

/// Where the server's own name goes back into the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    /// `params.name`.
    Name(String),
    /// `params.uri`.
    Uri(String),
    /// `params.ref.name`.
    RefName(String),
    /// `params.ref.uri`.
    RefUri(String),
}

impl Rewrite {
    /// Puts the server's own name into `params`.
    pub fn apply(&self, params: &mut Map<String, Value>) {
        let (target, key, value) = match self {
            Rewrite::Name(v) => (Some(params), "name", v),
            Rewrite::Uri(v) => (Some(params), "uri", v),
            Rewrite::RefName(v) => (
                params.get_mut("ref").and_then(Value::as_object_mut),
                "name",
                v,
            ),
            Rewrite::RefUri(v) => (
                params.get_mut("ref").and_then(Value::as_object_mut),
                "uri",
                v,
            ),
        };
        if let Some(map) = target {
            map.insert(key.into(), Value::String(value.clone()));
        }
    }
}

/// Why a message cannot be judged: answered with a JSON-RPC error, never forwarded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct MeaningError {
    /// The JSON-RPC error code.
    pub code: i64,
    /// What is wrong, and what to do.
    pub message: String,
}

fn invalid(message: String) -> MeaningError {
    MeaningError {
        code: code::INVALID_PARAMS,
        message,
    }
}

/// Refuses a resource URI (a server's own) longer than any listing can name or pinning can
/// hold ([`URI_MAX`]), before anything else reads it, so a long URI costs nothing to
/// normalise or match against templates.
fn long_uri(own: &str) -> Result<(), MeaningError> {
    if own.len() <= URI_MAX {
        return Ok(());
    }
    Err(invalid(format!(
        "the resource URI is {} bytes; URIs longer than {URI_MAX} bytes are refused (no server's \
         listing can name one): use the URI resources/list gives",
        own.len()
    )))
}

/// What `message` means on an endpoint combining `servers`, whose names join with `sep`.
pub fn interpret(
    message: &Message,
    sep: &str,
    servers: &[Arc<str>],
) -> Result<Meaning, MeaningError> {
    let method = match &message.kind {
        Kind::Response { .. } => return Ok(Meaning::Reply),
        Kind::Notification { .. } => return Ok(Meaning::Session),
        Kind::Request { method, .. } => method.as_str(),
    };
    let params = message.params();
    let server_of = |server: &str, what: &str| -> Result<Arc<str>, MeaningError> {
        servers
            .iter()
            .find(|s| &***s == server)
            .cloned()
            .ok_or_else(|| invalid(format!("{what}: this endpoint has no server {server:?}")))
    };
    let arguments = |key: &str| {
        Facts::Tool(ToolFacts {
            arguments: Arc::new(
                params
                    .get(key)
                    .filter(|v| v.is_object())
                    .cloned()
                    .unwrap_or_else(|| Value::Object(Map::new())),
            ),
        })
    };
    Ok(match method {
        "initialize" => Meaning::Initialize,
        "ping" | "logging/setLevel" => Meaning::Session,
        "tools/list" => Meaning::List(ListKind::Tools),
        "prompts/list" => Meaning::List(ListKind::Prompts),
        "resources/list" => Meaning::List(ListKind::Resources),
        "resources/templates/list" => Meaning::List(ListKind::ResourceTemplates),
        "tasks/list" => Meaning::TaskList,
        "tasks/get" | "tasks/result" | "tasks/cancel" => {
            let task_id = params
                .get("taskId")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    invalid(format!(
                        "{method} needs params.taskId, the task id the task-augmented \
                         tools/call answered"
                    ))
                })?;
            Meaning::Task(TaskAsk {
                method: match method {
                    "tasks/get" => TaskMethod::Get,
                    "tasks/result" => TaskMethod::Result,
                    _ => TaskMethod::Cancel,
                },
                task_id: task_id.to_owned(),
            })
        }
        "tools/call" | "prompts/get" => {
            let tool = method == "tools/call";
            let what = if tool { "tool" } else { "prompt" };
            let name = params
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(format!("{method} needs params.name, the {what}'s name")))?;
            let (server, sent_own, judged_own) = name_parts(sep, name, what)?;
            let server = server_of(server, &format!("unknown {what}"))?;
            let own = judged_own.as_deref().unwrap_or(sent_own);
            let mut findings = Findings::none();
            if judged_own.is_some() {
                findings.0.push(Finding {
                    detector: Arc::from(LOOKALIKE_FINDING),
                    location: "params.name".into(),
                });
            }
            let (verb, resource, facts) = if tool {
                (
                    Verb::McpCallTool,
                    Resource::Tool {
                        server: Arc::clone(&server),
                        name: own.to_owned(),
                    },
                    arguments("arguments"),
                )
            } else {
                (
                    Verb::McpGetPrompt,
                    Resource::McpServer {
                        name: Arc::clone(&server),
                    },
                    arguments("arguments"),
                )
            };
            Meaning::Judged(Box::new(Judged {
                verb,
                resource,
                facts,
                findings,
                server,
                rewrite: Rewrite::Name(sent_own.to_owned()),
            }))
        }
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            let uri = params
                .get("uri")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(format!("{method} needs params.uri")))?;
            let (server, own) = names::split_uri(uri).ok_or_else(|| {
                invalid(format!(
                    "unknown resource {}: URIs are <server>+<uri>; list them with resources/list",
                    crate::text::Quoted::of(uri)
                ))
            })?;
            let server = server_of(server, "unknown resource")?;
            long_uri(own)?;
            Meaning::Judged(Box::new(Judged {
                verb: Verb::McpReadResource,
                resource: Resource::McpServer {
                    name: Arc::clone(&server),
                },
                facts: Facts::None,
                findings: Findings::none(),
                server,
                // The URI in its normal form (RFC 3986 §6.2.2, §6.2.3), once: what the pin
                // check reads and what the server is sent, so an equivalent spelling
                // (`%2e%2e`, `x/../`, a default port) cannot make a server that resolves it
                // otherwise read something the check did not see.
                rewrite: Rewrite::Uri(crate::pins::uri::normalised(own)),
            }))
        }
        "completion/complete" => {
            let reference = params.get("ref").and_then(Value::as_object);
            let (target, rewrite): (&str, fn(String) -> Rewrite) = match reference
                .and_then(|r| r.get("type"))
                .and_then(Value::as_str)
            {
                Some("ref/prompt") => ("name", Rewrite::RefName),
                Some("ref/resource") => ("uri", Rewrite::RefUri),
                _ => {
                    return Err(invalid(
                        "completion/complete needs params.ref of type ref/prompt or \
                             ref/resource"
                            .into(),
                    ));
                }
            };
            let value = reference
                .and_then(|r| r.get(target))
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(format!("completion/complete needs params.ref.{target}")))?;
            let split = if target == "name" {
                names::split(sep, value)
            } else {
                names::split_uri(value)
            };
            let (server, own) = split.ok_or_else(|| {
                invalid(format!(
                    "unknown reference {}",
                    crate::text::Quoted::of(value)
                ))
            })?;
            let server = server_of(server, "unknown reference")?;
            if target == "uri" {
                long_uri(own)?;
            }
            Meaning::Judged(Box::new(Judged {
                verb: Verb::McpComplete,
                resource: Resource::McpServer {
                    name: Arc::clone(&server),
                },
                facts: arguments("argument"),
                findings: Findings::none(),
                server,
                rewrite: rewrite(own.to_owned()),
            }))
        }
        other => {
            return Err(MeaningError {
                code: code::METHOD_NOT_FOUND,
                message: format!(
                    "method {} is not one Warden can judge; unknown methods are refused, not \
                     forwarded",
                    crate::text::Quoted::of(other)
                ),
            });
        }
    })
}

/// The server, the server's own name as sent, and — when it imitates ASCII with look-alike
/// characters — the name policy judges instead, of the federated tool or prompt `name`. The
/// name is split once, at the first separator as sent, so that the server judged is the
/// server called and the name judged is the folding of the name sent. A name whose folding
/// splits otherwise (a look-alike of the separator, `github＿delete_repository`, or of a
/// server's name) is refused: policy would judge one tool and the server run another.
fn name_parts<'n>(
    sep: &str,
    name: &'n str,
    what: &str,
) -> Result<(&'n str, &'n str, Option<String>), MeaningError> {
    let not_valid = |problem| invalid(format!("the {what} name is not a valid name: {problem}"));
    let folded = identifier::check(name).map_err(not_valid)?;
    let unknown = || {
        invalid(format!(
            "unknown {what} {}: names are <server>{sep}<name>; list them with {what}s/list",
            crate::text::Quoted::of(name)
        ))
    };
    let sent = names::split(sep, name);
    let Some(folded) = folded else {
        return sent
            .map(|(server, own)| (server, own, None))
            .ok_or_else(unknown);
    };
    let judged_own = match sent {
        Some((_, own)) => identifier::check(own).map_err(not_valid)?,
        None => None,
    };
    let judged = sent.map(|(server, own)| (server, judged_own.as_deref().unwrap_or(own)));
    let imitated = names::split(sep, &folded);
    if imitated != judged {
        return Err(match imitated {
            None => unknown(),
            Some(_) => invalid(format!(
                "the {what} name {} imitates another with look-alike characters in its server \
                 name or its separator {sep:?}; call the {what} by the name {what}s/list gives",
                crate::text::Quoted::of(name)
            )),
        });
    }
    let (server, sent_own) = sent.ok_or_else(unknown)?;
    Ok((server, sent_own, judged_own))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn meaning(body: &str) -> Result<Meaning, MeaningError> {
        let servers: Vec<Arc<str>> = vec![Arc::from("files"), Arc::from("everything")];
        interpret(
            &Message::parse(body.as_bytes()).expect("valid"),
            "_",
            &servers,
        )
    }

    #[test]
    fn a_tool_call_is_judged_on_its_server_tool_with_its_arguments() {
        let Ok(Meaning::Judged(j)) = meaning(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"files_write_file","arguments":{"path":"/tmp/x"}}}"#,
        ) else {
            panic!("judged");
        };
        assert_eq!(j.verb, Verb::McpCallTool);
        assert_eq!(j.resource.cedar_ref(), r#"Tool::"files/write_file""#);
        assert_eq!(j.rewrite, Rewrite::Name("write_file".into()));
        let Facts::Tool(facts) = &j.facts else {
            panic!("tool facts")
        };
        assert_eq!(facts.arguments["path"], "/tmp/x");
    }

    #[test]
    fn unknown_servers_names_and_methods_are_refused() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"other_echo"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"files_ec\u200bho"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///etc/passwd"}}"#,
        ] {
            assert_eq!(
                meaning(body).map_err(|e| e.code),
                Err(code::INVALID_PARAMS),
                "{body}"
            );
        }
        let err = meaning(r#"{"jsonrpc":"2.0","id":1,"method":"x/new"}"#).unwrap_err();
        assert_eq!(err.code, code::METHOD_NOT_FOUND);
    }

    #[test]
    fn a_resource_uri_longer_than_any_listing_can_name_is_refused_before_it_is_read() {
        let uri = |len: usize| format!("test://{}", "a".repeat(len - "test://".len()));
        for (method, params) in [
            (
                "resources/read",
                json!({"uri": format!("everything+{}", uri(URI_MAX + 1))}),
            ),
            (
                "resources/subscribe",
                json!({"uri": format!("everything+{}", uri(URI_MAX + 1))}),
            ),
            (
                "completion/complete",
                json!({"ref": {"type": "ref/resource", "uri": format!("everything+{}", uri(URI_MAX + 1))},
                       "argument": {"name": "x", "value": ""}}),
            ),
        ] {
            let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
            let Err(err) = meaning(&body.to_string()) else {
                panic!("{method} is refused")
            };
            assert_eq!(err.code, code::INVALID_PARAMS, "{method}");
            assert!(
                err.message.contains("longer than 2048 bytes"),
                "{}",
                err.message
            );
        }
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "resources/read",
                          "params": {"uri": format!("everything+{}", uri(URI_MAX))}});
        assert!(matches!(meaning(&body.to_string()), Ok(Meaning::Judged(_))));
    }

    #[test]
    fn task_requests_name_their_task() {
        assert_eq!(
            meaning(
                r#"{"jsonrpc":"2.0","id":1,"method":"tasks/result","params":{"taskId":"t-1"}}"#
            ),
            Ok(Meaning::Task(TaskAsk {
                method: TaskMethod::Result,
                task_id: "t-1".into()
            }))
        );
        assert_eq!(
            meaning(r#"{"jsonrpc":"2.0","id":1,"method":"tasks/list"}"#),
            Ok(Meaning::TaskList)
        );
        for method in ["tasks/get", "tasks/result", "tasks/cancel"] {
            let body =
                json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": {"taskId": 7}});
            let err = meaning(&body.to_string()).unwrap_err();
            assert_eq!(err.code, code::INVALID_PARAMS, "{method}");
            assert!(err.message.contains("params.taskId"), "{}", err.message);
        }
    }

    #[test]
    fn a_lookalike_tool_name_is_judged_as_what_it_imitates() {
        // Cyrillic `е` in "echo".
        let Ok(Meaning::Judged(j)) = meaning(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"everything_\u0435cho"}}"#,
        ) else {
            panic!("judged");
        };
        assert_eq!(j.resource.cedar_ref(), r#"Tool::"everything/echo""#);
        assert_eq!(&*j.findings.0[0].detector, LOOKALIKE_FINDING);
    }

    #[test]
    fn a_lookalike_separator_or_server_name_is_refused_not_split_twice() {
        // Folded, `files＿get_write_file` reads `files/get_write_file`; split as sent it is
        // server `files＿get`'s `write_file`: judged as one tool, it would run another.
        for name in [
            "files\u{FF3F}get_write_file",
            "files\u{FE4D}get_write_file",
            "\u{FF46}iles_write_file",
            "files\u{FF3F}write_file",
        ] {
            for method in ["tools/call", "prompts/get"] {
                let body = json!({"jsonrpc": "2.0", "id": 1, "method": method,
                                  "params": {"name": name}});
                let err = meaning(&body.to_string()).expect_err(name);
                assert_eq!(err.code, code::INVALID_PARAMS, "{name}");
                assert!(err.message.contains("look-alike"), "{}", err.message);
            }
        }
        // A look-alike in the server's own part is judged folded and sent as spelled: the
        // same tool either way.
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                          "params": {"name": "files_write\u{FF3F}file"}});
        let Ok(Meaning::Judged(j)) = meaning(&body.to_string()) else {
            panic!("judged");
        };
        assert_eq!(j.resource.cedar_ref(), r#"Tool::"files/write_file""#);
        assert_eq!(j.rewrite, Rewrite::Name("write\u{FF3F}file".into()));
        assert_eq!(&*j.findings.0[0].detector, LOOKALIKE_FINDING);
    }

    #[test]
    fn a_resource_uri_goes_to_the_server_it_names_exactly() {
        // URIs are not folded: a look-alike `+` or server name names no server.
        for uri in [
            "everything\u{FF0B}test://static/resource/1",
            "\u{0435}verything+test://static/resource/1",
        ] {
            let body = json!({"jsonrpc": "2.0", "id": 1, "method": "resources/read",
                              "params": {"uri": uri}});
            assert_eq!(
                meaning(&body.to_string()).map_err(|e| e.code),
                Err(code::INVALID_PARAMS),
                "{uri}"
            );
        }
    }

    #[test]
    fn resources_and_completions_go_to_their_server_unprefixed() {
        let Ok(Meaning::Judged(j)) = meaning(
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"everything+test://static/resource/1"}}"#,
        ) else {
            panic!("judged");
        };
        assert_eq!(j.resource.cedar_ref(), r#"McpServer::"everything""#);
        let mut params = Map::new();
        j.rewrite.apply(&mut params);
        assert_eq!(params["uri"], "test://static/resource/1");
        // Read once in its normal form: what the pin check reads is what the server gets.
        let Ok(Meaning::Judged(j)) = meaning(
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"everything+HTTPS://Static:443/a/../%7Eb"}}"#,
        ) else {
            panic!("judged");
        };
        assert_eq!(j.rewrite, Rewrite::Uri("https://static/~b".into()));
        let Ok(Meaning::Judged(j)) = meaning(
            r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"everything_complex"},"argument":{"name":"a","value":"b"}}}"#,
        ) else {
            panic!("judged");
        };
        assert_eq!(j.verb, Verb::McpComplete);
        assert_eq!(j.rewrite, Rewrite::RefName("complex".into()));
    }
}
