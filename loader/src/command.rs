//! The commands a running host takes: from operators (the control socket,
//! `plughost ctl`) and from plugins (`call`, `cast`). One declaration of the
//! command set serves clap, the socket's JSON and plugins, so they cannot
//! drift; each command is carried out on the [`Supervisor`].

use crate::event::{Name, entering};
use crate::intake::{Entry, PublishError, Publisher};
use crate::observe::{probe, report};
use crate::supervisor::{Commands, InstanceError, ReloadError, Supervisor};
use crate::text::Escaped;
use base64::Engine as _;
use plughost_api::ContentType;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Weak;
use std::time::Duration;

/// A command: what `plughost ctl` takes on its command line, and what the
/// socket and plugins' `call` / `cast` take as JSON (`{"cmd": "stop",
/// "name": "audit"}`). One declaration serves both, so they cannot drift.
/// Each variant's fields are a struct that refuses unknown fields: on an
/// internally tagged enum, serde's `deny_unknown_fields` reaches struct
/// variants but not unit ones (tried: `{"cmd": "list", "name": "a"}` was a
/// plain `list`), and a struct per variant is also what clap needs.
#[derive(Debug, Clone, Serialize, Deserialize, clap::Subcommand)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Command {
    /// Every instance, its state and counts.
    List(NoArgs),
    /// One instance (or all) in detail, with health.
    Status(StatusArgs),
    /// Whether the host and its plugins are ready (exit 1 when not).
    Ready(NoArgs),
    /// Publish an event (source `ctl`; a plugin's call: its own name).
    Publish(PublishArgs),
    /// Start a stopped (or failed) instance.
    Start(Instance),
    /// Stop an instance after its queue.
    Stop(Instance),
    /// Restart an instance (fresh init, queue kept).
    Restart(Instance),
    /// Re-read the config file and apply the difference.
    Reload(NoArgs),
}

/// A command without arguments.
#[derive(Debug, Clone, Default, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

/// The arguments of `status`.
#[derive(Debug, Clone, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct StatusArgs {
    /// The instance; all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The arguments of `publish`. On the socket: `topic`, `payload` (a
/// string) and, optionally, `as`: `json`, `text` or `base64` (what the
/// flags `--json`, `--text`, `--base64` send).
#[derive(Debug, Clone, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct PublishArgs {
    /// The topic.
    pub topic: String,
    /// The payload: content type json when it parses as JSON, else text.
    #[serde(default)]
    pub payload: String,
    /// Send PAYLOAD as text, even when it parses as JSON.
    #[arg(long, conflicts_with_all = ["json", "base64"])]
    #[serde(skip)]
    pub text: bool,
    /// Send PAYLOAD as JSON; refused when it is not.
    #[arg(long, conflicts_with = "base64")]
    #[serde(skip)]
    pub json: bool,
    /// PAYLOAD is base64: send its bytes (content type bytes).
    #[arg(long)]
    #[serde(skip)]
    pub base64: bool,
    /// What the flags chose, as the socket carries it.
    #[arg(skip)]
    #[serde(default, rename = "as", skip_serializing_if = "Option::is_none")]
    pub read_as: Option<PayloadAs>,
}

/// How `publish` reads its payload when told (`as` on the socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadAs {
    /// JSON text: content type `json`, refused when it is not JSON.
    Json,
    /// Text: content type `text`.
    Text,
    /// Standard base64 of the payload's bytes: content type `bytes`.
    Base64,
}

impl PublishArgs {
    /// How the payload is read: as the flags or the socket's `as` say.
    pub fn read_as(&self) -> Option<PayloadAs> {
        self.read_as.or(match (self.json, self.text, self.base64) {
            (true, _, _) => Some(PayloadAs::Json),
            (_, true, _) => Some(PayloadAs::Text),
            (_, _, true) => Some(PayloadAs::Base64),
            _ => None,
        })
    }

    /// The payload's bytes and content type: as `read_as` says, or json when
    /// it parses as JSON (then its compact text), else text.
    fn content(self) -> Result<(Box<[u8]>, ContentType), CommandError> {
        let read_as = self.read_as();
        let payload = self.payload;
        let content = match read_as {
            Some(PayloadAs::Json) => ContentType::Json,
            Some(PayloadAs::Text) => ContentType::Text,
            Some(PayloadAs::Base64) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(payload.trim())
                    .map_err(CommandError::Base64)?;
                return Ok((bytes.into(), ContentType::Bytes));
            }
            None if ContentType::Json.check(payload.as_bytes()).is_ok() => ContentType::Json,
            None => ContentType::Text,
        };
        Ok((entering(payload.into_bytes(), content).into(), content))
    }
}

/// The instance a command acts on.
#[derive(Debug, Clone, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct Instance {
    /// The instance.
    pub name: String,
}

impl Command {
    /// The instance this command starts, stops or restarts, if any.
    pub(crate) fn changes(&self) -> Option<&str> {
        match self {
            Command::Start(i) | Command::Stop(i) | Command::Restart(i) => Some(&i.name),
            _ => None,
        }
    }
}

