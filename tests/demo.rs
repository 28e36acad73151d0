//! The demo of the README's quick start: the repository's own `plugins.toml`
//! run on `demo/events.jsonl`, as `plughost run plugins.toml --events
//! demo/events.jsonl` runs it after `cargo build --release`. Only where the
//! plugins are and where the audit log goes are changed.

mod common;

use common::*;
use serde_json::{Value, json};
use std::path::Path;

fn repo_file(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// `text` with `from` (which must occur exactly once) replaced by `to`.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "{from:?} once in plugins.toml"
    );
    text.replacen(from, to, 1)
}

#[test]
fn the_readme_demo_runs_and_the_audit_log_holds_every_order_event_once_in_order() {
    let s = Scratch::new("demo");
    let demo = std::fs::read_to_string(repo_file("plugins.toml")).unwrap();
    let demo = replace_once(
        &demo,
        r#"plugin_dirs = ["target/release"]"#,
        &format!("plugin_dirs = [{:?}]", plugin_dir().display().to_string()),
    );
    let demo = replace_once(
        &demo,
        r#"path = "demo-audit.log""#,
        &format!(
            "path = {:?}",
            s.path("demo-audit.log").display().to_string()
        ),
    );
    let config = s.write("plugins.toml", &demo);
    let events_path = repo_file("demo/events.jsonl");
    let events_text = std::fs::read_to_string(&events_path).unwrap();
    let events_arg = events_path.to_str().unwrap();
    let out = run(
        &["run", config.to_str().unwrap(), "--events", events_arg],
        "",
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_no_raw_panic(&err);

    // The demo's events, and its one malformed line, from the file itself.
    let mut events = Vec::new();
    let mut malformed = Vec::new();
    for (n, line) in events_text.lines().enumerate() {
        match serde_json::from_str::<Value>(line) {
            Ok(event) => events.push(event),
            Err(_) => malformed.push(n + 1),
        }
    }
    assert_eq!(malformed.len(), 1, "the demo shows one malformed line");
    assert!(
        err.contains(&format!("{events_arg}:{}: skipped: ", malformed[0])),
        "the malformed line is reported with its number:\n{err}"
    );
    assert!(
        err.contains(&format!(
            "end of input: {} event(s) published, 1 line(s) skipped",
            events.len()
        )),
        "{err}"
    );
    let topic = |e: &Value| e["topic"].as_str().unwrap().to_owned();
    let tokens = |e: &Value| topic(e).split('.').count();
    let orders: Vec<&Value> = events
        .iter()
        .filter(|e| topic(e).starts_with("orders."))
        .collect();
    let payments = events
        .iter()
        .filter(|e| topic(e).starts_with("payments.") && tokens(e) == 2)
        .count() as u64;
    // chaos subscribes to `orders.*`: one token after `orders`.
    let for_chaos = orders.iter().filter(|e| tokens(e) == 2).count() as u64;

    let audit = s.log_lines("demo-audit.log");
    let of = |prefix: &str| -> Vec<&Value> {
        audit
            .iter()
            .filter(|l| topic(l).starts_with(prefix))
            .collect()
    };
    // Every order event, once, in the order of the file.
    let logged_orders: Vec<(String, Value)> = of("orders.")
        .iter()
        .map(|l| (topic(l), l["payload"].clone()))
        .collect();
    let sent_orders: Vec<(String, Value)> = orders
        .iter()
        .map(|e| (topic(e), e["payload"].clone()))
        .collect();
    assert_eq!(logged_orders, sent_orders);
    // The host's lifecycle events, in the order it published them.
    let lifecycle: Vec<(String, Value)> = of("plughost.plugin.")
        .iter()
        .map(|l| {
            let mut payload = l["payload"].clone();
            // The reason holds a source location; its start is checked below.
            payload.as_object_mut().unwrap().remove("reason");
            (topic(l).replace("plughost.plugin.", ""), payload)
        })
        .collect();
    let library = |name: &str| plugin_path(name).display().to_string();
    let entry = |what: &str, name: &str, lib: &str| {
        (
            what.to_owned(),
            json!({"name": name, "library": library(lib)}),
        )
    };
    let mut restarted = entry("restarted", "chaos", "chaos");
    restarted.1["restarts"] = json!(1);
    assert_eq!(
        lifecycle,
        [
            entry("started", "audit", "logger"),
            entry("started", "orders-count", "counter"),
            entry("started", "payments-count", "counter"),
            entry("started", "chaos", "chaos"),
            entry("failed", "chaos", "chaos"),
            restarted,
            entry("stopped", "chaos", "chaos"),
            entry("stopped", "payments-count", "counter"),
            entry("stopped", "orders-count", "counter"),
        ]
    );
    let failed = of("plughost.plugin.failed");
    let reason = failed[0]["payload"]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("on_event(orders.poison) panicked at ")
            && reason.ends_with("chaos: told to panic on orders.poison"),
        "{reason}"
    );
    // The counters' summaries, from the instances stopped last first.
    let summaries: Vec<(String, u64)> = of("counter.summary")
        .iter()
        .map(|l| {
            (
                l["source"].as_str().unwrap().to_owned(),
                l["payload"]["total"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summaries,
        [
            ("payments-count".to_owned(), payments),
            ("orders-count".to_owned(), orders.len() as u64),
        ]
    );
    // Nothing else.
    assert_eq!(
        audit.len(),
        logged_orders.len() + lifecycle.len() + summaries.len()
    );

    // The summary: chaos failed once on the poison, restarted, and handled
    // the rest; everything else handled everything.
    let all = audit.len() as u64;
    let row = |received, processed, failed| Row {
        state: "stopped".into(),
        received,
        processed,
        dropped: 0,
        failed,
    };
    assert_eq!(summary_row(&out, "audit"), row(all, all, 0));
    let orders = orders.len() as u64;
    assert_eq!(summary_row(&out, "orders-count"), row(orders, orders, 0));
    assert_eq!(
        summary_row(&out, "payments-count"),
        row(payments, payments, 0)
    );
    assert_eq!(summary_row(&out, "chaos"), row(for_chaos, for_chaos - 1, 1));
}
