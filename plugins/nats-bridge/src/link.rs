//! The network side: one NATS connection, driven by a tokio runtime that the
//! bridge owns (one worker thread), with one task exporting and one task per
//! import pattern. It never touches the host: events cross to and from the
//! plugin's thread through two bounded queues, and what the plugin should
//! log is left in [`Shared`] for that thread to pick up.

use crate::config::Config;
use async_nats::jetstream::{self, consumer::pull, message::PublishMessage};
use async_nats::{Client, HeaderMap, jetstream::context::PublishErrorKind};
use futures_util::StreamExt;
use plughost_api::{ContentType, LogLevel};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Header naming the bridge run that exported a message.
pub(crate) const ORIGIN: &str = "Plughost-Origin";
/// Header carrying the message's number among its origin's on that subject.
pub(crate) const SEQ: &str = "Plughost-Seq";
/// The header carrying an export's content type, as a MIME type
/// (`application/json`, `text/plain; charset=utf-8`,
/// `application/octet-stream`); an import without it is bytes.
pub(crate) const CONTENT_TYPE: &str = "Content-Type";

/// JetStream publishes in flight at once (their acks are awaited in order).
const WINDOW: usize = 256;
/// Log lines kept for the plugin's thread; more are counted, not kept.
const MAX_NOTES: usize = 100;
/// How long a stopping core import waits for the server to confirm its
/// unsubscribe (and so for the last messages sent to it).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// An event on its way out.
pub(crate) struct Outgoing {
    /// The origin id it is numbered under (the bridge's, or a later epoch of it).
    pub origin: Arc<str>,
    pub subject: String,
    pub payload: Vec<u8>,
    pub content: ContentType,
    pub seq: u64,
}

/// A message on its way in. JetStream messages are acknowledged by the
/// plugin's thread once published locally (boxed: they carry their context).
pub(crate) enum Incoming {
    Core(async_nats::Message),
    Stream(Box<jetstream::Message>),
}

impl Incoming {
    pub(crate) fn message(&self) -> &async_nats::Message {
        match self {
            Incoming::Core(message) => message,
            Incoming::Stream(message) => &message.message,
        }
    }
}

/// State both sides read; counters are written by the runtime.
#[derive(Default)]
pub(crate) struct Shared {
    pub connected: AtomicBool,
    /// When the connection was lost (or the bridge started), while not connected.
    pub down_since: Mutex<Option<Instant>>,
    /// Handed to the server (JetStream: acknowledged by it).
    pub exported: AtomicU64,
    /// Exports the runtime gave up on (refused by the server, or still
    /// held when `stop` ran out of time).
    pub dropped: AtomicU64,
    /// Imports of our own exports, skipped.
    pub echoes: AtomicU64,
    /// Imports taken from NATS but not handed over because the bridge stopped.
    pub discarded: AtomicU64,
    /// Imports published here (by the importer thread).
    pub imported: AtomicU64,
    /// Imports the host refused (an unpublishable topic, or shutting down).
    pub rejected: AtomicU64,
    /// Imports skipped as repeats of what was already published.
    pub duplicates: AtomicU64,
    /// Imports missing from their senders' sequences.
    pub missed: AtomicU64,
    /// When the importer last published (or the bridge started).
    pub progress: Mutex<Option<Instant>>,
    /// JetStream publishes sent and not yet acknowledged.
    pub in_flight: AtomicUsize,
    /// Import subscriptions (or JetStream consumers) in place.
    pub subscribed: AtomicUsize,
    /// The last problem, shown by health while not resolved.
    pub problem: Mutex<Option<String>>,
    notes: Mutex<Vec<(LogLevel, String)>>,
    notes_lost: AtomicU64,
}

impl Shared {
    pub(crate) fn note(&self, level: LogLevel, message: String) {
        let mut notes = self.notes.lock().unwrap_or_else(|e| e.into_inner());
        if notes.len() < MAX_NOTES {
            notes.push((level, message));
        } else {
            self.notes_lost.fetch_add(1, Relaxed);
        }
    }

    /// Take the lines to log, and how many were not kept.
    pub(crate) fn take_notes(&self) -> (Vec<(LogLevel, String)>, u64) {
        let notes = std::mem::take(&mut *self.notes.lock().unwrap_or_else(|e| e.into_inner()));
        (notes, self.notes_lost.swap(0, Relaxed))
    }

    /// The importer published one.
    pub(crate) fn touch(&self) {
        *self.progress.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// How long since the importer last published (or [`Shared::touch`]).
    pub(crate) fn since_progress(&self) -> Duration {
        self.progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map_or(Duration::ZERO, |t| t.elapsed())
    }

    fn set_problem(&self, problem: Option<String>) {
        *self.problem.lock().unwrap_or_else(|e| e.into_inner()) = problem;
    }

    fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Relaxed);
        let mut since = self.down_since.lock().unwrap_or_else(|e| e.into_inner());
        match (connected, since.is_some()) {
            (true, _) => *since = None,
            (false, false) => *since = Some(Instant::now()),
            (false, true) => {}
        }
    }
}

