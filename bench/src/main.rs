//! `plughost-bench`: how fast events move into plugins, against the best this
//! machine does without a host, measured in one run.
//!
//! Every scenario drives the bench plugin (`bench/plugin`, or its C twin
//! `bench/c/bench_c.c`), which counts events and sums a checksum of their
//! 64-byte payloads, and writes `{"count", "checksum"}` to the file named by
//! its `result_path` config key when it stops. The bench computes the same
//! count and checksum from what it sent and fails (exit 1) on any difference:
//! every event was handled, once.
//!
//! - `raw` is the baseline: a bounded crossbeam channel carrying batches of
//!   256 payloads to one thread that calls the plugin's handler directly
//!   through its abi_stable module. No host.
//! - `rust`, `c`, `fanout8` (8 instances, counted in deliveries) and `process`
//!   publish one event at a time through the public `plughost::Host` API;
//!   `publisher_thread` has a thread of a plugin's own publish them through
//!   its instance's `Publisher` to another instance;
//!   `rust_batch` uses `Host::publish_batch` with batches of 256.
//! - `latency` publishes at a fixed 100,000 events/s; each payload carries its
//!   send time and the plugin records publish-to-handler latency.
//!   `raw_latency`, its baseline, sends at the same pace over a channel to a
//!   thread that blocks on it and calls the handler directly: how long this
//!   machine takes to wake a waiting thread, which bounds both.
//! - `startup` and `idle_rss` run the real `plughost` binary.
//!
//! `--json` prints one JSON object, `--quick` runs a short version, and
//! `--only NAME,...` runs some scenarios (and the baselines their ratios
//! need).
//!
//! Every publisher allocates each payload (`Box<[u8]>`, as `Host::publish`
//! takes it) inside the timed region, `raw` included. Each figure is the
//! median of several repetitions; timings are printed, never asserted.

use abi_stable::library::lib_header_from_path;
use abi_stable::std_types::{RSlice, RStr};
use crossbeam_channel::{RecvTimeoutError, TryRecvError};
use plughost::{Config, Host, InstanceReport};
use plughost_api::LogLevel;
use plughost_api::abi::{EventRef, HostFunctions, HostHandle, PluginModuleRef};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const PAYLOAD: usize = 64;
const TOPIC: &str = "bench.event";
/// Payloads per batch, for `raw` and `rust_batch`.
const BATCH: usize = 256;
/// The `latency` scenario's publishing rate.
const LATENCY_RATE: u64 = 100_000;
/// Instances in the `startup` and `idle_rss` hosts.
const MANY: usize = 50;
/// How long the real binary may take to start, or to exit once told to.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(30);

/// The scenarios, in the order they are shown. Adding one is a function
/// and a line here.
const SCENARIOS: [(&str, Scenario); 11] = [
    ("raw", Scenario::Throughput(Bench::raw)),
    ("rust", Scenario::Throughput(Bench::rust)),
    (
        "publisher_thread",
        Scenario::Throughput(Bench::publisher_thread),
    ),
    ("rust_batch", Scenario::Throughput(Bench::rust_batch)),
    ("c", Scenario::Throughput(Bench::c)),
    ("fanout8", Scenario::Throughput(Bench::fanout8)),
    ("process", Scenario::Throughput(Bench::process)),
    ("raw_latency", Scenario::Figures(Bench::raw_latency)),
    ("latency", Scenario::Figures(Bench::latency)),
    ("startup", Scenario::Figures(Bench::startup)),
    ("idle_rss", Scenario::Figures(Bench::idle_rss)),
];

enum Scenario {
    /// One run: events (or deliveries) per second. The throughput scenarios
    /// run in rounds, each round running each of them once, so that a
    /// disturbance on the machine hits them alike rather than one of them.
    Throughput(fn(&Bench) -> Result<f64, String>),
    /// All of a scenario's repetitions: the medians of its figures.
    Figures(fn(&Bench) -> Result<Figures, String>),
}

/// What a scenario measured: the fields that apply to it.
#[derive(Default, Clone, Copy)]
struct Figures {
    events_per_sec: Option<f64>,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    p999_us: Option<f64>,
    ms: Option<f64>,
    bytes: Option<f64>,
    /// (slowest, fastest) run of a throughput scenario; shown in the table only.
    range: Option<(f64, f64)>,
}

/// Events handled and the wrapping sum of their payload checksums.
#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
struct Tally {
    count: u64,
    checksum: u64,
}

impl Tally {
    fn add(&mut self, payload: &[u8]) {
        self.count += 1;
        self.checksum = self.checksum.wrapping_add(checksum(payload));
    }
}

