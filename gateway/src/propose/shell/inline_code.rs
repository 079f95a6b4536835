//! Programs an interpreter is given on the line itself: `python3 -c CODE`, `node -e CODE`,
//! `perl -e CODE`, `ruby -e CODE`, `php -r CODE`, `lua -e CODE`, `deno eval CODE`, or a
//! program on standard input (`python3 - <<EOF`, `… | node`). Warden cannot judge what such
//! code does; it says that it runs (`runs_inline_code`), and, as a best effort, reads the
//! shell commands the code spells out literally: a call of a shell-out function
//! (`os.system`, `subprocess.run`, `execSync`, `system`, `shell_exec`, ...) whose arguments
//! are string literals, and Perl's, Ruby's and PHP's backquotes. Anything built at run time
//! (a variable, a concatenation, an encoded string) is not seen.

/// The language of an interpreter Warden knows to run code it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Language {
    Python,
    Node,
    Perl,
    Ruby,
    Php,
    Lua,
    Deno,
}

/// How one language's interpreter takes its options.
struct Options {
    /// Short options whose value is a program (`-c`, `-e`).
    code: &'static str,
    /// Long options whose value is a program (`--eval`).
    long_code: &'static [&'static str],
    /// Short options that take a value of another kind (`-W`, `-I`).
    value: &'static str,
    /// Short options whose value, if any, is the rest of their cluster (`perl -i.bak`).
    attached: &'static str,
    /// Short options followed by digits in their cluster (`perl -l0`, `-0777`).
    digits: &'static str,
    /// Long options that take a value (`--require`).
    long_value: &'static [&'static str],
    /// Short options after which the rest of the command line is a module, not a script
    /// from standard input (`python -m`).
    module: &'static str,
}

impl Language {
    fn of(name: &str) -> Option<Language> {
        let base = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
        Some(match base {
            "python" | "pypy" => Language::Python,
            "node" | "nodejs" | "bun" => Language::Node,
            "perl" => Language::Perl,
            "ruby" => Language::Ruby,
            "php" => Language::Php,
            "lua" | "luajit" => Language::Lua,
            "deno" => Language::Deno,
            _ => return None,
        })
    }

    fn options(self) -> Options {
        match self {
            Language::Python => Options {
                code: "c",
                long_code: &[],
                value: "WXQ",
                attached: "",
                digits: "",
                long_value: &["--check-hash-based-pycs"],
                module: "m",
            },
            Language::Node => Options {
                code: "ep",
                long_code: &["--eval", "--print"],
                value: "rC",
                attached: "",
                digits: "",
                long_value: &["--require", "--import", "--input-type", "--conditions"],
                module: "",
            },
            Language::Perl => Options {
                code: "eE",
                long_code: &[],
                value: "I",
                attached: "iMmxdDCF",
                digits: "l0",
                long_value: &[],
                module: "",
            },
            Language::Ruby => Options {
                code: "e",
                long_code: &[],
                value: "IrCE",
                attached: "iFxWT",
                digits: "0",
                long_value: &["--encoding"],
                module: "",
            },
            Language::Php => Options {
                code: "rBRE",
                long_code: &[],
                value: "dcfz",
                attached: "",
                digits: "",
                long_value: &[],
                module: "f",
            },
            Language::Lua => Options {
                code: "e",
                long_code: &[],
                value: "l",
                attached: "",
                digits: "",
                long_value: &[],
                module: "",
            },
            Language::Deno => Options {
                code: "",
                long_code: &[],
                value: "",
                attached: "",
                digits: "",
                long_value: &[],
                module: "",
            },
        }
    }

    /// Its code may run shell commands in backquotes (`` `rm -rf /` ``).
    fn backquotes_run(self) -> bool {
        matches!(self, Language::Perl | Language::Ruby | Language::Php)
    }
}

