//! Where events enter the bus from outside the host: an input stream, the
//! control socket, HTTP ingest, the embedding program, or a plugin. Each
//! entry stamps its own source on the events it lets in (`stdin`, `ctl`,
//! `http`, the instance's name, ...), and every entry refuses the same
//! things: a topic the host publishes on itself (see
//! [`plughost_api::topic::RESERVED`]), an event larger than `[host]
//! max_event_bytes`, an invalid topic. Refusals are counted per entry and
//! reason; the checks cost the event path one comparison and one flag of the
//! cached route (see `bus`).

use plughost_api::ContentError;
use plughost_api::topic::TopicError;
use std::sync::atomic::{AtomicU64, Ordering};

/// An entry point through which events reach the host from outside: the
/// source each stamps on its events, and the label it is counted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Entry {
    /// The program embedding the host ([`Host::publish`](crate::Host::publish)):
    /// source `host`, counted as `embedder`.
    Embedder,
    /// `plughost run --events -`: source `stdin`.
    Stdin,
    /// `plughost run --events FILE`: source `file`.
    File,
    /// The control socket (`plughost ctl publish`): source `ctl`.
    Ctl,
    /// `POST /events/TOPIC` on the status server: source `http`.
    Http,
}

impl Entry {
    /// The source its events carry.
    pub fn source(self) -> &'static str {
        match self {
            Entry::Embedder => "host",
            Entry::Stdin => "stdin",
            Entry::File => "file",
            Entry::Ctl => "ctl",
            Entry::Http => "http",
        }
    }
}

/// Who publishes, as the bus checks and counts it: an entry point, or a
/// plugin instance (through its context, or a `publish` command it calls),
/// whose events carry its own name as source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Publisher {
    Entry(Entry),
    Plugin,
}

impl Publisher {
    const ALL: [Publisher; 6] = [
        Publisher::Entry(Entry::Embedder),
        Publisher::Entry(Entry::Stdin),
        Publisher::Entry(Entry::File),
        Publisher::Entry(Entry::Ctl),
        Publisher::Entry(Entry::Http),
        Publisher::Plugin,
    ];

    /// Its label in counts and metrics.
    fn label(self) -> &'static str {
        match self {
            Publisher::Entry(Entry::Embedder) => "embedder",
            Publisher::Entry(entry) => entry.source(),
            Publisher::Plugin => "plugin",
        }
    }

    fn index(self) -> usize {
        Publisher::ALL
            .iter()
            .position(|p| *p == self)
            .expect("every publisher is listed")
    }
}

/// Why an event was not published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The host no longer takes events from outside.
    #[error("the host is shutting down")]
    ShuttingDown,
    /// The topic is not a valid concrete topic.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// Only the host publishes on this topic.
    #[error(
        "topic `{topic}` is reserved: only the host publishes on plughost.>, internal.state.> and internal.metrics.>"
    )]
    Reserved {
        /// The topic.
        topic: String,
    },
    /// The host cannot be reached: a plugin in its own process whose host
    /// is gone (the reason is the socket's).
    #[error("the host is gone: {0}")]
    HostGone(String),
    /// The instance that published has ended (stopped, or failed and
    /// restarted as a new instance): a publisher it left behind publishes
    /// no more.
    #[error("instance `{name}` has ended: its publishers publish no more")]
    Ended {
        /// The instance.
        name: String,
    },
    /// The payload is larger than `[host] max_event_bytes`.
    #[error("the event is {bytes} bytes, more than max_event_bytes ({limit})")]
    TooLarge {
        /// The payload's size.
        bytes: usize,
        /// `[host] max_event_bytes`.
        limit: usize,
    },
    /// The payload is not what its content type says (`text` that is not
    /// UTF-8, `json` that is not JSON).
    #[error(transparent)]
    Content(#[from] ContentError),
}

