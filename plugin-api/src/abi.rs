//! The stable ABI between the host and a Rust plugin: an abi_stable root
//! module whose `create` returns a plugin object (a state pointer and a table
//! of `extern "C"` functions), handed a host object built the same way.
//! Plugin authors never touch this module; `export_plugin!` builds the plugin
//! side, and the host builds the host side with [`HostHandle::new`].
//!
//! Versioning (see `docs/compatibility.md`): [`ABI_VERSION`] is declared by
//! every plugin and changes only when this module does. Everything that may
//! grow is an abi_stable prefix type ([`PluginModule`], [`PluginVTable`],
//! [`HostVTable`]); new capabilities are appended after the field marked
//! `last_prefix_field`, never inserted, and their accessors answer `None` for
//! a table built against an older ABI. Every other type here is frozen for
//! the whole major version: new data travels through new functions.

use crate::ContentType;
use abi_stable::{
    StableAbi, declare_root_module_statics,
    library::RootModule,
    prefix_type::WithMetadata,
    sabi_types::VersionStrings,
    staticref,
    std_types::{RErr, ROption, RResult, RSlice, RStr, RString, RVec},
};
use std::ffi::c_void;
use std::sync::Arc;

/// The plugin ABI this crate speaks, as `major.minor.0`. Every plugin
/// declares it (its root module's version); a host loads a plugin of the same
/// major. It changes only when this module's types do: a minor for an
/// appended capability, a major for anything else. Its major is the crate's
/// major (abi_stable records the crate's version in every type's layout).
pub const ABI_VERSION: &str = "1.1.0";
/// [`ABI_VERSION`]'s major.
pub const ABI_MAJOR: u32 = 1;
/// [`ABI_VERSION`]'s minor.
pub const ABI_MINOR: u32 = 1;

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

/// A log level as it travels as a number (C's `PLUGHOST_LOG_*`, a process
/// plugin's frames: `LogLevel as u8`); any other number reads as `Info`.
impl From<i64> for LogLevel {
    fn from(level: i64) -> LogLevel {
        match level {
            1 => LogLevel::Error,
            2 => LogLevel::Warn,
            4 => LogLevel::Debug,
            5 => LogLevel::Trace,
            _ => LogLevel::Info,
        }
    }
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

impl From<JobReportAbi> for crate::status::JobReport {
    fn from(job: JobReportAbi) -> crate::status::JobReport {
        crate::status::JobReport {
            pipeline: job.pipeline.into_string(),
            priority: job.priority,
            ready: job.ready,
            queue: job.queue.into_string(),
            active: job.active,
            delayed: job.delayed,
            reserved: job.reserved,
            driver: job.driver.into_string(),
            error_message: job.error_message.into_string(),
        }
    }
}

impl From<crate::status::JobReport> for JobReportAbi {
    fn from(job: crate::status::JobReport) -> JobReportAbi {
        JobReportAbi {
            pipeline: job.pipeline.into(),
            priority: job.priority,
            ready: job.ready,
            queue: job.queue.into(),
            active: job.active,
            delayed: job.delayed,
            reserved: job.reserved,
            driver: job.driver.into(),
            error_message: job.error_message.into(),
        }
    }
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

/// What one instance of a plugin can do, as `extern "C"` functions of its
/// state. Made by `export_plugin!`, whose functions catch every panic before
/// it reaches this boundary. Called by one thread at a time.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginVTableRef)))]
#[sabi(missing_field(option))]
pub struct PluginVTable {
    /// Drop the instance; called once, last.
    pub drop: unsafe extern "C" fn(state: *mut c_void),
    /// Handle one event.
    pub on_event:
        unsafe extern "C" fn(state: *mut c_void, event: EventRef<'_>) -> RResult<(), CallError>,
    /// Flush what the instance holds; called once. Only `on_event` may
    /// follow it (at the host's shutdown), then `drop`.
    pub stop: unsafe extern "C" fn(state: *mut c_void) -> RResult<(), CallError>,
    /// Health, or `RNone` when the plugin does not report it.
    pub health:
        unsafe extern "C" fn(state: *mut c_void) -> RResult<ROption<HealthReport>, CallError>,
    /// Readiness, or `RNone` when the plugin does not report it.
    pub ready:
        unsafe extern "C" fn(state: *mut c_void) -> RResult<ROption<ReadinessReport>, CallError>,
    /// Job queues, or `RNone` when the plugin does not report them.
    pub jobs:
        unsafe extern "C" fn(state: *mut c_void) -> RResult<ROption<RVec<JobReportAbi>>, CallError>,
    /// Background work, every `tick_interval`, between events.
    pub tick: unsafe extern "C" fn(state: *mut c_void) -> RResult<(), CallError>,
    /// The routes it serves under `/plugins/NAME` (`/path`, or `/prefix/*`).
    /// Reads the state only.
    pub routes: unsafe extern "C" fn(state: *mut c_void) -> RResult<RVec<RString>, CallError>,
    /// Answer a request to one of its routes; `RNone` for 404.
    #[sabi(last_prefix_field)]
    pub http: unsafe extern "C" fn(
        state: *mut c_void,
        request: HttpRequestAbi,
    ) -> RResult<ROption<HttpResponseAbi>, CallError>,
    // Appended capabilities go below, each with the ABI minor that added it;
    // `PluginHandle` answers `None` for them when the plugin predates them.
    /// ABI 1.1: handle one event of content type `content_type` (see
    /// [`ContentType::to_abi`](crate::ContentType)). A host calls it instead
    /// of `on_event` when the plugin has it.
    pub on_event_typed: unsafe extern "C" fn(
        state: *mut c_void,
        event: EventRef<'_>,
        content_type: u8,
    ) -> RResult<(), CallError>,
}

/// One live plugin instance, owned by the host: the plugin's state and its
/// functions. Dropping it drops the instance inside the plugin.
#[repr(C)]
#[derive(StableAbi)]
pub struct PluginHandle {
    /// The plugin's state, passed to every function of `vtable`.
    pub state: *mut c_void,
    /// What the instance can do.
    pub vtable: PluginVTableRef,
}

// SAFETY: the state is a `Plugin`, which is `Send`, behind functions that
// touch nothing else; the host calls them from one thread at a time.
unsafe impl Send for PluginHandle {}

impl PluginHandle {
    /// Handle one event.
    #[inline]
    pub fn on_event(&mut self, event: EventRef<'_>) -> RResult<(), CallError> {
        // SAFETY: `state` came from the `create` that made this vtable, and
        // `&mut self` makes this the only call into it.
        unsafe { (self.vtable.on_event())(self.state, event) }
    }

