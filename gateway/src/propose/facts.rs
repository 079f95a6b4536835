//! The context policy authors need about one proposed call, read from its arguments by what
//! the catalogue says the tool is: a shell command's programs and what they touch, a file
//! tool's path, a URL's host, a message's recipients.

use serde_json::Value;

use super::config::ToolKind;
use super::paths::Workspace;
use super::shell::{self, Command};
use crate::action::ProposeFacts;
use crate::protocol::strict_json;
use git::Git;

/// Argument names that hold each kind of value, in the order tried. A command is a line, or
/// an argv array (`["bash", "-lc", "..."]`, as Codex and `local_shell_call` give it); `input`
/// is a free-form (custom) tool's whole input.
const COMMAND_KEYS: &[&str] = &["command", "cmd", "script", "input"];
/// An array of command lines, run in turn (a Responses `shell_call`'s `action.commands`).
const LINES_KEY: &str = "commands";
const WORKDIR_KEYS: &[&str] = &["workdir", "cwd", "working_directory", "dir"];
const PATH_KEYS: &[&str] = &[
    "path",
    "file_path",
    "filePath",
    "file",
    "filename",
    "target_file",
];
const URL_KEYS: &[&str] = &["url", "targetUrl", "href", "uri"];
const RECIPIENT_KEYS: &[&str] = &[
    "to",
    "target",
    "recipient",
    "recipients",
    "channel",
    "chatId",
    "chat_id",
    "email",
];

/// Every argument name read above, by kind.
const READ_KEYS: &[&[&str]] = &[
    COMMAND_KEYS,
    &[LINES_KEY],
    WORKDIR_KEYS,
    PATH_KEYS,
    URL_KEYS,
    RECIPIENT_KEYS,
    &["patch"],
];

/// Whether a key of `arguments` differs from an argument name Warden reads only by case
/// (`COMMAND`, `Path`, with `ſ` for `s`): a tool that decodes its arguments as Go's
/// `encoding/json` does may take it for that name, and run what Warden did not read.
fn folds_onto_read_key(arguments: &Value) -> bool {
    let read = || READ_KEYS.iter().flat_map(|keys| keys.iter());
    arguments.as_object().is_some_and(|object| {
        object.keys().any(|key| {
            !read().any(|known| *known == key.as_str())
                && read().any(|known| strict_json::equal_folded(key, known))
        })
    })
}

/// Programs whose every operand is a file they change.
const CHANGES_OPERANDS: &[&str] = &[
    "rm", "rmdir", "unlink", "shred", "touch", "mkdir", "chmod", "chown", "chgrp", "truncate",
    "tee", "chattr", "setfacl",
];
/// Programs that delete their operands.
const DELETERS: &[&str] = &["rm", "rmdir", "unlink", "shred"];
/// Programs that only read their operands (and write only to their output, which the line
/// redirects where it says).
const READERS: &[&str] = &[
    "cat",
    "tac",
    "less",
    "more",
    "head",
    "tail",
    "grep",
    "egrep",
    "fgrep",
    "rg",
    "ag",
    "ack",
    "ls",
    "wc",
    "stat",
    "file",
    "diff",
    "cmp",
    "comm",
    "du",
    "df",
    "tree",
    "find",
    "locate",
    "which",
    "whereis",
    "type",
    "realpath",
    "readlink",
    "basename",
    "dirname",
    "md5sum",
    "sha1sum",
    "sha256sum",
    "sha512sum",
    "b2sum",
    "cksum",
    "strings",
    "hexdump",
    "xxd",
    "od",
    "jq",
    "cut",
    "tr",
    "nl",
    "fold",
    "column",
    "echo",
    "printf",
    "pwd",
    "test",
    "[",
    "[[",
    "true",
    "false",
    "cd",
    "pushd",
    "popd",
    "id",
    "whoami",
    "date",
    "uname",
    "nproc",
    "git",
];
/// Redirection targets that are not files.
const NOT_FILES: &[&str] = &["/dev/null", "/dev/stdout", "/dev/stderr", "/dev/tty"];

