//! A local MCP server started through a package runner (`npx -y @scope/server`, `uvx server`,
//! `pipx run server`, `bunx`, `pnpm dlx`, `npm exec`, `yarn dlx`) fetches the package from its
//! registry when it starts, and Warden restarts it whenever it exits. Without an exact version
//! the runner takes whatever the registry serves at that moment: a release published by whoever
//! took over the package runs under Warden's user, beside its keys and audit log, at the next
//! restart. Such a command is refused unless the package names an exact version (or the server
//! sets `allow_unpinned: true`).

/// The package spec of a runner command that does not name an exact version, with how to pin
/// it; `None` when the command is no package runner or its packages are pinned. `env` before
/// the runner (`env VAR=x npx …`) is looked through; a shell (`sh -c "npx …"`) is not.
pub fn unpinned(program: &str, args: &[String]) -> Option<String> {
    let runner = program.rsplit('/').next().unwrap_or(program);
    let (ecosystem, rest) = match runner {
        "env" => return through_env(args),
        "npx" | "bunx" | "pnpx" => (Ecosystem::Npm, args),
        "uvx" => (Ecosystem::Python, args),
        "npm" | "pnpm" | "yarn" | "bun" | "pipx" | "uv" => {
            let at = args.iter().position(|a| !a.starts_with('-'))?;
            let words = subcommands(runner).iter().find(|words| {
                words.len() <= args.len() - at && words.iter().zip(&args[at..]).all(|(w, a)| w == a)
            })?;
            let ecosystem = if matches!(runner, "pipx" | "uv") {
                Ecosystem::Python
            } else {
                Ecosystem::Npm
            };
            (ecosystem, &args[at + words.len()..])
        }
        _ => return None,
    };
    let spec = package_specs(rest, ecosystem)
        .into_iter()
        .find(|spec| !ecosystem.is_pinned(spec))?;
    Some(if is_source(ecosystem, spec) {
        format!(
            "{runner} fetches {spec:?} from where it points each time the server starts, and \
             what a branch, a tag or a URL serves can change: name a repository at a full \
             commit hash ({}), or install the server \
             where its files cannot change and run it by path; `allow_unpinned: true` accepts \
             the risk",
            ecosystem.commit_example()
        )
    } else {
        format!(
            "{runner} fetches {spec:?} from its registry each time the server starts, taking \
             whatever version is newest then: pin an exact version ({}), or install the server \
             where its files cannot change and run it by path; `allow_unpinned: true` accepts \
             the risk",
            ecosystem.example()
        )
    })
}

/// The program `env` runs with `args` (its options and `NAME=value` assignments passed over,
/// `-S`'s string split into words), checked as [`unpinned`] checks a command.
fn through_env(args: &[String]) -> Option<String> {
    let mut at = 0;
    while let Some(arg) = args.get(at) {
        let split = if arg == "-S" || arg == "--split-string" {
            args.get(at + 1).map(|s| (s.as_str(), at + 2))
        } else {
            arg.strip_prefix("--split-string=")
                .or_else(|| arg.strip_prefix("-S"))
                .map(|words| (words, at + 1))
        };
        if let Some((words, next)) = split {
            let command: Vec<String> = words
                .split_whitespace()
                .map(str::to_owned)
                .chain(args[next.min(args.len())..].iter().cloned())
                .collect();
            return through_env(&command);
        }
        match arg.as_str() {
            "--" => {
                let (program, rest) = args[at + 1..].split_first()?;
                return unpinned(program, rest);
            }
            "-u" | "--unset" | "-C" | "--chdir" => at += 2,
            _ if arg.starts_with('-') || arg.contains('=') => at += 1,
            program => return unpinned(program, &args[at + 1..]),
        }
    }
    None
}

/// The words after a runner's name that make it fetch a package and run it.
fn subcommands(runner: &str) -> &'static [&'static [&'static str]] {
    match runner {
        "npm" => &[&["exec"], &["x"]],
        "pnpm" | "yarn" => &[&["dlx"]],
        "bun" => &[&["x"]],
        "pipx" => &[&["run"]],
        "uv" => &[&["tool", "run"]],
        _ => &[],
    }
}