    /// Handle one event of content type `content_type`: through the
    /// plugin's `on_event_typed`, or its `on_event` when it predates content
    /// types (ABI 1.0: it cannot be told the type).
    #[inline]
    pub fn on_event_typed(
        &mut self,
        event: EventRef<'_>,
        content_type: u8,
    ) -> RResult<(), CallError> {
        match self.vtable.on_event_typed() {
            // SAFETY: as in `on_event`.
            Some(typed) => unsafe { typed(self.state, event, content_type) },
            // SAFETY: as in `on_event`.
            None => unsafe { (self.vtable.on_event())(self.state, event) },
        }
    }

    /// Flush what the instance holds (see [`PluginVTable::stop`]).
    pub fn stop(&mut self) -> RResult<(), CallError> {
        // SAFETY: as in `on_event`.
        unsafe { (self.vtable.stop())(self.state) }
    }

    /// Health, or `RNone` when the plugin does not report it.
    pub fn health(&mut self) -> RResult<ROption<HealthReport>, CallError> {
        // SAFETY: as in `on_event`.
        unsafe { (self.vtable.health())(self.state) }
    }

    /// Readiness, or `RNone` when the plugin does not report it.
    pub fn ready(&mut self) -> RResult<ROption<ReadinessReport>, CallError> {
        // SAFETY: as in `on_event`.
        unsafe { (self.vtable.ready())(self.state) }
    }

    /// Job queues, or `RNone` when the plugin does not report them.
    pub fn jobs(&mut self) -> RResult<ROption<RVec<JobReportAbi>>, CallError> {
        // SAFETY: as in `on_event`.
        unsafe { (self.vtable.jobs())(self.state) }
    }

    /// Background work.
    pub fn tick(&mut self) -> RResult<(), CallError> {
        // SAFETY: as in `on_event`.
        unsafe { (self.vtable.tick())(self.state) }
    }

    /// The routes it serves.
    pub fn routes(&self) -> RResult<RVec<RString>, CallError> {
        // SAFETY: `state` came from the `create` that made this vtable; the
        // function only reads it, and `&self` excludes every call that writes.
        unsafe { (self.vtable.routes())(self.state) }
    }

