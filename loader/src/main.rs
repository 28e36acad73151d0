//! The `plughost` command: a thin layer over the `plughost` library.

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use plughost::control::{Command as CtlCommand, Instance};
use plughost::{Config, Entry, Escaped, Host, InstanceReport, input};
use std::io::{BufReader, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tracing_subscriber::EnvFilter;

/// Print one line of a command's output (`println!`'s arguments). A reader
/// that went away (`plughost discover DIR | head -1`) asked for no more: the
/// command ends at once, quietly, with status 0, as ripgrep does.
macro_rules! out {
    ($($arg:tt)*) => {
        print_line(format_args!($($arg)*))
    };
}

fn print_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write the output: {error}");
        std::process::exit(1);
    }
}

/// `plughost --version`: the release, and the plugin ABIs it speaks
/// (docs/compatibility.md).
static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{} (Rust plugin ABI {}.{}, C plugin ABI {}.{})",
        env!("CARGO_PKG_VERSION"),
        plughost_api::abi::ABI_MAJOR,
        plughost_api::abi::ABI_MINOR,
        plughost_ffi::PLUGHOST_ABI_MAJOR,
        plughost_ffi::PLUGHOST_ABI_MINOR
    )
});

#[derive(Parser)]
#[command(
    name = "plughost",
    version = VERSION.as_str(),
    about = "A host for native plugins written in Rust or C"
)]
struct Cli {
    /// Log format on stderr (filter with RUST_LOG).
    #[arg(long, value_enum, global = true, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the configured plugins until SIGINT/SIGTERM, or until the end of --events.
    Run {
        /// The config file.
        #[arg(default_value = "plugins.toml")]
        config: PathBuf,
        /// Also publish the JSON-lines events of FILE (or stdin for `-`); at
        /// the end of input, drain every queue, stop and exit.
        #[arg(long, value_name = "FILE|-")]
        events: Option<String>,
    },
    /// Validate the config and inspect every library; run no plugin.
    ///
    /// Each library is loaded in a process of its own, never in this one.
    /// Exits 1 when any plugin cannot be loaded or refuses its config.
    Check {
        /// The config file.
        #[arg(default_value = "plugins.toml")]
        config: PathBuf,
        /// How long one library may take to load before it counts as hanging.
        #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = inspect_timeout)]
        inspect_timeout: Duration,
    },
    /// Talk to a running host over its control socket.
    Ctl {
        /// The host's control socket (`[host] control_socket`).
        #[arg(long, default_value = "plughost.sock")]
        socket: PathBuf,
        /// Print the host's JSON answer instead of text.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        command: plughost::control::Command,
    },
    /// (internal) Serve one process-isolated instance on descriptor 3.
    #[command(name = "__child", hide = true)]
    Child {
        library: PathBuf,
        name: String,
        parent: u32,
        #[arg(long)]
        sha256: Option<String>,
        #[arg(long)]
        host_sha256: Option<String>,
        #[arg(long)]
        allow_insecure_permissions: bool,
        #[arg(long, default_value_t = plughost::config::limits::MAX_EVENT_BYTES.default as usize)]
        max_event_bytes: usize,
    },
    /// List the plugin libraries found in directories.
    ///
    /// Each library is loaded in a process of its own, never in this one; a
    /// file that is not a plugin is not loaded at all. Exits 1 when any file
    /// listed cannot be used (0 when every one is a compatible plugin).
    Discover {
        /// Directories to look in.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// How long one library may take to load before it counts as hanging.
        #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = inspect_timeout)]
        inspect_timeout: Duration,
    },
    /// (internal) Load one library and describe it on standard output.
    #[command(name = "__inspect", hide = true)]
    Inspect {
        library: PathBuf,
        parent: u32,
        #[arg(long)]
        sha256: Option<String>,
        #[arg(long)]
        allow_insecure_permissions: bool,
        #[arg(long)]
        thread_isolation: bool,
        #[arg(long)]
        check_config: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before any other thread exists, so that every thread inherits it.
    let signals = matches!(cli.command, Command::Run { .. }).then(HostSignals::block);
    if let Command::Child {
        library,
        name,
        parent,
        sha256,
        host_sha256,
        allow_insecure_permissions,
        max_event_bytes,
    } = &cli.command
    {
        let trust = plughost::Trust {
            sha256: sha256.clone(),
            allow_insecure_permissions: *allow_insecure_permissions,
            thread_isolation: false,
        };
        let code = plughost::process::child_main(
            library,
            name,
            *parent,
            &trust,
            host_sha256.as_deref(),
            *max_event_bytes,
        );
        return ExitCode::from(code as u8);
    }
    if let Command::Inspect {
        library,
        parent,
        sha256,
        allow_insecure_permissions,
        thread_isolation,
        check_config,
    } = &cli.command
    {
        let trust = plughost::Trust {
            sha256: sha256.clone(),
            allow_insecure_permissions: *allow_insecure_permissions,
            thread_isolation: *thread_isolation,
        };
        let code = plughost::inspect_child_main(library, *parent, &trust, *check_config);
        return ExitCode::from(code as u8);
    }
    init_logging(cli.log_format);
    let outcome = match cli.command {
        Command::Run { config, events } => run(&config, events.as_deref(), signals),
        Command::Check {
            config,
            inspect_timeout,
        } => check(&config, inspect_timeout),
        Command::Discover {
            dirs,
            inspect_timeout,
        } => discover(&dirs, inspect_timeout),
        Command::Ctl {
            socket,
            json,
            command,
        } => ctl(&socket, json, command),
        Command::Child { .. } | Command::Inspect { .. } => unreachable!("handled above"),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            // One line per problem (a config can have several).
            for line in format!("{error:#}").lines() {
                eprintln!("error: {line}");
            }
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The async runtime's threads for blocking work, at most.
const BLOCKING_THREADS: usize = 64;

enum End {
    Input(std::io::Result<input::InputSummary>),
    /// SIGTERM or SIGINT, by name.
    Signal(&'static str),
}

fn run(
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

/// SIGINT, SIGTERM and SIGHUP are blocked in every thread of the host (the
/// mask is set before any other thread starts, and threads inherit it) and
/// taken by one thread of their own with `sigwait`. So a thread-mode plugin
/// that installs a handler of its own for them (or ignores them) changes
/// nothing: a blocked signal is never delivered to a handler, and `sigwait`
/// takes it whatever its disposition.
///
/// A child inherits the mask of the thread that starts it. A child made by
/// `fork` (process-isolated plugins, `std::process::Command` with a
/// `pre_exec`, a C plugin's `fork`) gets the signals unblocked again by a
/// `pthread_atfork` handler; one made by `posix_spawn` (a plain
/// `Command::spawn`, `system`, `popen`) cannot be reached that way, and the
/// plugin guides say how to clear its mask.
struct HostSignals {
    set: libc::sigset_t,
}

impl HostSignals {
    const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

    /// The host's signals as a set.
    fn set() -> libc::sigset_t {
        // SAFETY: sigemptyset and sigaddset initialise and fill a set we own;
        // both are async-signal-safe (this also runs in a forked child).
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for signal in Self::SIGNALS {
                libc::sigaddset(&mut set, signal);
            }
            set
        }
    }

    /// Block the host's signals in the calling thread (and so in every
    /// thread it starts from now on), and unblock them in forked children.
    fn block() -> HostSignals {
        extern "C" fn unblock_in_child() {
            let set = HostSignals::set();
            // SAFETY: runs in a freshly forked child, on its only thread;
            // pthread_sigmask is async-signal-safe and changes only its mask.
            unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
        }
        let set = Self::set();
        // SAFETY: pthread_sigmask changes only the calling thread's mask;
        // pthread_atfork records a plain function to run in forked children.
        unsafe {
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            libc::pthread_atfork(None, None, Some(unblock_in_child));
        }
        HostSignals { set }
    }

    /// Take the signals on a thread of their own, for the life of the
    /// process. The first SIGINT/SIGTERM cancels a start under way (`cancel`)
    /// and ends the run (graceful shutdown); a second one exits at once.
    /// SIGHUP reloads the config once the host runs.
    fn take(
        self,
        end: crossbeam_channel::Sender<End>,
        host: Arc<OnceLock<Host>>,
        cancel: Arc<AtomicBool>,
    ) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name("plughost:signals".into())
            .spawn(move || {
                let mut stopping = false;
                loop {
                    let mut signal: libc::c_int = 0;
                    // SAFETY: sigwait reads the set we own and writes the
                    // signal's number into `signal`; every signal in the set
                    // is blocked in every thread.
                    let error = unsafe { libc::sigwait(&self.set, &mut signal) };
                    if error != 0 {
                        let error = std::io::Error::from_raw_os_error(error);
                        tracing::error!("cannot wait for signals any more: {error}");
                        return;
                    }
                    let name = match signal {
                        libc::SIGINT => "SIGINT",
                        libc::SIGTERM => "SIGTERM",
                        _ => {
                            reload_on_hangup(host.get());
                            continue;
                        }
                    };
                    if stopping {
                        eprintln!("error: second {name}: exiting at once without draining");
                        std::process::exit(1);
                    }
                    stopping = true;
                    cancel.store(true, Ordering::Release);
                    let _ = end.send(End::Signal(name));
                }
            })
            .map(drop)
    }
}

/// SIGHUP: reload the config, as `plughost ctl reload` does, on a thread of
/// its own (a reload can take a while; signals keep being taken meanwhile).
fn reload_on_hangup(host: Option<&Host>) {
    let Some(host) = host.cloned() else {
        tracing::warn!("SIGHUP during startup: ignored (nothing to reload yet)");
        return;
    };
    if host.is_shutting_down() {
        tracing::warn!("SIGHUP while shutting down: ignored");
        return;
    }
    tracing::info!("SIGHUP: reloading the config");
    let spawned = std::thread::Builder::new()
        .name("plughost:reload".into())
        .spawn(move || {
            if let Err(error) = host.reload() {
                tracing::error!(
                    "reload rejected, the running config stays: {}",
                    Escaped(&error)
                );
            }
        });
    if let Err(e) = spawned {
        tracing::error!("SIGHUP: cannot start a reload: {e}");
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

fn ctl(socket: &Path, json: bool, command: CtlCommand) -> anyhow::Result<ExitCode> {
    let request = serde_json::to_value(&command).context("cannot encode the command")?;
    let answer = plughost::control::request(socket, &request).map_err(anyhow::Error::msg)?;
    if json {
        out!("{answer}");
    }
    if answer["ok"] != true {
        let error = answer["error"]
            .as_str()
            .unwrap_or("the host refused the command");
        if !json {
            eprintln!("error: {error}");
        }
        return Ok(ExitCode::FAILURE);
    }
    if json {
        // The exit code says the same whatever the format: `ready` fails
        // when the host is not ready, as a probe expects.
        let not_ready =
            matches!(command, CtlCommand::Ready(_)) && answer["result"]["ready"] != true;
        return Ok(if not_ready {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    }
    let result = &answer["result"];
    match command {
        CtlCommand::List(_) => {
            let reports: Vec<InstanceReport> =
                serde_json::from_value(result.clone()).unwrap_or_default();
            print_summary(&reports);
        }
        CtlCommand::Status(_) => {
            for plugin in result["plugins"].as_array().into_iter().flatten() {
                out!("{}", Escaped(plugin["name"].as_str().unwrap_or("?")));
                for key in [
                    "state",
                    "library",
                    "language",
                    "isolation",
                    "restarts",
                    "received",
                    "processed",
                    "dropped",
                    "failed",
                    "queue_depth",
                    "queue_capacity",
                    "last_error",
                ] {
                    if !plugin[key].is_null() {
                        out!("  {key:<15} {}", plain(&plugin[key]));
                    }
                }
                if let Some(health) = plugin["health"].as_object() {
                    out!(
                        "  {:<15} {} {}",
                        "health",
                        plain(&health["status"]),
                        plain(&health["message"])
                    );
                }
            }
            out!("reloads: {}", result["reloads"]);
        }
        CtlCommand::Ready(_) => {
            out!(
                "{}",
                if result["ready"] == true {
                    "ready"
                } else {
                    "not ready"
                }
            );
            for plugin in result["plugins"].as_array().into_iter().flatten() {
                let ready = if plugin["ready"] == true {
                    "ready"
                } else {
                    "not ready"
                };
                out!(
                    "  {}: {ready} {}",
                    plain(&plugin["name"]),
                    plain(&plugin["message"])
                );
            }
            if result["ready"] != true {
                return Ok(ExitCode::FAILURE);
            }
        }
        CtlCommand::Publish(_) => out!(
            "published event {} on {}",
            result["id"],
            plain(&result["topic"])
        ),
        CtlCommand::Start(Instance { name }) => out!("started {name}"),
        CtlCommand::Stop(Instance { name }) => out!("stopped {name}"),
        CtlCommand::Restart(Instance { name }) => out!("restarted {name}"),
        CtlCommand::Reload(_) => {
            for key in [
                "added",
                "removed",
                "restarted",
                "unchanged",
                "restart_needed",
            ] {
                let names: Vec<String> = result[key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(plain)
                    .collect();
                // Said only when there is something to say: keys to restart for.
                if key == "restart_needed" && names.is_empty() {
                    continue;
                }
                out!(
                    "{key}: {}",
                    if names.is_empty() {
                        "-".to_owned()
                    } else {
                        names.join(", ")
                    }
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A JSON value as text, strings without quotes and with their control
/// characters escaped (names and messages come from plugins).
fn plain(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => Escaped(text).to_string(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn print_summary(report: &[InstanceReport]) {
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

/// `--inspect-timeout`: a duration such as "10s", more than 0, at most 1h.
fn inspect_timeout(text: &str) -> Result<Duration, String> {
    let limit = plughost_api::HumanDuration::parse(text)?;
    if limit.is_zero() || limit > Duration::from_secs(3600) {
        return Err(format!("`{text}` is out of range: more than 0, at most 1h"));
    }
    Ok(limit)
}

fn check(config_path: &Path, time_limit: Duration) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    let base = config.base_dir();
    let mut problems = 0;
    if config.plugins.is_empty() {
        out!("no [[plugin]] instances configured: nothing to check");
    }
    for plugin in &config.plugins {
        if !plugin.enabled {
            out!("{}: disabled (not checked)", Escaped(&plugin.name));
            continue;
        }
        let inspected = plughost::resolve(&plugin.library, &config.host.plugin_dirs, &base)
            .and_then(|path| {
                plughost::check_config(&path, &plugin.trust(), &plugin.config, time_limit)
            });
        let name = Escaped(&plugin.name);
        match inspected {
            Ok((info, plughost::ConfigCheck::Invalid(reason))) => {
                problems += 1;
                out!(
                    "{name}: error: {}: {} (in [plugin.config])",
                    Escaped(&info.path.display().to_string()),
                    Escaped(&reason)
                );
            }
            Ok((info, checked)) => out!(
                "{name}: ok: {} {} ({}, {}) from {}{}{}",
                Escaped(&info.name),
                Escaped(&info.version),
                info.language,
                Escaped(&info.abi),
                Escaped(&info.path.display().to_string()),
                match &info.support {
                    plughost::Support::Partly(what) => format!(" (partly supported: {what})"),
                    _ => String::new(),
                },
                match checked {
                    plughost::ConfigCheck::Valid => "",
                    _ => " (config not checked: this plugin reads it only when it starts)",
                }
            ),
            Err(error) => {
                problems += 1;
                out!("{name}: error: {}", Escaped(&error.to_string()));
            }
        }
    }
    if problems > 0 {
        eprintln!(
            "error: {problems} of {} plugin(s) cannot be loaded or refuse their config",
            config.plugins.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn discover(dirs: &[PathBuf], time_limit: Duration) -> anyhow::Result<ExitCode> {
    let mut unusable = 0;
    for dir in dirs {
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| {
                path.to_string_lossy()
                    .ends_with(std::env::consts::DLL_SUFFIX)
            })
            .collect();
        paths.sort();
        for path in paths {
            let shown = path.display().to_string();
            let shown = Escaped(&shown);
            match plughost::inspect(&path, &plughost::Trust::default(), time_limit) {
                Ok(info) => out!(
                    "{shown}: {} {} ({}, {}): {}{}",
                    Escaped(&info.name),
                    Escaped(&info.version),
                    info.language,
                    Escaped(&info.abi),
                    match &info.support {
                        plughost::Support::Partly(what) => format!("partly supported: {what}"),
                        _ => "fully supported".to_owned(),
                    },
                    if info.panic_abort {
                        "; built with panic = \"abort\", so it runs only with isolation = \"process\""
                    } else {
                        ""
                    }
                ),
                Err(plughost::LoadError::Unusable { reason, .. }) => {
                    unusable += 1;
                    out!("{shown}: not usable: {}", Escaped(&reason));
                }
                Err(error) => {
                    unusable += 1;
                    out!("{shown}: not usable: {}", Escaped(&error.to_string()));
                }
            }
        }
    }
    Ok(if unusable > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