/// What an interpreter run is given to run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Given {
    /// The programs given as option values (`-c CODE`).
    pub code: Vec<String>,
    /// It reads its program from standard input (no script operand, or `-`).
    pub reads_stdin: bool,
}

/// What `name` (an interpreter Warden knows, else `None`) is given to run by `args`.
pub fn given(name: &str, args: &[String]) -> Option<Given> {
    let language = Language::of(name)?;
    let mut given = Given::default();
    if language == Language::Deno {
        // `deno eval CODE`; any other subcommand runs a file or a URL.
        if args.first().is_some_and(|a| a == "eval") {
            given
                .code
                .extend(args.iter().skip(1).find(|a| !a.starts_with('-')).cloned());
        }
        return Some(given);
    }
    let options = language.options();
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        i += 1;
        if arg == "--" || arg == "-" || !arg.starts_with('-') {
            // A script (or `-`: standard input) and its arguments.
            given.reads_stdin = arg == "-" || (arg == "--" && args.get(i).is_none_or(|a| a == "-"));
            return Some(given);
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((name, value)) => (format!("--{name}"), Some(value.to_owned())),
                None => (arg.clone(), None),
            };
            let code = options.long_code.contains(&name.as_str());
            if code || options.long_value.contains(&name.as_str()) {
                let value = inline.or_else(|| {
                    i += 1;
                    args.get(i - 1).cloned()
                });
                if code {
                    given.code.extend(value);
                }
            }
            continue;
        }
        // A cluster of short options: the first that takes a value takes the rest of the
        // cluster, or the next argument.
        let mut flags = arg.char_indices().skip(1).peekable();
        while let Some((at, flag)) = flags.next() {
            let rest = &arg[at + flag.len_utf8()..];
            if options.module.contains(flag) {
                return Some(given);
            }
            if options.attached.contains(flag) {
                break;
            }
            if options.digits.contains(flag) {
                while flags.next_if(|(_, c)| c.is_ascii_digit()).is_some() {}
                continue;
            }
            let code = options.code.contains(flag);
            if code || options.value.contains(flag) {
                let value = if rest.is_empty() {
                    i += 1;
                    args.get(i - 1).cloned()
                } else {
                    Some(rest.to_owned())
                };
                if code {
                    given.code.extend(value);
                }
                break;
            }
        }
    }
    // No script: the program comes from standard input, unless one was given inline.
    given.reads_stdin = given.code.is_empty();
    Some(given)
}

/// A shell command a program spells out literally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellOut {
    /// A command line (`os.system("rm -rf /")`, `` `ls` ``).
    Line(String),
    /// A program and its arguments (`subprocess.run(["rm", "-rf", "/"])`).
    Argv(Vec<String>),
}

/// Functions, by their last name, that run a command line or an argv.
const SHELL_OUTS: &[&str] = &[
    "system",
    "popen",
    "Popen",
    "run",
    "call",
    "check_call",
    "check_output",
    "getoutput",
    "getstatusoutput",
    "exec",
    "execSync",
    "execFile",
    "execFileSync",
    "spawn",
    "spawnSync",
    "shell_exec",
    "passthru",
    "proc_open",
    "capture2",
    "capture3",
    "spawn_command",
];

/// The shell commands `code`, run by `interpreter`, spells out literally (best effort).
pub fn shell_outs(interpreter: &str, code: &str) -> Vec<ShellOut> {
    let Some(language) = Language::of(interpreter) else {
        return Vec::new();
    };
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let b = bytes[at];
        if b == b'`'
            && language.backquotes_run()
            && let Some((text, end)) = literal(code, at)
        {
            out.push(ShellOut::Line(text));
            at = end;
            continue;
        }
        if b == b'(' {
            let name_start = code[..at]
                .trim_end()
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(0, |i| i + 1);
            let name = code[name_start..at].trim_end();
            if SHELL_OUTS.contains(&name)
                && let Some(command) = call_arguments(code, at + 1)
            {
                out.push(command);
            }
        }
        at += 1;
    }
    out
}

