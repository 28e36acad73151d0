//! C plugins: the descriptor behind `plughost_plugin_entry`, checked for its
//! ABI version and size, and the adapter that calls its function pointers.
//! The host table handed to C points at the instance's `Arc<dyn PluginHost>`; its functions catch
//! every panic, since unwinding into C is undefined behaviour.

mod callbacks;

use super::fatal::Culprit;
use super::{LoadError, PluginHost};
use crate::event::EventView;
use crate::instance::{CallFailure, Instance};
use plughost_api::{Health, HealthStatus, HttpRequest, HttpResponse, JobReport, Readiness};
use plughost_ffi::{
    PLUGHOST_ABI_MAJOR, PLUGHOST_ABI_MINOR, PLUGHOST_ENTRY_SYMBOL, PLUGHOST_OK,
    PLUGHOST_PLUGIN_MIN_SIZE, plughost_event, plughost_host, plughost_http_request,
    plughost_http_response, plughost_plugin,
};
use std::ffi::{CStr, CString, c_char, c_void};
use std::path::Path;
use std::sync::Arc;

use callbacks::{
    collect_job, host_call, host_cast, host_log, host_publish, host_publish_typed, response_body,
    response_header,
};

/// Room the host gives a plugin for an error message, NUL included.
const ERROR_CAPACITY: usize = 1024;

pub(crate) struct CLibrary {
    pub name: String,
    pub version: String,
    pub abi_major: u16,
    pub abi_minor: u16,
    /// Built against a newer minor, it sets fields past this host's
    /// descriptor: capabilities this host does not know and never calls.
    pub unknown_capabilities: bool,
    descriptor: Arc<Descriptor>,
}

/// The most a descriptor may declare: far beyond any 1.x descriptor (a few
/// hundred bytes), small enough that reading it is no risk.
const DESCRIPTOR_MAX_BYTES: usize = 4096;

/// A plugin's descriptor, copied out of the library at load.
struct Descriptor(plughost_plugin);

// SAFETY: the descriptor holds only function pointers and pointers to static,
// immutable strings of a library that is never unloaded.
unsafe impl Send for Descriptor {}
// SAFETY: as above; nothing in it is ever written after load.
unsafe impl Sync for Descriptor {}

