//! The one trait a plugin author implements.

use crate::{Context, Event, Health, HttpRequest, HttpResponse, JobReport, Readiness, Result};
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::de::{DeserializeOwned, Error as _};

/// A plugin: created from its config, fed events on its own thread, stopped.
///
/// Every method runs on the instance's dedicated thread, one call at a time,
/// so a plugin needs no locking of its own. Optional capabilities are default
/// methods, so new ones never break a plugin written today.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a plughost plugin",
    label = "this type must implement `plughost_api::Plugin`",
    note = "implement `Plugin` (with `type Config`, `init` and `on_event`) and export it with `plughost_api::export_plugin!(YourType);`"
)]
pub trait Plugin: Send + Sized + 'static {
    /// The `[plugin.config]` table, deserialized with serde. Use [`NoConfig`]
    /// when the plugin takes none, and `#[serde(default)]` for optional keys.
    type Config: DeserializeOwned;

    /// Create the instance. An error here refuses the instance with that message.
    fn init(config: Self::Config, ctx: &Context) -> Result<Self>;

    /// Handle one event. An error counts the event as failed; the instance goes on.
    fn on_event(&mut self, event: &Event<'_>, ctx: &Context) -> Result<()>;

    /// Flush what the instance holds before it is dropped; called once. It
    /// may publish: every subscriber gets it, wherever it is listed.
    ///
    /// At the host's shutdown, `on_event` may still be called after `stop`
    /// returned, until the instance is dropped, with events published after
    /// the queues drained (by other instances' `stop`, or in reaction to
    /// those). Nothing else is called after `stop`. Keep what `on_event`
    /// needs until `Drop`, and handle such an event at once (or return an
    /// error: it counts as failed). On `plughost ctl stop`, a restart or a
    /// reload, the instance is dropped right after `stop`.
    fn stop(&mut self, ctx: &Context) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Report health; `None` (the default) leaves this plugin out of `/health`.
    /// Runs on the instance's thread, between events.
    fn health(&mut self, ctx: &Context) -> Option<Health> {
        let _ = ctx;
        None
    }

    /// Report readiness; `None` (the default) leaves it out of `/ready`.
    fn ready(&mut self, ctx: &Context) -> Option<Readiness> {
        let _ = ctx;
        None
    }

    /// Report job queues; `None` (the default) leaves it out of `/jobs`.
    fn jobs(&mut self, ctx: &Context) -> Option<Vec<JobReport>> {
        let _ = ctx;
        None
    }

    /// Background work, called every `tick_interval` (set in `plugins.toml`)
    /// on the instance's thread, between events. May publish.
    fn tick(&mut self, ctx: &Context) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// The routes this plugin serves under `/plugins/NAME` on the status
    /// server: exact paths such as `/teapot`, or prefixes such as `/files/*`.
    fn routes(&self) -> Vec<String> {
        Vec::new()
    }

    /// Answer a request to one of its routes, on the instance's thread.
    /// `None` answers 404.
    fn http(&mut self, request: &HttpRequest, ctx: &Context) -> Option<HttpResponse> {
        let _ = (request, ctx);
        None
    }
}

/// Config of a plugin that takes none: accepts an absent or empty
/// `[plugin.config]`, and refuses any key in it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NoConfig;

impl<'de> Deserialize<'de> for NoConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct Empty;
        impl<'de> Visitor<'de> for Empty {
            type Value = NoConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("no config keys")
            }
            fn visit_unit<E>(self) -> std::result::Result<NoConfig, E> {
                Ok(NoConfig)
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<NoConfig, A::Error> {
                match map.next_key::<String>()? {
                    None => Ok(NoConfig),
                    Some(key) => {
                        let _: IgnoredAny = map.next_value()?;
                        Err(A::Error::custom(format!(
                            "unknown key `{key}`: this plugin takes no config"
                        )))
                    }
                }
            }
        }
        deserializer.deserialize_any(Empty)
    }
}