/// The packages a runner's arguments name: every `--package X` / `--package=X` / `-p X` (npm's
/// runners) or `--from X` / `--spec X` (Python's) when given, else the first argument that is
/// no option (nor an option's value); and for a Python runner every package of `--with X,Y`.
/// What follows the package run is its own arguments, not read.
fn package_specs(args: &[String], ecosystem: Ecosystem) -> Vec<&str> {
    let (naming, valued) = ecosystem.options();
    let mut specs = Vec::new();
    let mut named = false;
    let mut first = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let arg = arg.as_str();
        if arg == "--" {
            first = iter.next().map(String::as_str);
            break;
        }
        if !arg.starts_with('-') {
            first = Some(arg);
            break;
        }
        let (option, inline) = match arg.split_once('=') {
            Some((option, value)) if option.starts_with("--") => (option, Some(value)),
            _ => (arg, None),
        };
        let with = option == "--with" && matches!(ecosystem, Ecosystem::Python);
        if !with && !naming.contains(&option) && !valued.contains(&option) {
            continue;
        }
        let Some(value) = inline.or_else(|| iter.next().map(String::as_str)) else {
            break;
        };
        if with {
            specs.extend(value.split(',').map(str::trim).filter(|v| !v.is_empty()));
        } else if naming.contains(&option) {
            specs.push(value);
            named = true;
        }
    }
    if !named {
        specs.extend(first);
    }
    specs
}

#[derive(Clone, Copy)]
enum Ecosystem {
    Npm,
    Python,
}

impl Ecosystem {
    /// Whether `spec` names one exact version, a source at one commit, or something that is no
    /// registry's to change (a path on this host).
    fn is_pinned(self, spec: &str) -> bool {
        if spec.starts_with(['/', '.']) || spec.starts_with("file:") {
            return true;
        }
        if is_source(self, spec) {
            return at_commit(self, spec);
        }
        match self {
            // `@scope/name@1.2.3`, `name@1.2.3`: the version after the last `@` past the first
            // character, with all three of its numbers (npm reads `1.2` as the range `1.2.x`).
            Ecosystem::Npm => spec
                .get(1..)
                .and_then(|s| s.rsplit_once('@'))
                .is_some_and(|(_, v)| is_exact_version(v, 3)),
            // `name==1.2.3` (pip), `name@1.2.3` (uv), extras allowed (`name[cli]==1.2.3`).
            Ecosystem::Python => spec
                .split_once("==")
                .or_else(|| spec.split_once('@'))
                .is_some_and(|(name, v)| is_python_name(name) && is_exact_version(v, 2)),
        }
    }

    /// The options that name the package run, and the other options that take a value (which
    /// is no package).
    fn options(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            Ecosystem::Npm => (
                &["--package", "-p"],
                &[
                    "--cache",
                    "--call",
                    "-c",
                    "--globalconfig",
                    "--node-options",
                    "--prefix",
                    "--registry",
                    "--script-shell",
                    "--userconfig",
                    "--workspace",
                    "-w",
                ],
            ),
            Ecosystem::Python => (
                &["--from", "--spec"],
                &[
                    "--cache-dir",
                    "--config-file",
                    "--constraints",
                    "-c",
                    "--default-index",
                    "--directory",
                    "--env-file",
                    "--exclude-newer",
                    "--extra-index-url",
                    "--find-links",
                    "-f",
                    "--index",
                    "--index-strategy",
                    "--index-url",
                    "-i",
                    "--keyring-provider",
                    "--overrides",
                    "--pip-args",
                    "--prerelease",
                    "--project",
                    "--python",
                    "-p",
                    "--python-platform",
                    "--resolution",
                    "--with-editable",
                    "--with-requirements",
                ],
            ),
        }
    }

    fn example(self) -> &'static str {
        match self {
            Ecosystem::Npm => "`@scope/server@1.2.3`",
            Ecosystem::Python => "`server==1.2.3`",
        }
    }

    fn commit_example(self) -> &'static str {
        match self {
            Ecosystem::Npm => "`github:owner/server#<40 hex digits>`",
            Ecosystem::Python => "`git+https://host/owner/server@<40 hex digits>`",
        }
    }
}

