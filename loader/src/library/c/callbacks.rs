//! The host table a C plugin calls into (publish, log, call, cast), and
//! the sinks of its `jobs` and `http` answers. Every function here runs its
//! body in one panic boundary ([`ffi_boundary`]): unwinding into C is
//! undefined behaviour.

use crate::library::PluginHost;
use plughost_api::{HttpResponse, JobReport, LogLevel};
use plughost_ffi::{
    PLUGHOST_CONTENT_BYTES as BYTES, PLUGHOST_ERROR, PLUGHOST_HEALTH_DEGRADED, PLUGHOST_HEALTH_OK,
    PLUGHOST_OK, plughost_job_report,
};
use std::ffi::{c_char, c_void};
use std::sync::Arc;

/// Collects the reports a C plugin's `jobs` hands to the host.
pub(super) unsafe extern "C" fn collect_job(sink: *mut c_void, job: *const plughost_job_report) {
    ffi_boundary((), || {
        // SAFETY: `sink` is the Vec we passed to `jobs`; `job` is valid during this call.
        let (jobs, job) = unsafe { (sink.cast::<Vec<JobReport>>().as_mut()?, job.as_ref()?) };
        let text = |ptr: *const c_char, len: usize| {
            // SAFETY: the header requires (pointer, length) pairs valid during the call.
            unsafe { bytes(ptr.cast(), len) }
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        };
        jobs.push(JobReport {
            pipeline: text(job.pipeline, job.pipeline_len),
            priority: job.priority,
            ready: job.ready != 0,
            queue: text(job.queue, job.queue_len),
            active: job.active,
            delayed: job.delayed,
            reserved: job.reserved,
            driver: text(job.driver, job.driver_len),
            error_message: text(job.error_message, job.error_message_len),
        });
        Some(())
    })
}

// The C header's numbers are the ones `HealthStatus` and `LogLevel` convert
// from (plughost_api's `From<i64>` impls): one mapping for every ABI.
const _: () = assert!(
    PLUGHOST_HEALTH_OK == 0
        && PLUGHOST_HEALTH_DEGRADED == 1
        && plughost_ffi::PLUGHOST_HEALTH_FAILING == 2
        && plughost_ffi::PLUGHOST_LOG_ERROR == LogLevel::Error as i32
        && plughost_ffi::PLUGHOST_LOG_WARN == LogLevel::Warn as i32
        && plughost_ffi::PLUGHOST_LOG_INFO == LogLevel::Info as i32
        && plughost_ffi::PLUGHOST_LOG_DEBUG == LogLevel::Debug as i32
        && plughost_ffi::PLUGHOST_LOG_TRACE == LogLevel::Trace as i32
);

/// The one panic boundary of the host's C callbacks (rustls-ffi's
/// `ffi_panic_boundary!` does the same for its API): `body` runs with its
/// panics caught, so none unwinds into C (undefined behaviour); a panic, or
/// `None` from `body` (a NULL or invalid argument), gives `refused`. Every
/// `extern "C"` function the host hands a C plugin runs its body here.
fn ffi_boundary<T>(refused: T, body: impl FnOnce() -> Option<T>) -> T {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(body))
        .ok()
        .flatten()
        .unwrap_or(refused)
}

/// `len` bytes at `ptr`; an empty slice for length 0 (where `ptr` may be NULL).
///
/// # Safety
/// When `len > 0`, `ptr` must be valid for `len` bytes for `'a`.
unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> Option<&'a [u8]> {
    match (ptr.is_null(), len) {
        (_, 0) => Some(&[]),
        (true, _) => None,
        // SAFETY: the caller guarantees `len` readable bytes.
        (false, _) => Some(unsafe { std::slice::from_raw_parts(ptr, len) }),
    }
}

/// The `Arc<dyn PluginHost>` behind a host table's `ctx`.
///
/// # Safety
/// `ctx` must be the `ctx` of a live host table made by `CLibrary::create`.
unsafe fn plugin_host<'a>(ctx: *mut c_void) -> Option<&'a Arc<dyn PluginHost>> {
    // SAFETY: per the caller, a pointer to a boxed Arc<dyn PluginHost> that outlives the instance.
    unsafe { ctx.cast::<Arc<dyn PluginHost>>().as_ref() }
}