/// The command a shell-out call's arguments (from `at`, after its `(`) give: one string
/// literal (a line), or string literals and lists of them (an argv); `None` when its first
/// argument is anything else.
fn call_arguments(code: &str, at: usize) -> Option<ShellOut> {
    let mut argv: Vec<String> = Vec::new();
    let mut at = skip_blank(code, at);
    let mut first_is_line = false;
    loop {
        match code.as_bytes().get(at)? {
            b'[' => {
                let (items, end) = list(code, at)?;
                argv.extend(items);
                at = end;
            }
            _ => {
                let (text, end) = literal(code, at)?;
                first_is_line = argv.is_empty();
                argv.push(text);
                at = end;
            }
        }
        at = skip_blank(code, at);
        match code.as_bytes().get(at)? {
            b')' => break,
            b',' => {}
            // An expression (`'rm ' + path`): built at run time.
            _ => return None,
        }
        let next = skip_blank(code, at + 1);
        if !matches!(code.as_bytes().get(next), Some(b'[' | b'"' | b'\'' | b'`')) {
            break;
        }
        at = next;
    }
    if first_is_line && argv.len() == 1 {
        return argv.pop().map(ShellOut::Line);
    }
    Some(ShellOut::Argv(argv))
}

/// A list of string literals `[ "a", 'b' ]` at `at`: its items and the index after it.
fn list(code: &str, at: usize) -> Option<(Vec<String>, usize)> {
    let mut items = Vec::new();
    let mut at = skip_blank(code, at + 1);
    loop {
        match code.as_bytes().get(at)? {
            b']' => return Some((items, at + 1)),
            b',' => at = skip_blank(code, at + 1),
            _ => {
                let (text, end) = literal(code, at)?;
                items.push(text);
                at = skip_blank(code, end);
            }
        }
    }
}

fn skip_blank(code: &str, at: usize) -> usize {
    at + code
        .get(at..)
        .map_or(0, |rest| rest.len() - rest.trim_start().len())
}

