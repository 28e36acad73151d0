//! An instance in a plugin's own process, as the host's side drives it:
//! its events go out in batch frames, one answer awaited per frame; ticks,
//! checks, HTTP requests and the stop are request/answer pairs. What the
//! child sends besides (its publishes, logs and casts, from its callbacks or
//! its own threads) is routed as it comes, by the instance's pump
//! ([`super::pump`]); a call the child waits on is answered from the
//! instance's thread.

use super::frame::{
    BATCH_BYTES, Frame, HttpRequestView, Limits, Outcome, encode, encode_batch, event_bytes, shrink,
};
use crate::event::{Event, EventView};
use crate::instance::{BatchOutcome, CallFailure, Instance};
use crate::intake::Reason;
use crate::library::PluginHost;
use crate::library::signal;
use crossbeam_channel::Receiver;
use plughost_api::{
    Health, HealthStatus, HttpRequest, HttpResponse, JobReport, LogLevel, Readiness,
};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How long the host waits for a child told to exit to say anything more
/// (or to end) before it kills it.
const EXIT_WAIT: Duration = Duration::from_secs(5);

/// The pid of an instance's process, shared with whoever may have to kill
/// it (the watchdog, a start given up on, shutdown); 0 while it has none.
/// Cleared before the child is reaped, so it never names a reused pid.
#[derive(Debug, Default)]
pub(crate) struct ChildPid(AtomicI32);

impl ChildPid {
    pub(super) fn set(&self, pid: i32) {
        self.0.store(pid, Ordering::Release);
    }

