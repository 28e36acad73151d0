//! The child's side of a plugin's own process (`plughost __child`): load
//! the library (checked again, and the same content the host checked),
//! create the instance, and serve the host's frames on descriptor 3 until
//! told to exit or the socket closes. What the plugin asks of the host goes
//! back as frames ([`RemoteHost`]); what the host would refuse is refused
//! here first, with the host's words, so the plugin sees it at its call.

use super::frame::{
    Frame, HttpResponseView, Limits, Outcome, ReadError, decode, encode, read_frame,
};
use super::instance::{borrowed_headers, job_to_json, owned_headers, refusal_code, too_large};
use super::spawn::{CHILD_FD, ignore_stop_signals};
use crate::instance::{CallFailure, Instance};
use crate::intake::{PublishError, Reason};
use crate::library::{self, PluginHost, Trust};
use plughost_api::{ContentType, HttpRequest, HttpResponse, LogLevel};
use std::io::{BufReader, Write};
use std::os::unix::io::FromRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The host as a plugin in its own process sees it: frames on the socket.
struct RemoteHost {
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
    /// Until the instance is dropped ([`PluginHost::retire`]).
    live: AtomicBool,
}

impl RemoteHost {
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

impl PluginHost for RemoteHost {
    fn instance_name(&self) -> &str {
        &self.name
    }

    fn retire(&self) {
        self.live.store(false, Ordering::Release);
    }

    fn publish(
        &self,
        topic: &str,
        payload: &[u8],
        content: ContentType,
    ) -> Result<(), PublishError> {
        if !self.live.load(Ordering::Acquire) {
            let name = self.name.clone();
            return Err(PublishError::Ended { name });
        }
        // Refused here, as the bus refuses a thread plugin's publish (the
        // same checks, in the same order, with the same words), so the
        // plugin sees it at its call; the host hears of it (without the
        // payload), counts it and logs it.
        let limit = self.limits.max_event_bytes;
        let refused = if payload.len() > limit {
            let bytes = payload.len();
            Some(PublishError::TooLarge { bytes, limit })
        } else if let Err(e) = content.check(payload) {
            Some(PublishError::Content(e))
        } else if let Err(e) = plughost_api::topic::validate_topic(topic) {
            Some(PublishError::Topic(e))
        } else if plughost_api::topic::is_reserved(topic) {
            let topic = topic.to_owned();
            Some(PublishError::Reserved { topic })
        } else {
            None
        };
        if let Some(error) = refused {
            if let Some(reason) = error.reason() {
                self.refused(reason, &error.to_string());
            }
            return Err(error);
        }
        self.send(&Frame::Publish {
            topic,
            payload,
            content,
        })
        .map_err(|e| PublishError::HostGone(e.to_string()))
    }

    /// Told to the host, which counts and logs it.
    fn refused(&self, reason: Reason, message: &str) {
        let _ = self.send(&Frame::Refused {
            reason: refusal_code(reason),
            message: &crate::text::cut(message),
        });
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

/// Run `callback` as a callback the host waits on (see [`RemoteHost::serving`]).
fn serving<T>(link: &RemoteHost, callback: impl FnOnce() -> T) -> T {
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
    trust: &Trust,
    host_sha256: Option<&str>,
    max_event_bytes: usize,
) -> i32 {
    ignore_stop_signals();
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
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
    let link = Arc::new(RemoteHost {
        name: name.to_owned(),
        writer: Mutex::new(writer),
        reader: Mutex::new(BufReader::with_capacity(64 * 1024, stream)),
        serving: AtomicBool::new(false),
        main: std::thread::current().id(),
        limits,
        live: AtomicBool::new(true),
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
                            |h| serde_json::json!({"status": u8::from(h.status), "message": cut(&h.message)}),
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
