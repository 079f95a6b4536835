//! `inspect:` which content detectors run, and how the generic secret detector judges what it
//! sees.

use serde::Deserialize;

/// `inspect:` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct InspectConfig {
    /// Detectors that never run (their names as in `context.findings`: `email`, `phone`,
    /// `high_entropy_secret`, `payment_card`, ...). Canary tokens are always looked for.
    pub disabled: Vec<String>,
    /// The generic secret detector (`high_entropy_secret`).
    pub entropy: EntropyConfig,
    /// Plain-HTTP egress bodies larger than this many bytes are inspected as they stream to
    /// the origin (`inspect/stream.rs`) instead of being read whole first.
    pub stream_above: usize,
}

impl Default for InspectConfig {
    fn default() -> Self {
        InspectConfig {
            disabled: Vec::new(),
            entropy: EntropyConfig::default(),
            stream_above: 1024 * 1024,
        }
    }
}

/// `inspect.entropy:` what makes a value assigned to a key-like name a secret.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EntropyConfig {
    /// Least Shannon entropy, in bits per character, of the assigned value.
    pub threshold: f64,
    /// Fewest characters the assigned value has.
    pub min_length: usize,
}

impl Default for EntropyConfig {
    fn default() -> Self {
        EntropyConfig {
            threshold: 3.5,
            min_length: 20,
        }
    }
}

impl InspectConfig {
    /// Whether the detector named `name` runs.
    pub fn enabled(&self, name: &str) -> bool {
        !self.disabled.iter().any(|d| d == name)
    }

    /// `(key, message)` for every mistake; `known`: every detector's name.
    pub fn validate(&self, known: &[&str]) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        for (i, name) in self.disabled.iter().enumerate() {
            if name == "canary" {
                errors.push((
                    format!("inspect.disabled[{i}]"),
                    "canary tokens are always looked for; revoke a canary with `warden canary revoke` instead".to_owned(),
                ));
            } else if !known.contains(&name.as_str()) {
                errors.push((
                    format!("inspect.disabled[{i}]"),
                    format!(
                        "{name:?} is not a detector{}; expected one of: {}",
                        crate::config::suggest::did_you_mean(name, known.iter().copied()),
                        known.join(", ")
                    ),
                ));
            }
        }
        if !(1.0..=8.0).contains(&self.entropy.threshold) {
            errors.push((
                "inspect.entropy.threshold".to_owned(),
                format!(
                    "{} bits per character is outside 1.0 to 8.0 (random base64 has about 5.5, English words about 3)",
                    self.entropy.threshold
                ),
            ));
        }
        if !(64 * 1024..=1024 * 1024 * 1024).contains(&self.stream_above) {
            errors.push((
                "inspect.stream_above".to_owned(),
                format!(
                    "{} bytes is outside 65536 (64 KiB) to 1073741824 (1 GiB)",
                    self.stream_above
                ),
            ));
        }
        if !(8..=256).contains(&self.entropy.min_length) {
            errors.push((
                "inspect.entropy.min_length".to_owned(),
                format!("{} characters is outside 8 to 256", self.entropy.min_length),
            ));
        }
        errors
    }
}
