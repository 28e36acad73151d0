//! The importer: a thread of the bridge's own that publishes what the
//! runtime imported, through the instance's `Publisher`, as it comes. The
//! instance's thread is not involved, so imports flow while the bridge
//! waits for events, with no `tick_interval`; a full mailbox under `overflow
//! = "block"` holds up this thread only.
//!
//! It runs until the bridge's `stop` (or drop) tells it to, then closes the
//! queue (the runtime counts what it still holds as discarded), publishes
//! what the queue already holds, and ends.

use crate::config::Config;
use crate::link::Incoming;
use crate::link::{CONTENT_TYPE, ORIGIN, SEQ, Shared};
use crate::sequence::{Sequences, Verdict};
use plughost_api::{ContentType, LogLevel, Publisher};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The bridge's handle on its importer thread.
pub(crate) struct Importer {
    stop: Option<oneshot::Sender<()>>,
    /// Disconnects when the thread ends.
    ended: std::sync::mpsc::Receiver<()>,
}

impl Importer {
    /// Start the thread of instance `name`, taking imports from `incoming`.
    pub(crate) fn start(
        name: &str,
        config: Arc<Config>,
        shared: Arc<Shared>,
        runtime: tokio::runtime::Handle,
        publisher: Publisher,
        incoming: mpsc::Receiver<Incoming>,
    ) -> std::io::Result<Importer> {
        let (stop, stopped) = oneshot::channel();
        let (end, ended) = std::sync::mpsc::channel::<()>();
        let importer = Thread {
            sequences: config.queue_group.is_none().then(Sequences::default),
            config,
            shared,
            runtime,
            publisher,
        };
        std::thread::Builder::new()
            .name(format!("nats:{name}:import"))
            .spawn(move || {
                let _end = end;
                importer.run(incoming, stopped);
            })?;
        Ok(Importer {
            stop: Some(stop),
            ended,
        })
    }

    /// Have the thread publish what it already took and end; wait for it up
    /// to `limit`. False when it did not end in time (it is blocked on a
    /// full mailbox; it ends once that publish is done or refused).
    pub(crate) fn finish(&mut self, limit: Duration) -> bool {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        matches!(
            self.ended.recv_timeout(limit),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
        )
    }
}

/// The importer thread's own state.
struct Thread {
    config: Arc<Config>,
    /// `None` in a queue group, where each member sees only part of a subject.
    sequences: Option<Sequences>,
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    publisher: Publisher,
}

enum Next {
    Message(Incoming),
    Stop,
}

impl Thread {
    fn run(mut self, mut incoming: mpsc::Receiver<Incoming>, mut stopped: oneshot::Receiver<()>) {
        loop {
            let next = self.runtime.block_on(async {
                tokio::select! {
                    biased;
                    _ = &mut stopped => Next::Stop,
                    message = incoming.recv() => message.map_or(Next::Stop, Next::Message),
                }
            });
            match next {
                Next::Message(message) => self.deliver(message),
                Next::Stop => break,
            }
        }
        // Take no more (the runtime counts the rest as discarded); publish
        // what is already here.
        incoming.close();
        while let Ok(message) = incoming.try_recv() {
            self.deliver(message);
        }
    }

    fn deliver(&mut self, incoming: Incoming) {
        let message = incoming.message();
        let subject = message.subject.as_str();
        let header = |name: &str| {
            message
                .headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str())
        };
        // Messages from other publishers than bridges carry no numbers.
        let numbered = match (header(ORIGIN), header(SEQ).and_then(|s| s.parse().ok())) {
            (Some(origin), Some(seq)) => Some((origin.to_owned(), seq)),
            _ => None,
        };
        if let (Some(sequences), Some((origin, seq))) = (&self.sequences, &numbered)
            && sequences.check(origin, subject, *seq) == Verdict::Duplicate
        {
            self.shared.duplicates.fetch_add(1, Relaxed);
            self.acknowledge(incoming);
            return;
        }
        let topic = self.config.topic(subject);
        if let Err(e) = plughost_api::topic::validate_topic(topic) {
            // Refused now, refused on every redelivery: let it go, counted.
            self.shared.rejected.fetch_add(1, Relaxed);
            let note = format!("cannot publish import {subject} here: {e}");
            self.shared.note(LogLevel::Warn, note);
            self.acknowledge(incoming);
            return;
        }
        // Published with the type its header names (a bridge's export says
        // it); without one, or when the payload is not what the header says
        // (a foreign publisher's mistake), the message is bytes.
        let content = ContentType::from_mime(header(CONTENT_TYPE))
            .ok()
            .filter(|content| content.check(&message.payload).is_ok())
            .unwrap_or(ContentType::Bytes);
        match self
            .publisher
            .publish_typed(topic, &message.payload, content)
        {
            Ok(()) => {
                self.shared.imported.fetch_add(1, Relaxed);
                if let (Some(sequences), Some((origin, seq))) = (&mut self.sequences, &numbered) {
                    sequences.record(origin, subject, *seq);
                    self.shared.missed.store(sequences.missed(), Relaxed);
                }
                self.shared.touch();
                self.acknowledge(incoming);
            }
            Err(e) if plughost_api::topic::is_reserved(topic) => {
                // One of the host's own topics: the host refused it (and
                // counted it), and will refuse every redelivery: let it go.
                self.shared.rejected.fetch_add(1, Relaxed);
                let note = format!("cannot publish import {subject} here: {e}");
                self.shared.note(LogLevel::Warn, note);
                self.acknowledge(incoming);
            }
            Err(e) => {
                // Not acknowledged: JetStream sends it again later.
                self.shared.rejected.fetch_add(1, Relaxed);
                let note = format!("cannot publish import {subject}: {e}");
                self.shared.note(LogLevel::Warn, note);
            }
        }
    }

    /// A JetStream import is acknowledged once published (or skipped).
    fn acknowledge(&self, incoming: Incoming) {
        if let Incoming::Stream(message) = incoming {
            self.runtime.spawn(async move {
                let _ = message.ack().await;
            });
        }
    }
}
