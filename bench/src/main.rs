//! `plughost-bench`: how fast events move into plugins, against the best this
//! machine does without a host, measured in one run.
//!
//! `raw` is the baseline: a crossbeam channel carrying batches of 256
//! payloads to one thread that calls the bench plugin's handler through its
//! abi_stable module directly. Every other scenario goes through the public
//! `plughost::Host` API (or the real `plughost` binary) and reports its ratio
//! to `raw`. Each figure is the median of several runs; every run's checksum
//! (count and FNV-1a sum of all payloads, computed by the plugin) must match,
//! or the bench fails. Timings are printed, never asserted.

use abi_stable::library::lib_header_from_path;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RArc, ROk, RResult, RSlice, RStr, RString};
use plughost::{Config, Host};
use plughost_api::LogLevel;
use plughost_api::abi::{EventRef, HostApi, HostApi_TO, PluginModuleRef};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const PAYLOAD: usize = 64;
const TOPIC: &str = "bench.event";
const BATCH: usize = 256;

/// (instance name, library, isolation).
type Instance<'a> = (&'a str, &'a str, &'a str);

struct Run {
    dir: PathBuf,
    scratch: PathBuf,
    payloads: Vec<[u8; PAYLOAD]>,
    expected: (u64, u64),
    reps: usize,
    quick: bool,
}

#[derive(Default)]
struct Figures {
    events_per_sec: Option<f64>,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    p999_us: Option<f64>,
    ms: Option<f64>,
    bytes: Option<f64>,
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn payload(i: u64) -> [u8; PAYLOAD] {
    let mut p = [0u8; PAYLOAD];
    p[..8].copy_from_slice(&i.to_le_bytes());
    for (j, byte) in p.iter_mut().enumerate().skip(8) {
        *byte = (i as usize).wrapping_mul(31).wrapping_add(j) as u8;
    }
    p
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

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The plugin's result file: (count, checksum, latencies).
fn result(path: &Path) -> Result<(u64, u64, Vec<u64>), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("no result at {}: {e}", path.display()))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let latencies = value["latencies_ns"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    Ok((
        value["count"].as_u64().unwrap_or(0),
        value["checksum"].as_u64().unwrap_or(0),
        latencies,
    ))
}

fn check(name: &str, got: (u64, u64), want: (u64, u64)) -> Result<(), String> {
    if got != want {
        return Err(format!(
            "{name}: checksum mismatch: plugin saw {} events (checksum {}), expected {} ({})",
            got.0, got.1, want.0, want.1
        ));
    }
    Ok(())
}

/// A host that accepts everything, for the raw baseline.
struct NullHost;

impl HostApi for NullHost {
    fn instance_name(&self) -> RStr<'_> {
        RStr::from_str("raw")
    }
    fn publish(&self, _topic: RStr<'_>, _payload: RSlice<'_, u8>) -> RResult<(), RString> {
        ROk(())
    }
    fn log(&self, _level: LogLevel, _message: RStr<'_>) {}
}

impl Run {
    fn library(&self, name: &str) -> PathBuf {
        self.dir.join(format!("lib{name}.so"))
    }

    fn result_path(&self, name: &str) -> PathBuf {
        self.scratch.join(format!("{name}.json"))
    }

    /// The baseline: batches over a channel, handler called directly.
    fn raw(&self) -> Result<f64, String> {
        let path = self.result_path("raw");
        let module = lib_header_from_path(&self.library("bench_plugin"))
            .and_then(|h| h.init_root_module::<PluginModuleRef>())
            .map_err(|e| e.to_string())?;
        let config = json!({"result_path": path}).to_string();
        let (tx, rx) = crossbeam_channel::bounded::<Vec<Box<[u8]>>>(64);
        let consumer = std::thread::spawn(move || {
            let host = HostApi_TO::from_ptr(RArc::new(NullHost), TD_Opaque);
            let mut plugin = (module.create())(RStr::from_str(&config), host)
                .into_result()
                .expect("create");
            let mut id = 0;
            for batch in rx {
                for payload in batch {
                    id += 1;
                    let event = EventRef {
                        id,
                        timestamp_ms: 0,
                        topic: RStr::from_str(TOPIC),
                        payload: RSlice::from_slice(&payload),
                        source: RStr::from_str("host"),
                    };
                    let _ = plugin.on_event(event);
                }
            }
            let _ = plugin.stop();
        });
        let started = Instant::now();
        for chunk in self.payloads.chunks(BATCH) {
            let batch: Vec<Box<[u8]>> = chunk
                .iter()
                .map(|p| p.to_vec().into_boxed_slice())
                .collect();
            tx.send(batch).map_err(|e| e.to_string())?;
        }
        drop(tx);
        consumer
            .join()
            .map_err(|_| "raw consumer panicked".to_owned())?;
        let took = started.elapsed();
        let (count, checksum, _) = result(&path)?;
        check("raw", (count, checksum), self.expected)?;
        Ok(self.payloads.len() as f64 / took.as_secs_f64())
    }

