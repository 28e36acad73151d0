//! The plugin `plughost-bench` drives: it counts events and folds their
//! payloads into a checksum (FNV-1a per payload, summed), so the bench can
//! prove every event was handled exactly once. With `latency = true`, each
//! payload starts with its send time (CLOCK_MONOTONIC nanoseconds, 8 bytes
//! little-endian) and the plugin records how long it took to arrive. On stop
//! it writes `{"count", "checksum", "latencies_ns"}` to `result_path`.

use plughost_api::{Context, Event, Plugin, Result, export_plugin};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    result_path: String,
    #[serde(default)]
    latency: bool,
}

struct Bench {
    config: Config,
    count: u64,
    checksum: u64,
    latencies: Vec<u64>,
}

/// FNV-1a over `bytes`: cheap, and the C twin computes the same.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

impl Plugin for Bench {
    type Config = Config;

    fn init(config: Config, _ctx: &Context) -> Result<Self> {
        let latencies = if config.latency {
            Vec::with_capacity(1 << 20)
        } else {
            Vec::new()
        };
        Ok(Bench {
            config,
            count: 0,
            checksum: 0,
            latencies,
        })
    }

    fn on_event(&mut self, event: &Event<'_>, _ctx: &Context) -> Result<()> {
        let payload = event.payload();
        self.count += 1;
        self.checksum = self.checksum.wrapping_add(fnv1a(payload));
        if self.config.latency && payload.len() >= 8 {
            let sent = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes"));
            self.latencies.push(monotonic_ns().saturating_sub(sent));
        }
        Ok(())
    }

    fn stop(&mut self, _ctx: &Context) -> Result<()> {
        let result = serde_json::json!({"count": self.count, "checksum": self.checksum, "latencies_ns": self.latencies});
        std::fs::write(&self.config.result_path, result.to_string())?;
        Ok(())
    }
}

export_plugin!(Bench);
