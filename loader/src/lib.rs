//! plughost as a library: the [`Host`] that the `plughost` binary wraps, for
//! embedding a plugin host in another program.
//!
//! The modules follow an event's path, top to bottom, and each imports only
//! modules above it (no cycle: `tests/architecture.rs` checks it):
//!
//! ```text
//!  config ──────────── what to load: plugins.toml, checked (limits, file, load)
//!    │
//!  instance, intake ── the Instance trait every adapter implements; the
//!    │                 entry points and why a publish is refused
//!  library ─────────── find, check, open: rust.rs, c.rs, process/ (the only
//!    │                 place plugins are loaded or called); PluginHost is the
//!    │                 host as a plugin sees it
//!  mailbox ─────────── an instance's slot: queue, counters, state
//!    │                 (and observe::metrics, the internal.metrics.*
//!    │                 payloads the bus publishes)
//!  bus ─────────────── routing: topic -> mailboxes, each event counted once
//!    │
//!  observe::lifecycle  plughost.plugin.* events
//!    │
//!  worker ──────────── the thread that takes a mailbox's events and obeys
//!    │                 its control lane (it consults two leaves of the
//!    │                 supervisor, `policy` and `error`, which import
//!    │                 nothing below `mailbox`)
//!  supervisor ──────── what runs: launch, operate (stop/start/restart),
//!    │                 reload, restart policy, watchdog; plugins' call/cast
//!    │                 reach the commands through `Commands`, handed down
//!  observe ─── command probes, reports, state events; the command set
//!    │                 (socket, `plughost ctl`, plugins' call/cast)
//!  host ────────────── Host: start, publish, checks, shutdown in phases
//!    │
//!  control, status, input ── the control socket, the HTTP server, stdin
//!    │
//!  main.rs, cli/ ───── the `plughost` binary
//! ```
//!
//! An event published into the host: [`Host::publish`] (or stdin, `POST
//! /events/...`, `ctl publish`, a plugin) → `bus` finds the subscribed
//! mailboxes → each `mailbox::Slot` queues it → its `worker` thread hands it
//! to the plugin through `library`'s adapter → the outcome is counted in the
//! slot, and `status` / `control` show the counts.
#![warn(missing_docs)]

mod bus;
mod command;
pub mod config;
pub mod control;
mod event;
pub mod host;
pub mod input;
mod instance;
mod intake;
mod library;
pub mod listen;
mod mailbox;
mod observe;
pub mod status;
mod supervisor;
#[cfg(test)]
mod testing;
mod text;
mod worker;

/// A signal's name (`SIGTERM` for 15), from the host's one table of them.
#[doc(hidden)]
pub use library::signal_name;

/// Foreign text (names, versions, messages from plugins) made safe to print.
#[doc(hidden)]
pub use text::Escaped;

pub use command::{CommandError, RequestError};
pub use config::{Config, ConfigError};
pub use event::Event;
pub use host::{
    Host, InstanceError, InstanceReport, PluginHealth, PluginJob, PluginReadiness, ReloadError,
    StartError,
};
pub use intake::{Entry, PublishError, Refused};
pub use library::inspect::{ConfigCheck, INSPECT_TIME_LIMIT, LibraryInfo, check_config, inspect};
pub use library::{Language, LoadError, Support, Trust, platform_file_name, resolve};
pub use mailbox::{Counts, State};
pub use plughost_api::{ContentError, ContentType};
pub use supervisor::ReloadReport;

/// The hidden `plughost __child` command: serve one process-isolated
/// instance (see `library::process`).
#[doc(hidden)]
pub use library::process::child_main as process_child_main;

/// The hidden `plughost __inspect` command that [`inspect`] runs.
#[doc(hidden)]
pub use library::inspect::child_main as inspect_child_main;
