//! Applying configuration and policy changes: on SIGHUP and when the files change. A change
//! is built completely before it replaces the running set; an invalid one is refused with a
//! log line (and an audit record) and the running set stays.

use notify::{RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::audit::event::{AuditEvent, EventKind};
use crate::config::Config;
use crate::config::error::{ConfigError, ConfigErrors};
use crate::config::load::load_file;
use crate::config::validate::validate;
use crate::listener::Shutdown;
use crate::shared::Shared;
use crate::snapshot::{OwnFloors, Snapshot, SnapshotError};
use crate::upstream::breaker::BreakerConfig;

/// How long file events are gathered before one reload (editors write in several steps).
const DEBOUNCE: Duration = Duration::from_millis(250);

/// Starts the reload task: SIGHUP and changes to the config file or the policy directory.
pub fn spawn(
    shared: Arc<Shared>,
    config_path: Option<PathBuf>,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let mut hup = signal(SignalKind::hangup())?;
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let relevant = Arc::new(std::sync::Mutex::new(Relevant::new(
        config_path.as_deref(),
        &shared.snapshot.load().config.policy.dir,
    )));
    let in_callback = relevant.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(e) = event
            && !e.kind.is_access()
            && in_callback.lock().is_ok_and(|mut r| r.matches(&e.paths))
        {
            let _ = tx.try_send(());
        }
    })
    .map_err(std::io::Error::other)?;
    let mut watched = Watched::start(
        &mut watcher,
        config_path.as_deref(),
        &shared.snapshot.load().config.policy.dir,
    );
    tokio::spawn(async move {
        let stop = shutdown.requested();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = hup.recv() => tracing::info!("SIGHUP: reloading configuration and policies"),
                Some(()) = rx.recv() => {
                    tokio::time::sleep(DEBOUNCE).await;
                    while rx.try_recv().is_ok() {}
                    tracing::info!("configuration or policy files changed: reloading");
                }
                () = &mut stop => break,
            }
            let policy_dir = apply(&shared, config_path.as_deref())
                .await
                .unwrap_or_else(|_| watched.dir.clone());
            // A new policy directory, or the same path now leading elsewhere (a git-sync
            // `current` link swapped): watch what it is now.
            if policy_dir != watched.dir || resolved(&policy_dir) != watched.resolved {
                watched.stop(&mut watcher);
                watched = Watched::start(&mut watcher, config_path.as_deref(), &policy_dir);
                if let Ok(mut r) = relevant.lock() {
                    *r = Relevant::new(config_path.as_deref(), &policy_dir);
                }
            }
        }
        drop(watcher);
    });
    Ok(())
}

/// Which changed paths call for a reload: the config file (editors replace it by rename, and
/// a Kubernetes ConfigMap swaps a symlink beside it, so any change in its directory that
/// changes what the file resolves to counts) and anything under the policy directory.
struct Relevant {
    /// The config file as given, made absolute (symlinks kept: events name this path).
    config_file: Option<PathBuf>,
    /// What the config file was, last time it was looked at.
    config_stamp: Option<Stamp>,
    /// The policy directory as given (absolute) and with symlinks resolved.
    policy_dirs: [PathBuf; 2],
    /// Symlinks on the way to the policy directory: swapping one changes the directory.
    policy_links: Vec<PathBuf>,
}

/// What a path resolves to, and that file's identity and version.
#[derive(Debug, PartialEq, Eq)]
struct Stamp {
    target: PathBuf,
    inode: u64,
    len: u64,
    modified: Option<std::time::SystemTime>,
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let target = std::fs::canonicalize(path).ok()?;
        let meta = std::fs::metadata(&target).ok()?;
        Some(Stamp {
            target,
            inode: meta.ino(),
            len: meta.len(),
            modified: meta.modified().ok(),
        })
    }
}

impl Relevant {
    fn new(config_path: Option<&Path>, policy_dir: &Path) -> Self {
        let config_file = config_path.map(absolute);
        Relevant {
            config_stamp: config_file.as_deref().and_then(Stamp::of),
            config_file,
            policy_dirs: [absolute(policy_dir), resolved(policy_dir)],
            policy_links: links_to(policy_dir),
        }
    }

