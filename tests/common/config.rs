//! A typed builder for `plugins.toml`: a test names every key it relies on.
//!
//! Nothing is added behind a test's back. The one key every rendered file
//! has is `[host] plugin_dirs`, pointing at the plugin libraries the tests
//! built (override it with [`Config::plugin_dirs`]); every other key, in
//! every section, is in the file only when the test set it, so a reader sees
//! the config exactly as the host does. The same builder writes a reload's
//! config: build the new one and [`Config::write`] it over the old.
//!
//! ```ignore
//! let config = Config::new()
//!     .shutdown_timeout("30s")
//!     .plugin(logger("log", &s.path("log.jsonl")).subscribe(["work.>"]))
//!     .plugin(
//!         Plugin::new("flaky", "chaos")
//!             .subscribe(["work.>"])
//!             .restart(Restart::Never)
//!             .config(json!({"panic_every": 10})),
//!     )
//!     .write(&s);
//! ```

use super::{Scratch, plugin_dir};
use std::path::{Path, PathBuf};

/// `restart = ...` of a `[[plugin]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    Never,
    OnFailure,
    Always,
}

/// `isolation = ...` of a `[[plugin]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    Thread,
    Process,
}

/// `overflow = ...` of `[host]` or a `[[plugin]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    Block,
    DropOldest,
    DropNewest,
}

impl Restart {
    pub fn as_str(self) -> &'static str {
        match self {
            Restart::Never => "never",
            Restart::OnFailure => "on-failure",
            Restart::Always => "always",
        }
    }
}

impl Isolation {
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Thread => "thread",
            Isolation::Process => "process",
        }
    }
}

impl Overflow {
    pub fn as_str(self) -> &'static str {
        match self {
            Overflow::Block => "block",
            Overflow::DropOldest => "drop_oldest",
            Overflow::DropNewest => "drop_newest",
        }
    }
}

/// As `plugins.toml` spells them.
macro_rules! display_as_toml {
    ($($ty:ty),*) => {$(
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}
display_as_toml!(Restart, Isolation, Overflow);

/// The keys of one TOML table, in the order a test set them.
#[derive(Debug, Clone, Default)]
struct Table(Vec<(String, toml::Value)>);

impl Table {
    fn set(&mut self, key: &str, value: impl Into<toml::Value>) {
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key.to_owned(), value)),
        }
    }

    fn render(&self, out: &mut String) {
        for (key, value) in &self.0 {
            out.push_str(&format!("{} = {value}\n", toml_key(key)));
        }
    }
}

/// A key as TOML writes it: bare when it can be, else quoted.
fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_owned()
    } else {
        toml::Value::String(key.to_owned()).to_string()
    }
}

fn path_value(path: &Path) -> toml::Value {
    toml::Value::String(path.display().to_string())
}

fn count(n: u64) -> toml::Value {
    toml::Value::Integer(i64::try_from(n).expect("a count TOML can hold"))
}

/// A whole `plugins.toml`.
#[derive(Debug, Clone)]
pub struct Config {
    host: Table,
    status: Option<Status>,
    state: Option<Table>,
    metrics: Option<Table>,
    plugins: Vec<Plugin>,
}

impl Default for Config {
    fn default() -> Config {
        Config::new()
    }
}

impl Config {
    /// `[host] plugin_dirs = [the built plugins]` and nothing else.
    pub fn new() -> Config {
        let mut host = Table::default();
        host.set(
            "plugin_dirs",
            toml::Value::Array(vec![path_value(&plugin_dir())]),
        );
        Config {
            host,
            status: None,
            state: None,
            metrics: None,
            plugins: Vec::new(),
        }
    }

    /// `[host] plugin_dirs`, instead of the built plugins' directory.
    pub fn plugin_dirs<P: AsRef<Path>>(mut self, dirs: impl IntoIterator<Item = P>) -> Config {
        let dirs = dirs.into_iter().map(|d| path_value(d.as_ref())).collect();
        self.host.set("plugin_dirs", toml::Value::Array(dirs));
        self
    }

    /// `[host] queue_capacity`.
    pub fn queue_capacity(mut self, capacity: u64) -> Config {
        self.host.set("queue_capacity", count(capacity));
        self
    }

    /// `[host] overflow`.
    pub fn overflow(mut self, overflow: Overflow) -> Config {
        self.host.set("overflow", overflow.as_str());
        self
    }

