//! The `plughost` command: a thin layer over the `plughost` library.

use clap::{Parser, Subcommand, ValueEnum};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

/// Print one line of a command's output (`println!`'s arguments). A reader
/// that went away (`plughost discover DIR | head -1`) asked for no more: the
/// command ends at once, quietly, with status 0, as ripgrep does.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::print_line(format_args!($($arg)*))
    };
}

pub(crate) fn print_line(line: std::fmt::Arguments<'_>) {
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

mod cli;

use cli::{HostSignals, check, ctl, discover, inspect_timeout, run};

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
        let code = plughost::process_child_main(
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
