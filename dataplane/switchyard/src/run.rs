//! `switchyard run`: build every component in order, report readiness, wait for a signal,
//! then drain with a deadline.

use anyhow::{Context, Result};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::config::Config;
use switchyard_core::telemetry::Telemetry;
use switchyard_shard::plan;

/// How long sinks get to drain their queues at shutdown (systemd's TimeoutStopSec is 30s).
const SINK_DRAIN_DEADLINE: Duration = Duration::from_secs(20);

/// How long stream workers get, after the sinks drained, to deliver what is durable in
/// their stream and commit.
const WORKER_DRAIN_DEADLINE: Duration = Duration::from_secs(8);

/// Logs to stderr (the journal under systemd), filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

fn notify(state: &[sd_notify::NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        if let Err(e) = sd_notify::notify(false, state) {
            tracing::warn!(error = %e, "sd_notify failed");
        }
    }
}

/// SIGHUP: re-reads the TLS certificates and keys in force (`[http] tls`, `[control] tls`);
/// one that fails to load keeps the previous pair (logged).
fn reload_tls(listeners: &[(&str, Option<&switchyard_tls::ServerTls>)]) {
    for (name, tls) in listeners {
        let Some(tls) = tls else { continue };
        match tls.reload() {
            Ok(()) => tracing::info!(
                listener = name,
                cert = %tls.cert_path().display(),
                "SIGHUP: TLS certificate reloaded"
            ),
            Err(e) => tracing::error!(
                listener = name,
                "SIGHUP: TLS certificate not reloaded, the previous one stays: {e}"
            ),
        }
    }
}

/// SIGHUP: re-reads the config file and applies its sinks and routes; a file that does not
/// load, or a change that cannot apply, changes nothing (logged).
fn reload_config(
    path: Option<&Path>,
    control: &switchyard_control::ControlState,
    sinks: &switchyard_sinks::SinkRuntime,
) {
    let Some(path) = path else {
        tracing::warn!("SIGHUP received, but the process runs the embedded default (no --config): nothing to reload");
        return;
    };
    let cfg = match crate::cli::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("SIGHUP: reload refused, nothing changed: {e}");
            return;
        }
    };
    match control.reload(&cfg, sinks) {
        Ok(r) => {
            tracing::info!(
                added = ?r.applied.sinks.added,
                changed = ?r.applied.sinks.changed,
                removed = ?r.applied.sinks.removed,
                routes = %r.applied.version,
                routes_from_file = r.applied.routes_from_file,
                "SIGHUP: configuration reloaded"
            );
            if !r.restart_needed.is_empty() {
                tracing::warn!(
                    sections = ?r.restart_needed,
                    "SIGHUP: these sections changed and take effect only after a restart"
                );
            }
        }
        Err(e) => tracing::error!("SIGHUP: reload refused, nothing changed: {e}"),
    }
}

/// Runs the appliance until SIGTERM or SIGINT; SIGHUP reloads sinks and routes from
/// `config_path`.
///
/// # Errors
/// Any component that fails to start, with what to change.
pub fn run(cfg: &Config, config_path: Option<&Path>) -> Result<()> {
    let plan = plan::plan(&cfg.shards, &plan::allowed_cpus(), plan::memlock_limit())?;
    tracing::info!(shards = plan.shards(), cpus = ?plan.cpus, io_memory = plan.io_memory, "planned shards");

    let shutdown = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, shutdown.clone()).context("installing signal handlers")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone())
        .context("installing the SIGHUP handler")?;

    let sinks = switchyard_sinks::spawn_sinks(cfg)
        .map_err(|(name, e)| anyhow::anyhow!("sink `{name}`: {e}"))?;
    // Workers read the streams the sinks write (the same log service in this process) and
    // deliver with sink instances of their own; their deliveries are counted per worker.
    // A spilling sink's spool is replayed by a hidden worker whose deliveries count in the
    // sink's own ledger (its spilled values come back as received).
    let spilling: Vec<&String> = cfg
        .sinks
        .iter()
        .filter(|(_, s)| s.spill)
        .map(|(n, _)| n)
        .collect();
    let probes = sinks.probes();
    let workers = switchyard_workers::spawn_workers(&cfg.with_spool_replays(), |name| {
        spilling
            .iter()
            .any(|n| n.as_str() == name)
            .then(|| {
                probes
                    .iter()
                    .find(|p| p.name == name)
                    .map(|p| p.stats.clone())
            })
            .flatten()
    })?;
    let telemetry = Arc::new(Telemetry::new(plan.shards()));
    let control_state =
        switchyard_control::ControlState::new(cfg, telemetry.clone(), sinks.slots())?;
    // The starting table (the persisted one while the file's routes are unchanged, else the
    // file's), compiled against the sink slots; the control plane and reloads swap later
    // tables into the same cell.
    let routes = switchyard_control::routes::startup_table(cfg, &sinks.slots().route_names())
        .map_err(|e| anyhow::anyhow!("routes: {e}"))?;
    let routes = Arc::new(switchyard_core::route::RoutesCell::new(
        Arc::new(routes),
        plan.shards(),
    ));
    let control_state = control_state.with_live_routes(routes.clone());
    control_state.workers.set(workers.probes());
    control_state.workers.set_leases(workers.leases());
    let ready = control_state.ready.clone();
    let control = switchyard_control::spawn(cfg.control_addr(), control_state.clone())?;
    let seed: u64 = rand::random();
    let dataplane = switchyard_shard::start(
        cfg,
        &plan,
        sinks.slots(),
        telemetry.clone(),
        shutdown.clone(),
        seed,
        routes,
    )?;
    let listeners: Vec<String> = cfg
        .listeners()
        .iter()
        .map(|l| l.address.to_string())
        .collect();
    ready.store(true, Ordering::Relaxed);
    tracing::info!(
        statsd = ?listeners,
        control = %control.addr,
        sinks = ?cfg.sink_names(),
        workers = cfg.workers.len(),
        "switchyard ready"
    );
    notify(&[sd_notify::NotifyState::Ready]);

    while !shutdown.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        if reload.swap(false, Ordering::Relaxed) {
            reload_tls(&[("http", dataplane.http_tls()), ("control", control.tls())]);
            reload_config(config_path, &control_state, &sinks);
        }
    }
    tracing::info!("shutting down: final flush, then draining sinks");
    ready.store(false, Ordering::Relaxed);
    notify(&[sd_notify::NotifyState::Stopping]);
    dataplane.join();
    if !sinks.shutdown(SINK_DRAIN_DEADLINE) {
        tracing::warn!(deadline = ?SINK_DRAIN_DEADLINE, "sinks did not drain before the deadline");
    }
    // The sinks wrote everything the shards sent: the workers deliver it from the streams.
    if !workers.shutdown(WORKER_DRAIN_DEADLINE) {
        tracing::warn!(deadline = ?WORKER_DRAIN_DEADLINE,
            "workers did not catch up before the deadline (the rest is delivered at the next start)");
    }
    control.stop();
    tracing::info!("stopped");
    Ok(())
}
