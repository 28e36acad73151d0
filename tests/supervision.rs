//! Supervision: restart policies, flapping, the watchdog, and plugins in
//! their own process surviving panics, crashes and kill -9.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::Duration;

/// The instance `log`: a logger of `subscribe` into `log.jsonl`.
fn log<const N: usize>(s: &Scratch, subscribe: [&str; N]) -> Plugin {
    logger("log", &s.path("log.jsonl")).subscribe(subscribe)
}

fn work(n: usize) -> String {
    (0..n).map(|i| event("work.item", json!(i))).collect()
}

/// (instance name, `field`) of each lifecycle event on `topic` in `log.jsonl`.
fn named(s: &Scratch, topic: &str, field: &str) -> Vec<(String, Value)> {
    lifecycle(s, "log.jsonl", topic)
        .into_iter()
        .map(|p| (p["name"].as_str().unwrap().to_owned(), p[field].clone()))
        .collect()
}

/// `[(name, value)]` for comparing with [`named`].
fn one(name: &str, value: impl Into<Value>) -> Vec<(String, Value)> {
    vec![(name.to_owned(), value.into())]
}

fn lifecycle(s: &Scratch, file: &str, topic: &str) -> Vec<Value> {
    s.log_lines(file)
        .into_iter()
        .filter(|l| l["topic"] == topic)
        .map(|l| l["payload"].clone())
        .collect()
}

