//! A shell command line read the way a POSIX shell reads it: words split with quoting rules,
//! control operators (`|`, `|&`, `&&`, `||`, `;`, `&`, newlines), subshells and groups,
//! command and process substitutions (`$(...)`, backticks, `<(...)`), redirections and
//! here-documents; then every simple command unwrapped through what only runs another
//! command (`sudo`, `env`, `nohup`, `timeout`, `xargs`, `sh -c`, `eval`, ...).
//!
//! Braces expand as bash expands them (`/{etc,usr}` is two words: `braces.rs`); nothing else
//! is expanded: a word holding `$HOME` keeps that text, and whoever reads a path from it must
//! treat it as unknown. A line the lexer cannot finish (an unterminated quote or
//! substitution) is an error: policy sees it as not understood, never as harmless.

use std::ops::Range;

mod braces;
mod inline_code;

/// Wrappers and substitutions nested deeper than this are not unwrapped: an error.
const MAX_DEPTH: usize = 8;

/// The name of a program only the agent's shell knows (`$(curl …)`, `$EDITOR`).
pub const SUBSTITUTED: &str = "(substituted)";

/// One command the line runs: the program and its arguments, quotes removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The program as written (`/usr/bin/rm`, `rm`, `$SHELL`).
    pub program: String,
    /// The arguments, in order.
    pub args: Vec<String>,
    /// Its redirections.
    pub redirects: Vec<Redirect>,
    /// The directory it runs in, as far as `cd` earlier on the line says (`None`: the
    /// agent's working directory; `Some("")`: unknown).
    pub cwd: Option<String>,
    /// What the line gives it on standard input: here-document bodies and here-strings.
    pub input: Vec<String>,
    /// It reads the output of the command before it in a pipe.
    pub piped: bool,
}

impl Command {
    /// The program's file name (`rm` for `/usr/bin/rm`); [`SUBSTITUTED`] when it is the
    /// output of a command or parameter substitution (`$(curl …)`, `$CMD`).
    pub fn name(&self) -> &str {
        if self.program.contains('$') || self.program.contains('`') {
            return SUBSTITUTED;
        }
        self.program.rsplit('/').next().unwrap_or(&self.program)
    }

    /// The program is no name Warden can read: a variable or a substitution, a glob
    /// (`/bin/r?`, `r[m]`, `*`), braces left after expansion (`{rm}`), a process
    /// substitution.
    pub fn program_unknown(&self) -> bool {
        let p = &self.program;
        self.name() == SUBSTITUTED
            || p.contains(['*', '?', '(', ')'])
            || (p.contains('[') && p.contains(']'))
            || (p.contains('{') && p.contains('}'))
    }

    /// The command may make a name run another program than its own: `alias NAME=…`,
    /// `hash -p FILE NAME`, `enable -f FILE NAME`.
    fn redefines_programs(&self) -> bool {
        let short_option = |letter: char| {
            self.args
                .iter()
                .any(|a| a.starts_with('-') && !a.starts_with("--") && a.contains(letter))
        };
        match self.name() {
            "alias" => self.args.iter().any(|a| a.contains('=')),
            "hash" => short_option('p'),
            "enable" => short_option('f'),
            _ => false,
        }
    }
}

/// A redirection: where a file descriptor reads from or writes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// It writes (or appends to) its target.
    pub writes: bool,
    /// The file (or `&2`-style descriptor) it names.
    pub target: String,
}

/// What a command line runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Script {
    /// Every command, through wrappers and substitutions, in the order written.
    pub commands: Vec<Command>,
    /// Output of a download (`curl`, `wget`) reaches an interpreter (`sh`, `python`, ...)
    /// through a pipe, a command or process substitution.
    pub pipes_download_to_interpreter: bool,
    /// A command runs a program Warden cannot name: a glob (`/bin/r?`), a variable or a
    /// substitution (`$X`, `$(printf rm)`), a multi-call binary without an applet it reads,
    /// or the line may make a name run another program (`alias`, `hash -p`, `enable -f`).
    pub unknown_program: bool,
    /// Interpreters that run a program given on the line (`python3 -c CODE`, `node -e CODE`,
    /// `python3 - <<EOF`) or read from a pipe (`… | sh`): code Warden does not judge.
    pub inline_code: Vec<String>,
}

impl Script {
    /// Takes in what `other`, read inside this line, runs.
    fn absorb(&mut self, other: Script) {
        self.pipes_download_to_interpreter |= other.pipes_download_to_interpreter;
        self.unknown_program |= other.unknown_program;
        for name in other.inline_code {
            if !self.inline_code.contains(&name) {
                self.inline_code.push(name);
            }
        }
        self.commands.extend(other.commands);
    }
}

/// Why a command line could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShellError {
    /// A quote, substitution or group that is never closed.
    #[error("unterminated {what} starting at byte {at}")]
    Unterminated { what: &'static str, at: usize },
    /// A `)` with no `(` before it.
    #[error("unbalanced `)` at byte {at}")]
    Unbalanced { at: usize },
    /// Wrappers or substitutions nested more than [`MAX_DEPTH`] deep.
    #[error("commands nested more than {MAX_DEPTH} deep")]
    TooDeep,
    /// Brace expansion makes more of the line than Warden reads.
    #[error(
        "brace expansion makes more than {} words or {} bytes of the line",
        braces::MAX_WORDS,
        braces::MAX_BYTES
    )]
    TooManyWords,
}

