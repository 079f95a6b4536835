//! "Did you mean `timeout`?" for a configuration key (or a kind, a method: any name chosen
//! from a list) that is not one: the known name closest to what was written, when one is
//! close. One place for every section: serde's "unknown field" and "unknown variant" messages
//! list the names known where the mistake is, and the top-level sections are listed by
//! `config/load.rs`.

/// Longest edit distance between a name written and a known one that is still suggested.
const DISTANCE_MAX: usize = 2;

/// The name of `known` that `written` most likely meant: the same name but for case and
/// `-` against `_`, or else the nearest at most [`DISTANCE_MAX`] edits away (an edit: a
/// character added, removed, changed, or two neighbours swapped) and closer than half its
/// length (`foo` is two edits from `log`, yet no misspelling of it). `None` when none is
/// close, or when `written` is itself known. The first listed wins a tie.
pub fn closest<'a>(written: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let wanted = normal(written);
    let mut best: Option<(usize, &'a str)> = None;
    for name in known {
        if name == written {
            return None;
        }
        let distance = distance(&wanted, &normal(name));
        let longest = wanted.chars().count().max(name.chars().count());
        let close = distance == 0 || (distance <= DISTANCE_MAX && distance * 2 < longest);
        if close && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, name));
        }
    }
    best.map(|(_, name)| name)
}

/// " (did you mean `x`?)" when `x`, a name of `known`, is close to `written` ([`closest`]);
/// nothing otherwise. Only the known name is quoted, so a message may carry it where what was
/// written must not be shown (a key that may be a secret).
pub fn did_you_mean<'a>(written: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    closest(written, known)
        .map(|name| format!(" (did you mean `{name}`?)"))
        .unwrap_or_default()
}

/// Most entries of a directory read for [`nearby_file`]: a name mistyped in a huge directory
/// is not worth reading it whole.
const ENTRIES_MAX: usize = 10_000;

/// The file `path` most likely meant when there is nothing at `path`: the entry of its
/// directory whose name is closest to its file name ([`closest`]), as `path` with that name.
/// `None` when something is at `path`, when its directory cannot be read (or is `/`), or when
/// no name there is close.
pub fn nearby_file(path: &std::path::Path) -> Option<std::path::PathBuf> {
    if path.exists() {
        return None;
    }
    let name = path.file_name()?.to_str()?;
    let dir = path.parent()?;
    let read = if dir.as_os_str().is_empty() {
        std::path::Path::new(".")
    } else if dir == std::path::Path::new("/") {
        return None;
    } else {
        dir
    };
    let names: Vec<String> = std::fs::read_dir(read)
        .ok()?
        .take(ENTRIES_MAX)
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    let mut names: Vec<&str> = names.iter().map(String::as_str).collect();
    // The same answer whatever order the directory lists its entries in.
    names.sort_unstable();
    closest(name, names).map(|found| dir.join(found))
}

/// `message` with a suggestion after the name when it is serde's "unknown field `x`,
/// expected ..." (or "unknown variant") and one of the names it lists is close to `x`:
/// "unknown field `tiemout` (did you mean `timeout`?), expected one of `a`, `timeout`".
/// Any other message is returned as it is.
pub fn unknown_name(message: &str) -> String {
    let Some((head, written, rest)) =
        ["unknown field `", "unknown variant `"]
            .iter()
            .find_map(|start| {
                let after = message.strip_prefix(start)?;
                let end = after.find('`')?;
                Some((
                    &message[..start.len() + end + 1],
                    &after[..end],
                    &after[end + 1..],
                ))
            })
    else {
        return message.to_owned();
    };
    let Some(listed) = rest.strip_prefix(", expected ") else {
        return message.to_owned();
    };
    match closest(written, quoted(listed)) {
        Some(name) => format!("{head} (did you mean `{name}`?){rest}"),
        None => message.to_owned(),
    }
}

/// The names between backquotes in `text` (serde's "`a`, `b` or `c`").
fn quoted(text: &str) -> impl Iterator<Item = &str> {
    text.split('`').skip(1).step_by(2)
}