    /// Answer a request to one of its routes; `RNone` for 404.
    pub fn http(
        &mut self,
        request: HttpRequestAbi,
    ) -> RResult<ROption<HttpResponseAbi>, CallError> {
        // SAFETY: as in `on_event`.
        unsafe { (self.vtable.http())(self.state, request) }
    }
}

impl Drop for PluginHandle {
    fn drop(&mut self) {
        // SAFETY: called once, last; nothing uses `state` afterwards.
        unsafe { (self.vtable.drop())(self.state) }
    }
}

/// What the host offers one plugin instance, as `extern "C"` functions of
/// the host's context. Every function is thread-safe: a plugin may call them
/// from any of its threads while the instance exists.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = HostVTableRef)))]
#[sabi(missing_field(option))]
pub struct HostVTable {
    /// The host's [`ABI_VERSION`], for messages about what it lacks.
    pub abi_version: RStr<'static>,
    /// Release the context; called once, when the instance is dropped.
    pub release: unsafe extern "C" fn(ctx: *const c_void),
    /// The instance name from `plugins.toml`, valid until `release`.
    pub instance_name: unsafe extern "C" fn(ctx: *const c_void) -> RStr<'static>,
    /// Publish an event; routed like any other event.
    pub publish: unsafe extern "C" fn(
        ctx: *const c_void,
        topic: RStr<'_>,
        payload: RSlice<'_, u8>,
    ) -> RResult<(), RString>,
    /// Log a line into the host's `tracing` output, tagged with the instance name.
    pub log: unsafe extern "C" fn(ctx: *const c_void, level: LogLevel, message: RStr<'_>),
    /// Run a host command (JSON, as `plughost ctl` sends it) and return the
    /// host's JSON answer.
    pub call:
        unsafe extern "C" fn(ctx: *const c_void, request: RStr<'_>) -> RResult<RString, RString>,
    /// Run a host command without waiting for its answer.
    #[sabi(last_prefix_field)]
    pub cast: unsafe extern "C" fn(ctx: *const c_void, request: RStr<'_>),
    // Appended host functions go below, each with the ABI minor that added
    // it; a plugin reaches them through an accessor that answers `None` on a
    // host that predates them.
    /// ABI 1.1: take one more reference to the context, given back by its
    /// own `release`: a handle that outlives the call it was made in (a
    /// `Publisher`). While the instance lives, `publish` through it works
    /// from any thread, as the instance; once the instance is dropped it
    /// returns an error.
    pub retain: unsafe extern "C" fn(ctx: *const c_void),
    /// ABI 1.1: publish an event of content type `content_type` (see
    /// [`ContentType::to_abi`](crate::ContentType)); the host checks the
    /// payload against it. `publish` publishes `bytes`.
    pub publish_typed: unsafe extern "C" fn(
        ctx: *const c_void,
        topic: RStr<'_>,
        payload: RSlice<'_, u8>,
        content_type: u8,
    ) -> RResult<(), RString>,
}

/// The host as one plugin instance holds it: the host's context and its
/// functions. Made by the host, moved into `create`, released when dropped.
#[repr(C)]
#[derive(StableAbi)]
pub struct HostHandle {
    /// The host's context, passed to every function of `vtable`.
    pub ctx: *const c_void,
    /// What the host offers.
    pub vtable: HostVTableRef,
}

// SAFETY: the ABI requires every host function to be thread-safe, and the
// context is the host's, shared and immutable behind them.
unsafe impl Send for HostHandle {}
// SAFETY: as above.
unsafe impl Sync for HostHandle {}

impl HostHandle {
    /// The host's ABI version, as it declares it.
    pub fn abi_version(&self) -> &str {
        self.vtable.abi_version().as_str()
    }

    /// The instance name.
    pub fn instance_name(&self) -> &str {
        // SAFETY: `ctx` belongs to this vtable and lives until `release`,
        // which only `drop` calls; the name lives as long.
        unsafe { (self.vtable.instance_name())(self.ctx) }.as_str()
    }

    /// Publish an event of content type `bytes`.
    pub fn publish(&self, topic: &str, payload: &[u8]) -> Result<(), String> {
        // SAFETY: as in `instance_name`; the host copies what it keeps.
        unsafe {
            (self.vtable.publish())(self.ctx, RStr::from_str(topic), RSlice::from_slice(payload))
        }
        .into_result()
        .map_err(RString::into_string)
    }

    /// Publish an event of content type `content`. A host older than ABI
    /// 1.1 knows no content types: the event is published as `bytes` there.
    pub fn publish_typed(
        &self,
        topic: &str,
        payload: &[u8],
        content: ContentType,
    ) -> Result<(), String> {
        let Some(publish_typed) = self.vtable.publish_typed() else {
            return self.publish(topic, payload);
        };
        // SAFETY: as in `instance_name`; the host copies what it keeps.
        unsafe {
            publish_typed(
                self.ctx,
                RStr::from_str(topic),
                RSlice::from_slice(payload),
                content.to_abi(),
            )
        }
        .into_result()
        .map_err(RString::into_string)
    }

    /// Log a line through the host.
    pub fn log(&self, level: LogLevel, message: &str) {
        // SAFETY: as in `instance_name`.
        unsafe { (self.vtable.log())(self.ctx, level, RStr::from_str(message)) }
    }

    /// Run a host command and return its JSON answer.
    pub fn call(&self, request: &str) -> Result<String, String> {
        // SAFETY: as in `instance_name`.
        unsafe { (self.vtable.call())(self.ctx, RStr::from_str(request)) }
            .into_result()
            .map(RString::into_string)
            .map_err(RString::into_string)
    }

    /// Run a host command without waiting.
    pub fn cast(&self, request: &str) {
        // SAFETY: as in `instance_name`.
        unsafe { (self.vtable.cast())(self.ctx, RStr::from_str(request)) }
    }

    /// Another handle on the same context (ABI 1.1), or `None` from a host
    /// that predates `retain`.
    pub fn retained(&self) -> Option<HostHandle> {
        let retain = self.vtable.retain()?;
        // SAFETY: `ctx` belongs to this vtable and is alive (we hold it);
        // the new reference is given back by the new handle's `drop`.
        unsafe { retain(self.ctx) };
        Some(HostHandle {
            ctx: self.ctx,
            vtable: self.vtable,
        })
    }

    /// Hand `host` to a plugin: its functions become this handle's.
    pub fn new<H: HostFunctions>(host: Arc<H>) -> HostHandle {
        HostHandle {
            ctx: Arc::into_raw(host).cast(),
            vtable: HostVTableOf::<H>::VTABLE,
        }
    }
}

impl Drop for HostHandle {
    fn drop(&mut self) {
        // SAFETY: called once; nothing uses `ctx` afterwards.
        unsafe { (self.vtable.release())(self.ctx) }
    }
}

/// What a host implements to be handed to plugins through
/// [`HostHandle::new`]. A panic in any of these is caught at the boundary.
pub trait HostFunctions: Send + Sync + 'static {
    /// The instance name from `plugins.toml`.
    fn instance_name(&self) -> &str;
    /// Publish an event (content type `bytes`).
    fn publish(&self, topic: &str, payload: &[u8]) -> Result<(), String>;
    /// Publish an event of content type `content` (the host checks the
    /// payload against it). A host that knows no content types publishes
    /// it as bytes.
    fn publish_typed(
        &self,
        topic: &str,
        payload: &[u8],
        content: ContentType,
    ) -> Result<(), String> {
        let _ = content;
        self.publish(topic, payload)
    }
    /// Log a line tagged with the instance name.
    fn log(&self, level: LogLevel, message: &str);
    /// Run a host command (JSON) and return the host's JSON answer.
    fn call(&self, request: &str) -> Result<String, String>;
    /// Run a host command without waiting.
    fn cast(&self, request: &str);
}

/// The host table for a [`HostFunctions`] type: one static per type.
struct HostVTableOf<H>(H);

impl<H: HostFunctions> HostVTableOf<H> {
    /// # Safety
    /// `ctx` must come from `HostHandle::new::<H>` and not be released yet.
    unsafe fn host<'a>(ctx: *const c_void) -> &'a H {
        // SAFETY: per the caller, an `Arc<H>` made by `HostHandle::new`.
        unsafe { &*ctx.cast::<H>() }
    }

    unsafe extern "C" fn retain(ctx: *const c_void) {
        // SAFETY: per the vtable's contract, an `Arc<H>` made by
        // `HostHandle::new` and not released yet.
        unsafe { Arc::increment_strong_count(ctx.cast::<H>()) };
    }

    unsafe extern "C" fn release(ctx: *const c_void) {
        // SAFETY: the reference `HostHandle::new` gave away, returned once.
        let host = unsafe { Arc::from_raw(ctx.cast::<H>()) };
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(host)));
    }

