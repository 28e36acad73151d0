//! `isolation = "process"`: the same library, Rust or C, runs in a child
//! `plughost __child` process. Events go to it in batches over a Unix socket
//! (see [`frame`]); its publishes and logs come back on the same socket and
//! are routed from the instance's thread, like a thread plugin's. Ticks,
//! HTTP requests and checks are request/answer pairs on the same socket; the
//! child's routes come with its `init` answer; a `call` from the child is
//! answered on the socket while the host waits on the child's callback.
//!
//! A monitor thread per child reaps it and tells the instance's thread at
//! once when it dies, busy or idle: it shuts the host's end of the socket
//! down, so a read waiting on the child returns even when a descendant of
//! the child still holds the other end. Events of a frame the child did not
//! acknowledge are counted as lost (dropped). Each child leads its own
//! process group, killed whole when the child ends: nothing a plugin forks
//! outlives it. Children die with the host: they ask the kernel for SIGKILL
//! when their parent exits, and leave when the socket closes.
//!
//! Stopping takes two frames, as a thread instance's `stop` and drop are two
//! steps: `Stop` runs the plugin's `stop` and the child goes on serving
//! batches (at the host's shutdown, other instances' stops may publish to
//! it); `Exit`, sent when the host drops the instance, drops it in the child
//! (a C plugin's `destroy`) and ends the child, which the host reaps.
//!
//! Limits ([`frame::Limits`], from `[host] max_event_bytes`) hold on both
//! sides: what a plugin may not send is refused at its call, with the reason
//! in its error and in the host's log, never by a frame the other end drops.

pub(crate) mod frame;

use crate::bus::Bus;
use crate::event::{Event, EventView};
use crate::instance::{BatchOutcome, CallFailure, Control, Instance, Slot};
use crate::intake::{PublishError, Reason};
use crate::library::{self, HostLink, HostSide, Library};
use frame::{
    BATCH_BYTES, Frame, HttpRequestView, HttpResponseView, Limits, Outcome, ReadError, decode,
    encode, encode_batch, event_bytes, read_frame,
};
use plughost_api::{
    Health, HealthStatus, HttpRequest, HttpResponse, JobReport, LogLevel, Readiness,
};
use std::io::{BufReader, Write};
use std::net::Shutdown;
use std::os::unix::io::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// The descriptor the child finds its socket on.
const CHILD_FD: i32 = 3;

/// How long the host waits for a child told to exit to say anything more
/// (or to end) before it kills it.
const EXIT_WAIT: Duration = Duration::from_secs(5);

/// The exit status of a child, once its monitor has reaped it.
#[derive(Default)]
struct Reaped {
    status: Mutex<Option<ExitStatus>>,
    done: Condvar,
}

impl Reaped {
    fn wait(&self, limit: Duration) -> Option<ExitStatus> {
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
fn death(status: Option<ExitStatus>) -> CallFailure {
    match status {
        Some(status) if status.code() == Some(0) => {
            CallFailure::Panic("its process exited by itself (status 0)".to_owned())
        }
        Some(status) => match (status.code(), status.signal()) {
            (Some(code), _) => CallFailure::Panic(format!("its process exited with status {code}")),
            (None, Some(signal)) => {
                CallFailure::Panic(format!("its process was killed by {}", signal_name(signal)))
            }
            (None, None) => CallFailure::Panic("its process ended".to_owned()),
        },
        None => CallFailure::Panic("its process stopped answering".to_owned()),
    }
}

pub(crate) fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGILL => "SIGILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGPIPE => "SIGPIPE",
        other => return format!("signal {other}"),
    };
    name.to_owned()
}

