//! Faults: a misbehaving plugin is marked failed and reported; the host and
//! every other plugin go on. Restarts are off here (`restart = "never"`, said by
//! `chaos_never_restarted`), so each failure stays visible; tests/supervision.rs
//! covers restart policies.

mod common;

use common::*;
use serde_json::{Value, json};

/// `chaos`: a `chaos` of `work.>` with `config`, left failed when it fails.
fn chaos_never_restarted(config: serde_json::Value) -> Plugin {
    Plugin::new("chaos", "chaos")
        .subscribe(["work.>"])
        .restart(Restart::Never)
        .config(config)
}

/// `log` (a logger of `work.>` and the lifecycle into log.jsonl), then
/// [`chaos_never_restarted`] with `config`.
fn config_with_chaos(s: &Scratch, config: serde_json::Value) -> std::path::PathBuf {
    Config::new()
        .plugin(logger("log", &s.path("log.jsonl")).subscribe(["work.>", "plughost.plugin.*"]))
        .plugin(chaos_never_restarted(config))
        .write(s)
}

#[test]
fn a_panic_in_on_event_fails_that_plugin_only() {
    let s = Scratch::new("panic-event");
    let config = config_with_chaos(&s, json!({"panic_on": "work.poison"}));
    let mut events = String::new();
    for i in 0..50 {
        events += &event("work.item", json!(i));
    }
    events += &event("work.poison", json!("boom"));
    for i in 50..100 {
        events += &event("work.item", json!(i));
    }
    let out = run(&["run", config.to_str().unwrap(), "--events", "-"], &events);
    assert!(out.status.success(), "the host exits 0: {}", stderr(&out));

    // The logger received every event, and the failure report.
    let lines = s.log_lines("log.jsonl");
    let work: Vec<_> = lines
        .iter()
        .filter(|l| l["topic"].as_str().unwrap().starts_with("work."))
        .collect();
    assert_eq!(work.len(), 101);
    // Both instances' starts were announced, naming the instance and its library.
    let started: Vec<_> = lines
        .iter()
        .filter(|l| l["topic"] == "plughost.plugin.started")
        .map(|l| &l["payload"])
        .collect();
    let library = |name: &str| plugin_path(name).display().to_string();
    assert_eq!(
        started,
        [
            &json!({"name": "log", "library": library("logger")}),
            &json!({"name": "chaos", "library": library("chaos")}),
        ]
    );
    let failed: Vec<_> = lines
        .iter()
        .filter(|l| l["topic"] == "plughost.plugin.failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["payload"]["name"], "chaos");
    assert_eq!(failed[0]["payload"]["library"], library("chaos"));
    let reason = failed[0]["payload"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("chaos: told to panic on work.poison"),
        "{reason}"
    );

    // The summary: chaos failed on the 51st event; the 50 after it were dropped.
    let log = summary_row(&out, "log");
    assert_eq!(
        (log.state.as_str(), log.failed, log.dropped),
        ("stopped", 0, 0)
    );
    let chaos = summary_row(&out, "chaos");
    assert_eq!(chaos.state, "failed");
    assert_eq!(chaos.processed, 50);
    assert_eq!(chaos.failed, 1);
    assert_accounted(&chaos);
    assert!(
        stdout(&out).contains("chaos: on_event(work.poison) panicked at "),
        "{}",
        stdout(&out)
    );
    assert_no_raw_panic(&stderr(&out));
}

#[test]
fn events_published_after_a_failure_are_counted_as_dropped_for_the_failed_plugin() {
    let s = Scratch::new("after-failure");
    let config = config_with_chaos(&s, json!({"panic_on": "work.poison"}));
    let mut host = Running::start(&config);
    host.send(&event("work.poison", json!(0)));
    host.wait_for_stderr("plugin failed: on_event(work.poison)");
    for i in 0..20 {
        host.send(&event("work.item", json!(i)));
    }
    drop(host.stdin.take());
    let (out, err) = host.wait(std::time::Duration::from_secs(30));
    assert!(out.status.success(), "{}", err.join("\n"));
    // Nothing it missed goes uncounted: 21 routed to it, 1 failed, 20 dropped.
    let chaos = summary_row(&out, "chaos");
    assert_eq!(
        (chaos.state.as_str(), chaos.received, chaos.processed),
        ("failed", 21, 0)
    );
    assert_eq!((chaos.failed, chaos.dropped), (1, 20));
    let log = summary_row(&out, "log");
    // The 21 work events, and started (log, chaos) and failed (chaos).
    assert_eq!((log.processed, log.dropped), (21 + 3, 0));
}

#[test]
fn a_panic_in_stop_is_reported_as_a_failure() {
    let s = Scratch::new("panic-stop");
    let config = config_with_chaos(&s, json!({"panic_on_stop": true}));
    let out = run(
        &["run", config.to_str().unwrap(), "--events", "-"],
        &event("work.a", json!(1)),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let chaos = summary_row(&out, "chaos");
    assert_eq!((chaos.state.as_str(), chaos.processed), ("failed", 1));
    assert!(
        stdout(&out).contains("chaos: stop panicked at "),
        "{}",
        stdout(&out)
    );
    let lines = s.log_lines("log.jsonl");
    assert!(
        lines
            .iter()
            .any(|l| l["topic"] == "plughost.plugin.failed" && l["payload"]["name"] == "chaos")
    );
    assert_eq!(summary_row(&out, "log").state, "stopped");
}

#[test]
fn a_panic_in_init_refuses_to_start_with_one_line() {
    let s = Scratch::new("panic-init");
    let config = config_with_chaos(&s, json!({"panic_in_init": true}));
    let out = run(&["run", config.to_str().unwrap(), "--events", "-"], "");
    let line = assert_one_line_error(&out);
    let expected = format!(
        "error: plugin `chaos` ({}) failed to initialize: panicked at ",
        plugin_path("chaos").display()
    );
    assert!(line.starts_with(&expected), "{line}\nwanted: {expected}");
    assert!(line.ends_with("chaos: told to panic in init"), "{line}");
}

/// CPU time (user + system, in clock ticks) used so far by the thread of
/// process `pid` named `name`.
fn thread_cpu_ticks(pid: u32, name: &str) -> u64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("list the host's threads");
    for task in tasks.map_while(Result::ok) {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).expect("thread stat");
        // Fields after the command's closing parenthesis: state is the 1st,
        // utime the 12th and stime the 13th.
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        return fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    }
    panic!("no thread named {name} in process {pid}");
}