    unsafe extern "C" fn instance_name(ctx: *const c_void) -> RStr<'static> {
        // SAFETY: per the vtable's contract. The name lives as long as `ctx`,
        // which the plugin's handle keeps alive while it uses the name.
        let name = unsafe { Self::host(ctx) }.instance_name();
        // SAFETY: `name` is valid UTF-8 for as long as the ABI promises.
        unsafe { RStr::from_raw_parts(name.as_ptr(), name.len()) }
    }

    unsafe extern "C" fn publish(
        ctx: *const c_void,
        topic: RStr<'_>,
        payload: RSlice<'_, u8>,
    ) -> RResult<(), RString> {
        // SAFETY: per the vtable's contract.
        let host = unsafe { Self::host(ctx) };
        caught(|| {
            host.publish(topic.as_str(), payload.as_slice())
                .map_err(RString::from)
        })
    }

    unsafe extern "C" fn publish_typed(
        ctx: *const c_void,
        topic: RStr<'_>,
        payload: RSlice<'_, u8>,
        content_type: u8,
    ) -> RResult<(), RString> {
        // SAFETY: per the vtable's contract.
        let host = unsafe { Self::host(ctx) };
        let content = ContentType::from_abi(content_type);
        caught(|| {
            host.publish_typed(topic.as_str(), payload.as_slice(), content)
                .map_err(RString::from)
        })
    }

