//! `warden policy explain`, `warden policy bundle` and `warden policy keygen`: the policy
//! lifecycle's commands (the others, `validate`, `test`, `schema`, are in `main.rs`).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};

use warden::policy::{PolicyEngine, SchemaFragment, bundle, testing};

/// `warden policy explain DIR --principal P --action A --resource R [--context FILE]`.
pub fn explain(
    dir: &Path,
    fragments: &[SchemaFragment],
    principal: &str,
    action: &str,
    resource: &str,
    context: Option<&Path>,
) -> Result<ExitCode> {
    let engine = PolicyEngine::load_with(dir, fragments).map_err(|e| anyhow!("{e}"))?;
    let context = context
        .map(|path| {
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --context {}", path.display()))
        })
        .transpose()?;
    let action = testing::explain_action(&engine, principal, action, resource, context.as_deref())
        .map_err(|e| anyhow!("{e}"))?;
    print!("{}", engine.explain(&action));
    Ok(ExitCode::SUCCESS)
}

/// `warden policy bundle DIR --sign KEY`: checks that the set loads, then signs its manifest.
pub fn bundle(dir: &Path, key: &Path) -> Result<ExitCode> {
    let engine = PolicyEngine::load(dir).map_err(|e| anyhow!("{e}"))?;
    let pem = std::fs::read_to_string(key)
        .with_context(|| format!("cannot read the signing key {}", key.display()))?;
    let signing = warden::keys::from_pem(&pem, &key.display().to_string())?;
    let files = warden::policy::bundle_files(dir).map_err(|e| anyhow!("{e}"))?;
    let kid = bundle::sign(dir, &files, &signing)?;
    println!(
        "{}: {} files signed with key {kid}; policy set version {}",
        dir.display(),
        files.len(),
        engine.version()
    );
    Ok(ExitCode::SUCCESS)
}

/// `warden policy keygen KEY`: a new Ed25519 key pair for signing bundles.
pub fn keygen(key: &Path) -> Result<ExitCode> {
    if key.exists() {
        bail!("{} exists; choose another path or remove it", key.display());
    }
    let signing = warden::keys::load_or_create(key, "policy bundle signing key")?;
    let public = key.with_extension("pub");
    let pem = warden::keys::public_pem(&signing.verifying_key())?;
    std::fs::write(&public, pem).with_context(|| format!("cannot write {}", public.display()))?;
    println!(
        "private key: {} (keep it secret)\npublic key:  {} (list it in policy.bundle.public_keys)\nkey id: {}",
        key.display(),
        public.display(),
        warden::keys::thumbprint(&signing.verifying_key().to_bytes())
    );
    Ok(ExitCode::SUCCESS)
}
