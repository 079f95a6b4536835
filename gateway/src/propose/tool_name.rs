//! The tool a client runs a proposed call as. Models name tools loosely (`EXEC`, ` exec`,
//! `functions.exec`, `default_api.exec`, `tools/exec`, `functions.exec:0`, `exec3`,
//! `functions_exec_2`), and clients run such a name as the tool it folds onto: OpenClaw
//! (`resolveToolCallName`, 2026.9) trims it, matches it against its tools ignoring case,
//! drops a namespace (`x.`, `x/`), a `functions`/`tools` prefix, a `:…` tail and a trailing
//! counter, and reads `bash` as `exec`, `apply-patch` as `apply_patch`, `cron` as
//! `automations`. A call is judged as the tool it would run as: the name given when it is one
//! the request declared (the catalogue's when the request declared none), else the one it
//! folds onto, first among the declared tools, then the catalogue's. A name that folds onto
//! two tools, a blank name (OpenClaw then guesses the tool from the call's id) and a name too
//! long to be a tool's are refused.

use std::collections::BTreeSet;

/// Longest name read as a tool's: a longer one is refused.
pub const MAX_TOOL_NAME: usize = 128;

/// The names OpenClaw reads as another tool's (`TOOL_NAME_ALIASES`).
const ALIASES: [(&str, &str); 3] = [
    ("bash", "exec"),
    ("apply-patch", "apply_patch"),
    ("cron", "automations"),
];

/// The tool a proposed name runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dispatch {
    /// The tool named exactly, or no known tool: judged under the name given.
    AsGiven,
    /// The tool (declared or in the catalogue) the name folds onto.
    As(String),
    /// A name a client could not run as one tool: refused, for this reason.
    Refused(String),
}