/// FNV-1a-64 over the 8-byte little-endian words of `bytes`, then its tail
/// bytes: the bench plugin's `checksum` (and `bench_c.c`'s), which this
/// process cannot link (the plugin is a cdylib).
fn checksum(bytes: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut words = bytes.chunks_exact(8);
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for word in &mut words {
        let word = u64::from_le_bytes(word.try_into().expect("chunks of 8"));
        hash = (hash ^ word).wrapping_mul(PRIME);
    }
    for &byte in words.remainder() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(PRIME);
    }
    hash
}

/// Payload `i`: its index, then bytes derived from it.
fn payload(i: u64) -> [u8; PAYLOAD] {
    let mut p = [0u8; PAYLOAD];
    p[..8].copy_from_slice(&i.to_le_bytes());
    for (j, byte) in p.iter_mut().enumerate().skip(8) {
        *byte = (i as usize).wrapping_mul(31).wrapping_add(j) as u8;
    }
    p
}

/// A payload as publishers hand it over: its own allocation.
fn boxed(payload: &[u8; PAYLOAD]) -> Box<[u8]> {
    Box::from(&payload[..])
}

/// CLOCK_MONOTONIC in nanoseconds: the clock the bench plugin reads too.
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

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The host the `raw` baseline hands the plugin: takes everything, does nothing.
struct NullHost;

impl HostFunctions for NullHost {
    fn instance_name(&self) -> &str {
        "raw"
    }
    fn publish(&self, _topic: &str, _payload: &[u8]) -> Result<(), String> {
        Ok(())
    }
    fn log(&self, _level: LogLevel, _message: &str) {}
    fn call(&self, _request: &str) -> Result<String, String> {
        Err("the raw baseline runs no commands".to_owned())
    }
    fn cast(&self, _request: &str) {}
}

/// The next message of `rx` (`None` once it is closed and empty): watched
/// for 50 µs, then waited for.
fn watch_then_wait<T>(rx: &crossbeam_channel::Receiver<T>) -> Option<T> {
    const WATCH: Duration = Duration::from_micros(50);
    let deadline = Instant::now() + WATCH;
    loop {
        match rx.try_recv() {
            Ok(message) => return Some(message),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) if Instant::now() < deadline => std::hint::spin_loop(),
            Err(TryRecvError::Empty) => return rx.recv().ok(),
        }
    }
}

/// A bench plugin run directly by a thread of the bench's ([`Bench::direct`]).
struct Direct {
    tx: crossbeam_channel::Sender<Vec<Box<[u8]>>>,
    consumer: std::thread::JoinHandle<Result<(), String>>,
}

impl Direct {
    /// Close the channel and wait for the plugin to handle what it holds and stop.
    fn finish(self) -> Result<(), String> {
        drop(self.tx);
        self.consumer
            .join()
            .map_err(|_| "the direct consumer panicked".to_owned())?
    }
}

/// One instance of a host scenario.
struct Instance {
    name: String,
    library: &'static str,
    isolation: &'static str,
}

impl Instance {
    fn new(name: &str, library: &'static str, isolation: &'static str) -> Instance {
        Instance {
            name: name.to_owned(),
            library,
            isolation,
        }
    }
}

/// How a throughput scenario publishes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Publish {
    /// `Host::publish`, one event at a time.
    One,
    /// `Host::publish_batch`, `BATCH` events at a time.
    Batch,
}

struct Bench {
    /// Where the plugin libraries and the `plughost` binary are.
    dir: PathBuf,
    /// Configs and result files of this run.
    scratch: PathBuf,
    payloads: Vec<[u8; PAYLOAD]>,
    /// What the plugin must report after handling `payloads` once.
    expected: Tally,
    reps: usize,
    quick: bool,
    module: std::sync::OnceLock<PluginModuleRef>,
}

impl Bench {
    fn library(&self, name: &str) -> PathBuf {
        self.dir.join(format!("lib{name}.so"))
    }

    fn result_path(&self, instance: &str) -> PathBuf {
        self.scratch.join(format!("{instance}.result.json"))
    }