    unsafe extern "C" fn log(ctx: *const c_void, level: LogLevel, message: RStr<'_>) {
        // SAFETY: per the vtable's contract.
        let host = unsafe { Self::host(ctx) };
        let _ = caught(|| {
            host.log(level, message.as_str());
            Ok(())
        });
    }

    unsafe extern "C" fn call(ctx: *const c_void, request: RStr<'_>) -> RResult<RString, RString> {
        // SAFETY: per the vtable's contract.
        let host = unsafe { Self::host(ctx) };
        caught(|| {
            host.call(request.as_str())
                .map(RString::from)
                .map_err(RString::from)
        })
    }

    unsafe extern "C" fn cast(ctx: *const c_void, request: RStr<'_>) {
        // SAFETY: per the vtable's contract.
        let host = unsafe { Self::host(ctx) };
        let _ = caught(|| {
            host.cast(request.as_str());
            Ok(())
        });
    }

    staticref! {
        const TABLE: WithMetadata<HostVTable> = WithMetadata::new(HostVTable {
            abi_version: RStr::from_str(ABI_VERSION),
            release: Self::release,
            instance_name: Self::instance_name,
            publish: Self::publish,
            log: Self::log,
            call: Self::call,
            cast: Self::cast,
            retain: Self::retain,
            publish_typed: Self::publish_typed,
        })
    }

    const VTABLE: HostVTableRef = HostVTableRef(Self::TABLE.as_prefix());
}

/// Run host code called by a plugin: a panic becomes an error, never an
/// unwind into the plugin.
fn caught<T>(f: impl FnOnce() -> Result<T, RString>) -> RResult<T, RString> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result.into(),
        Err(_) => RErr(RString::from("the host failed while handling this call")),
    }
}

/// The root module every Rust plugin library exports.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(option))]
pub struct PluginModule {
    /// The plugin's name (its crate name).
    pub name: RStr<'static>,
    /// The plugin's version (its crate version).
    pub version: RStr<'static>,
    /// Create one instance from its config (the JSON text of
    /// `[plugin.config]`). The plugin owns `host` from here on, also when it
    /// fails.
    pub create:
        extern "C" fn(config_json: RStr<'_>, host: HostHandle) -> RResult<PluginHandle, CallError>,
    /// Check a config (the JSON text of `[plugin.config]`) as `create` would
    /// read it, without creating an instance: what `plughost check` runs.
    #[sabi(last_prefix_field)]
    pub validate_config: extern "C" fn(config_json: RStr<'_>) -> RResult<(), CallError>,
    // Appended fields go below, each with the ABI minor that added it.
}

impl RootModule for PluginModuleRef {
    declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = "plughost_plugin";
    const NAME: &'static str = "plughost plugin";
    const VERSION_STRINGS: VersionStrings = VersionStrings::new(ABI_VERSION);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_abi_version_and_its_parts_agree() {
        assert_eq!(ABI_VERSION, format!("{ABI_MAJOR}.{ABI_MINOR}.0"));
    }

    #[test]
    fn the_crate_major_is_the_abi_major_and_its_minor_not_older() {
        // abi_stable puts the crate's version into every type's layout and
        // refuses another major: the crate's major is the ABI's.
        let major: u32 = env!("CARGO_PKG_VERSION_MAJOR").parse().unwrap();
        let minor: u32 = env!("CARGO_PKG_VERSION_MINOR").parse().unwrap();
        assert_eq!(major, ABI_MAJOR);
        // The crate's minor is not behind the ABI's (`minor >= ABI_MINOR`,
        // spelled so that clippy accepts it while ABI_MINOR is 0).
        assert!(ABI_MINOR.checked_sub(minor).is_none_or(|ahead| ahead == 0));
    }
}