    fn matches(&mut self, paths: &[PathBuf]) -> bool {
        let mut relevant = false;
        for p in paths {
            if self.policy_dirs.iter().any(|d| p.starts_with(d)) || self.policy_links.contains(p) {
                relevant = true;
            }
            let Some(config) = &self.config_file else {
                continue;
            };
            let in_config_dir = p.parent().is_some_and(|d| Some(d) == config.parent());
            if p == config
                || self.config_stamp.as_ref().is_some_and(|s| *p == s.target)
                || in_config_dir
            {
                let stamp = Stamp::of(config);
                if p == config || stamp != self.config_stamp {
                    relevant = true;
                }
                self.config_stamp = stamp;
            }
        }
        relevant
    }
}

/// `path` made absolute, symlinks kept.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// `path` made absolute and free of symlinks where possible.
fn resolved(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| absolute(path))
}

/// The symlinks among `dir` and its ancestors (absolute paths): a git-sync `current` link, a
/// directory mounted through a link.
fn links_to(dir: &Path) -> Vec<PathBuf> {
    absolute(dir)
        .ancestors()
        .filter(|a| std::fs::symlink_metadata(a).is_ok_and(|m| m.file_type().is_symlink()))
        .map(Path::to_path_buf)
        .collect()
}

/// What is watched for a policy directory.
struct Watched {
    /// The policy directory as configured.
    dir: PathBuf,
    /// What it resolved to when the watch began: the inotify watch is on that directory.
    resolved: PathBuf,
    /// The directories holding the symlinks on the way to it.
    link_dirs: Vec<PathBuf>,
}

impl Watched {
    /// Watches the config file's directory (editors replace files by rename; ConfigMaps swap a
    /// symlink there), the policy directory, and the directory of each symlink on the way to
    /// it (git-sync swaps its `current` link there, which changes no file under the directory
    /// watched before), all by their absolute paths so that events name the paths
    /// [`Relevant`] compares.
    fn start(
        watcher: &mut notify::RecommendedWatcher,
        config_path: Option<&Path>,
        policy_dir: &Path,
    ) -> Watched {
        if let Some(dir) = config_path.map(absolute).as_deref().and_then(Path::parent)
            && let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive)
        {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the configuration directory; reload with SIGHUP");
        }
        let dir = absolute(policy_dir);
        if let Err(e) = watcher.watch(&dir, RecursiveMode::Recursive) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the policy directory; reload with SIGHUP");
        }
        let link_dirs: Vec<PathBuf> = links_to(policy_dir)
            .iter()
            .filter_map(|link| link.parent().map(Path::to_path_buf))
            .collect();
        for link_dir in &link_dirs {
            if let Err(e) = watcher.watch(link_dir, RecursiveMode::NonRecursive) {
                tracing::warn!(dir = %link_dir.display(), error = %e, "cannot watch the directory of a link to the policy directory; reload with SIGHUP");
            }
        }
        Watched {
            dir: policy_dir.to_path_buf(),
            resolved: resolved(policy_dir),
            link_dirs,
        }
    }

    /// Stops watching the policy directory and its links' directories (the config file's
    /// directory is watched again by the next [`Watched::start`]).
    fn stop(&self, watcher: &mut notify::RecommendedWatcher) {
        let _ = watcher.unwatch(&absolute(&self.dir));
        for link_dir in &self.link_dirs {
            let _ = watcher.unwatch(link_dir);
        }
    }
}

