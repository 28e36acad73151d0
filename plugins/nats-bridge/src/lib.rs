//! `nats-bridge`: several plughost hosts share one event stream through a
//! NATS server. Local events matching `export` go out as NATS messages
//! (subject `PREFIX.TOPIC`); NATS messages matching `import` are published
//! here (topic: the subject without `PREFIX.`). See docs/multi-host.md.
//!
//! Threads: the NATS client runs on a tokio runtime the bridge owns (one
//! worker thread, see `link`). The instance's own thread only takes exports:
//! `on_event` puts one into a bounded queue (a full queue drops it,
//! counted). Imports go from the runtime through a second bounded queue to
//! the importer thread (see `import`), which publishes them through the
//! instance's `Publisher` as they come: no `tick_interval` needed. Nothing
//! on the instance's thread waits for the network, except `stop`, which
//! flushes.
//!
//! `stop` closes the connection. An event to export that still arrives
//! afterwards (at the host's shutdown, what another instance publishes in
//! its own `stop`) fails with an error saying so: the host counts it as
//! `failed` and logs it; it is never dropped silently.
//!
//! No loops: events this bridge published (imports) are never delivered
//! back to it (the host's no-echo rule) and never exported again, and
//! every export carries this run's origin id in a header, so a bridge skips
//! its own messages when they come back from NATS. Exports are numbered per
//! subject: an importer counts gaps (missed) and skips repeats.

mod config;
mod import;
mod link;
mod sequence;

