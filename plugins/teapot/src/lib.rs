//! `teapot` (LUNA's example background plugin): `GET /plugins/NAME/teapot`
//! answers 418 "I am teapot". Each tick (set `tick_interval`) raises the
//! water's temperature by one degree and publishes `teapot.temperature`
//! until it reaches 100, then publishes `teapot.ready` once.
//! Config: `start` (degrees, default 20).

use plughost_api::{Context, Event, HttpRequest, HttpResponse, Plugin, Result, export_plugin};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    start: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config { start: 20 }
    }
}

struct Teapot {
    celsius: u32,
    announced: bool,
}

impl Plugin for Teapot {
    type Config = Config;

    fn init(config: Config, _ctx: &Context) -> Result<Self> {
        Ok(Teapot {
            celsius: config.start.min(100),
            announced: false,
        })
    }

    fn on_event(&mut self, _event: &Event<'_>, _ctx: &Context) -> Result<()> {
        Ok(())
    }

    fn tick(&mut self, ctx: &Context) -> Result<()> {
        if self.celsius < 100 {
            self.celsius += 1;
            ctx.publish_json(
                "teapot.temperature",
                &serde_json::json!({"celsius": self.celsius}),
            )?;
        } else if !self.announced {
            self.announced = true;
            ctx.info("the water is ready");
            ctx.publish_json(
                "teapot.ready",
                &serde_json::json!({"celsius": self.celsius}),
            )?;
        }
        Ok(())
    }

    fn routes(&self) -> Vec<String> {
        vec!["/teapot".to_owned(), "/temperature".to_owned()]
    }

    fn http(&mut self, request: &HttpRequest, _ctx: &Context) -> Option<HttpResponse> {
        match (request.method.as_str(), request.path.as_str()) {
            ("GET", "/teapot") => Some(HttpResponse::text(418, "I am teapot")),
            ("GET", "/temperature") => Some(HttpResponse::json(
                &serde_json::json!({"celsius": self.celsius}),
            )),
            _ => None,
        }
    }
}

export_plugin!(Teapot);