    /// The result file a bench plugin instance wrote on stop.
    fn result(&self, instance: &str) -> Result<(Tally, Value), String> {
        let path = self.result_path(instance);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("{instance}: no result at {}: {e}", path.display()))?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| format!("{instance}: bad result {text:?}: {e}"))?;
        let tally = Tally {
            count: value["count"].as_u64().ok_or("result without count")?,
            checksum: value["checksum"]
                .as_u64()
                .ok_or("result without checksum")?,
        };
        Ok((tally, value))
    }

    /// The plugin's tally must be what was sent: every event handled once.
    fn verify(&self, scenario: &str, instance: &str, want: Tally) -> Result<Value, String> {
        let (got, value) = self.result(instance)?;
        if got != want {
            return Err(format!(
                "{scenario}: checksum mismatch in `{instance}`: it handled {} events (checksum {:#018x}), expected {} ({:#018x})",
                got.count, got.checksum, want.count, want.checksum
            ));
        }
        Ok(value)
    }

    fn median_of(&self, mut run: impl FnMut() -> Result<f64, String>) -> Result<f64, String> {
        let mut values = Vec::with_capacity(self.reps);
        for _ in 0..self.reps {
            values.push(run()?);
        }
        Ok(median(values))
    }

    /// The bench plugin's root module, loaded once.
    fn module(&self) -> Result<PluginModuleRef, String> {
        if let Some(module) = self.module.get() {
            return Ok(*module);
        }
        let module = lib_header_from_path(&self.library("bench_plugin"))
            .and_then(|header| header.init_root_module::<PluginModuleRef>())
            .map_err(|e| format!("cannot load the bench plugin: {e}"))?;
        Ok(*self.module.get_or_init(|| module))
    }

    // ---- the scenarios ----

    /// The bench plugin as the baselines run it, with no host: a thread
    /// that takes batches from a bounded channel (watching it for 50 µs
    /// when it is empty, then blocking, as an idle instance watches its
    /// mailbox) and calls the handler directly, as the host calls it; the
    /// plugin stops when the channel closes. Its instance is `name`.
    fn direct(&self, name: &str, latency: bool) -> Result<Direct, String> {
        let module = self.module()?;
        let _ = std::fs::remove_file(self.result_path(name));
        let config = json!({"result_path": self.result_path(name), "latency": latency}).to_string();
        let host = HostHandle::new(std::sync::Arc::new(NullHost));
        let mut plugin = (module.create())(RStr::from_str(&config), host)
            .into_result()
            .map_err(|e| format!("{name}: create failed: {}", e.message))?;
        let (tx, rx) = crossbeam_channel::bounded::<Vec<Box<[u8]>>>(64);
        let name = name.to_owned();
        let consumer = std::thread::spawn(move || {
            let mut id = 0;
            while let Some(batch) = watch_then_wait(&rx) {
                for payload in batch {
                    id += 1;
                    let event = EventRef {
                        id,
                        timestamp_ms: 0,
                        topic: RStr::from_str(TOPIC),
                        payload: RSlice::from_slice(&payload),
                        source: RStr::from_str("host"),
                    };
                    // As the host calls it: with the event's content type.
                    if let Err(e) = plugin.on_event_typed(event, 0).into_result() {
                        return Err(format!("{name}: on_event failed: {}", e.message));
                    }
                }
            }
            plugin
                .stop()
                .into_result()
                .map_err(|e| format!("{name}: stop failed: {}", e.message))
        });
        Ok(Direct { tx, consumer })
    }

    /// The baseline: batches over a channel, the handler called directly.
    fn raw(&self) -> Result<f64, String> {
        let direct = self.direct("raw", false)?;
        let started = Instant::now();
        for chunk in self.payloads.chunks(BATCH) {
            let batch: Vec<Box<[u8]>> = chunk.iter().map(boxed).collect();
            if direct.tx.send(batch).is_err() {
                break; // the consumer failed; its error follows
            }
        }
        direct.finish()?;
        let took = started.elapsed();
        self.verify("raw", "raw", self.expected)?;
        Ok(self.payloads.len() as f64 / took.as_secs_f64())
    }

    fn rust(&self) -> Result<f64, String> {
        let one = [Instance::new("rust", "bench_plugin", "thread")];
        self.through_host("rust", &one, Publish::One)
    }

    /// A thread of the `source` instance's own publishes every payload
    /// through its `Publisher` to the `rust` instance: from the event that
    /// starts it until the sink has handled them all and `shutdown` stopped
    /// both.
    fn publisher_thread(&self) -> Result<f64, String> {
        const SCENARIO: &str = "publisher_thread";
        let sink = Instance::new(SCENARIO, "bench_plugin", "thread");
        let _ = std::fs::remove_file(self.result_path(SCENARIO));
        let sinks = self.config_text(std::slice::from_ref(&sink), false);
        let source = format!(
            "\n[[plugin]]\nname = \"source\"\nlibrary = \"bench_plugin\"\nsubscribe = [\"bench.go\"]\n[plugin.config]\nresult_path = {}\npublish_count = {}\npublish_topic = {TOPIC:?}\n",
            toml_string(&self.result_path("source")),
            self.payloads.len()
        );
        let config = self.parse(&(sinks + &source))?;
        let host = Host::start(config).map_err(|e| format!("{SCENARIO}: {e}"))?;
        let events = self.payloads.len() as u64;
        let started = Instant::now();
        host.publish("bench.go", boxed(&payload(0)))
            .map_err(|e| format!("{SCENARIO}: {e}"))?;
        let handled = |host: &Host| {
            host.report()
                .iter()
                .find(|r| r.name == SCENARIO)
                .map_or(0, |r| {
                    r.counts.processed + r.counts.dropped + r.counts.failed
                })
        };
        while handled(&host) < events {
            std::thread::sleep(Duration::from_micros(200));
        }
        let reports = host.shutdown();
        let took = started.elapsed();
        let sink_report: Vec<InstanceReport> =
            reports.into_iter().filter(|r| r.name == SCENARIO).collect();
        check_reports(SCENARIO, &sink_report, events)?;
        self.verify(SCENARIO, SCENARIO, self.expected)?;
        Ok(events as f64 / took.as_secs_f64())
    }

    fn rust_batch(&self) -> Result<f64, String> {
        let one = [Instance::new("rust_batch", "bench_plugin", "thread")];
        self.through_host("rust_batch", &one, Publish::Batch)
    }

    fn c(&self) -> Result<f64, String> {
        let one = [Instance::new("c", "bench_c", "thread")];
        self.through_host("c", &one, Publish::One)
    }

    fn fanout8(&self) -> Result<f64, String> {
        let eight: Vec<Instance> = (0..8)
            .map(|i| Instance::new(&format!("fanout{i}"), "bench_plugin", "thread"))
            .collect();
        self.through_host("fanout8", &eight, Publish::One)
    }

    fn process(&self) -> Result<f64, String> {
        let one = [Instance::new("process", "bench_plugin", "process")];
        self.through_host("process", &one, Publish::One)
    }

    /// Publish at a fixed rate through the host; the plugin records each
    /// event's latency.
    fn latency(&self) -> Result<Figures, String> {
        self.latency_figures("latency", || {
            let instance = [Instance::new("latency", "bench_plugin", "thread")];
            let host =
                Host::start(self.config(&instance, true)?).map_err(|e| format!("latency: {e}"))?;
            let sent =
                self.paced(|p| host.publish(TOPIC, p).map(drop).map_err(|e| e.to_string()))?;
            check_reports("latency", &host.shutdown(), sent.count)?;
            Ok(sent)
        })
    }

    /// `latency`'s baseline: the same pace over a channel to a thread that
    /// blocks on it and calls the handler directly. What this machine takes
    /// to wake a waiting thread bounds both.
    fn raw_latency(&self) -> Result<Figures, String> {
        self.latency_figures("raw_latency", || {
            let direct = self.direct("raw_latency", true)?;
            let sent = self.paced(|p| {
                direct
                    .tx
                    .send(vec![p])
                    .map_err(|_| "raw_latency: the consumer failed".to_owned())
            });
            direct.finish()?;
            sent
        })
    }

    /// Publish at `LATENCY_RATE` through `send`, each payload stamped with
    /// its send time; what was sent.
    fn paced(
        &self,
        mut send: impl FnMut(Box<[u8]>) -> Result<(), String>,
    ) -> Result<Tally, String> {
        let seconds = if self.quick { 0.5 } else { 2.0 };
        let count = (LATENCY_RATE as f64 * seconds) as u64;
        let interval = 1_000_000_000 / LATENCY_RATE;
        let mut sent = Tally::default();
        let start = monotonic_ns();
        for i in 0..count {
            let due = start + i * interval;
            while monotonic_ns() < due {
                std::hint::spin_loop();
            }
            let mut p = self.payloads[i as usize % self.payloads.len()];
            p[..8].copy_from_slice(&monotonic_ns().to_le_bytes());
            send(boxed(&p))?;
            sent.add(&p);
        }
        Ok(sent)
    }

    /// The medians, over the repetitions of `run` (which returns what it
    /// sent), of the latencies the bench plugin instance `name` recorded.
    fn latency_figures(
        &self,
        name: &str,
        mut run: impl FnMut() -> Result<Tally, String>,
    ) -> Result<Figures, String> {
        let (mut p50, mut p99, mut p999) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..self.reps {
            let _ = std::fs::remove_file(self.result_path(name));
            let sent = run()?;
            let result = self.verify(name, name, sent)?;
            let us = |key: &str| {
                result[key]
                    .as_f64()
                    .map(|ns| ns / 1000.0)
                    .ok_or_else(|| format!("{name}: result without {key}"))
            };
            p50.push(us("p50_ns")?);
            p99.push(us("p99_ns")?);
            p999.push(us("p999_ns")?);
        }
        Ok(Figures {
            p50_us: Some(median(p50)),
            p99_us: Some(median(p99)),
            p999_us: Some(median(p999)),
            ..Figures::default()
        })
    }

    /// From spawning the real binary to its log line saying all 50 instances
    /// run. It reads its events from an empty file, so it then exits by itself.
    fn startup(&self) -> Result<Figures, String> {
        let config = self.many_config("startup", MANY)?;
        let empty = self.scratch.join("no-events.jsonl");
        std::fs::write(&empty, "").map_err(|e| e.to_string())?;
        let ms = self.median_of(|| {
            let (host, took) = RealHost::start(&self.dir, &config, Some(&empty), MANY)?;
            host.wait_exit()?;
            Ok(took.as_secs_f64() * 1000.0)
        })?;
        Ok(Figures {
            ms: Some(ms),
            ..Figures::default()
        })
    }

    /// Resident memory of the real binary with 50 idle instances, minus with
    /// none, per instance.
    fn idle_rss(&self) -> Result<Figures, String> {
        let (fifty, none) = (
            self.many_config("idle50", MANY)?,
            self.many_config("idle0", 0)?,
        );
        let rss = |config: &Path, n: usize| -> Result<f64, String> {
            let (host, _) = RealHost::start(&self.dir, config, None, n)?;
            // Let the threads settle into their idle wait.
            std::thread::sleep(Duration::from_millis(200));
            let rss = rss_bytes(host.pid());
            host.terminate()?;
            rss
        };
        let bytes = self.median_of(|| Ok((rss(&fifty, MANY)? - rss(&none, 0)?) / MANY as f64))?;
        Ok(Figures {
            bytes: Some(bytes),
            ..Figures::default()
        })
    }

    // ---- helpers of the host scenarios ----

    /// A config for `instances` of the bench plugins, all subscribed to `TOPIC`.
    fn config(&self, instances: &[Instance], latency: bool) -> Result<Config, String> {
        self.parse(&self.config_text(instances, latency))
    }

    fn parse(&self, text: &str) -> Result<Config, String> {
        Config::parse(&self.scratch.join("plugins.toml"), text)
            .map_err(|e| format!("bench config: {e}"))
    }

    /// [`Bench::config`]'s text.
    fn config_text(&self, instances: &[Instance], latency: bool) -> String {
        let mut text = format!(
            "[host]\nplugin_dirs = [{}]\nqueue_capacity = 8192\nshutdown_timeout = \"600s\"\n",
            toml_string(&self.dir)
        );
        for instance in instances {
            text += &format!(
                "\n[[plugin]]\nname = {:?}\nlibrary = {:?}\nsubscribe = [{TOPIC:?}]\nisolation = {:?}\n[plugin.config]\nresult_path = {}\n",
                instance.name,
                instance.library,
                instance.isolation,
                toml_string(&self.result_path(&instance.name)),
            );
            if latency {
                text += "latency = true\n";
            }
        }
        text
    }

    /// Publish every payload through a host with `instances`, from the first
    /// publish until `shutdown` has drained and stopped them. Events per
    /// second; deliveries per second when there are several instances.
    fn through_host(
        &self,
        scenario: &str,
        instances: &[Instance],
        publish: Publish,
    ) -> Result<f64, String> {
        for instance in instances {
            let _ = std::fs::remove_file(self.result_path(&instance.name));
        }
        let host =
            Host::start(self.config(instances, false)?).map_err(|e| format!("{scenario}: {e}"))?;
        let started = Instant::now();
        let published = match publish {
            Publish::One => self
                .payloads
                .iter()
                .try_for_each(|p| host.publish(TOPIC, boxed(p)).map(drop)),
            Publish::Batch => self.payloads.chunks(BATCH).try_for_each(|chunk| {
                let batch = chunk.iter().map(boxed).collect();
                host.publish_batch(TOPIC, batch).map(drop)
            }),
        };
        let reports = host.shutdown();
        let took = started.elapsed();
        published.map_err(|e| format!("{scenario}: {e}"))?;
        check_reports(scenario, &reports, self.payloads.len() as u64)?;
        for instance in instances {
            self.verify(scenario, &instance.name, self.expected)?;
        }
        Ok((self.payloads.len() * instances.len()) as f64 / took.as_secs_f64())
    }

    /// A config file for `n` idle bench plugin instances (subscribed to a
    /// topic nobody publishes), for the real binary.
    fn many_config(&self, file: &str, n: usize) -> Result<PathBuf, String> {
        let mut text = format!("[host]\nplugin_dirs = [{}]\n", toml_string(&self.dir));
        for i in 0..n {
            let name = format!("{file}-{i}");
            text += &format!(
                "\n[[plugin]]\nname = {name:?}\nlibrary = \"bench_plugin\"\nsubscribe = [\"bench.never\"]\n[plugin.config]\nresult_path = {}\n",
                toml_string(&self.result_path(&name))
            );
        }
        let path = self.scratch.join(format!("{file}.toml"));
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    }
}

