//! The generic secret detector (`high_entropy_secret`): a value assigned to a name that says it
//! is secret (`api_key=`, `token:`, `"client_secret": "…"`, `PASSWORD := …`) whose characters
//! look random: at least `inspect.entropy.min_length` long, Shannon entropy of at least
//! `inspect.entropy.threshold` bits per character, letters and digits mixed. It catches the
//! keys of services no specific detector knows; identifiers, words, paths and UUIDs stay out.

use super::config::InspectConfig;
use super::detector::{Detector, Evidence};

/// The generic secret detector.
pub(super) const DETECTORS: &[Detector] = &[Detector {
    name: "high_entropy_secret",
    pattern: r#"(?i)(?:key|token|secret|password|passwd|pwd|credential|credentials|auth)[A-Za-z0-9_\-]{0,24}["']?\s{0,4}(?::=|=>|:|=)\s{0,4}["']?([A-Za-z0-9+/_\-.~]{8,256})"#,
    check: random,
    evidence: Evidence::Shape,
}];

/// Whether `value` looks random enough to be a secret.
fn random(value: &[u8], config: &InspectConfig) -> bool {
    let value = trim_padding(value);
    if value.len() < config.entropy.min_length || uuid(value) || words(value) {
        return false;
    }
    let digits = value.iter().filter(|b| b.is_ascii_digit()).count();
    let letters = value.iter().filter(|b| b.is_ascii_alphabetic()).count();
    digits >= 2 && letters >= 2 && shannon(value) >= config.entropy.threshold
}

/// `value` without base64's `=` padding and a sentence's closing dot.
fn trim_padding(value: &[u8]) -> &[u8] {
    let end = value
        .iter()
        .rposition(|b| !matches!(b, b'=' | b'.'))
        .map_or(0, |i| i + 1);
    &value[..end]
}

/// An identifier made of words and numbers joined by `_`, `-` or `.`
/// (`database_password_2024`), each part all letters or all digits.
fn words(value: &[u8]) -> bool {
    let mut parts = value.split(|b| matches!(b, b'_' | b'-' | b'.'));
    parts.clone().count() > 1
        && parts.all(|p| p.iter().all(u8::is_ascii_alphabetic) || p.iter().all(u8::is_ascii_digit))
}

/// A UUID (`8-4-4-4-12` hex digits): an identifier, not a secret, in ordinary traffic.
fn uuid(value: &[u8]) -> bool {
    value.len() == 36
        && value.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// Shannon entropy of `value`, in bits per byte.
pub(super) fn shannon(value: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for &b in value {
        counts[usize::from(b)] += 1;
    }
    let len = value.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / len;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::scan::{find, found_names as names};

    #[test]
    fn random_values_assigned_to_secret_names_are_found_where_the_value_starts() {
        let value = "q8Vd3kLz0PwX7mRt2YbN5sHc";
        for body in [
            format!("API_KEY={value}"),
            format!("token: {value}"),
            format!(r#"{{"client_secret": "{value}"}}"#),
            format!("export SERVICE_PASSWORD='{value}'"),
            format!("auth_token := \"{value}\""),
            format!("config.webhook_secret = \"{value}\";"),
        ] {
            let found = find(body.as_bytes(), &InspectConfig::default());
            assert_eq!(
                found,
                [("high_entropy_secret", body.find(value).unwrap())],
                "{body}"
            );
        }
    }

    #[test]
    fn words_identifiers_references_and_uuids_are_not_secrets() {
        for body in [
            "api_key = os.environ[\"OPENAI_API_KEY\"]",
            "token: ${{ secrets.GITHUB_TOKEN }}",
            "password: correct horse battery staple",
            "sort_key: created_at_timestamp",
            "idempotency_key: 123e4567-e89b-12d3-a456-426614174000",
            "token_endpoint: https://login.acme-corp.com/oauth2/v2.0/token",
            "secret_name = database_password_2024",
            "key=aaaaaaaaaaaaaaaaaaaaaaaa11",
        ] {
            assert_eq!(names(body), Vec::<&str>::new(), "{body}");
        }
    }

    #[test]
    fn the_threshold_and_length_are_the_configured_ones() {
        let body = b"token=q8Vd3kLz0PwX7mRt2YbN5sHc";
        let config = |threshold, min_length| InspectConfig {
            entropy: crate::inspect::config::EntropyConfig {
                threshold,
                min_length,
            },
            ..InspectConfig::default()
        };
        assert_eq!(find(body, &config(3.5, 20)).len(), 1);
        assert!(
            find(body, &config(5.5, 20)).is_empty(),
            "stricter threshold"
        );
        assert!(find(body, &config(3.5, 40)).is_empty(), "longer length");
        assert!(shannon(b"aaaa") < 0.01 && shannon(b"abcd") > 1.99);
    }
}