/// Reads `line` as a shell would.
pub fn parse(line: &str) -> Result<Script, ShellError> {
    let mut script = Script::default();
    read_into(line, 0, &mut script)?;
    Ok(script)
}

/// Programs that fetch from the network.
const DOWNLOADERS: &[&str] = &["curl", "wget", "fetch", "aria2c", "http", "xh", "lynx"];
/// Programs that run code they read (`source` and `.` run a file in the current shell).
const INTERPRETERS: &[&str] = &[
    "sh", "bash", "zsh", "dash", "ksh", "mksh", "fish", "ash", "busybox", "python", "python3",
    "python2", "perl", "ruby", "node", "php", "pwsh", "lua", "deno", "bun", "source", ".",
];
/// Shells whose `-c STRING` is a command line.
const SHELLS: &[&str] = &["sh", "bash", "zsh", "dash", "ksh", "mksh", "ash", "fish"];

fn is_one_of(name: &str, set: &[&str]) -> bool {
    set.contains(&name)
}

/// Lexes, parses and unwraps `line` into `script`, `depth` levels down.
fn read_into(line: &str, depth: usize, script: &mut Script) -> Result<(), ShellError> {
    if depth > MAX_DEPTH {
        return Err(ShellError::TooDeep);
    }
    let (tokens, heredocs) = Lexer::new(line).tokens()?;
    let mut parser = Parser::default();
    for token in tokens {
        parser.take(token)?;
    }
    parser.end_command();
    if parser.open_groups > 0 {
        return Err(ShellError::Unterminated {
            what: "subshell",
            at: line.len(),
        });
    }
    let mut cwd: Option<String> = None;
    for pipeline in parser.pipelines {
        let mut downloads = false;
        for (position, mut simple) in pipeline.into_iter().enumerate() {
            // The here-documents it reads; the shell runs the substitutions in those whose
            // delimiter is not quoted.
            let mut input = Vec::new();
            for &n in &simple.heredocs {
                let Some(doc) = heredocs.get(n) else { continue };
                if !doc.quoted {
                    simple
                        .substitutions
                        .extend(Lexer::new(&doc.body).substitutions_in_text()?);
                }
                input.push(doc.body.clone());
            }
            input.append(&mut simple.here_strings);
            // Substitutions run first; a download among them feeds this command.
            let mut substituted_download = false;
            for sub in &simple.substitutions {
                let mut inner = Script::default();
                read_into(sub, depth + 1, &mut inner)?;
                substituted_download |= runs_one_of(&inner, DOWNLOADERS);
                script.absorb(inner);
            }
            let outputs = std::mem::take(&mut simple.output_substitutions);
            if let Some(command) = simple.into_command(cwd.clone(), input, position > 0) {
                let mut unwrapped = Script::default();
                unwrap(command, depth, &mut unwrapped)?;
                for c in &unwrapped.commands {
                    let name = c.name();
                    if is_one_of(name, INTERPRETERS) && (downloads || substituted_download) {
                        script.pipes_download_to_interpreter = true;
                    }
                    if is_one_of(name, DOWNLOADERS) {
                        downloads = true;
                    }
                    if name == "cd" || name == "pushd" {
                        cwd = Some(next_cwd(cwd.as_deref(), c.args.first().map(String::as_str)));
                    }
                    script.unknown_program |= c.program_unknown() || c.redefines_programs();
                }
                script.absorb(unwrapped);
            }
            // An output process substitution (`>(sh)`) reads what this command writes.
            for sub in &outputs {
                let mut inner = Script::default();
                read_into(sub, depth + 1, &mut inner)?;
                if (downloads || substituted_download) && runs_one_of(&inner, INTERPRETERS) {
                    script.pipes_download_to_interpreter = true;
                }
                script.absorb(inner);
            }
        }
    }
    Ok(())
}

/// Whether `script` runs a program named in `set`.
fn runs_one_of(script: &Script, set: &[&str]) -> bool {
    script.commands.iter().any(|c| is_one_of(c.name(), set))
}

/// The directory after `cd target` from `cwd`: a path as written, joined to the previous one
/// when relative (resolved later); `""` when unknown (`cd -`, `cd $X`).
fn next_cwd(cwd: Option<&str>, target: Option<&str>) -> String {
    let target = target.unwrap_or("~");
    if target == "-" || target.starts_with('$') || cwd == Some("") {
        return String::new();
    }
    if target.starts_with('/') || target.starts_with('~') {
        return target.to_owned();
    }
    match cwd {
        Some(dir) => format!("{dir}/{target}"),
        None => target.to_owned(),
    }
}