    fn config(&self, instances: &[Instance<'_>], latency: bool) -> Config {
        let mut text = format!(
            "[host]\nplugin_dirs = [{:?}]\nqueue_capacity = 8192\nshutdown_timeout = \"600s\"\n",
            self.dir.display().to_string()
        );
        for (name, library, isolation) in instances {
            text += &format!(
                "[[plugin]]\nname = {name:?}\nlibrary = {library:?}\nsubscribe = [{TOPIC:?}]\nisolation = {isolation:?}\n[plugin.config]\nresult_path = {:?}\n{}",
                self.result_path(name).display().to_string(),
                if latency { "latency = true\n" } else { "" }
            );
        }
        Config::parse(&self.scratch.join("plugins.toml"), &text).expect("bench config")
    }

    /// Publish every payload through a host with `instances`; events per second
    /// (deliveries per second for several instances), from first publish to drained.
    fn through_host(
        &self,
        scenario: &str,
        instances: &[Instance<'_>],
        batched: bool,
    ) -> Result<f64, String> {
        for (name, _, _) in instances {
            let _ = std::fs::remove_file(self.result_path(name));
        }
        let host = Host::start(self.config(instances, false)).map_err(|e| e.to_string())?;
        let started = Instant::now();
        if batched {
            for chunk in self.payloads.chunks(BATCH) {
                let batch: Vec<Box<[u8]>> = chunk
                    .iter()
                    .map(|p| p.to_vec().into_boxed_slice())
                    .collect();
                host.publish_batch(TOPIC, batch)
                    .map_err(|e| e.to_string())?;
            }
        } else {
            for p in &self.payloads {
                host.publish(TOPIC, p.to_vec()).map_err(|e| e.to_string())?;
            }
        }
        host.shutdown();
        let took = started.elapsed();
        for (name, _, _) in instances {
            let (count, checksum, _) = result(&self.result_path(name))?;
            check(scenario, (count, checksum), self.expected)?;
        }
        Ok((self.payloads.len() * instances.len()) as f64 / took.as_secs_f64())
    }

    /// Publish at a fixed 100,000 events/s; the plugin records each event's latency.
    fn latency(&self) -> Result<Figures, String> {
        let _ = std::fs::remove_file(self.result_path("lat"));
        let host = Host::start(self.config(&[("lat", "bench_plugin", "thread")], true))
            .map_err(|e| e.to_string())?;
        let count = if self.quick { 50_000 } else { 300_000 };
        let interval = 10_000u64; // ns: 100,000 events/s
        let start = monotonic_ns();
        for i in 0..count {
            let due = start + i * interval;
            while monotonic_ns() < due {
                std::hint::spin_loop();
            }
            let mut p = payload(i);
            p[..8].copy_from_slice(&monotonic_ns().to_le_bytes());
            host.publish(TOPIC, p.to_vec()).map_err(|e| e.to_string())?;
        }
        host.shutdown();
        let (seen, _, mut latencies) = result(&self.result_path("lat"))?;
        if seen != count || latencies.len() as u64 != count {
            return Err(format!("latency: the plugin saw {seen} of {count} events"));
        }
        latencies.sort_unstable();
        let at = |q: f64| {
            latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)] as f64
                / 1000.0
        };
        Ok(Figures {
            p50_us: Some(at(0.50)),
            p99_us: Some(at(0.99)),
            p999_us: Some(at(0.999)),
            ..Figures::default()
        })
    }

