//! `policy:` configuration.

use serde::Deserialize;
use std::path::PathBuf;

/// `policy:` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Directory holding `schema.cedarschema` and `*.cedar` policy files (subdirectories
    /// included; `tests/` is ignored when loading).
    pub dir: PathBuf,
    /// A candidate policy directory judged beside `dir` on live traffic without affecting
    /// decisions: where its decision differs, the decision record and
    /// `warden_shadow_differences_total` say so.
    pub shadow_dir: Option<PathBuf>,
    /// `policy.bundle`: signed policy bundles.
    pub bundle: BundleConfig,
}

/// `policy.bundle:` section.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BundleConfig {
    /// Ed25519 public keys (PEM files); when any is given, a policy directory loads only if
    /// its `bundle.manifest` is signed by one of them and lists exactly its files.
    pub public_keys: Vec<PathBuf>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            dir: PathBuf::from("policies"),
            shadow_dir: None,
            bundle: BundleConfig::default(),
        }
    }
}
