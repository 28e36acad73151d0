//! `plughost run`: the host, its status server and control socket, the
//! events read from stdin or a file, and the end of it all (input ended or
//! a signal), with the summary.

use super::signals::{End, HostSignals};
use anyhow::Context as _;
use plughost::{Config, Entry, Escaped, Host, InstanceReport, input};
use std::io::BufReader;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

/// The async runtime's threads for blocking work, at most.
const BLOCKING_THREADS: usize = 64;

pub(crate) fn run(
    config_path: &Path,
    events: Option<&str>,
    signals: Option<HostSignals>,
) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    raise_descriptor_limit(&config);
    let reader: Option<(Box<dyn std::io::BufRead + Send>, Entry, String)> = match events {
        None => None,
        Some("-") => Some((
            Box::new(BufReader::new(std::io::stdin())),
            Entry::Stdin,
            "stdin".to_owned(),
        )),
        Some(path) => {
            let file = std::fs::File::open(path)
                .and_then(|file| match file.metadata()?.is_dir() {
                    true => Err(std::io::Error::from(std::io::ErrorKind::IsADirectory)),
                    false => Ok(file),
                })
                .with_context(|| format!("cannot read events file {path}"))?;
            Some((Box::new(BufReader::new(file)), Entry::File, path.to_owned()))
        }
    };
    let (end_tx, end_rx) = crossbeam_channel::bounded::<End>(2);
    let host_slot = Arc::new(OnceLock::new());
    let cancel = Arc::new(AtomicBool::new(false));
    if let Some(signals) = signals {
        signals
            .take(end_tx.clone(), host_slot.clone(), cancel.clone())
            .context("cannot start the signal thread")?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        // Blocking work (control commands, ingest, reload) gets this many
        // threads at most, whatever the load; more waits its turn.
        .max_blocking_threads(BLOCKING_THREADS)
        .thread_name("plughost-rt")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;

    let status = match &config.status {
        Some(status) => {
            let listener = runtime
                .block_on(plughost::status::bind(status))
                .with_context(|| format!("cannot listen on {} for [status]", status.address))?;
            Some((status.clone(), listener))
        }
        None => None,
    };
    let control = match &config.host.control_socket {
        Some(path) => Some((
            path.clone(),
            runtime
                .block_on(plughost::control::bind(path))
                .with_context(|| format!("cannot listen on control socket {}", path.display()))?,
        )),
        None => None,
    };
    let control_path = config.host.control_socket.clone();
    let forget_socket = || {
        if let Some(path) = &control_path {
            let _ = std::fs::remove_file(path);
        }
    };
    // A SIGINT/SIGTERM from now on sets `cancel`: a start under way gives up
    // on the init it waits for, and stops what it had started.
    let host = match Host::start_cancellable(config, cancel) {
        Ok(host) => host,
        Err(plughost::StartError::Cancelled) => {
            forget_socket();
            let signal = match end_rx.try_recv() {
                Ok(End::Signal(signal)) => signal,
                _ => "a signal",
            };
            tracing::info!("{signal} during startup: the instances started so far were stopped");
            return Ok(ExitCode::SUCCESS);
        }
        Err(error) => {
            forget_socket();
            return Err(error.into());
        }
    };
    let _ = host_slot.set(host.clone());
    if let Some((path, listener)) = control {
        tracing::info!(
            "control socket listening on {}",
            Escaped(&path.display().to_string())
        );
        let host = host.clone();
        runtime.spawn(serve_control(host, listener));
    }
    if let Some((config, listener)) = status {
        let address = listener
            .local_addr()
            .map_or_else(|_| config.address.to_string(), |a| a.to_string());
        tracing::info!("status server listening on http://{address}");
        let host = host.clone();
        runtime.spawn(plughost::status::serve(host, config, listener));
    }
    tracing::info!("{} plugin instance(s) running", host.report().len());
    if let Some((reader, entry, name)) = reader {
        let host = host.clone();
        std::thread::Builder::new()
            .name("plughost:input".into())
            .spawn(move || {
                let _ = end_tx.send(End::Input(input::feed(&host, reader, entry, &name)));
            })
            .context("cannot start the input thread")?;
    }
    let mut failure = None;
    match end_rx.recv() {
        Ok(End::Input(Ok(summary))) => {
            tracing::info!(
                "end of input: {} event(s) published, {} line(s) skipped",
                summary.published,
                summary.skipped
            )
        }
        Ok(End::Input(Err(error))) => {
            let input = events.unwrap_or_default();
            let input = if input == "-" { "stdin" } else { input };
            failure = Some(format!(
                "cannot read events from {}: {error}",
                Escaped(input)
            ));
            host.close_intake();
            tracing::info!("reading events failed: draining queues and stopping plugins");
        }
        Ok(End::Signal(signal)) => {
            // Unavailable (status 503, no intake) before anyone is told so.
            host.close_intake();
            tracing::info!(
                "{signal}: draining queues and stopping plugins (send it again to exit at once)"
            );
        }
        Err(_) => {}
    }
    let report = host.shutdown();
    if let Some(path) = &host.config().host.control_socket {
        let _ = std::fs::remove_file(path);
    }
    print_summary(&report);
    for refused in host.refused() {
        out!(
            "refused: {} event(s) from {} ({})",
            refused.count,
            refused.entry,
            refused.reason
        );
    }
    match failure {
        Some(failure) => Err(anyhow::Error::msg(failure)),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// Descriptors the host needs besides its connections and plugins: the
/// binary's own files, logs, signal and event pipes, listening sockets.
const DESCRIPTOR_RESERVE: u64 = 64;

/// Raise the soft limit on open descriptors to the hard limit, as Go's
/// runtime does at start (the soft default of 1024 is a relic of
/// `select(2)`), and warn when the connection caps could still exhaust it:
/// a server out of descriptors accepts nobody, not even the operator.
fn raise_descriptor_limit(config: &Config) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if let (Some(soft), Some(hard)) = (limit.current, limit.maximum)
        && soft < hard
    {
        let raised = Rlimit {
            current: Some(hard),
            maximum: Some(hard),
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            limit = raised;
        }
    }
    let Some(available) = limit.current else {
        return;
    };
    let connections = config.status.as_ref().map_or(0, |s| s.max_connections)
        + config.host.control_max_connections;
    // A process-isolated instance holds a few pipe ends; a thread one, its library.
    let wanted = connections as u64 + 4 * config.plugins.len() as u64 + DESCRIPTOR_RESERVE;
    if wanted > available {
        tracing::warn!(
            "open descriptors are limited to {available} (ulimit -n), but [status] max_connections, \
             [host] control_max_connections and {} plugin instances may need {wanted}: \
             lower the caps or raise the limit, or a connection storm will leave none for the host",
            config.plugins.len()
        );
    }
}

/// Accept control connections while the host runs: a failed accept (no
/// descriptor left, ...) is retried, never the end of the socket. At most
/// `[host] control_max_connections` are served at once: one more is
/// answered with an error line and closed at once, never queued.
async fn serve_control(host: Host, listener: tokio::net::UnixListener) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    /// Counts a served connection for as long as it lives.
    struct Served(Arc<AtomicUsize>);
    impl Drop for Served {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::Relaxed);
        }
    }
    let open = Arc::new(AtomicUsize::new(0));
    let mut retry = plughost::listen::Retry::new("control socket");
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                retry.accepted();
                let max = host.config().host.control_max_connections;
                if open.fetch_add(1, Ordering::Relaxed) >= max {
                    open.fetch_sub(1, Ordering::Relaxed);
                    plughost::control::refuse(&stream, max);
                    continue;
                }
                let served = Served(open.clone());
                let host = host.clone();
                tokio::spawn(async move {
                    plughost::control::serve_connection(host, stream).await;
                    drop(served);
                });
            }
            Err(error) => retry.failed(&error).await,
        }
    }
}

pub(crate) fn print_summary(report: &[InstanceReport]) {
    let width = report
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(0)
        .max("instance".len());
    out!(
        "{:width$}  {:8}  {:>10}  {:>10}  {:>10}  {:>10}",
        "instance",
        "state",
        "received",
        "processed",
        "dropped",
        "failed"
    );
    for r in report {
        out!(
            "{:width$}  {:8}  {:>10}  {:>10}  {:>10}  {:>10}",
            r.name,
            r.state,
            r.counts.received,
            r.counts.processed,
            r.counts.dropped,
            r.counts.failed
        );
    }
    for r in report {
        if let Some(error) = &r.last_error {
            out!("{}: {}", Escaped(&r.name), Escaped(error));
        }
    }
}
