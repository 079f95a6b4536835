//! Applying configuration and policy changes: on SIGHUP and when the files change. A change
//! is built completely before it replaces the running set; an invalid one is refused with a
//! log line (and an audit record) and the running set stays.

use notify::{RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};

use crate::audit::event::{AuditEvent, EventKind};
use crate::config::Config;
use crate::config::load::load_file;
use crate::gateway::Gateway;
use crate::runtime::{Runtime, RuntimeError};

/// How long file events are gathered before one reload (editors write in several steps).
const DEBOUNCE: Duration = Duration::from_millis(250);

/// Starts the reload task: SIGHUP and changes to the config file or the policy directory.
pub fn spawn(
    gw: Arc<Gateway>,
    config_path: Option<PathBuf>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut hup = signal(SignalKind::hangup())?;
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let relevant = Arc::new(std::sync::Mutex::new(Relevant::new(
        config_path.as_deref(),
        &gw.runtime.load().config.policy.dir,
    )));
    let in_callback = relevant.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(e) = event
            && !e.kind.is_access()
            && in_callback.lock().is_ok_and(|r| r.matches(&e.paths))
        {
            let _ = tx.try_send(());
        }
    })
    .map_err(std::io::Error::other)?;
    let mut watched = watch_paths(
        &mut watcher,
        config_path.as_deref(),
        &gw.runtime.load().config.policy.dir,
    );
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = hup.recv() => tracing::info!("SIGHUP: reloading configuration and policies"),
                Some(()) = rx.recv() => {
                    tokio::time::sleep(DEBOUNCE).await;
                    while rx.try_recv().is_ok() {}
                    tracing::info!("configuration or policy files changed: reloading");
                }
                _ = shutdown.changed() => break,
            }
            if let Ok(policy_dir) = apply(&gw, config_path.as_deref()).await
                && policy_dir != watched
            {
                let _ = watcher.unwatch(&watched);
                watched = watch_paths(&mut watcher, config_path.as_deref(), &policy_dir);
                if let Ok(mut r) = relevant.lock() {
                    *r = Relevant::new(config_path.as_deref(), &policy_dir);
                }
            }
        }
        drop(watcher);
    });
    Ok(())
}

/// Which changed paths call for a reload: the config file itself (editors may replace it by
/// rename, so its directory is watched) and anything under the policy directory.
struct Relevant {
    config_file: Option<PathBuf>,
    policy_dir: PathBuf,
}

impl Relevant {
    fn new(config_path: Option<&Path>, policy_dir: &Path) -> Self {
        Relevant {
            config_file: config_path.map(absolute),
            policy_dir: absolute(policy_dir),
        }
    }

    fn matches(&self, paths: &[PathBuf]) -> bool {
        paths.iter().any(|p| {
            self.config_file.as_deref() == Some(p.as_path()) || p.starts_with(&self.policy_dir)
        })
    }
}

/// `path` made absolute and free of symlinks where possible.
fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

/// Watches the config file's directory (editors replace files by rename) and the policy dir.
fn watch_paths(
    watcher: &mut notify::RecommendedWatcher,
    config_path: Option<&Path>,
    policy_dir: &Path,
) -> PathBuf {
    if let Some(dir) = config_path.and_then(Path::parent).map(|d| {
        if d.as_os_str().is_empty() {
            Path::new(".")
        } else {
            d
        }
    }) && let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive)
    {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the configuration directory; reload with SIGHUP");
    }
    if let Err(e) = watcher.watch(policy_dir, RecursiveMode::Recursive) {
        tracing::warn!(dir = %policy_dir.display(), error = %e, "cannot watch the policy directory; reload with SIGHUP");
    }
    policy_dir.to_path_buf()
}

/// Builds a new runtime from the files and swaps it in. Returns the policy dir in effect.
pub async fn apply(gw: &Gateway, config_path: Option<&Path>) -> Result<PathBuf, RuntimeError> {
    let current = gw.runtime.load_full();
    let result = async {
        let mut config = match config_path {
            Some(path) => load_file(path)?,
            None => Config::default(),
        };
        keep_restart_only_settings(&current.config, &mut config);
        Runtime::build(config, Some(&current)).await
    }
    .await;
    let mut event = AuditEvent::now(EventKind::System);
    match result {
        Ok(runtime) => {
            let dir = runtime.config.policy.dir.clone();
            let policies = runtime.policy.policy_count();
            gw.runtime.store(Arc::new(runtime));
            gw.metrics.reloads.with_label_values(&["ok"]).inc();
            tracing::info!(policies, "reload applied");
            event.detail = Some(
                serde_json::json!({ "event": "reload", "result": "applied", "policies": policies }),
            );
            gw.audit.append_detached(event);
            Ok(dir)
        }
        Err(e) => {
            gw.metrics.reloads.with_label_values(&["error"]).inc();
            tracing::error!(error = %e, "reload refused; the running configuration and policies stay in effect");
            event.reasons = vec![e.to_string()];
            event.detail = Some(serde_json::json!({ "event": "reload", "result": "refused" }));
            gw.audit.append_detached(event);
            Err(e)
        }
    }
}

/// Settings bound at start (listeners, data and audit locations, upstream client) need a
/// restart; a reload keeps the running values and says so.
fn keep_restart_only_settings(running: &Config, new: &mut Config) {
    let mut changed = Vec::new();
    if new.listen != running.listen {
        changed.push("listen");
        new.listen = running.listen.clone();
    }
    if new.data_dir != running.data_dir {
        changed.push("data_dir");
        new.data_dir = running.data_dir.clone();
    }
    if new.audit.dir != running.audit.dir
        || new.audit.fsync != running.audit.fsync
        || new.audit.max_commit_delay != running.audit.max_commit_delay
    {
        changed.push("audit");
        new.audit = running.audit.clone();
    }
    if new.upstream != running.upstream {
        changed.push("upstream");
        new.upstream = running.upstream.clone();
    }
    if new.runtime != running.runtime {
        changed.push("runtime");
        new.runtime = running.runtime.clone();
    }
    if new.log.level != running.log.level || new.log.format != running.log.format {
        changed.push("log.level/log.format");
    }
    if !changed.is_empty() {
        tracing::warn!(sections = ?changed, "these settings changed but take effect only after a restart");
    }
}