/// A name as compared: lower case, `-` read as `_`.
fn normal(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c == '-' {
                '_'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// The optimal string alignment distance between `a` and `b` (Levenshtein's, with a swap of
/// two neighbours counted as one edit), of the names as compared ([`normal`]).
fn distance(a: &str, b: &str) -> usize {
    strsim::osa_distance(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_you_mean_names_the_known_name_only_when_one_is_close() {
        assert_eq!(
            did_you_mean("enf", ["env", "file", "vault"]),
            " (did you mean `env`?)"
        );
        assert_eq!(did_you_mean("sk-live-0123456789", ["env", "file"]), "");
        assert_eq!(did_you_mean("env", ["env", "file"]), "");
    }

    #[test]
    fn a_missing_file_is_given_the_closest_name_in_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["server.pem", "server.key", "ca.pem"] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        let at = |name: &str| nearby_file(&dir.path().join(name));
        assert_eq!(at("sever.pem"), Some(dir.path().join("server.pem")));
        assert_eq!(at("server.kye"), Some(dir.path().join("server.key")));
        assert_eq!(at("Server.pem"), Some(dir.path().join("server.pem")));
        // Nothing close, a file that is there, a directory that is not: no guess.
        assert_eq!(at("tls-bundle.crt"), None);
        assert_eq!(at("server.pem"), None);
        assert_eq!(nearby_file(&dir.path().join("nope/server.pem")), None);
        assert_eq!(nearby_file(std::path::Path::new("/sever.pem")), None);
    }

    fn d(a: &str, b: &str) -> usize {
        distance(&normal(a), &normal(b))
    }

    #[test]
    fn edits_and_swaps_each_count_one() {
        assert_eq!(d("timeout", "timeout"), 0);
        assert_eq!(d("timout", "timeout"), 1);
        assert_eq!(d("tiemout", "timeout"), 1);
        assert_eq!(d("timeouts", "timeout"), 1);
        assert_eq!(d("tymeoot", "timeout"), 2);
        assert_eq!(d("", "abc"), 3);
        assert_eq!(d("kitten", "sitting"), 3);
    }

    #[test]
    fn the_closest_known_name_is_suggested_when_it_is_close() {
        let known = ["timeout", "kv_ttl", "renew_margin", "address"];
        assert_eq!(closest("timout", known), Some("timeout"));
        assert_eq!(closest("adress", known), Some("address"));
        assert_eq!(closest("renew-margin", known), Some("renew_margin"));
        assert_eq!(closest("KV_TTL", known), Some("kv_ttl"));
        assert_eq!(closest("Renew-Margin", known), Some("renew_margin"));
        // Nothing close: no guess.
        assert_eq!(closest("namespace_id", known), None);
        // Two edits, but most of a short name: no guess either.
        assert_eq!(closest("foo", ["log"]), None);
        // A known name is no mistake.
        assert_eq!(closest("timeout", known), None);
        // The nearer wins over the first listed.
        assert_eq!(closest("timeot", ["timeouts", "timeout"]), Some("timeout"));
    }

    #[test]
    fn serdes_unknown_field_and_variant_messages_get_the_suggestion_after_the_name() {
        assert_eq!(
            unknown_name("unknown field `tiemout`, expected one of `address`, `timeout`"),
            "unknown field `tiemout` (did you mean `timeout`?), expected one of `address`, \
             `timeout`"
        );
        assert_eq!(
            unknown_name("unknown field `Port`, expected `port` or `host`"),
            "unknown field `Port` (did you mean `port`?), expected `port` or `host`"
        );
        assert_eq!(
            unknown_name("unknown variant `tokn`, expected one of `token`, `approle`"),
            "unknown variant `tokn` (did you mean `token`?), expected one of `token`, `approle`"
        );
        for unchanged in [
            "unknown field `colour`, expected one of `name`, `port`",
            "unknown field `x`, there are no fields",
            "invalid type: string \"ten\", expected a whole number (0 or more)",
            "missing field `name`",
        ] {
            assert_eq!(unknown_name(unchanged), unchanged);
        }
    }
}