/// Builds a new snapshot from the files and swaps it in. Returns the policy dir in effect.
pub async fn apply(shared: &Shared, config_path: Option<&Path>) -> Result<PathBuf, SnapshotError> {
    let current = shared.snapshot.load_full();
    let result: Result<Snapshot, SnapshotError> = async {
        let mut config = match config_path {
            Some(path) => load_file(path)?,
            None => Config::default(),
        };
        keep_restart_only_settings(&current.config, &mut config);
        check_as_it_will_run(&config, config_path)?;
        // The floors an operator reset (`warden policy floor reset`): each not yet named in
        // this gateway's log is named now, and lifts this gateway's own floor at or below it.
        // A store that does not answer lifts nothing (the fleet's check below says so).
        let resets = match shared.bundle_floors() {
            Some(floors) => crate::policy::floor_reset::read(&config.policy, floors.as_ref())
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "cannot read the policy floor resets; this gateway's own floors hold");
                    Vec::new()
                }),
            None => Vec::new(),
        };
        crate::policy::floor_reset::name_new(
            &config.data_dir,
            &config.policy,
            &resets,
            &shared.audit,
        );
        let snapshot =
            Snapshot::build_with(config, Some(&current), OwnFloors::Lifted(&resets)).await?;
        // Every set is checked against the fleet's floors before any floor is raised, and
        // nothing after the raise can refuse the reload.
        if let Some(floors) = shared.bundle_floors() {
            let running = (&current.config.policy, &*current.policy);
            crate::policy::fleet_floor::check(
                &snapshot.config.policy,
                &snapshot.policy,
                Some(running),
                floors.as_ref(),
            )
            .await
            .map_err(SnapshotError::Rollback)?
            .raise(floors.as_ref())
            .await
            .map_err(SnapshotError::Rollback)?;
        }
        Ok(snapshot)
    }
    .await;
    let mut event = AuditEvent::now(EventKind::System);
    match result {
        Ok(snapshot) => {
            let dir = snapshot.config.policy.dir.clone();
            let policies = snapshot.policy.policy_count();
            let version = Arc::clone(snapshot.policy.version());
            let floor_resets = crate::policy::floor_reset::detail(&snapshot.floor_resets);
            shared
                .metrics
                .policy_loaded(&version, snapshot.policy.bundle_signed());
            if let Some(pins) = &shared.pins {
                pins.reconfigure(&snapshot.config.pins);
            }
            shared.breakers.reconfigure(breaker_settings(&snapshot));
            snapshot.warn_of_unavailable_credentials();
            // The same Vault store kept: what was rotated in Vault is read now, not at kv_ttl.
            if let (Some(kept), Some(running)) = (&snapshot.secrets, &current.secrets)
                && Arc::ptr_eq(kept, running)
            {
                kept.reread_latest_kv();
            }
            crate::mcp::sandbox::report(&snapshot.config.mcp);
            snapshot.remember_bundle();
            shared.snapshot.store(Arc::new(snapshot));
            // This host's addresses first: the tunnels judged again below see the current ones.
            let _ = tokio::task::spawn_blocking(crate::egress::this_host::refresh).await;
            crate::egress::internal_networks::set(
                &shared.snapshot.load().config.egress.internal_networks,
            );
            shared.reloads.send_modify(|applied| *applied += 1);
            shared.metrics.reloads.with_label_values(&["ok"]).inc();
            tracing::info!(policies, version = %version, "reload applied");
            event.detail = Some(serde_json::json!({
                "event": "reload",
                "result": "applied",
                "policies": policies,
                "policy_version": &*version,
            }));
            if let (Some(resets), Some(detail)) = (floor_resets, event.detail.as_mut()) {
                detail["floor_resets"] = resets;
            }
            shared.audit.append_detached(event);
            Ok(dir)
        }
        Err(e) => {
            shared.metrics.reloads.with_label_values(&["error"]).inc();
            tracing::error!(error = %e, "reload refused; the running configuration and policies stay in effect");
            event.reasons = vec![e.to_string()];
            event.detail = Some(serde_json::json!({ "event": "reload", "result": "refused" }));
            shared.audit.append_detached(event);
            Err(e)
        }
    }
}

/// The circuit breaker settings of every MCP server in `snapshot` (`mcp` is reloaded; the
/// routes' come from `upstream`, which takes a restart).
fn breaker_settings(snapshot: &Snapshot) -> impl Iterator<Item = (&str, &BreakerConfig)> {
    snapshot
        .routes
        .iter()
        .filter_map(|route| route.mcp.as_ref())
        .flat_map(|endpoint| &endpoint.servers)
        .map(|server| (&*server.upstream, &server.breaker))
}

/// Validates the configuration that will actually run: the new file with the running
/// restart-only settings put back. A change valid on its own can be unsafe with the running
/// listeners (authentication turned off while the proxy listens on a public address).
fn check_as_it_will_run(config: &Config, file: Option<&Path>) -> Result<(), ConfigErrors> {
    let errors = validate(config);
    if errors.is_empty() {
        return Ok(());
    }
    Err(ConfigErrors(
        errors
            .into_iter()
            .map(|(key, message)| ConfigError {
                file: file.map(Path::to_path_buf),
                line: None,
                key,
                message: format!("{message} (the running listeners stay until a restart)"),
            })
            .collect(),
    ))
}