/// The facts of a call to a tool of `kind` with `arguments`.
pub fn read(kind: ToolKind, arguments: &Value, workspace: &Workspace) -> ProposeFacts {
    let mut facts = ProposeFacts {
        arguments_json: arguments.to_string(),
        command_parsed: !folds_onto_read_key(arguments),
        ..ProposeFacts::default()
    };
    let mut paths = Paths {
        workspace,
        facts: &mut facts,
    };
    match kind {
        ToolKind::Shell => {
            let workdir = first_string(arguments, WORKDIR_KEYS);
            if let Some(dir) = workdir {
                paths.add(dir, None, false);
            }
            match command_line(arguments) {
                Some(Some(line)) => shell_facts(&line, workdir, &mut paths),
                Some(None) => paths.facts.command_parsed = false,
                None => {}
            }
        }
        ToolKind::FileRead | ToolKind::FileWrite => {
            if let Some(path) = first_string(arguments, PATH_KEYS) {
                paths.add(path, None, kind == ToolKind::FileWrite);
            }
        }
        ToolKind::Patch => {
            if let Some(patch) = first_string(arguments, &["input", "patch"]) {
                for path in patch_files(patch) {
                    paths.add(path, None, true);
                }
            }
            // One file's operation (a Responses `apply_patch_call`: `type`, `path`, `diff`).
            if let Some(path) = first_string(arguments, &["path"]) {
                paths.add(path, None, true);
            }
        }
        ToolKind::Url => {
            if let Some(host) = first_string(arguments, URL_KEYS).and_then(host_of) {
                facts.hosts.push(host);
            }
        }
        ToolKind::Message => {
            for key in RECIPIENT_KEYS {
                match arguments.get(key) {
                    Some(Value::String(s)) if !s.is_empty() => facts.recipients.push(s.clone()),
                    Some(Value::Array(all)) => facts.recipients.extend(
                        all.iter()
                            .filter_map(Value::as_str)
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned),
                    ),
                    _ => {}
                }
            }
        }
        ToolKind::Other => {}
    }
    facts.paths.dedup();
    facts
}

/// The command line of a shell tool's arguments: `None` when they name none, `Some(None)`
/// when it is neither text, an argv array nor an array of lines (it cannot be read).
fn command_line(arguments: &Value) -> Option<Option<String>> {
    let strings = |all: &Vec<Value>| -> Option<Vec<String>> {
        all.iter().map(|v| v.as_str().map(str::to_owned)).collect()
    };
    if let Some(command) = COMMAND_KEYS.iter().find_map(|k| arguments.get(k)) {
        return Some(match command {
            Value::String(line) => Some(line.clone()),
            Value::Array(argv) => strings(argv).map(|words| {
                words
                    .iter()
                    .map(|w| shell::quote(w))
                    .collect::<Vec<_>>()
                    .join(" ")
            }),
            _ => None,
        });
    }
    let lines = arguments.get(LINES_KEY)?;
    Some(lines.as_array().and_then(strings).map(|l| l.join("\n")))
}

fn first_string<'a>(arguments: &'a Value, keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .find_map(|k| arguments.get(k).and_then(Value::as_str))
}

/// Collects paths into the facts with what they say about the workspace.
struct Paths<'a> {
    workspace: &'a Workspace,
    facts: &'a mut ProposeFacts,
}

impl Paths<'_> {
    /// Notes `path` (read from `cwd`); `changes`: the call writes or deletes it.
    fn add(&mut self, path: &str, cwd: Option<&str>, changes: bool) -> bool {
        if NOT_FILES.contains(&path) {
            return false;
        }
        let resolved = self.workspace.resolve(path, cwd);
        let outside = !self.workspace.contains(&resolved);
        if outside {
            self.facts.outside_workspace = true;
            if changes {
                self.facts.writes_outside_workspace = true;
            }
        }
        let text = resolved.as_str().to_owned();
        if !self.facts.paths.contains(&text) {
            self.facts.paths.push(text);
        }
        outside
    }
}