    fn write_many(&self, file: &str, n: usize) -> PathBuf {
        let mut text = format!(
            "[host]\nplugin_dirs = [{:?}]\n",
            self.dir.display().to_string()
        );
        for i in 0..n {
            text += &format!(
                "[[plugin]]\nname = \"idle{i}\"\nlibrary = \"bench_plugin\"\nsubscribe = [\"never\"]\n[plugin.config]\nresult_path = {:?}\n",
                self.result_path(&format!("idle{i}")).display().to_string()
            );
        }
        let path = self.scratch.join(file);
        std::fs::write(&path, text).expect("write config");
        path
    }

    /// Start the real binary on `config`; wait for "N plugin instance(s) running".
    /// Returns the child, still running, and the time it took.
    fn spawn_host(
        &self,
        config: &Path,
        n: usize,
    ) -> Result<(std::process::Child, Duration), String> {
        let started = Instant::now();
        let mut child = Command::new(self.dir.join("plughost"))
            .args(["run", config.to_str().unwrap_or_default()])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run plughost: {e}"))?;
        let stderr = child.stderr.take().expect("stderr");
        let needle = format!("{n} plugin instance(s) running");
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains(&needle) {
                return Ok((child, started.elapsed()));
            }
        }
        Err("plughost ended before its instances ran".to_owned())
    }

