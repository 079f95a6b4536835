//! `pins:` configuration: how tool definitions are trusted, and the ones approved here.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

use crate::state::pins::Approver;

/// Default `pins.refresh_interval`: how often a running Warden reads approvals made by
/// `warden tools approve` (or another replica) from the state store.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(2);

/// How a tool definition Warden has not seen before is treated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PinMode {
    /// Trust on first use: the first definition seen is pinned; any later change is held
    /// until approved.
    #[default]
    Tofu,
    /// Only definitions approved here (`pins.approved`) or with `warden tools approve` are
    /// offered and callable.
    Approved,
}

impl PinMode {
    /// The mode as configured: `tofu` or `approved`.
    pub fn as_str(self) -> &'static str {
        match self {
            PinMode::Tofu => "tofu",
            PinMode::Approved => "approved",
        }
    }
}

/// `pins:` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PinsConfig {
    /// The mode of every MCP server without its own (`tofu` by default).
    pub mode: PinMode,
    /// Per-server settings, by the server's name.
    pub servers: BTreeMap<String, ServerPins>,
    /// Definitions approved in configuration: server, tool and the definition's digest (as
    /// `warden tools list` prints it).
    pub approved: Vec<ApprovedTool>,
    /// How often approvals made elsewhere are read from the state store.
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
}

impl Default for PinsConfig {
    fn default() -> Self {
        PinsConfig {
            mode: PinMode::Tofu,
            servers: BTreeMap::new(),
            approved: Vec::new(),
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
        }
    }
}

/// `pins.servers.<name>`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerPins {
    /// This server's mode, instead of `pins.mode`.
    pub mode: Option<PinMode>,
}

/// `pins.approved[]`: one definition approved in configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApprovedTool {
    /// The MCP server's name.
    pub server: String,
    /// The tool's name.
    pub tool: String,
    /// `sha256:<64 hex digits>`, the digest of the approved definition.
    pub digest: String,
}

impl PinsConfig {
    /// The mode of `server`.
    pub fn mode(&self, server: &str) -> PinMode {
        self.servers
            .get(server)
            .and_then(|s| s.mode)
            .unwrap_or(self.mode)
    }

    /// Whether the configuration approves this definition of `tool` on `server`.
    pub fn approves(&self, server: &str, tool: &str, digest: &str) -> bool {
        self.approved
            .iter()
            .any(|a| a.server == server && a.tool == tool && a.digest == digest)
    }

    /// Every mistake in the section, as `(key, message)`.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        for (i, approved) in self.approved.iter().enumerate() {
            if !is_digest(&approved.digest) {
                errors.push((
                    format!("pins.approved[{i}].digest"),
                    format!(
                        "{:?} is not a definition digest; copy it from `warden tools list` \
                         (sha256: followed by 64 lowercase hex digits)",
                        crate::text::Quoted::of(&approved.digest).as_str()
                    ),
                ));
            }
            for (key, value) in [("server", &approved.server), ("tool", &approved.tool)] {
                if value.is_empty() {
                    errors.push((
                        format!("pins.approved[{i}].{key}"),
                        "must not be empty".into(),
                    ));
                }
            }
        }
        if self.refresh_interval.is_zero() {
            errors.push((
                "pins.refresh_interval".into(),
                "must be longer than zero (e.g. 2s)".into(),
            ));
        }
        errors
    }
}

/// Whether an approval by `approver` counts for a server in `mode`; `approved_here`: the
/// configuration itself approves the definition. An operator's approval always counts; trust
/// on first use only in `tofu` mode; a configured approval only while the configuration says so.
pub fn approval_counts(mode: PinMode, approver: &Approver, approved_here: bool) -> bool {
    approved_here
        || match approver {
            Approver::Operator(_) => true,
            Approver::FirstUse => mode == PinMode::Tofu,
            Approver::Configuration => false,
        }
}

/// Whether `text` is a digest as Warden writes them: `sha256:` and 64 lowercase hex digits.
pub fn is_digest(text: &str) -> bool {
    text.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_of_its_own_mode_overrides_the_default() {
        let config: PinsConfig = serde_saphyr::from_str(
            "mode: tofu\nservers:\n  github: { mode: approved }\n  fs: {}\n",
        )
        .unwrap();
        assert_eq!(config.mode("github"), PinMode::Approved);
        assert_eq!(config.mode("fs"), PinMode::Tofu);
        assert_eq!(config.mode("other"), PinMode::Tofu);
    }

    #[test]
    fn a_bad_digest_in_the_file_is_reported_at_its_line() {
        let text = "data_dir: /tmp/w\npins:\n  mode: approved\n  approved:\n    - server: fs\n      tool: read_file\n      digest: sha256:abc\n";
        let errors = crate::config::load::parse(text, Some(std::path::Path::new("w.yaml")))
            .unwrap_err()
            .0;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].key, "pins.approved[0].digest");
        assert_eq!(errors[0].line, Some(7));
        let config: crate::config::Config =
            crate::config::load::parse("pins:\n  mode: approved\n  refresh_interval: 5s\n", None)
                .unwrap();
        assert_eq!(config.pins.mode, PinMode::Approved);
        assert_eq!(config.pins.refresh_interval, Duration::from_secs(5));
        assert!(crate::config::load::parse("pins:\n  mode: trusting\n", None).is_err());
    }

    #[test]
    fn approved_digests_must_be_what_warden_prints() {
        let good = format!("sha256:{}", "ab".repeat(32));
        let config = PinsConfig {
            approved: vec![
                ApprovedTool {
                    server: "fs".into(),
                    tool: "read_file".into(),
                    digest: good,
                },
                ApprovedTool {
                    server: "fs".into(),
                    tool: String::new(),
                    digest: "md5:abc".into(),
                },
            ],
            ..PinsConfig::default()
        };
        let errors = config.validate();
        let keys: Vec<&str> = errors.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["pins.approved[1].digest", "pins.approved[1].tool"]);
        assert!(errors[0].1.contains("warden tools list"), "{}", errors[0].1);
    }
}