/// What the shell command `line` (run in `workdir`) does.
fn shell_facts(line: &str, workdir: Option<&str>, paths: &mut Paths<'_>) {
    paths.facts.command = Some(line.to_owned());
    let script = match shell::parse(line) {
        Ok(script) => script,
        Err(_) => {
            paths.facts.command_parsed = false;
            return;
        }
    };
    paths.facts.pipes_to_shell = script.pipes_download_to_interpreter;
    paths.facts.runs_inline_code = !script.inline_code.is_empty();
    paths.facts.inline_code_programs = script.inline_code;
    if script.unknown_program {
        paths.facts.command_parsed = false;
    }
    for command in &script.commands {
        let cwd = match (&command.cwd, workdir) {
            (Some(dir), _) => Some(dir.as_str()),
            (None, dir) => dir,
        };
        command_facts(command, cwd, paths);
    }
}

fn push_unique(set: &mut Vec<String>, value: String) {
    if !set.contains(&value) {
        set.push(value);
    }
}

/// What one command does, run in `cwd`.
fn command_facts(command: &Command, cwd: Option<&str>, paths: &mut Paths<'_>) {
    let name = command.name();
    push_unique(&mut paths.facts.programs, name.to_owned());
    let operands: Vec<&str> = operands(&command.args);
    let git = (name == "git").then(|| git::read(&command.args));
    let first = match &git {
        Some(git) => git.subcommand,
        None => operands.first().copied(),
    };
    if let Some(first) = first {
        push_unique(&mut paths.facts.subcommands, format!("{name} {first}"));
    }
    for redirect in &command.redirects {
        if redirect.target.starts_with('&') {
            continue;
        }
        paths.add(&redirect.target, cwd, redirect.writes);
    }
    if DELETERS.contains(&name) {
        if command.args.iter().any(|a| recursive_flag(a)) {
            paths.facts.recursive_delete = true;
        }
        for operand in &operands {
            if paths.add(operand, cwd, true) {
                paths.facts.deletes_outside_workspace = true;
            }
        }
        return;
    }
    if name == "find" {
        // `-fprint FILE` and its kin write FILE.
        let mut args = command.args.iter();
        while let Some(arg) = args.next() {
            if matches!(arg.as_str(), "-fprint" | "-fprint0" | "-fprintf" | "-fls")
                && let Some(file) = args.next()
            {
                paths.add(file, cwd, true);
            }
        }
    }
    if name == "find" && command.args.iter().any(|a| a == "-delete") {
        paths.facts.recursive_delete = true;
        for operand in operands.iter().take_while(|o| !o.starts_with('(')) {
            if paths.add(operand, cwd, true) {
                paths.facts.deletes_outside_workspace = true;
            }
        }
        return;
    }
    if CHANGES_OPERANDS.contains(&name) {
        let skip = usize::from(matches!(
            name,
            "chmod" | "chown" | "chgrp" | "setfacl" | "chattr"
        ));
        for operand in operands.iter().skip(skip) {
            paths.add(operand, cwd, true);
        }
        return;
    }
    if let Some(targets) = targets::of(name, &command.args) {
        for changed in &targets.changed {
            paths.add(changed, cwd, true);
        }
        for read in &targets.read {
            paths.add(read, cwd, false);
        }
        if targets.in_cwd && cwd.is_some() {
            paths.add(".", cwd, true);
        }
        if targets.anywhere {
            paths.facts.outside_workspace = true;
            paths.facts.writes_outside_workspace = true;
        }
        return;
    }
    if name == "dd" {
        for arg in &command.args {
            if let Some(out) = arg.strip_prefix("of=") {
                paths.add(out, cwd, true);
            } else if let Some(input) = arg.strip_prefix("if=") {
                paths.add(input, cwd, false);
            }
        }
        return;
    }
    match &git {
        Some(git) => {
            let dir = git_facts(git, cwd, paths);
            read_operands(git.args, dir.as_deref(), true, paths);
        }
        None => read_operands(&command.args, cwd, READERS.contains(&name), paths),
    }
}