/// Settings bound at start need a restart: the listeners, the data, audit and state store
/// locations, the tasks that read the store on a tick, the upstream client, the approval gate
/// and console, the SIEM shippers and traces. A reload keeps the running values, says which
/// keys changed, and returns them. Every other setting applies on reload (see
/// docs/operations.md, "Reloading").
fn keep_restart_only_settings(running: &Config, new: &mut Config) -> Vec<&'static str> {
    let mut kept = Kept::default();
    kept.keep("listen", &mut new.listen, &running.listen);
    kept.keep("data_dir", &mut new.data_dir, &running.data_dir);
    kept.keep("state", &mut new.state, &running.state);
    let (audit, was) = (&mut new.audit, &running.audit);
    kept.keep("audit.dir", &mut audit.dir, &was.dir);
    kept.keep("audit.durability", &mut audit.durability, &was.durability);
    kept.keep(
        "audit.flush_interval",
        &mut audit.flush_interval,
        &was.flush_interval,
    );
    kept.keep(
        "audit.segment_bytes",
        &mut audit.segment_bytes,
        &was.segment_bytes,
    );
    kept.keep(
        "audit.segment_max_age",
        &mut audit.segment_max_age,
        &was.segment_max_age,
    );
    kept.keep("audit.signing", &mut audit.signing, &was.signing);
    kept.keep("audit.retention", &mut audit.retention, &was.retention);
    kept.keep("audit.replica_id", &mut audit.replica_id, &was.replica_id);
    kept.keep("upstream", &mut new.upstream, &running.upstream);
    kept.keep("egress", &mut new.egress, &running.egress);
    kept.keep("runtime", &mut new.runtime, &running.runtime);
    kept.keep("siem", &mut new.siem, &running.siem);
    kept.keep("traces", &mut new.traces, &running.traces);
    kept.keep("approvals", &mut new.approvals, &running.approvals);
    kept.keep("console", &mut new.console, &running.console);
    let (canaries, was) = (&mut new.canaries, &running.canaries);
    kept.keep(
        "canaries.refresh_interval",
        &mut canaries.refresh_interval,
        &was.refresh_interval,
    );
    kept.keep("canaries.alert", &mut canaries.alert, &was.alert);
    kept.keep(
        "fleet.quarantine.refresh_interval",
        &mut new.fleet.quarantine.refresh_interval,
        &running.fleet.quarantine.refresh_interval,
    );
    kept.keep(
        "identity.warden_issuer.refresh_interval",
        &mut new.identity.warden_issuer.refresh_interval,
        &running.identity.warden_issuer.refresh_interval,
    );
    kept.keep(
        "rate_limits.sync_interval",
        &mut new.rate_limits.sync_interval,
        &running.rate_limits.sync_interval,
    );
    kept.keep(
        "budgets.sync_interval",
        &mut new.budgets.sync_interval,
        &running.budgets.sync_interval,
    );
    kept.keep(
        "sessions.sync_interval",
        &mut new.sessions.sync_interval,
        &running.sessions.sync_interval,
    );
    let mut changed = kept.0;
    if new.log.level != running.log.level || new.log.format != running.log.format {
        changed.push("log.level/log.format");
    }
    if !changed.is_empty() {
        tracing::warn!(settings = ?changed, "these settings changed but take effect only after a restart; the running values stay until then");
    }
    changed
}

