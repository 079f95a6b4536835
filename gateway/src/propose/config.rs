//! `propose:`: judging the tool calls models propose, and the catalogue of the agents' own
//! tools (their groups, and how their arguments read).

use std::collections::BTreeMap;

use serde::Deserialize;

/// `propose:` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ProposeConfig {
    /// Judge the tool calls in LLM responses (`tool:propose`) before the agent receives them.
    pub enabled: bool,
    /// The agents' workspace: relative paths are read from it, and `context.outside_workspace`
    /// says whether a path leaves it.
    pub workspace: String,
    /// The agents' home directory, for `~`.
    pub home: String,
    /// The agents' tools by name: their group (`ToolGroup::"<group>"`) and what their
    /// arguments are. Replaces the built-in OpenClaw catalogue when set.
    pub tools: BTreeMap<String, ToolEntry>,
    /// What a refused call makes of the response: `text` (default: the call is replaced by
    /// an assistant text naming it and why) or `error` (the response becomes the protocol's
    /// error, which SDKs raise).
    pub on_deny: OnDeny,
    /// Approvers are shown a held call's arguments (the command line, a file's content) in
    /// the approval record and notifications. Off by default: arguments may carry secrets;
    /// approvers see the tool and what Warden read from them (programs, paths, hosts).
    pub approval_arguments: bool,
}

/// What a refused proposed call makes of the response (`propose.on_deny`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnDeny {
    /// The call is replaced by an assistant text naming it and why; the turn goes on.
    #[default]
    Text,
    /// The response becomes the protocol's error naming the call and why (for a stream: the
    /// error event each provider ends a failed stream with), which SDKs raise.
    Error,
}

/// One agent tool in the catalogue.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ToolEntry {
    /// The tool's group: `ToolGroup::"<group>"`, its Cedar parent.
    pub group: String,
    /// What its arguments are, for the context Warden builds.
    #[serde(default)]
    pub kind: ToolKind,
}

/// What a tool's arguments are: which context Warden reads from them.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ToolKind {
    /// A shell command (`command`, run in `workdir`): programs, paths, downloads piped to
    /// interpreters, forced pushes.
    Shell,
    /// Reads a file (`path`).
    FileRead,
    /// Writes or edits a file (`path`).
    FileWrite,
    /// A patch (`input`): the files it adds, updates, deletes or moves.
    Patch,
    /// Opens a URL (`url`): its host.
    Url,
    /// Sends a message (`to`, `target`, `recipient`, `channel`): its recipients.
    Message,
    /// Nothing beyond the arguments' JSON text.
    #[default]
    Other,
}

impl Default for ProposeConfig {
    fn default() -> Self {
        ProposeConfig {
            enabled: true,
            workspace: "/home/node/.openclaw/workspace".into(),
            home: "/home/node".into(),
            tools: openclaw_catalogue(),
            on_deny: OnDeny::Text,
            approval_arguments: false,
        }
    }
}

/// OpenClaw's tools (2026.9): the ones it runs directly and the deferred ones the model reaches
/// through `tool_search` / `tool_call`; and the shells of the Responses API's own local tools
/// (`local_shell_call`, `shell_call`) and of Codex (`shell`, an argv).
pub fn openclaw_catalogue() -> BTreeMap<String, ToolEntry> {
    use ToolKind::*;
    let entries: [(&str, &str, ToolKind); 24] = [
        ("exec", "shell", Shell),
        ("bash", "shell", Shell),
        ("shell", "shell", Shell),
        ("local_shell", "shell", Shell),
        ("process", "shell", Other),
        ("read", "files", FileRead),
        ("ls", "files", FileRead),
        ("write", "files", FileWrite),
        ("edit", "files", FileWrite),
        ("apply_patch", "files", Patch),
        ("browser", "web", Url),
        ("web_fetch", "web", Url),
        ("web_search", "web", Other),
        ("canvas", "web", Url),
        ("message", "messaging", Message),
        ("sessions_send", "messaging", Message),
        ("sessions_spawn", "sessions", Other),
        ("sessions_list", "sessions", Other),
        ("sessions_history", "sessions", Other),
        ("cron", "automation", Other),
        ("gateway", "automation", Other),
        ("nodes", "devices", Other),
        ("image", "media", FileRead),
        ("secrets", "secrets", Other),
    ];
    entries
        .into_iter()
        .map(|(name, group, kind)| {
            (
                name.to_owned(),
                ToolEntry {
                    group: group.to_owned(),
                    kind,
                },
            )
        })
        .collect()
}

/// A `propose:` setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeConfigError {
    /// `workspace` or `home` is not an absolute path.
    #[error(
        "propose.{key}: {value:?} is not an absolute path; give the agents' {key} as it is on their machines, e.g. /home/node/.openclaw/workspace"
    )]
    NotAbsolute { key: &'static str, value: String },
    /// A tool's group is not a usable Cedar entity id.
    #[error(
        "propose.tools.{tool}.group: {group:?} must be a non-empty name of letters, digits, `_` or `-`"
    )]
    BadGroup { tool: String, group: String },
}

impl ProposeConfigError {
    /// The configuration key at fault.
    pub fn key(&self) -> String {
        match self {
            ProposeConfigError::NotAbsolute { key, .. } => format!("propose.{key}"),
            ProposeConfigError::BadGroup { tool, .. } => format!("propose.tools.{tool}.group"),
        }
    }
}

impl ProposeConfig {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), ProposeConfigError> {
        for (key, value) in [("workspace", &self.workspace), ("home", &self.home)] {
            if !value.starts_with('/') {
                return Err(ProposeConfigError::NotAbsolute {
                    key,
                    value: value.clone(),
                });
            }
        }
        for (tool, entry) in &self.tools {
            let ok = !entry.group.is_empty()
                && entry
                    .group
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !ok {
                return Err(ProposeConfigError::BadGroup {
                    tool: tool.clone(),
                    group: entry.group.clone(),
                });
            }
        }
        Ok(())
    }
}