impl CLibrary {
    pub(super) fn load(
        path: &Path,
        handle: &libloading::os::unix::Library,
    ) -> Result<CLibrary, LoadError> {
        // Its descriptor does not keep the C ABI this host speaks.
        let refuse = |reason: String| LoadError::abi_mismatch(path, reason);
        // SAFETY: the header declares the entry as `const plughost_plugin *(void)`.
        let entry = unsafe {
            handle.get::<unsafe extern "C" fn() -> *const plughost_plugin>(PLUGHOST_ENTRY_SYMBOL)
        }
        .map_err(|e| {
            LoadError::not_a_plugin(path, format!("cannot read plughost_plugin_entry: {e}"))
        })?;
        // SAFETY: calling the plugin's own entry point, as the ABI prescribes.
        let raw = unsafe { entry() };
        if raw.is_null() {
            return Err(LoadError::load_failed(
                path,
                "plughost_plugin_entry returned NULL",
            ));
        }
        // SAFETY: every ABI version starts with these three fields.
        let (major, minor, size) =
            unsafe { ((*raw).abi_major, (*raw).abi_minor, (*raw).size as usize) };
        let host = format!("{PLUGHOST_ABI_MAJOR}.{PLUGHOST_ABI_MINOR}");
        if major != PLUGHOST_ABI_MAJOR {
            return Err(refuse(format!(
                "built for C ABI {major}.{minor}, but this host speaks {host}: rebuild it against this host's plughost.h"
            )));
        }
        if size < PLUGHOST_PLUGIN_MIN_SIZE {
            return Err(refuse(format!(
                "its plughost_plugin descriptor declares {size} bytes, fewer than the {PLUGHOST_PLUGIN_MIN_SIZE} of C ABI {major}.0: set `size = sizeof(plughost_plugin)`"
            )));
        }
        if size > DESCRIPTOR_MAX_BYTES {
            return Err(refuse(format!(
                "its plughost_plugin descriptor declares {size} bytes, more than the {DESCRIPTOR_MAX_BYTES} any C ABI {major}.x descriptor may have: set `size = sizeof(plughost_plugin)`"
            )));
        }
        // A newer minor may set fields this host does not know: they are
        // never called, and the plugin is reported as partly supported.
        let ours = std::mem::size_of::<plughost_plugin>();
        let unknown_capabilities = minor > PLUGHOST_ABI_MINOR
            && size > ours
            // SAFETY: the plugin vouches for `size` readable bytes at `raw`.
            && unsafe { std::slice::from_raw_parts(raw.cast::<u8>(), size) }[ours..]
                .iter()
                .any(|&byte| byte != 0);
        // Fields the plugin's version does not have stay zero, that is NULL.
        // SAFETY: all-zero is a valid plughost_plugin (null pointers, `None`s, zeros).
        let mut descriptor: plughost_plugin = unsafe { std::mem::zeroed() };
        let known = size.min(ours);
        // SAFETY: the plugin vouches for `size` readable bytes at `raw`; we copy
        // at most that many, and no more than our own struct holds.
        unsafe {
            std::ptr::copy_nonoverlapping(
                raw.cast::<u8>(),
                (&raw mut descriptor).cast::<u8>(),
                known,
            )
        };
        if descriptor.create.is_none() {
            return Err(refuse(
                "its descriptor has no `create` function (it is required)".to_owned(),
            ));
        }
        if descriptor.on_event.is_none() {
            return Err(refuse(
                "its descriptor has no `on_event` function (it is required)".to_owned(),
            ));
        }
        let text = |ptr: *const c_char, what: &str| -> Result<String, LoadError> {
            if ptr.is_null() {
                return Err(refuse(format!("its descriptor's `{what}` is NULL")));
            }
            // SAFETY: non-null, and the ABI requires a static NUL-terminated string.
            Ok(unsafe { CStr::from_ptr(ptr) }
                .to_string_lossy()
                .into_owned())
        };
        Ok(CLibrary {
            name: text(descriptor.name, "name")?,
            version: text(descriptor.version, "version")?,
            abi_major: major,
            abi_minor: minor,
            unknown_capabilities,
            descriptor: Arc::new(Descriptor(descriptor)),
        })
    }

    pub(crate) fn create(
        &self,
        config_json: &str,
        host: Arc<dyn PluginHost>,
        culprit: Arc<Culprit>,
    ) -> Result<Box<dyn Instance>, CallFailure> {
        let name = CString::new(host.instance_name())
            .map_err(|_| CallFailure::Error("instance name holds a NUL".into()))?;
        let host: Box<Arc<dyn PluginHost>> = Box::new(host);
        let table = Box::new(plughost_host {
            size: std::mem::size_of::<plughost_host>() as u32,
            instance_name: name.as_ptr(),
            ctx: (&raw const *host).cast_mut().cast::<c_void>(),
            publish: Some(host_publish),
            log: Some(host_log),
            call: Some(host_call),
            cast: Some(host_cast),
            publish_typed: Some(host_publish_typed),
            event_size: std::mem::size_of::<plughost_event>() as u32,
        });
        let config = CString::new(config_json)
            .map_err(|_| CallFailure::Error("config holds a NUL".into()))?;
        let create = self.descriptor.0.create.expect("checked at load");
        let mut error = vec![0 as c_char; ERROR_CAPACITY].into_boxed_slice();
        let mut instance: *mut c_void = std::ptr::null_mut();
        let calling = culprit.calling("create");
        // SAFETY: arguments follow the header: the host table and the name
        // outlive the instance (kept in CInstance), the config and error
        // buffer outlive the call.
        let status = unsafe {
            create(
                &raw const *table,
                config.as_ptr(),
                config_json.len(),
                &mut instance,
                error.as_mut_ptr(),
                ERROR_CAPACITY,
            )
        };
        drop(calling);
        if status != PLUGHOST_OK {
            return Err(CallFailure::Error(message(&error)));
        }
        Ok(Box::new(CInstance {
            descriptor: self.descriptor.clone(),
            instance,
            culprit,
            error,
            _table: table,
            host,
            _name: name,
        }))
    }
}