/// What a `git` command does, run in `cwd`: the directory it works in.
fn git_facts(git: &Git<'_>, cwd: Option<&str>, paths: &mut Paths<'_>) -> Option<String> {
    if git.runs_named_program {
        paths.facts.command_parsed = false;
    }
    let dir = git
        .chdirs
        .iter()
        .fold(cwd.map(str::to_owned), |base, next| {
            Some(within(base.as_deref(), next))
        });
    let dir_str = dir.as_deref();
    if git.subcommand == Some("push") && git::force_push(git.args) {
        paths.facts.force_push = true;
    }
    match git::created_dir(git) {
        Some(Some(created)) => {
            paths.add(created, dir_str, true);
        }
        Some(None) if dir.is_some() => {
            paths.add(".", dir_str, true);
        }
        _ => {}
    }
    // The repository and work tree it uses: written unless the subcommand only reads.
    for tree in &git.trees {
        paths.add(tree, dir_str, git.writes());
    }
    if git.trees.is_empty() && ((dir.is_some() && git.writes()) || !git.chdirs.is_empty()) {
        paths.add(".", dir_str, git.writes());
    }
    dir
}

/// `dir` read from `base` (`None`: the workspace; `Some("")`: unknown).
fn within(base: Option<&str>, dir: &str) -> String {
    if dir.starts_with('/') || dir.starts_with('~') {
        return dir.to_owned();
    }
    match base {
        Some("") => String::new(),
        Some(base) => format!("{base}/{dir}"),
        None => dir.to_owned(),
    }
}

/// The arguments of a program Warden reads no writes of: those that look like paths are read
/// (or used) by it, and URLs name hosts. Unless it only `reads`, a path outside the
/// workspace, or a working directory outside it, is an unknown effect there.
fn read_operands(args: &[String], cwd: Option<&str>, reads: bool, paths: &mut Paths<'_>) {
    if !reads && cwd.is_some() && paths.add(".", cwd, false) {
        paths.facts.unknown_effect_outside_workspace = true;
    }
    for arg in args {
        let value = arg.split_once('=').map_or(arg.as_str(), |(_, v)| v);
        if looks_like_path(value) && paths.add(value, cwd, false) && !reads {
            paths.facts.unknown_effect_outside_workspace = true;
        }
        if let Some(host) = host_of(value) {
            push_unique(&mut paths.facts.hosts, host);
        }
    }
}

/// The arguments that are not options (those after `--` all are).
fn operands(args: &[String]) -> Vec<&str> {
    let mut out = Vec::with_capacity(args.len());
    let mut options_done = false;
    for arg in args {
        if !options_done && arg == "--" {
            options_done = true;
            continue;
        }
        if options_done || !arg.starts_with('-') || arg == "-" {
            out.push(arg.as_str());
        }
    }
    out
}

/// `-r`, `-R`, `--recursive`, or a cluster that holds one (`-rf`, `-fR`).
fn recursive_flag(arg: &str) -> bool {
    arg == "--recursive"
        || arg
            .strip_prefix('-')
            .is_some_and(|f| !f.starts_with('-') && (f.contains('r') || f.contains('R')))
}

fn looks_like_path(s: &str) -> bool {
    !s.contains("://")
        && (s.starts_with('/')
            || s.starts_with("./")
            || s.starts_with("../")
            || s.starts_with('~')
            || s == "..")
}

/// The host of an absolute `http`/`https`/`ws`/`wss`/`ftp` URL, lower-cased, without a
/// trailing dot.
pub fn host_of(text: &str) -> Option<String> {
    let scheme_end = text.find("://")?;
    let scheme = &text[..scheme_end];
    if !matches!(
        scheme.to_ascii_lowercase().as_str(),
        "http" | "https" | "ws" | "wss" | "ftp"
    ) {
        return None;
    }
    let rest = &text[scheme_end + 3..];
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

/// The files a patch in OpenClaw's (Codex's) `apply_patch` format or a unified diff names.
fn patch_files(patch: &str) -> Vec<&str> {
    let mut files = Vec::new();
    for line in patch.lines() {
        let named = [
            "*** Add File: ",
            "*** Update File: ",
            "*** Delete File: ",
            "*** Move to: ",
            "+++ ",
            "--- ",
        ]
        .iter()
        .find_map(|prefix| line.strip_prefix(prefix));
        if let Some(name) = named {
            let name = name.trim();
            let name = name
                .strip_prefix("a/")
                .or_else(|| name.strip_prefix("b/"))
                .unwrap_or(name);
            if !name.is_empty() && name != "/dev/null" && !files.contains(&name) {
                files.push(name);
            }
        }
    }
    files
}

mod git;
mod targets;

#[cfg(test)]
mod tests;