/// Whether `spec` names no registry's package but a source elsewhere: a URL (a VCS
/// repository, a tarball), `git@host:…`, npm's hosted-repository forms (`github:o/r`,
/// `o/r`) or a Python direct reference (`name @ url`).
fn is_source(ecosystem: Ecosystem, spec: &str) -> bool {
    const PREFIXES: [&str; 10] = [
        "git+",
        "git:",
        "git@",
        "hg+",
        "svn+",
        "bzr+",
        "github:",
        "gitlab:",
        "bitbucket:",
        "gist:",
    ];
    spec.contains("://")
        || PREFIXES.iter().any(|p| spec.starts_with(p))
        || match ecosystem {
            // `owner/repo[#ref]` is a GitHub repository; a scoped package starts with `@`.
            Ecosystem::Npm => !spec.starts_with('@') && spec.contains('/'),
            Ecosystem::Python => spec.contains(" @ ") || spec.contains('/'),
        }
}

/// Whether the source `spec` names one commit by its full hash: npm's `…#<hash>`, a Python
/// VCS URL's `…@<hash>` (before any `#fragment`). A tag or branch can be moved.
fn at_commit(ecosystem: Ecosystem, spec: &str) -> bool {
    let reference = match ecosystem {
        // A URL that is no repository's (`https://…/x.tgz`) has no commit.
        Ecosystem::Npm => spec
            .rsplit_once('#')
            .filter(|_| !spec.starts_with("http://") && !spec.starts_with("https://"))
            .map(|(_, r)| r),
        Ecosystem::Python => {
            let url = spec.split_once('#').map_or(spec, |(url, _)| url);
            let url = url.split_once(" @ ").map_or(url, |(_, url)| url.trim());
            let vcs = ["git+", "hg+", "svn+", "bzr+"]
                .iter()
                .any(|p| url.starts_with(p));
            url.rsplit_once('@').filter(|_| vcs).map(|(_, r)| r)
        }
    };
    reference
        .is_some_and(|r| matches!(r.len(), 40 | 64) && r.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A Python package's name, with extras: `server`, `my_server.x`, `server[cli,http]`.
fn is_python_name(name: &str) -> bool {
    let (base, extras) = match name.split_once('[') {
        Some((base, extras)) => (base, extras.strip_suffix(']')),
        None => (name, Some("")),
    };
    let plain = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b','))
    };
    !base.is_empty() && !base.contains(',') && plain(base) && extras.is_some_and(plain)
}

