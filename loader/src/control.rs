//! The control socket (`[host] control_socket`), and the commands it shares
//! with plugins' `call` / `cast`. One JSON object per line each way:
//! `{"cmd": "stop", "name": "audit"}` in, `{"ok": true, "result": ...}` or
//! `{"ok": false, "error": "..."}` out. The socket is created mode 0600.

use crate::event::Name;
use crate::host::Host;
use crate::intake::{Entry, Publisher};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};

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

/// The arguments of `publish`.
#[derive(Debug, Clone, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct PublishArgs {
    /// The topic.
    pub topic: String,
    /// The payload (its bytes, as given).
    #[serde(default)]
    pub payload: String,
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

/// How long health and readiness checks may take for `status` and `ready`.
fn check_timeout(host: &Host) -> Duration {
    host.config()
        .status
        .as_ref()
        .map_or(Duration::from_secs(1), |s| s.check_timeout)
}

/// Carry out `command` (blocking) as the control socket does, and return
/// its result.
pub fn execute(host: &Host, command: Command) -> Result<Value, String> {
    execute_for(host, &Caller::Socket, command)
}

/// Carry out `command` (blocking) for `caller`.
fn execute_for(host: &Host, caller: &Caller, command: Command) -> Result<Value, String> {
    match command {
        Command::List(NoArgs {}) => Ok(json!(host.report())),
        Command::Status(StatusArgs { name }) => {
            let reports = host.report();
            if let Some(name) = &name
                && !reports.iter().any(|r| &r.name == name)
            {
                return Err(format!("no plugin instance named `{name}`"));
            }
            let health = host.health(check_timeout(host), name.as_deref());
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
                json!({"reloads": host.reloads(), "shutting_down": host.is_shutting_down(), "plugins": entries}),
            )
        }
        Command::Ready(NoArgs {}) => {
            let readiness = host.readiness(check_timeout(host), None);
            let ready = !host.is_shutting_down() && readiness.iter().all(|r| r.ready);
            Ok(json!({"ready": ready, "plugins": readiness}))
        }
        Command::Publish(PublishArgs { topic, payload }) => {
            let payload = payload.into_bytes().into_boxed_slice();
            let id = match caller {
                Caller::Socket => host.publish_from(Entry::Ctl, &topic, payload),
                // As the plugin itself, from this thread (not the plugin's:
                // it waits for the answer, or has gone on after a cast).
                Caller::Plugin(name) => host.inner.bus.publish_from(
                    Publisher::Plugin,
                    None,
                    name.clone(),
                    &topic,
                    payload,
                ),
            }
            .map_err(|e| e.to_string())?;
            Ok(json!({"id": id, "topic": topic}))
        }
        Command::Start(Instance { name }) => host
            .start_instance(&name)
            .map(|()| json!({"started": name})),
        Command::Stop(Instance { name }) => {
            host.stop_instance(&name).map(|()| json!({"stopped": name}))
        }
        Command::Restart(Instance { name }) => host
            .restart_instance(&name)
            .map(|()| json!({"restarted": name})),
        Command::Reload(NoArgs {}) => host.reload().map(|report| json!(report)),
    }
}

/// Parse one request: UTF-8 text holding one JSON command.
pub(crate) fn parse(line: &[u8]) -> Result<Command, String> {
    let text = std::str::from_utf8(line).map_err(|e| {
        format!(
            "bad request: not UTF-8 (invalid byte at offset {}); send one JSON object per line",
            e.valid_up_to()
        )
    })?;
    serde_json::from_str::<Command>(text).map_err(|e| format!("bad request: {e}"))
}

/// Parse one request line for `caller` and answer it.
pub(crate) fn answer(host: &Host, caller: &Caller, line: &[u8]) -> Value {
    match parse(line) {
        Ok(command) => run(host, caller, command),
        Err(error) => json!({"ok": false, "error": error}),
    }
}

