//! What a refusal quotes of the request it refused (a path, a header's value, a token's
//! issuer, a tool's name), as its record and the process log keep it: bounded
//! ([`FIELD_MAX`]), every match of a content detector replaced by `[redacted: <detector>]`,
//! and all of it withheld when it carries a live canary (the hit raised as any other) or a
//! detector's match only its percent-decoding shows. The proxy's refusals
//! (`proxy::Refusal::recorded_message`) and the admin API's go through it alike.

use std::sync::Arc;

use crate::canary::Canaries;
use crate::inspect::InspectConfig;
use crate::text::{FIELD_MAX, bounded};

/// What quoted text is looked into with, and who sent it.
pub struct Scrubbing<'a> {
    /// The content detectors (`inspect:`).
    pub inspect: &'a InspectConfig,
    /// The live canaries, when any.
    pub canaries: Option<&'a Canaries>,
    /// Who sent the request, when known.
    pub agent: Option<&'a str>,
    /// The request's id, which a canary's alert names.
    pub request_id: &'a str,
}

/// Why quoted text is not kept at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Withheld {
    /// A live canary is in it.
    #[error("withheld: canary {0} was found in what the request said")]
    Canary(Arc<str>),
    /// A detector matches what only its percent-decoding shows.
    #[error("withheld: the {0} detector found a secret in what the request said")]
    Secret(&'static str),
}

/// `text` as a record keeps it (at most [`FIELD_MAX`] bytes, detectors' matches redacted),
/// or why none of it is kept.
pub fn quoted(text: &str, scrubbing: &Scrubbing<'_>) -> Result<String, Withheld> {
    // Only what the record can keep is looked into (a path quoted whole may be 64 KiB).
    let full = bounded(text, 2 * FIELD_MAX);
    if let Some(canaries) = scrubbing.canaries {
        let found = canaries
            .in_refused(full.as_bytes(), scrubbing.agent, scrubbing.request_id)
            .or_else(|| {
                let decoded = crate::inspect::decoded::form_decoded(full.as_bytes());
                canaries.in_refused(&decoded, scrubbing.agent, scrubbing.request_id)
            });
        if let Some(id) = found {
            return Err(Withheld::Canary(id));
        }
    }
    match crate::inspect::scrubbed(&full, scrubbing.inspect) {
        Ok(text) => Ok(bounded(&text, FIELD_MAX).into_owned()),
        Err(detector) => Err(Withheld::Secret(detector)),
    }
}

/// A refusal's message (`detailed`, which may quote the request) as its record keeps it:
/// [`quoted`], or only its `code` and why the rest is withheld.
pub fn message(code: &str, detailed: &str, scrubbing: &Scrubbing<'_>) -> String {
    quoted(detailed, scrubbing).unwrap_or_else(|withheld| format!("{code}: ({withheld})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_redacted_and_one_only_decoding_shows_withholds_the_message() {
        let inspect = InspectConfig::default();
        let scrubbing = Scrubbing {
            inspect: &inspect,
            canaries: None,
            agent: None,
            request_id: "r1",
        };
        let kept = message(
            "no_route",
            "no route for /keys/AKIAIOSFODNN7EXAMPLE",
            &scrubbing,
        );
        assert!(!kept.contains("AKIAIOSFODNN7EXAMPLE"), "{kept}");
        assert!(kept.contains("[redacted: "), "{kept}");
        let hidden = message(
            "no_route",
            "no route for /keys/AKIAIOSFODNN7EXAMPL%45",
            &scrubbing,
        );
        assert!(hidden.starts_with("no_route: (withheld: the "), "{hidden}");
    }
}
