//! The Helm chart (`charts/warden`) as tests see it: rendered by `tests/helm/chart.py`
//! (helm-python-sdk, kubernetes-validate) into manifests, and a rendered Warden configuration
//! laid out on disk as the pod would see it, so the real `warden` can check and serve it.

use anyhow::{Context, bail};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tempfile::TempDir;
use tokio::process::Command;

use crate::paths;
use crate::warden::run_bounded;

/// The release name the script renders with (object names start with `gw-warden`).
pub const FULLNAME: &str = "gw-warden";

/// `tests/helm/<rest>`.
pub fn helm_dir(rest: &str) -> PathBuf {
    paths::tests_dir().join("helm").join(rest)
}

/// Runs `tests/helm/chart.py` with `args`, bounded; its JSON answer is written to a file the
/// script is given first.
async fn chart_py(args: &[&str], files: &[PathBuf]) -> anyhow::Result<(Value, String)> {
    let python = paths::venv_python();
    if !python.is_file() {
        bail!(
            "{} not found: run the tests through tests/run",
            python.display()
        );
    }
    let out = tempfile::NamedTempFile::new()?;
    let mut cmd = Command::new(python);
    cmd.arg(helm_dir("chart.py"))
        .args(args)
        .arg(out.path())
        .args(files);
    // The whole matrix (16 values files, each linted and validated against five Kubernetes
    // versions) takes about 45 s alone and twice that beside the rest of the suite.
    let output = run_bounded(cmd, Duration::from_secs(240)).await?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        bail!("chart.py {args:?} failed ({}):\n{stderr}", output.status);
    }
    let answer = std::fs::read_to_string(out.path())?;
    Ok((serde_json::from_str(&answer)?, stderr))
}

/// The chart rendered with each of `tests/helm/values/<case>.yaml`, linted and validated.
#[derive(Debug)]
pub struct Rendered {
    /// The Kubernetes versions every manifest was validated against.
    pub kubernetes_versions: Vec<String>,
    /// case → its manifests.
    pub cases: BTreeMap<String, Case>,
}

/// One values file's manifests and NOTES.txt.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub manifests: Vec<Value>,
    pub notes: String,
    /// The rendered Warden configuration (the ConfigMap's `warden.yaml`), parsed.
    pub config: Value,
}

/// Lints, renders and validates the chart with the named values files (every one when empty).
pub async fn render(cases: &[&str]) -> anyhow::Result<Rendered> {
    let files: Vec<PathBuf> = if cases.is_empty() {
        every_values_file()?
    } else {
        cases
            .iter()
            .map(|c| helm_dir(&format!("values/{c}.yaml")))
            .collect()
    };
    let (answer, _) = chart_py(&["render"], &files).await?;
    let kubernetes_versions = answer["kubernetes_versions"]
        .as_array()
        .context("kubernetes_versions")?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    let mut out = BTreeMap::new();
    for (name, case) in answer["cases"].as_object().context("cases")? {
        let manifests = case["manifests"]
            .as_array()
            .context("manifests")?
            .iter()
            .map(|m| m["manifest"].clone())
            .collect();
        let notes = case["notes"].as_str().unwrap_or_default().to_owned();
        out.insert(
            name.clone(),
            Case {
                name: name.clone(),
                manifests,
                notes,
                config: case["config"].clone(),
            },
        );
    }
    Ok(Rendered {
        kubernetes_versions,
        cases: out,
    })
}

/// Renders one case.
pub async fn case(name: &str) -> Case {
    let rendered = render(&[name]).await.unwrap();
    rendered.cases[name].clone()
}

/// `tests/helm/values/*.yaml`, sorted.
pub fn every_values_file() -> anyhow::Result<Vec<PathBuf>> {
    yaml_files(&helm_dir("values"))
}

/// `*.yaml` in `dir`, sorted.
pub fn yaml_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    Ok(files)
}

/// What the chart answered each values file: file name → (refused, message).
pub async fn refusals(files: &[PathBuf]) -> anyhow::Result<BTreeMap<String, (bool, String)>> {
    let (answer, _) = chart_py(&["refuse"], files).await?;
    let mut out = BTreeMap::new();
    for (file, a) in answer.as_object().context("answers")? {
        out.insert(
            file.clone(),
            (
                a["refused"].as_bool().unwrap_or(false),
                a["message"].as_str().unwrap_or_default().to_owned(),
            ),
        );
    }
    Ok(out)
}

