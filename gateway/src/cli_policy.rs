//! `warden policy explain`, `warden policy replay`, `warden policy bundle` and `warden policy
//! keygen`: the policy lifecycle's commands (the others, `validate`, `test`, `schema`, are in
//! `main.rs`).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};

use warden::audit::read::{Filter, Reader};
use warden::policy::replay::{Change, ReplayReport};
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
    println!(
        "principal: {}::{:?}",
        action.principal.kind.cedar_type(),
        &*action.principal.id
    );
    print!("{}", engine.explain(&action));
    Ok(ExitCode::SUCCESS)
}

/// `warden policy explain DIR --decision ID --audit AUDIT`: the recorded decision `id`,
/// explained by the policies in `dir` from the facts its record carries.
pub fn explain_decision(
    dir: &Path,
    fragments: &[SchemaFragment],
    id: &str,
    audit: &Path,
) -> Result<ExitCode> {
    let engine = PolicyEngine::load_with(dir, fragments).map_err(|e| anyhow!("{e}"))?;
    let mut found = None;
    Reader::new(audit).each_new(|record| {
        if found.is_none()
            && record.value["kind"] == "decision"
            && record.value["decision_id"] == id
        {
            found = Some(record.value);
        }
    })?;
    let Some(record) = found else {
        bail!(
            "no decision record with decision_id {id} in {}; the id is in the refusal the agent \
             got (`decision_id`) and in `warden audit search` output",
            audit.display()
        );
    };
    let Some(facts) = record.get("facts") else {
        let why = record["facts_omitted"].as_str().unwrap_or(
            "it was written without them (audit.decision_facts: false, or before it existed)",
        );
        bail!("decision {id} cannot be explained: its record carries no facts: {why}");
    };
    let action = testing::recorded_action(&engine, facts)
        .map_err(|e| anyhow!("decision {id} cannot be judged by {}: {e}", dir.display()))?;
    let policies = record["policies"]
        .as_array()
        .map(|p| {
            p.iter()
                .filter_map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    println!(
        "recorded: {} by [{policies}] (policy set {}) at {}",
        record["decision"].as_str().unwrap_or("?"),
        record["policy_version"].as_str().unwrap_or("?"),
        record["time"].as_str().unwrap_or("?"),
    );
    print!("{}", engine.explain(&action));
    Ok(ExitCode::SUCCESS)
}

/// `warden policy replay --policies DIR --audit AUDIT [--since] [--until] [--fail-on C]`.
pub fn replay(
    dir: &Path,
    fragments: &[SchemaFragment],
    audit: &Path,
    window: &Filter,
    fail_on: &[String],
) -> Result<ExitCode> {
    let fail_on = fail_on
        .iter()
        .map(|name| match name.as_str() {
            "any" => Ok(Change::ALL.to_vec()),
            name => Change::ALL
                .into_iter()
                .find(|c| c.name() == name)
                .map(|c| vec![c])
                .ok_or_else(|| {
                    anyhow!(
                        "--fail-on {name}: write allow-to-deny, deny-to-allow, approval-added, \
                         approval-removed or any"
                    )
                }),
        })
        .collect::<Result<Vec<_>>>()?
        .concat();
    let engine = PolicyEngine::load_with(dir, fragments).map_err(|e| anyhow!("{e}"))?;
    if !audit.is_dir() {
        bail!("--audit {}: not a directory", audit.display());
    }
    let mut report = ReplayReport::default();
    Reader::new(audit).each_new(|record| {
        if window.keeps(&record) {
            report.add(&engine, &record.value);
        }
    })?;
    print!("{report}");
    let failing: Vec<&str> = fail_on
        .iter()
        .filter(|c| report.count(**c) > 0)
        .map(|c| c.name())
        .collect();
    if failing.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        println!("failing: {}", failing.join(", "));
        Ok(ExitCode::from(1))
    }
}

/// `warden policy bundle DIR --sign KEY`: checks that the set loads, then signs its manifest.
pub fn bundle(dir: &Path, key: &Path) -> Result<ExitCode> {
    let engine = PolicyEngine::load(dir).map_err(|e| anyhow!("{e}"))?;
    let pem = std::fs::read_to_string(key)
        .with_context(|| format!("cannot read the signing key {}", key.display()))?;
    let signing = warden::keys::from_pem(&pem, &key.display().to_string())?;
    let files = warden::policy::bundle_files(dir).map_err(|e| anyhow!("{e}"))?;
    let now = std::time::SystemTime::now();
    let kid = bundle::sign(dir, &files, &signing, now)?;
    println!(
        "{}: {} files signed with key {kid} at {}; policy set version {}",
        dir.display(),
        files.len(),
        humantime::format_rfc3339_nanos(now),
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
