//! Publishing from a plugin's own threads (`Context::publisher`, a C
//! plugin's host table from a pthread): as the instance, exactly once, in
//! order per thread, never back to the instance itself, and refused (never
//! routed, never a crash) once the instance has ended.

mod common;

use common::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Wait until `path` has at least `lines` lines (a minute at most).
fn wait_for_lines(path: &Path, lines: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = std::fs::read_to_string(path)
            .map(|text| text.lines().count())
            .unwrap_or(0);
        if seen >= lines {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} has {seen} lines, not {lines}, after a minute",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Wait until the logger of `s` wrote `count` numbered events (`n`), the
/// late ones of an outliving thread aside (a minute at most).
fn wait_for_numbered(s: &Scratch, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = s
            .log_lines("log.jsonl")
            .iter()
            .filter(|l| l["payload"]["n"].is_u64())
            .count();
        if seen >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{seen} numbered events, not {count}, after a minute"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What each publishing thread's events carried, in the order they arrived.
fn per_thread(lines: &[Value], source: &str) -> BTreeMap<u64, Vec<Value>> {
    let mut threads: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
    for line in lines.iter().filter(|l| l["source"] == source) {
        let payload = &line["payload"];
        let thread = payload["thread"].as_u64().expect("a thread number");
        threads.entry(thread).or_default().push(payload.clone());
    }
    threads
}

fn numbered(thread: u64, count: u64) -> Vec<Value> {
    (0..count)
        .map(|n| json!({"thread": thread, "n": n}))
        .collect()
}

/// Eight threads of a Rust plugin publish 2,000 events each through one
/// `Publisher` each, at once, while the instance itself is idle: a logger
/// gets all 16,000 while the host runs, each thread's in order, with the
/// instance as their source; the instance, subscribed to the same topic,
/// gets none of them (no echo).
#[test]
fn eight_plugin_threads_publish_as_the_instance_exactly_once_in_order() {
    for isolation in [Isolation::Thread, Isolation::Process] {
        let s = Scratch::new(&format!("publisher-8-{}", isolation.as_str()));
        let log = s.path("log.jsonl");
        let config = Config::new()
            .plugin(logger("log", &log).subscribe(["made"]))
            .plugin(
                Plugin::new("maker", "chaos")
                    .subscribe(["made"])
                    .isolation(isolation)
                    .config(json!({
                        "publisher_threads": 8,
                        "publisher_topic": "made",
                        "publisher_count": 2000,
                    })),
            )
            .write(&s);
        let mut host = Running::start(&config);
        // Delivered while the host runs, not at its stop.
        wait_for_lines(&log, 16_000);
        drop(host.stdin.take());
        let (out, err) = host.wait(Duration::from_secs(60));
        assert!(out.status.success(), "{}", err.join("\n"));
        let lines = s.log_lines("log.jsonl");
        assert_eq!(lines.len(), 16_000, "{isolation:?}");
        let threads = per_thread(&lines, "maker");
        assert_eq!(threads.len(), 8, "{isolation:?}");
        for (thread, payloads) in threads {
            assert_eq!(payloads, numbered(thread, 2000), "{isolation:?}");
        }
        let maker = summary_row(&out, "maker");
        assert_eq!(maker.received, 0, "no echo: {maker:?} ({isolation:?})");
        let log = summary_row(&out, "log");
        assert_eq!((log.received, log.processed), (16_000, 16_000));
    }
}

/// A careless plugin whose threads outlive its instance: after `ctl
/// restart` (whose new instance is a new one, with its own threads), and
/// after `ctl stop`, every publish through the old instance's publishers is
/// refused with a clear error, none is routed, and the host goes on.
#[test]
fn a_publisher_that_outlives_its_instance_is_refused_after_restart_and_after_stop() {
    let s = Scratch::new("publisher-outlive");
    let (log, refusals, socket) = (
        s.path("log.jsonl"),
        s.path("refusals.txt"),
        s.path("host.sock"),
    );
    let config = Config::new()
        .control_socket(&socket)
        .plugin(logger("log", &log).subscribe(["made"]))
        .plugin(
            Plugin::new("maker", "chaos")
                .subscribe(["made"])
                .config(json!({
                    "publisher_threads": 8,
                    "publisher_topic": "made",
                    "publisher_count": 10,
                    "publisher_outlive": true,
                    "publisher_refusal_path": refusals,
                })),
        )
        .write(&s);
    let mut host = Running::start(&config);
    wait_for_numbered(&s, 80);
    // Restarted: the first instance's 8 threads are refused; the new
    // instance starts 8 of its own.
    assert_eq!(ctl(&socket, &["restart", "maker"]).0, 0);
    wait_for_lines(&refusals, 8);
    wait_for_numbered(&s, 160);
    // Stopped: the second instance's 8 are refused too.
    assert_eq!(ctl(&socket, &["stop", "maker"]).0, 0);
    wait_for_lines(&refusals, 16);
    let routed = s.log_lines("log.jsonl").len();
    let text = std::fs::read_to_string(&refusals).unwrap();
    assert_eq!(text.lines().count(), 16);
    for line in text.lines() {
        assert_eq!(
            line,
            "instance `maker` has ended: its publishers publish no more"
        );
    }
    // Nothing more reaches the logger under the ended instance's name.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(s.log_lines("log.jsonl").len(), routed);
    drop(host.stdin.take());
    let (out, err) = host.wait(Duration::from_secs(60));
    let err = err.join("\n");
    assert!(out.status.success(), "{err}");
    assert_no_raw_panic(&err);
    let threads = per_thread(&s.log_lines("log.jsonl"), "maker");
    assert_eq!(threads.len(), 8);
    for (thread, payloads) in threads {
        // Both instances' thread `thread`: 10 numbered events each, in
        // order, and late ones until it was refused.
        let numbered: Vec<Value> = payloads.into_iter().filter(|p| p["n"].is_u64()).collect();
        let twice: Vec<Value> = numbered_twice(thread, 10);
        assert_eq!(numbered, twice, "thread {thread}");
    }
    assert_eq!(summary_row(&out, "log").dropped, 0);
}

fn numbered_twice(thread: u64, count: u64) -> Vec<Value> {
    let mut both = numbered(thread, count);
    both.extend(numbered(thread, count));
    both
}

/// The processes that `parent` started.
fn children_of(parent: u32) -> Vec<i32> {
    let tasks = std::fs::read_dir(format!("/proc/{parent}/task")).unwrap();
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|pid| pid.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// A process plugin's publisher threads live in its process: kill -9 of
/// the child ends them with it (nothing more is published as it), the
/// restarted child starts its own, and they publish again, as the instance.
#[test]
fn a_process_plugin_s_publisher_threads_end_with_its_child_and_its_restart_publishes_again() {
    let s = Scratch::new("publisher-kill-9");
    let log = s.path("log.jsonl");
    let config = Config::new()
        .plugin(logger("log", &log).subscribe(["made"]))
        .plugin(
            Plugin::new("maker", "chaos")
                .subscribe(["made"])
                .isolation(Isolation::Process)
                .restart(Restart::OnFailure)
                .config(json!({
                    "publisher_threads": 2,
                    "publisher_topic": "made",
                    "publisher_count": 10,
                    "publisher_outlive": true,
                })),
        )
        .write(&s);
    let mut host = Running::start(&config);
    wait_for_numbered(&s, 20);
    let first = children_of(host.child.id());
    assert_eq!(first.len(), 1, "one child process");
    // SAFETY: kill(2) with plain integers on our test's grandchild.
    assert_eq!(unsafe { libc::kill(first[0], libc::SIGKILL) }, 0);
    host.wait_for_stderr("its process was killed by SIGKILL");
    // The restarted child's two threads: 10 numbered events each again.
    wait_for_numbered(&s, 40);
    drop(host.stdin.take());
    let (out, err) = host.wait(Duration::from_secs(60));
    assert!(out.status.success(), "{}", err.join("\n"));
    for (thread, payloads) in per_thread(&s.log_lines("log.jsonl"), "maker") {
        let numbered: Vec<Value> = payloads.into_iter().filter(|p| p["n"].is_u64()).collect();
        assert_eq!(numbered, numbered_twice(thread, 10), "thread {thread}");
    }
    let row = summary_row(&out, "log");
    assert_eq!(row.received, row.processed);
}

/// The host's refusals apply to a `Publisher` as to `Context::publish`, in
/// both isolation modes: a reserved topic from a plugin's thread is refused
/// with the reason (and counted), and nothing is published as the plugin.
#[test]
fn a_publisher_thread_is_refused_a_reserved_topic() {
    for isolation in [Isolation::Thread, Isolation::Process] {
        let s = Scratch::new(&format!("publisher-reserved-{}", isolation.as_str()));
        let refusals = s.path("refusals.txt");
        let config = Config::new()
            .plugin(logger("log", &s.path("log.jsonl")).subscribe([">"]))
            .plugin(
                Plugin::new("maker", "chaos")
                    .isolation(isolation)
                    .config(json!({
                        "publisher_threads": 1,
                        "publisher_topic": "plughost.plugin.failed",
                        "publisher_count": 1,
                        "publisher_refusal_path": refusals,
                    })),
            )
            .write(&s);
        let mut host = Running::start(&config);
        wait_for_lines(&refusals, 1);
        assert!(
            std::fs::read_to_string(&refusals).unwrap().starts_with(
                "topic `plughost.plugin.failed` is reserved: only the host publishes on plughost.>"
            ),
            "{isolation:?}"
        );
        drop(host.stdin.take());
        let (out, err) = host.wait(Duration::from_secs(60));
        assert!(out.status.success(), "{}", err.join("\n"));
        let lines = s.log_lines("log.jsonl");
        assert!(
            lines.iter().all(|l| l["source"] != "maker"),
            "nothing published as maker ({isolation:?}): {lines:?}"
        );
    }
}

/// A C plugin publishing from four pthreads of its own through the host
/// table's `publish` (C ABI 1.3: callable from any thread between `create`
/// and the return of `destroy`), in a thread and in its own process: every
/// event arrives once, in order per thread, as the instance, and not back
/// to it.
#[test]
fn a_c_plugin_publishes_from_its_own_pthreads_as_the_instance() {
    for isolation in [Isolation::Thread, Isolation::Process] {
        let s = Scratch::new(&format!("publisher-c-{}", isolation.as_str()));
        let log = s.path("log.jsonl");
        let config = Config::new()
            .plugin(logger("log", &log).subscribe(["made", "echo.>"]))
            .plugin(
                Plugin::new("pub_c", "echo_c")
                    .subscribe(["made"])
                    .isolation(isolation)
                    .config(json!({"threads": 4, "thread_topic": "made", "thread_count": 1000})),
            )
            .write(&s);
        let mut host = Running::start(&config);
        wait_for_lines(&log, 4000);
        drop(host.stdin.take());
        let (out, err) = host.wait(Duration::from_secs(60));
        assert!(out.status.success(), "{}", err.join("\n"));
        let lines = s.log_lines("log.jsonl");
        assert_eq!(lines.len(), 4000, "nothing echoed back ({isolation:?})");
        let threads = per_thread(&lines, "pub_c");
        assert_eq!(threads.len(), 4, "{isolation:?}");
        for (thread, payloads) in threads {
            assert_eq!(payloads, numbered(thread, 1000), "{isolation:?}");
        }
        assert_eq!(summary_row(&out, "pub_c").received, 0, "{isolation:?}");
    }
}