#[test]
fn a_plugin_failed_for_good_drops_its_backlog_at_once_costs_no_cpu_and_does_not_hold_up_shutdown() {
    let s = Scratch::new("failed-idle");
    let socket = s.path("host.sock");
    let config = Config::new()
        .shutdown_timeout("30s")
        .control_socket(&socket)
        .queue_capacity(100000)
        .plugin(chaos_never_restarted(
            json!({"panic_on": "work.poison", "sleep_ms": 300}),
        ))
        .write(&s);
    let mut host = Running::start(&config);
    // The poison takes 300 ms to panic: the 5000 events behind it are queued by then.
    let mut events = event("work.poison", json!(0));
    for i in 0..5000 {
        events += &event("work.item", json!(i));
    }
    host.send(&events);
    host.wait_for_stderr("plugin failed: on_event(work.poison)");
    let chaos = || {
        let (code, text, err) = ctl(&socket, &["--json", "list"]);
        assert_eq!(code, 0, "{err}");
        let list: serde_json::Value = serde_json::from_str(&text).unwrap();
        list["result"][0].clone()
    };
    // Its backlog is counted as dropped now, not when someone restarts it.
    eventually("the failed instance's backlog to be counted", || {
        chaos()["queue_depth"] == 0
    });
    let row = chaos();
    assert_eq!(
        (
            &row["state"],
            &row["received"],
            &row["failed"],
            &row["dropped"]
        ),
        (&json!("failed"), &json!(5001), &json!(1), &json!(5000)),
        "{row}"
    );
    // Idle, it costs nothing: its thread waits for an order, it does not spin.
    let pid = host.child.id();
    let before = thread_cpu_ticks(pid, "plughost:chaos");
    std::thread::sleep(std::time::Duration::from_secs(1));
    let used = thread_cpu_ticks(pid, "plughost:chaos") - before;
    assert!(
        used <= 2,
        "the failed instance's thread used {used} tick(s) of CPU in 1 s"
    );
    // What comes for it now is counted at delivery.
    for i in 0..10 {
        host.send(&event("work.late", json!(i)));
    }
    drop(host.stdin.take());
    let asked = std::time::Instant::now();
    let (out, err) = host.wait(std::time::Duration::from_secs(60));
    assert!(out.status.success(), "{}", err.join("\n"));
    // Shutdown does not wait for it (shutdown_timeout is 30 s).
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(10),
        "shutdown took {:?}",
        asked.elapsed()
    );
    assert!(
        !err.iter().any(|l| l.contains("shutdown_timeout reached")),
        "{}",
        err.join("\n")
    );
    let chaos = summary_row(&out, "chaos");
    assert_eq!(
        (
            chaos.state.as_str(),
            chaos.received,
            chaos.failed,
            chaos.dropped
        ),
        ("failed", 5011, 1, 5010)
    );
    assert_accounted(&chaos);
}

