//! The control lane: orders for an instance's thread, looked at before its
//! next queued event, and how their answers travel back.

use crate::instance::{CallFailure, Instance};
use crate::supervisor::InstanceError;
use crate::supervisor::policy::Supervision;
use crossbeam_channel::Sender;
use plughost_api::{Health, HttpRequest, HttpResponse, JobReport, Readiness};
use std::sync::Arc;

/// Orders for an instance's thread, looked at before its next queued event.
pub(crate) enum Control {
    /// Stop: first handle (`drain`) or drop what is queued, then call `stop`
    /// (unless a [`Control::StopInPlace`] ran it already), and end.
    Stop { drain: bool },
    /// The host's shutdown: first handle what is queued now (`drop_before`
    /// is `None`), or drop what was published before event id
    /// `drop_before` (the shutdown deadline) and handle the rest, then call
    /// `stop`, but keep the instance and its mailbox: events that arrive
    /// afterwards (what other instances' stops publish) still reach its
    /// `on_event`, until a [`Control::Stop`] ends it. Nothing restarts it
    /// from then on. The reply says whether `stop` ran cleanly.
    StopInPlace {
        drop_before: Option<u64>,
        reply: Sender<bool>,
    },
    /// Ask the plugin something between events; answer through the reply.
    Probe(Probe, Reply<(usize, ProbeAnswer)>),
    /// Answer an HTTP request to one of its routes (`None`: 404).
    Http(HttpRequest, Reply<Result<Option<HttpResponse>, String>>),
    /// The instance's process (`pid`) ended: `failure` says how.
    Died { pid: i32, failure: CallFailure },
    /// Stop the plugin (its `stop` runs) and start a fresh one from
    /// `factory` on the same mailbox: restart, or reload with a changed config.
    Replace {
        factory: Factory,
        supervision: Supervision,
        reply: Sender<Result<(), InstanceError>>,
    },
}

/// Where an order's answer goes: called once, on the instance's thread, or
/// dropped unanswered with the order. The asker chooses how it waits (a
/// blocked thread, an async task) without the worker knowing which.
pub(crate) type Reply<T> = Box<dyn FnOnce(T) + Send>;

/// What a probe asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    Health,
    Ready,
    Jobs,
}

/// A plugin's answer to a probe; `None` inside means it does not report that.
#[derive(Debug, Clone)]
pub(crate) enum ProbeAnswer {
    Health(Option<Health>),
    Ready(Option<Readiness>),
    Jobs(Option<Vec<JobReport>>),
    /// The call failed, or the instance is not running.
    Failed(String),
}

/// Makes a fresh instance on the calling thread (the thread of the
/// incarnation it starts; see [`incarnate`]): at start, and at each restart.
pub(crate) type Factory = Arc<dyn Fn() -> Result<Box<dyn Instance>, CallFailure> + Send + Sync>;
