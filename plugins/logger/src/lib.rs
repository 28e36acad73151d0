//! `logger` (after Circus's example plugin): appends every event it receives to
//! `path`, one JSON object per line: `id`, `topic`, `source`, `timestamp` and
//! `payload` (the payload's JSON value) or `payload_base64` (when the payload
//! is not JSON). Flushes on stop.

use base64::Engine as _;
use plughost_api::{Context, Event, Plugin, Result, export_plugin};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The file to append to (created if missing).
    path: PathBuf,
}

struct Logger {
    out: BufWriter<File>,
}

#[derive(Serialize)]
struct Line<'a> {
    id: u64,
    topic: &'a str,
    source: &'a str,
    timestamp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
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
            out: BufWriter::with_capacity(64 * 1024, file),
        })
    }

    fn on_event(&mut self, event: &Event<'_>, _ctx: &Context) -> Result<()> {
        let json = serde_json::from_slice::<&RawValue>(event.payload()).ok();
        let line = Line {
            id: event.id(),
            topic: event.topic(),
            source: event.source(),
            timestamp: event.timestamp_ms(),
            payload: json,
            payload_base64: match json {
                Some(_) => None,
                None => Some(base64::engine::general_purpose::STANDARD.encode(event.payload())),
            },
        };
        serde_json::to_writer(&mut self.out, &line)?;
        self.out.write_all(b"\n")?;
        Ok(())
    }

    fn stop(&mut self, _ctx: &Context) -> Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_data()?;
        Ok(())
    }
}

export_plugin!(Logger);