/// Options of wrappers that take a value (`sudo -u root`), by wrapper.
fn option_takes_value(wrapper: &str, option: &str) -> bool {
    let list: &[&str] = match wrapper {
        "sudo" => &[
            "-u", "-g", "-h", "-p", "-C", "-D", "-r", "-t", "-U", "-T", "-R",
        ],
        "doas" => &["-u", "-C"],
        "env" => &["-u", "-C", "--unset", "--chdir", "-S", "--split-string"],
        "nice" => &["-n", "--adjustment"],
        "timeout" => &["-s", "--signal", "-k", "--kill-after"],
        "xargs" => &[
            "-I",
            "-L",
            "-n",
            "-P",
            "-s",
            "-d",
            "-E",
            "-a",
            "--arg-file",
            "--delimiter",
        ],
        "stdbuf" => &["-i", "-o", "-e"],
        "ionice" => &["-c", "-n", "-p"],
        "chroot" => &["--userspec", "--groups"],
        "runuser" | "su" => &["-u", "-g", "-G", "-s", "--shell"],
        "exec" => &["-a"],
        "time" => &["-o", "-f", "--output", "--format"],
        "watch" => &["-n", "--interval"],
        _ => &[],
    };
    list.contains(&option)
}

/// Programs that only run the command that follows their options.
const WRAPPERS: &[&str] = &[
    "sudo",
    "doas",
    "env",
    "nohup",
    "nice",
    "timeout",
    "xargs",
    "exec",
    "command",
    "builtin",
    "stdbuf",
    "ionice",
    "time",
    "chroot",
    "setsid",
    "unbuffer",
    "caffeinate",
    "watch",
    "strace",
    "torsocks",
    "proxychains",
    "proxychains4",
    "firejail",
    "flock",
];

/// `command` as the commands it runs: itself, or what its wrapper (`sudo`, `sh -c`, `eval`)
/// runs, recorded with the wrapper.
fn unwrap(command: Command, depth: usize, script: &mut Script) -> Result<(), ShellError> {
    if depth > MAX_DEPTH {
        return Err(ShellError::TooDeep);
    }
    let name = command.name().to_owned();
    if let Some(line) = command_string(&name, &command.args) {
        script.commands.push(command);
        let mut nested = Script::default();
        read_into(&line, depth + 1, &mut nested)?;
        script.absorb(nested);
        return Ok(());
    }
    if name == "find" {
        let runs = find_exec(&command);
        script.commands.push(command);
        for run in runs {
            unwrap(run, depth + 1, script)?;
        }
        return Ok(());
    }
    if name == "coreutils" {
        // The single-binary coreutils runs the program its option names.
        let at = command.args.iter().position(|a| {
            a.starts_with("--coreutils-prog=") || a.starts_with("--coreutils-prog-shebang=")
        });
        let Some(at) = at else {
            script.unknown_program = true;
            script.commands.push(command);
            return Ok(());
        };
        let program = command.args[at]
            .split_once('=')
            .map_or("", |(_, p)| p)
            .to_owned();
        let inner = Command {
            program,
            args: command.args[at + 1..].to_vec(),
            redirects: command.redirects.clone(),
            cwd: command.cwd.clone(),
            input: command.input.clone(),
            piped: command.piped,
        };
        script.commands.push(Command {
            args: command.args[..=at].to_vec(),
            ..command
        });
        return unwrap(inner, depth + 1, script);
    }
    let wrapper = multi_call(&name).unwrap_or(&name);
    if multi_call(&name).is_none() && !is_one_of(wrapper, WRAPPERS) {
        let runs = code_it_runs(&command, script);
        script.commands.push(command);
        for run in runs {
            read_into(&run, depth + 1, script)?;
        }
        return Ok(());
    }
    // The wrapped command starts after the wrapper's options (and, for some, an operand).
    let mut i = 0;
    let mut split_string = None;
    while let Some(arg) = command.args.get(i) {
        if arg == "--" {
            i += 1;
            break;
        }
        if wrapper == "env" && is_assignment(arg) {
            i += 1;
            continue;
        }
        if !arg.starts_with('-') || arg == "-" {
            break;
        }
        if wrapper == "env" && (arg == "-S" || arg == "--split-string") {
            split_string = command.args.get(i + 1).cloned();
        }
        i += if option_takes_value(wrapper, arg) {
            2
        } else {
            1
        };
    }
    match wrapper {
        // An operand before the command: the duration, the new root, the lock file.
        "timeout" | "chroot" | "flock" => i += 1,
        _ => {}
    }
    let options = command.args.get(..i).unwrap_or_default();
    // `watch` runs its arguments as a command line (`sh -c`), unless `-x`.
    if wrapper == "watch" && !options.iter().any(|a| a == "-x" || a == "--exec") {
        split_string = Some(command.args.get(i..).unwrap_or_default().join(" "));
    }
    let rest: Vec<String> = command.args.get(i..).unwrap_or_default().to_vec();
    let Command {
        redirects,
        cwd,
        input,
        piped,
        ..
    } = command.clone();
    script.commands.push(Command {
        args: options.to_vec(),
        ..command
    });
    if let Some(line) = split_string {
        return read_into(&line, depth + 1, script);
    }
    let mut words = rest.into_iter();
    let Some(program) = words.next() else {
        return Ok(());
    };
    unwrap(
        Command {
            program,
            args: words.collect(),
            redirects,
            cwd,
            input,
            piped,
        },
        depth + 1,
        script,
    )
}

