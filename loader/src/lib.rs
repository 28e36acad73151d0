//! plughost as a library: the [`Host`] that the `plughost` binary wraps, for
//! embedding a plugin host in another program.
//!
//! The modules follow an event's path: [`config`] (what to load) → `library`
//! (find, check, open; the only place plugins are loaded or called) →
//! `instance` (thread, mailbox, lifecycle) → `bus` (routing) → [`host`].
#![warn(missing_docs)]

mod bus;
pub mod config;
pub mod control;
mod event;
pub mod host;
pub mod input;
mod inspect;
mod instance;
mod intake;
mod library;
pub mod listen;
pub mod status;
mod supervisor;
mod text;

/// Foreign text (names, versions, messages from plugins) made safe to print.
#[doc(hidden)]
pub use text::Escaped;

pub use config::{Config, ConfigError};
pub use event::Event;
pub use host::{Host, InstanceReport, PluginHealth, PluginJob, PluginReadiness, StartError};
pub use instance::{Counts, State};
pub use intake::{Entry, PublishError, Refused};
pub use library::{Language, LoadError, Support, Trust, platform_file_name, resolve};
pub use supervisor::ReloadReport;

use std::path::Path;

/// What `plughost check` and `plughost discover` say about a library.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LibraryInfo {
    /// The file.
    pub path: std::path::PathBuf,
    /// Plugin name, as the library declares it.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// Language.
    pub language: Language,
    /// The ABI it was built against.
    pub abi: String,
    /// How much of it this host can use.
    pub support: Support,
    /// Built with `panic = "abort"`: it runs only with `isolation = "process"`.
    pub panic_abort: bool,
}

/// How long `plughost check` and `plughost discover` give one library to
/// load in its inspection process, unless told otherwise.
pub const INSPECT_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Check that the library at `path` is a plugin this host can run, without
/// running any of it in this process: what the file alone tells is checked
/// here (a file that is not a plugin never runs), then the library is loaded
/// in a child process that may take at most `time_limit`. A library whose
/// initialisers or entry point crash, exit or hang is refused, saying so.
pub fn inspect(
    path: &Path,
    trust: &Trust,
    time_limit: std::time::Duration,
) -> Result<LibraryInfo, LoadError> {
    inspect::inspect(path, trust, None, time_limit).map(|(info, _)| info)
}

/// What a library says about an instance's `[plugin.config]`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigCheck {
    /// The plugin accepts it.
    Valid,
    /// The plugin refuses it, with its reason.
    Invalid(String),
    /// The library cannot check a config without running the plugin (C
    /// plugins, and Rust plugins built before plugins could).
    Unchecked,
}

/// [`inspect`] the library at `path`, and have the plugin check `config`
/// (an instance's `[plugin.config]` as JSON) the way it would read it at
/// start, without creating an instance; in the same child process.
pub fn check_config(
    path: &Path,
    trust: &Trust,
    config: &serde_json::Value,
    time_limit: std::time::Duration,
) -> Result<(LibraryInfo, ConfigCheck), LoadError> {
    let (info, checked) = inspect::inspect(path, trust, Some(config), time_limit)?;
    Ok((info, checked.unwrap_or(ConfigCheck::Unchecked)))
}

/// The hidden `plughost __child` command: serve one process-isolated
/// instance (see `library::process`).
#[doc(hidden)]
pub use library::process::child_main as process_child_main;

/// The hidden `plughost __inspect` command that [`inspect`] runs.
#[doc(hidden)]
pub fn inspect_child_main(library: &Path, parent: u32, trust: &Trust, check_config: bool) -> i32 {
    inspect::child_main(library, parent, trust, check_config)
}
