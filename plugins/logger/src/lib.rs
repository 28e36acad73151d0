//! `logger` (after Circus's example plugin): appends every event it receives to
//! `path`, one JSON object per line: `id`, `topic`, `source`, `timestamp` and
//! the payload by its content type: `payload` (the JSON value) for `json`,
//! `payload_text` (a JSON string) for `text`, `payload_base64` for `bytes`.
//! Those are the keys of a `--events` line: a logger's file is valid input.
//!
//! An event counts as processed only once its line is in the file: each line
//! goes out with one `write` on a file opened for appending, before
//! `on_event` returns, whole or not at all. So a crash of this instance's
//! process, or of the whole host, loses no line it counted, and never leaves
//! half a line. With `fsync = true` each line is also on disk
//! (`fdatasync`) before `on_event` returns: it then survives a power loss too,
//! at the cost of a disk flush per event. Without it, the file is synced at
//! `stop`, and again when the instance is dropped if lines came after `stop`
//! (at the host's shutdown, what other instances publish in their `stop`).

use base64::Engine as _;
use plughost_api::{ContentType, Context, Event, Plugin, Result, export_plugin};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The file to append to (created if missing).
    path: PathBuf,
    /// Make every line durable before the event counts as processed.
    #[serde(default)]
    fsync: bool,
}

struct Logger {
    file: File,
    path: PathBuf,
    fsync: bool,
    /// The line being written, kept between events for its allocation.
    line: Vec<u8>,
    /// Lines were written since the last sync.
    unsynced: bool,
}

/// What one huge event may leave allocated for the next ones.
const LINE_CAPACITY: usize = 64 * 1024;

#[derive(Serialize)]
struct Line<'a> {
    id: u64,
    topic: &'a str,
    source: &'a str,
    timestamp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
}

/// Append `line` to `file` (opened for appending, so the kernel puts each
/// write at the end, never inside another writer's line). One `write` does
/// it; a short one (a full disk, a file size limit) is finished by more, and
/// when that fails the part already written is cut off again, so the file
/// never keeps half a line. That cut assumes the file is this instance's.
fn append(mut file: &File, line: &[u8]) -> std::io::Result<()> {
    let mut written = 0;
    while written < line.len() {
        match file.write(&line[written..]) {
            Ok(0) => {
                return undo(file, written, std::io::ErrorKind::WriteZero.into());
            }
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return undo(file, written, e),
        }
    }
    Ok(())
}

/// Remove the `written` bytes of a line that could not be finished.
fn undo(file: &File, written: usize, error: std::io::Error) -> std::io::Result<()> {
    if written > 0 {
        let end = file.metadata()?.len();
        file.set_len(end.saturating_sub(written as u64))?;
    }
    Err(error)
}

impl Plugin for Logger {
    type Config = Config;

    fn init(config: Config, _ctx: &Context) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&config.path)
            .map_err(|e| format!("cannot open {}: {e}", config.path.display()))?;
        Ok(Logger {
            file,
            path: config.path,
            fsync: config.fsync,
            line: Vec::with_capacity(1024),
            unsynced: false,
        })
    }

    fn on_event(&mut self, event: &Event<'_>, _ctx: &Context) -> Result<()> {
        // The host checked a json or text payload where it entered; one
        // that does not parse still gets a line, as bytes.
        let (mut json, mut text) = (None, None);
        match event.content_type() {
            ContentType::Json => json = serde_json::from_slice::<&RawValue>(event.bytes()).ok(),
            ContentType::Text => text = event.text(),
            _ => {}
        }
        let line = Line {
            id: event.id(),
            topic: event.topic(),
            source: event.source(),
            timestamp: event.timestamp_ms(),
            payload: json,
            payload_text: text,
            payload_base64: match (json, text) {
                (None, None) => {
                    Some(base64::engine::general_purpose::STANDARD.encode(event.bytes()))
                }
                _ => None,
            },
        };
        if self.line.capacity() > LINE_CAPACITY {
            self.line = Vec::with_capacity(1024);
        }
        self.line.clear();
        serde_json::to_writer(&mut self.line, &line)?;
        self.line.push(b'\n');
        append(&self.file, &self.line)
            .map_err(|e| format!("cannot write to {}: {e}", self.path.display()))?;
        if self.fsync {
            self.file
                .sync_data()
                .map_err(|e| format!("cannot sync {}: {e}", self.path.display()))?;
        } else {
            self.unsynced = true;
        }
        Ok(())
    }

    fn stop(&mut self, _ctx: &Context) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| format!("cannot sync {}: {e}", self.path.display()))?;
        self.unsynced = false;
        Ok(())
    }
}

impl Drop for Logger {
    fn drop(&mut self) {
        // Lines written after `stop` are made as durable as those before it.
        if self.unsynced {
            let _ = self.file.sync_data();
        }
    }
}

export_plugin!(Logger);