/// The text a plugin wrote into an error buffer.
fn message(buffer: &[c_char]) -> String {
    // SAFETY: c_char and u8 have the same size and alignment.
    let bytes = unsafe { std::slice::from_raw_parts(buffer.as_ptr().cast::<u8>(), buffer.len()) };
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    match String::from_utf8_lossy(&bytes[..end]).trim() {
        "" => "failed (the plugin gave no message)".to_owned(),
        text => text.to_owned(),
    }
}

struct CInstance {
    descriptor: Arc<Descriptor>,
    instance: *mut c_void,
    /// Named by the fatal-signal report while a call runs.
    culprit: Arc<Culprit>,
    error: Box<[c_char]>,
    _table: Box<plughost_host>,
    host: Box<Arc<dyn PluginHost>>,
    _name: CString,
}

// SAFETY: the C instance is used only by the thread that owns this value, one
// call at a time, as the header promises plugins; the host table it points
// at is immutable and its Arc<dyn PluginHost> is Sync.
unsafe impl Send for CInstance {}

impl CInstance {
    fn call(
        &mut self,
        _calling: super::fatal::Calling,
        call: impl FnOnce(*mut c_void, *mut c_char, usize) -> i32,
    ) -> Result<(), CallFailure> {
        self.error[0] = 0;
        match call(self.instance, self.error.as_mut_ptr(), self.error.len()) {
            PLUGHOST_OK => Ok(()),
            _ => Err(CallFailure::Error(message(&self.error))),
        }
    }
}

impl Instance for CInstance {
    fn on_event(&mut self, event: &EventView<'_>) -> Result<(), CallFailure> {
        let raw = plughost_event {
            id: event.id,
            timestamp_ms: event.timestamp_ms,
            topic: event.topic.as_ptr().cast(),
            topic_len: event.topic.len(),
            payload: event.payload.as_ptr(),
            payload_len: event.payload.len(),
            source: event.source.as_ptr().cast(),
            source_len: event.source.len(),
            content_type: i32::from(event.content.to_abi()),
        };
        let on_event = self.descriptor.0.on_event.expect("checked at load");
        let calling = self.culprit.handling(event.topic);
        // SAFETY: the event and the error buffer outlive the call; the
        // instance came from this library's `create`.
        self.call(calling, |instance, error, capacity| unsafe {
            on_event(instance, &raw, error, capacity)
        })
    }

    fn stop(&mut self) -> Result<(), CallFailure> {
        let Some(stop) = self.descriptor.0.stop else {
            return Ok(());
        };
        let calling = self.culprit.calling("stop");
        // SAFETY: as in on_event; stop is called once, after the last event.
        self.call(calling, |instance, error, capacity| unsafe {
            stop(instance, error, capacity)
        })
    }

    fn health(&mut self) -> Result<Option<Health>, CallFailure> {
        Ok(self
            .verdict("health", self.descriptor.0.health)
            .map(|(verdict, message)| Health {
                status: HealthStatus::from(i64::from(verdict)),
                message,
            }))
    }

    fn ready(&mut self) -> Result<Option<Readiness>, CallFailure> {
        Ok(self
            .verdict("ready", self.descriptor.0.ready)
            .map(|(verdict, message)| Readiness {
                ready: verdict != 0,
                message,
            }))
    }

