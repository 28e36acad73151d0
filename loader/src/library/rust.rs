//! Rust plugins: abi_stable root modules, layout-checked at load, and the
//! adapter that drives their trait object. Each library is loaded through its
//! own header (`lib_header_from_path`), never `RootModule::load_from_file`,
//! which caches the first module of a type for the whole process.

use super::fatal::Culprit;
use super::{LoadError, PluginHost};
use crate::event::EventView;
use crate::instance::{CallFailure, Instance};
use abi_stable::library::{LibraryError, lib_header_from_path};
use abi_stable::std_types::{RSlice, RStr};
use plughost_api::abi::{
    CallError, EventRef, HeaderAbi, HostFunctions, HostHandle, HttpRequestAbi, PluginHandle,
    PluginModuleRef,
};
use plughost_api::loading::{AbiVersion, LoadFailure, Support, load_root_module};
use plughost_api::{
    ContentType, Health, HealthStatus, HttpRequest, HttpResponse, JobReport, LogLevel, Readiness,
};
use std::path::Path;
use std::sync::Arc;

/// The symbol abi_stable libraries export their header under.
pub(super) const ROOT_SYMBOL: &[u8] = b"_1as_0lib_1header_0root_bmodule_bloader\0";

pub(crate) struct RustLibrary {
    module: PluginModuleRef,
    /// The plugin ABI the library declares it was built against.
    abi: AbiVersion,
    support: Support,
}

impl RustLibrary {
    pub(super) fn load(path: &Path, fd_path: &Path) -> Result<RustLibrary, LoadError> {
        let header = lib_header_from_path(fd_path).map_err(|e| describe(path, &e))?;
        let loaded = load_root_module(header).map_err(|failure| {
            if let LoadFailure::Layout { report, .. } = &failure {
                tracing::debug!("{}: abi_stable's report:\n{report}", path.display());
            }
            match failure {
                LoadFailure::Library(_) => LoadError::load_failed(path, failure.to_string()),
                _ => LoadError::abi_mismatch(path, failure.to_string()),
            }
        })?;
        Ok(RustLibrary {
            module: loaded.module,
            abi: loaded.abi,
            support: loaded.support(),
        })
    }

    /// The plugin ABI the library declares it was built against.
    pub(crate) fn abi(&self) -> AbiVersion {
        self.abi
    }

    /// Whether this host can use all of it.
    pub(crate) fn support(&self) -> Support {
        self.support
    }

    pub(crate) fn name(&self) -> String {
        self.module.name().to_string()
    }

    pub(crate) fn version(&self) -> String {
        self.module.version().to_string()
    }

    /// Check `config_json` as `create` would read it, without creating an
    /// instance.
    pub(crate) fn validate_config(&self, config_json: &str) -> Result<(), String> {
        (self.module.validate_config())(RStr::from_str(config_json))
            .into_result()
            .map_err(|e| e.message.into_string())
    }

    pub(crate) fn create(
        &self,
        config_json: &str,
        host: Arc<dyn PluginHost>,
        culprit: Arc<Culprit>,
    ) -> Result<Box<dyn Instance>, CallFailure> {
        let retire = Retire(host.clone());
        let host = HostHandle::new(Arc::new(AbiHost(host)));
        let created = {
            let _calling = culprit.calling("create");
            (self.module.create())(RStr::from_str(config_json), host)
        };
        match created.into_result() {
            Ok(plugin) => Ok(Box::new(RustInstance {
                plugin,
                culprit,
                _retire: retire,
            })),
            Err(error) => Err(failure(error)),
        }
    }
}

/// One line for an error reading a library's abi_stable header.
fn describe(path: &Path, error: &LibraryError) -> LoadError {
    match error {
        LibraryError::InvalidAbiHeader(_) | LibraryError::InvalidCAbi { .. } => {
            LoadError::abi_mismatch(
                path,
                "built with an incompatible abi_stable: rebuild the plugin against this host's plughost-api",
            )
        }
        other => LoadError::load_failed(path, one_line(&other.to_string())),
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
    /// Dropped after `plugin` (fields drop in order): once the plugin's
    /// drop has returned, its `Publisher`s are refused.
    _retire: Retire,
}

/// Retires the host of an instance when dropped (see [`PluginHost::retire`]).
struct Retire(Arc<dyn PluginHost>);

impl Drop for Retire {
    fn drop(&mut self) {
        self.0.retire();
    }
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
        self.plugin
            .on_event_typed(raw, event.content.to_abi())
            .into_result()
            .map_err(failure)
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
            status: HealthStatus::from(i64::from(h.status)),
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
        // A plugin whose `routes` fails serves none.
        self.plugin
            .routes()
            .into_result()
            .map(|routes| routes.into_iter().map(|r| r.into_string()).collect())
            .unwrap_or_default()
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
        Ok(reports.map(|jobs| jobs.into_iter().map(JobReport::from).collect()))
    }
}

/// The plugin host, handed to a Rust plugin as the ABI's host functions:
/// its `Context` calls land here.
struct AbiHost(Arc<dyn PluginHost>);

impl HostFunctions for AbiHost {
    fn instance_name(&self) -> &str {
        self.0.instance_name()
    }

    fn publish(&self, topic: &str, payload: &[u8]) -> Result<(), String> {
        self.publish_typed(topic, payload, ContentType::Bytes)
    }

    fn publish_typed(
        &self,
        topic: &str,
        payload: &[u8],
        content: ContentType,
    ) -> Result<(), String> {
        self.0
            .publish(topic, payload, content)
            .map_err(|e| e.to_string())
    }

    fn log(&self, level: LogLevel, message: &str) {
        self.0.log(level, message);
    }

    fn call(&self, request: &str) -> Result<String, String> {
        self.0.call(request)
    }

    fn cast(&self, request: &str) {
        self.0.cast(request);
    }
}