/// Who sent a command: an operator on the control socket, or a plugin
/// instance (by name) through `call` / `cast`. A `publish` carries it as
/// the event's source.
#[derive(Clone)]
pub(crate) enum Caller {
    Socket,
    Plugin(Name),
}

/// Why a command did not do what it asked: the one line its answer's
/// `error` carries.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The request was not a command.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// About one instance: unknown, already stopped, did not start, ...
    #[error(transparent)]
    Instance(#[from] InstanceError),
    /// The reload was refused, or applied only in part.
    #[error(transparent)]
    Reload(#[from] ReloadError),
    /// The event was refused.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// A `publish` payload given as base64 that is not.
    #[error(
        "invalid base64 payload: {0}; give the bytes in standard base64 (A-Z, a-z, 0-9, +, /, = padding)"
    )]
    Base64(base64::DecodeError),
}

/// Why a request line is not a command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// Not UTF-8 text.
    #[error(
        "bad request: not UTF-8 (invalid byte at offset {offset}); send one JSON object per line"
    )]
    NotUtf8 {
        /// Where the first invalid byte is.
        offset: usize,
    },
    /// Not JSON, or not one of the commands (with what serde says).
    #[error("bad request: {0}")]
    Invalid(#[from] serde_json::Error),
}

/// How long health and readiness checks may take for `status` and `ready`.
fn check_timeout(supervisor: &Supervisor) -> Duration {
    supervisor
        .config()
        .status
        .as_ref()
        .map_or(Duration::from_secs(1), |s| s.check_timeout)
}

/// Carry out `command` (blocking) for `caller`.
pub(crate) fn execute(
    supervisor: &Supervisor,
    caller: &Caller,
    command: Command,
) -> Result<Value, CommandError> {
    match command {
        Command::List(NoArgs {}) => Ok(json!(report::all(supervisor))),
        Command::Status(StatusArgs { name }) => {
            let reports = report::all(supervisor);
            if let Some(name) = &name
                && !reports.iter().any(|r| &r.name == name)
            {
                let name = name.clone();
                return Err(InstanceError::NotFound { name }.into());
            }
            let health = probe::health(supervisor, check_timeout(supervisor), name.as_deref());
            let entries: Vec<Value> = reports
                .into_iter()
                .filter(|r| name.as_ref().is_none_or(|n| &r.name == n))
                .map(|r| {
                    let h = health.iter().find(|h| h.name == r.name);
                    let mut entry = json!(r);
                    entry["health"] = h.map_or(
                        Value::Null,
                        |h| json!({"status": h.status, "message": h.message}),
                    );
                    entry
                })
                .collect();
            Ok(
                json!({"reloads": supervisor.reloads(), "shutting_down": supervisor.is_shutting_down(), "plugins": entries}),
            )
        }
        Command::Ready(NoArgs {}) => {
            let readiness = probe::readiness(supervisor, check_timeout(supervisor), None);
            let ready = !supervisor.is_shutting_down() && readiness.iter().all(|r| r.ready);
            Ok(json!({"ready": ready, "plugins": readiness}))
        }
        Command::Publish(args) => {
            let topic = args.topic.clone();
            let (payload, content) = args.content()?;
            let id = match caller {
                Caller::Socket => supervisor.publish_from(Entry::Ctl, &topic, payload, content),
                // As the plugin itself, from this thread (not the plugin's:
                // it waits for the answer, or has gone on after a cast),
                // and not back to it unless it set `echo = true`.
                Caller::Plugin(name) => {
                    let slots = supervisor.bus.slots();
                    let me = slots.iter().rev().find(|slot| *slot.name == **name);
                    let origin = crate::bus::Origin {
                        instance: me.map(|slot| &**slot),
                        waiter: None,
                    };
                    let bus = &supervisor.bus;
                    let payload = (payload, content);
                    bus.publish_from(Publisher::Plugin, origin, name.clone(), &topic, payload)
                }
            }?;
            Ok(json!({"id": id, "topic": topic, "content_type": content.as_str()}))
        }
        Command::Start(Instance { name }) => {
            supervisor.start_instance(&name)?;
            Ok(json!({"started": name}))
        }
        Command::Stop(Instance { name }) => {
            supervisor.stop_instance(&name)?;
            Ok(json!({"stopped": name}))
        }
        Command::Restart(Instance { name }) => {
            supervisor.restart_instance(&name)?;
            Ok(json!({"restarted": name}))
        }
        Command::Reload(NoArgs {}) => Ok(json!(supervisor.reload()?)),
    }
}

