//! The C ABI of plughost plugins, as `#[repr(C)]` Rust types. cbindgen turns
//! this file into `ffi/include/plughost.h`; the host uses the same types, so
//! the header and the loader cannot disagree.
//!
//! Versioning (`docs/compatibility.md`): [`plughost_plugin`] and
//! [`plughost_host`] carry their size; fields are only ever appended to them,
//! with a minor version bump. A host reads a plugin descriptor up to the size
//! the plugin declares, and treats fields beyond it as NULL. Major versions
//! must match. A plugin of a newer minor than its host loads too: the host
//! never calls the descriptor fields past its own (and reports the plugin
//! partly supported when any is set), and the plugin checks the host table's
//! `size` (`PLUGHOST_HOST_HAS`) before calling a host function added after
//! 1.0. Every other struct here stays as it is for the whole major version.
#![allow(non_camel_case_types, reason = "C names, as they appear in plughost.h")]
#![warn(missing_docs)]

use std::ffi::{c_char, c_void};

/// The ABI major version this header describes. A host refuses a plugin
/// whose major version differs.
pub const PLUGHOST_ABI_MAJOR: u16 = 1;
/// The ABI minor version this header describes. Hosts of every 1.x minor
/// load the plugin; one older than this header calls only what it knows.
pub const PLUGHOST_ABI_MINOR: u16 = 3;

/// Success.
pub const PLUGHOST_OK: i32 = 0;
/// Failure; the callee wrote a message into the error buffer.
pub const PLUGHOST_ERROR: i32 = 1;

/// Health: working normally.
pub const PLUGHOST_HEALTH_OK: i32 = 0;
/// Health: working, but impaired.
pub const PLUGHOST_HEALTH_DEGRADED: i32 = 1;
/// Health: not working.
pub const PLUGHOST_HEALTH_FAILING: i32 = 2;

/// Content type (since ABI 1.3): raw bytes, meaning unknown to the host.
/// What a plugin built before 1.3 publishes.
pub const PLUGHOST_CONTENT_BYTES: i32 = 0;
/// Content type (since ABI 1.3): UTF-8 text (the host checks it).
pub const PLUGHOST_CONTENT_TEXT: i32 = 1;
/// Content type (since ABI 1.3): one JSON value as UTF-8 text (the host
/// checks it).
pub const PLUGHOST_CONTENT_JSON: i32 = 2;

/// Log level: something failed.
pub const PLUGHOST_LOG_ERROR: i32 = 1;
/// Log level: something looks wrong.
pub const PLUGHOST_LOG_WARN: i32 = 2;
/// Log level: normal operation.
pub const PLUGHOST_LOG_INFO: i32 = 3;
/// Log level: detail for debugging.
pub const PLUGHOST_LOG_DEBUG: i32 = 4;
/// Log level: very verbose detail.
pub const PLUGHOST_LOG_TRACE: i32 = 5;

/// One event, lent to `on_event` for the duration of the call. Every pointer
/// is owned by the host and valid only until `on_event` returns; copy what
/// you keep. No string here is NUL-terminated.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct plughost_event {
    /// Host-assigned id, increasing in publication order.
    pub id: u64,
    /// Milliseconds since the Unix epoch when the host accepted the event.
    pub timestamp_ms: u64,
    /// The topic (`topic_len` bytes of UTF-8), such as `orders.created`.
    pub topic: *const c_char,
    /// Length of `topic` in bytes.
    pub topic_len: usize,
    /// The payload bytes (for JSON input, the compact JSON text). May be
    /// NULL when `payload_len` is 0.
    pub payload: *const u8,
    /// Length of `payload` in bytes.
    pub payload_len: usize,
    /// The publishing instance's name, or `host` (`source_len` bytes of UTF-8).
    pub source: *const c_char,
    /// Length of `source` in bytes.
    pub source_len: usize,
    /// Since ABI 1.3: what the payload is, a PLUGHOST_CONTENT_* value. Read
    /// it only when `PLUGHOST_EVENT_HAS(host, content_type)`: a host older
    /// than 1.3 lends a shorter event. A host of a later minor may send a
    /// value this header does not know: treat it as bytes.
    pub content_type: i32,
}

