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