/// Kill the process of the instance in `slot`, if it has one: its monitor
/// reaps it and tells the instance's thread (the watchdog's last resort).
pub(crate) fn kill(slot: &Slot) {
    let pid = slot.child_pid.load(Ordering::Acquire);
    if pid > 0 {
        // SAFETY: kill(2) takes plain integers. The pid is our child's, cleared
        // before the child is reaped, so it cannot name a reused pid for long.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// The `plughost` executable to run children with: this one, or a
/// `plughost` beside it when the host is embedded in another program
/// (`PLUGHOST_CHILD_EXE` overrides both).
pub(crate) fn child_executable() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("PLUGHOST_CHILD_EXE") {
        return Ok(path.into());
    }
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the plughost executable: {e}"))?;
    if exe.file_stem().is_some_and(|stem| stem == "plughost") {
        return Ok(exe);
    }
    let sibling = exe.with_file_name("plughost");
    match sibling.exists() {
        true => Ok(sibling),
        false => Err(format!(
            "no `plughost` executable beside {} (set PLUGHOST_CHILD_EXE)",
            exe.display()
        )),
    }
}

/// The process groups of the children alive, killed when the host exits
/// (see [`kill_children_at_exit`]).
static GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Kill the process group of every child still alive: registered with
/// `atexit`, so a host that exits without stopping a child (a stuck one it
/// gave up on at shutdown) leaves nothing of it behind. Children themselves
/// die with the host anyway (PDEATHSIG); this is for their descendants.
extern "C" fn kill_children_at_exit() {
    // A lock held by a thread frozen at exit is not waited for.
    if let Ok(groups) = GROUPS.try_lock() {
        for &group in groups.iter() {
            // SAFETY: kill(2) takes plain integers; `group` is a live child's pid,
            // not yet reaped (its monitor removes it first), so not reused.
            unsafe { libc::kill(-group, libc::SIGKILL) };
        }
    }
}

fn register_group(pid: i32) {
    static AT_EXIT: std::sync::Once = std::sync::Once::new();
    AT_EXIT.call_once(|| {
        // SAFETY: registers a function that takes no arguments and never
        // unwinds (it panics nowhere); atexit only records it.
        unsafe { libc::atexit(kill_children_at_exit) };
    });
    GROUPS.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
}

fn unregister_group(pid: i32) {
    GROUPS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|&group| group != pid);
}

