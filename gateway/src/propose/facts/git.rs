//! A `git` command read past git's global options (`git -C DIR -c k=v --work-tree W push`):
//! its subcommand, the directories it works in, whether a setting on the line makes it run
//! another program, and whether a push overwrites or deletes remote history.

/// Global options that take their value as the next word (or after `=`).
const TAKES_VALUE: &[&str] = &[
    "-C",
    "-c",
    "--git-dir",
    "--work-tree",
    "--namespace",
    "--super-prefix",
    "--config-env",
    "--attr-source",
    "--list-cmds",
];

/// Subcommands that write neither the work tree nor what the repository holds (`push`
/// notes the remote's refs only).
const READ_ONLY: &[&str] = &[
    "push",
    "status",
    "log",
    "diff",
    "show",
    "grep",
    "blame",
    "ls-files",
    "ls-tree",
    "ls-remote",
    "rev-parse",
    "rev-list",
    "describe",
    "shortlog",
    "cat-file",
    "version",
    "help",
];

/// `git push` options that overwrite or delete remote refs; any unique prefix of one
/// (`--forc`, `--mirr`, `--dele`) is that option to git.
const REWRITING_PUSH_OPTIONS: &[&str] = &[
    "force",
    "force-with-lease",
    "force-if-includes",
    "mirror",
    "delete",
    "prune",
];

/// Options that run a program of the caller's choosing (`git clone -u CMD`).
const RUNS_PROGRAM_OPTIONS: &[&str] = &["--upload-pack", "--receive-pack", "--exec"];

/// A git command line, read.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Git<'a> {
    /// The subcommand (`push`) after the global options, if any.
    pub subcommand: Option<&'a str>,
    /// The subcommand's arguments.
    pub args: &'a [String],
    /// The `-C DIR`s, in order: each changes where git runs.
    pub chdirs: Vec<&'a str>,
    /// `--git-dir`, `--work-tree`: the repository and the work tree it uses.
    pub trees: Vec<&'a str>,
    /// A setting or option makes git run a program the line names: `-c alias.x=…`,
    /// `-c core.sshCommand=…`, `--exec-path=DIR`, `clone --upload-pack=…`.
    pub runs_named_program: bool,
}

impl Git<'_> {
    /// The subcommand may write the repository or its work tree.
    pub fn writes(&self) -> bool {
        self.subcommand.is_some_and(|s| !READ_ONLY.contains(&s))
    }
}

/// Reads `git`'s arguments.
pub fn read(args: &[String]) -> Git<'_> {
    let mut git = Git::default();
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        i += 1;
        if !arg.starts_with('-') {
            git.subcommand = Some(arg);
            git.args = &args[i..];
            break;
        }
        let (name, attached) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (arg.as_str(), None),
        };
        let value = match attached {
            Some(value) => Some(value),
            None if TAKES_VALUE.contains(&name) => {
                i += 1;
                args.get(i - 1).map(String::as_str)
            }
            None => None,
        };
        let Some(value) = value else {
            continue;
        };
        match name {
            "-C" => git.chdirs.push(value),
            "--git-dir" | "--work-tree" => git.trees.push(value),
            "-c" | "--config-env" => git.runs_named_program |= setting_runs_program(value),
            "--exec-path" => git.runs_named_program = true,
            _ => {}
        }
    }
    let clone = git.subcommand == Some("clone");
    let mut sub_args = git.args.iter();
    while let Some(arg) = sub_args.next() {
        let (name, attached) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (arg.as_str(), None),
        };
        git.runs_named_program |= RUNS_PROGRAM_OPTIONS.contains(&name) || (clone && name == "-u");
        if clone && (name == "-c" || name == "--config") {
            let setting = attached
                .or_else(|| sub_args.next().cloned())
                .unwrap_or_default();
            git.runs_named_program |= setting_runs_program(&setting);
        }
    }
    git
}

/// Whether the configuration `key=value` names a program git runs (an alias, a pager, an
/// editor, a hook directory, a filter, a helper, an included file that may set any of
/// these), or makes a mistyped subcommand run another (`help.autocorrect`).
fn setting_runs_program(setting: &str) -> bool {
    let key = setting
        .split_once('=')
        .map_or(setting, |(k, _)| k)
        .to_ascii_lowercase();
    const PREFIXES: &[&str] = &["alias.", "pager.", "filter.", "include", "credential"];
    const SUFFIXES: &[&str] = &[
        "command",
        "program",
        "editor",
        "pager",
        "helper",
        "hookspath",
        "textconv",
        "fsmonitor",
        "askpass",
        "driver",
        "external",
        "proxy",
        "autocorrect",
        "hook",
        "packobjectshook",
    ];
    PREFIXES.iter().any(|p| key.starts_with(p)) || SUFFIXES.iter().any(|s| key.ends_with(s))
}