    /// `[host] shutdown_timeout`, a duration such as `"30s"`.
    pub fn shutdown_timeout(mut self, duration: &str) -> Config {
        self.host.set("shutdown_timeout", duration);
        self
    }

    /// `[host] control_socket`.
    pub fn control_socket(mut self, path: &Path) -> Config {
        self.host.set("control_socket", path_value(path));
        self
    }

    /// `[host] max_event_bytes`.
    pub fn max_event_bytes(mut self, bytes: u64) -> Config {
        self.host.set("max_event_bytes", count(bytes));
        self
    }

    /// `[host] control_max_line_bytes`.
    pub fn control_max_line_bytes(mut self, bytes: u64) -> Config {
        self.host.set("control_max_line_bytes", count(bytes));
        self
    }

    /// `[host] control_max_connections`.
    pub fn control_max_connections(mut self, connections: u64) -> Config {
        self.host.set("control_max_connections", count(connections));
        self
    }

    /// `[host] control_idle_timeout`.
    pub fn control_idle_timeout(mut self, timeout: &str) -> Config {
        self.host.set("control_idle_timeout", timeout);
        self
    }

    /// The `[status]` section.
    pub fn status(mut self, status: Status) -> Config {
        self.status = Some(status);
        self
    }

    /// The `[state]` section (see [`State`]).
    pub fn state(mut self, state: State) -> Config {
        self.state = Some(state.0);
        self
    }

    /// `[metrics] enabled`.
    pub fn metrics_enabled(mut self, enabled: bool) -> Config {
        self.metrics
            .get_or_insert_with(Table::default)
            .set("enabled", enabled);
        self
    }

    /// One more `[[plugin]]`, after those already added.
    pub fn plugin(mut self, plugin: Plugin) -> Config {
        self.plugins.push(plugin);
        self
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut out = String::from("[host]\n");
        self.host.render(&mut out);
        if let Some(status) = &self.status {
            out.push_str("[status]\n");
            status.0.render(&mut out);
        }
        if let Some(state) = &self.state {
            out.push_str("[state]\n");
            state.render(&mut out);
        }
        if let Some(metrics) = &self.metrics {
            out.push_str("[metrics]\n");
            metrics.render(&mut out);
        }
        for plugin in &self.plugins {
            plugin.render(&mut out);
        }
        out
    }

    /// Write it as `plugins.toml` in `s` (over any earlier one, as a reload
    /// wants); its path.
    pub fn write(&self, s: &Scratch) -> PathBuf {
        s.write("plugins.toml", &self.render())
    }
}

/// The `[status]` section.
#[derive(Debug, Clone)]
pub struct Status(Table);

impl Status {
    /// `address = "127.0.0.1:0"`: loopback, on a port the kernel picks (the
    /// test reads it from the host's log, [`super::Running::status_address`]).
    pub fn any_port() -> Status {
        let mut table = Table::default();
        table.set("address", "127.0.0.1:0");
        Status(table)
    }

    pub fn check_timeout(mut self, duration: &str) -> Status {
        self.0.set("check_timeout", duration);
        self
    }

    pub fn unavailable_status_code(mut self, code: u16) -> Status {
        self.0.set("unavailable_status_code", count(code.into()));
        self
    }

    pub fn ingest(mut self, on: bool) -> Status {
        self.0.set("ingest", on);
        self
    }

    pub fn ingest_max_bytes(mut self, bytes: u64) -> Status {
        self.0.set("ingest_max_bytes", count(bytes));
        self
    }

    pub fn route_timeout(mut self, duration: &str) -> Status {
        self.0.set("route_timeout", duration);
        self
    }

    pub fn route_max_pending(mut self, n: u64) -> Status {
        self.0.set("route_max_pending", count(n));
        self
    }

    pub fn header_timeout(mut self, duration: &str) -> Status {
        self.0.set("header_timeout", duration);
        self
    }

    pub fn idle_timeout(mut self, duration: &str) -> Status {
        self.0.set("idle_timeout", duration);
        self
    }

    pub fn max_connections(mut self, n: u64) -> Status {
        self.0.set("max_connections", count(n));
        self
    }
}

/// The `[state]` section: empty until a key is set.
#[derive(Debug, Clone, Default)]
pub struct State(Table);

impl State {
    pub fn new() -> State {
        State::default()
    }

    pub fn enabled(mut self, on: bool) -> State {
        self.0.set("enabled", on);
        self
    }

    pub fn ping_enabled(mut self, on: bool) -> State {
        self.0.set("ping_enabled", on);
        self
    }