/// One job pipeline's state (RoadRunner's JobsReport fields), lent to the
/// host's `report` callback for the duration of that call. Strings are
/// pointer + length, not NUL-terminated; NULL is allowed when the length is 0.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct plughost_job_report {
    /// Pipeline name.
    pub pipeline: *const c_char,
    /// Length of `pipeline`.
    pub pipeline_len: usize,
    /// Pipeline priority.
    pub priority: u64,
    /// Non-zero when the pipeline is ready to consume.
    pub ready: i32,
    /// Queue name.
    pub queue: *const c_char,
    /// Length of `queue`.
    pub queue_len: usize,
    /// Jobs being processed.
    pub active: i64,
    /// Jobs delayed.
    pub delayed: i64,
    /// Jobs reserved.
    pub reserved: i64,
    /// Driver name.
    pub driver: *const c_char,
    /// Length of `driver`.
    pub driver_len: usize,
    /// The last error (length 0 when none).
    pub error_message: *const c_char,
    /// Length of `error_message`.
    pub error_message_len: usize,
}

/// An HTTP request lent to a plugin's `http` function for the duration of
/// the call. Strings are pointer + length, not NUL-terminated.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct plughost_http_request {
    /// `GET`, `POST`, ...
    pub method: *const c_char,
    /// Length of `method`.
    pub method_len: usize,
    /// The path after `/plugins/NAME`, starting with `/`.
    pub path: *const c_char,
    /// Length of `path`.
    pub path_len: usize,
    /// The query string without `?` (length 0 when none).
    pub query: *const c_char,
    /// Length of `query`.
    pub query_len: usize,
    /// The body (NULL when `body_len` is 0).
    pub body: *const u8,
    /// Length of `body`.
    pub body_len: usize,
}

/// Where a plugin writes its HTTP answer. Owned by the host, valid during
/// the `http` call. Set `status` (200 unless changed); add headers and body
/// bytes through the functions, which copy what they are given.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct plughost_http_response {
    /// The status code to answer.
    pub status: u16,
    /// Opaque host data: pass it back to the functions below.
    pub ctx: *mut c_void,
    /// Add a header.
    pub header: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            name: *const c_char,
            name_len: usize,
            value: *const c_char,
            value_len: usize,
        ),
    >,
    /// Append bytes to the body.
    pub body: Option<unsafe extern "C" fn(ctx: *mut c_void, bytes: *const u8, len: usize)>,
}