use config::Config;
use import::Importer;
use link::{Incoming, Link, Outgoing, Shared};
use plughost_api::{
    ContentType, Context, Event, Health, JobReport, Plugin, Readiness, Result, export_plugin,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Exported subjects numbered at most; past this, numbering restarts under
/// a new origin id (importers then track it as a new sender).
const MAX_NUMBERED: usize = 65_536;
/// Drops and gaps are logged at most this often.
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// Imports waiting while none was published for this long make health
/// degraded (a full mailbox holds the importer up).
const STALL: Duration = Duration::from_secs(5);

struct Bridge {
    config: Arc<Config>,
    /// Without the epoch suffix.
    origin_base: String,
    epoch: u64,
    origin: Arc<str>,
    next_seq: HashMap<String, u64>,
    outgoing: Option<mpsc::Sender<Outgoing>>,
    /// The import queue, to see how much waits in it.
    incoming: mpsc::WeakSender<Incoming>,
    importer: Option<Importer>,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
    link: Option<Link>,
    /// Events taken for export.
    exports: u64,
    /// Exports refused by the full queue.
    dropped_full: u64,
    /// What was reported last: (dropped, missed), and when.
    reported: (u64, u64),
    reported_at: Instant,
}

fn make_origin(name: &str) -> String {
    use std::hash::{BuildHasher, RandomState};
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".to_owned());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let random = RandomState::new().hash_one(nanos);
    format!("{host}/{name}/{}/{random:016x}", std::process::id())
}

impl Bridge {
    fn dropped(&self) -> u64 {
        self.dropped_full + self.shared.dropped.load(Relaxed)
    }

    fn missed(&self) -> u64 {
        self.shared.missed.load(Relaxed)
    }

    /// Imports waiting for the importer thread.
    fn waiting(&self) -> usize {
        self.incoming
            .upgrade()
            .map_or(0, |tx| tx.max_capacity() - tx.capacity())
    }

    fn buffered(&self) -> usize {
        self.outgoing
            .as_ref()
            .map_or(0, |tx| tx.max_capacity() - tx.capacity())
    }

    fn counts(&self) -> String {
        format!(
            "exported={} imported={} dropped={} missed={} duplicates={} echoes={} rejected={} discarded={} buffered={}",
            self.shared.exported.load(Relaxed),
            self.shared.imported.load(Relaxed),
            self.dropped(),
            self.missed(),
            self.shared.duplicates.load(Relaxed),
            self.shared.echoes.load(Relaxed),
            self.shared.rejected.load(Relaxed),
            self.shared.discarded.load(Relaxed),
            self.buffered(),
        )
    }

    /// Log what the runtime left for us, and new drops and gaps (at most
    /// once per `REPORT_EVERY`, with the totals).
    fn report(&mut self, ctx: &Context, force: bool) {
        let (notes, lost) = self.shared.take_notes();
        for (level, message) in notes {
            ctx.log(level, message);
        }
        if lost > 0 {
            ctx.warn(format!(
                "{lost} more log line(s) from the network side not shown"
            ));
        }
        let now = (self.dropped(), self.missed());
        if now != self.reported && (force || self.reported_at.elapsed() >= REPORT_EVERY) {
            if now.0 > self.reported.0 {
                ctx.warn(format!(
                    "dropped {} export(s) (buffer of {} full while the server is away, or refused); {} in all",
                    now.0 - self.reported.0,
                    self.config.buffer,
                    now.0
                ));
            }
            if now.1 != self.reported.1 {
                ctx.warn(format!(
                    "imports missing from their senders' sequences: {} (was {})",
                    now.1, self.reported.1
                ));
            }
            self.reported = now;
            self.reported_at = Instant::now();
        }
    }

    fn export(&mut self, topic: &str, payload: &[u8], content: ContentType) {
        let Some(outgoing) = &self.outgoing else {
            return;
        };
        let subject = self.config.subject(topic);
        if !self.next_seq.contains_key(&subject) && self.next_seq.len() >= MAX_NUMBERED {
            self.next_seq.clear();
            self.epoch += 1;
            // `link` knows the base id: it recognises every epoch as its own.
            self.origin = format!("{}.{}", self.origin_base, self.epoch).into();
        }
        self.exports += 1;
        let seq = self.next_seq.entry(subject.clone()).or_insert(0);
        *seq += 1;
        let out = Outgoing {
            origin: self.origin.clone(),
            subject,
            payload: payload.to_vec(),
            content,
            seq: *seq,
        };
        // The number is used even when the event is dropped: importers then
        // see the gap and count it.
        if outgoing.try_send(out).is_err() {
            self.dropped_full += 1;
        }
    }
}

impl Plugin for Bridge {
    type Config = Config;

    fn init(config: Config, ctx: &Context) -> Result<Self> {
        let config = Arc::new(config);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(format!("nats:{}", ctx.name()))
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the network runtime: {e}"))?;
        let origin_base = make_origin(ctx.name());
        let origin: Arc<str> = origin_base.clone().into();
        let shared = Arc::new(Shared::default());
        let (out_tx, out_rx) = mpsc::channel(config.buffer);
        let (in_tx, in_rx) = mpsc::channel(config.import_buffer);
        let incoming = in_tx.downgrade();
        shared.touch();
        let importer = Importer::start(
            ctx.name(),
            config.clone(),
            shared.clone(),
            runtime.handle().clone(),
            ctx.publisher(),
            in_rx,
        )
        .map_err(|e| format!("cannot start the importer thread: {e}"))?;
        let link = runtime.block_on(link::start(
            config.clone(),
            ctx.name(),
            origin.clone(),
            shared.clone(),
            out_rx,
            in_tx,
        ))?;
        ctx.info(format!(
            "bridging {} (export {:?}, import {:?}{}{}{}) as {origin}",
            config.url,
            config.export.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
            config.import.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
            config
                .prefix
                .as_ref()
                .map(|p| format!(", prefix {p}"))
                .unwrap_or_default(),
            config
                .queue_group
                .as_ref()
                .map(|g| format!(", queue group {g}"))
                .unwrap_or_default(),
            config
                .jetstream
                .as_ref()
                .map(|s| format!(", jetstream stream {s}"))
                .unwrap_or_default(),
        ));
        Ok(Bridge {
            config,
            origin_base,
            epoch: 0,
            origin,
            next_seq: HashMap::new(),
            outgoing: Some(out_tx),
            incoming,
            importer: Some(importer),
            shared,
            runtime: Some(runtime),
            link: Some(link),
            exports: 0,
            dropped_full: 0,
            reported: (0, 0),
            reported_at: Instant::now(),
        })
    }

    fn on_event(&mut self, event: &Event<'_>, ctx: &Context) -> Result<()> {
        // Our own publications are imports: sending them back would loop
        // (the host does not deliver them to us, unless `echo = true`).
        if event.source() != ctx.name()
            && self.config.export.iter().any(|p| p.matches(event.topic()))
        {
            if self.outgoing.is_none() {
                return Err(format!(
                    "cannot export {}: the bridge has stopped and its connection is closed",
                    event.topic()
                )
                .into());
            }
            self.export(event.topic(), event.bytes(), event.content_type());
        }
        self.report(ctx, false);
        Ok(())
    }

    fn tick(&mut self, ctx: &Context) -> Result<()> {
        self.report(ctx, false);
        Ok(())
    }

    fn stop(&mut self, ctx: &Context) -> Result<()> {
        // Take no more imports; publish those already here.
        if let Some(mut importer) = self.importer.take()
            && !importer.finish(self.config.flush_timeout)
        {
            ctx.warn(format!(
                "the importer did not finish within {:?} (flush_timeout): a full mailbox holds it up; what it holds is published if the host still takes it",
                self.config.flush_timeout
            ));
        }
        // Closing the queue lets the exporter finish once it sent the rest.
        self.outgoing = None;
        let mut flushed = true;
        if let (Some(runtime), Some(link)) = (&self.runtime, &mut self.link) {
            let timeout = self.config.flush_timeout;
            let exporter = link.exporter.take();
            let importers = &mut link.importers;
            // The timers must be made inside the runtime. Core imports end
            // once they counted what they hold (see `link::import_core`).
            flushed = runtime.block_on(async {
                let deadline = tokio::time::Instant::now() + timeout;
                let flushed = match exporter {
                    Some(exporter) => tokio::time::timeout_at(deadline, exporter).await.is_ok(),
                    None => true,
                };
                for importer in importers.iter_mut() {
                    let _ = tokio::time::timeout_at(deadline, importer).await;
                }
                flushed
            });
        }
        if let Some(link) = self.link.take() {
            for importer in &link.importers {
                importer.abort();
            }
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
        if !flushed {
            // The network side is gone: what it still held is lost.
            let shared = &self.shared;
            let left = self
                .exports
                .saturating_sub(self.dropped_full)
                .saturating_sub(shared.exported.load(Relaxed))
                .saturating_sub(shared.dropped.load(Relaxed));
            shared.dropped.fetch_add(left, Relaxed);
            ctx.warn(format!(
                "{left} export(s) not delivered within {:?} (flush_timeout): dropped",
                self.config.flush_timeout
            ));
        }
        self.report(ctx, true);
        ctx.info(format!("stopped: {}", self.counts()));
        Ok(())
    }

    fn health(&mut self, ctx: &Context) -> Option<Health> {
        self.report(ctx, false);
        let counts = self.counts();
        if !self.shared.connected.load(Relaxed) {
            let since = *self
                .shared
                .down_since
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let for_how_long = since
                .map(|t| format!(" for {:.1}s", t.elapsed().as_secs_f64()))
                .unwrap_or_default();
            return Some(Health::failing(format!(
                "not connected to {}{for_how_long}; reconnecting; {counts}",
                self.config.url
            )));
        }
        if let Some(problem) = self
            .shared
            .problem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Some(Health::failing(format!("{problem}; {counts}")));
        }
        if self.waiting() > 0 && self.shared.since_progress() > STALL {
            return Some(Health::degraded(format!(
                "imports wait: none was published for over {STALL:?} (a full mailbox holds them up); {counts}"
            )));
        }
        Some(Health {
            status: plughost_api::HealthStatus::Ok,
            message: format!("connected to {}; {counts}", self.config.url),
        })
    }

    fn ready(&mut self, _ctx: &Context) -> Option<Readiness> {
        let connected = self.shared.connected.load(Relaxed);
        let subscribed = self.shared.subscribed.load(Relaxed);
        let ready = connected && subscribed >= self.config.import.len();
        Some(Readiness {
            ready,
            message: match (connected, ready) {
                (false, _) => format!("not connected to {}", self.config.url),
                (true, false) => format!(
                    "{subscribed} of {} import subscription(s) in place",
                    self.config.import.len()
                ),
                (true, true) => String::new(),
            },
        })
    }

    fn jobs(&mut self, _ctx: &Context) -> Option<Vec<JobReport>> {
        let problem = self
            .shared
            .problem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Some(vec![JobReport {
            pipeline: "nats-bridge".to_owned(),
            priority: 0,
            ready: self.shared.connected.load(Relaxed),
            queue: self.config.url.clone(),
            active: self.shared.in_flight.load(Relaxed) as i64,
            delayed: self.buffered() as i64,
            reserved: self.waiting() as i64,
            driver: match self.config.jetstream {
                Some(_) => "nats-jetstream".to_owned(),
                None => "nats".to_owned(),
            },
            error_message: match problem {
                Some(problem) => format!("{problem}; {}", self.counts()),
                None => self.counts(),
            },
        }])
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        // Dropped without `stop` (after a failure): do not wait for the
        // network, nor for the importer (its publishes are refused from now).
        if let Some(mut importer) = self.importer.take() {
            importer.finish(Duration::ZERO);
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

export_plugin!(Bridge);