/// The command lines `command` runs from what the line gives it, as far as Warden reads
/// them: a shell's program on standard input (`bash <<EOF`, `sh -s <<< LINE`), and the
/// shell commands an interpreter's inline code spells out literally (`python3 -c
/// 'os.system("…")'`). An interpreter given code inline, or reading its program from a pipe,
/// is noted in `script.inline_code`.
fn code_it_runs(command: &Command, script: &mut Script) -> Vec<String> {
    let name = command.name();
    let note = |script: &mut Script| {
        if !script.inline_code.iter().any(|n| n == name) {
            script.inline_code.push(name.to_owned());
        }
    };
    if is_one_of(name, SHELLS) {
        if !shell_reads_stdin(&command.args) {
            return Vec::new();
        }
        if command.piped {
            note(script);
        }
        return command.input.clone();
    }
    let Some(given) = inline_code::given(name, &command.args) else {
        return Vec::new();
    };
    let mut programs = given.code;
    if given.reads_stdin && (command.piped || !command.input.is_empty()) {
        programs.extend(command.input.iter().cloned());
        note(script);
    }
    if !programs.is_empty() {
        note(script);
    }
    programs
        .iter()
        .flat_map(|code| inline_code::shell_outs(name, code))
        .map(|out| match out {
            inline_code::ShellOut::Line(line) => line,
            inline_code::ShellOut::Argv(words) => {
                words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
            }
        })
        .collect()
}

/// Whether a shell run with `args` (no `-c`) reads its program from standard input: no
/// script operand, or `-s`.
fn shell_reads_stdin(args: &[String]) -> bool {
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        if arg == "--" || arg == "-" {
            return args.get(i + 1).is_none();
        }
        let Some(flags) = arg.strip_prefix('-').or_else(|| arg.strip_prefix('+')) else {
            return false;
        };
        if !arg.starts_with("--") && flags.contains('s') {
            return true;
        }
        i += 1;
        if arg == "--rcfile" || arg == "--init-file" {
            i += 1;
        } else if !arg.starts_with("--") {
            i += flags.chars().filter(|f| matches!(f, 'o' | 'O')).count();
        }
    }
    true
}

/// `word` quoted for a POSIX shell, so that reading the line gives the word back.
pub fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_@%+:,./-".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// A multi-call binary's name (`busybox`, `busybox.static`, `toybox`): it runs the applet
/// its first operand names, as a wrapper runs a command.
fn multi_call(name: &str) -> Option<&'static str> {
    ["busybox", "toybox"]
        .into_iter()
        .find(|binary| name.starts_with(binary))
}

/// The command line a program runs from its arguments: a shell's `-c LINE`, `su -c LINE`,
/// `eval WORDS`, `trap LINE SIGNAL`.
fn command_string(name: &str, args: &[String]) -> Option<String> {
    match name {
        "eval" => Some(args.join(" ")),
        "trap" => {
            let action = operands_from(args, 0).next()?;
            (action != "-").then(|| action.clone())
        }
        "su" | "runuser" | "script" => args.iter().enumerate().find_map(|(i, arg)| {
            if let Some(line) = arg.strip_prefix("--command=") {
                return Some(line.to_owned());
            }
            (arg == "-c" || arg == "--command")
                .then(|| args.get(i + 1).cloned().unwrap_or_default())
        }),
        _ if is_one_of(name, SHELLS) => shell_command_string(args),
        _ => None,
    }
}

/// A shell's `-c` command line: its first operand after the options (`bash -c -- LINE`,
/// `bash -o pipefail -lc LINE`), or fish's `--command LINE`; `None` without `-c`.
fn shell_command_string(args: &[String]) -> Option<String> {
    let mut c = false;
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        if arg == "--" || arg == "-" {
            i += 1;
            break;
        }
        if let Some(line) = arg.strip_prefix("--command=") {
            return Some(line.to_owned());
        }
        if arg == "--command" {
            return Some(args.get(i + 1).cloned().unwrap_or_default());
        }
        i += 1;
        if arg.starts_with("--") {
            if arg == "--rcfile" || arg == "--init-file" {
                i += 1;
            }
            continue;
        }
        let Some(flags) = arg.strip_prefix('-').or_else(|| arg.strip_prefix('+')) else {
            i -= 1;
            break;
        };
        c |= arg.starts_with('-') && flags.contains('c');
        // `-o OPTION`, `-O SHOPT`: a value each.
        i += flags.chars().filter(|f| matches!(f, 'o' | 'O')).count();
    }
    c.then(|| args.get(i).cloned().unwrap_or_default())
}

/// The operands of `args` from index `from`: the words that are not options.
fn operands_from(args: &[String], from: usize) -> impl Iterator<Item = &String> {
    let mut options_done = false;
    args.iter().skip(from).filter(move |arg| {
        if !options_done && *arg == "--" {
            options_done = true;
            return false;
        }
        options_done || !arg.starts_with('-') || *arg == "-"
    })
}

/// The commands `find … -exec CMD {} ;` (`-execdir`, `-ok`, `-okdir`) runs, one for each
/// starting point, `{}` replaced by it (the files found lie below it).
fn find_exec(find: &Command) -> Vec<Command> {
    let args = &find.args;
    let starts: Vec<&str> = args
        .iter()
        .take_while(|a| !a.starts_with('-') && *a != "(" && *a != "!")
        .map(String::as_str)
        .collect();
    let starts = if starts.is_empty() { vec!["."] } else { starts };
    let mut runs = Vec::new();
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        i += 1;
        if !matches!(arg.as_str(), "-exec" | "-execdir" | "-ok" | "-okdir") {
            continue;
        }
        let words: Vec<&String> = args[i..]
            .iter()
            .take_while(|w| *w != ";" && *w != "+")
            .collect();
        i += words.len() + 1;
        let Some((program, rest)) = words.split_first() else {
            continue;
        };
        for start in &starts {
            runs.push(Command {
                program: program.replace("{}", start),
                args: rest.iter().map(|w| w.replace("{}", start)).collect(),
                redirects: Vec::new(),
                cwd: find.cwd.clone(),
                input: Vec::new(),
                piped: false,
            });
        }
    }
    runs
}