/// The tool `name` runs as, among the tools the request `declared` and the `catalogue`'s
/// (`also`: names always known exactly, such as the deferred-tool call).
pub fn dispatch<'a>(
    name: &str,
    declared: &[String],
    catalogue: impl Iterator<Item = &'a str> + Clone,
    also: &[&'a str],
) -> Dispatch {
    let exact = if declared.is_empty() {
        catalogue.clone().any(|tool| tool == name)
    } else {
        declared.iter().any(|tool| tool == name)
    };
    if exact || also.contains(&name) {
        return Dispatch::AsGiven;
    }
    if trim(name).is_empty() {
        return Dispatch::Refused(
            "its tool name is blank (a client would guess the tool from the call's id)".into(),
        );
    }
    if name.len() > MAX_TOOL_NAME {
        return Dispatch::Refused(format!(
            "its tool name is longer than {MAX_TOOL_NAME} bytes, which no tool's is"
        ));
    }
    let candidates = candidates(name);
    let declared_match = matches(&candidates, declared.iter().map(String::as_str));
    let found = if declared_match.is_empty() {
        matches(&candidates, catalogue.chain(also.iter().copied()))
    } else {
        declared_match
    };
    match found.as_slice() {
        [] => Dispatch::AsGiven,
        [tool] if tool == name => Dispatch::AsGiven,
        [tool] => Dispatch::As(tool.clone()),
        tools => Dispatch::Refused(format!(
            "its tool name could be run as any of {}",
            tools
                .iter()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The catalogue tool `name` folds onto, when exactly one does (for the group and kind of a
/// declared tool the catalogue spells otherwise).
pub fn in_catalogue<'a>(name: &str, catalogue: impl Iterator<Item = &'a str>) -> Option<String> {
    match matches(&candidates(name), catalogue).as_slice() {
        [tool] => Some(tool.clone()),
        _ => None,
    }
}

/// The `tools` a name's candidates name (ignoring case), each once.
fn matches<'a>(candidates: &BTreeSet<String>, tools: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for tool in tools {
        if candidates.contains(&tool.to_lowercase()) && !found.iter().any(|f| f == tool) {
            found.push(tool.to_owned());
        }
    }
    found
}

/// Every name (lower-cased) a client may read `name` as: a superset of OpenClaw's candidates.
fn candidates(name: &str) -> BTreeSet<String> {
    let trimmed = trim(name).to_lowercase();
    let mut seeds = vec![trimmed.clone()];
    // An XML fragment after the name (`exec"…`, `exec<…`), and a `:…` tail.
    if let Some(at) = trimmed.find(['"', '\'', '<']).filter(|at| *at > 0) {
        seeds.push(trimmed[..at].to_owned());
    }
    if let Some((head, _)) = trimmed.split_once(':') {
        seeds.push(head.to_owned());
    }
    let mut out = BTreeSet::new();
    for seed in seeds {
        let dotted = seed.replace('/', ".");
        let segments: Vec<&str> = dotted
            .split('.')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let mut forms = vec![dotted.trim().to_owned()];
        forms.extend((1..segments.len()).map(|at| segments[at..].join(".")));
        for form in forms {
            for unprefixed in [
                form.clone(),
                strip_prefix(&form, "function"),
                strip_prefix(&form, "tool"),
            ] {
                out.insert(strip_counter(&unprefixed, true));
                out.insert(strip_counter(&unprefixed, false));
                out.insert(unprefixed);
            }
        }
    }
    let aliased: Vec<String> = out
        .iter()
        .filter_map(|c| ALIASES.iter().find(|(alias, _)| alias == c))
        .map(|(_, tool)| (*tool).to_owned())
        .collect();
    out.extend(aliased);
    out.remove("");
    out
}

/// `name` without the blanks around it, as JavaScript's `trim` reads them (Unicode white
/// space and the byte-order mark, which Rust's `trim` keeps).
fn trim(name: &str) -> &str {
    name.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}')
}

/// `name` less a leading `<word>`, `<word>s`, each with one `.`, `_` or `-` after it.
fn strip_prefix(name: &str, word: &str) -> String {
    let Some(rest) = name.strip_prefix(word) else {
        return name.to_owned();
    };
    let rest = rest.strip_prefix('s').unwrap_or(rest);
    rest.strip_prefix(['.', '_', '-'])
        .unwrap_or(rest)
        .to_owned()
}

/// `name` less its trailing digits (`separated`: with one `:`, `.`, `_`, `/` or `-` before
/// them, which must be there).
fn strip_counter(name: &str, separated: bool) -> String {
    let head = name.trim_end_matches(|c: char| c.is_ascii_digit());
    if head.len() == name.len() {
        return name.to_owned();
    }
    if !separated {
        return head.to_owned();
    }
    match head.strip_suffix([':', '.', '_', '/', '-']) {
        Some(head) => head.to_owned(),
        None => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CATALOGUE: [&str; 4] = ["exec", "deploy", "read", "bash"];

    fn of(name: &str, declared: &[&str]) -> Dispatch {
        let declared: Vec<String> = declared.iter().map(|d| (*d).to_owned()).collect();
        dispatch(name, &declared, CATALOGUE.iter().copied(), &["tool_call"])
    }

    #[test]
    fn names_a_client_runs_as_a_known_tool_dispatch_to_it() {
        // The variants OpenClaw's resolveToolCallName runs as `exec` and `deploy`.
        for (name, tool) in [
            ("exec ", "exec"),
            ("\u{feff}exec\n", "exec"),
            (" exec", "exec"),
            ("EXEC", "exec"),
            ("Exec", "exec"),
            ("functions.exec", "exec"),
            ("default_api.exec", "exec"),
            ("tools/exec", "exec"),
            ("functions.exec:0", "exec"),
            ("exec3", "exec"),
            ("functions_exec_2", "exec"),
            ("function-exec", "exec"),
            ("exec<parameter", "exec"),
            ("Deploy", "deploy"),
            ("functions.deploy", "deploy"),
            ("TOOL_CALL", "tool_call"),
        ] {
            assert_eq!(of(name, &[]), Dispatch::As(tool.to_owned()), "{name:?}");
            assert_eq!(
                of(name, &["exec", "deploy"]),
                Dispatch::As(tool.to_owned()),
                "{name:?} (declared)"
            );
        }
        // A declared tool the catalogue lacks, and an alias to a declared tool.
        assert_eq!(
            of("functions.Get_Weather", &["get_weather"]),
            Dispatch::As("get_weather".into())
        );
        assert_eq!(of("bash", &["exec"]), Dispatch::As("exec".into()));
        assert_eq!(of("Read", &["exec"]), Dispatch::As("read".into()));
    }

    #[test]
    fn exact_and_unknown_names_are_judged_as_given() {
        for (name, declared) in [
            ("exec", &[][..]),
            ("bash", &[][..]),
            ("bash", &["bash", "exec"][..]),
            ("tool_call", &["exec"][..]),
            ("get_weather", &[][..]),
            ("get_weather", &["exec"][..]),
            ("execute_query", &[][..]),
            ("reader", &[][..]),
        ] {
            assert_eq!(
                of(name, declared),
                Dispatch::AsGiven,
                "{name:?} {declared:?}"
            );
        }
    }

    #[test]
    fn blank_ambiguous_and_overlong_names_are_refused() {
        for (name, declared) in [
            ("", &[][..]),
            ("  ", &[][..]),
            ("\u{feff}", &[][..]),
            ("EXEC", &["exec", "Exec"][..]),
            ("tools.bash", &[][..]),
        ] {
            assert!(
                matches!(of(name, declared), Dispatch::Refused(_)),
                "{name:?} {declared:?}"
            );
        }
        let long = format!("functions.{}.exec", "x".repeat(200));
        assert!(matches!(of(&long, &[]), Dispatch::Refused(_)));
    }
}