    pub fn ping_interval(mut self, duration: &str) -> State {
        self.0.set("ping_interval", duration);
        self
    }

    pub fn process_name(mut self, name: &str) -> State {
        self.0.set("process_name", name);
        self
    }
}

/// One `[[plugin]]` table, with its `[plugin.config]`.
#[derive(Debug, Clone)]
pub struct Plugin {
    name: String,
    keys: Table,
    config: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The shipped `logger` writing to `path`: `library = "logger"` and
/// `[plugin.config] path`, nothing more (no subscription either).
pub fn logger(name: &str, path: &Path) -> Plugin {
    Plugin::new(name, "logger").set("path", path.display().to_string())
}

impl Plugin {
    /// `name` and `library` (a bare name looked up in `plugin_dirs`, or a
    /// path), and nothing else.
    pub fn new(name: &str, library: impl AsRef<Path>) -> Plugin {
        let mut keys = Table::default();
        keys.set("name", name);
        keys.set("library", path_value(library.as_ref()));
        Plugin {
            name: name.to_owned(),
            keys,
            config: None,
        }
    }

    /// The instance name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn subscribe<S: AsRef<str>>(mut self, patterns: impl IntoIterator<Item = S>) -> Plugin {
        let patterns = patterns
            .into_iter()
            .map(|p| toml::Value::String(p.as_ref().to_owned()))
            .collect();
        self.keys.set("subscribe", toml::Value::Array(patterns));
        self
    }

    pub fn enabled(mut self, on: bool) -> Plugin {
        self.keys.set("enabled", on);
        self
    }

    pub fn queue_capacity(mut self, capacity: u64) -> Plugin {
        self.keys.set("queue_capacity", count(capacity));
        self
    }

    pub fn overflow(mut self, overflow: Overflow) -> Plugin {
        self.keys.set("overflow", overflow.as_str());
        self
    }

    pub fn isolation(mut self, isolation: Isolation) -> Plugin {
        self.keys.set("isolation", isolation.as_str());
        self
    }

    pub fn restart(mut self, restart: Restart) -> Plugin {
        self.keys.set("restart", restart.as_str());
        self
    }

    pub fn max_restarts(mut self, n: u64) -> Plugin {
        self.keys.set("max_restarts", count(n));
        self
    }

    pub fn restart_window(mut self, duration: &str) -> Plugin {
        self.keys.set("restart_window", duration);
        self
    }

    pub fn handler_timeout(mut self, duration: &str) -> Plugin {
        self.keys.set("handler_timeout", duration);
        self
    }

    pub fn start_timeout(mut self, duration: &str) -> Plugin {
        self.keys.set("start_timeout", duration);
        self
    }

    pub fn required(mut self, required: bool) -> Plugin {
        self.keys.set("required", required);
        self
    }

    pub fn echo(mut self, on: bool) -> Plugin {
        self.keys.set("echo", on);
        self
    }

    pub fn tick_interval(mut self, duration: &str) -> Plugin {
        self.keys.set("tick_interval", duration);
        self
    }

    pub fn sha256(mut self, hex: &str) -> Plugin {
        self.keys.set("sha256", hex);
        self
    }

    pub fn allow_insecure_permissions(mut self, allow: bool) -> Plugin {
        self.keys.set("allow_insecure_permissions", allow);
        self
    }

    /// The whole `[plugin.config]` table (a JSON object), replacing any
    /// keys set before.
    pub fn config(mut self, config: serde_json::Value) -> Plugin {
        match config {
            serde_json::Value::Object(map) => self.config = Some(map),
            other => panic!("[plugin.config] must be a JSON object, not {other}"),
        }
        self
    }

    /// One key of `[plugin.config]`.
    pub fn set(mut self, key: &str, value: impl Into<serde_json::Value>) -> Plugin {
        self.config
            .get_or_insert_with(Default::default)
            .insert(key.to_owned(), value.into());
        self
    }

    fn render(&self, out: &mut String) {
        out.push_str("[[plugin]]\n");
        self.keys.render(out);
        if let Some(config) = &self.config {
            out.push_str("[plugin.config]\n");
            for (key, value) in config {
                let value = toml::Value::try_from(value).unwrap_or_else(|e| {
                    panic!("[plugin.config] {key} = {value} has no TOML form: {e}")
                });
                out.push_str(&format!("{} = {value}\n", toml_key(key)));
            }
        }
    }
}
