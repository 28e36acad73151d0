//! Frozen-ABI fixture: a small plugin, built against the plughost-api beside
//! it (or, by tests/compat.rs, against a copy of a newer one) and run in
//! today's host and in the loader beside it:
//! - `compat.ping` publishes `compat.pong` with the same payload;
//! - `compat.fail` returns an error, `compat.panic` panics (caught inside);
//! - with the `appended` feature, `compat.ask` publishes `compat.answer`
//!   with what the host's appended function answers, or `"absent"` (JSON);
//! - with the `publisher` feature (ABI 1.1), `compat.ask` publishes
//!   `compat.answer` with its payload through a `Publisher`, or, when that
//!   fails, with the error's text (through the context);
//! - health is degraded, naming the ABI; `stop` logs how many events it saw.

use plughost_api::{Context, Event, Health, NoConfig, Plugin, Result, export_plugin};

/// The ABI this plugin is built against.
const ABI: &str = plughost_api::abi::ABI_VERSION;

struct Compat {
    events: u64,
}

impl Plugin for Compat {
    type Config = NoConfig;

    fn init(_: NoConfig, ctx: &Context) -> Result<Self> {
        ctx.info(format!(
            "compat plugin (ABI {ABI}) created as {}",
            ctx.name()
        ));
        Ok(Compat { events: 0 })
    }

    fn on_event(&mut self, event: &Event<'_>, ctx: &Context) -> Result<()> {
        self.events += 1;
        match event.topic() {
            "compat.ping" => ctx.publish("compat.pong", event.payload()),
            "compat.fail" => Err(format!("compat plugin (ABI {ABI}) fails on request").into()),
            "compat.panic" => panic!("compat plugin (ABI {ABI}) panics on request"),
            #[cfg(feature = "appended")]
            "compat.ask" => match ctx.appended_answer() {
                Some(answer) => ctx.publish("compat.answer", answer.to_string()),
                None => ctx.publish("compat.answer", "\"absent\""),
            },
            #[cfg(feature = "publisher")]
            "compat.ask" => match ctx.publisher().publish("compat.answer", event.payload()) {
                Ok(()) => Ok(()),
                Err(error) => ctx.publish("compat.answer", error.to_string()),
            },
            _ => Ok(()),
        }
    }

    fn health(&mut self, _: &Context) -> Option<Health> {
        Some(Health::degraded(format!(
            "ABI {ABI}, {} events",
            self.events
        )))
    }

    fn stop(&mut self, ctx: &Context) -> Result<()> {
        ctx.info(format!(
            "compat plugin (ABI {ABI}) stopped after {} events",
            self.events
        ));
        Ok(())
    }
}

export_plugin!(Compat);