/// `1.2.3`, `1.2.3-rc.1`, `2025.1.0`: at least `parts` numbers (npm needs all three of
/// major, minor and patch; Python two), then an optional pre-release or build; not a range
/// (`^1`, `~1.2`, `>=1`, `1.x`) nor a tag (`latest`).
fn is_exact_version(v: &str, parts: usize) -> bool {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let numbers: Vec<&str> = core.split('.').collect();
    numbers.len() >= parts
        && (parts < 3 || numbers.len() == 3)
        && numbers
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(command: &str) -> Option<String> {
        let mut words = command.split(' ');
        let program = words.next().unwrap();
        let args: Vec<String> = words.map(String::from).collect();
        unpinned(program, &args)
    }

    #[test]
    fn a_package_runner_without_an_exact_version_is_named() {
        for command in [
            "npx -y @modelcontextprotocol/server-filesystem /srv",
            "npx @modelcontextprotocol/server-filesystem@latest /srv",
            "npx -y @modelcontextprotocol/server-filesystem@^2025.1.0",
            "/usr/bin/npx --yes mcp-server@1.x",
            "bunx mcp-server",
            "npm exec --yes -- mcp-server",
            "npm exec --package=mcp-server@~1.2.0 -- mcp-server",
            "pnpm dlx mcp-server",
            "uvx mcp-server-git --repository /srv",
            "uvx mcp-server-git>=1.0",
            "uv tool run mcp-server-git",
            "pipx run mcp-server-git",
            // npm reads a version of two numbers as a range (`1.2` is `1.2.x`).
            "npx -y mcp-server@1.2",
            "npx -y @scope/mcp-server@2025.1",
            "npm exec --package=mcp-server@1.2 -- mcp-server",
            // Every package named, not only the first.
            "npx -p helper@1.2.3 -p mcp-server mcp-server",
            "npm exec --package=helper@1.2.3 --package=mcp-server@^1 -- mcp-server",
            "uvx --with requests mcp-server-git==0.6.2",
            // An option's value is no package.
            "npx --cache /tmp/npm mcp-server",
            "uvx -p 3.12 mcp-server-git",
            // Through `env`.
            "env npx -y mcp-server",
            "/usr/bin/env -i PATH=/usr/bin FOO=bar npx mcp-server@latest",
            "env -u HOME -- uvx mcp-server-git",
        ] {
            let message = check(command).unwrap_or_else(|| panic!("{command}: not named"));
            assert!(message.contains("pin an exact version"), "{message}");
            assert!(message.contains("allow_unpinned"), "{message}");
        }
    }

    #[test]
    fn a_pinned_package_a_path_or_another_program_is_not_named() {
        for command in [
            "npx -y @modelcontextprotocol/server-filesystem@2025.8.21 /srv",
            "npx -y mcp-server@1.2.3-rc.1",
            "npm exec --package=mcp-server@1.2.3 -- mcp-server",
            "npm install",
            "uvx mcp-server-git==0.6.2 --repository /srv",
            "uvx mcp-server-git@0.6.2",
            "uvx --from mcp-server-git==0.6.2 mcp-server-git",
            "pipx run mcp-server-git==0.6.2",
            "npx ./local-server",
            "node /opt/mcp/server.js",
            "/usr/local/bin/mcp-server-filesystem /srv",
            "python -m mcp_server_git",
            "npx -p helper@1.2.3 -p mcp-server@2.0.0 mcp-server",
            "npx -y mcp-server@1.2.3 -p 8080 --from anything",
            "uvx -p 3.12 mcp-server-git==0.6.2",
            "uvx --with requests==2.32.3,httpx==0.27.0 mcp-server-git[cli]==0.6.2",
            "env FOO=bar npx -y mcp-server@1.2.3",
            "env FOO=bar node /opt/mcp/server.js",
            "env",
        ] {
            assert_eq!(check(command), None, "{command}");
        }
    }

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn a_source_outside_a_registry_counts_as_pinned_only_at_a_full_commit() {
        for command in [
            "npx github:owner/mcp-server#v1.2.3",
            "npx github:owner/mcp-server",
            "npx owner/mcp-server#main",
            "npx git+https://github.com/owner/mcp-server.git#1.2.3",
            "npx https://example.com/mcp-server-1.2.3.tgz",
            "uvx --from git+https://github.com/owner/mcp-server@v1.2.3 mcp-server",
            "uvx --from git+https://github.com/owner/mcp-server@1.2.3 mcp-server",
            "uvx --from git+ssh://git@github.com/owner/mcp-server mcp-server",
            "uvx --from https://example.com/mcp_server-1.2.3-py3-none-any.whl mcp-server",
            "pipx run --spec git+https://github.com/owner/mcp-server@main mcp-server",
        ] {
            let message = check(command).unwrap_or_else(|| panic!("{command}: not named"));
            assert!(message.contains("full commit hash"), "{command}: {message}");
            assert!(message.contains("allow_unpinned"), "{message}");
        }
        assert!(check(&format!("npx https://example.com/mcp-server.tgz#{COMMIT}")).is_some());
        for command in [
            format!("npx github:owner/mcp-server#{COMMIT}"),
            format!("npx git+https://github.com/owner/mcp-server.git#{COMMIT}"),
            format!("uvx --from git+https://github.com/owner/mcp-server@{COMMIT} mcp-server"),
            format!(
                "uvx --from git+https://github.com/owner/mcp-server@{COMMIT}#subdirectory=srv x"
            ),
        ] {
            assert_eq!(check(&command), None, "{command}");
        }
        // A direct reference, one argument with spaces.
        let args =
            |spec: &str| -> Vec<String> { vec!["--from".into(), spec.into(), "mcp-server".into()] };
        let at = format!("mcp-server @ git+https://github.com/owner/mcp-server@{COMMIT}");
        assert_eq!(unpinned("uvx", &args(&at)), None);
        let tag = "mcp-server @ git+https://github.com/owner/mcp-server@v1.2.3";
        assert!(unpinned("uvx", &args(tag)).is_some());
    }

    #[test]
    fn env_s_splits_its_string_into_the_command() {
        let args =
            |words: &[&str]| -> Vec<String> { words.iter().map(|w| w.to_string()).collect() };
        assert!(unpinned("env", &args(&["-S", "npx -y mcp-server"])).is_some());
        assert!(unpinned("env", &args(&["-Snpx -y", "mcp-server@latest"])).is_some());
        assert_eq!(
            unpinned("env", &args(&["--split-string=npx -y mcp-server@1.2.3"])),
            None
        );
    }
}