    fn stop(child: &mut std::process::Child) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let _ = child.wait();
    }

    fn startup(&self) -> Result<f64, String> {
        let config = self.write_many("fifty.toml", 50);
        let mut times = Vec::new();
        for _ in 0..self.reps {
            let (mut child, took) = self.spawn_host(&config, 50)?;
            Self::stop(&mut child);
            times.push(took.as_secs_f64() * 1000.0);
        }
        Ok(median(times))
    }

    fn rss_kib(pid: u32) -> Result<f64, String> {
        let status =
            std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .ok_or("no VmRSS")?;
        line.split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| "bad VmRSS".to_owned())
    }

    fn idle_rss(&self) -> Result<f64, String> {
        let (fifty, none) = (
            self.write_many("fifty.toml", 50),
            self.write_many("none.toml", 0),
        );
        let mut per_instance = Vec::new();
        for _ in 0..self.reps {
            let (mut child, _) = self.spawn_host(&none, 0)?;
            std::thread::sleep(Duration::from_millis(100));
            let base = Self::rss_kib(child.id())?;
            Self::stop(&mut child);
            let (mut child, _) = self.spawn_host(&fifty, 50)?;
            std::thread::sleep(Duration::from_millis(100));
            let loaded = Self::rss_kib(child.id())?;
            Self::stop(&mut child);
            per_instance.push((loaded - base) * 1024.0 / 50.0);
        }
        Ok(median(per_instance))
    }

    fn median_of(&self, mut scenario: impl FnMut() -> Result<f64, String>) -> Result<f64, String> {
        let mut values = Vec::new();
        for _ in 0..self.reps {
            values.push(scenario()?);
        }
        Ok(median(values))
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (quick, as_json) = (
        args.iter().any(|a| a == "--quick"),
        args.iter().any(|a| a == "--json"),
    );
    if let Some(unknown) = args
        .iter()
        .find(|a| !["--quick", "--json"].contains(&a.as_str()))
    {
        eprintln!("error: unknown argument {unknown}; usage: plughost-bench [--quick] [--json]");
        return ExitCode::from(2);
    }
    let dir = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_owned))
        .unwrap_or_default();
    for needed in ["libbench_plugin.so", "libbench_c.so", "plughost"] {
        if !dir.join(needed).exists() {
            eprintln!(
                "error: {} is missing; build it first: cargo build --release -p plughost -p bench-plugin -p plughost-bench",
                dir.join(needed).display()
            );
            return ExitCode::FAILURE;
        }
    }
    let scratch = std::env::temp_dir().join(format!("plughost-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&scratch);
    let n: u64 = if quick { 100_000 } else { 1_000_000 };
    let payloads: Vec<[u8; PAYLOAD]> = (0..n).map(payload).collect();
    let expected = (
        n,
        payloads
            .iter()
            .fold(0u64, |sum, p| sum.wrapping_add(fnv1a(p))),
    );
    let run = Run {
        dir,
        scratch: scratch.clone(),
        payloads,
        expected,
        reps: if quick { 3 } else { 5 },
        quick,
    };
    let outcome = measure(&run, as_json);
    let _ = std::fs::remove_dir_all(&scratch);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn measure(run: &Run, as_json: bool) -> Result<(), String> {
    let mut scenarios: BTreeMap<&str, Figures> = BTreeMap::new();
    let say = |name: &str| {
        if !as_json {
            eprintln!("measuring {name} ...");
        }
    };
    say("raw");
    let raw = run.median_of(|| run.raw())?;
    let throughput: [(&str, &[Instance<'_>], bool); 5] = [
        ("rust", &[("r", "bench_plugin", "thread")], false),
        ("rust_batch", &[("r", "bench_plugin", "thread")], true),
        ("c", &[("c", "bench_c", "thread")], false),
        (
            "fanout8",
            &[
                ("f0", "bench_plugin", "thread"),
                ("f1", "bench_plugin", "thread"),
                ("f2", "bench_plugin", "thread"),
                ("f3", "bench_plugin", "thread"),
                ("f4", "bench_plugin", "thread"),
                ("f5", "bench_plugin", "thread"),
                ("f6", "bench_plugin", "thread"),
                ("f7", "bench_plugin", "thread"),
            ],
            true,
        ),
        ("process", &[("p", "bench_plugin", "process")], true),
    ];
    scenarios.insert(
        "raw",
        Figures {
            events_per_sec: Some(raw),
            ..Figures::default()
        },
    );
    for (name, instances, batched) in throughput {
        say(name);
        let eps = run.median_of(|| run.through_host(name, instances, batched))?;
        scenarios.insert(
            name,
            Figures {
                events_per_sec: Some(eps),
                ..Figures::default()
            },
        );
    }
    say("latency");
    scenarios.insert("latency", run.latency()?);
    say("startup");
    scenarios.insert(
        "startup",
        Figures {
            ms: Some(run.startup()?),
            ..Figures::default()
        },
    );
    say("idle_rss");
    scenarios.insert(
        "idle_rss",
        Figures {
            bytes: Some(run.idle_rss()?),
            ..Figures::default()
        },
    );

    if as_json {
        let mut out = serde_json::Map::new();
        for (name, f) in &scenarios {
            let mut entry = serde_json::Map::new();
            if let Some(eps) = f.events_per_sec {
                entry.insert("events_per_sec".into(), json!(eps.round()));
                entry.insert(
                    "ratio_to_raw".into(),
                    json!((eps / raw * 1000.0).round() / 1000.0),
                );
            }
            for (key, value) in [
                ("p50_us", f.p50_us),
                ("p99_us", f.p99_us),
                ("p999_us", f.p999_us),
                ("ms", f.ms),
                ("bytes", f.bytes),
            ] {
                if let Some(v) = value {
                    entry.insert(key.into(), json!((v * 10.0).round() / 10.0));
                }
            }
            out.insert((*name).to_owned(), Value::Object(entry));
        }
        println!("{}", json!({"scenarios": out}));
        return Ok(());
    }
    println!(
        "{:<11} {:>14} {:>7} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "scenario", "events/s", "x raw", "p50 µs", "p99 µs", "p99.9 µs", "ms", "bytes"
    );
    let show =
        |v: Option<f64>, decimals: usize| v.map_or(String::new(), |v| format!("{v:.decimals$}"));
    for name in [
        "raw",
        "rust",
        "rust_batch",
        "c",
        "fanout8",
        "process",
        "latency",
        "startup",
        "idle_rss",
    ] {
        let f = &scenarios[name];
        println!(
            "{:<11} {:>14} {:>7} {:>9} {:>9} {:>9} {:>9} {:>10}",
            name,
            show(f.events_per_sec, 0),
            show(f.events_per_sec.map(|e| e / raw), 2),
            show(f.p50_us, 1),
            show(f.p99_us, 1),
            show(f.p999_us, 1),
            show(f.ms, 1),
            show(f.bytes, 0)
        );
    }
    println!("(fanout8 counts deliveries: 8 per event. Every scenario's checksum held.)");
    Ok(())
}
