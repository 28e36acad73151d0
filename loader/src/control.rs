//! The control socket (`[host] control_socket`), and the commands it shares
//! with plugins' `call` / `cast`. One JSON object per line each way:
//! `{"cmd": "stop", "name": "audit"}` in, `{"ok": true, "result": ...}` or
//! `{"ok": false, "error": "..."}` out. The socket is created mode 0600.

use crate::host::Host;
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// A command, as `plughost ctl`, the socket and plugins send it.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase", deny_unknown_fields)]
pub enum Command {
    /// Every instance with its state and counts.
    List,
    /// One instance (or all) in detail, with health.
    Status {
        /// The instance; all when absent.
        #[serde(default)]
        name: Option<String>,
    },
    /// Readiness of the instances that report it.
    Ready,
    /// Publish an event as the host.
    Publish {
        /// The topic.
        topic: String,
        /// The payload (its bytes, as given).
        #[serde(default)]
        payload: String,
    },
    /// Start a stopped (or failed) instance.
    Start {
        /// The instance.
        name: String,
    },
    /// Stop an instance after its queue.
    Stop {
        /// The instance.
        name: String,
    },
    /// Restart an instance: fresh `init`, queue kept.
    Restart {
        /// The instance.
        name: String,
    },
    /// Re-read the config and apply the difference.
    Reload,
}

impl Command {
    /// The instance this command starts, stops or restarts, if any.
    pub(crate) fn changes(&self) -> Option<&str> {
        match self {
            Command::Start { name } | Command::Stop { name } | Command::Restart { name } => {
                Some(name)
            }
            _ => None,
        }
    }
}

/// How long health and readiness checks may take for `status` and `ready`.
fn check_timeout(host: &Host) -> Duration {
    host.config()
        .status
        .as_ref()
        .map_or(Duration::from_secs(1), |s| s.check_timeout)
}

/// Carry out `command` (blocking) and return its result.
pub fn execute(host: &Host, command: Command) -> Result<Value, String> {
    match command {
        Command::List => Ok(json!(host.report())),
        Command::Status { name } => {
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
        Command::Ready => {
            let readiness = host.readiness(check_timeout(host), None);
            let ready = !host.is_shutting_down() && readiness.iter().all(|r| r.ready);
            Ok(json!({"ready": ready, "plugins": readiness}))
        }
        Command::Publish { topic, payload } => {
            let id = host
                .publish(&topic, payload.into_bytes())
                .map_err(|e| e.to_string())?;
            Ok(json!({"id": id, "topic": topic}))
        }
        Command::Start { name } => host
            .start_instance(&name)
            .map(|()| json!({"started": name})),
        Command::Stop { name } => host.stop_instance(&name).map(|()| json!({"stopped": name})),
        Command::Restart { name } => host
            .restart_instance(&name)
            .map(|()| json!({"restarted": name})),
        Command::Reload => host.reload().map(|report| json!(report)),
    }
}

/// Parse one request line and answer it.
pub fn answer(host: &Host, line: &str) -> Value {
    match serde_json::from_str::<Command>(line) {
        Ok(command) => run(host, command),
        Err(e) => json!({"ok": false, "error": format!("bad request: {e}")}),
    }
}

/// Carry out `command` and wrap the outcome as an answer.
pub(crate) fn run(host: &Host, command: Command) -> Value {
    match execute(host, command) {
        Ok(result) => json!({"ok": true, "result": result}),
        Err(error) => json!({"ok": false, "error": error}),
    }
}

/// Answer the requests of one client until it hangs up.
pub async fn serve_connection(host: Host, stream: tokio::net::UnixStream) {
    let (reader, mut writer) = stream.into_split();
    let mut lines = BufReader::new(reader).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let host = host.clone();
        let reply = tokio::task::spawn_blocking(move || answer(&host, &line))
            .await
            .unwrap_or_default();
        let mut text = reply.to_string();
        text.push('\n');
        if writer.write_all(text.as_bytes()).await.is_err() {
            break;
        }
    }
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