/// Wait until child `pid` has ended, without reaping it: while it is a
/// zombie its pid, and so its process group's id, cannot be reused.
fn wait_ended(pid: i32) {
    loop {
        // SAFETY: waitid(2) writes only into `info`, a local we own.
        let rc = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

/// Start `library` in a child process and create the instance there.
/// `link` is what the child's `call` and `cast` run through.
pub(crate) fn spawn(
    library: &Library,
    trust: &library::Trust,
    config_json: &str,
    link: HostLink,
    control: crossbeam_channel::Sender<Control>,
    limits: Limits,
) -> Result<Box<dyn Instance>, CallFailure> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        CallFailure::Error(format!("cannot start its process: {what}: {e}"))
    };
    let slot = link.slot.clone();
    let exe = child_executable().map_err(CallFailure::Error)?;
    let (host_end, child_end) = UnixStream::pair().map_err(|e| fail("socketpair", &e))?;
    let child_fd = child_end.as_raw_fd();
    let mut command = Command::new(exe);
    command
        .arg("__child")
        .arg(&library.path)
        .arg(&*slot.name)
        .arg(std::process::id().to_string())
        .args(trust.sha256.iter().flat_map(|pin| ["--sha256", pin]))
        .args(["--host-sha256", &library.sha256])
        .args(["--max-event-bytes", &limits.max_event_bytes.to_string()])
        .args(
            trust
                .allow_insecure_permissions
                .then_some("--allow-insecure-permissions"),
        )
        .stdin(Stdio::null())
        .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_default())
        // Its own process group: whatever the plugin forks can be killed
        // with it (see the monitor below).
        .process_group(0);
    // SAFETY: runs in the forked child before exec; dup2 and signal are
    // async-signal-safe and touch no memory of the parent.
    unsafe {
        command.pre_exec(move || {
            // Ignored signals stay ignored across exec: no window before
            // `child_main` in which a terminal's Ctrl-C could kill the child.
            ignore_stop_signals();
            match libc::dup2(child_fd, CHILD_FD) {
                -1 => Err(std::io::Error::last_os_error()),
                _ => Ok(()),
            }
        });
    }
    let mut child = command.spawn().map_err(|e| fail("spawn", &e))?;
    drop(child_end);
    let pid = child.id() as i32;
    slot.child_pid.store(pid, Ordering::Release);
    register_group(pid);
    // The monitor's handle on the socket: shutting it down ends a read or a
    // write of the instance's thread at once.
    let socket = host_end.try_clone();

    let reaped = Arc::new(Reaped::default());
    {
        let reaped = reaped.clone();
        let slot = slot.clone();
        std::thread::Builder::new()
            .name(format!("plughost:{}:wait", slot.name))
            .spawn(move || {
                wait_ended(pid);
                // The child is a zombie: its group id is still its own.
                // SAFETY: kill(2) takes plain integers; the group is our child's.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
                unregister_group(pid);
                let _ =
                    slot.child_pid
                        .compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Acquire);
                let status = child.wait().ok();
                *reaped.status.lock().unwrap_or_else(|e| e.into_inner()) = status;
                reaped.done.notify_all();
                // What the child wrote before it ended can still be read;
                // after that a read ends at once, whoever else holds the
                // child's end (a descendant that escaped the group kill).
                if let Ok(socket) = &socket {
                    let _ = socket.shutdown(Shutdown::Both);
                }
                if control
                    .send(Control::Died {
                        pid,
                        failure: death(status),
                    })
                    .is_ok()
                {
                    slot.control_pending.store(true, Ordering::Release);
                }
            })
            .map_err(|e| {
                // No one would reap it or its group: end both now.
                // SAFETY: kill(2) takes plain integers; the group is our child's.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
                unregister_group(pid);
                fail("monitor thread", &e)
            })?;
    }
    let reader = host_end.try_clone().map_err(|e| fail("socket", &e))?;
    let mut instance = ProcessInstance {
        pid,
        writer: host_end,
        reader: BufReader::with_capacity(64 * 1024, reader),
        bus: link.bus.clone(),
        slot,
        link,
        routes: Vec::new(),
        reaped,
        out: Vec::with_capacity(64 * 1024),
        input: Vec::new(),
        limits,
    };
    instance.send(&Frame::Init { config_json })?;
    match instance.reply()? {
        Reply::Done(None) => Ok(Box::new(instance)),
        Reply::Done(Some(error)) => Err(CallFailure::Error(error)),
        _ => Err(instance.protocol_error("expected the init answer")),
    }
}

