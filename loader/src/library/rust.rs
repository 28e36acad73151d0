//! Rust plugins: abi_stable root modules, layout-checked at load, and the
//! adapter that drives their trait object. Each library is loaded through its
//! own header (`lib_header_from_path`), never `RootModule::load_from_file`,
//! which caches the first module of a type for the whole process.

use super::fatal::Culprit;
use super::{LoadError, SharedHost};
use crate::event::EventView;
use crate::instance::{CallFailure, Instance};
use abi_stable::library::{LibraryError, RootModule, lib_header_from_path};
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RArc, RErr, ROk, RResult, RSlice, RStr, RString};
use plughost_api::abi::{CallError, EventRef, HostApi, HostApi_TO, PluginHandle, PluginModuleRef};
use plughost_api::abi::{HeaderAbi, HttpRequestAbi};
use plughost_api::{
    Health, HealthStatus, HttpRequest, HttpResponse, JobReport, LogLevel, Readiness,
};
use std::path::Path;
use std::sync::Arc;

/// The symbol abi_stable libraries export their header under.
pub(super) const ROOT_SYMBOL: &[u8] = b"_1as_0lib_1header_0root_bmodule_bloader\0";

pub(crate) struct RustLibrary {
    module: PluginModuleRef,
    /// The plughost-api version the library was built against.
    api_version: String,
}

impl RustLibrary {
    pub(super) fn load(path: &Path, fd_path: &Path) -> Result<RustLibrary, LoadError> {
        let header = lib_header_from_path(fd_path)
            .map_err(|e| LoadError::unusable(path, describe(&e, None)))?;
        // What the library declares in its header, which may differ from this
        // host's version and still be compatible (a newer patch release).
        let api_version = header.version_strings().version.to_string();
        let module = header
            .init_root_module::<PluginModuleRef>()
            .map_err(|e| LoadError::unusable(path, describe(&e, Some(&api_version))))?;
        Ok(RustLibrary {
            module,
            api_version,
        })
    }

    /// The plughost-api version the library declares it was built against.
    pub(crate) fn api_version(&self) -> &str {
        &self.api_version
    }

    pub(crate) fn name(&self) -> String {
        self.module.name().to_string()
    }

    pub(crate) fn version(&self) -> String {
        self.module.version().to_string()
    }

    /// Check `config_json` as `create` would read it, without creating an
    /// instance; `None` when the plugin was built before plugins could.
    pub(crate) fn validate_config(&self, config_json: &str) -> Option<Result<(), String>> {
        let validate = self.module.validate_config()?;
        Some(
            validate(RStr::from_str(config_json))
                .into_result()
                .map_err(|e| e.message.into_string()),
        )
    }

    pub(crate) fn create(
        &self,
        config_json: &str,
        host: SharedHost,
        culprit: Arc<Culprit>,
    ) -> Result<Box<dyn Instance>, CallFailure> {
        let host = HostApi_TO::from_ptr(RArc::new(Link(host)), TD_Opaque);
        let created = {
            let _calling = culprit.calling("create");
            (self.module.create())(RStr::from_str(config_json), host)
        };
        match created {
            ROk(plugin) => Ok(Box::new(RustInstance { plugin, culprit })),
            RErr(error) => Err(failure(error)),
        }
    }
}

