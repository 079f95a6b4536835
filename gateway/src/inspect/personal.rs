//! Detectors for personal data in what leaves: e-mail addresses and telephone numbers
//! (international `+<country code> …` numbers of 8 to 15 digits, and North American numbers
//! written with separators). Addresses at domains reserved for documentation and tests
//! (`example.com`, `.test`, `.invalid`, ...), the `git@` of SSH remotes and file names such as
//! `icon@2x.png` are not findings.

use super::config::InspectConfig;
use super::detector::{Detector, Evidence};

/// The personal-data detectors.
pub(super) const DETECTORS: &[Detector] = &[
    Detector {
        name: "email",
        pattern: r"(?:^|[^A-Za-z0-9._%+\-])([A-Za-z0-9][A-Za-z0-9._%+\-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24})(?:[^A-Za-z0-9\-]|$)",
        check: email,
        evidence: Evidence::Shape,
    },
    Detector {
        name: "phone",
        pattern: r"(?:^|[^\w+.\-])((?:\+[1-9][0-9]{0,2}(?:[ .\-]?\(?[0-9]{1,5}\)?){2,6})|(?:(?:\+?1[ .\-])?\(?[2-9][0-9]{2}\)?[ .\-][2-9][0-9]{2}[ .\-][0-9]{4}))(?:[^\w.\-]|[.\-][^0-9]|[.\-]?$)",
        check: phone,
        evidence: Evidence::Shape,
    },
];

/// Whether `detector` is one of the personal-data detectors (the others find credentials).
pub(super) fn is_personal(detector: &str) -> bool {
    DETECTORS.iter().any(|p| p.name == detector)
}

/// Domains (and their subdomains) reserved for documentation and tests (RFC 2606, RFC 6761).
const RESERVED_DOMAINS: &[&str] = &[
    "example.com",
    "example.org",
    "example.net",
    "example",
    "test",
    "invalid",
    "localhost",
    "local",
];

/// Endings of file names that contain an `@` (`icon@2x.png`), not top-level domains.
const FILE_ENDINGS: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "js", "mjs", "ts", "css", "json", "map",
    "html", "txt", "md",
];

/// An e-mail address of someone: not at a reserved domain, not a remote's `git@`, not a file.
fn email(text: &[u8], _: &InspectConfig) -> bool {
    let Ok(text) = std::str::from_utf8(text) else {
        return false;
    };
    let Some((local, domain)) = text.rsplit_once('@') else {
        return false;
    };
    let domain = domain.to_ascii_lowercase();
    let tld = domain.rsplit('.').next().unwrap_or_default();
    local != "git"
        && !FILE_ENDINGS.contains(&tld)
        && !RESERVED_DOMAINS
            .iter()
            .any(|r| domain == *r || domain.ends_with(&format!(".{r}")))
}

/// A telephone number: an international number of 8 to 15 digits (E.164), or a North American
/// one as the pattern has it.
fn phone(text: &[u8], _: &InspectConfig) -> bool {
    let digits = text.iter().filter(|b| b.is_ascii_digit()).count();
    if text.first() == Some(&b'+') {
        (8..=15).contains(&digits)
    } else {
        digits == 10 || digits == 11
    }
}

#[cfg(test)]
mod tests {
    use crate::inspect::config::InspectConfig;
    use crate::inspect::scan::{find, found_names as names};

    #[test]
    fn email_addresses_are_found_where_they_start() {
        for address in [
            "jane.doe@acme-corp.com",
            "j+filter@mail.co.uk",
            "ops_team@sub.domain.io",
        ] {
            let body = format!(r#"{{"content":"write to {address}, thanks"}}"#);
            let found = find(body.as_bytes(), &InspectConfig::default());
            assert_eq!(found, [("email", body.find(address).unwrap())], "{address}");
        }
    }

    #[test]
    fn phone_numbers_are_found_in_international_and_north_american_forms() {
        for number in [
            "+44 20 7946 0958",
            "+1 (415) 555-2671",
            "+33612345678",
            "+49-30-901820",
            "(415) 555-2671",
            "415-555-2671",
            "415.555.2671",
        ] {
            let body = format!("call {number} today");
            assert_eq!(names(&body), ["phone"], "{number}");
        }
    }

    #[test]
    fn reserved_domains_remotes_files_dates_and_versions_are_not_personal_data() {
        for body in [
            "mail alice@example.com or bob@mail.example.org",
            "git clone git@github.com:acme/warden.git",
            "<img src=\"logo@2x.png\">",
            "released 2026-12-04, version 1.22.3, build 20261204.1",
            "timestamps like 2026-12-04T10:00:00+01:00 and offsets +0100",
            "npm i lodash@4.17.21 @types/node@20.11.5",
            "the sum is 4 + 1234 and 10.100.200.30 is an address",
            "call 123-456-7890 (no area code starts with 1)",
        ] {
            assert_eq!(names(body), Vec::<&str>::new(), "{body}");
        }
    }

    #[test]
    fn disabled_detectors_do_not_run() {
        let config = InspectConfig {
            disabled: vec!["email".into(), "phone".into()],
            ..InspectConfig::default()
        };
        assert!(find(b"jane@acme-corp.com +44 20 7946 0958", &config).is_empty());
    }
}