/// `path` as a TOML basic string.
fn toml_string(path: &Path) -> String {
    // A JSON string is a valid TOML basic string.
    Value::from(path.display().to_string()).to_string()
}

/// The host's own counts must agree: every event processed, none dropped or failed.
fn check_reports(scenario: &str, reports: &[InstanceReport], events: u64) -> Result<(), String> {
    for r in reports {
        let c = &r.counts;
        if c.processed != events || c.dropped != 0 || c.failed != 0 || r.state != "stopped" {
            return Err(format!(
                "{scenario}: `{}` ended {} with {} processed, {} dropped, {} failed of {events} events{}",
                r.name,
                r.state,
                c.processed,
                c.dropped,
                c.failed,
                r.last_error
                    .as_deref()
                    .map_or(String::new(), |e| format!(": {e}"))
            ));
        }
    }
    Ok(())
}

/// VmRSS of process `pid`, in bytes.
fn rss_bytes(pid: u32) -> Result<f64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read the status of {pid}: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse::<f64>().ok())
        .map(|kib| kib * 1024.0)
        .ok_or_else(|| format!("no VmRSS in the status of {pid}"))
}

/// The real `plughost` binary, running. Its stderr is read to the end by a
/// thread of ours (a host whose stderr is closed cannot log, and must not be
/// made to); dropping it kills the process if it still runs.
struct RealHost {
    child: Child,
    lines: crossbeam_channel::Receiver<String>,
    /// The last lines it logged, for error messages.
    tail: Vec<String>,
}

