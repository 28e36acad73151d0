//! Shutdown: SIGTERM drains and exits 0, `shutdown_timeout` bounds the drain
//! (what is left is dropped and counted), a second signal exits at once.

mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

fn slow_config(s: &Scratch, sleep_ms: u64, timeout: &str) -> std::path::PathBuf {
    Config::new()
        .shutdown_timeout(timeout)
        .queue_capacity(100000)
        .plugin(logger("log", &s.path("log.jsonl")).subscribe(["work.>"]))
        .plugin(
            Plugin::new("slow", "chaos")
                .subscribe(["work.>"])
                .config(json!({"sleep_ms": sleep_ms, "log_events": true})),
        )
        .write(s)
}

#[test]
fn each_start_and_stop_is_published_naming_the_instance_and_its_library() {
    // Instances stop in reverse start order, so the logger, started first,
    // still receives the others' `stopped` events.
    let s = Scratch::new("lifecycle");
    let config = Config::new()
        .plugin(logger("log", &s.path("log.jsonl")).subscribe(["plughost.plugin.*"]))
        .plugin(Plugin::new("count", "counter"))
        .plugin(Plugin::new("echo", "echo_c"))
        .write(&s);
    let out = run(&["run", config.to_str().unwrap(), "--events", "-"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let library = |name: &str| plugin_path(name).display().to_string();
    let seen: Vec<_> = s
        .log_lines("log.jsonl")
        .into_iter()
        .map(|l| {
            (
                l["topic"].as_str().unwrap().to_owned(),
                l["payload"].clone(),
            )
        })
        .collect();
    let started = "plughost.plugin.started".to_owned();
    let stopped = "plughost.plugin.stopped".to_owned();
    assert_eq!(
        seen,
        [
            (
                started.clone(),
                json!({"name": "log", "library": library("logger")})
            ),
            (
                started.clone(),
                json!({"name": "count", "library": library("counter")})
            ),
            (
                started,
                json!({"name": "echo", "library": library("echo_c")})
            ),
            (
                stopped.clone(),
                json!({"name": "echo", "library": library("echo_c")})
            ),
            (
                stopped,
                json!({"name": "count", "library": library("counter")})
            ),
        ]
    );
}

fn events(n: usize) -> String {
    (0..n).map(|i| event("work.item", json!(i))).collect()
}

#[test]
fn sigterm_mid_stream_drains_every_queue_and_exits_0() {
    let s = Scratch::new("sigterm");
    let config = slow_config(&s, 2, "30s");
    let mut host = Running::start(&config);
    host.send(&events(300));
    std::thread::sleep(Duration::from_millis(100));
    host.signal(libc::SIGTERM);
    // stdin stays open: the signal alone ends the run.
    let (out, err) = host.wait(Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(0), "{}", err.join("\n"));
    assert!(
        err.iter().any(|l| l.contains("SIGTERM: draining queues")),
        "{}",
        err.join("\n")
    );
    let slow = summary_row(&out, "slow");
    let log = summary_row(&out, "log");
    assert!(slow.received > 0);
    assert_eq!(
        (slow.processed, slow.dropped),
        (slow.received, 0),
        "drained: {slow:?}"
    );
    // The drain had work to do: the slow plugin (2 ms an event) took events
    // off its mailbox after the host logged the signal, so they were still
    // queued when it arrived (intake closes at the signal). It logs `took`
    // for each event as it takes it.
    let signal = err
        .iter()
        .position(|l| l.contains("SIGTERM: draining queues"))
        .unwrap();
    let took = |lines: &[String]| {
        lines
            .iter()
            .filter(|l| l.contains("took work.item"))
            .count()
    };
    assert_eq!(took(&err) as u64, slow.received, "one `took` per event");
    let after = took(&err[signal..]);
    assert!(
        after > 0,
        "no event was left in the queue when SIGTERM arrived ({} handled before it)",
        took(&err[..signal])
    );
    assert_eq!(
        (log.processed, log.dropped),
        (log.received, 0),
        "drained: {log:?}"
    );
    // What the logger counted is exactly what it wrote, in order.
    let lines = s.log_lines("log.jsonl");
    assert_eq!(lines.len() as u64, log.received);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["payload"], json!(i));
    }
}

#[test]
fn shutdown_timeout_bounds_the_drain_and_counts_what_it_drops() {
    let s = Scratch::new("timeout");
    let config = slow_config(&s, 20, "300ms");
    let mut host = Running::start(&config);
    host.send(&events(500));
    std::thread::sleep(Duration::from_millis(100));
    let asked = Instant::now();
    host.signal(libc::SIGTERM);
    let (out, err) = host.wait(Duration::from_secs(30));
    let took = asked.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", err.join("\n"));
    assert!(took < Duration::from_secs(5), "stopped in {took:?}");
    let slow = summary_row(&out, "slow");
    assert!(slow.dropped > 0, "{slow:?}");
    assert_accounted(&slow);
    assert_eq!(slow.state, "stopped");
    assert!(
        err.iter().any(|l| l.contains("shutdown_timeout reached")),
        "{}",
        err.join("\n")
    );
}

#[test]
fn a_second_signal_exits_at_once() {
    let s = Scratch::new("second-signal");
    let config = slow_config(&s, 500, "60s");
    let mut host = Running::start(&config);
    host.send(&events(100));
    std::thread::sleep(Duration::from_millis(100));
    host.signal(libc::SIGINT);
    host.wait_for_stderr("SIGINT: draining queues");
    let asked = Instant::now();
    host.signal(libc::SIGINT);
    let (out, err) = host.wait(Duration::from_secs(10));
    assert!(asked.elapsed() < Duration::from_secs(5));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.iter()
            .any(|l| l == "error: second SIGINT: exiting at once without draining"),
        "{}",
        err.join("\n")
    );
}

#[test]
fn what_a_stop_publishes_reaches_every_instance_still_running_and_is_counted_for_those_already_stopped()
 {
    // Instances stop last started first: `before` (listed before the counter)
    // is still running when the counter's stop publishes its summary;
    // `after` (listed after it) has already stopped, and counts it as dropped.
    let s = Scratch::new("stop-publishes");
    let logger = |name: &str| {
        format!(
            "[[plugin]]\nname = \"{name}\"\nlibrary = \"logger\"\nsubscribe = [\"counter.summary\"]\n[plugin.config]\npath = {:?}\n",
            s.path(&format!("{name}.jsonl")).display().to_string()
        )
    };
    let config = s.config(&format!(
        "{}[[plugin]]\nname = \"count\"\nlibrary = \"counter\"\nsubscribe = [\"work.>\"]\n{}",
        logger("before"),
        logger("after")
    ));
    let out = run(
        &["run", config.to_str().unwrap(), "--events", "-"],
        &events(4),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = json!({"counts": {"work.item": 4}, "total": 4});
    let before = s.log_lines("before.jsonl");
    assert_eq!(before.len(), 1);
    assert_eq!(before[0]["payload"], summary);
    let row = summary_row(&out, "before");
    assert_eq!((row.received, row.processed, row.dropped), (1, 1, 0));
    // Not lost silently: counted for the instance it could not reach, and logged.
    let row = summary_row(&out, "after");
    assert_eq!(
        (row.state.as_str(), row.received, row.processed, row.dropped),
        ("stopped", 1, 0, 1)
    );
    assert!(s.read("after.jsonl").is_empty());
    let err = stderr(&out);
    assert!(
        err.lines().any(|l| l.contains(
            "1 event(s) published after it stopped (by another instance's stop, or the host) could not reach it and are counted as dropped"
        ) && l.contains("plugin=after")),
        "{err}"
    );
}
