//! `webhook` (LUNA's monitoring plugin): batches the events it receives and
//! POSTs each batch as a JSON array to `url`, when `batch_size` events are
//! waiting or `flush_interval` has passed (checked on each event and each
//! tick: set `tick_interval` on the instance). A failed POST is retried with
//! backoff; a batch still undeliverable after `retries` is counted and
//! logged, never dropped silently, and health turns degraded.
//! Events are sent as the `logger` writes them (`id`, `topic`, `source`,
//! `timestamp`, `payload` or `payload_base64`). Plain `http://` only.

use base64::Engine as _;
use plughost_api::{Context, Event, Health, Plugin, Result, export_plugin};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    url: String,
    batch_size: usize,
    flush_interval_ms: u64,
    retries: u32,
    retry_backoff_ms: u64,
    timeout_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            url: String::new(),
            batch_size: 100,
            flush_interval_ms: 1000,
            retries: 3,
            retry_backoff_ms: 100,
            timeout_ms: 5000,
        }
    }
}

struct Webhook {
    config: Config,
    agent: ureq::Agent,
    batch: Vec<Value>,
    last_flush: Instant,
    delivered_batches: u64,
    undeliverable_batches: u64,
    undeliverable_events: u64,
}

impl Webhook {
    fn flush(&mut self, ctx: &Context) {
        if self.batch.is_empty() {
            return;
        }
        self.last_flush = Instant::now();
        let count = self.batch.len() as u64;
        let body = Value::Array(std::mem::take(&mut self.batch)).to_string();
        let mut backoff = Duration::from_millis(self.config.retry_backoff_ms);
        for attempt in 0..=self.config.retries {
            let sent = self
                .agent
                .post(&self.config.url)
                .header("content-type", "application/json")
                .send(body.as_bytes());
            match sent {
                Ok(response) if response.status().is_success() => {
                    self.delivered_batches += 1;
                    return;
                }
                Ok(response) => ctx.warn(format!(
                    "POST {} answered {} (attempt {})",
                    self.config.url,
                    response.status(),
                    attempt + 1
                )),
                Err(e) => ctx.warn(format!(
                    "POST {} failed: {e} (attempt {})",
                    self.config.url,
                    attempt + 1
                )),
            }
            if attempt < self.config.retries {
                std::thread::sleep(backoff);
                backoff *= 2;
            }
        }
        self.undeliverable_batches += 1;
        self.undeliverable_events += count;
        ctx.error(format!(
            "gave up on a batch of {count} event(s) after {} attempts; undeliverable so far: {} batch(es), {} event(s)",
            self.config.retries + 1,
            self.undeliverable_batches,
            self.undeliverable_events
        ));
    }

    fn due(&self) -> bool {
        self.batch.len() >= self.config.batch_size
            || (!self.batch.is_empty()
                && self.last_flush.elapsed()
                    >= Duration::from_millis(self.config.flush_interval_ms))
    }
}

impl Plugin for Webhook {
    type Config = Config;

    fn init(config: Config, _ctx: &Context) -> Result<Self> {
        if !config.url.starts_with("http://") {
            return Err(format!("`url` must be an http:// URL, got {:?}", config.url).into());
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_millis(config.timeout_ms)))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Webhook {
            batch: Vec::with_capacity(config.batch_size),
            config,
            agent,
            last_flush: Instant::now(),
            delivered_batches: 0,
            undeliverable_batches: 0,
            undeliverable_events: 0,
        })
    }

    fn on_event(&mut self, event: &Event<'_>, ctx: &Context) -> Result<()> {
        let mut entry = json!({"id": event.id(), "topic": event.topic(), "source": event.source(), "timestamp": event.timestamp_ms()});
        match serde_json::from_slice::<Value>(event.payload()) {
            Ok(payload) => entry["payload"] = payload,
            Err(_) => {
                entry["payload_base64"] = base64::engine::general_purpose::STANDARD
                    .encode(event.payload())
                    .into()
            }
        }
        self.batch.push(entry);
        if self.due() {
            self.flush(ctx);
        }
        Ok(())
    }

    fn tick(&mut self, ctx: &Context) -> Result<()> {
        if self.due() {
            self.flush(ctx);
        }
        Ok(())
    }

    fn stop(&mut self, ctx: &Context) -> Result<()> {
        self.flush(ctx);
        ctx.info(format!(
            "delivered {} batch(es); undeliverable: {} batch(es), {} event(s)",
            self.delivered_batches, self.undeliverable_batches, self.undeliverable_events
        ));
        Ok(())
    }

    fn health(&mut self, _ctx: &Context) -> Option<Health> {
        Some(match self.undeliverable_batches {
            0 => Health::ok(),
            n => Health::degraded(format!(
                "{n} batch(es), {} event(s) undeliverable",
                self.undeliverable_events
            )),
        })
    }
}

export_plugin!(Webhook);
