//! MCP tasks on the request path (MCP 2025-11-25), the agent's way only: a `tools/call` with
//! `params.task` is judged as any `tools/call` and, when its server answers with a task, the
//! task is remembered with who created it (`mcp/tasks.rs`). `tasks/get`, `tasks/result` and
//! `tasks/cancel` go to the task's server only from the agent and session that created it,
//! without a new decision: their records carry the creating decision's id, and `tasks/result`
//! (the tool's result) is observed as a `tools/call`'s result is. `tasks/list` is answered
//! with the caller's tasks only.

use std::sync::Arc;

use http::Response;
use serde_json::{Map, Value};

use super::pages::{Left, answer_list, read_pages};
use crate::action::{Facts, Principal, Verb};
use crate::mcp::{Link, McpError, Reservation, Session, Task, TaskError, created_task};
use crate::protocol::Shape;
use crate::protocol::mcp::McpShape;
use crate::protocol::mcp::jsonrpc::{self, Id, Message, code};
use crate::protocol::mcp::meaning::TaskAsk;
use crate::proxy::exchange::{Exchange, ProxyBody};
use crate::proxy::refusal::Refusal;
use crate::text::{FIELD_MAX, bounded};

/// A task a `tools/call` on its way may create: its place among the session's tasks, and who
/// creates it.
pub(super) struct Birth {
    pub place: Reservation,
    pub task: Task,
}

fn refused(id: &Value, code: i64, e: &TaskError) -> McpError {
    McpError::Refused {
        id: id.clone(),
        code,
        message: e.to_string(),
    }
}

/// Why a session was offered no tasks, for a request about one.
const NOT_OFFERED: &str = "Warden offered this session no tasks: the agent declared no tasks \
    capability in initialize, or no server of the endpoint runs tools/call as a task";

/// The place a `tools/call` with `params.task` takes among the session's tasks, or why it
/// has none. A request in a session offered no tasks (or any other request with
/// `params.task`) runs as a plain one, as MCP has a receiver without the capability do:
/// `params.task` is taken out.
pub(super) fn asked(
    session: &Arc<Session>,
    params: &mut Map<String, Value>,
    tool_call: bool,
    id: &Id,
) -> Result<Option<Reservation>, McpError> {
    if !params.contains_key("task") {
        return Ok(None);
    }
    if !(tool_call && session.tasks_offered) {
        params.remove("task");
        return Ok(None);
    }
    session
        .tasks
        .reserve()
        .map(Some)
        .map_err(|e| refused(&id.to_value(), code::INVALID_REQUEST, &e))
}

/// The server answered a task-augmented call (`response`, the agent's answer): when it
/// created a task, the task is remembered; one whose id the session already holds is not
/// relayed (the agent gets an error, the server is told to cancel it).
pub(super) fn born(birth: Option<Birth>, link: &Arc<Link>, response: &mut Value) {
    let Some(Birth { place, task }) = birth else {
        return;
    };
    let Some((task_id, ttl)) = created_task(response) else {
        return;
    };
    let task_id = task_id.to_owned();
    let Err(e) = place.hold(&task_id, task, ttl) else {
        return;
    };
    tracing::warn!(server = %link.router.server, error = %e, "an MCP server answered with a task id the session already holds; the task is cancelled");
    let link = Arc::clone(link);
    let mut params = Map::new();
    params.insert("taskId".into(), Value::String(task_id));
    tokio::spawn(async move {
        let _ = link.request("tasks/cancel", params).await;
    });
    let id = response.get("id").cloned().unwrap_or(Value::Null);
    *response = jsonrpc::error(&id, code::UPSTREAM, &e.to_string());
}

/// The task `tasks/get`, `tasks/result` or `tasks/cancel` from `principal` asks about, when
/// this agent created it in this session (the request then goes to its server: `message.rs`),
/// else why not (the server never sees it). The exchange records it under the creating
/// decision's id, as an action on the task's tool.
pub(super) fn follow(
    ex: &mut Exchange,
    session: &Session,
    principal: &Principal,
    ask: &TaskAsk,
    id: &Id,
) -> Result<Task, McpError> {
    let id = id.to_value();
    if !session.tasks_offered {
        return Err(McpError::Refused {
            id,
            code: code::METHOD_NOT_FOUND,
            message: NOT_OFFERED.into(),
        });
    }
    let task = session
        .tasks
        .owned(&ask.task_id, &principal.id)
        .map_err(|e| refused(&id, code::INVALID_PARAMS, &e))?;
    ex.interpreted(
        &Verb::McpCallTool,
        &task.resource,
        &Facts::None,
        Shape::Mcp(McpShape {
            id,
            deny_as_tool_result: false,
            tool_call: false,
        }),
    );
    ex.continues(&task.decision_id);
    Ok(task)
}

/// `tasks/list`: the tasks this agent created in this session, from every server that lists
/// tasks (each server's pages read to the end, at most [`MAX_PAGES`](super::pages::MAX_PAGES)); answered in one page.
pub(super) async fn list(
    ex: &mut Exchange,
    session: &Session,
    principal: &Principal,
    message: &Message,
    id: &Value,
) -> Result<Response<ProxyBody>, Refusal> {
    if !session.tasks_offered {
        return Err(McpError::Refused {
            id: id.clone(),
            code: code::METHOD_NOT_FOUND,
            message: NOT_OFFERED.into(),
        }
        .into());
    }
    if message.params().get("cursor").is_some_and(|c| !c.is_null()) {
        return Err(McpError::Refused {
            id: id.clone(),
            code: code::INVALID_PARAMS,
            message: "Warden answers tasks/list in one page and gave no cursor; ask without \
                      params.cursor"
                .into(),
        }
        .into());
    }
    let mut tasks = Vec::new();
    let mut failures = Vec::new();
    for (server, link) in &session.links {
        let lists = link
            .initialized()
            .and_then(|i| i.pointer("/capabilities/tasks/list").cloned())
            .is_some();
        if !lists {
            continue;
        }
        match read_pages(link, "tasks/list", "tasks").await {
            Ok(listed) => tasks.extend(
                listed
                    .into_iter()
                    .filter(|t| {
                        t.get("taskId")
                            .and_then(Value::as_str)
                            .is_some_and(|id| mine(session, principal, server, id))
                    })
                    .map(|mut t| {
                        crate::mcp::without_status_message(&mut t);
                        t
                    }),
            ),
            Err(e) => {
                tracing::warn!(server = %server, error = %e, "listing the server's tasks failed; its tasks are left out");
                failures.push(bounded(server, FIELD_MAX).into_owned());
            }
        }
    }
    let left = Left {
        unavailable: &failures,
        pin_limit: &[],
    };
    Ok(answer_list(ex, "tasks", tasks, left, id))
}

/// Whether the task `id` that `server` lists is one `principal` created in `session`.
fn mine(session: &Session, principal: &Principal, server: &str, id: &str) -> bool {
    session
        .tasks
        .owned(id, &principal.id)
        .is_ok_and(|t| &*t.server == server)
}
