//! Detectors for credentials and payment data in what leaves: well-known key and token formats
//! (cloud providers, code hosts, chat, payments, LLM providers), JSON Web Tokens, payment card
//! numbers (checked with Luhn and the card brands' prefixes and lengths) and IBANs (checked with
//! their mod-97 checksum). One pass of a compiled regex set over the body says which may be
//! present; only those are then located, and checksums weed out look-alikes. A finding names the
//! detector and the byte where the match starts, never the match. `scan.rs` runs them
//! with the personal-data and generic-secret detectors in the same pass.

use super::config::InspectConfig;
use super::detector::{Detector, Evidence, any};

/// The credential and payment detectors, in the order their findings are reported.
pub(super) const DETECTORS: &[Detector] = &[
    Detector {
        name: "aws_access_key",
        pattern: r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}\b",
        check: any,
        evidence: Evidence::Format,
    },
    Detector {
        name: "gcp_api_key",
        pattern: r"\bAIza[0-9A-Za-z_\-]{35}",
        check: any,
        evidence: Evidence::Format,
    },
    Detector {
        name: "azure_storage_key",
        pattern: r"AccountKey=[A-Za-z0-9+/]{86}==",
        check: any,
        evidence: Evidence::Format,
    },
    Detector {
        name: "github_token",
        pattern: r"\b(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{82})\b",
        check: any,
        evidence: Evidence::Format,
    },
    Detector {
        name: "gitlab_token",
        pattern: r"\bglpat-[A-Za-z0-9_\-]{20}\b",
        check: any,
        evidence: Evidence::Format,
    },
    Detector {
        name: "slack_token",
        pattern: r"\b(?:xox[baprs]-[A-Za-z0-9]{10,}-[A-Za-z0-9-]{10,}|https://hooks\.slack\.com/services/T[A-Z0-9]{6,}/B[A-Z0-9]{6,}/[A-Za-z0-9]{20,})",
        check: any,
        evidence: Evidence::Format,
    },
    Detector {
        name: "telegram_bot_token",
        pattern: r"(?:\b|bot)([0-9]{8,10}:AA[A-Za-z0-9_\-]{33})(?:[^A-Za-z0-9_\-]|$)",
        check: any,
        evidence: Evidence::Format,
    },
    Detector {
        name: "discord_webhook",
        pattern: r"\bhttps://(?:(?:ptb|canary)\.)?discord(?:app)?\.com/api/(?:v[0-9]{1,2}/)?webhooks/[0-9]{17,20}/([A-Za-z0-9_\-]{60,100})",
        check: any,
        evidence: Evidence::Format,
    },
    Detector {
        name: "stripe_key",
        pattern: r"\b(?:sk|rk)_live_[A-Za-z0-9]{24,}",
        check: any,
        evidence: Evidence::Format,
    },
    Detector {
        name: "anthropic_key",
        pattern: r"\bsk-ant-(?:api|admin)[0-9]{2}-[A-Za-z0-9_\-]{80,}",
        check: any,
        evidence: Evidence::Format,
    },
    Detector {
        name: "openai_key",
        pattern: r"\bsk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{40,}|[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20})",
        check: any,
        evidence: Evidence::Format,
    },
    Detector {
        name: "jwt",
        pattern: r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{16,}",
        check: any,
        evidence: Evidence::Format,
    },
    Detector {
        name: "payment_card",
        pattern: r"(?:^|[^0-9])([0-9](?:[ \-]?[0-9]){12,18})(?:[^0-9]|$)",
        check: card,
        evidence: Evidence::Shape,
    },
    Detector {
        name: "iban",
        pattern: r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b",
        check: iban,
        evidence: Evidence::Shape,
    },
];

/// The digits of `text`, skipping spaces and dashes.
fn digits(text: &[u8]) -> Vec<u8> {
    text.iter()
        .filter(|b| b.is_ascii_digit())
        .map(|b| b - b'0')
        .collect()
}

/// A payment card number: a brand's prefix and length, and a Luhn checksum that holds.
fn card(text: &[u8], _: &InspectConfig) -> bool {
    let d = digits(text);
    let prefix = |n: usize| {
        d.iter()
            .take(n)
            .fold(0u32, |acc, &x| acc * 10 + u32::from(x))
    };
    let brand = match d.len() {
        13 | 19 => d[0] == 4,
        15 => matches!(prefix(2), 34 | 37),
        16 => {
            d[0] == 4
                || (51..=55).contains(&prefix(2))
                || (2221..=2720).contains(&prefix(4))
                || prefix(4) == 6011
                || prefix(2) == 65
        }
        _ => false,
    };
    brand && luhn(&d)
}