impl RealHost {
    /// Run `plughost run CONFIG [--events FILE]` and wait for its log line
    /// saying `n` instances run; returns it and the time that took.
    fn start(
        dir: &Path,
        config: &Path,
        events: Option<&Path>,
        n: usize,
    ) -> Result<(RealHost, Duration), String> {
        let mut command = Command::new(dir.join("plughost"));
        command.arg("run").arg(config);
        if let Some(events) = events {
            command.arg("--events").arg(events);
        }
        command
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", dir.join("plughost").display()))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = crossbeam_channel::unbounded();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        let mut host = RealHost {
            child,
            lines,
            tail: Vec::new(),
        };
        let needle = format!("{n} plugin instance(s) running");
        let deadline = started + PROCESS_TIMEOUT;
        loop {
            match host.lines.recv_deadline(deadline) {
                Ok(line) if line.contains(&needle) => return Ok((host, started.elapsed())),
                Ok(line) => host.remember(line),
                Err(_) => {
                    return Err(format!(
                        "plughost did not report {n} running instances: {}",
                        host.tail.join(" | ")
                    ));
                }
            }
        }
    }

    fn remember(&mut self, line: String) {
        if self.tail.len() == 5 {
            self.tail.remove(0);
        }
        self.tail.push(line);
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait until it exits by itself; it must succeed.
    fn wait_exit(mut self) -> Result<(), String> {
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        loop {
            match self.lines.recv_deadline(deadline) {
                Ok(line) => self.remember(line),
                // The log ended: it closed its stderr, so it has exited (or is about to).
                Err(RecvTimeoutError::Disconnected) => break,
                // Dropping it kills it.
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "plughost did not exit within {PROCESS_TIMEOUT:?}: {}",
                        self.tail.join(" | ")
                    ));
                }
            }
        }
        let status = self.child.wait().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!(
                "plughost exited with {status}: {}",
                self.tail.join(" | ")
            ));
        }
        Ok(())
    }

    /// SIGTERM, and wait until it has drained and exited.
    fn terminate(self) -> Result<(), String> {
        let pid = libc::pid_t::try_from(self.pid()).map_err(|e| e.to_string())?;
        // SAFETY: kill(2) has no memory-safety preconditions; `pid` is our
        // child, not yet waited for, so it cannot name another process.
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            return Err(format!(
                "cannot signal plughost: {}",
                std::io::Error::last_os_error()
            ));
        }
        self.wait_exit()
    }
}