/// Retry delays: 50 ms doubling up to 2 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(50u64.saturating_mul(1 << attempt.min(6))).min(Duration::from_secs(2))
}

/// Everything the tasks need, cloned into each.
#[derive(Clone)]
struct Env {
    client: Client,
    config: Arc<Config>,
    origin: Arc<str>,
    shared: Arc<Shared>,
    connected: watch::Receiver<bool>,
}

impl Env {
    async fn wait_connected(&mut self) {
        // The sender lives as long as the client's event callback.
        let _ = self.connected.wait_for(|up| *up).await;
    }

    /// Whether we exported it, under our origin id or a later epoch of it.
    fn is_own(&self, message: &async_nats::Message) -> bool {
        let own = message
            .headers
            .as_ref()
            .and_then(|h| h.get(ORIGIN))
            .is_some_and(|origin| {
                origin
                    .as_str()
                    .strip_prefix(&*self.origin)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
            });
        if own {
            self.shared.echoes.fetch_add(1, Relaxed);
        }
        own
    }

    /// Create the stream unless it exists: its subjects are this bridge's
    /// export subjects and import patterns. Retries until it succeeds.
    async fn ensure_stream(&mut self, js: &jetstream::Context) -> jetstream::stream::Stream {
        let name = self.config.jetstream.clone().unwrap_or_default();
        let mut subjects: Vec<String> = Vec::new();
        for pattern in self.config.export.iter().chain(&self.config.import) {
            let subject = self.config.subject(pattern.as_str());
            if !subjects.contains(&subject) {
                subjects.push(subject);
            }
        }
        let mut attempt = 0;
        loop {
            self.wait_connected().await;
            let stream_config = jetstream::stream::Config {
                name: name.clone(),
                subjects: subjects.clone(),
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            };
            match js.get_or_create_stream(stream_config).await {
                Ok(stream) => {
                    if attempt > 0 {
                        self.shared.set_problem(None);
                    }
                    return stream;
                }
                Err(e) => {
                    let problem = format!("jetstream stream `{name}`: {e}");
                    if attempt == 0 {
                        self.shared
                            .note(LogLevel::Warn, format!("{problem}; retrying"));
                    }
                    self.shared.set_problem(Some(problem));
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }

    fn headers(out: &Outgoing) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ORIGIN, &*out.origin);
        headers.insert(SEQ, out.seq.to_string().as_str());
        headers.insert(CONTENT_TYPE, out.content.mime());
        headers
    }
}

/// The running network side.
pub(crate) struct Link {
    pub exporter: Option<tokio::task::JoinHandle<()>>,
    pub importers: Vec<tokio::task::JoinHandle<()>>,
}

/// Connect (in the background: a server that is down now is retried) and
/// start the tasks. Runs inside the bridge's runtime.
pub(crate) async fn start(
    config: Arc<Config>,
    name: &str,
    origin: Arc<str>,
    shared: Arc<Shared>,
    outgoing: mpsc::Receiver<Outgoing>,
    incoming: mpsc::Sender<Incoming>,
) -> Result<Link, String> {
    shared.set_connected(false);
    let (state_tx, connected) = watch::channel(false);
    let events = shared.clone();
    let url = config.url.clone();
    let client = async_nats::ConnectOptions::new()
        .name(format!("plughost {name}"))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .ping_interval(Duration::from_secs(10))
        .reconnect_delay_callback(|attempts| backoff(attempts as u32))
        .event_callback(move |event| {
            use async_nats::Event;
            match &event {
                Event::Connected => {
                    events.set_connected(true);
                    events.set_problem(None);
                    let _ = state_tx.send(true);
                    events.note(LogLevel::Info, format!("connected to {url}"));
                }
                Event::Disconnected => {
                    events.set_connected(false);
                    let _ = state_tx.send(false);
                    events.note(
                        LogLevel::Warn,
                        format!("disconnected from {url}; reconnecting"),
                    );
                }
                Event::SlowConsumer(_) => events.note(
                    LogLevel::Warn,
                    "imports arrive faster than the plugin publishes them: the client dropped some (counted as missed)".to_owned(),
                ),
                other => events.note(LogLevel::Warn, format!("nats: {other}")),
            }
            async {}
        })
        .connect(config.url.as_str())
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", config.url))?;
    let env = Env {
        client: client.clone(),
        config: config.clone(),
        origin,
        shared,
        connected,
    };
    let exporter = (!config.export.is_empty()).then(|| match &config.jetstream {
        Some(_) => tokio::spawn(export_stream(env.clone(), outgoing)),
        None => tokio::spawn(export_core(env.clone(), outgoing)),
    });
    let importers = config
        .import
        .iter()
        .map(|pattern| {
            let subject = config.subject(pattern.as_str());
            match &config.jetstream {
                Some(_) => tokio::spawn(import_stream(env.clone(), subject, incoming.clone())),
                None => tokio::spawn(import_core(env.clone(), subject, incoming.clone())),
            }
        })
        .collect();
    Ok(Link {
        exporter,
        importers,
    })
}

/// Core NATS: hand each event to the client while connected. While not, the
/// events wait in the bridge's bounded queue, not in the client.
async fn export_core(mut env: Env, mut outgoing: mpsc::Receiver<Outgoing>) {
    loop {
        let Some(out) = outgoing.recv().await else {
            break;
        };
        // Connected when it is handed over, not only when it was awaited: the
        // client would hold it while away, counted as exported and perhaps
        // lost; held here it is still the bridge's to flush or count.
        env.wait_connected().await;
        let headers = Env::headers(&out);
        match env
            .client
            .publish_with_headers(out.subject, headers, out.payload.into())
            .await
        {
            Ok(()) => {
                env.shared.exported.fetch_add(1, Relaxed);
            }
            Err(e) => {
                env.shared.dropped.fetch_add(1, Relaxed);
                env.shared
                    .note(LogLevel::Error, format!("cannot publish: {e}; dropped"));
            }
        }
    }
    // Closing: what the client holds goes out before the bridge stops.
    if let Err(e) = env.client.flush().await {
        env.shared
            .note(LogLevel::Warn, format!("final flush failed: {e}"));
    }
}

/// JetStream: publish a window of events, await their acks in order, and
/// send again from the first one not acknowledged. A message id per event
/// lets the server drop the copies of those that did arrive.
async fn export_stream(mut env: Env, mut outgoing: mpsc::Receiver<Outgoing>) {
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(2))
        .build(env.client.clone());
    env.ensure_stream(&js).await;
    let mut pending: VecDeque<Outgoing> = VecDeque::new();
    let mut closed = false;
    let mut attempt = 0u32;
    loop {
        if pending.is_empty() {
            if closed {
                break;
            }
            match outgoing.recv().await {
                Some(out) => pending.push_back(out),
                None => break,
            }
        }
        while !closed && pending.len() < WINDOW {
            match outgoing.try_recv() {
                Ok(out) => pending.push_back(out),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => closed = true,
            }
        }
        env.wait_connected().await;
        env.shared.in_flight.store(pending.len(), Relaxed);
        let mut acks = Vec::with_capacity(pending.len());
        let mut send_failure = None;
        for out in &pending {
            let publish = PublishMessage::build()
                .payload(out.payload.clone().into())
                .headers(Env::headers(out))
                .message_id(format!("{}:{}:{}", out.origin, out.subject, out.seq));
            match js.send_publish(out.subject.clone(), publish).await {
                Ok(ack) => acks.push(ack),
                Err(e) => {
                    send_failure = Some(e);
                    break;
                }
            }
        }
        let mut acknowledged = 0;
        let mut failure = None;
        for ack in acks {
            match ack.await {
                Ok(_) => acknowledged += 1,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let failure = failure.or(send_failure);
        pending.drain(..acknowledged);
        env.shared.exported.fetch_add(acknowledged as u64, Relaxed);
        env.shared.in_flight.store(0, Relaxed);
        let Some(error) = failure else {
            if attempt > 0 {
                env.shared.set_problem(None);
                env.shared.note(
                    LogLevel::Info,
                    "jetstream publishes acknowledged again".to_owned(),
                );
            }
            attempt = 0;
            continue;
        };
        // The head of `pending` failed: give up on it only when the server
        // refuses it for good; otherwise send it (and what follows) again.
        let refused = match error.kind() {
            PublishErrorKind::MaxPayloadExceeded => true,
            PublishErrorKind::Other => attempt >= 5,
            _ => false,
        };
        if refused && let Some(out) = pending.pop_front() {
            env.shared.dropped.fetch_add(1, Relaxed);
            env.shared.note(
                LogLevel::Error,
                format!("jetstream refused {}: {error}; dropped", out.subject),
            );
            attempt = 0;
            continue;
        }
        let problem = format!("jetstream publish: {error}");
        if attempt == 0 {
            env.shared
                .note(LogLevel::Warn, format!("{problem}; sending again"));
        }
        if error.kind() == PublishErrorKind::StreamNotFound {
            env.ensure_stream(&js).await;
        }
        env.shared.set_problem(Some(problem));
        tokio::time::sleep(backoff(attempt)).await;
        attempt += 1;
    }
}

/// Core NATS: subscribe (the client subscribes again after a reconnect) and
/// pass every message that is not our own on, waiting when the queue to the
/// plugin's thread is full. When the bridge stops (closes that queue), what
/// the server sent us and the thread did not get is counted as discarded.
async fn import_core(mut env: Env, subject: String, incoming: mpsc::Sender<Incoming>) {
    let subscribed = match &env.config.queue_group {
        Some(group) => {
            env.client
                .queue_subscribe(subject.clone(), group.clone())
                .await
        }
        None => env.client.subscribe(subject.clone()).await,
    };
    let mut subscriber = match subscribed {
        Ok(subscriber) => subscriber,
        Err(e) => {
            let problem = format!("cannot subscribe to {subject}: {e}");
            env.shared.note(LogLevel::Error, problem.clone());
            env.shared.set_problem(Some(problem));
            return;
        }
    };
    // Ready once the server has seen the subscription.
    let ready = async {
        let mut attempt = 0;
        loop {
            env.wait_connected().await;
            if env.client.flush().await.is_ok() {
                break;
            }
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
        }
    };
    let stopped = tokio::select! {
        () = ready => false,
        () = incoming.closed() => true,
    };
    if !stopped {
        env.shared.subscribed.fetch_add(1, Relaxed);
        loop {
            let message = tokio::select! {
                message = subscriber.next() => message,
                // The bridge stopped taking imports.
                () = incoming.closed() => None,
            };
            let Some(message) = message else {
                break;
            };
            if env.is_own(&message) {
                continue;
            }
            if incoming.send(Incoming::Core(message)).await.is_err() {
                env.shared.discarded.fetch_add(1, Relaxed);
                break;
            }
        }
    }
    // Count what the server sent before it took our unsubscribe: the client
    // holds it, and core NATS never sends it again.
    if subscriber.drain().await.is_ok() {
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while let Some(message) = subscriber.next().await {
                if !env.is_own(&message) {
                    env.shared.discarded.fetch_add(1, Relaxed);
                }
            }
        })
        .await;
    }
}

