//! The control socket (`[host] control_socket`): it takes the commands of
//! `command`, one JSON object per line each way:
//! `{"cmd": "stop", "name": "audit"}` in, `{"ok": true, "result": ...}` or
//! `{"ok": false, "error": "..."}` out. The socket is created mode 0600.

use crate::command::{self, Caller};
use crate::host::Host;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};

pub use crate::command::{
    Command, CommandError, Instance, NoArgs, PublishArgs, RequestError, StatusArgs,
};

/// Carry out `command` (blocking) as the control socket does, and return
/// its result.
pub fn execute(host: &Host, command: Command) -> Result<Value, CommandError> {
    command::execute(&host.supervisor, &Caller::Socket, command)
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
                tokio::task::spawn_blocking(move || {
                    command::answer(&host.supervisor, &Caller::Socket, &request)
                })
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

/// Why `plughost ctl` got no answer from a host. The OS's or the parser's
/// words are part of the line (not a separate source), as users read it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestFailed {
    /// Nothing listens on the socket.
    #[error("no plughost is listening on {} ({cause}); is the host running with `control_socket` set?", socket.display())]
    NotListening {
        /// The control socket.
        socket: PathBuf,
        /// What the OS said.
        cause: std::io::Error,
    },
    /// The request could not be written.
    #[error("cannot send to {}: {cause}", socket.display())]
    Send {
        /// The control socket.
        socket: PathBuf,
        /// What the OS said.
        cause: std::io::Error,
    },
    /// No answer line came back.
    #[error("no answer from {}: {cause}", socket.display())]
    NoAnswer {
        /// The control socket.
        socket: PathBuf,
        /// What the OS said.
        cause: std::io::Error,
    },
    /// The answer is not JSON.
    #[error("bad answer from {}: {cause}", socket.display())]
    BadAnswer {
        /// The control socket.
        socket: PathBuf,
        /// What the parser said.
        cause: serde_json::Error,
    },
}

/// Send one request to the host listening on `socket` and return its answer.
pub fn request(socket: &Path, command: &Value) -> Result<Value, RequestFailed> {
    use std::io::{BufRead, Write};
    let socket_path = || socket.to_owned();
    let mut stream = std::os::unix::net::UnixStream::connect(socket).map_err(|cause| {
        RequestFailed::NotListening {
            socket: socket_path(),
            cause,
        }
    })?;
    let mut line = command.to_string();
    line.push('\n');
    stream
        .write_all(line.as_bytes())
        .map_err(|cause| RequestFailed::Send {
            socket: socket_path(),
            cause,
        })?;
    let mut reply = String::new();
    std::io::BufReader::new(stream)
        .read_line(&mut reply)
        .map_err(|cause| RequestFailed::NoAnswer {
            socket: socket_path(),
            cause,
        })?;
    serde_json::from_str(&reply).map_err(|cause| RequestFailed::BadAnswer {
        socket: socket_path(),
        cause,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