#[test]
fn handler_errors_past_the_first_ten_are_thinned_out_and_the_log_says_how_many_it_left_out() {
    let s = Scratch::new("error-log");
    let config = config_with_chaos(&s, json!({"error_on": "work.bad"}));
    let events: String = (0..2500).map(|i| event("work.bad", json!(i))).collect();
    let out = run(&["run", config.to_str().unwrap(), "--events", "-"], &events);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let logged: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("failed: chaos: told to fail on work.bad"))
        .collect();
    // The first ten, then the 1000th and the 2000th.
    assert_eq!(logged.len(), 12, "{err}");
    assert!(
        logged[9].contains(
            "(10 handler errors logged; from now on only one in 1000 is, and every one is counted as `failed` in /plugins, /metrics and the shutdown summary)"
        ),
        "{}",
        logged[9]
    );
    assert!(
        logged[10].contains("(989 handler error(s) since the last one logged were not logged; every one is counted as `failed`"),
        "{}",
        logged[10]
    );
    assert!(
        logged[11].contains("(999 handler error(s) since"),
        "{}",
        logged[11]
    );
    // The rest is said when the instance stops.
    assert!(
        err.contains("500 handler error(s) since the last one logged were not logged; every one is counted as `failed` in /plugins, /metrics and the shutdown summary"),
        "{err}"
    );
    let chaos = summary_row(&out, "chaos");
    assert_eq!(
        (chaos.state.as_str(), chaos.failed, chaos.processed),
        ("stopped", 2500, 0)
    );
}

