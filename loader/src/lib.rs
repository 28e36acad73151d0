//! plughost as a library: the [`Host`] that the `plughost` binary wraps, for
//! embedding a plugin host in another program.
//!
//! The modules follow an event's path: [`config`] (what to load) → `library`
//! (find, check, open; the only place plugins are loaded or called) →
//! `instance` (thread, mailbox, lifecycle) → `bus` (routing) → [`host`].
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
