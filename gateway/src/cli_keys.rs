//! `warden keys …`: Warden's own Ed25519 keys as an operator handles them. `public` prints a
//! key's public half, what a rotation keeps in `previous_keys` and a verifier is given. Plain
//! `openssl pkey -pubout` does the same for the key files Warden writes now (PKCS#8 v1), but
//! OpenSSL 3.0 refuses those older versions wrote (PKCS#8 v2, the public key beside the private
//! one, RFC 5958) as "unsupported"; this reads both.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Print the public half (SPKI PEM, `BEGIN PUBLIC KEY`) of an Ed25519 key file: the
    /// agent-token key (`<data_dir>/keys/agent-signing.pem`), the audit key
    /// (`<data_dir>/keys/audit-signing.pem`) or a policy bundle key. Keep it before a rotation
    /// and name it in `identity.warden_issuer.previous_keys` or `audit.signing.previous_keys`;
    /// give it to `warden audit verify --key`. Its key id (the `kid` of the JWK Sets, the
    /// `key_id` of checkpoints) goes to standard error.
    Public {
        /// The key file: a private key (PKCS#8 PEM, as Warden or `openssl genpkey -algorithm
        /// ed25519` writes it) or a public one.
        key: PathBuf,
        /// Write the public key to this file instead of standard output (refused if it
        /// exists).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

pub fn keys(command: KeysCommand) -> Result<ExitCode> {
    let KeysCommand::Public { key, output } = command;
    let (pem, kid) = public_half(&key)?;
    match output {
        Some(path) => write_new(&path, &pem)?,
        None => print!("{pem}"),
    }
    eprintln!("warden: key id {kid}");
    Ok(ExitCode::SUCCESS)
}

/// The SPKI PEM of the Ed25519 key in `path`, and its key id (RFC 7638 thumbprint).
fn public_half(path: &Path) -> Result<(String, String)> {
    let public = warden::keys::public_from_file(path).map_err(|e| {
        anyhow::anyhow!(
            "{e}; give a key file Warden signs with (its keys/ directory, or the key_file the \
             configuration names) or one written by `openssl genpkey -algorithm ed25519`"
        )
    })?;
    let pem = warden::keys::public_pem(&public)?;
    Ok((pem, warden::keys::thumbprint(&public.to_bytes())))
}

/// Writes `text` to a new file at `path`; an existing file is left alone and refused.
fn write_new(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| {
            format!(
                "cannot create {} (an existing file is never overwritten)",
                path.display()
            )
        })?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key file as Warden writes it for its own keys.
    fn warden_key(dir: &Path) -> (PathBuf, ed25519_dalek::VerifyingKey) {
        let path = dir.join("keys").join("agent-signing.pem");
        let signing = warden::keys::load_or_create(&path, "test key").unwrap();
        (path, signing.verifying_key())
    }

    #[test]
    fn the_public_half_of_a_warden_key_file_is_an_spki_pem_with_its_key_id() {
        let dir = tempfile::tempdir().unwrap();
        let (path, public) = warden_key(dir.path());
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .contains("BEGIN PRIVATE KEY")
        );
        let (pem, kid) = public_half(&path).unwrap();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
        assert!(!pem.contains("PRIVATE"), "{pem}");
        use ed25519_dalek::pkcs8::DecodePublicKey;
        assert_eq!(
            ed25519_dalek::VerifyingKey::from_public_key_pem(&pem).unwrap(),
            public
        );
        assert_eq!(kid, warden::keys::thumbprint(&public.to_bytes()));
        // What previous_keys reads: the printed file is the same key.
        let kept = dir.path().join("kept.pub");
        write_new(&kept, &pem).unwrap();
        assert_eq!(warden::keys::public_from_file(&kept).unwrap(), public);
    }

    #[test]
    fn an_existing_output_file_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("old.pub");
        std::fs::write(&out, "kept").unwrap();
        let err = write_new(&out, "new").unwrap_err();
        assert!(format!("{err:#}").contains("never overwritten"), "{err:#}");
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "kept");
    }

    #[test]
    fn a_file_that_holds_no_key_is_named_with_what_to_give() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit-keys.json");
        std::fs::write(&path, r#"{"keys":[]}"#).unwrap();
        let err = format!("{:#}", public_half(&path).unwrap_err());
        assert!(err.contains("audit-keys.json"), "{err}");
        assert!(err.contains("openssl genpkey -algorithm ed25519"), "{err}");
    }
}