/// `NAME=value`: a variable assignment, not a command.
fn is_assignment(word: &str) -> bool {
    match word.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        None => false,
    }
}

// ---- lexer ---------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A word, quotes removed, the command lines of the substitutions in it, and of the
    /// output process substitutions (`>(…)`) that read what the command writes.
    Word {
        text: String,
        /// The words brace expansion makes of it (`None`: it has no brace expression).
        expanded: Option<Vec<String>>,
        subs: Vec<String>,
        outputs: Vec<String>,
    },
    /// `|`, `|&`: the next command reads this one's output.
    Pipe,
    /// `&&`, `||`, `;`, `&`, `;;`, a newline: the next command starts a new pipeline.
    Separator,
    /// `(`, `)`.
    Open,
    Close {
        at: usize,
    },
    /// A redirection operator; `writes` when it writes. Its target is the next word.
    Redirect {
        writes: bool,
    },
    /// `<<` / `<<-`: a here-document; its delimiter is the next word.
    HereDoc,
    /// `<<<`: a here-string, the next word.
    HereString,
    /// `>&`, `<&`: a descriptor duplicated; the next word names the descriptor.
    Dup,
}

/// A here-document: its body, and whether its delimiter was quoted (no expansion in it).
struct HereDocument {
    body: String,
    quoted: bool,
}

/// One word as the lexer read it.
struct LexedWord {
    /// Its text, quotes removed.
    text: String,
    /// The command lines of its substitutions.
    subs: Vec<String>,
    /// Some of it was quoted or escaped.
    quoted: bool,
    /// The byte ranges of `text` written plainly (where braces expand).
    plain: Vec<Range<usize>>,
}