/// Carry out `command` for `caller` and wrap the outcome as an answer.
pub(crate) fn run(host: &Host, caller: &Caller, command: Command) -> Value {
    match execute_for(host, caller, command) {
        Ok(result) => json!({"ok": true, "result": result}),
        Err(error) => json!({"ok": false, "error": error}),
    }
}

/// What reading one request line gave.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A whole line (without its newline) is in the buffer.
    Whole,
    /// The line is longer than the limit: what was read of it is dropped,
    /// and the rest will be skipped up to its newline.
    TooLong,
    /// The client hung up.
    End,
}

/// Reads request lines of at most `max` bytes, holding no more than that
/// however long a line is: past the limit, the rest of the line is skipped
/// as it arrives, and the connection goes on with the next one.
struct LineReader<R> {
    reader: R,
    /// Inside a too-long line: skip up to its newline first.
    skipping: bool,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    async fn next(&mut self, line: &mut Vec<u8>, max: usize) -> std::io::Result<Line> {
        line.clear();
        loop {
            let chunk = self.reader.fill_buf().await?;
            if chunk.is_empty() {
                let partial = !line.is_empty() && !self.skipping;
                self.skipping = false;
                return Ok(if partial { Line::Whole } else { Line::End });
            }
            let newline = chunk.iter().position(|&b| b == b'\n');
            let take = newline.unwrap_or(chunk.len());
            if self.skipping {
                self.skipping = newline.is_none();
                let used = newline.map_or(take, |at| at + 1);
                self.reader.consume(used);
                continue;
            }
            if line.len() + take > max {
                self.skipping = newline.is_none();
                let used = newline.map_or(take, |at| at + 1);
                self.reader.consume(used);
                line.clear();
                return Ok(Line::TooLong);
            }
            line.extend_from_slice(&chunk[..take]);
            match newline {
                Some(at) => {
                    self.reader.consume(at + 1);
                    return Ok(Line::Whole);
                }
                None => self.reader.consume(take),
            }
        }
    }
}

/// Answer the requests of one client until it hangs up. A line that is not
/// UTF-8, not a command, or longer than `[host] control_max_line_bytes` gets
/// an error answer, and the connection goes on.
pub async fn serve_connection(host: Host, stream: tokio::net::UnixStream) {
    let (reader, mut writer) = stream.into_split();
    let mut lines = LineReader {
        reader: BufReader::new(reader),
        skipping: false,
    };
    let mut line = Vec::new();
    loop {
        let (max, idle) = {
            let config = host.config();
            (
                config.host.control_max_line_bytes,
                config.host.control_idle_timeout,
            )
        };
        let reply = match tokio::time::timeout(idle, lines.next(&mut line, max)).await {
            Err(_) => {
                let text = format!(
                    "{}\n",
                    json!({
                        "ok": false,
                        "error": format!("no command for {idle:?} ([host] control_idle_timeout): the connection is closed")
                    })
                );
                let _ = writer.write_all(text.as_bytes()).await;
                break;
            }
            Ok(read) => read,
        };
        let reply = match reply {
            Ok(Line::End) | Err(_) => break,
            Ok(Line::TooLong) => json!({
                "ok": false,
                "error": format!("bad request: longer than {max} bytes ([host] control_max_line_bytes); the line is skipped")
            }),
            Ok(Line::Whole) => {
                let host = host.clone();
                let request = std::mem::take(&mut line);
                tokio::task::spawn_blocking(move || answer(&host, &Caller::Socket, &request))
                    .await
                    .unwrap_or_else(|_| json!({"ok": false, "error": "the command failed"}))
            }
        };
        let mut text = reply.to_string();
        text.push('\n');
        if writer.write_all(text.as_bytes()).await.is_err() {
            break;
        }
    }
}