    /// Forget `pid`, unless a newer child took its place.
    pub(super) fn clear(&self, pid: i32) {
        let _ = self
            .0
            .compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Kill the instance's process, if it has one: its monitor reaps it and
    /// tells the instance's thread (the watchdog's last resort).
    pub(crate) fn kill(&self) {
        let pid = self.0.load(Ordering::Acquire);
        if pid > 0 {
            // The pid is our child's, cleared before the child is reaped,
            // so it cannot name a reused pid for long.
            super::kill::kill_child(pid);
        }
    }
}

/// The exit status of a child, once its monitor has reaped it.
#[derive(Default)]
pub(super) struct Reaped {
    pub(super) status: Mutex<Option<ExitStatus>>,
    pub(super) done: Condvar,
}

impl Reaped {
    pub(super) fn wait(&self, limit: Duration) -> Option<ExitStatus> {
        let status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        let (status, _) = self
            .done
            .wait_timeout_while(status, limit, |s| s.is_none())
            .unwrap_or_else(|e| e.into_inner());
        *status
    }
}

/// How a child's end reads to an operator. A child ends by itself only when
/// something went wrong (one told to stop answers first): whatever its
/// status, that is a failure for the restart policy.
pub(super) fn death(status: Option<ExitStatus>) -> CallFailure {
    match status {
        Some(status) if status.code() == Some(0) => {
            CallFailure::Panic("its process exited by itself (status 0)".to_owned())
        }
        Some(status) => match (status.code(), status.signal()) {
            (Some(code), _) => CallFailure::Panic(format!("its process exited with status {code}")),
            (None, Some(signal)) => CallFailure::Panic(format!(
                "its process was killed by {}",
                signal::name(signal)
            )),
            (None, None) => CallFailure::Panic("its process ended".to_owned()),
        },
        None => CallFailure::Panic("its process stopped answering".to_owned()),
    }
}

/// A child's answer, owned.
pub(super) enum Reply {
    Done(Option<String>),
    Batch {
        processed: u32,
        errors: Vec<(u32, String)>,
        panic: Option<String>,
    },
    Probe(serde_json::Value),
    Tick(Result<(), CallFailure>),
    Http(Result<Option<HttpResponse>, CallFailure>),
}

/// What the pump hands the instance's thread, in the child's order.
pub(super) enum Incoming {
    /// The answer to the request in flight.
    Reply(Reply),
    /// The routes the child's instance serves (before its init answer).
    Routes(Vec<String>),
    /// A `call` the child waits on inside a callback: the instance's thread
    /// answers it.
    Call(String),
    /// The child broke the protocol: what it did. Nothing follows.
    Broken(String),
}

/// A callback's failure as the host counts it.
pub(super) fn failure(outcome: Outcome<'_>) -> Result<(), CallFailure> {
    match outcome {
        Outcome::Ok => Ok(()),
        Outcome::Error(message) => Err(CallFailure::Error(message.to_owned())),
        Outcome::Panic(message) => Err(CallFailure::Panic(message.to_owned())),
    }
}

pub(super) fn owned_headers(headers: &[(&str, &str)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

pub(super) fn borrowed_headers(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
}

/// An instance in a plugin's own process, as the host drives it.
pub(super) struct ProcessInstance {
    pub(super) pid: i32,
    pub(super) writer: UnixStream,
    /// What the pump read from the child; disconnected when the socket
    /// closed.
    pub(super) incoming: Receiver<Incoming>,
    /// How long a read waits for the child (`None`: as long as it lives).
    pub(super) patience: Option<Duration>,
    /// Where the child's publishes, logs, calls and casts go: the host, as
    /// a thread instance's go.
    pub(super) host: Arc<dyn PluginHost>,
    /// Shared with whoever may kill the child; cleared when it is reaped.
    pub(super) child: Arc<ChildPid>,
    /// What the child said its instance serves.
    pub(super) routes: Vec<String>,
    pub(super) reaped: Arc<Reaped>,
    pub(super) out: Vec<u8>,
    pub(super) limits: Limits,
}

impl ProcessInstance {
    /// Send `frame`, unless it is over the frame limit: then nothing is
    /// written, and the call fails with the reason (the instance goes on).
    pub(super) fn send(&mut self, frame: &Frame<'_>) -> Result<(), CallFailure> {
        shrink(&mut self.out, 0);
        self.out.clear();
        encode(&mut self.out, frame);
        let (len, limit) = (self.out.len() - 4, self.limits.max_frame());
        if len > limit {
            self.out.clear();
            return Err(CallFailure::Error(format!(
                "too large to send to its process ({len} bytes, over the limit of {limit} bytes)"
            )));
        }
        self.flush()
    }

    fn flush(&mut self) -> Result<(), CallFailure> {
        match self.writer.write_all(&self.out) {
            Ok(()) => Ok(()),
            Err(_) => Err(self.died()),
        }
    }

    /// The child is gone (or must be): make sure, and say how it ended.
    fn died(&self) -> CallFailure {
        let status = self.reaped.wait(Duration::from_secs(2)).or_else(|| {
            self.kill();
            self.reaped.wait(Duration::from_secs(5))
        });
        death(status)
    }

    fn kill(&self) {
        if self
            .reaped
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
        {
            // Our own child's pid, not yet reaped (so not reused).
            super::kill::kill_child(self.pid);
        }
    }

    fn reaped(&self) -> bool {
        let status = self.reaped.status.lock();
        status.unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// Tell the child to exit, and route what it sends until it has: its
    /// instance's drop (a C plugin's `destroy`) may still log or publish.
    /// Each read waits at most [`EXIT_WAIT`]; the caller kills what is left.
    fn exit(&mut self) {
        self.out.clear();
        encode(&mut self.out, &Frame::Exit);
        if self.writer.write_all(&self.out).is_err() {
            return;
        }
        self.patience = Some(EXIT_WAIT);
        // Until the socket closes (`reply` fails), or the child stays silent.
        while self.reply().is_ok() {}
    }

    pub(super) fn protocol_error(&self, what: &str) -> CallFailure {
        self.kill();
        CallFailure::Panic(format!("its process broke the protocol: {what}"))
    }

    /// Wait for the answer to the request in flight, answering the calls
    /// the child makes meanwhile (its publishes and logs are routed by the
    /// pump, before the answer comes).
    pub(super) fn reply(&mut self) -> Result<Reply, CallFailure> {
        loop {
            let incoming = match self.patience {
                None => self.incoming.recv().ok(),
                Some(limit) => self.incoming.recv_timeout(limit).ok(),
            };
            match incoming {
                None => return Err(self.died()),
                Some(Incoming::Reply(reply)) => return Ok(reply),
                Some(Incoming::Routes(routes)) => self.routes = routes,
                Some(Incoming::Broken(what)) => return Err(self.protocol_error(&what)),
                Some(Incoming::Call(request)) => {
                    // The child waits for this answer inside its callback;
                    // a command about itself is accepted without waiting.
                    let (ok, text) = match self.host.call(&request) {
                        Ok(answer) if answer.len() > self.limits.max_event_bytes => {
                            (false, too_large("answer", answer.len(), self.limits))
                        }
                        Ok(answer) => (true, answer),
                        Err(error) => (false, error),
                    };
                    self.out.clear();
                    encode(&mut self.out, &Frame::CallAnswer { ok, text: &text });
                    if self.writer.write_all(&self.out).is_err() {
                        return Err(self.died());
                    }
                }
            }
        }
    }

    fn probe(&mut self, kind: u8) -> Result<serde_json::Value, CallFailure> {
        self.send(&Frame::Probe { kind })?;
        match self.reply()? {
            Reply::Probe(answer) => Ok(answer),
            _ => Err(self.protocol_error("expected a probe answer")),
        }
    }
}

/// How a refused publish's reason travels in a [`Frame::Refused`].
pub(super) fn refusal_code(reason: Reason) -> u8 {
    match reason {
        Reason::ReservedTopic => 0,
        Reason::TooLarge => 1,
        Reason::InvalidTopic => 2,
        Reason::InvalidContent => 3,
    }
}

pub(super) fn refusal_reason(code: u8) -> Option<Reason> {
    match code {
        0 => Some(Reason::ReservedTopic),
        1 => Some(Reason::TooLarge),
        2 => Some(Reason::InvalidTopic),
        3 => Some(Reason::InvalidContent),
        _ => None,
    }
}

/// Why a payload (or an answer) of `len` bytes is refused.
pub(super) fn too_large(what: &str, len: usize, limits: Limits) -> String {
    format!(
        "{what} of {len} bytes is over max_event_bytes ({} bytes)",
        limits.max_event_bytes
    )
}

pub(super) fn level_from(level: u8) -> LogLevel {
    LogLevel::from(i64::from(level))
}

impl Instance for ProcessInstance {
    fn batched(&self) -> bool {
        true
    }

    fn pid(&self) -> Option<i32> {
        Some(self.pid)
    }

    fn on_event(&mut self, _event: &EventView<'_>) -> Result<(), CallFailure> {
        unreachable!("a process instance takes batches")
    }

    /// Send `events` in frames of up to [`BATCH_BYTES`] (a bigger event
    /// alone), one answer awaited per frame. When the child dies, the
    /// frame in flight is lost; the frames after it were never sent.
    fn on_batch(&mut self, events: &[Event]) -> BatchOutcome {
        let mut outcome = BatchOutcome::default();
        let mut start = 0;
        while start < events.len() {
            let first = events[start].view();
            if event_bytes(&first) > self.limits.max_frame() {
                // Only an event over `max_event_bytes` is: the host's entry
                // points refuse those, but an embedder's publish may not.
                let message = too_large("event", first.payload.len(), self.limits);
                outcome.errors.push((start, message));
                start += 1;
                continue;
            }
            shrink(&mut self.out, event_bytes(&first));
            self.out.clear();
            let taken = encode_batch(
                &mut self.out,
                events[start..].iter().map(Event::view),
                BATCH_BYTES,
            );
            let end = start + taken;
            let answer = match self.flush() {
                Ok(()) => self.reply(),
                Err(failure) => Err(failure),
            };
            let answer = match answer {
                Ok(Reply::Batch {
                    processed,
                    errors,
                    panic,
                }) => Ok((processed, errors, panic)),
                Ok(_) => Err(self.protocol_error("expected a batch answer")),
                Err(failure) => Err(failure),
            };
            let (processed, errors, panic) = match answer {
                Ok(answer) => answer,
                Err(failure) => {
                    outcome.fatal = Some(failure);
                    outcome.lost = taken as u64;
                    outcome.unhandled = events.len() - end;
                    return outcome;
                }
            };
            let processed = (processed as usize).min(taken);
            let handled = processed + errors.len();
            outcome.processed += processed as u64;
            outcome.errors.extend(
                errors
                    .into_iter()
                    .filter(|(i, _)| (*i as usize) < taken)
                    .map(|(i, m)| (start + i as usize, m)),
            );
            if let Some(message) = panic {
                // The event it panicked on failed; the ones after it never ran.
                outcome.fatal = Some(CallFailure::Panic(message));
                let at = start + handled;
                if at < end {
                    outcome
                        .errors
                        .push((at, "the plugin panicked here".to_owned()));
                }
                outcome.unhandled = events.len().saturating_sub(at + 1);
                return outcome;
            }
            start = end;
        }
        outcome
    }

    /// The child runs the plugin's `stop` and stays, serving batches, until
    /// the instance is dropped ([`ProcessInstance::exit`]).
    fn stop(&mut self) -> Result<(), CallFailure> {
        self.send(&Frame::Stop)?;
        match self.reply()? {
            Reply::Done(None) => Ok(()),
            Reply::Done(Some(error)) => Err(CallFailure::Error(error)),
            _ => Err(self.protocol_error("expected the stop answer")),
        }
    }

    fn health(&mut self) -> Result<Option<Health>, CallFailure> {
        let answer = self.probe(0)?;
        Ok(answer.as_object().map(|h| Health {
            status: HealthStatus::from(h.get("status").and_then(|s| s.as_i64()).unwrap_or(-1)),
            message: text(h.get("message")),
        }))
    }

    fn ready(&mut self) -> Result<Option<Readiness>, CallFailure> {
        let answer = self.probe(1)?;
        Ok(answer.as_object().map(|r| Readiness {
            ready: r.get("ready").and_then(|v| v.as_bool()).unwrap_or(false),
            message: text(r.get("message")),
        }))
    }

    fn jobs(&mut self) -> Result<Option<Vec<JobReport>>, CallFailure> {
        let answer = self.probe(2)?;
        Ok(answer
            .as_array()
            .map(|jobs| jobs.iter().map(job_from_json).collect()))
    }

    fn tick(&mut self) -> Result<(), CallFailure> {
        self.send(&Frame::Tick)?;
        match self.reply()? {
            Reply::Tick(outcome) => outcome,
            _ => Err(self.protocol_error("expected the tick answer")),
        }
    }

    fn routes(&self) -> Vec<String> {
        self.routes.clone()
    }

    fn http(&mut self, request: HttpRequest) -> Result<Option<HttpResponse>, CallFailure> {
        let view = HttpRequestView {
            method: &request.method,
            path: &request.path,
            query: &request.query,
            headers: borrowed_headers(&request.headers),
            body: &request.body,
        };
        self.send(&Frame::Http { request: view })?;
        match self.reply()? {
            Reply::Http(answer) => answer,
            _ => Err(self.protocol_error("expected the http answer")),
        }
    }
}

impl Drop for ProcessInstance {
    fn drop(&mut self) {
        if !self.reaped() {
            self.exit();
        }
        self.kill();
        self.reaped.wait(Duration::from_secs(5));
        self.child.clear(self.pid);
    }
}

fn text(value: Option<&serde_json::Value>) -> String {
    value
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned()
}

pub(super) fn job_to_json(job: &JobReport) -> serde_json::Value {
    serde_json::json!({
        "pipeline": job.pipeline, "priority": job.priority, "ready": job.ready, "queue": job.queue,
        "active": job.active, "delayed": job.delayed, "reserved": job.reserved, "driver": job.driver,
        "error_message": job.error_message,
    })
}

fn job_from_json(job: &serde_json::Value) -> JobReport {
    let int = |key: &str| job.get(key).and_then(|v| v.as_i64()).unwrap_or(0);
    JobReport {
        pipeline: text(job.get("pipeline")),
        priority: job.get("priority").and_then(|v| v.as_u64()).unwrap_or(0),
        ready: job.get("ready").and_then(|v| v.as_bool()).unwrap_or(false),
        queue: text(job.get("queue")),
        active: int("active"),
        delayed: int("delayed"),
        reserved: int("reserved"),
        driver: text(job.get("driver")),
        error_message: text(job.get("error_message")),
    }
}
