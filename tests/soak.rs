//! Soak: producers at full speed against instances of every overflow policy
//! while the host reloads, a plugin panics and restarts, and a process
//! plugin's child is killed with SIGKILL every few seconds. At the end every
//! instance's counts balance, the counts over all subscribers add up to
//! what was routed, and the host's memory has not grown. Bounded: about 20 s.

mod common;

use common::*;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long the load runs after the warm-up.
const SOAK: Duration = Duration::from_secs(15);
const WARM_UP: Duration = Duration::from_secs(3);

/// Instance -> the topics (of `soak.a`, `soak.b`) it subscribes to.
const INSTANCES: [(&str, &[&str]); 5] = [
    ("oldest", &["soak.a", "soak.b"]),
    ("newest", &["soak.a"]),
    ("blocker", &["soak.a", "soak.b"]),
    ("flaky", &["soak.b"]),
    ("proc", &["soak.a", "soak.b"]),
];

/// The config, in one of two generations: each reload changes `oldest`'s
/// plugin config (restarted in place) and `newest`'s capacity (a new mailbox).
fn config(s: &Scratch, socket: &std::path::Path, generation: u64) -> std::path::PathBuf {
    let flip = generation % 2 == 1;
    Config::new()
        .shutdown_timeout("30s")
        .control_socket(socket)
        .status(Status::any_port().ingest(true))
        .plugin(
            Plugin::new("oldest", "chaos")
                .subscribe(["soak.>"])
                .queue_capacity(64)
                .overflow(Overflow::DropOldest)
                .config(serde_json::json!({"ready": flip})),
        )
        .plugin(
            Plugin::new("newest", "chaos")
                .subscribe(["soak.a"])
                .queue_capacity(if flip { 32 } else { 16 })
                .overflow(Overflow::DropNewest),
        )
        .plugin(
            Plugin::new("blocker", "chaos")
                .subscribe(["soak.>"])
                .queue_capacity(1024)
                .overflow(Overflow::Block),
        )
        .plugin(
            Plugin::new("flaky", "chaos")
                .subscribe(["soak.b"])
                .overflow(Overflow::DropOldest)
                .restart(Restart::OnFailure)
                .max_restarts(1000)
                .restart_window("1s")
                .config(serde_json::json!({"panic_every": 20000})),
        )
        .plugin(
            Plugin::new("proc", "chaos")
                .isolation(Isolation::Process)
                .subscribe(["soak.>"])
                .overflow(Overflow::DropOldest)
                .restart(Restart::OnFailure)
                .max_restarts(1000)
                .restart_window("1s"),
        )
        .write(s)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("host status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// The host's child processes (process-isolated plugins).
fn children(parent: u32) -> Vec<i32> {
    let out = std::process::Command::new("pgrep")
        .args(["-P", &parent.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[test]
fn accounting_holds_and_memory_stays_flat_under_load_reloads_panics_and_kill_9() {
    let s = Scratch::new("soak");
    let socket = s.path("host.sock");
    let path = config(&s, &socket, 0);
    let mut host = Running::start(&path);
    let address = host.status_address();
    let pid = host.child.id();
    let stop = Arc::new(AtomicBool::new(false));
    // Events published, per topic: [soak.a, soak.b].
    let published = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);

    // Producer 1: stdin, flat out, both topics.
    let mut stdin = host.stdin.take().unwrap();
    let stdin_producer = {
        let (stop, published) = (stop.clone(), published.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            let mut chunk = String::new();
            while !stop.load(Ordering::Acquire) {
                chunk.clear();
                for _ in 0..500 {
                    let topic = usize::from(n.is_multiple_of(3));
                    chunk += &format!(
                        "{{\"topic\":\"soak.{}\",\"payload\":{n}}}\n",
                        ["a", "b"][topic]
                    );
                    published[topic].fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
                stdin.write_all(chunk.as_bytes()).expect("write events");
            }
            stdin
        })
    };
    // Producer 2: HTTP ingest, flat out, soak.b.
    let http_producer = {
        let (stop, published, address) = (stop.clone(), published.clone(), address.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                let (status, body) = http(&address, "POST", "/events/soak.b", "{\"via\":\"http\"}");
                assert_eq!(status, 200, "{body}");
                published[1].fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    std::thread::sleep(WARM_UP);
    let warm = rss_kib(pid);
    let started = Instant::now();
    let (mut reloads, mut kills) = (0u64, 0u64);
    let mut next_reload = started + Duration::from_secs(3);
    let mut next_kill = started + Duration::from_secs(2);
    while started.elapsed() < SOAK {
        let now = Instant::now();
        if now >= next_kill {
            for child in children(pid) {
                // SAFETY: kill(2) with plain integers on the host's child.
                unsafe { libc::kill(child, libc::SIGKILL) };
                kills += 1;
            }
            next_kill = now + Duration::from_secs(2);
        }
        if now >= next_reload {
            reloads += 1;
            config(&s, &socket, reloads);
            let (code, text, err) = ctl(&socket, &["reload"]);
            assert_eq!(code, 0, "reload {reloads}: {text}{err}");
            assert_eq!(
                text,
                "added: -\nremoved: -\nrestarted: oldest, newest\nunchanged: blocker, flaky, proc\n",
                "reload {reloads}"
            );
            next_reload = now + Duration::from_secs(3);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Release);
    let stdin = stdin_producer.join().expect("stdin producer");
    http_producer.join().expect("http producer");
    // Let the queues drain before measuring memory again.
    std::thread::sleep(Duration::from_secs(1));
    let end = rss_kib(pid);
    drop(stdin);
    let ending = Instant::now();
    let (out, err) = host.wait(Duration::from_secs(60));
    eprintln!("soak: the host took {:?} to end", ending.elapsed());
    let err = err.join("\n");
    assert!(out.status.success(), "{err}");
    assert_no_raw_panic(&err);
    assert!(
        kills >= 5 && reloads >= 4,
        "{kills} kills, {reloads} reloads"
    );
    assert!(
        err.contains("chaos: told to panic on every 20000th event"),
        "the panicking plugin panicked"
    );

    let published = [
        published[0].load(Ordering::Acquire),
        published[1].load(Ordering::Acquire),
    ];
    let mut routed = 0;
    let mut received = 0;
    for (name, topics) in INSTANCES {
        let row = summary_row(&out, name);
        assert_accounted(&row);
        assert_eq!(row.state, "stopped", "{name}: {row:?}");
        routed += topics
            .iter()
            .map(|t| published[if *t == "soak.a" { 0 } else { 1 }])
            .sum::<u64>();
        received += row.received;
    }
    assert_eq!(
        received, routed,
        "every event routed to each of its subscribers, once"
    );
    let row = |name| summary_row(&out, name);
    assert!(
        row("oldest").dropped > 0 && row("newest").dropped > 0,
        "the drop policies dropped"
    );
    assert_eq!(row("blocker").dropped, 0, "block drops nothing");
    assert!(row("flaky").failed > 0 && row("proc").dropped > 0);
    let grown = end as f64 / warm as f64;
    assert!(
        (0.9..=1.1).contains(&grown),
        "RSS {warm} KiB after warm-up, {end} KiB at the end ({:+.1}%)",
        (grown - 1.0) * 100.0
    );
    eprintln!(
        "soak: published {published:?}, routed {routed}, {reloads} reloads, {kills} kills, RSS {warm} -> {end} KiB"
    );
}