/// Parse one request: UTF-8 text holding one JSON command.
pub(crate) fn parse(line: &[u8]) -> Result<Command, RequestError> {
    let text = std::str::from_utf8(line).map_err(|e| RequestError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    Ok(serde_json::from_str::<Command>(text)?)
}

/// Parse one request line for `caller` and answer it.
pub(crate) fn answer(supervisor: &Supervisor, caller: &Caller, line: &[u8]) -> Value {
    match parse(line) {
        Ok(command) => run(supervisor, caller, command),
        Err(error) => json!({"ok": false, "error": error.to_string()}),
    }
}

/// Carry out `command` for `caller` and wrap the outcome as an answer.
pub(crate) fn run(supervisor: &Supervisor, caller: &Caller, command: Command) -> Value {
    match execute(supervisor, caller, command) {
        Ok(result) => json!({"ok": true, "result": result}),
        Err(error) => json!({"ok": false, "error": error.to_string()}),
    }
}

/// How long a plugin's `call` waits for a command about another instance.
const CALL_WAIT: Duration = Duration::from_secs(5);

/// The host's commands as its plugins' `call` and `cast` reach them: handed
/// down to the supervisor, which knows only the trait. It holds the host
/// weakly: a plugin's call after the host is gone is refused.
pub(crate) struct PluginCommands(pub Weak<Supervisor>);

impl Commands for PluginCommands {
    /// Commands run on a thread of their own, never on the caller's: one
    /// about the caller itself (or a reload) is accepted at once and runs
    /// after the call returns; others are waited for, up to `CALL_WAIT`.
    fn call(&self, caller: &Name, request: &str) -> Result<String, String> {
        let supervisor = self.0.upgrade().ok_or("the host is shutting down")?;
        let command = parse(request.as_bytes()).map_err(|e| e.to_string())?;
        let about_myself =
            command.changes() == Some(&**caller) || matches!(command, Command::Reload(_));
        let (reply_tx, reply_rx) = crossbeam_channel::bounded(1);
        let name = caller.clone();
        let caller = Caller::Plugin(caller.clone());
        std::thread::Builder::new()
            .name(format!("plughost:{name}:call"))
            .spawn(move || {
                let _ = reply_tx.send(run(&supervisor, &caller, command));
            })
            .map_err(|e| format!("cannot run the command: {e}"))?;
        if about_myself {
            return Ok(json!({"ok": true, "result": "accepted"}).to_string());
        }
        match reply_rx.recv_timeout(CALL_WAIT) {
            Ok(answer) => Ok(answer.to_string()),
            Err(_) => Err(format!(
                "the command still runs after {CALL_WAIT:?}; not waiting for it"
            )),
        }
    }

    fn cast(&self, caller: &Name, request: &str) {
        let Some(supervisor) = self.0.upgrade() else {
            return;
        };
        let request = request.to_owned();
        let name = caller.clone();
        let _ = std::thread::Builder::new()
            .name(format!("plughost:{name}:cast"))
            .spawn(move || {
                let caller = Caller::Plugin(name.clone());
                let answer = answer(&supervisor, &caller, request.as_bytes());
                if answer["ok"] != true {
                    let error = answer["error"].as_str().unwrap_or_default();
                    tracing::warn!(plugin = %name, "cast {} failed: {}", Escaped(&request), Escaped(error));
                }
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_refuses_fields_it_does_not_know() {
        for line in [
            r#"{"cmd": "list", "name": "a"}"#,
            r#"{"cmd": "ready", "x": 1}"#,
            r#"{"cmd": "reload", "force": true}"#,
            r#"{"cmd": "status", "name": "a", "verbose": true}"#,
            r#"{"cmd": "publish", "topic": "a", "payload": "", "source": "host"}"#,
            r#"{"cmd": "stop", "nmae": "a"}"#,
            r#"{"cmd": "start", "name": "a", "now": 1}"#,
            r#"{"cmd": "restart", "name": "a", "x": null}"#,
        ] {
            let error = parse(line.as_bytes()).unwrap_err().to_string();
            assert!(error.contains("unknown field"), "{line}: {error}");
        }
    }

    #[test]
    fn commands_read_and_write_the_documented_json() {
        for line in [
            r#"{"cmd":"list"}"#,
            r#"{"cmd":"status"}"#,
            r#"{"cmd":"status","name":"a"}"#,
            r#"{"cmd":"ready"}"#,
            r#"{"cmd":"publish","topic":"t","payload":"text"}"#,
            r#"{"cmd":"start","name":"a"}"#,
            r#"{"cmd":"stop","name":"a"}"#,
            r#"{"cmd":"restart","name":"a"}"#,
            r#"{"cmd":"reload"}"#,
        ] {
            let command = parse(line.as_bytes()).unwrap();
            assert_eq!(serde_json::to_string(&command).unwrap(), line);
        }
        let publish = parse(br#"{"cmd":"publish","topic":"t"}"#).unwrap();
        assert!(
            matches!(publish, Command::Publish(PublishArgs { payload, .. }) if payload.is_empty())
        );
        assert!(
            parse(br#"{"cmd":"stop"}"#)
                .unwrap_err()
                .to_string()
                .contains("name")
        );
        assert!(
            parse(br#"{"cmd":"explode"}"#)
                .unwrap_err()
                .to_string()
                .contains("unknown variant")
        );
    }

    #[test]
    fn a_request_that_is_not_utf8_is_refused_with_where() {
        let error = parse(b"{\"cmd\": \"li\xffst\"}").unwrap_err();
        assert!(matches!(error, RequestError::NotUtf8 { offset: 11 }));
        assert_eq!(
            error.to_string(),
            "bad request: not UTF-8 (invalid byte at offset 11); send one JSON object per line"
        );
    }
}
