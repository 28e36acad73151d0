//! The one interface the host calls a plugin instance through, whatever its
//! language or isolation, and what a call can end in. The adapters in
//! `library/` implement it; the worker (`worker/`) calls it, on the
//! instance's own thread only.

use crate::event::{Event, EventView};
use plughost_api::{Health, HttpRequest, HttpResponse, JobReport, Readiness};

/// Why a call into a plugin failed.
#[derive(Debug, Clone)]
pub(crate) enum CallFailure {
    /// The plugin returned an error.
    Error(String),
    /// The plugin panicked (caught inside the plugin) or crashed, or its
    /// process ended without being told to (whatever its exit status).
    Panic(String),
}

impl CallFailure {
    /// The same failure, its message prefixed with what was being done.
    pub(crate) fn context(self, what: &str) -> CallFailure {
        match self {
            CallFailure::Error(m) => CallFailure::Error(format!("{what} {m}")),
            CallFailure::Panic(m) => CallFailure::Panic(format!("{what} {m}")),
        }
    }
}

impl std::fmt::Display for CallFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallFailure::Error(message) | CallFailure::Panic(message) => f.write_str(message),
        }
    }
}

/// A live plugin instance, whatever its language. The optional capabilities
/// answer `None` when the plugin does not report them.
pub(crate) trait Instance: Send {
    fn on_event(&mut self, event: &EventView<'_>) -> Result<(), CallFailure>;
    fn stop(&mut self) -> Result<(), CallFailure>;
    fn health(&mut self) -> Result<Option<Health>, CallFailure>;
    fn ready(&mut self) -> Result<Option<Readiness>, CallFailure>;
    fn jobs(&mut self) -> Result<Option<Vec<JobReport>>, CallFailure>;

    /// Instances in another process take events in batches ([`Instance::on_batch`]).
    fn batched(&self) -> bool {
        false
    }

    /// Handle `events` in order. Only called when `batched()`.
    fn on_batch(&mut self, events: &[Event]) -> BatchOutcome {
        let _ = events;
        unreachable!("on_batch is only called on batched instances")
    }

    /// The process the instance runs in, when it has one of its own.
    fn pid(&self) -> Option<i32> {
        None
    }

    /// Background work between events (`tick_interval`).
    fn tick(&mut self) -> Result<(), CallFailure> {
        Ok(())
    }

    /// The routes it serves under `/plugins/NAME`.
    fn routes(&self) -> Vec<String> {
        Vec::new()
    }

    /// Answer an HTTP request; `None` for 404.
    fn http(&mut self, request: HttpRequest) -> Result<Option<HttpResponse>, CallFailure> {
        let _ = request;
        Ok(None)
    }
}

/// What became of a batch of events.
#[derive(Debug, Default)]
pub(crate) struct BatchOutcome {
    /// Events handled without error.
    pub processed: u64,
    /// Events whose handler returned an error: (index in the batch, message).
    pub errors: Vec<(usize, String)>,
    /// The instance died, and why.
    pub fatal: Option<CallFailure>,
    /// Events of the batch that may or may not have been handled when it
    /// died (a crash): counted as lost.
    pub lost: u64,
    /// Events at the end of the batch that were certainly never handled (it
    /// panicked before them): queued again for the restarted instance.
    pub unhandled: usize,
}