/// What the host offers an instance. Owned by the host; the pointer given to
/// `create` stays valid until `destroy` returns (or, without `destroy`,
/// until the instance is stopped). Its functions are thread-safe: they may
/// be called from any thread while the instance exists, that is from the
/// start of `create` until `destroy` returns. A plugin that starts threads
/// of its own (a socket reader, a timer) publishes from them with `publish`
/// and joins them in `destroy`: a call after `destroy` returned is undefined
/// behaviour (the table is freed).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct plughost_host {
    /// `sizeof(plughost_host)` as the host was built; fields past it are absent.
    pub size: u32,
    /// The instance name from plugins.toml, NUL-terminated.
    pub instance_name: *const c_char,
    /// Opaque host data: pass it back as the first argument of the functions below.
    pub ctx: *mut c_void,
    /// Publish an event as this instance. `topic` is `topic_len` bytes of
    /// UTF-8 (a concrete topic, no wildcards); `payload` is `payload_len`
    /// bytes (NULL if 0). The host copies both before returning. Returns
    /// PLUGHOST_OK, or PLUGHOST_ERROR for an invalid or reserved topic, a
    /// payload over `max_event_bytes`, or when the host is gone.
    ///
    /// Callable from any thread of the plugin between `create` and the
    /// return of `destroy` (C ABI 1.3 says so; 1.2 hosts allowed it too).
    /// From the thread that calls `on_event`, the instance waits for room in
    /// full mailboxes; from another thread, only that thread waits. The
    /// event is never delivered back to this instance unless its
    /// `[[plugin]]` sets `echo = true`. It still works inside `destroy`:
    /// join your threads there.
    pub publish: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            topic: *const c_char,
            topic_len: usize,
            payload: *const u8,
            payload_len: usize,
        ) -> i32,
    >,
    /// Log `message_len` bytes of UTF-8 at `level` (a PLUGHOST_LOG_* value)
    /// through the host's log, tagged with the instance name.
    pub log: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            level: i32,
            message: *const c_char,
            message_len: usize,
        ),
    >,
    /// Since ABI 1.2 (check with `PLUGHOST_HOST_HAS(host, call)` before use:
    /// an older host's table ends before it). Run a host command, given as
    /// `request_len` bytes of JSON such as `{"cmd": "list"}` (the commands of
    /// `plughost ctl`), and write the host's JSON answer, NUL-terminated and
    /// cut at `answer_capacity` bytes, into `answer`. Returns PLUGHOST_OK when
    /// the command succeeded. A command about the calling instance itself
    /// (stop, restart) or a reload is accepted at once and runs afterwards.
    pub call: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            request: *const c_char,
            request_len: usize,
            answer: *mut c_char,
            answer_capacity: usize,
        ) -> i32,
    >,
    /// Since ABI 1.2 (check with `PLUGHOST_HOST_HAS(host, cast)`). Run a host
    /// command without waiting for it.
    pub cast:
        Option<unsafe extern "C" fn(ctx: *mut c_void, request: *const c_char, request_len: usize)>,
    /// Since ABI 1.3 (check with `PLUGHOST_HOST_HAS(host, publish_typed)`).
    /// Publish an event as `publish` does, with its content type, a
    /// PLUGHOST_CONTENT_* value: the host refuses (PLUGHOST_ERROR) a
    /// `PLUGHOST_CONTENT_TEXT` payload that is not UTF-8, a
    /// `PLUGHOST_CONTENT_JSON` payload that is not one JSON value, and a
    /// value it does not know. `publish` publishes `PLUGHOST_CONTENT_BYTES`.
    pub publish_typed: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            topic: *const c_char,
            topic_len: usize,
            payload: *const u8,
            payload_len: usize,
            content_type: i32,
        ) -> i32,
    >,
    /// Since ABI 1.3: `sizeof(plughost_event)` as the host was built: the
    /// events it lends have the fields that fit in it. Check with
    /// `PLUGHOST_EVENT_HAS(host, field)`, never directly (an older host's
    /// table ends before it).
    pub event_size: u32,
}