impl Drop for RealHost {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Issue 7's target for a scenario, and whether it is met (`None`: no
/// target, or not judged because a figure it needs was not measured).
fn target(
    name: &str,
    f: &Figures,
    all: &BTreeMap<&str, Figures>,
) -> Option<(&'static str, Option<bool>)> {
    let eps = |name: &str| all.get(name).and_then(|f| f.events_per_sec);
    let ratio = |times: f64, of: &str| Some(eps(name)? >= times * eps(of)?);
    Some(match name {
        "rust" => ("≥ 0.4 × raw", ratio(0.4, "raw")),
        "rust_batch" => ("≥ 0.7 × raw", ratio(0.7, "raw")),
        // "Within 10% of rust": not slower than 0.9 × rust.
        "c" => ("≥ 0.9 × rust", ratio(0.9, "rust")),
        "fanout8" => ("≥ 0.5 × raw", ratio(0.5, "raw")),
        "process" => ("≥ 2,000,000/s", eps(name).map(|e| e >= 2_000_000.0)),
        "latency" => ("p99 < 50 µs", f.p99_us.map(|p| p < 50.0)),
        "startup" => ("< 100 ms", f.ms.map(|ms| ms < 100.0)),
        "idle_rss" => ("< 256 KiB", f.bytes.map(|b| b < 256.0 * 1024.0)),
        _ => return None,
    })
}

const USAGE: &str = "usage: plughost-bench [--quick] [--json] [--only NAME[,NAME...]]";

/// The command line.
struct Options {
    quick: bool,
    json: bool,
    /// Scenarios to run (`raw` always runs: the others' ratios need it).
    only: Option<Vec<String>>,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        quick: false,
        json: false,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--json" => options.json = true,
            "--only" => {
                let names = args.next().ok_or("--only needs scenario names")?;
                let names: Vec<String> = names.split(',').map(str::to_owned).collect();
                if let Some(unknown) = names
                    .iter()
                    .find(|n| !SCENARIOS.iter().any(|(name, _)| name == n))
                {
                    let known: Vec<&str> = SCENARIOS.iter().map(|(name, _)| *name).collect();
                    return Err(format!(
                        "unknown scenario {unknown}; the scenarios: {}",
                        known.join(", ")
                    ));
                }
                options.only = Some(names);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("error: {e}; {USAGE}");
            return ExitCode::from(2);
        }
    };
    let (quick, as_json) = (options.quick, options.json);
    let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_owned))
    else {
        eprintln!("error: cannot find the directory of this executable");
        return ExitCode::FAILURE;
    };
    // The plugins and the host come from the same build as this binary.
    let build = if dir.file_name().is_some_and(|n| n == "debug") {
        "cargo build"
    } else {
        "cargo build --release"
    };
    for needed in ["libbench_plugin.so", "libbench_c.so", "plughost"] {
        if !dir.join(needed).exists() {
            eprintln!(
                "error: {} is missing (the bench looks beside its own executable); build the workspace first: {build}",
                dir.join(needed).display()
            );
            return ExitCode::FAILURE;
        }
    }
    if cfg!(debug_assertions) && !as_json {
        eprintln!("note: a debug build; for real figures: cargo build --release");
    }
    let scratch = std::env::temp_dir().join(format!("plughost-bench-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&scratch) {
        eprintln!("error: cannot create {}: {e}", scratch.display());
        return ExitCode::FAILURE;
    }
    let n: u64 = if quick { 100_000 } else { 1_000_000 };
    let payloads: Vec<[u8; PAYLOAD]> = (0..n).map(payload).collect();
    let mut expected = Tally::default();
    payloads.iter().for_each(|p| expected.add(p));
    let bench = Bench {
        dir,
        scratch: scratch.clone(),
        payloads,
        expected,
        reps: if quick { 3 } else { 5 },
        quick,
        module: std::sync::OnceLock::new(),
    };
    let outcome = run(&bench, &options);
    let _ = std::fs::remove_dir_all(&scratch);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(bench: &Bench, options: &Options) -> Result<(), String> {
    let selected: Vec<&(&str, Scenario)> = SCENARIOS
        .iter()
        .filter(|(name, _)| {
            options.only.as_ref().is_none_or(|only| {
                let wanted = |n: &str| only.iter().any(|o| o == n);
                // The baselines of what is wanted, for its ratios.
                *name == "raw" || wanted(name) || (*name == "raw_latency" && wanted("latency"))
            })
        })
        .collect();
    let say = |what: String| {
        if !options.json {
            eprintln!("{what}");
        }
    };
    let mut samples: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for round in 1..=bench.reps {
        say(format!("throughput, round {round} of {} ...", bench.reps));
        for (name, scenario) in &selected {
            if let Scenario::Throughput(once) = scenario {
                samples.entry(name).or_default().push(once(bench)?);
            }
        }
    }
    let mut results: BTreeMap<&str, Figures> = BTreeMap::new();
    for (name, values) in samples {
        let slowest = values.iter().copied().fold(f64::INFINITY, f64::min);
        let fastest = values.iter().copied().fold(0.0, f64::max);
        let figures = Figures {
            events_per_sec: Some(median(values)),
            range: Some((slowest, fastest)),
            ..Figures::default()
        };
        results.insert(name, figures);
    }
    for (name, scenario) in &selected {
        if let Scenario::Figures(all) = scenario {
            say(format!("{name} ..."));
            results.insert(name, all(bench)?);
        }
    }
    let raw = Baselines {
        events_per_sec: results["raw"].events_per_sec.unwrap_or(f64::NAN),
        p99_us: results
            .get("raw_latency")
            .and_then(|f| f.p99_us)
            .unwrap_or(f64::NAN),
    };
    if options.json {
        println!("{}", to_json(&results, raw));
    } else {
        print_table(bench, &results, raw);
    }
    Ok(())
}

/// What the ratios are taken against, measured in the same run.
#[derive(Clone, Copy)]
struct Baselines {
    /// `raw`'s events per second.
    events_per_sec: f64,
    /// `raw_latency`'s p99.
    p99_us: f64,
}

impl Baselines {
    /// A throughput over `raw`'s, or (latency) a p99 over `raw_latency`'s.
    fn ratio(self, name: &str, f: &Figures) -> Option<f64> {
        match (f.events_per_sec, f.p99_us) {
            (Some(eps), _) => Some(eps / self.events_per_sec),
            (None, Some(p99)) if name == "latency" => Some(p99 / self.p99_us),
            _ => None,
        }
    }
}

fn to_json(results: &BTreeMap<&str, Figures>, raw: Baselines) -> Value {
    let round = |v: f64, places: i32| {
        let scale = 10f64.powi(places);
        (v * scale).round() / scale
    };
    let mut scenarios = serde_json::Map::new();
    for (name, f) in results {
        let mut entry = serde_json::Map::new();
        if let Some(eps) = f.events_per_sec {
            entry.insert("events_per_sec".into(), json!(eps.round()));
        }
        if let Some(ratio) = raw.ratio(name, f) {
            entry.insert("ratio_to_raw".into(), json!(round(ratio, 3)));
        }
        for (key, value, places) in [
            ("p50_us", f.p50_us, 1),
            ("p99_us", f.p99_us, 1),
            ("p999_us", f.p999_us, 1),
            ("ms", f.ms, 1),
            ("bytes", f.bytes, 0),
        ] {
            if let Some(v) = value {
                entry.insert(key.into(), json!(round(v, places)));
            }
        }
        scenarios.insert((*name).to_owned(), Value::Object(entry));
    }
    json!({ "scenarios": scenarios })
}

fn print_table(bench: &Bench, results: &BTreeMap<&str, Figures>, raw: Baselines) {
    let row = |cells: [&str; 10]| {
        let [name, eps, range, ratio, p50, p99, p999, ms, bytes, target] = cells;
        println!(
            "{name:<11} {eps:>11} {range:>13} {ratio:>6} {p50:>7} {p99:>7} {p999:>8} {ms:>6} {bytes:>7}  {target}"
        );
    };
    row([
        "scenario",
        "events/s",
        "runs (M/s)",
        "× raw",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "ms",
        "bytes",
        "target (issue 7)",
    ]);
    let show = |v: Option<f64>, places: usize| v.map_or(String::new(), |v| format!("{v:.places$}"));
    for (name, f) in SCENARIOS
        .iter()
        .filter_map(|(name, _)| Some((*name, results.get(name)?)))
    {
        let verdict = match target(name, f, results) {
            None => String::new(),
            Some((goal, None)) => goal.to_owned(),
            Some((goal, Some(true))) => format!("{goal}: met"),
            Some((goal, Some(false))) => format!("{goal}: MISSED"),
        };
        let range = f.range.map_or(String::new(), |(slowest, fastest)| {
            format!("{:.2}–{:.2}", slowest / 1e6, fastest / 1e6)
        });
        row([
            name,
            &show(f.events_per_sec, 0),
            &range,
            &show(raw.ratio(name, f), 2),
            &show(f.p50_us, 1),
            &show(f.p99_us, 1),
            &show(f.p999_us, 1),
            &show(f.ms, 1),
            &show(f.bytes, 0),
            &verdict,
        ]);
    }
    println!(
        "\n{} events of {PAYLOAD} bytes per throughput run; each figure is the median of {} runs \
         (runs: slowest–fastest); fanout8 counts deliveries (8 per event); latency's × raw is its \
         p99 over raw_latency's (a thread woken by a channel: this machine's own bound). Every \
         checksum held.",
        bench.payloads.len(),
        bench.reps
    );
}