/// The restart-only keys a reload changed, put back to their running values.
#[derive(Default)]
struct Kept(Vec<&'static str>);

impl Kept {
    fn keep<T: PartialEq + Clone>(&mut self, key: &'static str, new: &mut T, running: &T) {
        if new != running {
            self.0.push(key);
            *new = running.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public_with_auth() -> Config {
        let mut c = Config::default();
        c.listen.proxy = "0.0.0.0:8080".parse().unwrap();
        c.identity.required = true;
        c
    }

    #[test]
    fn reload_cannot_turn_authentication_off_on_a_public_listener() {
        let running = public_with_auth();
        // On its own the new file is fine: loopback, no authentication.
        let mut new = Config::default();
        new.identity.required = false;
        assert!(validate(&new).is_empty());

        keep_restart_only_settings(&running, &mut new);
        assert_eq!(new.listen.proxy, running.listen.proxy, "listeners stay");
        let errors = check_as_it_will_run(&new, Some(Path::new("/etc/warden.yaml")))
            .expect_err("the change would open the public listener to anyone");
        let text = errors.to_string();
        assert!(text.contains("/etc/warden.yaml"), "{text}");
        assert!(text.contains("listen.proxy"), "{text}");
        assert!(text.contains("identity.required"), "{text}");
    }

    #[test]
    fn reload_keeps_authentication_changes_that_stay_safe() {
        let running = public_with_auth();
        let mut new = public_with_auth();
        new.limits.max_request_bytes = 1024;
        keep_restart_only_settings(&running, &mut new);
        assert!(check_as_it_will_run(&new, None).is_ok());
    }

    #[test]
    fn reload_keeps_and_names_every_setting_that_applies_only_after_a_restart() {
        let running = Config::default();
        let cases = [
            ("state: { sqlite: other.db }", "state"),
            (
                "canaries: { refresh_interval: 7s }",
                "canaries.refresh_interval",
            ),
            (
                "canaries: { alert: { url: \"https://hooks.example.com/x\" } }",
                "canaries.alert",
            ),
            (
                "fleet: { quarantine: { refresh_interval: 7s } }",
                "fleet.quarantine.refresh_interval",
            ),
            (
                "rate_limits: { sync_interval: 7s }",
                "rate_limits.sync_interval",
            ),
            ("budgets: { sync_interval: 7s }", "budgets.sync_interval"),
            ("sessions: { sync_interval: 7s }", "sessions.sync_interval"),
            (
                "identity: { warden_issuer: { refresh_interval: 7s } }",
                "identity.warden_issuer.refresh_interval",
            ),
            ("audit: { retention: { max_age: 30d } }", "audit.retention"),
            ("audit: { segment_max_age: 7h }", "audit.segment_max_age"),
            (
                "audit: { signing: { checkpoint_records: 7 } }",
                "audit.signing",
            ),
            ("audit: { segment_bytes: 7777777 }", "audit.segment_bytes"),
            ("approvals: { wait_timeout: 7s }", "approvals"),
            ("console: { session_ttl: 2h }", "console"),
            ("listen: { proxy: \"127.0.0.1:9999\" }", "listen"),
        ];
        for (yaml, key) in cases {
            let mut new =
                crate::config::load::parse(yaml, None).unwrap_or_else(|e| panic!("{yaml}: {e}"));
            assert_ne!(new, running, "{yaml} changes something");
            let changed = keep_restart_only_settings(&running, &mut new);
            assert_eq!(changed, [key], "{yaml}");
            assert!(
                keep_restart_only_settings(&running, &mut new).is_empty(),
                "{yaml}: the running value stays"
            );
        }
    }

    #[test]
    fn reload_applies_audit_settings_read_per_request() {
        let running = Config::default();
        let mut new = crate::config::load::parse(
            "audit: { fail_closed: false, receipts: false, decision_facts: false }",
            None,
        )
        .unwrap();
        assert!(keep_restart_only_settings(&running, &mut new).is_empty());
        assert!(!new.audit.receipts && !new.audit.decision_facts && !new.audit.fail_closed);
    }

    #[test]
    fn configmap_symlink_swap_beside_the_config_file_is_relevant() {
        let dir = tempfile::tempdir().unwrap();
        let mount = dir.path().join("config");
        let policies = dir.path().join("policies");
        std::fs::create_dir_all(&policies).unwrap();
        let version = |n: u32, text: &str| {
            let d = mount.join(format!("..v{n}"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("warden.yaml"), text).unwrap();
            d
        };
        let v1 = version(1, "routes: []\n");
        std::os::unix::fs::symlink(&v1, mount.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/warden.yaml", mount.join("warden.yaml")).unwrap();
        let config = mount.join("warden.yaml");
        let mut relevant = Relevant::new(Some(&config), &policies);

        let unrelated = mount.join("notes.txt");
        std::fs::write(&unrelated, "x").unwrap();
        assert!(!relevant.matches(std::slice::from_ref(&unrelated)));

        let v2 = version(2, "routes: []\nlimits: { max_request_bytes: 10 }\n");
        std::os::unix::fs::symlink(&v2, mount.join("..tmp")).unwrap();
        std::fs::rename(mount.join("..tmp"), mount.join("..data")).unwrap();
        assert!(
            relevant.matches(&[mount.join("..data")]),
            "the swap changes the file"
        );
        assert!(
            !relevant.matches(&[mount.join("..data")]),
            "seen once, not again"
        );
        assert!(
            relevant.matches(std::slice::from_ref(&config)),
            "the file itself"
        );
        assert!(relevant.matches(&[policies.join("new.cedar")]));
    }
}
