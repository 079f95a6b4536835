//! One configuration section read with every mistake in it, not only the first: serde stops
//! at the first value it cannot take, so each mistake found is taken out of the section and
//! the rest read again, until it reads or [`MISTAKES_MAX`] are found. A mistake that only
//! follows from one taken out (a required key now missing) is not reported.

use serde::de::DeserializeOwned;
use serde_json::Value;

/// Most mistakes one run of `warden check` (or a start) reports.
pub const MISTAKES_MAX: usize = 50;

/// One step of a path into a section.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// A mistake in a section: where (`listen.proxy`, `[2].upstream`; `.` for the section
/// itself), and what serde said of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mistake {
    pub path: String,
    pub message: String,
}

/// `value` as a `T`, or every mistake in it (at most `max`, in the order serde meets them).
pub fn read<T: DeserializeOwned>(mut value: Value, max: usize) -> Result<T, Vec<Mistake>> {
    let mut mistakes = Vec::new();
    // What was taken out, as paths into the section as written.
    let mut taken: Vec<Vec<Step>> = Vec::new();
    loop {
        let e = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(v) if taken.is_empty() => return Ok(v),
            Ok(_) => return Err(mistakes),
            Err(e) => e,
        };
        let Some(at) = steps(e.path()) else {
            // A place that cannot be found again: reported, nothing more to read.
            mistakes.push(Mistake {
                path: e.path().to_string(),
                message: e.into_inner().to_string(),
            });
            return Err(mistakes);
        };
        let written = as_written(&at, &taken);
        // Above what was taken out (a required key now missing): only a consequence.
        let consequence = taken.iter().any(|t| t.starts_with(&written));
        if !consequence {
            mistakes.push(Mistake {
                path: display(&written),
                message: e.into_inner().to_string(),
            });
        }
        if at.is_empty() || mistakes.len() >= max || !take_out(&mut value, &at) {
            return Err(mistakes);
        }
        taken.push(written);
    }
}

/// The steps of serde's path, `None` when one of them cannot be followed again.
fn steps(path: &serde_path_to_error::Path) -> Option<Vec<Step>> {
    use serde_path_to_error::Segment;
    path.iter()
        .map(|segment| match segment {
            Segment::Seq { index } => Some(Step::Index(*index)),
            Segment::Map { key } => Some(Step::Key(key.clone())),
            Segment::Enum { variant } => Some(Step::Key(variant.clone())),
            Segment::Unknown => None,
        })
        .collect()
}

/// `at` (a path into the section as it is now) as a path into the section as written: each
/// index counts the items taken out of its list before it.
fn as_written(at: &[Step], taken: &[Vec<Step>]) -> Vec<Step> {
    let mut written: Vec<Step> = Vec::with_capacity(at.len());
    for step in at {
        let step = match step {
            Step::Index(i) => {
                let mut gone: Vec<usize> = taken
                    .iter()
                    .filter(|t| t.len() == written.len() + 1 && t.starts_with(&written))
                    .filter_map(|t| match t.last() {
                        Some(Step::Index(g)) => Some(*g),
                        _ => None,
                    })
                    .collect();
                gone.sort_unstable();
                let mut index = *i;
                for g in gone {
                    if g <= index {
                        index += 1;
                    }
                }
                Step::Index(index)
            }
            key => key.clone(),
        };
        written.push(step);
    }
    written
}

/// Takes the value at `at` out of `value`; whether it was there.
fn take_out(value: &mut Value, at: &[Step]) -> bool {
    let Some((last, parents)) = at.split_last() else {
        return false;
    };
    let mut here = value;
    for step in parents {
        let next = match (step, here) {
            (Step::Key(k), Value::Object(map)) => map.get_mut(k),
            (Step::Index(i), Value::Array(items)) => items.get_mut(*i),
            _ => None,
        };
        match next {
            Some(next) => here = next,
            None => return false,
        }
    }
    match (last, here) {
        (Step::Key(k), Value::Object(map)) => map.remove(k).is_some(),
        (Step::Index(i), Value::Array(items)) if *i < items.len() => {
            items.remove(*i);
            true
        }
        _ => false,
    }
}