/// JetStream: a durable pull consumer per import pattern. Messages are
/// acknowledged by the plugin's thread after it published them; our own are
/// acknowledged and skipped here.
async fn import_stream(env: Env, subject: String, incoming: mpsc::Sender<Incoming>) {
    let closed = incoming.clone();
    tokio::select! {
        () = consume(env, subject, incoming) => {}
        // The bridge stopped: what it did not acknowledge is sent again later.
        () = closed.closed() => {}
    }
}

/// [`import_stream`]'s work, until the bridge stops.
async fn consume(mut env: Env, subject: String, incoming: mpsc::Sender<Incoming>) {
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(2))
        .build(env.client.clone());
    let base = env.config.consumer.clone().unwrap_or_default();
    let name = format!(
        "{base}_{}",
        subject
            .replace('.', "_")
            .replace('*', "STAR")
            .replace('>', "ALL")
    );
    let mut counted = false;
    let mut attempt = 0;
    loop {
        let stream = env.ensure_stream(&js).await;
        let consumer_config = pull::Config {
            durable_name: Some(name.clone()),
            filter_subject: subject.clone(),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: env.config.ack_wait,
            ..Default::default()
        };
        let messages = match stream.get_or_create_consumer(&name, consumer_config).await {
            Ok(consumer) => consumer.messages().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let mut messages = match messages {
            Ok(messages) => messages,
            Err(e) => {
                let problem = format!("jetstream consumer `{name}`: {e}");
                if attempt == 0 {
                    env.shared
                        .note(LogLevel::Warn, format!("{problem}; retrying"));
                }
                env.shared.set_problem(Some(problem));
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
                continue;
            }
        };
        if attempt > 0 {
            env.shared.set_problem(None);
        }
        attempt = 0;
        if !counted {
            env.shared.subscribed.fetch_add(1, Relaxed);
            counted = true;
        }
        while let Some(item) = messages.next().await {
            match item {
                Ok(message) => {
                    if env.is_own(&message.message) {
                        let _ = message.ack().await;
                        continue;
                    }
                    if incoming
                        .send(Incoming::Stream(Box::new(message)))
                        .await
                        .is_err()
                    {
                        // Not acknowledged: the server sends it again later.
                        return;
                    }
                }
                Err(e) => {
                    use pull::MessagesErrorKind as Kind;
                    if matches!(e.kind(), Kind::ConsumerDeleted | Kind::NoResponders) {
                        env.shared.note(
                            LogLevel::Warn,
                            format!("jetstream consumer `{name}`: {e}; creating it again"),
                        );
                        break;
                    }
                }
            }
        }
        tokio::time::sleep(backoff(attempt)).await;
    }
}