    fn tick(&mut self) -> Result<(), CallFailure> {
        let Some(tick) = self.descriptor.0.tick else {
            return Ok(());
        };
        let calling = self.culprit.calling("tick");
        // SAFETY: as in on_event.
        self.call(calling, |instance, error, capacity| unsafe {
            tick(instance, error, capacity)
        })
    }

    fn routes(&self) -> Vec<String> {
        let _calling = self.culprit.calling("routes");
        let mut routes = Vec::new();
        let mut entry = self.descriptor.0.routes;
        while !entry.is_null() && routes.len() < 256 {
            // SAFETY: the header requires a NULL-terminated array of static C strings.
            let route = unsafe { *entry };
            if route.is_null() {
                break;
            }
            // SAFETY: a static NUL-terminated string, per the header.
            routes.push(
                unsafe { CStr::from_ptr(route) }
                    .to_string_lossy()
                    .into_owned(),
            );
            // SAFETY: still inside the array: its NULL end was not reached yet.
            entry = unsafe { entry.add(1) };
        }
        routes
    }

    fn http(&mut self, request: HttpRequest) -> Result<Option<HttpResponse>, CallFailure> {
        let Some(http) = self.descriptor.0.http else {
            return Ok(None);
        };
        let raw = plughost_http_request {
            method: request.method.as_ptr().cast(),
            method_len: request.method.len(),
            path: request.path.as_ptr().cast(),
            path_len: request.path.len(),
            query: request.query.as_ptr().cast(),
            query_len: request.query.len(),
            body: request.body.as_ptr(),
            body_len: request.body.len(),
        };
        let mut answer = HttpResponse {
            status: 200,
            headers: Vec::new(),
            body: Vec::new(),
        };
        let mut response = plughost_http_response {
            status: 200,
            ctx: (&raw mut answer).cast(),
            header: Some(response_header),
            body: Some(response_body),
        };
        let calling = self.culprit.calling("http");
        // SAFETY: request and response (and the answer they point at) outlive the call.
        let status = unsafe { http(self.instance, &raw const raw, &raw mut response) };
        drop(calling);
        answer.status = response.status;
        Ok((status == PLUGHOST_OK).then_some(answer))
    }

    fn jobs(&mut self) -> Result<Option<Vec<JobReport>>, CallFailure> {
        let Some(jobs) = self.descriptor.0.jobs else {
            return Ok(None);
        };
        let mut reports: Vec<JobReport> = Vec::new();
        let _calling = self.culprit.calling("jobs");
        // SAFETY: the sink is our Vec, alive for the call; `collect_job` matches the header's signature.
        let status = unsafe { jobs(self.instance, (&raw mut reports).cast(), Some(collect_job)) };
        match status {
            PLUGHOST_OK => Ok(Some(reports)),
            _ => Err(CallFailure::Error("jobs report failed".to_owned())),
        }
    }
}

impl CInstance {
    /// Call a `health`/`ready` style function: an int verdict plus an optional message.
    fn verdict(
        &mut self,
        call: &'static str,
        function: Option<unsafe extern "C" fn(*mut c_void, *mut c_char, usize) -> i32>,
    ) -> Option<(i32, String)> {
        let function = function?;
        let _calling = self.culprit.calling(call);
        self.error[0] = 0;
        // SAFETY: the instance came from `create`; the buffer outlives the call.
        let verdict = unsafe { function(self.instance, self.error.as_mut_ptr(), self.error.len()) };
        let text = message(&self.error);
        Some((
            verdict,
            if self.error[0] == 0 {
                String::new()
            } else {
                text
            },
        ))
    }
}

impl Drop for CInstance {
    fn drop(&mut self) {
        if let Some(destroy) = self.descriptor.0.destroy {
            let _calling = self.culprit.calling("destroy");
            // SAFETY: called once, last, on the instance's own thread.
            unsafe { destroy(self.instance) };
        }
        // From here on the table's functions must not be called (the header
        // says so); a `publish` that still comes is refused, not routed.
        self.host.retire();
    }
}