/// A string literal at `at` (`"…"`, `'…'`, `` `…` ``, Python's `"""…"""`, after a prefix
/// such as `r`, `b`, `f`): its text with the common escapes undone, and the index after it.
fn literal(code: &str, at: usize) -> Option<(String, usize)> {
    let rest = code.get(at..)?;
    let body_start = rest.find(['"', '\'', '`'])?;
    let prefix = &rest[..body_start];
    if prefix.len() > 2 || !prefix.chars().all(|c| "rRbBfFuU".contains(c)) {
        return None;
    }
    let raw = prefix.contains(['r', 'R']);
    let quote = rest[body_start..].chars().next()?;
    let triple: String = std::iter::repeat_n(quote, 3).collect();
    let (delimiter, from) = if rest[body_start..].starts_with(&triple) {
        (triple.as_str(), body_start + 3)
    } else {
        (&triple[..1], body_start + 1)
    };
    let mut text = String::new();
    let mut chars = rest[from..].char_indices();
    while let Some((i, c)) = chars.next() {
        if rest[from + i..].starts_with(delimiter) {
            return Some((text, at + from + i + delimiter.len()));
        }
        if c == '\\' && !raw {
            let (_, escaped) = chars.next()?;
            text.push(match escaped {
                'n' => '\n',
                't' => '\t',
                other => other,
            });
        } else {
            text.push(c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &[&str]) -> Vec<String> {
        line.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn code_given_inline_or_on_standard_input_is_told_from_a_script() {
        let code = |c: &str| Given {
            code: vec![c.to_owned()],
            reads_stdin: false,
        };
        let stdin = Given {
            code: Vec::new(),
            reads_stdin: true,
        };
        let script = Given::default();
        let cases: &[(&str, &[&str], Given)] = &[
            ("python3", &["-c", "print(1)"], code("print(1)")),
            ("python3", &["-Bc", "print(1)"], code("print(1)")),
            ("python3.12", &["-cprint(1)"], code("print(1)")),
            ("python3", &["-W", "ignore", "-c", "x"], code("x")),
            ("python3", &["script.py", "-c", "x"], script),
            ("python3", &["-m", "http.server"], Given::default()),
            ("python3", &["-"], stdin),
            (
                "python3",
                &[],
                Given {
                    reads_stdin: true,
                    ..Given::default()
                },
            ),
            ("node", &["-e", "x"], code("x")),
            ("node", &["--eval=x"], code("x")),
            ("node", &["--print", "x"], code("x")),
            (
                "node",
                &["-r", "ts-node/register", "app.ts"],
                Given::default(),
            ),
            ("perl", &["-lne", "print"], code("print")),
            ("perl", &["-Ilib", "-e", "x"], code("x")),
            ("perl", &["-i.bak", "-pe", "s/a/b/", "f"], code("s/a/b/")),
            ("perl", &["-i", "-0777", "-ne", "x"], code("x")),
            ("perl", &["-le", "x"], code("x")),
            ("ruby", &["-e", "x"], code("x")),
            ("php", &["-r", "x"], code("x")),
            ("php", &["-f", "x.php"], Given::default()),
            ("lua", &["-e", "x"], code("x")),
            ("deno", &["eval", "x"], code("x")),
            ("deno", &["run", "x.ts"], Given::default()),
        ];
        for (name, line, expected) in cases {
            assert_eq!(
                given(name, &args(line)).as_ref(),
                Some(expected),
                "{name} {line:?}"
            );
        }
        assert_eq!(given("make", &args(&["-e"])), None);
    }

    #[test]
    fn shell_commands_spelled_out_literally_are_read() {
        let line = |s: &str| vec![ShellOut::Line(s.to_owned())];
        let argv = |words: &[&str]| vec![ShellOut::Argv(args(words))];
        let cases: &[(&str, &str, Vec<ShellOut>)] = &[
            (
                "python3",
                r#"import os; os.system("rm -rf /")"#,
                line("rm -rf /"),
            ),
            ("python3", "import os\nos.popen('ls /etc')", line("ls /etc")),
            (
                "python3",
                r#"import subprocess; subprocess.run(["rm","-rf","/"])"#,
                argv(&["rm", "-rf", "/"]),
            ),
            (
                "python3",
                r#"subprocess.run("rm -rf /etc", shell=True)"#,
                line("rm -rf /etc"),
            ),
            ("python3", r#"os.system(r"echo \d")"#, line(r"echo \d")),
            (
                "python3",
                r#"os.system("""rm -rf "/x" """)"#,
                line(r#"rm -rf "/x" "#),
            ),
            (
                "node",
                "require('child_process').execSync(\"rm -rf /\")",
                line("rm -rf /"),
            ),
            (
                "node",
                "cp.execFileSync('rm', ['-rf', '/'])",
                argv(&["rm", "-rf", "/"]),
            ),
            (
                "perl",
                r#"system("rm", "-rf", "/")"#,
                argv(&["rm", "-rf", "/"]),
            ),
            ("perl", "print `rm -rf /`", line("rm -rf /")),
            ("ruby", "system 'ls'; `rm -rf /`", line("rm -rf /")),
            ("php", "echo shell_exec('rm -rf /');", line("rm -rf /")),
            // What is built at run time is not seen.
            ("python3", "os.system(cmd)", vec![]),
            ("python3", "os.system('rm ' + path)", vec![]),
            ("python3", "print('rm -rf /')", vec![]),
            ("node", "console.log(`rm -rf /`)", vec![]),
        ];
        for (interpreter, code, expected) in cases {
            assert_eq!(
                &shell_outs(interpreter, code),
                expected,
                "{interpreter}: {code}"
            );
        }
    }
}
