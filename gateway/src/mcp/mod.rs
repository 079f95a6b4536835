//! MCP endpoints: agents speak MCP to Warden (Streamable HTTP, or the legacy HTTP+SSE
//! transport, `legacy_session.rs`), which terminates their sessions (`session.rs`) and holds,
//! per agent session, one upstream session per server of the endpoint (`link.rs`): a local
//! process Warden starts and restarts (`stdio.rs`), or a remote server over Streamable HTTP
//! (`streamable_http.rs`) or the legacy HTTP+SSE transport (`legacy_sse.rs`). The servers'
//! requests to the agent are judged before they reach it (`server_requests.rs`); the tasks an
//! agent's calls create are remembered with who created them (`tasks.rs`). What the agent
//! sees of the servers' tools, prompts and resources carries the server's name
//! (`protocol/mcp/names.rs`); every message is judged on the request path (`proxy/mcp/`).
//!
//! Messages pass as JSON values, not typed structures: Warden reads only the fields it
//! judges or rewrites (method, id, names, URIs, progress tokens) and forwards the rest as
//! sent, so fields and methods of newer revisions are not lost on the way (see
//! docs/tools.md, "Why not an SDK").

mod ask_rate;
mod binding;
pub mod config;
mod ended;
mod endpoint;
mod error;
mod guarded_client;
mod legacy_session;
mod legacy_sse;
mod link;
mod package_pin;
mod per_agent;
mod process_group;
mod relay;
mod remote;
mod resume;
mod router;
pub mod sandbox;
mod server_requests;
mod session;
mod stdio;
mod stopping;
mod stream;
mod streamable_http;
mod supervise;
mod tasks;

pub use ask_rate::{
    DEFAULT_PER_MINUTE, DENIED as SERVER_REQUESTS_DENIED, REFUSED as SERVER_REQUESTS_REFUSED,
};
pub use binding::InUse;
pub use config::{McpConfig, McpDenyStyle};
pub use ended::cut_notice;
pub use endpoint::{Endpoint, RemoteServer, Server, ServerKind, StdioCommand};
pub use error::{LinkError, McpError};
pub use legacy_session::{LegacySession, MESSAGES_PATH, SSE_PATH, session_param};
pub use link::Link;
pub use relay::relay;
pub use resume::{Outlet, ResumeError, Settle, Stream};
pub use router::{Answer, Call, SERVER_META};
pub use server_requests::{
    Asked, Held, Judge, ServerRequests, Ticket, Verdict, Withdrawal, Withdrawn,
};
pub use session::{LEGACY_REVISION, Over, REVISIONS, Session, Sessions, instructions, negotiate};
pub use stdio::running as local_processes;
pub use stream::{EventBody, event};
pub use streamable_http::{SESSION_HEADER, VERSION_HEADER};
pub use tasks::{
    MAX_SESSION_TASK_ARGUMENTS, MAX_TASK_ARGUMENTS, MAX_TASKS, Reservation, Task, TaskError, Tasks,
    created_task, kept_arguments, without_status_message,
};