/// One line for a loading error; `library_api` is the plughost-api version
/// the library declares, once its header could be read.
fn describe(error: &LibraryError, library_api: Option<&str>) -> String {
    let host_api = PluginModuleRef::VERSION_STRINGS.version;
    let other_api = |library_api: &dyn std::fmt::Display| {
        format!(
            "built against plughost-api {library_api}, but this host speaks {host_api}: rebuild the plugin against plughost-api {host_api}"
        )
    };
    match (error, library_api) {
        // abi_stable refuses an older 0.x minor (or another major) here ...
        (LibraryError::IncompatibleVersionNumber { actual_version, .. }, _) => {
            other_api(actual_version)
        }
        // ... and a newer 0.x minor in the layout check, as a package version
        // mismatch: the same problem for the user, so the same line.
        (LibraryError::AbiInstability(_), Some(library_api)) if library_api != host_api.as_str() => {
            other_api(&library_api)
        }
        (LibraryError::AbiInstability(_), _) => {
            "its plugin ABI layout differs from this host's (built against another plughost-api?): rebuild the plugin against this host's plughost-api".to_owned()
        }
        (LibraryError::InvalidAbiHeader(_) | LibraryError::InvalidCAbi { .. }, _) => {
            "built with an incompatible abi_stable: rebuild the plugin against this host's plughost-api".to_owned()
        }
        (LibraryError::RootModule { err, .. }, _) => {
            format!("its root module failed to initialize: {}", one_line(&err.to_string()))
        }
        (other, _) => one_line(&other.to_string()),
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn failure(error: CallError) -> CallFailure {
    let message = error.message.into_string();
    if error.panicked {
        CallFailure::Panic(message)
    } else {
        CallFailure::Error(message)
    }
}

struct RustInstance {
    plugin: PluginHandle,
    /// Named by the fatal-signal report while a call runs.
    culprit: Arc<Culprit>,
}

impl Instance for RustInstance {
    fn on_event(&mut self, event: &EventView<'_>) -> Result<(), CallFailure> {
        let raw = EventRef {
            id: event.id,
            timestamp_ms: event.timestamp_ms,
            topic: RStr::from_str(event.topic),
            payload: RSlice::from_slice(event.payload),
            source: RStr::from_str(event.source),
        };
        let _calling = self.culprit.handling(event.topic);
        self.plugin.on_event(raw).into_result().map_err(failure)
    }

    fn stop(&mut self) -> Result<(), CallFailure> {
        let _calling = self.culprit.calling("stop");
        self.plugin.stop().into_result().map_err(failure)
    }

    fn health(&mut self) -> Result<Option<Health>, CallFailure> {
        let _calling = self.culprit.calling("health");
        let report = self
            .plugin
            .health()
            .into_result()
            .map_err(failure)?
            .into_option();
        Ok(report.map(|h| Health {
            status: match h.status {
                0 => HealthStatus::Ok,
                1 => HealthStatus::Degraded,
                _ => HealthStatus::Failing,
            },
            message: h.message.into_string(),
        }))
    }

    fn ready(&mut self) -> Result<Option<Readiness>, CallFailure> {
        let _calling = self.culprit.calling("ready");
        let report = self
            .plugin
            .ready()
            .into_result()
            .map_err(failure)?
            .into_option();
        Ok(report.map(|r| Readiness {
            ready: r.ready,
            message: r.message.into_string(),
        }))
    }

    fn tick(&mut self) -> Result<(), CallFailure> {
        let _calling = self.culprit.calling("tick");
        self.plugin.tick().into_result().map_err(failure)
    }

    fn routes(&self) -> Vec<String> {
        let _calling = self.culprit.calling("routes");
        self.plugin
            .routes()
            .into_iter()
            .map(|r| r.into_string())
            .collect()
    }

    fn http(&mut self, request: HttpRequest) -> Result<Option<HttpResponse>, CallFailure> {
        let header = |(name, value): (String, String)| HeaderAbi {
            name: name.into(),
            value: value.into(),
        };
        let request = HttpRequestAbi {
            method: request.method.into(),
            path: request.path.into(),
            query: request.query.into(),
            headers: request.headers.into_iter().map(header).collect(),
            body: request.body.into(),
        };
        let _calling = self.culprit.calling("http");
        let response = self
            .plugin
            .http(request)
            .into_result()
            .map_err(failure)?
            .into_option();
        Ok(response.map(|r| HttpResponse {
            status: r.status,
            headers: r
                .headers
                .into_iter()
                .map(|h| (h.name.into_string(), h.value.into_string()))
                .collect(),
            body: r.body.into_vec(),
        }))
    }

    fn jobs(&mut self) -> Result<Option<Vec<JobReport>>, CallFailure> {
        let _calling = self.culprit.calling("jobs");
        let reports = self
            .plugin
            .jobs()
            .into_result()
            .map_err(failure)?
            .into_option();
        Ok(reports.map(|jobs| {
            jobs.into_iter()
                .map(|j| JobReport {
                    pipeline: j.pipeline.into_string(),
                    priority: j.priority,
                    ready: j.ready,
                    queue: j.queue.into_string(),
                    active: j.active,
                    delayed: j.delayed,
                    reserved: j.reserved,
                    driver: j.driver.into_string(),
                    error_message: j.error_message.into_string(),
                })
                .collect()
        }))
    }
}

/// The plugin's `Context` calls land here.
struct Link(SharedHost);

impl HostApi for Link {
    fn instance_name(&self) -> RStr<'_> {
        RStr::from_str(self.0.instance_name())
    }

    fn publish(&self, topic: RStr<'_>, payload: RSlice<'_, u8>) -> RResult<(), RString> {
        match self.0.publish(topic.as_str(), payload.as_slice()) {
            Ok(()) => ROk(()),
            Err(e) => RErr(RString::from(e)),
        }
    }

    fn log(&self, level: LogLevel, message: RStr<'_>) {
        self.0.log(level, message.as_str());
    }

    fn call(&self, request: RStr<'_>) -> RResult<RString, RString> {
        match self.0.call(request.as_str()) {
            Ok(answer) => ROk(answer.into()),
            Err(e) => RErr(e.into()),
        }
    }

    fn cast(&self, request: RStr<'_>) {
        self.0.cast(request.as_str());
    }
}
