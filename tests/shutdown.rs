//! Shutdown: SIGTERM drains and exits 0, `shutdown_timeout` bounds the drain
//! (what is left is dropped and counted), a second signal exits at once;
//! every instance's `stop` runs while every mailbox still takes events, so
//! what a `stop` publishes reaches every subscriber, in either isolation
//! mode, whatever the order of the config; a reaction that never ends is cut
//! off at the deadline and what it leaves is counted; a `stop` that never
//! returns is given up on; an operator's stop still ends one instance for
//! good.

mod common;

use Isolation::{Process, Thread};
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
    // Every instance's `stop` runs while every mailbox still takes events,
    // so the logger, wherever it is listed, receives the others' `stopped`
    // events (in reverse start order), but not the news of its own stop.
    let s = Scratch::new("lifecycle");
    // `count` is listed (and stops) before the logger, `echo` after it.
    let config = Config::new()
        .plugin(Plugin::new("count", "counter"))
        .plugin(logger("log", &s.path("log.jsonl")).subscribe(["plughost.plugin.*"]))
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
    // `count` started before the logger existed.
    assert_eq!(
        seen,
        [
            (
                started.clone(),
                json!({"name": "log", "library": library("logger")})
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

/// Send `n` events to a host of [`slow_config`] and wait until every one is
/// routed (the fast `log` has written them all) and `slow` took the first:
/// the rest wait in its mailbox. (Waiting for `slow`'s first alone raced
/// the input reader: a signal could close intake after one event.)
fn queue_for_slow(host: &mut Running, s: &Scratch, n: usize) {
    host.send(&events(n));
    eventually("every event routed", || {
        std::fs::read_to_string(s.path("log.jsonl")).is_ok_and(|t| t.lines().count() == n)
    });
    host.wait_for_stderr("took work.item 0");
}

#[test]
fn sigterm_mid_stream_drains_every_queue_and_exits_0() {
    let s = Scratch::new("sigterm");
    let config = slow_config(&s, 2, "30s");
    let mut host = Running::start(&config);
    queue_for_slow(&mut host, &s, 300);
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
    queue_for_slow(&mut host, &s, 500);
    let asked = Instant::now();
    host.signal(libc::SIGTERM);
    let (out, err) = host.wait(Duration::from_secs(30));
    let took = asked.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", err.join("\n"));
    assert!(took < Duration::from_secs(5), "stopped in {took:?}");
    let slow = summary_row(&out, "slow");
    assert!(slow.dropped > 0, "{slow:?}");
    assert_accounted(&slow);
    // What was dropped is what the log says was left for it.
    let left: Vec<u64> = err
        .iter()
        .filter(|l| l.contains("plugin=slow"))
        .filter_map(|l| {
            l.split_once(" event(s) still queued at the shutdown deadline were dropped")?
                .0
                .rsplit(' ')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(left, [slow.dropped], "{}", err.join("\n"));
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
    queue_for_slow(&mut host, &s, 100);
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

/// A logger of `subscribe` writing `NAME.jsonl` in `s`, in `isolation`.
fn logger_of(s: &Scratch, name: &str, isolation: Isolation, subscribe: &str) -> Plugin {
    logger(name, &s.path(&format!("{name}.jsonl")))
        .isolation(isolation)
        .subscribe([subscribe])
}

/// A counter of `work.>`, in `isolation`: its `stop` publishes
/// `counter.summary`.
fn counter(name: &str, isolation: Isolation) -> Plugin {
    Plugin::new(name, "counter")
        .isolation(isolation)
        .subscribe(["work.>"])
}

fn row(state: &str, received: u64, processed: u64, dropped: u64, failed: u64) -> Row {
    Row {
        state: state.to_owned(),
        received,
        processed,
        dropped,
        failed,
    }
}

/// (topic, source, payload) of each line a logger wrote to `name`.
fn logged(s: &Scratch, name: &str) -> Vec<(String, String, serde_json::Value)> {
    s.log_lines(name)
        .into_iter()
        .map(|l| {
            let text = |key: &str| l[key].as_str().unwrap_or_default().to_owned();
            (text("topic"), text("source"), l["payload"].clone())
        })
        .collect()
}

/// The counter's summary after `n` events on `work.item`.
fn summary(n: u64) -> serde_json::Value {
    json!({"counts": {"work.item": n}, "total": n})
}

/// The tail of the log lines that say what shutdown could not deliver.
const UNDELIVERED: &str = "could not be delivered and are counted as dropped";

/// The tail of the log line of an instance that stops after the deadline.
const AT_THE_DEADLINE: &str = "still queued at the shutdown deadline were dropped (counted)";

#[test]
fn what_a_stop_publishes_reaches_every_subscriber_whatever_the_listing_order() {
    // `before` is listed before the counter, `after` after it. The counter's
    // `stop` publishes its summary while every instance still takes events,
    // so both loggers write it, whichever runs in a process of its own.
    for (loggers, counted) in [(Thread, Thread), (Process, Thread), (Thread, Process)] {
        let case = format!("{loggers} loggers, {counted} counter");
        let s = Scratch::new("stop-publishes");
        let config = Config::new()
            .plugin(logger_of(&s, "before", loggers, "counter.summary"))
            .plugin(counter("count", counted))
            .plugin(logger_of(&s, "after", loggers, "counter.summary"))
            .write(&s);
        let out = run(
            &["run", config.to_str().unwrap(), "--events", "-"],
            &events(4),
        );
        let err = stderr(&out);
        assert!(out.status.success(), "{case}: {err}");
        for name in ["before", "after"] {
            assert_eq!(
                logged(&s, &format!("{name}.jsonl")),
                [("counter.summary".into(), "count".into(), summary(4))],
                "{name}: {case}"
            );
            assert_eq!(
                summary_row(&out, name),
                row("stopped", 1, 1, 0, 0),
                "{name}: {case}"
            );
        }
        assert_eq!(summary_row(&out, "count"), row("stopped", 4, 4, 0, 0));
        assert!(!err.contains(UNDELIVERED), "{case}: {err}");
    }
}

#[test]
fn a_chain_that_a_stop_starts_reaches_its_end_whatever_the_listing_order() {
    // a's `stop` publishes to b, b's handler publishes to c. c is listed
    // first and b after a: last started, b is the first to stop.
    for b in [Thread, Process] {
        let s = Scratch::new("stop-chain");
        let config = Config::new()
            .plugin(logger_of(&s, "c", Thread, "chain.c"))
            .plugin(counter("a", Thread))
            .plugin(
                Plugin::new("b", "chaos")
                    .isolation(b)
                    .subscribe(["counter.summary"])
                    .set("forward_to", "chain.c"),
            )
            .write(&s);
        let out = run(
            &["run", config.to_str().unwrap(), "--events", "-"],
            &events(3),
        );
        let err = stderr(&out);
        assert!(out.status.success(), "b in {b}: {err}");
        assert_eq!(
            logged(&s, "c.jsonl"),
            [("chain.c".into(), "b".into(), summary(3))],
            "b in {b}"
        );
        assert_eq!(summary_row(&out, "a"), row("stopped", 3, 3, 0, 0));
        assert_eq!(summary_row(&out, "b"), row("stopped", 1, 1, 0, 0));
        assert_eq!(summary_row(&out, "c"), row("stopped", 1, 1, 0, 0));
        assert!(!err.contains(UNDELIVERED), "b in {b}: {err}");
    }
}

/// Run `config` with `events(4)` on stdin, closed at once; returns how long
/// it took from the end of input to exit, its output and its stderr.
fn run_to_the_end(config: &std::path::Path) -> (Duration, std::process::Output, String) {
    let mut host = Running::start(config);
    host.send(&events(4));
    let asked = Instant::now();
    drop(host.stdin.take());
    let (out, err) = host.wait(Duration::from_secs(30));
    (asked.elapsed(), out, err.join("\n"))
}

#[test]
fn a_reaction_that_never_ends_is_cut_off_at_the_deadline_and_what_it_leaves_is_counted() {
    // The counter's summary sets off `loop`, which republishes every event
    // it gets to itself (`echo = true`), for ever. The stops' deliveries end at
    // shutdown_timeout (1 s) + the stop grace (1 s); what `loop` still has
    // then is dropped, counted and logged (at its `stop` when it had not
    // stopped yet, when it ends otherwise), and the summary still reaches
    // the logger listed after the counter.
    for (isolation, loop_first) in [
        (Thread, true),
        (Thread, false),
        (Process, true),
        (Process, false),
    ] {
        let case = format!("{isolation}, loop listed first: {loop_first}");
        let s = Scratch::new("stop-loop");
        let looping = Plugin::new("loop", "chaos")
            .isolation(isolation)
            .subscribe(["counter.summary", "loop.>"])
            .echo(true)
            .set("forward_to", "loop.again");
        let mut config = Config::new().shutdown_timeout("1s");
        if loop_first {
            config = config.plugin(looping.clone());
        }
        config = config.plugin(counter("count", Thread)).plugin(logger_of(
            &s,
            "after",
            Thread,
            "counter.summary",
        ));
        if !loop_first {
            config = config.plugin(looping);
        }
        let (took, out, err) = run_to_the_end(&config.write(&s));
        assert_eq!(out.status.code(), Some(0), "{case}: {err}");
        // 2 s, with room for a loaded machine; never the 30 s of the wait.
        assert!(took < Duration::from_secs(4), "{case}: took {took:?}");
        assert_eq!(
            logged(&s, "after.jsonl"),
            [("counter.summary".into(), "count".into(), summary(4))],
            "{case}"
        );
        let looped = summary_row(&out, "loop");
        assert_accounted(&looped);
        assert_eq!(looped.state, "stopped", "{case}: {looped:?}");
        assert_eq!(looped.failed, 0, "{case}: {looped:?}");
        assert!(
            looped.processed >= 2 && looped.dropped >= 1,
            "{case}: {looped:?}"
        );
        assert!(
            err.contains("what the plugins published in `stop` was not all delivered within shutdown_timeout + 1s; the rest is dropped and counted"),
            "{case}: {err}"
        );
        // Each drop is logged with its count: at loop's `stop` (when it
        // stops after the deadline) or when it ends.
        let said: u64 = err
            .lines()
            .filter(|l| l.contains("plugin=loop"))
            .filter(|l| l.contains(UNDELIVERED) || l.contains(AT_THE_DEADLINE))
            .map(|l| {
                let message = l.split(": ").nth(1).unwrap_or_default();
                let count = message.split(' ').next().unwrap_or_default();
                count
                    .parse::<u64>()
                    .unwrap_or_else(|_| panic!("a count: {l}"))
            })
            .sum();
        assert_eq!(said, looped.dropped, "{case}: {err}");
        assert_eq!(summary_row(&out, "count"), row("stopped", 4, 4, 0, 0));
        assert_eq!(summary_row(&out, "after"), row("stopped", 1, 1, 0, 0));
    }
}

#[test]
fn a_stop_that_never_returns_is_given_up_on_and_the_others_still_stop() {
    // `stuck` stops first and never returns from `stop`. At
    // shutdown_timeout + 1 s it is given up on: its process killed, or its
    // thread abandoned; the others then stop together, and the counter's
    // summary still reaches the logger.
    for isolation in [Thread, Process] {
        let s = Scratch::new("stop-stuck");
        let config = Config::new()
            .shutdown_timeout("500ms")
            .plugin(logger_of(&s, "after", Thread, "counter.summary"))
            .plugin(counter("count", Thread))
            .plugin(
                Plugin::new("stuck", "chaos")
                    .isolation(isolation)
                    .subscribe(["work.>"])
                    .set("hang_in_stop", true),
            )
            .write(&s);
        let (took, out, err) = run_to_the_end(&config);
        assert_eq!(out.status.code(), Some(0), "{isolation}: {err}");
        // 1.5 s, plus a second for a killed process to be seen; with room
        // for a loaded machine.
        assert!(took < Duration::from_secs(5), "{isolation}: took {took:?}");
        let fate = match isolation {
            Process => "its process was killed",
            Thread => "its thread is abandoned with 0 event(s) unfinished, counted as dropped",
        };
        let said = format!("did not finish its `stop` by shutdown_timeout + 1s; {fate}");
        assert!(
            err.lines()
                .any(|l| l.contains(&said) && l.contains("plugin=stuck")),
            "{isolation}: {err}"
        );
        assert_eq!(summary_row(&out, "stuck"), row("failed", 4, 4, 0, 0));
        assert_eq!(summary_row(&out, "count"), row("stopped", 4, 4, 0, 0));
        assert_eq!(summary_row(&out, "after"), row("stopped", 1, 1, 0, 0));
        assert_eq!(
            logged(&s, "after.jsonl"),
            [("counter.summary".into(), "count".into(), summary(4))],
            "{isolation}"
        );
    }
}

/// The pids of `pid`'s children (its plugin processes).
fn children(pid: u32) -> Vec<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the host's threads");
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|pid| pid.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

#[test]
fn an_operators_stop_still_ends_one_instance_for_good() {
    // `one` (in a process of its own) is stopped by `ctl stop`: its `stop`
    // runs then, once, and its process ends; what comes for it afterwards is
    // dropped. `two` stops at shutdown, and its summary still reaches the
    // logger listed after it.
    let s = Scratch::new("ctl-stop");
    let socket = s.path("host.sock");
    let config = Config::new()
        .control_socket(&socket)
        .plugin(counter("one", Process))
        .plugin(counter("two", Thread))
        .plugin(logger_of(&s, "log", Thread, "counter.summary"))
        .write(&s);
    let mut host = Running::start(&config);
    let pid = host.child.id();
    assert_eq!(children(pid).len(), 1, "one's process");
    assert_eq!(ctl(&socket, &["publish", "work.a", "1"]).0, 0);
    assert_eq!(
        ctl(&socket, &["stop", "one"]),
        (0, "stopped one\n".to_owned(), String::new())
    );
    assert_eq!(children(pid), Vec::<u32>::new(), "one's process ended");
    assert_eq!(ctl(&socket, &["publish", "work.b", "2"]).0, 0);
    drop(host.stdin.take());
    let (out, err) = host.wait(Duration::from_secs(30));
    let err = err.join("\n");
    assert!(out.status.success(), "{err}");
    let summaries: Vec<(String, serde_json::Value)> = logged(&s, "log.jsonl")
        .into_iter()
        .map(|(_, source, payload)| (source, payload["total"].clone()))
        .collect();
    assert_eq!(
        summaries,
        [("one".to_owned(), json!(1)), ("two".to_owned(), json!(2))]
    );
    let stops = err
        .lines()
        .filter(|l| l.contains("event(s) on") && l.contains("plugin=\"one\""))
        .count();
    assert_eq!(stops, 1, "one's stop ran once: {err}");
    assert_eq!(summary_row(&out, "one"), row("stopped", 2, 1, 1, 0));
    assert_eq!(summary_row(&out, "two"), row("stopped", 2, 2, 0, 0));
    assert_eq!(summary_row(&out, "log"), row("stopped", 2, 2, 0, 0));
}