/// Refuse a control connection over `[host] control_max_connections`: one
/// error line if the socket takes it at once (never waiting on the client),
/// then the connection is closed.
pub fn refuse(stream: &tokio::net::UnixStream, max: usize) {
    let text = format!(
        "{}\n",
        json!({
            "ok": false,
            "error": format!("too many control connections: {max} are open ([host] control_max_connections); try again later")
        })
    );
    let _ = stream.try_write(text.as_bytes());
}

/// Bind the control socket with mode 0600, without a moment at another
/// mode: it is bound inside a fresh directory of mode 0700 beside `path`
/// (nobody else can reach it there), set to 0600, then renamed into place.
/// An existing socket nobody listens on is replaced; anything else at `path`
/// is refused.
pub async fn bind(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
    let refuse = |kind, message: String| Err(std::io::Error::new(kind, message));
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return refuse(
                std::io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket; remove it or set another control_socket",
                    path.display()
                ),
            );
        }
        Ok(_) if tokio::net::UnixStream::connect(path).await.is_ok() => {
            return refuse(
                std::io::ErrorKind::AddrInUse,
                format!("another process is listening on {}", path.display()),
            );
        }
        _ => {}
    }
    let parent = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let private = parent.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    let staged = private.join("socket");
    let bound = tokio::net::UnixListener::bind(&staged).and_then(|listener| {
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&staged, path)?;
        Ok(listener)
    });
    let _ = std::fs::remove_file(&staged);
    let _ = std::fs::remove_dir(&private);
    bound
}

/// Send one request to the host listening on `socket` and return its answer.
pub fn request(socket: &Path, command: &Value) -> Result<Value, String> {
    use std::io::{BufRead, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).map_err(|e| {
        format!(
            "no plughost is listening on {} ({e}); is the host running with `control_socket` set?",
            socket.display()
        )
    })?;
    let mut line = command.to_string();
    line.push('\n');
    stream
        .write_all(line.as_bytes())
        .map_err(|e| format!("cannot send to {}: {e}", socket.display()))?;
    let mut reply = String::new();
    std::io::BufReader::new(stream)
        .read_line(&mut reply)
        .map_err(|e| format!("no answer from {}: {e}", socket.display()))?;
    serde_json::from_str(&reply).map_err(|e| format!("bad answer from {}: {e}", socket.display()))
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
            let error = parse(line.as_bytes()).unwrap_err();
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
        assert!(parse(br#"{"cmd":"stop"}"#).unwrap_err().contains("name"));
        assert!(
            parse(br#"{"cmd":"explode"}"#)
                .unwrap_err()
                .contains("unknown variant")
        );
    }

    #[test]
    fn a_request_that_is_not_utf8_is_refused_with_where() {
        let error = parse(b"{\"cmd\": \"li\xffst\"}").unwrap_err();
        assert_eq!(
            error,
            "bad request: not UTF-8 (invalid byte at offset 11); send one JSON object per line"
        );
    }

    async fn lines(input: &'static [u8], max: usize) -> Vec<String> {
        let mut reader = LineReader {
            reader: tokio::io::BufReader::with_capacity(4, input),
            skipping: false,
        };
        let mut line = Vec::new();
        let mut seen = Vec::new();
        loop {
            match reader.next(&mut line, max).await.unwrap() {
                Line::End => return seen,
                Line::TooLong => seen.push("<too long>".to_owned()),
                Line::Whole => seen.push(String::from_utf8_lossy(&line).into_owned()),
            }
        }
    }

    #[tokio::test]
    async fn a_line_over_the_limit_is_answered_and_the_next_one_read() {
        assert_eq!(
            lines(b"ab\nabcdefghij\ncd\nabcdefghijkl", 5).await,
            ["ab", "<too long>", "cd", "<too long>"]
        );
        assert_eq!(
            lines(b"abcde\nabcdef\nx", 5).await,
            ["abcde", "<too long>", "x"]
        );
        assert_eq!(lines(b"", 5).await, Vec::<String>::new());
    }
}