/// `tests/helm/chart.py reference --check docs/deploy.md`: (up to date, what it said).
pub async fn reference_is_current() -> anyhow::Result<(bool, String)> {
    let mut cmd = Command::new(paths::venv_python());
    cmd.arg(helm_dir("chart.py"))
        .arg("reference")
        .arg("--check")
        .arg(paths::repo_root().join("docs/deploy.md"));
    let output = run_bounded(cmd, Duration::from_secs(30)).await?;
    Ok((
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

impl Case {
    /// Every manifest of `kind`.
    pub fn all(&self, kind: &str) -> Vec<&Value> {
        self.manifests
            .iter()
            .filter(|m| m["kind"] == kind)
            .collect()
    }

    /// The manifest of `kind` named `name`.
    pub fn get(&self, kind: &str, name: &str) -> &Value {
        self.manifests
            .iter()
            .find(|m| m["kind"] == kind && m["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{}: no {kind} {name}", self.name))
    }

    /// The manifest of `kind` named `name`, if rendered.
    pub fn find(&self, kind: &str, name: &str) -> Option<&Value> {
        self.manifests
            .iter()
            .find(|m| m["kind"] == kind && m["metadata"]["name"] == name)
    }

    /// The gateway's Deployment or StatefulSet.
    pub fn workload(&self) -> &Value {
        self.manifests
            .iter()
            .find(|m| {
                (m["kind"] == "Deployment" || m["kind"] == "StatefulSet")
                    && m["metadata"]["name"] == FULLNAME
            })
            .unwrap_or_else(|| panic!("{}: no workload", self.name))
    }

    /// The gateway's pod spec.
    pub fn pod(&self) -> &Value {
        &self.workload()["spec"]["template"]["spec"]
    }

    /// The `warden` container.
    pub fn warden_container(&self) -> &Value {
        self.pod()["containers"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == "warden"))
            .unwrap_or_else(|| panic!("{}: no warden container", self.name))
    }

    /// The rendered Warden configuration (the ConfigMap's `warden.yaml`).
    pub fn warden_yaml(&self) -> String {
        self.get("ConfigMap", FULLNAME)["data"]["warden.yaml"]
            .as_str()
            .expect("warden.yaml")
            .to_owned()
    }
}

/// A rendered configuration laid out as the pod sees it, under a temporary root: the pod's
/// absolute paths (`/var/lib/warden`, `/etc/warden/…`) moved below it, the policies where the
/// chart puts them, a certificate in every mounted Secret, and a value for every environment
/// variable the configuration names.
#[derive(Debug)]
pub struct PodFiles {
    pub root: TempDir,
    pub config: PathBuf,
    pub env: Vec<(String, String)>,
}

impl PodFiles {
    /// Lays `case` out; `listen` replaces the chart's listen addresses (loopback ports for a
    /// real start), in the order proxy, admin.
    pub fn lay_out(case: &Case, listen: Option<(u16, u16)>) -> anyhow::Result<PodFiles> {
        let root = tempfile::tempdir()?;
        let base = root.path().display().to_string();
        let mut text = case
            .warden_yaml()
            .replace("/var/lib/warden", &format!("{base}/var/lib/warden"))
            .replace("/etc/warden/", &format!("{base}/etc/warden/"));
        if let Some((proxy, admin)) = listen {
            let ports = &case.warden_container()["ports"];
            for (name, port) in [("proxy", proxy), ("admin", admin)] {
                let pod_port = ports
                    .as_array()
                    .and_then(|p| p.iter().find(|p| p["name"] == name))
                    .and_then(|p| p["containerPort"].as_u64())
                    .context("container port")?;
                text = text.replace(&format!("0.0.0.0:{pod_port}"), &format!("127.0.0.1:{port}"));
            }
        }
        std::fs::create_dir_all(root.path().join("var/lib/warden"))?;
        let config = root.path().join("etc/warden/config/warden.yaml");
        std::fs::create_dir_all(config.parent().context("parent")?)?;
        std::fs::write(&config, &text)?;

        // Policies: the chart's ConfigMap, else what the image ships (Dockerfile), at the
        // directory the configuration names.
        let parsed = &case.config;
        let pod_policy_dir = parsed["policy"]["dir"].as_str().context("policy.dir")?;
        let policy_dir = root.path().join(pod_policy_dir.trim_start_matches('/'));
        std::fs::create_dir_all(&policy_dir)?;
        match case.find("ConfigMap", &format!("{FULLNAME}-policies")) {
            Some(map) => {
                for (file, text) in map["data"].as_object().context("policies data")? {
                    std::fs::write(policy_dir.join(file), text.as_str().unwrap_or_default())?;
                }
            }
            None => {
                for file in IMAGE_POLICIES {
                    std::fs::copy(
                        paths::repo_root().join("policies").join(file),
                        policy_dir.join(file),
                    )?;
                }
            }
        }

        // Every Secret volume the warden container mounts under /etc/warden gets a server
        // certificate and a CA.
        let pki = TestPki::new()?;
        let volumes = case.pod()["volumes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mounts = case.warden_container()["volumeMounts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for volume in volumes.iter().filter(|v| v.get("secret").is_some()) {
            let Some(mount) = mounts.iter().find(|m| m["name"] == volume["name"]) else {
                continue;
            };
            let path = mount["mountPath"].as_str().unwrap_or_default();
            let Some(rest) = path.strip_prefix("/etc/warden/") else {
                continue;
            };
            let dir = root.path().join("etc/warden").join(rest);
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("tls.crt"), &pki.cert)?;
            std::fs::write(dir.join("tls.key"), &pki.key)?;
            std::fs::write(dir.join("ca.crt"), &pki.ca)?;
        }

        let mut env = Vec::new();
        env_sources(parsed, &mut env);
        let env = env
            .into_iter()
            .map(|name| {
                let value = dummy_secret(&name, &pki);
                (name, value)
            })
            .collect();
        Ok(PodFiles { root, config, env })
    }

    /// `warden check --config <file>` with the environment; bounded.
    pub async fn check(&self) -> anyhow::Result<std::process::Output> {
        let mut cmd = self.command();
        cmd.arg("check").arg("--config").arg(&self.config);
        run_bounded(cmd, Duration::from_secs(60)).await
    }

    /// A `warden` command with this layout's environment, run from its root.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(paths::warden_bin());
        cmd.current_dir(self.root.path())
            .env_remove("RUST_LOG")
            .env_remove("WARDEN_CONFIG")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .kill_on_drop(true);
        cmd
    }
}

/// The policy files the image ships at /etc/warden/policies (the Dockerfile copies them).
pub const IMAGE_POLICIES: [&str; 2] = ["schema.cedarschema", "baseline.cedar"];

/// The names of every `{ env: NAME }` source in a configuration.
pub fn env_sources(config: &Value, out: &mut Vec<String>) {
    match config {
        Value::Object(map) => {
            if map.len() == 1
                && let Some(Value::String(name)) = map.get("env")
            {
                if !out.contains(name) {
                    out.push(name.clone());
                }
                return;
            }
            map.values().for_each(|v| env_sources(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| env_sources(v, out)),
        _ => {}
    }
}

/// A value of the right shape for the secret an environment variable holds.
fn dummy_secret(name: &str, pki: &TestPki) -> String {
    use base64::Engine;
    if name.contains("FACTOR") {
        base64::engine::general_purpose::STANDARD.encode([7u8; 32])
    } else if name.contains("SIGNING") {
        pki.ed25519.clone()
    } else if name == "WARDEN_REPLICA_ID" {
        // The pod's name, from the downward API.
        "warden-7d9f6c5b8-x2l4q".to_owned()
    } else if name.contains("WEBHOOK") {
        "https://hooks.slack.example/services/T0/B0/test".to_owned()
    } else if name.contains("STATE_URL") {
        "postgres://warden:secret@db.internal:5432/warden?sslmode=require".to_owned()
    } else {
        format!("test-secret-for-{}", name.to_lowercase())
    }
}

/// A CA, a certificate for `localhost` it signed, and an Ed25519 key, as PEM.
struct TestPki {
    ca: String,
    cert: String,
    key: String,
    ed25519: String,
}

impl TestPki {
    fn new() -> anyhow::Result<TestPki> {
        let ca_key = rcgen::KeyPair::generate()?;
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate()?;
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])?
            .signed_by(&key, &issuer)?;
        let ed25519 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
        Ok(TestPki {
            ca: ca_cert.pem(),
            cert: leaf.pem(),
            key: key.serialize_pem(),
            ed25519: ed25519.serialize_pem(),
        })
    }
}