impl PublishError {
    /// The reason it is counted under, if it is a refusal (not a shutdown).
    pub(crate) fn reason(&self) -> Option<Reason> {
        match self {
            PublishError::ShuttingDown | PublishError::HostGone(_) | PublishError::Ended { .. } => {
                None
            }
            PublishError::Topic(_) => Some(Reason::InvalidTopic),
            PublishError::Reserved { .. } => Some(Reason::ReservedTopic),
            PublishError::TooLarge { .. } => Some(Reason::TooLarge),
            PublishError::Content(_) => Some(Reason::InvalidContent),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    ReservedTopic,
    TooLarge,
    InvalidTopic,
    InvalidContent,
}

impl Reason {
    const ALL: [Reason; 4] = [
        Reason::ReservedTopic,
        Reason::TooLarge,
        Reason::InvalidTopic,
        Reason::InvalidContent,
    ];

    fn label(self) -> &'static str {
        match self {
            Reason::ReservedTopic => "reserved_topic",
            Reason::TooLarge => "too_large",
            Reason::InvalidTopic => "invalid_topic",
            Reason::InvalidContent => "invalid_content",
        }
    }
}

/// Events an entry refused for one reason, for operators.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Refused {
    /// `embedder`, `stdin`, `file`, `ctl`, `http` or `plugin`.
    pub entry: &'static str,
    /// `reserved_topic`, `too_large`, `invalid_topic` or `invalid_content`.
    pub reason: &'static str,
    /// How many, since the host started.
    pub count: u64,
}

/// Refusals per publisher and reason, for the life of the host.
#[derive(Default)]
pub(crate) struct Refusals {
    counts: [[AtomicU64; Reason::ALL.len()]; Publisher::ALL.len()],
}

impl Refusals {
    /// Count one event refused for `reason` against `by`: a process plugin's
    /// publish, refused in its own process (which sends the reason).
    pub(crate) fn count_reason(&self, by: Publisher, reason: Reason) {
        let cell = Reason::ALL.iter().position(|r| *r == reason);
        if let Some(cell) = cell {
            self.counts[by.index()][cell].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Count `error` against `by` (a shutdown is not a refusal), and return it.
    pub(crate) fn count(&self, by: Publisher, error: PublishError) -> PublishError {
        self.count_many(by, error, 1)
    }

    /// Count `events` events refused with `error` against `by`.
    pub(crate) fn count_many(
        &self,
        by: Publisher,
        error: PublishError,
        events: u64,
    ) -> PublishError {
        if let Some(reason) = error.reason() {
            let row = &self.counts[by.index()];
            let cell = Reason::ALL.iter().position(|r| *r == reason);
            if let Some(cell) = cell {
                row[cell].fetch_add(events, Ordering::Relaxed);
            }
        }
        error
    }

    /// Every (entry, reason) pair, zero or not, in a fixed order.
    pub(crate) fn all(&self) -> Vec<Refused> {
        let mut all = Vec::new();
        for by in Publisher::ALL {
            for (cell, reason) in Reason::ALL.iter().enumerate() {
                all.push(Refused {
                    entry: by.label(),
                    reason: reason.label(),
                    count: self.counts[by.index()][cell].load(Ordering::Relaxed),
                });
            }
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_counted_per_entry_and_reason_and_shutdowns_are_not() {
        let refusals = Refusals::default();
        let reserved = || PublishError::Reserved {
            topic: "plughost.plugin.failed".into(),
        };
        refusals.count(Publisher::Entry(Entry::Stdin), reserved());
        refusals.count(Publisher::Entry(Entry::Stdin), reserved());
        refusals.count(
            Publisher::Plugin,
            PublishError::TooLarge { bytes: 2, limit: 1 },
        );
        refusals.count(Publisher::Entry(Entry::Http), PublishError::ShuttingDown);
        let nonzero: Vec<(&str, &str, u64)> = refusals
            .all()
            .into_iter()
            .filter(|r| r.count > 0)
            .map(|r| (r.entry, r.reason, r.count))
            .collect();
        assert_eq!(
            nonzero,
            [("stdin", "reserved_topic", 2), ("plugin", "too_large", 1)]
        );
        assert_eq!(refusals.all().len(), 24);
    }

    #[test]
    fn errors_say_what_is_refused_and_why() {
        let reserved = PublishError::Reserved {
            topic: "plughost.plugin.failed".into(),
        };
        assert_eq!(
            reserved.to_string(),
            "topic `plughost.plugin.failed` is reserved: only the host publishes on plughost.>, internal.state.> and internal.metrics.>"
        );
        let large = PublishError::TooLarge {
            bytes: 2000,
            limit: 1024,
        };
        assert_eq!(
            large.to_string(),
            "the event is 2000 bytes, more than max_event_bytes (1024)"
        );
    }
}
