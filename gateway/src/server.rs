//! `warden serve`: assemble the gateway, listen, reload on change, shut down gracefully.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::audit::AuditLog;
use crate::audit::event::{AuditEvent, EventKind};
use crate::audit::signer::Signer;
use crate::config::Config;
use crate::listener::config::Listener;
use crate::listener::workers::{self, WorkerError};
use crate::listener::{self, ConnectionCap, ServerTls, shutdown_signal};
use crate::reload;
use crate::secrets::own;
use crate::shared::Shared;
use crate::snapshot::{Snapshot, SnapshotError};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::trace::Traces;

/// Why the gateway could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("cannot open the audit log in {dir}: {source}")]
    Audit {
        dir: PathBuf,
        source: crate::audit::AuditError,
    },
    #[error(transparent)]
    Workers(#[from] WorkerError),
    #[error("cannot load TLS for the {listener} listener: {source}")]
    Tls {
        listener: &'static str,
        source: crate::listener::TlsError,
    },
    #[error(
        "cannot listen on {addr} ({listener}): {source}; is another process using it? Change listen.{listener}"
    )]
    Bind {
        listener: &'static str,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("audit.signing: {0}")]
    AuditKey(String),
    #[error(transparent)]
    KeysChanged(crate::audit::last_keys::KeysChanged),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error("cannot load the MCP tool pins: {0}")]
    Pins(#[from] crate::pins::PinError),
    #[error("cannot set up SIEM shipping: {0}")]
    Siem(#[from] crate::siem::SetupError),
    #[error(transparent)]
    Traces(#[from] crate::telemetry::trace::TraceError),
    #[error("cannot set up approval notifications: {0}")]
    Approvals(String),
    #[error("cannot set up the approval console: {0}")]
    Console(#[from] crate::console::ConsoleSetupError),
    #[error("cannot load the approvals factor key: {0}")]
    FactorKey(#[from] crate::approval::sealed::SealError),
    #[error("cannot load the canary tokens: {0}")]
    Canaries(#[from] crate::canary::CanaryError),
    #[error(transparent)]
    Intercept(#[from] crate::egress::intercept::InterceptError),
}

/// Longest wait at shutdown for queued spans to reach the collector.
const TRACE_FLUSH_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// The audit directory for `config`.
pub fn audit_dir(config: &Config) -> PathBuf {
    config
        .audit
        .dir
        .clone()
        .unwrap_or_else(|| config.data_dir.join("audit"))
}

/// Runs the gateway until SIGTERM or SIGINT.
pub async fn serve(
    config: Config,
    config_path: Option<PathBuf>,
    accept_new_keys: bool,
) -> Result<(), ServeError> {
    crate::harden::no_core_dumps();
    crate::harden::failed_writes_do_not_kill();
    let open_files = listener::open_files::raise();
    let needed = listener::open_files::needed(
        &config.listen.max_connections,
        config.egress.listen.is_some(),
        config.console.oidc.is_some(),
    );
    if let Some(warning) = listener::open_files::shortfall(needed, open_files) {
        tracing::warn!("{warning}");
    }
    listener::install_crypto_provider();
    let proxy_tls = config
        .listen
        .tls
        .as_ref()
        .map(ServerTls::load)
        .transpose()
        .map_err(|source| ServeError::Tls {
            listener: "proxy",
            source,
        })?;
    let admin_tls = config
        .listen
        .admin_tls
        .as_ref()
        .map(ServerTls::load)
        .transpose()
        .map_err(|source| ServeError::Tls {
            listener: "admin",
            source,
        })?;
    let egress_tls = config
        .egress
        .tls
        .as_ref()
        .map(ServerTls::load)
        .transpose()
        .map_err(|source| ServeError::Tls {
            listener: "egress",
            source,
        })?;
    let listen = config.listen.clone();
    let upstream = config.upstream.clone();
    let workers = workers::count(config.runtime.worker_threads);
    // Before anything is dialled (the identity provider's keys, Vault): every address guard
    // classifies the declared internal networks as internal.
    crate::egress::internal_networks::set(&config.egress.internal_networks);
    // The signing keys' files as they are before this start makes any: a start refused for
    // its keys (below) removes those it made.
    let new_key_files = crate::keys::NewKeyFiles::note([
        crate::audit::signer::key_path(&config.audit.signing, &config.data_dir),
        crate::identity::issuer_key_path(&config.identity.warden_issuer, &config.data_dir),
    ]);
    // This gateway's own rollback floors are checked once the state store has said which
    // floors an operator reset (below).
    let mut snapshot =
        Snapshot::build_with(config, None, crate::snapshot::OwnFloors::Later).await?;
    // The audit key may be in Vault: the log opens once the snapshot's secret store exists.
    let signer = audit_signer(&snapshot).await?;
    let audit_dir = audit_dir(&snapshot.config);
    // The log read back once, to its last run's start: the keys it last named, compared with
    // this start's before anything is written, and the requests its last run left in flight.
    let back = crate::audit::read_back::read(&audit_dir).map_err(|source| ServeError::Audit {
        dir: audit_dir.clone(),
        source,
    })?;
    let new_keys = match keys_carry_on(&back.keys, &snapshot, &signer, &audit_dir, accept_new_keys)
    {
        Ok(new_keys) => new_keys,
        Err(changed) => {
            for (path, error) in new_key_files.remove() {
                tracing::warn!(path = %path.display(), %error, "cannot remove what this refused start created");
            }
            return Err(ServeError::KeysChanged(changed));
        }
    };
    // The state store, opened before the audit log writes anything: a store this Warden cannot
    // use (a newer schema, a database that does not answer) refuses the start with the disk as
    // it was, the key files it made removed.
    let store = match crate::state::Store::open(
        &snapshot.config.state,
        &snapshot.config.data_dir,
        snapshot.secrets.as_ref(),
    )
    .await
    {
        Ok(store) => store,
        Err(e) => {
            for (path, error) in new_key_files.remove() {
                tracing::warn!(path = %path.display(), %error, "cannot remove what this refused start created");
            }
            return Err(e.into());
        }
    };
    let token_key_id = snapshot
        .identity
        .token_issuer()
        .map(|issuer| issuer.key_id().to_owned());
    // Each SIEM sink's verified cursor tells retention what it acknowledged before its
    // shipper starts: a full log (or `delete_unshipped`) never waits for the shippers.
    let sinks = crate::siem::acknowledged_at_start(&snapshot.config.siem, &audit_dir, &signer);
    let audit =
        AuditLog::open_signed_read_back(&audit_dir, &snapshot.config.audit, signer, sinks, back)
            .map_err(|source| ServeError::Audit {
                dir: audit_dir.clone(),
                source,
            })?;
    snapshot.warn_of_unavailable_credentials();
    crate::mcp::sandbox::report(&snapshot.config.mcp);
    // What the local servers' processes of a Warden that did not stop cleanly left behind,
    // removed in the background: readiness does not wait for a huge tree.
    crate::mcp::sandbox::run_dir::sweep_all_in_background(
        snapshot
            .config
            .data_dir
            .join(crate::mcp::sandbox::SERVERS_DIR),
    );
    let policy_count = snapshot.policy.policy_count();
    let policy_version = std::sync::Arc::clone(snapshot.policy.version());
    let metrics = Metrics::new();
    let caps = listener::CapMetrics::new();
    metrics.register(caps.collectors());
    metrics.policy_loaded(snapshot.policy.version(), snapshot.policy.bundle_signed());
    metrics.register(audit.stats().collectors());
    metrics.register(store.health().collectors());
    // The audit log's shippers, on a thread of their own, reading the log from disk.
    let siem_metrics = crate::siem::metrics::SiemMetrics::new();
    metrics.register(siem_metrics.collectors());
    let shipper = crate::siem::Shipper::start(
        &snapshot.config.siem,
        &audit,
        &audit_dir,
        snapshot.secrets.clone(),
        siem_metrics,
    )
    .await?;
    // The floors an operator reset (`warden policy floor reset`): each not yet named in this
    // gateway's log is named now, and lifts this gateway's own floor at or below it.
    let resets =
        crate::policy::floor_reset::read(&snapshot.config.policy, store.bundle_floors().as_ref())
            .await
            .map_err(crate::snapshot::SnapshotError::Rollback)?;
    crate::policy::floor_reset::name_new(
        &snapshot.config.data_dir,
        &snapshot.config.policy,
        &resets,
        &audit,
    );
    snapshot.check_own_floors(&resets)?;
    // The fleet's rollback floors: a bundle signed before the newest any gateway sharing the
    // store loaded is refused here too (a store that does not answer refuses the start). The
    // floors are raised only once the rest of the start has succeeded, below.
    let admitted = crate::policy::fleet_floor::check(
        &snapshot.config.policy,
        &snapshot.policy,
        None,
        store.bundle_floors().as_ref(),
    )
    .await
    .map_err(crate::snapshot::SnapshotError::Rollback)?;
    // The factor key seals the console's secrets, keys what approvals bind of a request's
    // credentials and the digests of masked resource URIs in pins (every replica on a shared
    // store holds the same one).
    let sealer = crate::approval::sealed::sealer(
        &snapshot.config.approvals,
        &snapshot.config.data_dir,
        snapshot.secrets.as_ref(),
    )
    .await?;
    let uri_key = crate::pins::uri::UriKey::new(sealer.derive_key(crate::pins::uri::KEY_PURPOSE));
    // The tool pins in the store: MCP tool definitions are judged from memory, and approvals
    // made with `warden tools approve` arrive within `pins.refresh_interval`.
    let pins = std::sync::Arc::new(
        crate::pins::Pins::load(&snapshot.config.pins, store.pins(), uri_key).await?,
    );
    pins.spawn_refresh(audit.clone());
    // Canary tokens: every live one is looked for in what leaves; new ones arrive within
    // `canaries.refresh_interval`.
    let canaries =
        crate::canary::Canaries::start(&snapshot.config.canaries, store.canaries()).await?;
    metrics.register(canaries.collectors());
    let traces = Traces::start(
        snapshot.config.traces.as_ref(),
        snapshot.secrets.as_ref(),
        metrics.span_counters(),
    )
    .await?;
    let notify_metrics = crate::approval::notify::NotifyMetrics::new();
    metrics.register(notify_metrics.collectors());
    let notifier = crate::approval::notify::Notifier::from_config(
        &snapshot.config.approvals,
        snapshot.secrets.as_ref(),
        notify_metrics,
    )
    .await
    .map_err(|e| ServeError::Approvals(e.to_string()))?;
    let gate = std::sync::Arc::new(crate::approval::gate::Gate::new(
        &snapshot.config.approvals,
        store.approvals(),
        notifier,
        crate::approval::sealed::BindingKey::of(&sealer),
    ));
    metrics.register(gate.metrics().collectors());
    gate.metrics().keep_current(store.approvals());
    // Wrong-code counts past their window leave the store, whoever made them (console or
    // command line) and whether or not a right code followed.
    crate::approval::attempts::keep_tidy(store.clone());
    let console_config = snapshot.config.console.clone();
    let console_sealer = console_config.oidc.is_some().then_some(sealer);
    let start_floor_resets = snapshot.floor_resets.clone();
    let shared = Shared::new(snapshot, audit, metrics, Some(pins), traces);
    shared.set_bundle_floors(store.bundle_floors());
    shared.set_gate(gate);
    shared.set_canaries(canaries);
    // Quarantines in force, kept current from the store (NOTIFY on PostgreSQL).
    shared
        .quarantines
        .attach(
            store.quarantine(),
            shared
                .snapshot
                .load()
                .config
                .fleet
                .quarantine
                .refresh_interval,
        )
        .await?;
    // Revoked Warden agent tokens, kept current from the store the same way.
    shared
        .revocations
        .attach(
            store.revocations(),
            shared
                .snapshot
                .load()
                .config
                .identity
                .warden_issuer
                .refresh_interval,
        )
        .await?;
    // Budget spend, rate counts and session labels shared with the other replicas through
    // the store, on a tick.
    let snap = shared.snapshot.load_full();
    let weak = std::sync::Arc::downgrade(&shared);
    shared.budgets.attach(
        store.fleet(),
        snap.config.budgets.sync_interval,
        shared.audit.clone(),
        move || Some(weak.upgrade()?.snapshot.load().config.budgets.clone()),
    );
    shared
        .limits
        .attach(store.fleet(), snap.config.rate_limits.sync_interval);
    // The denies the quarantine trigger counts, the fleet's rather than each replica's.
    let weak = std::sync::Arc::downgrade(&shared);
    shared.quarantines.share_denies(
        store.fleet(),
        snap.config.fleet.quarantine.refresh_interval,
        move || {
            weak.upgrade()?
                .snapshot
                .load()
                .config
                .fleet
                .quarantine
                .triggers
                .denies
                .clone()
        },
    );
    let weak = std::sync::Arc::downgrade(&shared);
    shared.sessions.attach(
        store.fleet(),
        snap.config.sessions.sync_interval,
        move || Some(weak.upgrade()?.snapshot.load().config.sessions.clone()),
    );
    drop(snap);
    let console = match console_sealer {
        Some(sealer) => {
            let console = std::sync::Arc::new(
                crate::console::Console::new(shared.clone(), store.clone(), sealer).await?,
            );
            console.keep_tidy();
            Some(console)
        }
        None => None,
    };
    let console_tls = console_config
        .tls
        .as_ref()
        .map(ServerTls::load)
        .transpose()
        .map_err(|source| ServeError::Tls {
            listener: "console",
            source,
        })?;

    let proxy_listeners = workers::bind("listen.proxy", listen.proxy, workers)?;
    let egress_config = shared.snapshot.load().config.egress.clone();
    let interceptor = crate::egress::intercept::Interceptor::new(
        &egress_config.intercept,
        &shared.snapshot.load().config.data_dir,
    )?;
    let egress_listeners = egress_config
        .listen
        .map(|addr| workers::bind("egress.listen", addr, workers))
        .transpose()?;
    let admin_listener =
        TcpListener::bind(listen.admin)
            .await
            .map_err(|source| ServeError::Bind {
                listener: "admin",
                addr: listen.admin,
                source,
            })?;
    let console_listener = match &console {
        Some(_) => Some(
            TcpListener::bind(console_config.listen)
                .await
                .map_err(|source| ServeError::Bind {
                    listener: "console",
                    addr: console_config.listen,
                    source,
                })?,
        ),
        None => None,
    };
    let (stop, shutdown) = shutdown_signal();
    for tls in [&proxy_tls, &admin_tls, &console_tls, &egress_tls]
        .into_iter()
        .flatten()
    {
        tls.spawn_reloader(shutdown.clone().requested());
    }
    // This host's addresses (its interfaces', and what the listeners are bound to) are
    // internal to egress: an agent must not reach Warden's own listeners through it.
    let bound: Vec<_> = [Some(listen.proxy), Some(listen.admin), egress_config.listen]
        .into_iter()
        .chain([console.as_ref().map(|_| console_config.listen)])
        .flatten()
        .collect();
    crate::egress::this_host::watch(&bound, shutdown.clone().requested());
    reload::spawn(shared.clone(), config_path, shutdown.clone()).map_err(ServeError::Signals)?;
    // Everything that can refuse the start has passed: the bundles loaded become the floors,
    // the fleet's and this gateway's own, before the first request is served.
    admitted
        .raise(store.bundle_floors().as_ref())
        .await
        .map_err(crate::snapshot::SnapshotError::Rollback)?;
    shared.snapshot.load().remember_bundle();
    // MCP sessions left unused end (with their servers' processes) within a minute of their
    // idle timeout, even when no agent starts a new one.
    let sessions = shared.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            sessions.mcp.sweep();
        }
    });

    // Refusals of callers never identified, folded per source, are summed up once their
    // interval ends, even when no further refusal comes.
    let folded = shared.audit.clone();
    let every = shared.snapshot.load().config.audit.unauthenticated.interval;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(std::time::Duration::from_secs(1)));
        loop {
            tick.tick().await;
            folded.append_folded_due();
        }
    });

    let mut start = AuditEvent::now(EventKind::System);
    start.detail = Some(
        serde_json::json!({ "event": "start", "version": crate::build_info::VERSION, "commit": crate::build_info::COMMIT, "policies": policy_count, "policy_version": &*policy_version, "token_key_id": token_key_id }),
    );
    if let Some(changed) = new_keys
        && let Some(detail) = start.detail.as_mut()
    {
        detail["new_keys_accepted"] = serde_json::Value::String(changed);
    }
    if let Some(resets) = crate::policy::floor_reset::detail(&start_floor_resets)
        && let Some(detail) = start.detail.as_mut()
    {
        detail["floor_resets"] = resets;
    }
    shared.audit.append_detached(start);
    let proxy = workers::spawn(
        "warden-worker",
        proxy_listeners,
        proxy_tls.clone(),
        listener::HttpOptions::of(&listen, Listener::Proxy),
        &ConnectionCap::new("proxy", listen.max_connections.proxy, &caps),
        |_worker| crate::proxy::handler(&shared, &upstream),
        &shutdown,
        listen.shutdown_grace,
    )?;
    // Tunnels outlive their CONNECT's connection: the egress workers give them the shutdown
    // grace and wait for their outcome records before they stop.
    let tunnels = listener::Detached::default();
    let agent_tunnels = crate::proxy::egress::AgentTunnels::default();
    // Local MCP servers' processes with sandbox.network: egress are served as the egress
    // listener is, whether or not egress.listen is set.
    shared.set_local_egress(crate::proxy::egress::local::LocalParts {
        interceptor: interceptor.clone(),
        tunnels: tunnels.clone(),
        agent_tunnels: agent_tunnels.clone(),
        cap: ConnectionCap::new("mcp_egress", listen.max_connections.egress, &caps),
    });
    let egress = match egress_listeners {
        Some(listeners) => Some(workers::spawn(
            "warden-egress",
            listeners,
            egress_tls,
            // HTTP/2 clients open tunnels with CONNECT, and with extended CONNECT
            // (`:protocol connect-tcp`).
            listener::HttpOptions {
                extended_connect: true,
                detached: Some(tunnels.clone()),
                ..listener::HttpOptions::of(&listen, Listener::Egress)
            },
            &ConnectionCap::new("egress", listen.max_connections.egress, &caps),
            |_worker| {
                crate::proxy::egress::handler(
                    &shared,
                    &egress_config,
                    interceptor.clone(),
                    &tunnels,
                    &agent_tunnels,
                )
            },
            &shutdown,
            listen.shutdown_grace,
        )?),
        None => None,
    };
    if let Some(addr) = egress_config.listen {
        tracing::info!(egress = %addr, tls = egress_config.tls.is_some(), "egress proxy listening");
    }
    tracing::info!(proxy = %listen.proxy, admin = %listen.admin, tls = proxy_tls.is_some(), workers, policies = policy_count, policy_version = %policy_version, "warden listening");
    let admin_router = crate::admin::router(shared.clone());
    let admin = tokio::spawn(listener::serve_with(
        admin_listener,
        admin_tls,
        listener::HttpOptions::of(&listen, Listener::Admin),
        ConnectionCap::new("admin", listen.max_connections.admin, &caps),
        move |mut req: http::Request<hyper::body::Incoming>, conn| {
            let router = admin_router.clone();
            req.extensions_mut()
                .insert(crate::admin::caller::Peer(conn.peer.ip()));
            async move {
                use tower::ServiceExt;
                match router.oneshot(req.map(axum::body::Body::new)).await {
                    Ok(resp) => resp,
                    Err(never) => match never {},
                }
            }
        },
        shutdown.clone().requested(),
        listen.shutdown_grace,
    ));
    let console_task = console.zip(console_listener).map(|(console, listener)| {
        tracing::info!(console = %console_config.listen, url = %console.url, "approval console listening");
        let router = crate::console::router(console);
        tokio::spawn(listener::serve_with(
            listener,
            console_tls,
            listener::HttpOptions::of(&listen, Listener::Console),
            ConnectionCap::new("console", listen.max_connections.console, &caps),
            move |mut req: http::Request<hyper::body::Incoming>, conn| {
                let router = router.clone();
                req.extensions_mut()
                    .insert(crate::console::Peer(conn.peer));
                async move {
                    use tower::ServiceExt;
                    match router.oneshot(req.map(axum::body::Body::new)).await {
                        Ok(resp) => resp,
                        Err(never) => match never {},
                    }
                }
            },
            shutdown.requested(),
            listen.shutdown_grace,
        ))
    });
    shared.set_ready(true);

    wait_for_termination().await.map_err(ServeError::Signals)?;
    shared.set_ready(false);
    drain(listen.drain_delay)
        .await
        .map_err(ServeError::Signals)?;
    tracing::info!(grace = ?listen.shutdown_grace, "shutting down: finishing in-flight requests");
    // Nobody will wait for the approval of a server's request held now: withdrawn (recorded,
    // the server answered while its connection is up) before the listeners stop.
    shared.mcp.withdraw_held(listen.shutdown_grace).await;
    stop.trigger();
    // Local MCP servers' processes end with their sessions as the workers stop; their
    // directories are removed by a thread of their own, which the workers do not wait for.
    let reaper = crate::mcp::sandbox::run_dir::reaper();
    let processes = crate::mcp::local_processes();
    let (live, queued) = reaper.pending();
    if processes > 0 || live + queued > 0 {
        tracing::info!(
            processes,
            directories = live + queued,
            "stopping local MCP server processes and removing their directories"
        );
    }
    proxy.join().await;
    if let Some(egress) = egress {
        egress.join().await;
    }
    if let Err(e) = admin.await {
        tracing::error!(error = %e, "admin listener task failed");
    }
    if let Some(Err(e)) = match console_task {
        Some(task) => Some(task.await),
        None => None,
    } {
        tracing::error!(error = %e, "console listener task failed");
    }
    // Leases end with Warden: what it held from Vault is revoked, not left to expire.
    crate::vault::SecretStore::shutdown_all(std::time::Duration::from_secs(5)).await;
    // The spans of the last requests go out before Warden does (bounded: a collector that is
    // down does not hold up the exit).
    let traces = shared.traces.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || traces.shutdown(TRACE_FLUSH_WITHIN)).await {
        tracing::error!(error = %e, "trace export did not stop cleanly");
    }
    // Those a server sent while the listeners stopped, withdrawn at once, are recorded too.
    shared
        .mcp
        .withdraw_held(listen.shutdown_grace.min(std::time::Duration::from_secs(5)))
        .await;
    shared.mcp.drop_held_events();
    let mut stop = AuditEvent::now(EventKind::System);
    stop.detail = Some(serde_json::json!({ "event": "stop" }));
    shared.audit.append_detached(stop);
    if let Err(e) = shared.audit.close().await {
        tracing::error!(error = %e, "audit log did not close cleanly");
    }
    // What the log holds now, the stop record included, is shipped within the grace period;
    // anything left is shipped after the next start.
    if let Some(shipper) = shipper {
        shipper
            .stop(listen.shutdown_grace.min(std::time::Duration::from_secs(5)))
            .await;
    }
    // After the audit log is closed (its lock released: a new Warden may start): what the
    // reaper has not removed within its bound is left, locked until this process exits, for
    // the next start's sweep.
    let within = crate::mcp::sandbox::run_dir::FINISH_WITHIN;
    match tokio::task::spawn_blocking(move || reaper.finish(within)).await {
        Ok(finished) if finished.left > 0 => {
            tracing::info!(
                left = finished.left,
                ?within,
                "directories of local MCP server processes not yet removed are left for the next start to remove"
            );
        }
        Ok(_) => {}
        Err(e) => {
            tracing::error!(error = %e, "waiting for the removal of local MCP server processes' directories failed")
        }
    }
    tracing::info!("warden stopped");
    Ok(())
}

