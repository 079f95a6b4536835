//! A local MCP server started through a package runner (`npx -y @scope/server`, `uvx server`,
//! `pipx run server`, `bunx`, `pnpm dlx`, `npm exec`, `yarn dlx`) fetches the package from its
//! registry when it starts, and Warden restarts it whenever it exits. Without an exact version
//! the runner takes whatever the registry serves at that moment: a release published by whoever
//! took over the package runs under Warden's user, beside its keys and audit log, at the next
//! restart. Such a command is refused unless the package names an exact version (or the server
//! sets `allow_unpinned: true`).

/// The package spec of a runner command that does not name an exact version, with how to pin
/// it; `None` when the command is no package runner or its package is pinned.
pub fn unpinned(program: &str, args: &[String]) -> Option<String> {
    let runner = program.rsplit('/').next().unwrap_or(program);
    let (ecosystem, rest) = match runner {
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
    let spec = package_spec(rest)?;
    (!ecosystem.is_pinned(spec)).then(|| {
        format!(
            "{runner} fetches {spec:?} from its registry each time the server starts, taking \
             whatever version is newest then: pin an exact version ({}), or install the server \
             where its files cannot change and run it by path; `allow_unpinned: true` accepts \
             the risk",
            ecosystem.example()
        )
    })
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

/// The package a runner's arguments name: `--package X` / `--package=X` / `-p X` /
/// `--from X` when given, else the first argument that is no option.
fn package_spec(args: &[String]) -> Option<&str> {
    let mut iter = args.iter();
    let mut first = None;
    while let Some(arg) = iter.next() {
        let arg = arg.as_str();
        for flag in ["--package", "--from", "--spec"] {
            if let Some(value) = arg.strip_prefix(flag).and_then(|v| v.strip_prefix('=')) {
                return Some(value);
            }
            if arg == flag {
                return iter.next().map(String::as_str);
            }
        }
        if arg == "-p" {
            return iter.next().map(String::as_str);
        }
        if arg == "--" {
            return first.or_else(|| iter.next().map(String::as_str));
        }
        if !arg.starts_with('-') && first.is_none() {
            first = Some(arg);
        }
    }
    first
}

#[derive(Clone, Copy)]
enum Ecosystem {
    Npm,
    Python,
}

impl Ecosystem {
    /// Whether `spec` names one exact version, or something that is no registry's to change (a
    /// path on this host).
    fn is_pinned(self, spec: &str) -> bool {
        if spec.starts_with(['/', '.']) || spec.starts_with("file:") {
            return true;
        }
        let version = match self {
            // `@scope/name@1.2.3`, `name@1.2.3`: the version after the last `@` past the first
            // character.
            Ecosystem::Npm => spec
                .get(1..)
                .and_then(|s| s.rsplit_once('@'))
                .map(|(_, v)| v),
            // `name==1.2.3` (pip), `name@1.2.3` (uv).
            Ecosystem::Python => spec
                .split_once("==")
                .or_else(|| spec.split_once('@'))
                .map(|(_, v)| v),
        };
        version.is_some_and(is_exact_version)
    }

    fn example(self) -> &'static str {
        match self {
            Ecosystem::Npm => "`@scope/server@1.2.3`",
            Ecosystem::Python => "`server==1.2.3`",
        }
    }
}

/// `1.2.3`, `1.2.3-rc.1`, `2025.1.0`: digits and dots, at least one dot, then an optional
/// pre-release or build; not a range (`^1`, `~1.2`, `>=1`, `1.x`) nor a tag (`latest`).
fn is_exact_version(v: &str) -> bool {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() >= 2
        && parts
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
        ] {
            assert_eq!(check(command), None, "{command}");
        }
    }
}
