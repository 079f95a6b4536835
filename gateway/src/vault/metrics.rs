//! Vault's metrics: whether it answers, what is held, reads, renewals, revocations and the
//! re-reads a reload makes. One
//! set per process (stores come and go with reloads); `/metrics` exports them.

use std::sync::LazyLock;

use prometheus::{IntCounterVec, IntGauge, Opts};

/// The Vault metrics.
pub struct VaultMetrics {
    /// 1 while Vault answers, 0 while it does not (or no `vault:` is configured).
    pub up: IntGauge,
    /// Secrets held in memory.
    pub held: IntGauge,
    /// Secret reads from Vault by kind (`kv`, `lease`) and result (`ok`, `error`).
    pub reads: IntCounterVec,
    /// Lease renewals by result (`ok`, `exhausted`: at its maximum TTL, `error`).
    pub renewals: IntCounterVec,
    /// Lease revocations by result (`ok`, `error`).
    pub revocations: IntCounterVec,
    /// KV secrets a reload read again, by result: `ok` (the latest version is held),
    /// `failed` (Vault refused it: dropped, its requests refused), `kept_stale` (Vault did
    /// not answer: the version held serves until it expires).
    pub reload_rereads: IntCounterVec,
}

impl VaultMetrics {
    /// The collectors, for a registry.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.up.clone()),
            Box::new(self.held.clone()),
            Box::new(self.reads.clone()),
            Box::new(self.renewals.clone()),
            Box::new(self.revocations.clone()),
            Box::new(self.reload_rereads.clone()),
        ]
    }
}

/// The process's Vault metrics.
pub static VAULT: LazyLock<VaultMetrics> = LazyLock::new(|| {
    // The names and labels are constants: these cannot fail.
    let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("valid gauge");
    let counter = |name: &str, help: &str, labels: &[&str]| {
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter")
    };
    VaultMetrics {
        up: gauge("warden_vault_up", "1 while Vault answers Warden's calls"),
        held: gauge(
            "warden_vault_secrets_held",
            "Secrets from Vault held in memory",
        ),
        reads: counter(
            "warden_vault_reads_total",
            "Secret reads from Vault by kind and result",
            &["kind", "result"],
        ),
        renewals: counter(
            "warden_vault_lease_renewals_total",
            "Lease renewals by result",
            &["result"],
        ),
        revocations: counter(
            "warden_vault_lease_revocations_total",
            "Lease revocations by result",
            &["result"],
        ),
        reload_rereads: counter(
            "warden_vault_reload_rereads_total",
            "KV secrets a reload read again from Vault, by result",
            &["result"],
        ),
    }
});
