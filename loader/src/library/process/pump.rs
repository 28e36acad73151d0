//! The host's reader of a child's socket: one thread per process instance
//! that reads every frame the child sends, busy or idle. What the plugin
//! publishes, logs or casts (from its callbacks or from threads of its
//! own) is routed at once, in the order the child sent it; answers, and the
//! calls the child waits on inside a callback, go to the instance's thread
//! in that same order, so what a callback published is routed before its
//! answer is seen.
//!
//! The pump publishes for the instance's own thread (it waits on full
//! mailboxes as the instance, and may close a cycle of waits): while it
//! waits, the instance's thread waits on the answer behind it.

use super::frame::{Frame, Limits, ReadError, decode, read_frame};
use super::instance::{Incoming, Reply, failure, level_from, owned_headers, refusal_reason};
use crate::library::PluginHost;
use crossbeam_channel::Sender;
use plughost_api::{HttpResponse, LogLevel};
use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

/// Start the pump of instance `name`: it reads `reader` until the socket
/// closes (the child's end, or the monitor's shutdown when it dies), then
/// drops `to`, which tells the instance's thread.
pub(super) fn start(
    name: &str,
    reader: UnixStream,
    host: Arc<dyn PluginHost>,
    limits: Limits,
    to: Sender<Incoming>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(format!("plughost:{name}:pump"))
        .spawn(move || {
            host.adopt_thread();
            pump(
                BufReader::with_capacity(64 * 1024, reader),
                &*host,
                limits,
                &to,
            );
        })
        .map(|_| ())
}

fn pump(
    mut reader: BufReader<UnixStream>,
    host: &dyn PluginHost,
    limits: Limits,
    to: &Sender<Incoming>,
) {
    let mut input = Vec::new();
    loop {
        match read_frame(&mut reader, &mut input, limits.max_frame()) {
            Ok(true) => {}
            Ok(false) | Err(ReadError::Io(_)) => return,
            Err(e @ ReadError::TooLarge { .. }) => {
                let _ = to.send(Incoming::Broken(e.to_string()));
                return;
            }
        }
        let frame = match decode(&input) {
            Ok(frame) => frame,
            Err(e) => {
                let _ = to.send(Incoming::Broken(e.to_string()));
                return;
            }
        };
        let owned =
            |errors: Vec<(u32, &str)>| errors.into_iter().map(|(i, m)| (i, m.to_owned())).collect();
        let incoming = match frame {
            Frame::Publish {
                topic,
                payload,
                content,
            } => {
                // A refusal here is counted and logged by the host. Any
                // other error (the instance has ended) the plugin, which
                // has moved on, never hears of: say it.
                if let Err(error) = host.publish(topic, payload, content)
                    && error.reason().is_none()
                {
                    host.log(LogLevel::Warn, &format!("publish lost: {error}"));
                }
                continue;
            }
            Frame::Refused { reason, message } => {
                if let Some(reason) = refusal_reason(reason) {
                    host.refused(reason, message);
                }
                continue;
            }
            Frame::Log { level, message } => {
                host.log(level_from(level), message);
                continue;
            }
            Frame::Call {
                cast: true,
                request,
            } => {
                host.cast(request);
                continue;
            }
            Frame::Call {
                cast: false,
                request,
            } => Incoming::Call(request.to_owned()),
            Frame::Routes { routes } => {
                Incoming::Routes(routes.into_iter().map(str::to_owned).collect())
            }
            Frame::TickDone { outcome } => Incoming::Reply(Reply::Tick(failure(outcome))),
            Frame::HttpDone { response } => Incoming::Reply(Reply::Http(match response {
                Ok(response) => Ok(response.map(|r| HttpResponse {
                    status: r.status,
                    headers: owned_headers(&r.headers),
                    body: r.body.to_vec(),
                })),
                Err(outcome) => failure(outcome).map(|()| None),
            })),
            Frame::InitDone { error } | Frame::StopDone { error } => {
                Incoming::Reply(Reply::Done(error.map(str::to_owned)))
            }
            Frame::BatchDone { processed, errors } => Incoming::Reply(Reply::Batch {
                processed,
                errors: owned(errors),
                panic: None,
            }),
            Frame::Panic {
                processed,
                errors,
                message,
            } => Incoming::Reply(Reply::Batch {
                processed,
                errors: owned(errors),
                panic: Some(message.to_owned()),
            }),
            Frame::ProbeAnswer { json } => {
                Incoming::Reply(Reply::Probe(serde_json::from_str(json).unwrap_or_default()))
            }
            _ => Incoming::Broken("unexpected frame".to_owned()),
        };
        let broken = matches!(incoming, Incoming::Broken(_));
        if to.send(incoming).is_err() || broken {
            return;
        }
    }
}