struct Lexer<'a> {
    src: &'a str,
    bytes: &'a [u8],
    at: usize,
    /// Delimiters of here-documents whose bodies start after the next newline.
    heredocs: Vec<(String, bool)>,
    /// The here-documents read so far, in the order of their `<<`.
    bodies: Vec<HereDocument>,
    /// What brace expansion may still make of the line.
    budget: braces::Budget,
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str) -> Self {
        Lexer {
            src,
            bytes: src.as_bytes(),
            at: 0,
            heredocs: Vec::new(),
            bodies: Vec::new(),
            budget: braces::Budget::default(),
        }
    }

    fn peek(&self, ahead: usize) -> Option<u8> {
        self.bytes.get(self.at + ahead).copied()
    }

    /// The line's tokens, and its here-documents in the order of their `<<`.
    fn tokens(mut self) -> Result<(Vec<Token>, Vec<HereDocument>), ShellError> {
        let mut out = Vec::new();
        let mut heredoc_next = false;
        while let Some(b) = self.peek(0) {
            match b {
                b' ' | b'\t' => {
                    self.at += 1;
                    continue;
                }
                b'\\' if self.peek(1) == Some(b'\n') => {
                    self.at += 2;
                    continue;
                }
                b'#' => {
                    while self.peek(0).is_some_and(|b| b != b'\n') {
                        self.at += 1;
                    }
                }
                b'\n' => {
                    self.at += 1;
                    self.skip_heredoc_bodies()?;
                    out.push(Token::Separator);
                }
                b'|' => {
                    let (len, token) = match self.peek(1) {
                        Some(b'|') => (2, Token::Separator),
                        Some(b'&') => (2, Token::Pipe),
                        _ => (1, Token::Pipe),
                    };
                    self.at += len;
                    out.push(token);
                }
                b'&' => {
                    if self.peek(1) == Some(b'>') {
                        self.at += if self.peek(2) == Some(b'>') { 3 } else { 2 };
                        out.push(Token::Redirect { writes: true });
                    } else {
                        self.at += if self.peek(1) == Some(b'&') { 2 } else { 1 };
                        out.push(Token::Separator);
                    }
                }
                b';' => {
                    self.at += if self.peek(1) == Some(b';') { 2 } else { 1 };
                    out.push(Token::Separator);
                }
                b'(' => {
                    self.at += 1;
                    out.push(Token::Open);
                }
                b')' => {
                    out.push(Token::Close { at: self.at });
                    self.at += 1;
                }
                b'<' | b'>' if self.peek(1) == Some(b'(') => {
                    // Process substitution: a word whose command runs beside this one.
                    let start = self.at;
                    self.at += 2;
                    let inner = self.balanced(start, "process substitution")?;
                    let (subs, outputs) = if b == b'>' {
                        (Vec::new(), vec![inner])
                    } else {
                        (vec![inner], Vec::new())
                    };
                    out.push(Token::Word {
                        text: self.src[start..self.at].to_owned(),
                        expanded: None,
                        subs,
                        outputs,
                    });
                }
                b'<' => {
                    let (len, token) = match (self.peek(1), self.peek(2)) {
                        (Some(b'<'), Some(b'<')) => (3, Token::HereString),
                        (Some(b'<'), Some(b'-')) => (3, Token::HereDoc),
                        (Some(b'<'), _) => (2, Token::HereDoc),
                        (Some(b'>'), _) => (2, Token::Redirect { writes: true }),
                        (Some(b'&'), _) => (2, Token::Dup),
                        _ => (1, Token::Redirect { writes: false }),
                    };
                    self.at += len;
                    heredoc_next = token == Token::HereDoc;
                    out.push(token);
                    continue;
                }
                b'>' => {
                    let (len, token) = match self.peek(1) {
                        Some(b'&') => (2, Token::Dup),
                        Some(b'>' | b'|') => (2, Token::Redirect { writes: true }),
                        _ => (1, Token::Redirect { writes: true }),
                    };
                    self.at += len;
                    out.push(token);
                }
                _ => {
                    let LexedWord {
                        text,
                        subs,
                        quoted,
                        plain,
                    } = self.word()?;
                    // Digits right before a redirection are its file descriptor.
                    if !quoted
                        && text.bytes().all(|b| b.is_ascii_digit())
                        && matches!(self.peek(0), Some(b'<' | b'>'))
                    {
                        continue;
                    }
                    if heredoc_next {
                        self.heredocs.push((text.clone(), quoted));
                    }
                    let expanded = if heredoc_next || !text.contains('{') {
                        None
                    } else {
                        braces::expand(&text, &plain, quoted, &mut self.budget)
                            .map_err(|_| ShellError::TooManyWords)?
                    };
                    out.push(Token::Word {
                        text,
                        expanded,
                        subs,
                        outputs: Vec::new(),
                    });
                }
            }
            heredoc_next = false;
        }
        Ok((out, self.bodies))
    }

    /// The command lines of the substitutions in a text the shell expands as it does a
    /// double-quoted string (a here-document whose delimiter is not quoted).
    fn substitutions_in_text(mut self) -> Result<Vec<String>, ShellError> {
        let mut subs = Vec::new();
        let mut text = String::new();
        while let Some(b) = self.peek(0) {
            match b {
                b'\\' => self.at += 2,
                b'$' | b'`' => self.dollar_or_backtick(&mut text, &mut subs)?,
                _ => self.at += 1,
            }
        }
        Ok(subs)
    }

    /// Skips the bodies of the here-documents announced on the line just ended.
    fn skip_heredoc_bodies(&mut self) -> Result<(), ShellError> {
        for (delimiter, quoted) in std::mem::take(&mut self.heredocs) {
            let start = self.at;
            let mut body = String::new();
            loop {
                let rest = &self.src[self.at..];
                if rest.is_empty() {
                    return Err(ShellError::Unterminated {
                        what: "here-document",
                        at: start,
                    });
                }
                let line_end = rest.find('\n').map_or(rest.len(), |i| i + 1);
                let line = rest[..line_end].trim_end_matches('\n');
                self.at += line_end;
                if line.trim_start_matches('\t') == delimiter {
                    break;
                }
                body.push_str(&rest[..line_end]);
            }
            self.bodies.push(HereDocument { body, quoted });
        }
        Ok(())
    }

    /// Reads up to the `)` that closes a `(` just passed (quotes and nesting respected):
    /// the text between.
    fn balanced(&mut self, start: usize, what: &'static str) -> Result<String, ShellError> {
        let inner_start = self.at;
        let mut depth = 1usize;
        while let Some(b) = self.peek(0) {
            match b {
                b'\\' => self.at += 2,
                b'\'' => {
                    self.at += 1;
                    self.single_quoted(start)?;
                }
                b'"' => {
                    self.at += 1;
                    let mut subs = Vec::new();
                    let mut text = String::new();
                    self.double_quoted(start, &mut text, &mut subs)?;
                }
                b'(' => {
                    depth += 1;
                    self.at += 1;
                }
                b')' => {
                    depth -= 1;
                    self.at += 1;
                    if depth == 0 {
                        return Ok(self.src[inner_start..self.at - 1].to_owned());
                    }
                }
                _ => self.at += 1,
            }
        }
        Err(ShellError::Unterminated { what, at: start })
    }

    /// Reads a `'...'` body (the opening quote passed): its text.
    fn single_quoted(&mut self, start: usize) -> Result<&'a str, ShellError> {
        let from = self.at;
        match memchr::memchr(b'\'', &self.bytes[from..]) {
            Some(i) => {
                self.at = from + i + 1;
                Ok(&self.src[from..from + i])
            }
            None => Err(ShellError::Unterminated {
                what: "single quote",
                at: start,
            }),
        }
    }

    /// Reads a `"..."` body (the opening quote passed) into `text`, its substitutions into
    /// `subs`.
    fn double_quoted(
        &mut self,
        start: usize,
        text: &mut String,
        subs: &mut Vec<String>,
    ) -> Result<(), ShellError> {
        loop {
            let Some(b) = self.peek(0) else {
                return Err(ShellError::Unterminated {
                    what: "double quote",
                    at: start,
                });
            };
            match b {
                b'"' => {
                    self.at += 1;
                    return Ok(());
                }
                b'\\' => match self.peek(1) {
                    Some(c @ (b'"' | b'\\' | b'$' | b'`')) => {
                        text.push(char::from(c));
                        self.at += 2;
                    }
                    Some(b'\n') => self.at += 2,
                    _ => {
                        text.push('\\');
                        self.at += 1;
                    }
                },
                b'$' | b'`' => self.dollar_or_backtick(text, subs)?,
                _ => self.push_char(text),
            }
        }
    }

    /// Copies one (UTF-8) character to `text`.
    fn push_char(&mut self, text: &mut String) {
        let c = self.src[self.at..].chars().next().unwrap_or('\u{fffd}');
        text.push(c);
        self.at += c.len_utf8().max(1);
    }

    /// At `$` or a backtick: a substitution (kept as written in `text`, its command line
    /// in `subs`), an expansion kept as written, or a plain `$`.
    fn dollar_or_backtick(
        &mut self,
        text: &mut String,
        subs: &mut Vec<String>,
    ) -> Result<(), ShellError> {
        let start = self.at;
        if self.peek(0) == Some(b'`') {
            self.at += 1;
            let mut inner = String::new();
            loop {
                match self.peek(0) {
                    None => {
                        return Err(ShellError::Unterminated {
                            what: "backquote",
                            at: start,
                        });
                    }
                    Some(b'`') => {
                        self.at += 1;
                        break;
                    }
                    Some(b'\\') if matches!(self.peek(1), Some(b'`' | b'\\' | b'$')) => {
                        inner.push(char::from(self.bytes[self.at + 1]));
                        self.at += 2;
                    }
                    Some(_) => self.push_char(&mut inner),
                }
            }
            subs.push(inner);
            text.push_str(&self.src[start..self.at]);
            return Ok(());
        }
        match (self.peek(1), self.peek(2)) {
            (Some(b'('), Some(b'(')) => {
                // Arithmetic: no command runs.
                self.at += 3;
                self.balanced(start, "arithmetic expansion")?;
                if self.peek(0) == Some(b')') {
                    self.at += 1;
                }
            }
            (Some(b'('), _) => {
                self.at += 2;
                let inner = self.balanced(start, "command substitution")?;
                subs.push(inner);
            }
            (Some(b'{'), _) => {
                self.at += 2;
                match memchr::memchr(b'}', &self.bytes[self.at..]) {
                    Some(i) => self.at += i + 1,
                    None => {
                        return Err(ShellError::Unterminated {
                            what: "parameter expansion",
                            at: start,
                        });
                    }
                }
            }
            _ => self.at += 1,
        }
        text.push_str(&self.src[start..self.at]);
        Ok(())
    }

    /// Reads one word: its text (quotes removed), its substitutions, whether any of it was
    /// quoted.
    fn word(&mut self) -> Result<LexedWord, ShellError> {
        let mut text = String::new();
        let mut subs = Vec::new();
        let mut quoted = false;
        let mut plain: Vec<Range<usize>> = Vec::new();
        while let Some(b) = self.peek(0) {
            match b {
                b' ' | b'\t' | b'\n' | b'|' | b'&' | b';' | b'(' | b')' | b'<' | b'>' => break,
                b'\\' => {
                    quoted = true;
                    match self.peek(1) {
                        Some(b'\n') => self.at += 2,
                        Some(_) => {
                            self.at += 1;
                            self.push_char(&mut text);
                        }
                        None => self.at += 1,
                    }
                }
                b'\'' => {
                    quoted = true;
                    let start = self.at;
                    self.at += 1;
                    let body = self.single_quoted(start)?;
                    text.push_str(body);
                }
                b'"' => {
                    quoted = true;
                    let start = self.at;
                    self.at += 1;
                    self.double_quoted(start, &mut text, &mut subs)?;
                }
                b'$' if self.peek(1) == Some(b'\'') => {
                    // ANSI-C quoting: `$'...'`, escapes kept as written.
                    quoted = true;
                    let start = self.at;
                    self.at += 2;
                    let body = self.single_quoted(start)?;
                    text.push_str(body);
                }
                b'$' | b'`' => self.dollar_or_backtick(&mut text, &mut subs)?,
                _ => {
                    let from = text.len();
                    self.push_char(&mut text);
                    match plain.last_mut() {
                        Some(last) if last.end == from => last.end = text.len(),
                        _ => plain.push(from..text.len()),
                    }
                }
            }
        }
        Ok(LexedWord {
            text,
            subs,
            quoted,
            plain,
        })
    }
}