/// The descriptor a C plugin exports through `plughost_plugin_entry`. It must
/// stay valid (usually `static const`) for as long as the library is loaded.
/// Set `size` to `sizeof(plughost_plugin)`: fields are appended in later
/// minor versions, and the host reads only the first `size` bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct plughost_plugin {
    /// PLUGHOST_ABI_MAJOR as the plugin was compiled.
    pub abi_major: u16,
    /// PLUGHOST_ABI_MINOR as the plugin was compiled.
    pub abi_minor: u16,
    /// `sizeof(plughost_plugin)` as the plugin was compiled.
    pub size: u32,
    /// The plugin's name, NUL-terminated, static.
    pub name: *const c_char,
    /// The plugin's version, NUL-terminated, static.
    pub version: *const c_char,
    /// Required. Create an instance. `config_json` is the instance's
    /// `[plugin.config]` table as `config_json_len` bytes of JSON text (NUL-
    /// terminated too, for convenience), valid during the call. `host` stays
    /// valid for the instance's lifetime. On success store the instance in
    /// `*instance_out` and return PLUGHOST_OK; on failure write a message to
    /// `error` and return PLUGHOST_ERROR (the host then calls nothing else on it).
    pub create: Option<
        unsafe extern "C" fn(
            host: *const plughost_host,
            config_json: *const c_char,
            config_json_len: usize,
            instance_out: *mut *mut c_void,
            error: *mut c_char,
            error_capacity: usize,
        ) -> i32,
    >,
    /// Required. Handle one event. Return PLUGHOST_OK, or PLUGHOST_ERROR with
    /// a message in `error`: the event counts as failed and the instance goes on.
    pub on_event: Option<
        unsafe extern "C" fn(
            instance: *mut c_void,
            event: *const plughost_event,
            error: *mut c_char,
            error_capacity: usize,
        ) -> i32,
    >,
    /// Optional (NULL: nothing to do). Flush what the instance holds; called
    /// once. It may publish: every subscriber gets it, wherever it is listed.
    /// At the host's shutdown, `on_event` may still be called after `stop`
    /// returned, until `destroy`, with events published after the queues
    /// drained (by other instances' `stop`, or in reaction to those); nothing
    /// else is. Keep what `on_event` needs until `destroy`. On `ctl stop`, a
    /// restart or a reload, `destroy` follows `stop` at once.
    pub stop: Option<
        unsafe extern "C" fn(
            instance: *mut c_void,
            error: *mut c_char,
            error_capacity: usize,
        ) -> i32,
    >,
    /// Optional (NULL: nothing to free). Free the instance; called once, last,
    /// also after a failed `stop`. The instance pointer is dead afterwards.
    pub destroy: Option<unsafe extern "C" fn(instance: *mut c_void)>,
    /// Optional, since ABI 1.1 (NULL: the instance is left out of `/health`).
    /// Return a PLUGHOST_HEALTH_* value; a NUL-terminated reason may be written
    /// into `message` (at most `message_capacity` bytes). Called on the
    /// instance's thread between events; answer quickly: the host counts an
    /// answer later than its `check_timeout` as failing.
    pub health: Option<
        unsafe extern "C" fn(
            instance: *mut c_void,
            message: *mut c_char,
            message_capacity: usize,
        ) -> i32,
    >,
    /// Optional, since ABI 1.1 (NULL: left out of `/ready`). Return 1 when
    /// ready to take work, 0 when not; a reason may be written into `message`.
    /// Called like `health`.
    pub ready: Option<
        unsafe extern "C" fn(
            instance: *mut c_void,
            message: *mut c_char,
            message_capacity: usize,
        ) -> i32,
    >,
    /// Optional, since ABI 1.1 (NULL: left out of `/jobs`). Call
    /// `report(sink, &job)` once per pipeline (the host copies the report
    /// during the call), then return PLUGHOST_OK. Called like `health`.
    pub jobs: Option<
        unsafe extern "C" fn(
            instance: *mut c_void,
            sink: *mut c_void,
            report: Option<unsafe extern "C" fn(sink: *mut c_void, job: *const plughost_job_report)>,
        ) -> i32,
    >,
    /// Optional, since ABI 1.2. Background work, called every `tick_interval`
    /// (set per instance in plugins.toml) on the instance's thread, between
    /// events. May publish. An error is logged; the instance goes on.
    pub tick: Option<
        unsafe extern "C" fn(
            instance: *mut c_void,
            error: *mut c_char,
            error_capacity: usize,
        ) -> i32,
    >,
    /// Optional, since ABI 1.2: the routes the plugin serves under
    /// `/plugins/NAME/` on the status server, a NULL-terminated array of
    /// static NUL-terminated strings: exact paths (`"/teapot"`) or prefixes
    /// (`"/files/"` followed by `*`). NULL: none.
    pub routes: *const *const c_char,
    /// Optional, since ABI 1.2 (needed with `routes`). Answer a request on
    /// the instance's thread: fill `response` and return PLUGHOST_OK, or
    /// return PLUGHOST_ERROR for 404.
    pub http: Option<
        unsafe extern "C" fn(
            instance: *mut c_void,
            request: *const plughost_http_request,
            response: *mut plughost_http_response,
        ) -> i32,
    >,
}

/// The type of `plughost_plugin_entry`, the one symbol a C plugin exports.
pub type plughost_entry_fn = Option<unsafe extern "C" fn() -> *const plughost_plugin>;

/// The name of the entry symbol, NUL-terminated.
pub const PLUGHOST_ENTRY_SYMBOL: &[u8] = b"plughost_plugin_entry\0";

/// The smallest descriptor a 1.x plugin may declare: the 1.0 fields, through `destroy`.
pub const PLUGHOST_PLUGIN_MIN_SIZE: usize = std::mem::offset_of!(plughost_plugin, destroy)
    + std::mem::size_of::<Option<unsafe extern "C" fn(*mut c_void)>>();
