//! `chaos`, for tests: misbehaves exactly as told.
//!
//! - `panic_on`: a topic pattern; events matching it make `on_event` panic;
//! - `sleep_ms`: sleep this long in every `on_event`;
//! - `fail_init`: `init` returns an error;
//! - `panic_in_init`, `panic_on_stop`: panic there;
//! - `forward_to`: republish every event's payload on this topic, at most
//!   `forward_limit` times in all (default: no limit).

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
    panic_in_init: bool,
    panic_on_stop: bool,
    forward_to: Option<String>,
    forward_limit: Option<u64>,
}

struct Chaos {
    panic_on: Option<Pattern>,
    sleep: Duration,
    forward_to: Option<String>,
    forwards_left: u64,
    panic_on_stop: bool,
}

impl Plugin for Chaos {
    type Config = Config;

    fn init(config: Config, _ctx: &Context) -> Result<Self> {
        if config.panic_in_init {
            panic!("chaos: told to panic in init");
        }
        if config.fail_init {
            return Err("fail_init is set".into());
        }
        Ok(Chaos {
            panic_on: config.panic_on.as_deref().map(Pattern::parse).transpose()?,
            sleep: Duration::from_millis(config.sleep_ms),
            forward_to: config.forward_to,
            forwards_left: config.forward_limit.unwrap_or(u64::MAX),
            panic_on_stop: config.panic_on_stop,
        })
    }

    fn on_event(&mut self, event: &Event<'_>, ctx: &Context) -> Result<()> {
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
        if let Some(topic) = &self.forward_to
            && self.forwards_left > 0
        {
            self.forwards_left -= 1;
            ctx.publish(topic, event.payload())?;
        }
        Ok(())
    }

    fn stop(&mut self, _ctx: &Context) -> Result<()> {
        if self.panic_on_stop {
            panic!("chaos: told to panic on stop");
        }
        Ok(())
    }
}

export_plugin!(Chaos);