// ---- parser --------------------------------------------------------------------------------

/// A simple command as written: words, redirections, substitutions.
#[derive(Debug, Default)]
struct Simple {
    words: Vec<String>,
    redirects: Vec<Redirect>,
    substitutions: Vec<String>,
    /// Output process substitutions (`>(…)`): they read what the command writes.
    output_substitutions: Vec<String>,
    /// The here-documents it reads, by their place on the line.
    heredocs: Vec<usize>,
    /// The here-strings it reads.
    here_strings: Vec<String>,
}

impl Simple {
    /// The command, leading assignments dropped; `None` when it runs nothing.
    fn into_command(self, cwd: Option<String>, input: Vec<String>, piped: bool) -> Option<Command> {
        let mut words = self.words.into_iter().skip_while(|w| is_assignment(w));
        let program = words.next()?;
        Some(Command {
            program,
            args: words.collect(),
            redirects: self.redirects,
            cwd,
            input,
            piped,
        })
    }
}

/// Reserved words that open or close compound commands: not programs.
const RESERVED: &[&str] = &[
    "!", "{", "}", "if", "then", "else", "elif", "fi", "do", "done", "while", "until",
];
/// Reserved words that open a compound command (after `coproc NAME`).
const COMPOUND_OPENERS: &[&str] = &["{", "if", "while", "until", "for", "select", "case"];

