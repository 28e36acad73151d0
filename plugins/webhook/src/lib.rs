//! `webhook` (LUNA's monitoring plugin): batches the events it receives and
//! POSTs each batch as a JSON array to `url`, when `batch_size` events are
//! waiting or `flush_interval` has passed since the batch's first event.
//!
//! The plugin has no thread of its own: it flushes and retries from its
//! callbacks, on each event and on each **tick**. Set `tick_interval` on the
//! instance (at most `flush_interval`, such as the same value): without ticks
//! a partial batch waits for the next event or for `stop`, and the plugin
//! warns once when a batch has waited longer than `flush_interval`.
//!
//! A failed POST is retried with a doubling backoff from `retry_backoff` up to
//! `max_backoff`, `retries` times; the batch waits in memory meanwhile and the
//! instance goes on: a retry is attempted on a later tick or event, never
//! slept for, so health checks wait at most one POST (`timeout`). A batch
//! still undeliverable after its retries is counted and logged, never dropped
//! silently: health turns degraded and `jobs` reports the counts. Batches
//! are delivered in order: a new one waits behind those being retried. At
//! most `max_pending_batches` wait; beyond that the oldest is given up the
//! same way. At `stop`, the waiting batches get their remaining attempts at
//! once (without the backoff), so a stop takes at most
//! `(retries + 1) × timeout` per waiting batch.
//!
//! At the host's shutdown, events may still arrive after `stop` (what other
//! instances publish in their own `stop`): no batch waits any more, each is
//! POSTed at once, with its attempts without backoff, and one that cannot
//! be delivered fails (counted as `failed` by the host, and logged).
//!
//! Events are sent as the `logger` writes them (`id`, `topic`, `source`,
//! `timestamp`, and `payload`, `payload_text` or `payload_base64` by content
//! type). Plain `http://` only.
//!
//! ```toml
//! [[plugin]]
//! name = "hook"
//! library = "webhook"
//! subscribe = ["orders.>"]
//! tick_interval = "1s"          # drives the timed flush and the retries
//! [plugin.config]
//! url = "http://127.0.0.1:8080/events"
//! batch_size = 100
//! flush_interval = "1s"
//! retries = 5
//! retry_backoff = "100ms"
//! max_backoff = "5s"
//! timeout = "5s"
//! ```

use base64::Engine as _;
use plughost_api::{
    ContentType, Context, Event, Health, HumanDuration, JobReport, Plugin, Result, export_plugin,
};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    url: String,
    batch_size: usize,
    flush_interval: HumanDuration,
    retries: u32,
    retry_backoff: HumanDuration,
    max_backoff: HumanDuration,
    timeout: HumanDuration,
    max_pending_batches: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            url: String::new(),
            batch_size: 100,
            flush_interval: HumanDuration(Duration::from_secs(1)),
            retries: 3,
            retry_backoff: HumanDuration(Duration::from_millis(100)),
            max_backoff: HumanDuration(Duration::from_secs(5)),
            timeout: HumanDuration(Duration::from_secs(5)),
            max_pending_batches: 100,
        }
    }
}

/// A batch that failed at least once and waits for its next attempt.
struct Pending {
    body: String,
    events: u64,
    attempts: u32,
    next_attempt: Instant,
    backoff: Duration,
}

struct Webhook {
    config: Config,
    agent: ureq::Agent,
    batch: Vec<Value>,
    /// When the oldest event of `batch` arrived.
    batch_since: Option<Instant>,
    pending: VecDeque<Pending>,
    delivered_batches: u64,
    undeliverable_batches: u64,
    undeliverable_events: u64,
    last_error: String,
    warned_no_tick: bool,
    /// `stop` ran: nothing waits for a later flush any more.
    stopped: bool,
}

impl Webhook {
    /// One POST; `Err` says why it failed.
    fn post(&self, body: &str) -> std::result::Result<(), String> {
        let sent = self
            .agent
            .post(&self.config.url)
            .header("content-type", "application/json")
            .send(body.as_bytes());
        match sent {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(format!("answered {}", response.status())),
            Err(e) => Err(format!("failed: {e}")),
        }
    }

    /// Try `batch` once. When that fails, hand it back for a retry, or give
    /// it up once its retries are spent.
    fn attempt(&mut self, mut batch: Pending, ctx: &Context, now: Instant) -> Option<Pending> {
        batch.attempts += 1;
        match self.post(&batch.body) {
            Ok(()) => {
                self.delivered_batches += 1;
                if batch.attempts > 1 {
                    ctx.info(format!(
                        "delivered a batch of {} event(s) on attempt {}",
                        batch.events, batch.attempts
                    ));
                }
            }
            Err(why) => {
                ctx.warn(format!(
                    "POST {} {why} (attempt {})",
                    self.config.url, batch.attempts
                ));
                self.last_error = why;
                if batch.attempts > self.config.retries {
                    self.give_up(&batch, ctx);
                } else {
                    batch.next_attempt = now + batch.backoff;
                    batch.backoff = (batch.backoff * 2).min(self.config.max_backoff.0);
                    return Some(batch);
                }
            }
        }
        None
    }

    fn give_up(&mut self, batch: &Pending, ctx: &Context) {
        self.undeliverable_batches += 1;
        self.undeliverable_events += batch.events;
        ctx.error(format!(
            "gave up on a batch of {} event(s) after {} attempts; undeliverable so far: {} batch(es), {} event(s)",
            batch.events,
            batch.attempts,
            self.undeliverable_batches,
            self.undeliverable_events
        ));
    }