#[test]
fn a_plugin_panicking_on_every_tenth_event_is_restarted_then_stopped_as_flapping() {
    let s = Scratch::new("flapping");
    let config = Config::new()
        .plugin(log(&s, ["work.>", "plughost.plugin.*"]))
        .plugin(
            Plugin::new("flaky", "chaos")
                .subscribe(["work.>"])
                .restart(Restart::OnFailure)
                .max_restarts(3)
                .restart_window("60s")
                .config(json!({"panic_every": 10})),
        )
        .write(&s);
    let out = run(
        &["run", config.to_str().unwrap(), "--events", "-"],
        &work(100),
    );
    assert!(out.status.success(), "the host stays up: {}", stderr(&out));
    // Every other plugin received every event.
    assert_eq!(summary_row(&out, "log").processed, 100 + 2 + 4 + 3 + 1);
    // Three restarts allowed; the fourth failure stops it: 4 x 9 events
    // handled, 4 failed, and the 60 after the fourth failure are still
    // routed to it (it stays subscribed) and counted as dropped.
    assert_eq!(
        summary_row(&out, "flaky"),
        Row {
            state: "flapping".into(),
            received: 100,
            processed: 36,
            dropped: 60,
            failed: 4
        }
    );
    assert_eq!(
        lifecycle(&s, "log.jsonl", "plughost.plugin.failed").len(),
        4
    );
    let restarted = lifecycle(&s, "log.jsonl", "plughost.plugin.restarted");
    assert_eq!(
        restarted
            .iter()
            .map(|p| p["restarts"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let flapping = lifecycle(&s, "log.jsonl", "plughost.plugin.flapping");
    assert_eq!(flapping.len(), 1);
    assert_eq!(flapping[0]["name"], "flaky");
    assert!(
        flapping[0]["reason"]
            .as_str()
            .unwrap()
            .contains("3 restarts within 60s")
    );
}

#[test]
fn a_restarted_instance_gets_a_fresh_init_and_the_events_that_waited() {
    let s = Scratch::new("restart-no-loss");
    // Backoff doubles from 50 ms: five restarts take about 1.6 s of the drain.
    let config = Config::new()
        .shutdown_timeout("30s")
        .plugin(
            Plugin::new("flaky", "chaos")
                .subscribe(["work.>"])
                .restart(Restart::OnFailure)
                .max_restarts(100)
                .config(json!({"panic_every": 10})),
        )
        .write(&s);
    let out = run(
        &["run", config.to_str().unwrap(), "--events", "-"],
        &work(45),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let flaky = summary_row(&out, "flaky");
    // Four instances handle 9 and panic on their 10th; the fifth takes the
    // last 5. Nothing is dropped while they restart.
    assert_eq!(
        (
            flaky.state.as_str(),
            flaky.processed,
            flaky.failed,
            flaky.dropped
        ),
        ("stopped", 41, 4, 0)
    );
}

#[test]
fn restart_never_leaves_a_failed_instance_failed() {
    let s = Scratch::new("restart-never");
    let config = Config::new()
        .plugin(
            Plugin::new("once", "chaos")
                .subscribe(["work.>"])
                .restart(Restart::Never)
                .config(json!({"panic_every": 10})),
        )
        .write(&s);
    let out = run(
        &["run", config.to_str().unwrap(), "--events", "-"],
        &work(30),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let once = summary_row(&out, "once");
    assert_eq!(
        (
            once.state.as_str(),
            once.processed,
            once.failed,
            once.dropped
        ),
        ("failed", 9, 1, 20)
    );
}

#[test]
fn a_spinning_handler_trips_the_watchdog() {
    let s = Scratch::new("watchdog");
    let config = Config::new()
        .status(Status::any_port())
        .plugin(log(&s, ["plughost.plugin.*"]))
        .plugin(
            Plugin::new("slow", "chaos")
                .subscribe(["work.>"])
                .handler_timeout("100ms")
                .config(json!({"sleep_ms": 1500, "health": "ok"})),
        )
        .write(&s);
    let mut host = Running::start(&config);
    let address = host.status_address();
    host.send(&work(1));
    host.wait_for_stderr("stuck: a handler has run for");
    let (code, health) = get_json(&address, "/health?plugin=slow");
    assert_eq!(code, 503, "{health}");
    assert!(
        health["plugins"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("stuck"),
        "{health}"
    );
    // While stuck: `stuck` in /plugins, and down in /metrics.
    assert_eq!(plugin_row(&address, "slow")["state"], "stuck");
    assert_eq!(metric(&address, "plughost_plugin_up{plugin=\"slow\"}"), 0.0);
    // Once the handler returns, it runs again.
    eventually("the handler to return", || {
        plugin_row(&address, "slow")["state"] == "running"
    });
    assert_eq!(metric(&address, "plughost_plugin_up{plugin=\"slow\"}"), 1.0);
    drop(host.stdin.take());
    let (out, _) = host.wait(Duration::from_secs(30));
    assert!(out.status.success());
    let stuck = lifecycle(&s, "log.jsonl", "plughost.plugin.stuck");
    assert_eq!(stuck.len(), 1, "reported once per stuck call");
    assert_eq!(stuck[0]["name"], "slow");
    assert_eq!(stuck[0]["handler_timeout_ms"], 100);
    assert!(stuck[0]["running_ms"].as_u64().unwrap() >= 100);
}

#[test]
fn process_isolation_delivers_every_event_exactly_once_in_order() {
    let s = Scratch::new("process-exact");
    let config = Config::new()
        .plugin(
            logger("isolated", &s.path("log.jsonl"))
                .isolation(Isolation::Process)
                .subscribe(["work.>"]),
        )
        .write(&s);
    let out = run(
        &["run", config.to_str().unwrap(), "--events", "-"],
        &work(20_000),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = s.log_lines("log.jsonl");
    assert_eq!(lines.len(), 20_000);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["payload"], json!(i));
    }
    let row = summary_row(&out, "isolated");
    assert_eq!(
        (row.received, row.processed, row.dropped, row.failed),
        (20_000, 20_000, 0, 0)
    );
}

#[test]
fn a_process_plugin_publishes_and_logs_through_the_host() {
    let s = Scratch::new("process-publish");
    let config = Config::new()
        .plugin(log(&s, ["counter.summary"]))
        .plugin(
            Plugin::new("counter", "counter")
                .isolation(Isolation::Process)
                .subscribe(["work.>"]),
        )
        .write(&s);
    let out = run(
        &["run", config.to_str().unwrap(), "--events", "-"],
        &work(7),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = lifecycle(&s, "log.jsonl", "counter.summary");
    assert_eq!(summary, [json!({"counts": {"work.item": 7}, "total": 7})]);
    assert_eq!(s.log_lines("log.jsonl")[0]["source"], "counter");
    assert!(
        stderr(&out).contains("7 event(s) on 1 topic(s)"),
        "the child's log reaches the host's"
    );
}

#[test]
fn a_panic_in_a_process_plugin_restarts_it_and_the_unhandled_events_wait_for_it() {
    let s = Scratch::new("process-panic");
    let config = Config::new()
        .plugin(log(&s, ["work.>"]))
        .plugin(
            Plugin::new("proc", "chaos")
                .isolation(Isolation::Process)
                .subscribe(["work.>"])
                .restart(Restart::OnFailure)
                .max_restarts(100)
                .config(json!({"panic_every": 25})),
        )
        .write(&s);
    let out = run(
        &["run", config.to_str().unwrap(), "--events", "-"],
        &work(100),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        summary_row(&out, "log").processed,
        100,
        "other plugins get everything"
    );
    let proc_row = summary_row(&out, "proc");
    assert_eq!(
        (proc_row.processed, proc_row.failed, proc_row.dropped),
        (96, 4, 0),
        "{proc_row:?}"
    );
}

fn child_pids() -> Vec<i32> {
    let out = std::process::Command::new("pgrep")
        .args(["-f", "plughost __child"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn children_of(parent: u32) -> Vec<i32> {
    child_pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    stat.rsplit(')')
                        .next()
                        .and_then(|rest| rest.split_whitespace().nth(1))
                        .map(str::to_owned)
                })
                .is_some_and(|ppid| ppid == parent.to_string())
        })
        .collect()
}

#[test]
fn kill_9_of_an_idle_child_is_detected_at_once_and_restarted() {
    let s = Scratch::new("kill-9");
    let config = Config::new()
        .plugin(log(&s, ["work.>", "plughost.plugin.*"]))
        .plugin(
            Plugin::new("proc", "chaos")
                .isolation(Isolation::Process)
                .subscribe(["work.>"])
                .restart(Restart::OnFailure),
        )
        .write(&s);
    let mut host = Running::start(&config);
    let parent = host.child.id();
    let first = children_of(parent);
    assert_eq!(first.len(), 1, "one child process");
    // SAFETY: kill(2) with plain integers on our test's grandchild.
    assert_eq!(unsafe { libc::kill(first[0], libc::SIGKILL) }, 0);
    host.wait_for_stderr("its process was killed by SIGKILL");
    host.wait_for_stderr("restarted (restart 1)");
    let second = children_of(parent);
    assert_eq!(second.len(), 1);
    assert_ne!(second, first);
    host.send(&work(10));
    drop(host.stdin.take());
    let (out, _) = host.wait(Duration::from_secs(30));
    assert!(out.status.success());
    let row = summary_row(&out, "proc");
    assert_eq!(
        (row.processed, row.dropped),
        (10, 0),
        "the new process handles what comes next"
    );
    assert!(children_of(parent).is_empty(), "no child outlives the host");
    assert_eq!(
        named(&s, "plughost.plugin.failed", "reason"),
        one("proc", "its process was killed by SIGKILL")
    );
    assert_eq!(
        named(&s, "plughost.plugin.restarted", "restarts"),
        one("proc", 1)
    );
}

#[test]
fn children_die_with_the_host_even_on_sigkill() {
    let s = Scratch::new("orphans");
    let config = Config::new()
        .plugin(
            Plugin::new("proc", "chaos")
                .isolation(Isolation::Process)
                .subscribe(["work.>"]),
        )
        .write(&s);
    let mut host = Running::start(&config);
    let parent = host.child.id();
    let children = children_of(parent);
    assert_eq!(children.len(), 1);
    host.child.kill().unwrap();
    let _ = host.child.wait();
    eventually("the orphaned child to exit", || {
        !std::path::Path::new(&format!("/proc/{}", children[0])).exists()
    });
}

#[test]
fn a_stuck_process_plugin_is_killed_by_the_watchdog_and_restarted() {
    let s = Scratch::new("process-watchdog");
    let config = Config::new()
        .plugin(log(&s, ["plughost.plugin.*"]))
        .plugin(
            Plugin::new("proc", "chaos")
                .isolation(Isolation::Process)
                .subscribe(["work.>"])
                .handler_timeout("200ms")
                .restart(Restart::OnFailure)
                .config(json!({"sleep_ms": 5000})),
        )
        .write(&s);
    let mut host = Running::start(&config);
    host.send(&work(1));
    host.wait_for_stderr("stuck: a handler has run for");
    host.wait_for_stderr("restarted (restart 1)");
    drop(host.stdin.take());
    let (out, _) = host.wait(Duration::from_secs(30));
    assert!(out.status.success());
    assert_eq!(
        summary_row(&out, "proc"),
        Row {
            state: "stopped".into(),
            received: 1,
            processed: 0,
            dropped: 1,
            failed: 0
        },
        "the event in flight is counted as lost; restarted, then stopped at the end"
    );
    assert!(
        stdout(&out).contains("proc: its process was killed by SIGKILL"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_segfaulting_c_plugin_in_its_own_process_is_contained_and_restarted() {
    let s = Scratch::new("segfault");
    let config = Config::new()
        .shutdown_timeout("30s")
        .plugin(log(&s, ["work.>", "plughost.plugin.*"]))
        .plugin(
            Plugin::new("crashy", "chaos_c")
                .isolation(Isolation::Process)
                .subscribe(["work.>"])
                .restart(Restart::OnFailure)
                .config(json!({"segfault_on": "work.crash"})),
        )
        .write(&s);
    let mut events = work(50);
    events += &event("work.crash", json!("boom"));
    events += &work(50);
    let out = run(&["run", config.to_str().unwrap(), "--events", "-"], &events);
    assert!(out.status.success(), "the host survives: {}", stderr(&out));
    assert_eq!(
        summary_row(&out, "log").processed,
        101 + 2 + 1 + 1 + 1,
        "the others get everything"
    );
    // The batch in flight (the crash event, and what came with it) is lost
    // and counted; the restarted process handles the rest.
    let lost = lost_in_flight(&stderr(&out));
    assert_eq!(lost.len(), 1, "{}", stderr(&out));
    assert_eq!(
        summary_row(&out, "crashy"),
        Row {
            state: "stopped".into(),
            received: 101,
            processed: 101 - lost[0],
            dropped: lost[0],
            failed: 0
        }
    );
    let failed = lifecycle(&s, "log.jsonl", "plughost.plugin.failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["reason"], "its process was killed by SIGSEGV");
    let restarted = lifecycle(&s, "log.jsonl", "plughost.plugin.restarted");
    assert_eq!(
        restarted,
        [
            json!({"name": "crashy", "library": plugin_path("chaos_c").display().to_string(), "restarts": 1})
        ]
    );
}

/// The sizes of the batches in flight a log says were lost.
fn lost_in_flight(err: &str) -> Vec<u64> {
    err.lines()
        .filter_map(|l| {
            l.split_once(" event(s) in flight were lost")?
                .0
                .rsplit(' ')
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

#[test]
fn an_aborting_c_plugin_in_its_own_process_is_reported_with_sigabrt() {
    let s = Scratch::new("abort");
    let config = Config::new()
        .plugin(
            Plugin::new("crashy", "chaos_c")
                .isolation(Isolation::Process)
                .subscribe(["work.>"])
                .restart(Restart::Never)
                .config(json!({"abort_on": "work.abort"})),
        )
        .write(&s);
    let out = run(
        &["run", config.to_str().unwrap(), "--events", "-"],
        &(event("work.abort", json!(1)) + &work(3)),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let crashy = summary_row(&out, "crashy");
    assert_eq!(crashy.state, "failed");
    assert_accounted(&crashy);
    assert!(
        stdout(&out).contains("crashy: its process was killed by SIGABRT"),
        "{}",
        stdout(&out)
    );
}

/// `signal` to the host's whole process group (as a terminal's Ctrl-C does)
/// and to each plugin process, in process groups of their own (as a service
/// manager signalling every process of a unit does), while process plugins
/// work: the children ignore it, the host acts on it (SIGINT and SIGTERM
/// drain and stop, SIGHUP reloads), and nothing is lost.
fn a_signal_to_the_whole_process_group_loses_nothing(signal: i32, name: &str) {
    let s = Scratch::new(&format!("{name}-group"));
    let config = Config::new()
        .shutdown_timeout("60s")
        .plugin(log(&s, ["work.>"]).isolation(Isolation::Process))
        .plugin(
            Plugin::new("slow", "chaos")
                .isolation(Isolation::Process)
                .subscribe(["work.>"])
                .config(json!({"sleep_ms": 10, "log_events": true})),
        )
        .write(&s);
    let mut host = Running::start_in_own_group(&config);
    let children = children_of(host.child.id());
    assert_eq!(children.len(), 2, "one process per plugin");
    host.send(&work(200));
    // `slow` needs 2 s for the 200 events: the signal comes mid-stream.
    host.wait_for_stderr("took work.item 20");
    host.signal_group(signal);
    for &child in &children {
        // SAFETY: kill(2) with plain integers on our test's grandchild.
        assert_eq!(unsafe { libc::kill(child, signal) }, 0);
    }
    if signal == libc::SIGHUP {
        host.wait_for_stderr("reload 1: added [], removed [], restarted [], unchanged");
        let mut now = children_of(host.child.id());
        now.sort();
        let mut before = children.clone();
        before.sort();
        assert_eq!(now, before, "the same children, alive");
        drop(host.stdin.take());
    } else {
        host.wait_for_stderr(&format!("{name}: draining queues"));
    }
    let (out, err) = host.wait(Duration::from_secs(60));
    let err = err.join("\n");
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        !err.contains("killed by"),
        "no child died of the signal: {err}"
    );
    assert!(
        !err.contains("restarted (restart"),
        "nothing restarted: {err}"
    );
    for name in ["log", "slow"] {
        let row = summary_row(&out, name);
        assert_eq!(
            (
                row.state.as_str(),
                row.received,
                row.processed,
                row.dropped,
                row.failed
            ),
            ("stopped", 200, 200, 0, 0),
            "{name}: every event processed exactly once"
        );
    }
    let payloads: Vec<Value> = s
        .log_lines("log.jsonl")
        .iter()
        .map(|l| l["payload"].clone())
        .collect();
    assert_eq!(payloads, (0..200).map(|i| json!(i)).collect::<Vec<_>>());
    for child in children {
        assert!(
            !std::path::Path::new(&format!("/proc/{child}")).exists(),
            "child {child} ended with the host"
        );
    }
}

#[test]
fn ctrl_c_to_the_whole_process_group_drains_process_plugins_without_loss() {
    // What Ctrl-C in a terminal does: SIGINT to every process of the group.
    a_signal_to_the_whole_process_group_loses_nothing(libc::SIGINT, "SIGINT");
}

#[test]
fn sigterm_to_the_whole_process_group_drains_process_plugins_without_loss() {
    // What systemd's KillMode=control-group does.
    a_signal_to_the_whole_process_group_loses_nothing(libc::SIGTERM, "SIGTERM");
}

#[test]
fn sighup_to_the_whole_process_group_reloads_and_no_child_dies_of_it() {
    a_signal_to_the_whole_process_group_loses_nothing(libc::SIGHUP, "SIGHUP");
}

#[test]
fn kill_9_of_a_busy_child_loses_only_the_batch_in_flight_counted_and_restarts_it() {
    let s = Scratch::new("kill-9-busy");
    let config = Config::new()
        .shutdown_timeout("60s")
        .plugin(log(&s, ["work.>"]))
        .plugin(
            Plugin::new("proc", "chaos")
                .isolation(Isolation::Process)
                .subscribe(["work.>"])
                .restart(Restart::OnFailure)
                .max_restarts(100)
                .queue_capacity(64)
                .config(json!({"sleep_ms": 5, "log_events": true})),
        )
        .write(&s);
    let mut host = Running::start(&config);
    let parent = host.child.id();
    let first = children_of(parent);
    assert_eq!(first.len(), 1, "one child process");
    host.send(&work(400));
    // `proc` needs 2 s for the 400 events: kill it while it works.
    host.wait_for_stderr("took work.item 50");
    // SAFETY: kill(2) with plain integers on our test's grandchild.
    assert_eq!(unsafe { libc::kill(first[0], libc::SIGKILL) }, 0);
    host.wait_for_stderr("its process was killed by SIGKILL");
    host.wait_for_stderr("restarted (restart 1)");
    drop(host.stdin.take());
    let (out, err) = host.wait(Duration::from_secs(60));
    let err = err.join("\n");
    assert!(out.status.success(), "{err}");
    let log = summary_row(&out, "log");
    assert_eq!(
        (log.received, log.processed),
        (400, 400),
        "the others get everything"
    );
    // Only the batch in flight (at most 256 events, at least the one being
    // handled) is lost, counted, and said.
    let lost = lost_in_flight(&err);
    assert_eq!(lost.len(), 1, "{err}");
    assert!((1..=256).contains(&lost[0]), "{lost:?}");
    assert_eq!(
        summary_row(&out, "proc"),
        Row {
            state: "stopped".into(),
            received: 400,
            processed: 400 - lost[0],
            dropped: lost[0],
            failed: 0
        },
        "restarted, then stopped at the end"
    );
}

/// A C plugin in its own process calls `exit(code)` on `work.exit`.
fn exiting(restart: Restart, code: u8) -> (std::process::Output, String, Scratch) {
    let s = Scratch::new(&format!("exit-{restart}-{code}"));
    let socket = s.path("host.sock");
    let config = Config::new()
        .shutdown_timeout("30s")
        .control_socket(&socket)
        .plugin(log(&s, ["plughost.plugin.*"]))
        .plugin(
            Plugin::new("quitter", "chaos_c")
                .isolation(Isolation::Process)
                .subscribe(["work.>"])
                .restart(restart)
                .config(json!({"exit_on": "work.exit", "exit_code": code})),
        )
        .write(&s);
    let mut host = Running::start(&config);
    host.send(&work(5));
    // Handled before the exit: the batch in flight when it exits is lost
    // (at most once), and that batch should be the exit event alone.
    eventually("the first 5 events processed", || {
        let (_, text, _) = ctl(&socket, &["--json", "list"]);
        let list: Value = serde_json::from_str(&text).unwrap_or_default();
        list["result"][1]["processed"] == 5
    });
    host.send(&event("work.exit", json!("bye")));
    // What comes after the exit is sent once the host has seen it.
    host.wait_for_stderr("its process ");
    host.send(&work(5));
    drop(host.stdin.take());
    let (out, err) = host.wait(Duration::from_secs(30));
    let err = err.join("\n");
    assert!(out.status.success(), "{err}");
    (out, err, s)
}

#[test]
fn a_child_exiting_with_an_error_status_is_restarted_on_failure() {
    let (out, _, s) = exiting(Restart::OnFailure, 3);
    let row = summary_row(&out, "quitter");
    assert_accounted(&row);
    assert_eq!(
        (row.state.as_str(), row.received),
        ("stopped", 11),
        "{row:?}"
    );
    assert_eq!(
        (row.processed, row.dropped),
        (10, 1),
        "the exit event is lost and counted; the restarted process handles what follows: {row:?}"
    );
    assert_eq!(
        named(&s, "plughost.plugin.failed", "reason"),
        one("quitter", "its process exited with status 3")
    );
    assert_eq!(
        named(&s, "plughost.plugin.restarted", "restarts"),
        one("quitter", 1)
    );
}

/// A process that ends without being told to has failed, whatever its
/// status: `on-failure` restarts it, and `always` does the same.
#[test]
fn a_child_exiting_with_status_0_is_a_failure_and_is_restarted() {
    for restart in [Restart::OnFailure, Restart::Always] {
        let (out, err, s) = exiting(restart, 0);
        let row = summary_row(&out, "quitter");
        assert_accounted(&row);
        assert_eq!(
            (row.state.as_str(), row.received, row.processed, row.dropped),
            ("stopped", 11, 10, 1),
            "{restart}: the exit event is lost and counted; the restarted process handles what follows: {row:?}"
        );
        assert_eq!(
            named(&s, "plughost.plugin.failed", "reason"),
            one("quitter", "its process exited by itself (status 0)"),
            "{restart}"
        );
        assert_eq!(
            named(&s, "plughost.plugin.restarted", "restarts"),
            one("quitter", 1),
            "{restart}: {err}"
        );
    }
}

#[test]
fn a_child_exiting_with_status_0_stays_failed_with_restart_never() {
    let (out, _, s) = exiting(Restart::Never, 0);
    let row = summary_row(&out, "quitter");
    assert_accounted(&row);
    // Failed but still subscribed: what is published after it counts as
    // received, and dropped.
    assert_eq!(
        (row.state.as_str(), row.received, row.processed, row.dropped),
        ("failed", 11, 5, 6),
        "{row:?}"
    );
    assert_eq!(
        named(&s, "plughost.plugin.failed", "reason"),
        one("quitter", "its process exited by itself (status 0)")
    );
    assert!(lifecycle(&s, "log.jsonl", "plughost.plugin.restarted").is_empty());
}

/// Whether process `pid` has ended (gone, or a zombie nobody reaped yet).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            stat.rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next())
                == Some("Z")
        }
    }
}

/// A host running `tests/fixtures/descendant.c` in its own process as
/// `kin`, with `shutdown_timeout`.
fn descendant_host(s: &Scratch, shutdown_timeout: &str) -> Running {
    let library = cc_fixture(s, "descendant", "descendant", &[]);
    let config = Config::new()
        .shutdown_timeout(shutdown_timeout)
        .plugin(log(s, ["plughost.plugin.*"]))
        .plugin(
            Plugin::new("kin", &library)
                .isolation(Isolation::Process)
                .subscribe(["work.>"])
                .restart(Restart::OnFailure),
        )
        .write(s);
    Running::start(&config)
}

/// Make the plugin leave a descendant (`work.spawn` or `work.fork`); its pid.
fn leave_descendant(host: &mut Running, s: &Scratch, topic: &str) -> i32 {
    let pidfile = s.path(&format!("{topic}.pid"));
    host.send(&event(topic, json!(pidfile.display().to_string())));
    let mut pid = None;
    eventually("the descendant to write its pid", || {
        pid = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|text| text.trim().parse::<i32>().ok());
        pid.is_some()
    });
    let pid = pid.unwrap();
    assert!(!gone(pid), "the descendant {pid} runs");
    pid
}

/// The plugin leaves a descendant holding (or not) its end of the socket,
/// then segfaults: the host sees the crash at once, and the descendant goes
/// with the plugin's process.
fn a_crash_is_seen_at_once_and_the_descendant_goes_with_it(topic: &str) {
    let s = Scratch::new(&format!("descendant-{topic}"));
    let mut host = descendant_host(&s, "30s");
    let descendant = leave_descendant(&mut host, &s, topic);
    host.send(&event("work.crash", json!(1)));
    host.wait_for_stderr("its process was killed by SIGSEGV");
    host.wait_for_stderr("restarted (restart 1)");
    eventually(
        "the descendant to be killed with the plugin's process",
        || gone(descendant),
    );
    host.send(&work(3));
    drop(host.stdin.take());
    let (out, err) = host.wait(Duration::from_secs(30));
    assert!(out.status.success(), "{}", err.join("\n"));
    let row = summary_row(&out, "kin");
    assert_eq!(
        (
            row.state.as_str(),
            row.received,
            row.processed,
            row.dropped,
            row.failed
        ),
        ("stopped", 5, 4, 1, 0),
        "the crash event is lost and counted, the new process takes the rest"
    );
    assert_eq!(
        named(&s, "plughost.plugin.failed", "reason"),
        one("kin", "its process was killed by SIGSEGV")
    );
    assert_eq!(
        named(&s, "plughost.plugin.restarted", "restarts"),
        one("kin", 1)
    );
}

#[test]
fn a_crash_is_seen_at_once_though_a_program_the_plugin_ran_lives_on() {
    a_crash_is_seen_at_once_and_the_descendant_goes_with_it("work.spawn");
}

#[test]
fn a_crash_is_seen_at_once_though_a_forked_copy_of_the_plugin_holds_its_socket() {
    a_crash_is_seen_at_once_and_the_descendant_goes_with_it("work.fork");
}

#[test]
fn a_plugin_s_descendants_do_not_outlive_the_host() {
    let s = Scratch::new("descendant-shutdown");
    let mut host = descendant_host(&s, "30s");
    let spawned = leave_descendant(&mut host, &s, "work.spawn");
    let forked = leave_descendant(&mut host, &s, "work.fork");
    drop(host.stdin.take());
    let (out, err) = host.wait(Duration::from_secs(30));
    assert!(out.status.success(), "{}", err.join("\n"));
    assert_eq!(summary_row(&out, "kin").state, "stopped");
    eventually("the descendants to end with the host", || {
        gone(spawned) && gone(forked)
    });
}

#[test]
fn a_stuck_plugin_s_descendants_do_not_outlive_the_host_that_gave_up_on_it() {
    let s = Scratch::new("descendant-stuck");
    let mut host = descendant_host(&s, "1s");
    let spawned = leave_descendant(&mut host, &s, "work.spawn");
    let child = children_of(host.child.id());
    host.send(&event("work.spin", json!(1)));
    drop(host.stdin.take());
    let (out, err) = host.wait(Duration::from_secs(30));
    assert!(out.status.success(), "{}", err.join("\n"));
    eventually(
        "the stuck plugin's process and its descendant to end",
        || gone(spawned) && child.iter().all(|&pid| gone(pid)),
    );
}

#[test]
fn a_really_spinning_c_handler_in_its_own_process_is_killed_by_the_watchdog_and_restarted() {
    let s = Scratch::new("spin");
    let config = Config::new()
        .plugin(log(&s, ["plughost.plugin.*"]))
        .plugin(
            Plugin::new("spinner", "chaos_c")
                .isolation(Isolation::Process)
                .subscribe(["work.>"])
                .handler_timeout("200ms")
                .restart(Restart::OnFailure)
                .config(json!({"spin_on": "work.spin"})),
        )
        .write(&s);
    let mut host = Running::start(&config);
    let first = children_of(host.child.id());
    host.send(&event("work.spin", json!(1)));
    host.wait_for_stderr("stuck: a handler has run for");
    host.wait_for_stderr("restarted (restart 1)");
    let second = children_of(host.child.id());
    assert_eq!(second.len(), 1);
    assert_ne!(first, second, "a new process");
    host.send(&work(3));
    drop(host.stdin.take());
    let (out, err) = host.wait(Duration::from_secs(30));
    assert!(out.status.success(), "{}", err.join("\n"));
    let row = summary_row(&out, "spinner");
    assert_eq!(
        (row.state.as_str(), row.received, row.processed, row.dropped),
        ("stopped", 4, 3, 1),
        "the spinning event is lost and counted; the new process handles the rest"
    );
    assert_eq!(
        named(&s, "plughost.plugin.stuck", "handler_timeout_ms"),
        one("spinner", 200)
    );
    assert_eq!(
        named(&s, "plughost.plugin.failed", "reason"),
        one("spinner", "its process was killed by SIGKILL")
    );
    assert_eq!(
        named(&s, "plughost.plugin.restarted", "restarts"),
        one("spinner", 1)
    );
}

#[test]
fn a_restarted_child_refuses_a_library_changed_on_disk_since_the_host_loaded_it() {
    let s = Scratch::new("child-changed-file");
    let library = s.path("libproc.so");
    std::fs::copy(plugin_path("chaos"), &library).unwrap();
    let socket = s.path("ctl.sock");
    let config = Config::new()
        .control_socket(&socket)
        .plugin(log(&s, ["plughost.plugin.*"]))
        .plugin(
            Plugin::new("proc", &library)
                .isolation(Isolation::Process)
                .subscribe(["work.>"])
                .restart(Restart::OnFailure)
                .max_restarts(1),
        )
        .write(&s);
    let mut host = Running::start(&config);
    let parent = host.child.id();
    let first = children_of(parent);
    assert_eq!(first.len(), 1, "one child process");
    // Other code at the same path, then a crash: the restarted child must not
    // run bytes the host never checked.
    std::fs::copy(plugin_path("counter"), &library).unwrap();
    // SAFETY: kill(2) with plain integers on our test's grandchild.
    assert_eq!(unsafe { libc::kill(first[0], libc::SIGKILL) }, 0);
    let line = host.wait_for_stderr("the file changed on disk since the host loaded it");
    assert!(
        line.contains("`plughost ctl reload` loads the new one"),
        "{line}"
    );
    host.wait_for_stderr("flapping");
    // A reload loads the new file, and the instance runs it.
    let (code, text, err) = ctl(&socket, &["reload"]);
    assert_eq!(code, 0, "{text}{err}");
    assert!(text.contains("restarted: proc"), "{text}");
    host.send(&work(5));
    drop(host.stdin.take());
    let (out, err) = host.wait(Duration::from_secs(30));
    assert!(out.status.success());
    let row = summary_row(&out, "proc");
    assert_eq!((row.state.as_str(), row.processed), ("stopped", 5));
    let counted = err
        .iter()
        .any(|line| line.contains("5 event(s) on 1 topic(s)"));
    assert!(counted, "the counter now runs as proc: {err:?}");
    assert!(children_of(parent).is_empty(), "no child outlives the host");
}

/// The README's table of lifecycle topics: topic -> the fields it documents
/// beyond `name` and `library`.
fn documented_lifecycle_topics() -> std::collections::BTreeMap<String, Vec<String>> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("read README.md");
    let backticked = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    };
    readme
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("| `plughost.plugin."))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
            (backticked(cells[0])[0].clone(), backticked(cells[2]))
        })
        .collect()
}

#[test]
fn every_lifecycle_topic_is_documented_in_the_readme_with_the_fields_it_carries() {
    let s = Scratch::new("lifecycle-docs");
    let config = Config::new()
        .plugin(log(&s, ["plughost.plugin.*"]))
        .plugin(
            Plugin::new("flaky", "chaos")
                .subscribe(["work.flaky"])
                .restart(Restart::OnFailure)
                .max_restarts(1)
                .config(json!({"panic_every": 1})),
        )
        .plugin(
            Plugin::new("slow", "chaos")
                .subscribe(["work.slow"])
                .handler_timeout("100ms")
                .config(json!({"sleep_ms": 400})),
        )
        .write(&s);
    let events = event("work.slow", json!(1)) + &event("work.flaky", json!(1));
    let mut host = Running::start(&config);
    host.send(&events);
    host.wait_for_stderr("restarted (restart 1)");
    host.send(&event("work.flaky", json!(2)));
    host.wait_for_stderr("flapping: 1 restarts");
    drop(host.stdin.take());
    let (out, err) = host.wait(Duration::from_secs(30));
    assert!(out.status.success(), "{}", err.join("\n"));
    let documented = documented_lifecycle_topics();
    let mut seen = std::collections::BTreeMap::new();
    for line in s.log_lines("log.jsonl") {
        let mut fields: Vec<String> = line["payload"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k != "name" && *k != "library")
            .cloned()
            .collect();
        fields.sort();
        let topic = line["topic"].as_str().unwrap().to_owned();
        assert_eq!(
            line["payload"]["library"].as_str().map(|l| l.is_empty()),
            Some(false)
        );
        seen.insert(topic, fields);
    }
    let mut expected = documented.clone();
    expected.values_mut().for_each(|fields| fields.sort());
    assert_eq!(
        seen, expected,
        "published (left) vs documented in the README (right)"
    );
}

/// The instance `name` in `/plugins`.
fn plugin_row(address: &str, name: &str) -> Value {
    let (_, plugins) = get_json(address, "/plugins");
    plugins
        .as_array()
        .and_then(|list| list.iter().find(|p| p["name"] == name).cloned())
        .unwrap_or_else(|| panic!("no {name} in {plugins}"))
}

/// The value of the sample `series` (`name{labels}`) in `/metrics`.
fn metric(address: &str, series: &str) -> f64 {
    let (_, text) = http(address, "GET", "/metrics", "");
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
        .parse()
        .unwrap()
}

/// A restart whose `init` fails is one more failure: the flapping rule
/// counts it, and restarts are counted in `/plugins` and
/// `plughost_plugin_restarts_total`.
#[test]
fn an_init_that_fails_on_a_restart_counts_as_another_failure() {
    let s = Scratch::new("init-fails-on-restart");
    let marker = s.path("init-fails");
    let config = Config::new()
        .status(Status::any_port())
        .plugin(log(&s, ["plughost.plugin.*"]))
        .plugin(
            Plugin::new("flaky", "chaos")
                .subscribe(["work.>"])
                .restart(Restart::OnFailure)
                .max_restarts(2)
                .config(json!({
                    "panic_on": "work.poison",
                    "fail_init_if_exists": marker.display().to_string(),
                })),
        )
        .write(&s);
    let mut host = Running::start(&config);
    let address = host.status_address();
    // Started fine; from now on every init fails.
    std::fs::write(&marker, "").unwrap();
    host.send(&event("work.poison", json!(1)));
    // The panic, then two restarts whose init fails: the third failure with
    // two restarts in the window is flapping.
    host.wait_for_stderr("flapping: 2 restarts within 60s");
    eventually("the state to say so", || {
        plugin_row(&address, "flaky")["state"] == "flapping"
    });
    let row = plugin_row(&address, "flaky");
    assert_eq!(
        (&row["state"], &row["restarts"], &row["failed"]),
        (&json!("flapping"), &json!(2), &json!(1)),
        "{row}"
    );
    assert_eq!(
        metric(&address, "plughost_plugin_restarts_total{plugin=\"flaky\"}"),
        2.0
    );
    assert_eq!(
        metric(&address, "plughost_plugin_up{plugin=\"flaky\"}"),
        0.0
    );
    drop(host.stdin.take());
    let (out, err) = host.wait(Duration::from_secs(30));
    assert!(out.status.success(), "{}", err.join("\n"));
    let failed: Vec<String> = lifecycle(&s, "log.jsonl", "plughost.plugin.failed")
        .iter()
        .map(|p| p["reason"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(failed.len(), 3, "{failed:?}");
    assert!(
        failed[0].starts_with("on_event(work.poison) panicked at "),
        "{failed:?}"
    );
    let init_failed = format!("init {} exists (fail_init_if_exists)", marker.display());
    assert_eq!(
        failed[1..],
        [init_failed.clone(), init_failed],
        "{failed:?}"
    );
    // It never ran again, so it never restarted.
    assert!(lifecycle(&s, "log.jsonl", "plughost.plugin.restarted").is_empty());
    let flapping = lifecycle(&s, "log.jsonl", "plughost.plugin.flapping");
    assert_eq!(flapping.len(), 1);
    assert_eq!(flapping[0]["restarts"], 2);
}

/// Each instance receives one publisher's events in publication order, across
/// restarts too: what each incarnation handled, forwarded to a logger, is
/// the input in order, less the events it panicked on. In a process of its
/// own, the events of a batch after the one it panicked on go to the next
/// process first.
fn order_holds_across_restarts(isolation: Isolation) {
    let s = Scratch::new(&format!("order-restarts-{isolation}"));
    let config = Config::new()
        .plugin(logger("handled", &s.path("handled.jsonl")).subscribe(["handled"]))
        .plugin(
            Plugin::new("flaky", "chaos")
                .isolation(isolation)
                .subscribe(["work.>"])
                .restart(Restart::OnFailure)
                .max_restarts(10)
                .config(json!({"panic_every": 10, "forward_to": "handled"})),
        )
        .write(&s);
    let out = run(
        &["run", config.to_str().unwrap(), "--events", "-"],
        &work(30),
    );
    assert!(out.status.success(), "{isolation}: {}", stderr(&out));
    let handled: Vec<Value> = s
        .log_lines("handled.jsonl")
        .into_iter()
        .map(|l| l["payload"].clone())
        .collect();
    // Each incarnation panics on its 10th event: 9, 19 and 29.
    let expected: Vec<Value> = (0..30).filter(|i| i % 10 != 9).map(|i| json!(i)).collect();
    assert_eq!(handled, expected, "{isolation}");
    assert_eq!(
        summary_row(&out, "flaky"),
        Row {
            state: "stopped".into(),
            received: 30,
            processed: 27,
            dropped: 0,
            failed: 3
        },
        "{isolation}"
    );
}

#[test]
fn order_holds_across_restarts_in_a_thread() {
    order_holds_across_restarts(Isolation::Thread);
}

#[test]
fn order_holds_across_restarts_in_a_process() {
    order_holds_across_restarts(Isolation::Process);
}

/// Shutdown waits for an instance waiting to restart: one whose very last
/// event fails it at the end of the input comes back, and stops like the
/// others. (A process instance's failure used to count its batch as
/// finished a moment before it was marked restarting: a drain that looked
/// then found nothing to wait for, and the instance ended `failed`, its
/// restart never made.) Several runs, as the window was short.
#[test]
fn a_restart_due_when_the_input_ends_is_waited_for() {
    for isolation in [Isolation::Process, Isolation::Thread] {
        let s = Scratch::new(&format!("restart-at-end-{isolation}"));
        let config = Config::new()
            .plugin(log(&s, ["plughost.plugin.*"]))
            .plugin(
                Plugin::new("last", "chaos")
                    .isolation(isolation)
                    .subscribe(["work.>"])
                    .restart(Restart::OnFailure)
                    .config(json!({"panic_on": "work.last"})),
            )
            .write(&s);
        for run_number in 0..8 {
            let input = work(3) + &event("work.last", json!(3));
            let out = run(&["run", config.to_str().unwrap(), "--events", "-"], &input);
            assert!(out.status.success(), "{}", stderr(&out));
            assert_eq!(
                summary_row(&out, "last"),
                Row {
                    state: "stopped".into(),
                    received: 4,
                    processed: 3,
                    dropped: 0,
                    failed: 1
                },
                "{isolation}, run {run_number}: restarted, then stopped"
            );
            assert!(
                stderr(&out).contains("restarted (restart 1)"),
                "{isolation}, run {run_number}: {}",
                stderr(&out)
            );
        }
    }
}