#[derive(Default)]
struct Parser {
    pipelines: Vec<Vec<Simple>>,
    pipeline: Vec<Simple>,
    current: Simple,
    /// The next word is a redirection's target (`Some(writes)`).
    redirect: Option<bool>,
    /// The next word is a here-document's delimiter or a duplicated descriptor: not an
    /// argument.
    heredoc: bool,
    /// Inside `for NAME in ...` / `case WORD in`: words until the separator are not a command.
    skip_words: bool,
    /// Inside a `case` body, where words up to `)` are patterns.
    case_patterns: bool,
    /// The next word names the function `function` defines.
    function_name: bool,
    /// After `coproc`: its first word names the coprocess when a compound command follows.
    after_coproc: bool,
    /// The next word is a here-string.
    here_string: bool,
    /// Here-documents announced so far.
    heredocs_seen: usize,
    open_groups: usize,
}

impl Parser {
    fn take(&mut self, token: Token) -> Result<(), ShellError> {
        match token {
            Token::Word {
                text,
                expanded,
                subs,
                outputs,
            } => {
                self.current.output_substitutions.extend(outputs);
                match expanded {
                    Some(words) => self.expanded_words(words, subs),
                    None => self.word(text, subs),
                }
            }
            Token::Redirect { writes } => self.redirect = Some(writes),
            Token::HereDoc => {
                self.current.heredocs.push(self.heredocs_seen);
                self.heredocs_seen += 1;
                self.heredoc = true;
            }
            Token::HereString => self.here_string = true,
            Token::Dup => self.heredoc = true,
            Token::Pipe => {
                let simple = std::mem::take(&mut self.current);
                self.pipeline.push(simple);
            }
            Token::Separator => {
                self.skip_words = false;
                self.after_coproc = false;
                self.end_command();
            }
            Token::Open => {
                // `name()`: a function definition; the name is not a command.
                if self.current.words.len() == 1 && self.current.substitutions.is_empty() {
                    self.current.words.clear();
                }
                self.open_groups += 1;
                self.end_command();
            }
            Token::Close { at } => {
                if self.case_patterns {
                    // `pattern)` in a case body: the words so far were patterns.
                    self.current.words.clear();
                    return Ok(());
                }
                if self.open_groups == 0 {
                    return Err(ShellError::Unbalanced { at });
                }
                self.open_groups -= 1;
                self.end_command();
            }
        }
        Ok(())
    }

    /// The words a brace expansion made of one word: arguments (or redirection targets, each
    /// written: bash refuses such an ambiguous redirection, Warden reads it as every one),
    /// never reserved words.
    fn expanded_words(&mut self, words: Vec<String>, subs: Vec<String>) {
        if let Some(writes) = self.redirect.take() {
            self.current.substitutions.extend(subs);
            self.current
                .redirects
                .extend(words.into_iter().map(|target| Redirect { writes, target }));
            return;
        }
        if self.heredoc || self.here_string || self.skip_words || self.function_name {
            self.word(String::new(), subs);
            return;
        }
        self.current.substitutions.extend(subs);
        self.current.words.extend(words);
    }

    fn word(&mut self, text: String, subs: Vec<String>) {
        self.current.substitutions.extend(subs);
        if let Some(writes) = self.redirect.take() {
            self.current.redirects.push(Redirect {
                writes,
                target: text,
            });
            return;
        }
        if std::mem::take(&mut self.heredoc) {
            return;
        }
        if std::mem::take(&mut self.here_string) {
            self.current.here_strings.push(text);
            return;
        }
        if self.skip_words {
            if self.case_patterns && text == "in" {
                self.skip_words = false;
            }
            return;
        }
        if std::mem::take(&mut self.function_name) {
            return;
        }
        if self.after_coproc && !self.current.words.is_empty() {
            self.after_coproc = false;
            if self.current.words.len() == 1 && COMPOUND_OPENERS.contains(&text.as_str()) {
                // `coproc NAME { …; }`: NAME is no command.
                self.current.words.clear();
            }
        }
        if self.current.words.is_empty() {
            match text.as_str() {
                "function" => {
                    self.function_name = true;
                    return;
                }
                "coproc" => {
                    self.after_coproc = true;
                    return;
                }
                "for" | "select" => {
                    self.skip_words = true;
                    return;
                }
                "case" => {
                    self.skip_words = true;
                    self.case_patterns = true;
                    return;
                }
                "esac" => {
                    self.case_patterns = false;
                    return;
                }
                word if RESERVED.contains(&word) => return,
                _ => {}
            }
        }
        self.current.words.push(text);
    }

    fn end_command(&mut self) {
        let simple = std::mem::take(&mut self.current);
        self.pipeline.push(simple);
        let pipeline = std::mem::take(&mut self.pipeline);
        if pipeline.iter().any(|s| {
            !s.words.is_empty() || !s.substitutions.is_empty() || !s.output_substitutions.is_empty()
        }) {
            self.pipelines.push(pipeline);
        }
    }
}