/// Whether `git push`'s `args` overwrite or delete remote history: `--force*`, `--mirror`,
/// `--delete`, `--prune` or a unique prefix of one; `-f` or `-d` alone or in a cluster
/// (`-uf`); a `+refspec` (forced) or `:ref` (deleted).
pub fn force_push(args: &[String]) -> bool {
    let mut options_done = false;
    args.iter().any(|arg| {
        if !options_done && arg == "--" {
            options_done = true;
            return false;
        }
        if !options_done && let Some(long) = arg.strip_prefix("--") {
            let name = long.split_once('=').map_or(long, |(n, _)| n);
            return !name.is_empty()
                && REWRITING_PUSH_OPTIONS
                    .iter()
                    .any(|option| option.starts_with(name));
        }
        if !options_done && arg.len() > 1 && arg.starts_with('-') {
            return arg.contains(['f', 'd']);
        }
        arg.starts_with('+') || arg.starts_with(':')
    })
}

/// The directory a git subcommand creates (`clone URL DIR`, `init DIR`, `worktree add DIR`):
/// `Some(None)` when it creates one in its working directory (`clone URL`, `init`).
pub fn created_dir<'a>(git: &Git<'a>) -> Option<Option<&'a str>> {
    const VALUES: &[&str] = &[
        "-b",
        "--branch",
        "-o",
        "--origin",
        "-c",
        "--config",
        "--depth",
        "--reference",
        "--template",
        "--separate-git-dir",
        "-j",
        "--jobs",
        "--filter",
        "--shallow-since",
        "--shallow-exclude",
        "--object-format",
        "--initial-branch",
        "-B",
        "--reason",
    ];
    let mut operands = Vec::new();
    let mut args = git.args.iter();
    while let Some(arg) = args.next() {
        if VALUES.contains(&arg.as_str()) {
            args.next();
        } else if !arg.starts_with('-') {
            operands.push(arg.as_str());
        }
    }
    match git.subcommand? {
        "clone" => Some(operands.get(1).copied()),
        "init" => Some(operands.first().copied()),
        "worktree" if operands.first() == Some(&"add") => Some(operands.get(1).copied()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn global_options_and_their_values_come_before_the_subcommand() {
        for line in [
            "-C /repo push --force",
            "-c a=b push --mirror",
            "--namespace ns push -f",
            "--work-tree /w push -f",
            "--git-dir=.git push -f",
            "--no-pager -p --bare push -f",
        ] {
            let args = words(line);
            let git = read(&args);
            assert_eq!(git.subcommand, Some("push"), "{line}");
            assert!(force_push(git.args), "{line}");
        }
        let args = words("-C a -C /b --work-tree=w status");
        let git = read(&args);
        assert_eq!(git.chdirs, vec!["a", "/b"]);
        assert_eq!(git.trees, vec!["w"]);
        assert!(!git.writes());
    }

    #[test]
    fn pushes_that_delete_or_overwrite_remote_refs_and_their_abbreviations() {
        for push in [
            "-d origin main",
            "--delete origin main",
            "--dele origin main",
            "--mirr",
            "--forc",
            "--force-with-lease=main:abc",
            "--prune origin",
            "-uf origin dev",
            "origin +main",
            "origin :main",
            "origin main --force",
        ] {
            assert!(force_push(&words(push)), "{push}");
        }
        for push in [
            "origin main",
            "-u origin main",
            "--follow-tags",
            "--dry-run origin main",
            "-- origin -f",
        ] {
            assert!(!force_push(&words(push)), "{push}");
        }
    }

    #[test]
    fn settings_that_name_a_program_are_reported() {
        for line in [
            "-c alias.st=!rm st",
            "-c core.sshCommand=x fetch",
            "-c core.fsmonitor=x status",
            "-c help.autocorrect=immediate psuh",
            "--config-env=core.pager=P log",
            "--exec-path=/tmp/x push",
            "clone -u x repo",
            "clone -c core.hooksPath=/h repo",
            "fetch --upload-pack=x origin",
        ] {
            let args = words(line);
            assert!(read(&args).runs_named_program, "{line}");
        }
        let args = words("-c user.name=x -c color.ui=never commit");
        assert!(!read(&args).runs_named_program);
    }

    #[test]
    fn clone_init_and_worktree_name_the_directory_they_create() {
        let created = |line: &str| {
            let args = words(line);
            created_dir(&read(&args)).map(|d| d.map(str::to_owned))
        };
        assert_eq!(created("clone x /etc/foo"), Some(Some("/etc/foo".into())));
        assert_eq!(
            created("clone --depth 1 -b main x dir"),
            Some(Some("dir".into()))
        );
        assert_eq!(created("clone x"), Some(None));
        assert_eq!(created("init /srv/r"), Some(Some("/srv/r".into())));
        assert_eq!(created("worktree add /w"), Some(Some("/w".into())));
        assert_eq!(created("push origin"), None);
    }
}