/// Whether this start's keys carry on from `last`, the ones the audit log in `dir` last named
/// (see `audit/last_keys.rs`): refused when they do not, unless `accept_new_keys`, when what
/// changed is returned for the start record.
fn keys_carry_on(
    last: &crate::audit::last_keys::LastKeys,
    snapshot: &Snapshot,
    signer: &Signer,
    dir: &Path,
    accept_new_keys: bool,
) -> Result<Option<String>, crate::audit::last_keys::KeysChanged> {
    use crate::audit::last_keys;
    let retired: Vec<&str> = signer.previous().iter().map(|k| &*k.kid).collect();
    let issuer = snapshot.identity.token_issuer();
    let keys = last_keys::StartKeys {
        audit: (signer.key_id(), retired),
        token: issuer.map(|issuer| (issuer.key_id(), issuer.retired_key_ids())),
    };
    match last_keys::check(last, &keys, dir) {
        Ok(()) => Ok(None),
        Err(changed) if accept_new_keys => {
            tracing::warn!("--accept-new-keys: {changed}");
            Ok(Some(changed.to_string()))
        }
        Err(changed) => Err(changed),
    }
}

/// The audit signing key of `audit.signing`: from its secret source, or its file (created at
/// first start).
async fn audit_signer(snapshot: &Snapshot) -> Result<Arc<Signer>, ServeError> {
    let config = &snapshot.config;
    let signing = &config.audit.signing;
    let pem = match &signing.key {
        Some(source) => Some((
            own::read(source, snapshot.secrets.as_ref(), "audit.signing.key")
                .await
                .map_err(|e| ServeError::AuditKey(e.to_string()))?,
            format!("audit.signing.key ({})", source.kind()),
        )),
        None => None,
    };
    let pem = pem
        .as_ref()
        .map(|(pem, origin)| (pem.as_str(), origin.as_str()));
    Signer::load(signing, &config.data_dir, pem)
        .map(Arc::new)
        .map_err(|e| ServeError::AuditKey(e.to_string()))
}

/// `listen.drain_delay`: serves on, not ready, for `delay` (a second signal ends it early),
/// so that load balancers polling `/readyz` stop sending before the listeners close.
async fn drain(delay: std::time::Duration) -> std::io::Result<()> {
    if delay.is_zero() {
        return Ok(());
    }
    tracing::info!(
        ?delay,
        "stopping: /readyz answers 503; serving on while load balancers stop sending (listen.drain_delay)"
    );
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        second = wait_for_termination() => {
            second?;
            tracing::info!("a second signal: the drain delay ends now");
        }
    }
    Ok(())
}

async fn wait_for_termination() -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
