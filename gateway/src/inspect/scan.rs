//! One pass over a body for every content detector: a compiled regex set says which detectors
//! may match; only those are then located and checked.

use std::sync::LazyLock;

use regex::bytes::{Regex, RegexSet};

use super::config::InspectConfig;
use super::detector::{Detector, Evidence};
use super::{entropy, personal, secrets};

/// Every pattern detector, in the order their findings are reported.
static DETECTORS: LazyLock<Vec<&'static Detector>> = LazyLock::new(|| {
    secrets::DETECTORS
        .iter()
        .chain(personal::DETECTORS)
        .chain(entropy::DETECTORS)
        .collect()
});

static SET: LazyLock<RegexSet> = LazyLock::new(|| {
    RegexSet::new(DETECTORS.iter().map(|d| d.pattern)).expect("the detectors' patterns compile")
});

static EACH: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    DETECTORS
        .iter()
        .map(|d| Regex::new(d.pattern).expect("the detectors' patterns compile"))
        .collect()
});

/// The names of the pattern detectors.
pub(super) fn names() -> impl Iterator<Item = &'static str> {
    DETECTORS.iter().map(|d| d.name)
}

/// Whether any pattern detector's pattern matches `body` (before the detectors' checks and
/// whether they are enabled): `false` means [`find`] finds nothing in it.
pub(super) fn may_match(body: &[u8]) -> bool {
    SET.is_match(body)
}

/// Whether the pattern detector `name` matches by shape alone ([`Evidence::Shape`]).
pub(super) fn by_shape(name: &str) -> bool {
    DETECTORS
        .iter()
        .any(|d| d.name == name && d.evidence == Evidence::Shape)
}

/// Each enabled detector that matches `body`, with the byte its first checked match starts at.
pub(super) fn find(body: &[u8], config: &InspectConfig) -> Vec<(&'static str, usize)> {
    spans(body, config)
        .into_iter()
        .map(|(name, span)| (name, span.start))
        .collect()
}

/// Each enabled detector that matches `body`, with the span of its first checked match.
pub(super) fn spans(
    body: &[u8],
    config: &InspectConfig,
) -> Vec<(&'static str, std::ops::Range<usize>)> {
    if !SET.is_match(body) {
        return Vec::new();
    }
    let maybe = SET.matches(body);
    maybe
        .iter()
        .filter(|&i| config.enabled(DETECTORS[i].name))
        .filter_map(|i| {
            let detector = DETECTORS[i];
            EACH[i].captures_iter(body).find_map(|c| {
                let m = c.get(1).or_else(|| c.get(0))?;
                (detector.check)(m.as_bytes(), config).then_some((detector.name, m.range()))
            })
        })
        .collect()
}

/// Every checked match in `body` of each enabled detector `wanted` accepts, in the order of the
/// detectors, then of the body. Matches of one detector may be adjacent: the search goes on
/// where the match proper ends, not where the context its pattern reads around it does.
pub(super) fn all_spans(
    body: &[u8],
    config: &InspectConfig,
    wanted: &dyn Fn(&str) -> bool,
) -> Vec<(&'static str, std::ops::Range<usize>)> {
    let maybe = SET.matches(body);
    let mut spans = Vec::new();
    for i in maybe.iter() {
        let detector = DETECTORS[i];
        if !config.enabled(detector.name) || !wanted(detector.name) {
            continue;
        }
        let mut start = 0;
        while start <= body.len() {
            let Some(c) = EACH[i].captures_at(body, start) else {
                break;
            };
            let Some(m) = c.get(1).or_else(|| c.get(0)) else {
                break;
            };
            if (detector.check)(m.as_bytes(), config) {
                spans.push((detector.name, m.range()));
            }
            start = m.end().max(c.get(0).map_or(start, |all| all.start()) + 1);
        }
    }
    spans
}

/// The names of the detectors that match `body` with the default configuration.
#[cfg(test)]
pub(super) fn found_names(body: &str) -> Vec<&'static str> {
    find(body.as_bytes(), &InspectConfig::default())
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}
