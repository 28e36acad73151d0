//! What the unit tests of several modules share: a plugin table, a slot,
//! an event, an instance that does nothing.

use crate::config::{Config, PluginConfig};
use crate::event::{Event, EventView, Name};
use crate::instance::{CallFailure, Instance};
use crate::mailbox::Slot;
use plughost_api::{Health, JobReport, Readiness};
use std::sync::Arc;

pub(crate) fn plugin(extra: &str) -> PluginConfig {
    let text = format!("[[plugin]]\nname = \"t\"\nlibrary = \"x\"\n{extra}");
    let config = Config::parse(std::path::Path::new("/p.toml"), &text).unwrap();
    config.plugins[0].clone()
}

pub(crate) fn slot(extra: &str) -> Arc<Slot> {
    let plugin = plugin(&format!("queue_capacity = 8\n{extra}"));
    Arc::new(Slot::new(0, &plugin, "x".into(), "rust", None))
}

pub(crate) fn event(id: u64) -> Event {
    Event::new(
        id,
        0,
        Name::intern("t.e"),
        Name::intern("host"),
        (Box::new([]), plughost_api::ContentType::Bytes),
    )
}

pub(crate) struct Quiet;

impl Instance for Quiet {
    fn on_event(&mut self, _: &EventView<'_>) -> Result<(), CallFailure> {
        Ok(())
    }
    fn stop(&mut self) -> Result<(), CallFailure> {
        Ok(())
    }
    fn health(&mut self) -> Result<Option<Health>, CallFailure> {
        Ok(None)
    }
    fn ready(&mut self) -> Result<Option<Readiness>, CallFailure> {
        Ok(None)
    }
    fn jobs(&mut self) -> Result<Option<Vec<JobReport>>, CallFailure> {
        Ok(None)
    }
}
