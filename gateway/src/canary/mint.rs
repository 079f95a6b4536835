//! Minting canary tokens that look real: an AWS access key pair in AWS's shape, an API token in
//! GitHub's personal-token shape, a URL on a host of the operator's below a name of its own, and
//! a document (Markdown) with a credential and a reference embedded. Each carries the strings
//! (its needles) whose appearance in traffic betrays it.

use rand::Rng;
use rand::rngs::OsRng;

use crate::state::canaries::CanaryRecord;
use crate::state::pins::now_ms;

/// What kind of canary to mint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// An AWS access key id and secret access key.
    AwsKey,
    /// An API token in a vendor's shape (a GitHub personal access token).
    ApiToken,
    /// A URL on `canaries.url_host`, below a host name of its own.
    Url,
    /// A Markdown document with an embedded credential and reference.
    Document,
}

impl Kind {
    /// The kind as stored and shown: `aws-key`, `api-token`, `url`, `document`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::AwsKey => "aws-key",
            Kind::ApiToken => "api-token",
            Kind::Url => "url",
            Kind::Document => "document",
        }
    }
}

/// Why a canary cannot be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error(
        "a URL canary needs a host: set canaries.url_host in the configuration or pass --host (a name you control, e.g. assets.acme-corp.com)"
    )]
    NoUrlHost,
    #[error("--host {0:?} is not a DNS host name (e.g. assets.acme-corp.com)")]
    BadHost(String),
}

/// A minted canary: its record (to store) and what the operator plants (printed or written).
#[derive(Debug, Clone)]
pub struct Minted {
    pub record: CanaryRecord,
    /// The credential lines, the URL, or the document's text.
    pub planted: String,
}

const UPPER_BASE32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const BASE62: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const LOWER_ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &[u8] = b"0123456789abcdef";

/// `n` characters drawn from `alphabet` by the operating system's generator.
fn pick(alphabet: &[u8], n: usize) -> String {
    (0..n)
        .map(|_| char::from(alphabet[OsRng.gen_range(0..alphabet.len())]))
        .collect()
}

/// Mints a canary of `kind`, labelled `label`; `host` is where URL canaries live.
pub fn mint(kind: Kind, label: &str, host: Option<&str>) -> Result<Minted, MintError> {
    let (needles, planted) = match kind {
        Kind::AwsKey => {
            let id = format!("AKIA{}", pick(UPPER_BASE32, 16));
            let secret = pick(BASE64, 40);
            let planted =
                format!("[default]\naws_access_key_id = {id}\naws_secret_access_key = {secret}\n");
            (vec![id, secret], planted)
        }
        Kind::ApiToken => {
            let token = format!("ghp_{}", pick(BASE62, 36));
            (vec![token.clone()], format!("{token}\n"))
        }
        Kind::Url => {
            let host = host.ok_or(MintError::NoUrlHost)?.to_ascii_lowercase();
            if !super::config::host_name(&host) {
                return Err(MintError::BadHost(host));
            }
            let name = format!("d{}.{host}", pick(LOWER_ALNUM, 13));
            let path = pick(LOWER_ALNUM, 20);
            let url = format!("https://{name}/assets/{path}/manifest.json");
            (vec![name, path], format!("{url}\n"))
        }
        Kind::Document => {
            let token = format!("hvs.{}", pick(BASE62, 24));
            let reference = format!("OPS-{}", pick(HEX, 16).to_ascii_uppercase());
            let planted = format!(
                "# Break-glass access: production\n\n\
                 Reference: {reference}\n\n\
                 Use only during a declared incident; the on-call lead approves.\n\n\
                 1. Export the token below as `VAULT_TOKEN`.\n\
                 2. `vault login -method=token` against https://vault.internal:8200.\n\
                 3. Revoke the token when the incident is closed.\n\n\
                 ```\nVAULT_TOKEN={token}\n```\n"
            );
            (vec![token, reference], planted)
        }
    };
    Ok(Minted {
        record: CanaryRecord {
            id: format!("cn_{}", pick(HEX, 16)),
            kind: kind.as_str().to_owned(),
            label: label.to_owned(),
            needles,
            created_ms: now_ms(),
            revoked_ms: None,
        },
        planted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::{InspectConfig, inspect};

    #[test]
    fn minted_credentials_have_their_vendors_shapes_and_differ_each_time() {
        let aws = mint(Kind::AwsKey, "ci", None).unwrap();
        let mut findings = crate::action::Findings::none();
        inspect(
            &mut findings,
            aws.planted.as_bytes(),
            None,
            &InspectConfig::default(),
        );
        assert!(
            findings.detectors().any(|d| d == "aws_access_key"),
            "{findings:?}"
        );
        assert_eq!(aws.record.needles[1].len(), 40);
        let token = mint(Kind::ApiToken, "ci", None).unwrap();
        let mut findings = crate::action::Findings::none();
        inspect(
            &mut findings,
            token.planted.as_bytes(),
            None,
            &InspectConfig::default(),
        );
        assert!(
            findings.detectors().any(|d| d == "github_token"),
            "{findings:?}"
        );
        assert_ne!(
            mint(Kind::ApiToken, "ci", None).unwrap().record.needles,
            token.record.needles
        );
        assert!(token.record.id.starts_with("cn_") && token.record.id.len() == 19);
    }

    #[test]
    fn url_canaries_live_below_the_host_and_documents_embed_their_marker() {
        let url = mint(Kind::Url, "wiki", Some("Assets.Acme-Corp.com")).unwrap();
        let name = &url.record.needles[0];
        assert!(name.ends_with(".assets.acme-corp.com"), "{name}");
        assert!(url.planted.starts_with(&format!("https://{name}/")));
        assert!(matches!(
            mint(Kind::Url, "wiki", None),
            Err(MintError::NoUrlHost)
        ));
        assert!(matches!(
            mint(Kind::Url, "wiki", Some("not a host")),
            Err(MintError::BadHost(_))
        ));
        let doc = mint(Kind::Document, "runbooks", None).unwrap();
        for needle in &doc.record.needles {
            assert!(doc.planted.contains(needle.as_str()));
        }
    }
}