    /// Send the current batch if it is due (or `force`), then retry the
    /// waiting batches whose backoff has passed (all of them with `force`).
    fn flush(&mut self, ctx: &Context, force: bool) {
        let now = Instant::now();
        if let Some(since) = self.batch_since {
            let waited = now.duration_since(since);
            let due = self.batch.len() >= self.config.batch_size
                || waited >= self.config.flush_interval.0;
            if !self.warned_no_tick && waited >= self.config.flush_interval.0 * 2 {
                self.warned_no_tick = true;
                ctx.warn(format!(
                    "a batch waited {waited:?}, longer than flush_interval: set tick_interval on this instance so batches are sent on time"
                ));
            }
            if due || force {
                let events = self.batch.len() as u64;
                let body = Value::Array(std::mem::take(&mut self.batch)).to_string();
                self.batch_since = None;
                // Behind the batches waiting for a retry: batches arrive in order.
                self.pending.push_back(Pending {
                    body,
                    events,
                    attempts: 0,
                    next_attempt: now,
                    backoff: self.config.retry_backoff.0,
                });
            }
        }
        // In order: a batch is sent only once every earlier one is delivered
        // or given up. Without `force`, the first failure waits its backoff.
        while let Some(head) = self.pending.front() {
            if !force && head.next_attempt > now {
                break;
            }
            let batch = self.pending.pop_front().expect("a head");
            if let Some(kept) = self.attempt(batch, ctx, now) {
                self.pending.push_front(kept);
                if !force {
                    break;
                }
            }
        }
        while self.pending.len() > self.config.max_pending_batches {
            let oldest = self.pending.pop_front().expect("not empty");
            ctx.warn(format!(
                "more than {} batch(es) wait for delivery",
                self.config.max_pending_batches
            ));
            self.give_up(&oldest, ctx);
        }
    }

    fn waiting_events(&self) -> u64 {
        self.pending.iter().map(|b| b.events).sum()
    }
}

impl Plugin for Webhook {
    type Config = Config;

    fn init(config: Config, _ctx: &Context) -> Result<Self> {
        if !config.url.starts_with("http://") {
            return Err(format!("`url` must be an http:// URL, got {:?}", config.url).into());
        }
        if config.batch_size == 0 {
            return Err("`batch_size` must be at least 1".into());
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout.0))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Webhook {
            batch: Vec::with_capacity(config.batch_size),
            config,
            agent,
            batch_since: None,
            pending: VecDeque::new(),
            delivered_batches: 0,
            undeliverable_batches: 0,
            undeliverable_events: 0,
            last_error: String::new(),
            warned_no_tick: false,
            stopped: false,
        })
    }

    fn on_event(&mut self, event: &Event<'_>, ctx: &Context) -> Result<()> {
        let mut entry = json!({"id": event.id(), "topic": event.topic(), "source": event.source(), "timestamp": event.timestamp_ms()});
        // As the logger writes it: by content type.
        let json = match event.content_type() {
            ContentType::Json => serde_json::from_slice::<Value>(event.bytes()).ok(),
            _ => None,
        };
        match (json, event.content_type(), event.text()) {
            (Some(payload), ..) => entry["payload"] = payload,
            (None, ContentType::Text, Some(text)) => entry["payload_text"] = text.into(),
            _ => {
                entry["payload_base64"] = base64::engine::general_purpose::STANDARD
                    .encode(event.bytes())
                    .into()
            }
        }
        self.batch.push(entry);
        self.batch_since.get_or_insert_with(Instant::now);
        if !self.stopped {
            self.flush(ctx, false);
            return Ok(());
        }
        // After `stop` no flush would come: send it now.
        let undeliverable = self.undeliverable_events;
        self.flush(ctx, true);
        if self.undeliverable_events > undeliverable {
            return Err(format!(
                "arrived after stop and could not be delivered: {}",
                self.last_error
            )
            .into());
        }
        Ok(())
    }

    fn tick(&mut self, ctx: &Context) -> Result<()> {
        self.flush(ctx, false);
        Ok(())
    }

    fn stop(&mut self, ctx: &Context) -> Result<()> {
        // Each waiting batch gets its remaining attempts now.
        self.flush(ctx, true);
        self.stopped = true;
        ctx.info(format!(
            "delivered {} batch(es); undeliverable: {} batch(es), {} event(s)",
            self.delivered_batches, self.undeliverable_batches, self.undeliverable_events
        ));
        Ok(())
    }

    fn health(&mut self, _ctx: &Context) -> Option<Health> {
        let mut problems = Vec::new();
        if self.undeliverable_batches > 0 {
            problems.push(format!(
                "{} batch(es), {} event(s) undeliverable",
                self.undeliverable_batches, self.undeliverable_events
            ));
        }
        if self.pending.front().is_some_and(|b| b.attempts > 0) {
            problems.push(format!(
                "{} batch(es), {} event(s) waiting to be retried (last error: {})",
                self.pending.len(),
                self.waiting_events(),
                self.last_error
            ));
        }
        Some(match problems.is_empty() {
            true => Health::ok(),
            false => Health::degraded(problems.join("; ")),
        })
    }

    fn jobs(&mut self, _ctx: &Context) -> Option<Vec<JobReport>> {
        Some(vec![JobReport {
            pipeline: "webhook".to_owned(),
            priority: 0,
            ready: self.pending.is_empty(),
            queue: self.config.url.clone(),
            active: self.batch.len() as i64,
            delayed: self.waiting_events() as i64,
            reserved: 0,
            driver: "http".to_owned(),
            error_message: match self.undeliverable_batches {
                0 => String::new(),
                n => format!(
                    "{n} batch(es), {} event(s) undeliverable; last error: {}",
                    self.undeliverable_events, self.last_error
                ),
            },
        }])
    }
}

export_plugin!(Webhook);