/// A child's answer, owned.
enum Reply {
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

/// A callback's failure as the host counts it.
fn failure(outcome: Outcome<'_>) -> Result<(), CallFailure> {
    match outcome {
        Outcome::Ok => Ok(()),
        Outcome::Error(message) => Err(CallFailure::Error(message.to_owned())),
        Outcome::Panic(message) => Err(CallFailure::Panic(message.to_owned())),
    }
}

fn owned_headers(headers: &[(&str, &str)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

fn borrowed_headers(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
}

struct ProcessInstance {
    pid: i32,
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    slot: Arc<Slot>,
    bus: Arc<Bus>,
    /// Runs the child's `call` and `cast` as a thread instance's would.
    link: HostLink,
    /// What the child said its instance serves.
    routes: Vec<String>,
    reaped: Arc<Reaped>,
    out: Vec<u8>,
    input: Vec<u8>,
    limits: Limits,
}

impl ProcessInstance {
    /// Send `frame`, unless it is over the frame limit: then nothing is
    /// written, and the call fails with the reason (the instance goes on).
    fn send(&mut self, frame: &Frame<'_>) -> Result<(), CallFailure> {
        frame::shrink(&mut self.out, 0);
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
            // SAFETY: kill(2) on our own child's pid, not yet reaped (so not reused).
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
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
        if self.writer.write_all(&self.out).is_err()
            || self
                .reader
                .get_ref()
                .set_read_timeout(Some(EXIT_WAIT))
                .is_err()
        {
            return;
        }
        // Until the socket closes (`reply` fails), or the child stays silent.
        while self.reply().is_ok() {}
    }

    fn protocol_error(&self, what: &str) -> CallFailure {
        self.kill();
        CallFailure::Panic(format!("its process broke the protocol: {what}"))
    }

    /// Read frames until an answer, routing the child's publishes and logs
    /// on the way, from this (the instance's) thread.
    fn reply(&mut self) -> Result<Reply, CallFailure> {
        loop {
            match read_frame(&mut self.reader, &mut self.input, self.limits.max_frame()) {
                Ok(true) => {}
                Ok(false) | Err(ReadError::Io(_)) => return Err(self.died()),
                Err(e @ ReadError::TooLarge { .. }) => {
                    return Err(self.protocol_error(&e.to_string()));
                }
            }
            let frame = match decode(&self.input) {
                Ok(frame) => frame,
                Err(e) => return Err(self.protocol_error(&e.to_string())),
            };
            let owned = |errors: Vec<(u32, &str)>| {
                errors.into_iter().map(|(i, m)| (i, m.to_owned())).collect()
            };
            return Ok(match frame {
                Frame::Publish { topic, payload } => {
                    if let Err(e) = self.bus.publish(&self.slot, topic, payload.into()) {
                        crate::plugin_log(
                            &self.slot.name,
                            LogLevel::Warn,
                            &format!("publish refused: {e}"),
                        );
                    }
                    continue;
                }
                Frame::Refused { reason, message } => {
                    if let Some(reason) = refusal_reason(reason) {
                        let refusals = &self.bus.refusals;
                        refusals.count_reason(crate::intake::Publisher::Plugin, reason);
                    }
                    crate::plugin_log(
                        &self.slot.name,
                        LogLevel::Warn,
                        &format!("publish refused: {message}"),
                    );
                    continue;
                }
                Frame::Log { level, message } => {
                    crate::plugin_log(&self.slot.name, level_from(level), message);
                    continue;
                }
                Frame::Routes { routes } => {
                    self.routes = routes.into_iter().map(str::to_owned).collect();
                    continue;
                }
                Frame::Call {
                    cast: true,
                    request,
                } => {
                    self.link.cast(request);
                    continue;
                }
                Frame::Call {
                    cast: false,
                    request,
                } => {
                    // The child waits for this answer inside its callback;
                    // a command about itself is accepted without waiting.
                    let (ok, text) = match self.link.call(request) {
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
                    continue;
                }
                Frame::TickDone { outcome } => Reply::Tick(failure(outcome)),
                Frame::HttpDone { response } => Reply::Http(match response {
                    Ok(response) => Ok(response.map(|r| HttpResponse {
                        status: r.status,
                        headers: owned_headers(&r.headers),
                        body: r.body.to_vec(),
                    })),
                    Err(outcome) => match failure(outcome) {
                        Ok(()) => Ok(None),
                        Err(failure) => Err(failure),
                    },
                }),
                Frame::InitDone { error } | Frame::StopDone { error } => {
                    Reply::Done(error.map(str::to_owned))
                }
                Frame::BatchDone { processed, errors } => Reply::Batch {
                    processed,
                    errors: owned(errors),
                    panic: None,
                },
                Frame::Panic {
                    processed,
                    errors,
                    message,
                } => Reply::Batch {
                    processed,
                    errors: owned(errors),
                    panic: Some(message.to_owned()),
                },
                Frame::ProbeAnswer { json } => {
                    Reply::Probe(serde_json::from_str(json).unwrap_or_default())
                }
                _ => return Err(self.protocol_error("unexpected frame")),
            });
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
fn refusal_code(reason: Reason) -> u8 {
    match reason {
        Reason::ReservedTopic => 0,
        Reason::TooLarge => 1,
        Reason::InvalidTopic => 2,
    }
}

fn refusal_reason(code: u8) -> Option<Reason> {
    match code {
        0 => Some(Reason::ReservedTopic),
        1 => Some(Reason::TooLarge),
        2 => Some(Reason::InvalidTopic),
        _ => None,
    }
}

/// Why a payload (or an answer) of `len` bytes is refused.
fn too_large(what: &str, len: usize, limits: Limits) -> String {
    format!(
        "{what} of {len} bytes is over max_event_bytes ({} bytes)",
        limits.max_event_bytes
    )
}

fn level_from(level: u8) -> LogLevel {
    match level {
        1 => LogLevel::Error,
        2 => LogLevel::Warn,
        4 => LogLevel::Debug,
        5 => LogLevel::Trace,
        _ => LogLevel::Info,
    }
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
            frame::shrink(&mut self.out, event_bytes(&first));
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
            status: match h.get("status").and_then(|s| s.as_u64()) {
                Some(0) => HealthStatus::Ok,
                Some(1) => HealthStatus::Degraded,
                _ => HealthStatus::Failing,
            },
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
        let _ =
            self.slot
                .child_pid
                .compare_exchange(self.pid, 0, Ordering::AcqRel, Ordering::Acquire);
    }
}

fn text(value: Option<&serde_json::Value>) -> String {
    value
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned()
}

fn job_to_json(job: &JobReport) -> serde_json::Value {
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

// ---- The child's side ----

/// SIGINT, SIGTERM and SIGHUP are meant for the host, not for its children:
/// a service manager signals every process of a unit (systemd's
/// `KillMode=control-group`), and a child that died of it would lose the
/// events the host is still draining into it. (Ctrl-C in a terminal reaches
/// only the host's process group, not the children's own.) A child ends when
/// the host tells it to, when its socket closes, or with the host
/// (PDEATHSIG). SIGTTOU and SIGTTIN: a child is in a background process
/// group of the terminal, and writing to it must not stop the child.
fn ignore_stop_signals() {
    for signal in [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGTTOU,
        libc::SIGTTIN,
    ] {
        // SAFETY: setting a signal's disposition to SIG_IGN installs no
        // handler and touches no memory; it is async-signal-safe.
        unsafe { libc::signal(signal, libc::SIG_IGN) };
    }
}

/// The host side, as seen from a plugin's own process: frames on the socket.
struct ChildLink {
    name: String,
    writer: Mutex<UnixStream>,
    /// The main loop reads orders here; a `call` reads its answer here, on
    /// the same (main) thread, while the main loop waits in a callback.
    reader: Mutex<BufReader<UnixStream>>,
    /// Set while the main thread is inside a callback the host waits on:
    /// only then does the host read a `call` and answer it.
    serving: AtomicBool,
    main: std::thread::ThreadId,
    limits: Limits,
}

impl ChildLink {
    /// Send `frame`, unless it is over the frame limit (the callers refuse
    /// what a plugin may not send before this; this is the last guard): then
    /// the host is told why in a log line, and nothing else is written.
    fn send(&self, frame: &Frame<'_>) -> std::io::Result<()> {
        let mut out = Vec::new();
        encode(&mut out, frame);
        let (len, limit) = (out.len() - 4, self.limits.max_frame());
        if len > limit {
            let message = format!(
                "cannot send a frame of {len} bytes to the host, over the limit of {limit} bytes"
            );
            self.log(LogLevel::Error, &message);
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                message,
            ));
        }
        self.writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write_all(&out)
    }

    /// Refuse a call the host would not take: the error for the plugin,
    /// which the host's log gets too (a plugin may drop it on the floor).
    fn refuse(&self, what: &str, reason: String) -> String {
        let message = format!("{what} refused: {reason}");
        self.log(LogLevel::Warn, &message);
        message
    }
}

impl HostSide for ChildLink {
    fn instance_name(&self) -> &str {
        &self.name
    }

    fn publish(&self, topic: &str, payload: &[u8]) -> Result<(), String> {
        // Refused here, as the bus refuses a thread plugin's publish (the
        // same checks, in the same order, with the same words), so the
        // plugin sees it at its call; the host hears of it (without the
        // payload), counts it and logs it.
        let limit = self.limits.max_event_bytes;
        let refused = if payload.len() > limit {
            let bytes = payload.len();
            Some(PublishError::TooLarge { bytes, limit })
        } else if let Err(e) = plughost_api::topic::validate_topic(topic) {
            Some(PublishError::Topic(e))
        } else if plughost_api::topic::is_reserved(topic) {
            let topic = topic.to_owned();
            Some(PublishError::Reserved { topic })
        } else {
            None
        };
        if let Some(error) = refused {
            let message = error.to_string();
            if let Some(reason) = error.reason() {
                let _ = self.send(&Frame::Refused {
                    reason: refusal_code(reason),
                    message: &crate::text::cut(&message),
                });
            }
            return Err(message);
        }
        self.send(&Frame::Publish { topic, payload })
            .map_err(|e| format!("the host is gone: {e}"))
    }

    fn log(&self, level: LogLevel, message: &str) {
        let _ = self.send(&Frame::Log {
            level: level as u8,
            message: &crate::text::cut(message),
        });
    }

    fn call(&self, request: &str) -> Result<String, String> {
        if std::thread::current().id() != self.main || !self.serving.load(Ordering::Acquire) {
            return Err("a process-isolated plugin can call the host only from inside a callback (on_event, tick, http), not from a thread of its own; use cast there".to_owned());
        }
        if request.len() > self.limits.max_event_bytes {
            let reason = too_large("command", request.len(), self.limits);
            return Err(self.refuse("call", reason));
        }
        self.send(&Frame::Call {
            cast: false,
            request,
        })
        .map_err(|e| format!("the host is gone: {e}"))?;
        let mut reader = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        let mut input = Vec::new();
        match read_frame(&mut *reader, &mut input, self.limits.max_frame()) {
            Ok(true) => {}
            Ok(false) | Err(ReadError::Io(_)) => return Err("the host is gone".to_owned()),
            Err(e @ ReadError::TooLarge { .. }) => return Err(format!("the host answered {e}")),
        }
        match decode(&input) {
            Ok(Frame::CallAnswer { ok: true, text }) => Ok(text.to_owned()),
            Ok(Frame::CallAnswer { ok: false, text }) => Err(text.to_owned()),
            _ => Err("the host answered a call with something else".to_owned()),
        }
    }

    fn cast(&self, request: &str) {
        if request.len() > self.limits.max_event_bytes {
            self.refuse("cast", too_large("command", request.len(), self.limits));
            return;
        }
        let _ = self.send(&Frame::Call {
            cast: true,
            request,
        });
    }
}

/// Run `callback` as a callback the host waits on (see [`ChildLink::serving`]).
fn serving<T>(link: &ChildLink, callback: impl FnOnce() -> T) -> T {
    link.serving.store(true, Ordering::Release);
    let result = callback();
    link.serving.store(false, Ordering::Release);
    result
}

fn outcome_of(result: &Result<(), CallFailure>) -> Outcome<'_> {
    match result {
        Ok(()) => Outcome::Ok,
        Err(CallFailure::Error(message)) => Outcome::Error(message),
        Err(CallFailure::Panic(message)) => Outcome::Panic(message),
    }
}

/// A plugin's message (an error, a panic) cut to fit a frame, owned.
fn cut(message: &str) -> String {
    crate::text::cut(message).into_owned()
}

/// A callback's failure with its message cut to fit a frame.
fn cut_failure(failure: CallFailure) -> CallFailure {
    match failure {
        CallFailure::Error(message) => CallFailure::Error(cut(&message)),
        CallFailure::Panic(message) => CallFailure::Panic(cut(&message)),
    }
}

/// Bytes an HTTP answer takes: its body and its headers.
fn answer_bytes(response: &HttpResponse) -> usize {
    response
        .headers
        .iter()
        .map(|(name, value)| name.len() + value.len())
        .sum::<usize>()
        + response.body.len()
}

/// The body of `plughost __child LIBRARY NAME PARENT_PID`: serve one instance
/// over the socket on descriptor 3 until told to stop or the host is gone.
/// `host_sha256` is the content the host loaded: a file changed on disk since
/// then is refused, so a child never runs code the host did not check.
/// `max_event_bytes` is the host's, and gives both ends the same limits.
#[doc(hidden)]
pub fn child_main(
    library_path: &Path,
    name: &str,
    parent: u32,
    trust: &library::Trust,
    host_sha256: Option<&str>,
    max_event_bytes: usize,
) -> i32 {
    ignore_stop_signals();
    // SAFETY: prctl(PR_SET_PDEATHSIG) only records a signal number for this process.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    if std::os::unix::process::parent_id() != parent {
        return 1; // the host died before we could ask to follow it
    }
    // Whatever the plugin runs (`system`, `exec`) must not inherit the
    // socket: a descendant holding it would hide this process's death.
    // SAFETY: fcntl(2) on a descriptor number changes only its flags.
    if unsafe { libc::fcntl(CHILD_FD, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return 1;
    }
    // SAFETY: the host put our end of the socket on descriptor 3 (dup2 before
    // exec), and nothing else in this process owns it.
    let stream = unsafe { UnixStream::from_raw_fd(CHILD_FD) };
    let Ok(writer) = stream.try_clone() else {
        return 1;
    };
    let limits = Limits { max_event_bytes };
    let link = Arc::new(ChildLink {
        name: name.to_owned(),
        writer: Mutex::new(writer),
        reader: Mutex::new(BufReader::with_capacity(64 * 1024, stream)),
        serving: AtomicBool::new(false),
        main: std::thread::current().id(),
        limits,
    });
    let mut input = Vec::new();
    // The host checked the file too; the child checks what it loads itself.
    let loaded = library::open(library_path, trust)
        .map_err(|e| e.to_string())
        .and_then(|library| match host_sha256 {
            Some(expected) if expected != library.sha256 => Err(format!(
                "{}: the file changed on disk since the host loaded it (sha256 {expected}, now {}); `plughost ctl reload` loads the new one",
                library_path.display(),
                library.sha256
            )),
            _ => Ok(library),
        });
    let mut instance: Option<Box<dyn Instance>> = None;
    loop {
        let read = read_frame(
            &mut *link.reader.lock().unwrap_or_else(|e| e.into_inner()),
            &mut input,
            limits.max_frame(),
        );
        match read {
            Ok(true) => {}
            Ok(false) | Err(ReadError::Io(_)) => return 0,
            Err(e @ ReadError::TooLarge { .. }) => {
                link.log(LogLevel::Error, &format!("the host sent {e}"));
                return 2;
            }
        }
        let Ok(frame) = decode(&input) else { return 2 };
        let sent = match (frame, instance.as_mut()) {
            (Frame::Init { config_json }, None) => {
                let created = match &loaded {
                    Ok(library) => serving(&link, || {
                        library
                            .create(config_json, link.clone())
                            .map_err(|e| e.to_string())
                    }),
                    Err(e) => Err(e.clone()),
                };
                let error = created.as_ref().err().map(|e| cut(e));
                instance = created.ok();
                let routes = instance.as_ref().map(|i| i.routes()).unwrap_or_default();
                let routes = Frame::Routes {
                    routes: routes.iter().map(String::as_str).collect(),
                };
                link.send(&routes).and_then(|()| {
                    link.send(&Frame::InitDone {
                        error: error.as_deref(),
                    })
                })
            }
            (Frame::Batch { events }, Some(plugin)) => {
                let (mut processed, mut errors) = (0u32, Vec::new());
                let mut panic = None;
                for (index, event) in events.iter().enumerate() {
                    match serving(&link, || plugin.on_event(event)) {
                        Ok(()) => processed += 1,
                        Err(CallFailure::Error(message)) => {
                            errors.push((index as u32, cut(&message)))
                        }
                        Err(failure) => {
                            panic = Some(cut(&format!("on_event({}) {failure}", event.topic)));
                            break;
                        }
                    }
                }
                let errors: Vec<(u32, &str)> =
                    errors.iter().map(|(i, m)| (*i, m.as_str())).collect();
                match panic {
                    None => link.send(&Frame::BatchDone { processed, errors }),
                    Some(message) => {
                        let _ = link.send(&Frame::Panic {
                            processed,
                            errors,
                            message: &message,
                        });
                        return 101;
                    }
                }
            }
            (Frame::Probe { kind }, Some(plugin)) => {
                let answer = match kind {
                    0 => plugin.health().map(|h| {
                        h.map(
                            |h| serde_json::json!({"status": h.status as u8, "message": cut(&h.message)}),
                        )
                        .unwrap_or_default()
                    }),
                    1 => plugin.ready().map(|r| {
                        r.map(|r| serde_json::json!({"ready": r.ready, "message": cut(&r.message)}))
                            .unwrap_or_default()
                    }),
                    _ => plugin.jobs().map(|j| {
                        j.map(|j| j.iter().map(job_to_json).collect())
                            .unwrap_or_default()
                    }),
                };
                let mut answer = answer.unwrap_or_default().to_string();
                if answer.len() > max_event_bytes {
                    link.refuse("check answer", too_large("answer", answer.len(), limits));
                    answer = "null".to_owned();
                }
                link.send(&Frame::ProbeAnswer { json: &answer })
            }
            (Frame::Tick, Some(plugin)) => {
                let result = serving(&link, || plugin.tick()).map_err(cut_failure);
                let sent = link.send(&Frame::TickDone {
                    outcome: outcome_of(&result),
                });
                if let Err(CallFailure::Panic(_)) = result {
                    return 101;
                }
                sent
            }
            (Frame::Http { request }, Some(plugin)) => {
                let request = HttpRequest {
                    method: request.method.to_owned(),
                    path: request.path.to_owned(),
                    query: request.query.to_owned(),
                    headers: owned_headers(&request.headers),
                    body: request.body.to_vec(),
                };
                let result = match serving(&link, || plugin.http(request)) {
                    Ok(Some(r)) if answer_bytes(&r) > max_event_bytes => {
                        let reason = too_large("answer", answer_bytes(&r), limits);
                        Err(CallFailure::Error(link.refuse("HTTP answer", reason)))
                    }
                    other => other.map_err(cut_failure),
                };
                let response = match &result {
                    Ok(Some(r)) => Ok(Some(HttpResponseView {
                        status: r.status,
                        headers: borrowed_headers(&r.headers),
                        body: &r.body,
                    })),
                    Ok(None) => Ok(None),
                    Err(CallFailure::Error(message)) => Err(Outcome::Error(message)),
                    Err(CallFailure::Panic(message)) => Err(Outcome::Panic(message)),
                };
                let sent = link.send(&Frame::HttpDone { response });
                if let Err(CallFailure::Panic(_)) = result {
                    return 101;
                }
                sent
            }
            (Frame::Stop, Some(plugin)) => {
                // The instance stays: at the host's shutdown, batches of what
                // other instances' stops publish may follow, until `Exit`.
                let error = serving(&link, || plugin.stop())
                    .err()
                    .map(|e| cut(&e.to_string()));
                link.send(&Frame::StopDone {
                    error: error.as_deref(),
                })
            }
            (Frame::Exit, _) => {
                drop(instance.take());
                return 0;
            }
            _ => return 2,
        };
        if sent.is_err() {
            return 1;
        }
    }
}
