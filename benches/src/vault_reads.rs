//! How often Warden read a secret from Vault, from its own `/metrics`: a credential served
//! from Warden's memory costs no read, so a handful over a run of many thousand requests
//! shows they were served from it.

use serde::Serialize;

/// A Warden's Vault reads around a measured window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct VaultReads {
    /// Reads during the measured window.
    pub in_window: u64,
    /// Reads from Warden's start to the window's end (the probe's and warm-up's included).
    pub since_start: u64,
    /// Requests answered in the window.
    pub requests: u64,
}

impl VaultReads {
    /// The reads from the counters at the window's start and end, for the `requests` answered
    /// in it; `None` when Warden reported no read by the end (no `vault:` section). Nothing at
    /// the start counts as no read yet.
    pub fn between(start: Option<u64>, end: Option<u64>, requests: u64) -> Option<VaultReads> {
        let end = end?;
        Some(VaultReads {
            in_window: end.saturating_sub(start.unwrap_or(0)),
            since_start: end,
            requests,
        })
    }
}

/// `warden_vault_reads_total` of a Prometheus text exposition, every kind and result added
/// up; `None` when it has none.
pub fn parse(text: &str) -> Option<u64> {
    let mut total = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        if name.split('{').next() != Some("warden_vault_reads_total") {
            continue;
        }
        // Counters are exported as floats; a read count is a whole number.
        if let Ok(value) = value.parse::<f64>()
            && value.is_finite()
            && value >= 0.0
        {
            *total.get_or_insert(0) += value as u64;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_up_every_kind_and_result() {
        let text = "\
# HELP warden_vault_reads_total Secret reads from Vault by kind and result
# TYPE warden_vault_reads_total counter
warden_vault_reads_total{kind=\"kv\",result=\"ok\"} 2
warden_vault_reads_total{kind=\"kv\",result=\"error\"} 1
warden_vault_reads_totally_other 7
";
        assert_eq!(parse(text), Some(3));
        assert_eq!(parse("warden_audit_records_total 20\n"), None);
    }

    #[test]
    fn the_window_is_the_difference_and_no_counter_is_no_vault() {
        let reads = VaultReads::between(Some(1), Some(3), 500);
        assert_eq!(
            reads,
            Some(VaultReads {
                in_window: 2,
                since_start: 3,
                requests: 500
            })
        );
        assert_eq!(
            VaultReads::between(None, Some(1), 500).map(|r| r.in_window),
            Some(1)
        );
        assert_eq!(VaultReads::between(None, None, 500), None);
    }
}
