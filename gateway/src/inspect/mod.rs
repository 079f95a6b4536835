//! Inspect: content checks on what a request sends out, before policy judges it. What they find
//! becomes `context.findings` (the detectors that matched) for Cedar and is recorded with the
//! decision (detector and location, never the content).
//!
//! Findings come from interpretation (identifiers that imitate others) and from the content
//! detectors here: `private_key`, a PEM private key block anywhere in the body
//! (`-----BEGIN … PRIVATE KEY-----`), which no agent has reason to send to a model, and the
//! credential and payment detectors of [`secrets`] (cloud and SaaS keys, JWTs, card numbers,
//! IBANs). The personal-data and canary detectors add theirs the same way.
//!
//! What comes back matters too: [`tool_description`] looks for hidden instructions in the tool
//! definitions an MCP server offers ("tool poisoning").

pub mod secrets;
pub mod tool_description;

use std::sync::Arc;

use memchr::memmem;

use crate::action::{Finding, Findings};

/// The opening of a PEM block.
const PEM_BEGIN: &[u8] = b"-----BEGIN ";
/// How a private key block's label ends (`RSA PRIVATE KEY`, `OPENSSH PRIVATE KEY`,
/// `ENCRYPTED PRIVATE KEY`, `PGP PRIVATE KEY BLOCK`).
const PRIVATE_KEY: &[u8] = b"PRIVATE KEY";
/// Longest PEM label looked at after `-----BEGIN `.
const LABEL_MAX: usize = 40;

/// Adds to `findings` (what interpretation reported) what the content of `body` shows.
pub fn inspect(findings: &mut Findings, body: &[u8]) {
    if let Some(at) = private_key(body) {
        findings.0.push(Finding {
            detector: Arc::from("private_key"),
            location: format!("body, byte {at}"),
        });
    }
    for (detector, at) in secrets::find(body) {
        findings.0.push(Finding {
            detector: Arc::from(detector),
            location: format!("body, byte {at}"),
        });
    }
}

/// Where the first PEM private key block starts in `body`, if there is one.
fn private_key(body: &[u8]) -> Option<usize> {
    memmem::find_iter(body, PEM_BEGIN).find(|&at| {
        let label = &body[at + PEM_BEGIN.len()..];
        let label = &label[..label.len().min(LABEL_MAX)];
        let end = memmem::find(label, b"-----").unwrap_or(label.len());
        memmem::find(&label[..end], PRIVATE_KEY).is_some()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(body: &str) -> Vec<String> {
        let mut findings = Findings::none();
        inspect(&mut findings, body.as_bytes());
        findings
            .0
            .iter()
            .map(|f| format!("{} at {}", f.detector, f.location))
            .collect()
    }

    #[test]
    fn a_private_key_in_a_prompt_is_found_where_it_starts() {
        let body = r#"{"messages":[{"role":"user","content":"deploy with -----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn...\n-----END OPENSSH PRIVATE KEY-----"}]}"#;
        let at = body.find("-----BEGIN").unwrap();
        assert_eq!(found(body), [format!("private_key at body, byte {at}")]);
        for label in [
            "RSA PRIVATE KEY",
            "EC PRIVATE KEY",
            "ENCRYPTED PRIVATE KEY",
            "PGP PRIVATE KEY BLOCK",
        ] {
            assert_eq!(
                found(&format!("x -----BEGIN {label}----- y")).len(),
                1,
                "{label}"
            );
        }
    }

    #[test]
    fn certificates_public_keys_and_prose_are_not_findings() {
        for body in [
            "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----",
            "-----BEGIN PUBLIC KEY-----",
            "keep your PRIVATE KEY safe; never paste -----BEGIN lines",
            "-----BEGIN ",
            "",
        ] {
            assert!(found(body).is_empty(), "{body}");
        }
    }
}
