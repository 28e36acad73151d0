//! `chaos`, for tests: misbehaves exactly as told.
//!
//! - `panic_on`: a topic pattern; events matching it make `on_event` panic;
//! - `sleep_ms`: sleep this long in every `on_event`;
//! - `fail_init`: `init` returns an error.

use plughost_api::topic::Pattern;
use plughost_api::{Context, Event, Plugin, Result, export_plugin};
use serde::Deserialize;
use std::time::Duration;

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    panic_on: Option<String>,
    sleep_ms: u64,
    fail_init: bool,
}

struct Chaos {
    panic_on: Option<Pattern>,
    sleep: Duration,
}

impl Plugin for Chaos {
    type Config = Config;

    fn init(config: Config, _ctx: &Context) -> Result<Self> {
        if config.fail_init {
            return Err("fail_init is set".into());
        }
        Ok(Chaos {
            panic_on: config.panic_on.as_deref().map(Pattern::parse).transpose()?,
            sleep: Duration::from_millis(config.sleep_ms),
        })
    }

    fn on_event(&mut self, event: &Event<'_>, _ctx: &Context) -> Result<()> {
        if !self.sleep.is_zero() {
            std::thread::sleep(self.sleep);
        }
        if self
            .panic_on
            .as_ref()
            .is_some_and(|p| p.matches(event.topic()))
        {
            panic!("chaos: told to panic on {}", event.topic());
        }
        Ok(())
    }
}

export_plugin!(Chaos);