/// A handler that returns an error: that event counts as failed, the
/// instance goes on with the next ones (no failure, no restart), and the log
/// names the event and the error. One body for `chaos` (Rust) and `chaos_c`
/// (C), in both isolation modes.
fn a_handler_error_fails_that_event_and_the_instance_goes_on(library: &str) {
    for isolation in [Isolation::Thread, Isolation::Process] {
        let case = format!("{library} in {isolation} isolation");
        let s = Scratch::new(&format!("handler-error-{library}-{isolation}"));
        let config = Config::new()
            .plugin(logger("log", &s.path("log.jsonl")).subscribe(["work.>", "plughost.plugin.*"]))
            .plugin(
                Plugin::new("erring", library)
                    .isolation(isolation)
                    .subscribe(["work.>"])
                    // Were an error a failure, the events after it would be
                    // dropped, not processed.
                    .restart(Restart::Never)
                    .config(json!({"error_on": "work.bad"})),
            )
            .write(&s);
        let events: String = (0..30)
            .map(|i| event(if i % 3 == 1 { "work.bad" } else { "work.item" }, json!(i)))
            .collect();
        let out = run(&["run", config.to_str().unwrap(), "--events", "-"], &events);
        let err = stderr(&out);
        assert!(out.status.success(), "{case}: {err}");
        assert_eq!(
            summary_row(&out, "erring"),
            Row {
                state: "stopped".into(),
                received: 30,
                processed: 20,
                dropped: 0,
                failed: 10
            },
            "{case}"
        );
        let lines = s.log_lines("log.jsonl");
        let lifecycle: Vec<(&str, &str)> = lines
            .iter()
            .filter(|l| l["topic"].as_str().unwrap().starts_with("plughost."))
            .map(|l| {
                (
                    l["topic"].as_str().unwrap(),
                    l["payload"]["name"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            lifecycle,
            [
                ("plughost.plugin.started", "log"),
                ("plughost.plugin.started", "erring"),
                ("plughost.plugin.stopped", "erring")
            ],
            "{case}: an error is no failure (no failed, no restarted)"
        );
        // Each error is logged with its event's id and topic, and the
        // plugin's message.
        let bad_ids: Vec<u64> = lines
            .iter()
            .filter(|l| l["topic"] == "work.bad")
            .map(|l| l["id"].as_u64().unwrap())
            .collect();
        assert_eq!(bad_ids.len(), 10, "{case}");
        for id in bad_ids {
            let wanted =
                format!("event {id} on work.bad failed: {library}: told to fail on work.bad");
            assert_eq!(
                err.lines().filter(|l| l.contains(&wanted)).count(),
                1,
                "{case}: {wanted:?} once in:\n{err}"
            );
        }
    }
}

#[test]
fn a_rust_handler_returning_an_error_fails_that_event_and_the_instance_goes_on() {
    a_handler_error_fails_that_event_and_the_instance_goes_on("chaos");
}

#[test]
fn a_c_handler_returning_an_error_fails_that_event_and_the_instance_goes_on() {
    a_handler_error_fails_that_event_and_the_instance_goes_on("chaos_c");
}

/// A panic in `tick` or in an HTTP route fails the instance like a panic in
/// `on_event`: reported with its reason, and the restart policy applies; the
/// host and the other instances go on. Both isolation modes.
#[test]
fn a_panic_in_tick_fails_the_instance_and_it_is_restarted() {
    for isolation in [Isolation::Thread, Isolation::Process] {
        let s = Scratch::new(&format!("panic-tick-{isolation}"));
        let config = Config::new()
            .plugin(logger("log", &s.path("log.jsonl")).subscribe(["work.>", "plughost.plugin.*"]))
            .plugin(
                Plugin::new("ticking", "chaos")
                    .isolation(isolation)
                    .subscribe(["work.>"])
                    .tick_interval("10ms")
                    .restart(Restart::OnFailure)
                    .max_restarts(1)
                    .config(json!({"panic_in_tick": true})),
            )
            .write(&s);
        let mut host = Running::start(&config);
        // The first tick panics, the restarted instance's first tick too:
        // one restart allowed, so the second failure is flapping.
        host.wait_for_stderr("flapping: 1 restarts within 60s");
        host.send(&event("work.item", json!(1)));
        drop(host.stdin.take());
        let (out, err) = host.wait(std::time::Duration::from_secs(30));
        assert!(out.status.success(), "{isolation}: {}", err.join("\n"));
        let row = summary_row(&out, "ticking");
        assert_eq!(
            (row.state.as_str(), row.received, row.dropped),
            ("flapping", 1, 1),
            "{isolation}"
        );
        assert_eq!(summary_row(&out, "log").processed, 1 + 2 + 2 + 1 + 1);
        let failed: Vec<Value> = s
            .log_lines("log.jsonl")
            .into_iter()
            .filter(|l| l["topic"] == "plughost.plugin.failed")
            .map(|l| l["payload"].clone())
            .collect();
        assert_eq!(failed.len(), 2, "{isolation}: {failed:?}");
        for payload in failed {
            let reason = payload["reason"].as_str().unwrap();
            assert!(
                reason.starts_with("tick panicked at ")
                    && reason.ends_with("chaos: told to panic in tick"),
                "{isolation}: {reason}"
            );
        }
    }
}

#[test]
fn a_panic_in_an_http_route_answers_502_and_fails_the_instance_alone() {
    for isolation in [Isolation::Thread, Isolation::Process] {
        let s = Scratch::new(&format!("panic-route-{isolation}"));
        let config = Config::new()
            .status(Status::any_port())
            .plugin(logger("log", &s.path("log.jsonl")).subscribe(["work.>", "plughost.plugin.*"]))
            .plugin(
                Plugin::new("web", "chaos")
                    .isolation(isolation)
                    .subscribe(["work.>"])
                    .restart(Restart::Never)
                    .config(json!({"routes": ["/boom"], "panic_in_route": true})),
            )
            .write(&s);
        let mut host = Running::start(&config);
        let address = host.status_address();
        let (code, body) = http(&address, "GET", "/plugins/web/boom", "");
        assert_eq!(code, 502, "{isolation}: {body}");
        assert!(
            body.contains("chaos: told to panic in route /boom"),
            "{isolation}: {body}"
        );
        host.wait_for_stderr("plugin failed: http panicked at ");
        let (_, plugins) = get_json(&address, "/plugins");
        let web = plugins
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "web")
            .unwrap();
        assert_eq!(web["state"], "failed", "{isolation}: {web}");
        host.send(&event("work.item", json!(1)));
        drop(host.stdin.take());
        let (out, err) = host.wait(std::time::Duration::from_secs(30));
        assert!(out.status.success(), "{isolation}: {}", err.join("\n"));
        assert_eq!(
            (
                summary_row(&out, "log").processed,
                summary_row(&out, "web").dropped
            ),
            (1 + 2 + 1, 1),
            "{isolation}: the host and the logger go on; the failed instance misses the event"
        );
        let failed: Vec<Value> = s
            .log_lines("log.jsonl")
            .into_iter()
            .filter(|l| l["topic"] == "plughost.plugin.failed")
            .map(|l| l["payload"].clone())
            .collect();
        assert_eq!(failed.len(), 1, "{isolation}: {failed:?}");
        assert_eq!(failed[0]["name"], "web");
        let reason = failed[0]["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("http panicked at ")
                && reason.ends_with("chaos: told to panic in route /boom"),
            "{isolation}: {reason}"
        );
    }
}
