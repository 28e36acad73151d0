#![allow(
    non_local_definitions,
    reason = "abi_stable's sabi_trait expands to impls inside consts"
)]

//! The stable ABI between the host and a Rust plugin: an abi_stable root module
//! whose `create` returns a trait object. Plugin authors never touch this module;
//! `export_plugin!` builds it and the host loads it.
//!
//! Versioning: every type here is layout-checked by abi_stable at load time. New
//! capabilities are appended as defaulted methods after `last_prefix_field`, so a
//! plugin built against an older minor version keeps loading.

use abi_stable::{
    StableAbi, declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RArc, RBox, RNone, ROption, RResult, RSlice, RStr, RString, RVec},
};

/// An event as the plugin sees it for the duration of one call.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct EventRef<'a> {
    /// Host-assigned, increasing id.
    pub id: u64,
    /// Milliseconds since the Unix epoch, when the host accepted the event.
    pub timestamp_ms: u64,
    /// Dot-separated topic.
    pub topic: RStr<'a>,
    /// The payload bytes.
    pub payload: RSlice<'a, u8>,
    /// The publishing instance's name, or `host`.
    pub source: RStr<'a>,
}

/// Severity of a log line sent through the host.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    /// Something failed.
    Error = 1,
    /// Something looks wrong.
    Warn = 2,
    /// Normal operation.
    Info = 3,
    /// Detail for debugging.
    Debug = 4,
    /// Very verbose detail.
    Trace = 5,
}

/// Why a call into a plugin did not succeed.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct CallError {
    /// True when the plugin panicked (caught inside the plugin), false when it
    /// returned an error.
    pub panicked: bool,
    /// Human-readable reason, without a trailing newline.
    pub message: RString,
}

/// What the host offers a plugin instance. Implemented by the host.
#[sabi_trait]
pub trait HostApi: Send + Sync {
    /// The instance name from `plugins.toml`.
    fn instance_name(&self) -> RStr<'_>;

    /// Publish an event; routed like any other event.
    fn publish(&self, topic: RStr<'_>, payload: RSlice<'_, u8>) -> RResult<(), RString>;

    /// Log a line into the host's `tracing` output, tagged with the instance name.
    #[sabi(last_prefix_field)]
    fn log(&self, level: LogLevel, message: RStr<'_>);

    /// Run a host command (JSON, as `plughost ctl` sends it) and return the
    /// host's JSON answer. Hosts older than this method answer an error.
    fn call(&self, request: RStr<'_>) -> RResult<RString, RString> {
        let _ = request;
        RResult::RErr(RString::from("this host does not support call"))
    }

    /// Run a host command without waiting for its answer.
    fn cast(&self, request: RStr<'_>) {
        let _ = request;
    }
}

/// A host handle as plugins hold it.
pub type HostHandle = HostApi_TO<'static, RArc<()>>;

/// One live plugin instance. Implemented by `export_plugin!`'s adapter, which
/// catches every panic before it reaches this boundary.
#[sabi_trait]
pub trait PluginObject: Send {
    /// Handle one event.
    fn on_event(&mut self, event: EventRef<'_>) -> RResult<(), CallError>;

    /// Flush and release resources; the object is dropped right after.
    #[sabi(last_prefix_field)]
    fn stop(&mut self) -> RResult<(), CallError>;

    /// Health, or `RNone` when the plugin does not report it. (Added after
    /// `stop`: plugins built before it get this default.)
    fn health(&mut self) -> RResult<ROption<HealthReport>, CallError> {
        RResult::ROk(RNone)
    }

    /// Readiness, or `RNone` when the plugin does not report it.
    fn ready(&mut self) -> RResult<ROption<ReadinessReport>, CallError> {
        RResult::ROk(RNone)
    }

    /// Job queues, or `RNone` when the plugin does not report them.
    fn jobs(&mut self) -> RResult<ROption<RVec<JobReportAbi>>, CallError> {
        RResult::ROk(RNone)
    }

    /// Background work, every `tick_interval`, between events.
    fn tick(&mut self) -> RResult<(), CallError> {
        RResult::ROk(())
    }

    /// The routes it serves under `/plugins/NAME` (`/path`, or `/prefix/*`).
    fn routes(&self) -> RVec<RString> {
        RVec::new()
    }

    /// Answer a request to one of its routes; `RNone` for 404.
    fn http(&mut self, request: HttpRequestAbi) -> RResult<ROption<HttpResponseAbi>, CallError> {
        let _ = request;
        RResult::ROk(RNone)
    }
}

/// A health report across the ABI. `status`: 0 ok, 1 degraded, 2 failing.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct HealthReport {
    /// 0 ok, 1 degraded, 2 failing.
    pub status: u8,
    /// Why (may be empty).
    pub message: RString,
}

/// A readiness report across the ABI.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct ReadinessReport {
    /// Ready to take work.
    pub ready: bool,
    /// Why not (may be empty).
    pub message: RString,
}

/// A job report across the ABI (RoadRunner's JobsReport fields).
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct JobReportAbi {
    /// Pipeline name.
    pub pipeline: RString,
    /// Pipeline priority.
    pub priority: u64,
    /// Ready to consume.
    pub ready: bool,
    /// Queue name.
    pub queue: RString,
    /// Active jobs.
    pub active: i64,
    /// Delayed jobs.
    pub delayed: i64,
    /// Reserved jobs.
    pub reserved: i64,
    /// Driver name.
    pub driver: RString,
    /// Last error (may be empty).
    pub error_message: RString,
}

/// An HTTP header across the ABI.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct HeaderAbi {
    /// Name.
    pub name: RString,
    /// Value.
    pub value: RString,
}

/// An HTTP request across the ABI.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct HttpRequestAbi {
    /// Method.
    pub method: RString,
    /// Path after `/plugins/NAME`.
    pub path: RString,
    /// Query string.
    pub query: RString,
    /// Headers.
    pub headers: RVec<HeaderAbi>,
    /// Body.
    pub body: RVec<u8>,
}

/// An HTTP response across the ABI.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct HttpResponseAbi {
    /// Status.
    pub status: u16,
    /// Headers.
    pub headers: RVec<HeaderAbi>,
    /// Body.
    pub body: RVec<u8>,
}

/// A plugin instance as the host holds it.
pub type PluginHandle = PluginObject_TO<'static, RBox<()>>;

/// The root module every Rust plugin library exports.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    /// The plugin's name (its crate name).
    pub name: RStr<'static>,
    /// The plugin's version (its crate version).
    pub version: RStr<'static>,
    /// Create one instance from its config (the JSON text of `[plugin.config]`).
    #[sabi(last_prefix_field)]
    pub create: extern "C" fn(
        config_json: RStr<'_>,
        host: HostApi_TO<'static, RArc<()>>,
    ) -> RResult<PluginObject_TO<'static, RBox<()>>, CallError>,
    /// Check a config (the JSON text of `[plugin.config]`) as `create` would
    /// read it, without creating an instance: what `plughost check` runs.
    /// Appended after `create`: plugins built before it lack it, and the
    /// accessor answers `None` for them.
    #[sabi(missing_field(option))]
    pub validate_config: extern "C" fn(config_json: RStr<'_>) -> RResult<(), CallError>,
}

impl RootModule for PluginModuleRef {
    declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = "plughost_plugin";
    const NAME: &'static str = "plughost plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}
