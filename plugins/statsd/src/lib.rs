//! `statsd` (after Circus's statsd plugin): sends a statsd counter
//! `<prefix>.<topic>:1|c` for every event it receives, over UDP to
//! `host:port`. When it also receives `internal.metrics.event_processed`
//! (with `[metrics] enabled = true`), it sends the handler's time as a timer
//! `<prefix>.handler.<instance>:<ms>|ms`.

use plughost_api::{Context, Event, Plugin, Result, export_plugin};
use serde::Deserialize;
use std::net::UdpSocket;

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    host: String,
    port: u16,
    prefix: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: "127.0.0.1".to_owned(),
            port: 8125,
            prefix: "plughost".to_owned(),
        }
    }
}

struct Statsd {
    socket: UdpSocket,
    prefix: String,
    line: String,
}

/// statsd names may not hold `:`, `|` or `@`.
fn push_name(line: &mut String, name: &str) {
    line.extend(name.chars().map(|c| {
        if matches!(c, ':' | '|' | '@') || c.is_whitespace() {
            '_'
        } else {
            c
        }
    }));
}

#[derive(Deserialize)]
struct Processed {
    listener: String,
    duration_ms: f64,
}

impl Statsd {
    fn send(&mut self) -> Result<()> {
        self.socket.send(self.line.as_bytes())?;
        Ok(())
    }
}

impl Plugin for Statsd {
    type Config = Config;

    fn init(config: Config, _ctx: &Context) -> Result<Self> {
        let socket = UdpSocket::bind(("0.0.0.0", 0))?;
        socket
            .connect((config.host.as_str(), config.port))
            .map_err(|e| {
                format!(
                    "cannot reach statsd at {}:{}: {e}",
                    config.host, config.port
                )
            })?;
        Ok(Statsd {
            socket,
            prefix: config.prefix,
            line: String::with_capacity(128),
        })
    }

    fn on_event(&mut self, event: &Event<'_>, _ctx: &Context) -> Result<()> {
        self.line.clear();
        self.line.push_str(&self.prefix);
        self.line.push('.');
        push_name(&mut self.line, event.topic());
        self.line.push_str(":1|c");
        self.send()?;
        if event.topic() == "internal.metrics.event_processed"
            && let Ok(processed) = event.json::<Processed>()
        {
            self.line.clear();
            self.line.push_str(&self.prefix);
            self.line.push_str(".handler.");
            push_name(&mut self.line, &processed.listener);
            self.line
                .push_str(&format!(":{:.3}|ms", processed.duration_ms));
            self.send()?;
        }
        Ok(())
    }
}

export_plugin!(Statsd);
