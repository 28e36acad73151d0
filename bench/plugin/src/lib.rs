//! The plugin `plughost-bench` drives. It counts the events it handles and
//! folds their payloads into a checksum, so the bench can prove that every
//! event was handled exactly once; `bench/c/bench_c.c` is its C twin and
//! computes the same checksum.
//!
//! The checksum is the wrapping sum, over all events, of FNV-1a-64 taken over
//! the payload's 8-byte little-endian words (then its tail bytes one by one):
//! cheap (8 multiplies for a 64-byte payload), so the handler does not hide
//! the host's own cost, and deterministic.
//!
//! With `latency = true`, each payload starts with its send time
//! (CLOCK_MONOTONIC nanoseconds, 8 bytes little-endian; a clock both
//! processes share, unlike `Instant`) and the plugin records how long each
//! event took to reach its handler in a preallocated vector.
//!
//! With `publish_count = N`, the first event it receives starts a thread of
//! the plugin's own that publishes N payloads (the bench's `payload(i)`,
//! for i in 0..N) on `publish_topic` through the instance's `Publisher`:
//! the `publisher_thread` scenario.
//!
//! The result goes to a file, not to the bus: on `stop` the plugin writes
//! `{"count": n, "checksum": c}` to its config's `result_path` (plus
//! `latency_samples`, `p50_ns`, `p99_ns` and `p999_ns` in latency mode), and
//! the bench reads it after `Host::shutdown` returns. Publishing a
//! `bench.result` event instead would need a second instance to collect it,
//! still running while this one stops.

use plughost_api::{Context, Event, Plugin, Publisher, Result, export_plugin};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Where `stop` writes the result (JSON).
    result_path: String,
    /// Record per-event latency from the timestamp in the payload.
    #[serde(default)]
    latency: bool,
    /// Payloads a thread of its own publishes, once the first event came.
    #[serde(default)]
    publish_count: u64,
    /// Where that thread publishes them.
    #[serde(default)]
    publish_topic: String,
}

struct Bench {
    config: Config,
    count: u64,
    checksum: u64,
    latencies: Vec<u64>,
    /// The publishing thread, once started.
    publisher: Option<std::thread::JoinHandle<()>>,
}

/// The bench's payload number `i` (see `payload` in `bench/src/main.rs`).
fn payload(i: u64) -> [u8; 64] {
    let mut p = [0u8; 64];
    p[..8].copy_from_slice(&i.to_le_bytes());
    for (j, byte) in p.iter_mut().enumerate().skip(8) {
        *byte = (i as usize).wrapping_mul(31).wrapping_add(j) as u8;
    }
    p
}

/// Publish payloads `0..count` on `topic`, in order, from this thread.
fn publish_all(publisher: Publisher, topic: String, count: u64) {
    for i in 0..count {
        if let Err(e) = publisher.publish(&topic, payload(i)) {
            eprintln!("bench_plugin: publish {i} refused: {e}");
            return;
        }
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a-64 over the 8-byte little-endian words of `bytes`, then over its
/// remaining bytes one at a time. `bench_c.c` and the bench compute the same.
pub fn checksum(bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(8);
    let mut hash = FNV_OFFSET;
    for word in &mut words {
        let word = u64::from_le_bytes(word.try_into().expect("chunks of 8"));
        hash = (hash ^ word).wrapping_mul(FNV_PRIME);
    }
    for &byte in words.remainder() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME);
    }
    hash
}

fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes into `now`, a timespec we own, and
    // CLOCK_MONOTONIC is always available on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// The nearest-rank `q` quantile of sorted `values` (0 when empty).
fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Plugin for Bench {
    type Config = Config;

    fn init(config: Config, _ctx: &Context) -> Result<Self> {
        // Room for ~10 s at 100,000 events/s, so recording never reallocates.
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
            publisher: None,
        })
    }

    fn on_event(&mut self, event: &Event<'_>, ctx: &Context) -> Result<()> {
        if self.config.publish_count > 0 && self.publisher.is_none() {
            let (publisher, topic) = (ctx.publisher(), self.config.publish_topic.clone());
            let count = self.config.publish_count;
            let thread = std::thread::Builder::new()
                .name("bench-publisher".to_owned())
                .spawn(move || publish_all(publisher, topic, count))?;
            self.publisher = Some(thread);
        }
        let payload = event.payload();
        if self.config.latency
            && let Some(sent) = payload.first_chunk::<8>()
        {
            let arrived = monotonic_ns();
            self.latencies
                .push(arrived.saturating_sub(u64::from_le_bytes(*sent)));
        }
        self.count += 1;
        self.checksum = self.checksum.wrapping_add(checksum(payload));
        Ok(())
    }

    fn stop(&mut self, _ctx: &Context) -> Result<()> {
        if let Some(thread) = self.publisher.take() {
            let _ = thread.join();
        }
        let mut result = serde_json::json!({"count": self.count, "checksum": self.checksum});
        if self.config.latency {
            self.latencies.sort_unstable();
            let sorted = &self.latencies;
            result["latency_samples"] = sorted.len().into();
            result["p50_ns"] = quantile(sorted, 0.50).into();
            result["p99_ns"] = quantile(sorted, 0.99).into();
            result["p999_ns"] = quantile(sorted, 0.999).into();
        }
        std::fs::write(&self.config.result_path, result.to_string())?;
        Ok(())
    }
}

export_plugin!(Bench);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_word_wise_fnv1a_then_the_tail() {
        assert_eq!(checksum(&[]), FNV_OFFSET);
        let one_byte = (FNV_OFFSET ^ 0x61).wrapping_mul(FNV_PRIME);
        assert_eq!(checksum(b"a"), one_byte);
        let word = (FNV_OFFSET ^ u64::from_le_bytes(*b"abcdefgh")).wrapping_mul(FNV_PRIME);
        assert_eq!(checksum(b"abcdefgh"), word);
        assert_eq!(
            checksum(b"abcdefghi"),
            (word ^ u64::from(b'i')).wrapping_mul(FNV_PRIME)
        );
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let values: Vec<u64> = (1..=1000).collect();
        assert_eq!(quantile(&values, 0.50), 500);
        assert_eq!(quantile(&values, 0.99), 990);
        assert_eq!(quantile(&values, 0.999), 999);
        assert_eq!(quantile(&[7], 0.999), 7);
        assert_eq!(quantile(&[], 0.5), 0);
    }
}
