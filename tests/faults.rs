//! Faults: a misbehaving plugin is marked failed and reported; the host and
//! every other plugin go on. Restarts are off here (`restart = "never"`), so
//! each failure stays visible; tests/supervision.rs covers restart policies.

mod common;

use common::*;
use serde_json::json;

fn config_with_chaos(s: &Scratch, chaos: &str) -> std::path::PathBuf {
    s.config(&format!(
        r#"
[[plugin]]
name = "log"
library = "logger"
subscribe = ["work.>", "plughost.plugin.*"]
[plugin.config]
path = {:?}

[[plugin]]
name = "chaos"
library = "chaos"
subscribe = ["work.>"]
restart = "never"
[plugin.config]
{chaos}
"#,
        s.path("log.jsonl").display().to_string()
    ))
}

#[test]
fn a_panic_in_on_event_fails_that_plugin_only() {
    let s = Scratch::new("panic-event");
    let config = config_with_chaos(&s, "panic_on = \"work.poison\"");
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
    let config = config_with_chaos(&s, "panic_on = \"work.poison\"");
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
    let config = config_with_chaos(&s, "panic_on_stop = true");
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
    let config = config_with_chaos(&s, "panic_in_init = true");
    let out = run(&["run", config.to_str().unwrap(), "--events", "-"], "");
    let line = assert_one_line_error(&out);
    let expected = format!(
        "error: plugin `chaos` ({}) failed to initialize: panicked at ",
        plugin_path("chaos").display()
    );
    assert!(line.starts_with(&expected), "{line}\nwanted: {expected}");
    assert!(line.ends_with("chaos: told to panic in init"), "{line}");
}