/// A path as serde_path_to_error writes one: `a.b[2].c`, `.` when empty.
fn display(at: &[Step]) -> String {
    if at.is_empty() {
        return ".".to_owned();
    }
    let mut out = String::new();
    for (n, step) in at.iter().enumerate() {
        match step {
            Step::Index(i) => out.push_str(&format!("[{i}]")),
            Step::Key(k) => {
                if n > 0 {
                    out.push('.');
                }
                out.push_str(k);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Server {
        name: String,
        #[serde(default)]
        port: u16,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Section {
        #[serde(default)]
        timeout: u64,
        #[serde(default)]
        verbose: bool,
        #[serde(default)]
        servers: Vec<Server>,
    }

    /// The places of `mistakes`, sorted (serde meets them in its own order).
    fn paths(mistakes: &[Mistake]) -> Vec<&str> {
        let mut paths: Vec<&str> = mistakes.iter().map(|m| m.path.as_str()).collect();
        paths.sort_unstable();
        paths
    }

    #[test]
    fn every_mistake_of_a_section_is_found_each_at_its_place() {
        let value = json!({
            "timeout": "ten",
            "verbose": "yes",
            "servers": [
                {"name": "a", "port": "x"},
                {"name": 7},
                {"name": "c", "port": 70000},
                {"name": "d", "colour": "red"},
            ],
            "extra": 1,
        });
        let mistakes = read::<Section>(value, MISTAKES_MAX).unwrap_err();
        assert_eq!(
            paths(&mistakes),
            [
                "extra",
                "servers[0].port",
                "servers[1].name",
                "servers[2].port",
                "servers[3].colour",
                "timeout",
                "verbose",
            ],
            "{mistakes:#?}"
        );
        let timeout = mistakes.iter().find(|m| m.path == "timeout").unwrap();
        assert!(timeout.message.contains("expected u64"), "{mistakes:#?}");
    }

    #[test]
    fn a_required_key_taken_out_is_not_reported_again_as_missing() {
        let value = json!({"servers": [{"name": 7, "port": "x"}, {"port": 1}]});
        let mistakes = read::<Section>(value, MISTAKES_MAX).unwrap_err();
        // The second server misses its name: reported; the first's name was wrong, its
        // absence afterwards only a consequence (its port, wrong too, is a mistake of its own).
        assert_eq!(
            paths(&mistakes),
            ["servers[0].name", "servers[0].port", "servers[1]"],
            "{mistakes:#?}"
        );
        let missing = mistakes.iter().find(|m| m.path == "servers[1]").unwrap();
        assert!(
            missing.message.contains("missing field `name`"),
            "{mistakes:#?}"
        );
        assert_eq!(
            mistakes
                .iter()
                .filter(|m| m.message.contains("missing"))
                .count(),
            1,
            "{mistakes:#?}"
        );
    }

    #[test]
    fn the_mistakes_found_are_bounded_and_a_good_section_reads() {
        let many: Vec<Value> = (0..80).map(|_| json!({"name": 1})).collect();
        let mistakes = read::<Section>(json!({"servers": many}), 5).unwrap_err();
        assert_eq!(mistakes.len(), 5);
        assert_eq!(mistakes[4].path, "servers[4].name");
        assert_eq!(
            read::<Section>(json!({"timeout": 3}), MISTAKES_MAX),
            Ok(Section {
                timeout: 3,
                verbose: false,
                servers: Vec::new()
            })
        );
        let whole = read::<Section>(json!("not a mapping"), MISTAKES_MAX).unwrap_err();
        assert_eq!(paths(&whole), ["."]);
    }
}