/// The Luhn checksum of `digits` holds.
fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// An IBAN: 15 to 34 characters whose mod-97 checksum (ISO 13616) holds.
fn iban(text: &[u8], _: &InspectConfig) -> bool {
    let compact: Vec<u8> = text.iter().copied().filter(|b| *b != b' ').collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let (head, rest) = compact.split_at(4);
    let mut remainder = 0u32;
    for &b in rest.iter().chain(head) {
        let value = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        remainder = if value > 9 {
            (remainder * 100 + value) % 97
        } else {
            (remainder * 10 + value) % 97
        };
    }
    remainder == 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::scan::find;

    fn find_all(body: &[u8]) -> Vec<(&'static str, usize)> {
        find(body, &InspectConfig::default())
    }

    fn names(body: &str) -> Vec<&'static str> {
        find_all(body.as_bytes())
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    }

    #[test]
    fn each_credential_format_is_found_where_it_starts() {
        let samples = [
            ("aws_access_key", "AKIAIOSFODNN7EXAMPLE".to_owned()),
            ("gcp_api_key", format!("AIza{}", "Sy3kQ9_x-".repeat(4)[..35].to_owned())),
            ("azure_storage_key", format!("AccountKey={}==", "a".repeat(86))),
            ("github_token", format!("ghp_{}", "A1b2C3d4E5".repeat(4)[..36].to_owned())),
            ("github_token", format!("github_pat_{}", "x".repeat(82))),
            ("gitlab_token", "glpat-abcdefghij0123456789".to_owned()),
            ("slack_token", "xoxb-1234567890-abcdefghijKLMN".to_owned()),
            (
                "slack_token",
                "https://hooks.slack.com/services/T0ABCDEFG/B0ABCDEFG/abcdefghijklmnopqrstuvwx"
                    .to_owned(),
            ),
            (
                "telegram_bot_token",
                format!("123456789:AA{}", "hB3_x-Kq9".repeat(4)[..33].to_owned()),
            ),
            ("stripe_key", format!("sk_live_{}", "4eC39HqLyjWDarjtT1zdp7dc")),
            ("anthropic_key", format!("sk-ant-api03-{}", "Ab9_".repeat(25))),
            ("openai_key", format!("sk-proj-{}", "Zx8-".repeat(12))),
            (
                "openai_key",
                format!("sk-{}T3BlbkFJ{}", "a".repeat(20), "b".repeat(20)),
            ),
            (
                "jwt",
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
                    .to_owned(),
            ),
            ("payment_card", "4111 1111 1111 1111".to_owned()),
            ("payment_card", "5555-5555-5555-4444".to_owned()),
            ("payment_card", "378282246310005".to_owned()),
            ("iban", "GB82 WEST 1234 5698 7654 32".to_owned()),
            ("iban", "DE89370400440532013000".to_owned()),
        ];
        for (detector, secret) in samples {
            let body = format!(r#"{{"content":"please use {secret} for this"}}"#);
            let found = find_all(body.as_bytes());
            let at = body.find(&secret).unwrap();
            assert!(
                found.contains(&(detector, at)),
                "{detector} at {at} in {body}: {found:?}"
            );
        }
    }

    #[test]
    fn a_bot_or_webhook_token_in_a_url_path_is_found_where_the_token_starts() {
        let token = format!("123456789:AA{}", "hB3_x-Kq9".repeat(4)[..33].to_owned());
        let url = format!("https://api.telegram.org/bot{token}/sendMessage");
        assert_eq!(
            find_all(url.as_bytes()),
            vec![("telegram_bot_token", url.find(&token).unwrap())]
        );
        let token = "Zk9-_aB3".repeat(9)[..68].to_owned();
        for host in ["discord.com", "discordapp.com", "canary.discord.com"] {
            let url = format!("https://{host}/api/webhooks/112233445566778899/{token}");
            assert_eq!(
                find_all(url.as_bytes()),
                vec![("discord_webhook", url.find(&token).unwrap())],
                "{url}"
            );
        }
    }

    #[test]
    fn ordinary_code_and_prose_find_nothing() {
        let samples = [
            include_str!("mod.rs"),
            include_str!("../policy/annotations.rs"),
            "Order 1234 5678 9012 3456 shipped on 2026-12-04; call the front desk.",
            "The build took 1733300000123 ms; see ticket ABCD-1234 and commit 4707c1f.",
            "sk_test_4eC39HqLyjWDarjtT1zdp7dc is Stripe's documented test key",
            "AKIA is the prefix AWS uses; GB82 is not an IBAN on its own.",
            "4111 1111 1111 1112 fails the checksum; DE89370400440532013001 too.",
        ];
        for sample in samples {
            assert_eq!(names(sample), Vec::<&str>::new(), "{sample:.80}");
        }
    }

    #[test]
    fn checksums_hold_for_known_numbers_only() {
        assert!(luhn(&digits(b"4111111111111111")));
        assert!(!luhn(&digits(b"4111111111111112")));
        let c = InspectConfig::default();
        assert!(card(b"6011111111111117", &c));
        assert!(!card(b"1234567812345670", &c), "no brand starts with 1");
        assert!(iban(b"FR1420041010050500013M02606", &c));
        assert!(!iban(b"FR1420041010050500013M02607", &c));
    }
}