pub(super) unsafe extern "C" fn host_publish(
    ctx: *mut c_void,
    topic: *const c_char,
    topic_len: usize,
    payload: *const u8,
    payload_len: usize,
) -> i32 {
    // SAFETY: the caller's promises are `host_publish_typed`'s.
    unsafe { host_publish_typed(ctx, topic, topic_len, payload, payload_len, BYTES) }
}

pub(super) unsafe extern "C" fn host_publish_typed(
    ctx: *mut c_void,
    topic: *const c_char,
    topic_len: usize,
    payload: *const u8,
    payload_len: usize,
    content_type: i32,
) -> i32 {
    ffi_boundary(PLUGHOST_ERROR, || {
        // SAFETY: the header requires the ctx we gave and valid (pointer, length) pairs.
        let (host, topic, payload) = unsafe {
            (
                plugin_host(ctx)?,
                bytes(topic.cast(), topic_len)?,
                bytes(payload, payload_len)?,
            )
        };
        let topic = std::str::from_utf8(topic).ok()?;
        host.publish_numbered(topic, payload, content_type)
            .then_some(PLUGHOST_OK)
    })
}

pub(super) unsafe extern "C" fn response_header(
    ctx: *mut c_void,
    name: *const c_char,
    name_len: usize,
    value: *const c_char,
    value_len: usize,
) {
    ffi_boundary((), || {
        // SAFETY: ctx is the HttpResponse of the ongoing `http` call; the
        // strings are (pointer, length) pairs valid during this call.
        let (answer, name, value) = unsafe {
            (
                ctx.cast::<HttpResponse>().as_mut()?,
                bytes(name.cast(), name_len)?,
                bytes(value.cast(), value_len)?,
            )
        };
        answer.headers.push((
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
        Some(())
    })
}

pub(super) unsafe extern "C" fn response_body(ctx: *mut c_void, data: *const u8, len: usize) {
    ffi_boundary((), || {
        // SAFETY: as in response_header.
        let (answer, data) = unsafe { (ctx.cast::<HttpResponse>().as_mut()?, bytes(data, len)?) };
        answer.body.extend_from_slice(data);
        Some(())
    })
}

pub(super) unsafe extern "C" fn host_call(
    ctx: *mut c_void,
    request: *const c_char,
    request_len: usize,
    answer: *mut c_char,
    answer_capacity: usize,
) -> i32 {
    ffi_boundary(PLUGHOST_ERROR, || {
        // SAFETY: the header requires the ctx we gave and a valid (pointer, length) pair.
        let (host, request) = unsafe { (plugin_host(ctx)?, bytes(request.cast(), request_len)?) };
        let reply = match host.call(&String::from_utf8_lossy(request)) {
            Ok(reply) => reply,
            Err(error) => serde_json::json!({"ok": false, "error": error}).to_string(),
        };
        if !answer.is_null() && answer_capacity > 0 {
            let n = reply.len().min(answer_capacity - 1);
            // SAFETY: the caller lends `answer_capacity` writable bytes; we write n + 1 <= that.
            unsafe {
                std::ptr::copy_nonoverlapping(reply.as_ptr(), answer.cast::<u8>(), n);
                *answer.add(n) = 0;
            }
        }
        reply.starts_with("{\"ok\":true").then_some(PLUGHOST_OK)
    })
}

pub(super) unsafe extern "C" fn host_cast(
    ctx: *mut c_void,
    request: *const c_char,
    request_len: usize,
) {
    ffi_boundary((), || {
        // SAFETY: as in host_call.
        let (host, request) = unsafe { (plugin_host(ctx)?, bytes(request.cast(), request_len)?) };
        host.cast(&String::from_utf8_lossy(request));
        Some(())
    })
}

pub(super) unsafe extern "C" fn host_log(
    ctx: *mut c_void,
    level: i32,
    message: *const c_char,
    message_len: usize,
) {
    ffi_boundary((), || {
        // SAFETY: as in host_publish.
        let (host, message) = unsafe { (plugin_host(ctx)?, bytes(message.cast(), message_len)?) };
        host.log(
            LogLevel::from(i64::from(level)),
            &String::from_utf8_lossy(message),
        );
        Some(())
    })
}
