//! Size limits on the way to and from a plugin's own process: every event
//! the host accepts reaches it, whatever its batch holds; what a plugin may
//! not send (a payload over `max_event_bytes`, a topic over
//! `MAX_TOPIC_BYTES`, a huge log line or HTTP answer) is refused at its call
//! with the reason, in both isolation modes, and never kills the plugin.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::Duration;

/// An input line with a payload of `n` zero bytes (`n` a multiple of 3).
fn zeros(topic: &str, n: usize) -> String {
    assert_eq!(n % 3, 0);
    format!(
        "{{\"topic\":{topic:?},\"payload_base64\":\"{}\"}}\n",
        "A".repeat(n / 3 * 4)
    )
}

fn plugin_row(address: &str, name: &str) -> Value {
    let (_, plugins) = get_json(address, "/plugins");
    plugins
        .as_array()
        .and_then(|list| list.iter().find(|p| p["name"] == name).cloned())
        .unwrap_or_else(|| panic!("no {name} in {plugins}"))
}

/// The lines a `chaos` with `log_sizes` wrote: (topic, payload bytes).
fn took(lines: &[String]) -> Vec<(String, usize)> {
    lines
        .iter()
        .filter_map(|line| line.split_once("took ").map(|(_, rest)| rest))
        .filter_map(|rest| {
            let mut words = rest.split_whitespace();
            Some((words.next()?.to_owned(), words.next()?.parse().ok()?))
        })
        .collect()
}

/// The repro: while the instance is busy with a small event, three
/// events of 30 MiB and five small ones queue up and are taken as one batch
/// (90 MiB, over the old single-frame limit of 64 MiB).
#[test]
fn a_batch_of_big_events_reaches_a_process_plugin_whole_and_in_order() {
    let s = Scratch::new("big-batch");
    let release = s.path("release");
    let config = Config::new()
        .status(Status::any_port())
        .plugin(
            Plugin::new("proc", "chaos")
                .isolation(Isolation::Process)
                .subscribe(["work.>"])
                .config(json!({
                    "sleep_on": "work.first",
                    "wait_for": release.display().to_string(),
                    "log_sizes": true,
                })),
        )
        .write(&s);
    let mut host = Running::start(&config);
    let address = host.status_address();
    host.send(&event("work.first", json!(0)));
    host.wait_for_stderr("took work.first");
    let mut rest = String::new();
    for _ in 0..3 {
        rest += &zeros("work.big", 30 << 20);
    }
    for i in 0..5 {
        rest += &event("work.item", json!(i));
    }
    host.send(&rest);
    eventually("the eight events to wait in the mailbox", || {
        plugin_row(&address, "proc")["queue_depth"] == 8
    });
    std::fs::write(&release, "").unwrap();
    drop(host.stdin.take());
    let (out, err) = host.wait(Duration::from_secs(60));
    assert!(out.status.success(), "{}", err.join("\n"));
    let row = summary_row(&out, "proc");
    assert_eq!(
        (
            row.state.as_str(),
            row.received,
            row.processed,
            row.dropped,
            row.failed
        ),
        ("stopped", 9, 9, 0, 0),
        "{}",
        err.join("\n")
    );
    let mut expected = vec![("work.first".to_owned(), 1)];
    expected.extend(std::iter::repeat_n(("work.big".to_owned(), 30 << 20), 3));
    expected.extend(std::iter::repeat_n(("work.item".to_owned(), 1), 5));
    assert_eq!(took(&err), expected, "every byte, in order");
    assert!(!err.join("\n").contains("its process"), "it never died");
}

/// The frame limit follows `max_event_bytes`: an event over the old fixed
/// limit of 64 MiB, accepted by the host, reaches the process plugin.
#[test]
fn an_event_as_large_as_max_event_bytes_allows_reaches_a_process_plugin() {
    let s = Scratch::new("big-event");
    let config = Config::new()
        .max_event_bytes(72 << 20)
        .plugin(
            Plugin::new("proc", "chaos")
                .isolation(Isolation::Process)
                .subscribe(["work.>"])
                .config(json!({"log_sizes": true})),
        )
        .write(&s);
    let events = zeros("work.big", 66 << 20) + &event("work.item", json!(1));
    let out = run(&["run", config.to_str().unwrap(), "--events", "-"], &events);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let row = summary_row(&out, "proc");
    assert_eq!(
        (row.received, row.processed, row.dropped),
        (2, 2, 0),
        "{err}"
    );
    let lines: Vec<String> = err.lines().map(str::to_owned).collect();
    assert_eq!(
        took(&lines),
        [
            ("work.big".to_owned(), 66 << 20),
            ("work.item".to_owned(), 1)
        ]
    );
}

/// `chaos` in `isolation` publishing `publish_bytes` bytes on `topic` for
/// each event; returns the run's output and stderr.
fn publishing(isolation: Isolation, topic: &str, bytes: usize) -> (std::process::Output, String) {
    let s = Scratch::new(&format!("publish-limit-{isolation}"));
    let config = Config::new()
        .plugin(logger("sink", &s.path("sink.jsonl")).subscribe([">"]))
        .plugin(
            Plugin::new("pub", "chaos")
                .isolation(isolation)
                .subscribe(["work.>"])
                .config(json!({"publish_topic": topic, "publish_bytes": bytes})),
        )
        .write(&s);
    let out = run(
        &["run", config.to_str().unwrap(), "--events", "-"],
        &(event("work.item", json!(1)) + &event("work.item", json!(2))),
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let sink: Vec<Value> = s.log_lines("sink.jsonl");
    assert_eq!(
        sink.iter()
            .filter(|line| line["topic"] == "work.item")
            .count(),
        2
    );
    assert!(
        !sink
            .iter()
            .any(|line| line["topic"].as_str().is_some_and(|t| t.starts_with("big"))),
        "nothing published reached the sink"
    );
    (out, err)
}

#[test]
fn a_process_plugin_publishing_over_max_event_bytes_gets_an_error_and_stays_up() {
    let (out, err) = publishing(Isolation::Process, "big.out", (64 << 20) + 3);
    let row = summary_row(&out, "pub");
    assert_eq!(
        (
            row.state.as_str(),
            row.received,
            row.processed,
            row.failed,
            row.dropped
        ),
        ("stopped", 2, 0, 2, 0),
        "each publish refused, each event failed with the error: {err}"
    );
    // The same words as for a thread plugin (the bus's).
    let reason = "the event is 67108867 bytes, more than max_event_bytes (67108864)";
    assert!(
        err.lines()
            .any(|l| l.contains("failed: ") && l.contains(reason)),
        "the plugin saw the error (its event failed with it): {err}"
    );
    assert!(
        err.lines()
            .any(|l| l.contains("plugin=\"pub\"")
                && l.contains(&format!("publish refused: {reason}"))),
        "the host's log says so for the plugin: {err}"
    );
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l == "refused: 2 event(s) from plugin (too_large)"),
        "and counts it: {}",
        stdout(&out)
    );
    assert!(!err.contains("its process"), "never killed: {err}");
}

#[test]
fn a_topic_over_max_topic_bytes_is_refused_in_both_isolation_modes() {
    for isolation in [Isolation::Thread, Isolation::Process] {
        // 70,000 bytes: more than a 16-bit length, once cut silently.
        let topic = format!("big.{}", "t".repeat(70_000));
        let (out, err) = publishing(isolation, &topic, 1);
        let row = summary_row(&out, "pub");
        assert_eq!(
            (row.received, row.processed, row.failed),
            (2, 0, 2),
            "{isolation}: {err}"
        );
        assert!(
            err.contains("(70004 bytes): longer than 4096 bytes (MAX_TOPIC_BYTES)"),
            "{isolation}: {err}"
        );
        assert!(!err.contains("its process"), "{isolation}: {err}");
    }
}

#[test]
fn a_huge_log_line_is_cut_with_a_marker_in_both_isolation_modes() {
    // 65 MiB: over the old frame limit in process mode, which killed the child.
    for (isolation, bytes) in [(Isolation::Thread, 1 << 20), (Isolation::Process, 65 << 20)] {
        let s = Scratch::new(&format!("log-cut-{isolation}"));
        let config = Config::new()
            .plugin(
                Plugin::new("loud", "chaos")
                    .isolation(isolation)
                    .subscribe(["work.>"])
                    .config(json!({"log_bytes": bytes})),
            )
            .write(&s);
        let out = run(
            &["run", config.to_str().unwrap(), "--events", "-"],
            &event("work.item", json!(1)),
        );
        let err = stderr(&out);
        assert!(out.status.success(), "{isolation}");
        let row = summary_row(&out, "loud");
        assert_eq!((row.processed, row.failed), (1, 0), "{isolation}");
        let line = err
            .lines()
            .find(|l| l.contains("xxxxxxxxxx"))
            .unwrap_or_else(|| panic!("{isolation}: no log line"));
        assert!(line.len() < 70_000, "{isolation}: {} bytes", line.len());
        let kept = line.matches('x').count();
        assert!(
            line.contains(&format!(" [... {} more bytes cut]", bytes - kept)),
            "{isolation}: {}",
            &line[line.len() - 200..]
        );
        assert!(!err.contains("its process"), "{isolation}");
    }
}

#[test]
fn an_http_answer_over_max_event_bytes_from_a_process_plugin_is_a_502() {
    let s = Scratch::new("http-answer-limit");
    let config = Config::new()
        .max_event_bytes(1 << 20)
        .status(Status::any_port())
        .plugin(
            Plugin::new("web", "chaos")
                .isolation(Isolation::Process)
                .config(json!({"routes": ["/big"], "http_body_bytes": (1 << 20) + 1})),
        )
        .write(&s);
    let mut host = Running::start(&config);
    let address = host.status_address();
    let (code, body) = http(&address, "GET", "/plugins/web/big", "");
    assert_eq!(code, 502, "{body}");
    let reason =
        "HTTP answer refused: answer of 1048577 bytes is over max_event_bytes (1048576 bytes)";
    assert!(body.contains(reason), "{body}");
    host.wait_for_stderr(reason);
    let row = plugin_row(&address, "web");
    assert_eq!(
        (row["state"].as_str(), row["restarts"].as_u64()),
        (Some("running"), Some(0))
    );
    drop(host.stdin.take());
    let (out, err) = host.wait(Duration::from_secs(30));
    assert!(out.status.success());
    assert!(!err.join("\n").contains("its process"), "never killed");
}

/// The old limit killed the child over a 65 MiB answer: now it is refused
/// the same way at the default `max_event_bytes` (64 MiB).
#[test]
fn an_http_answer_over_the_old_frame_limit_no_longer_kills_the_process() {
    let s = Scratch::new("http-answer-kill");
    let config = Config::new()
        .status(Status::any_port())
        .plugin(
            Plugin::new("web", "chaos")
                .isolation(Isolation::Process)
                .config(json!({"routes": ["/big"], "http_body_bytes": 65 << 20})),
        )
        .write(&s);
    let mut host = Running::start(&config);
    let address = host.status_address();
    let (code, body) = http(&address, "GET", "/plugins/web/big", "");
    assert_eq!(code, 502, "{body}");
    assert!(
        body.contains("over max_event_bytes (67108864 bytes)"),
        "{body}"
    );
    let row = plugin_row(&address, "web");
    assert_eq!(
        (row["state"].as_str(), row["restarts"].as_u64()),
        (Some("running"), Some(0))
    );
    drop(host.stdin.take());
    let (out, _) = host.wait(Duration::from_secs(30));
    assert!(out.status.success());
}

/// A process plugin's `call` or `cast` command larger than
/// `max_event_bytes` is refused at the call, with the reason (the call's
/// answer says it; the host's log says it for a cast), and the plugin goes
/// on.
#[test]
fn a_process_plugin_s_command_over_max_event_bytes_is_refused_at_its_call() {
    let s = Scratch::new("command-limit");
    let config = Config::new()
        .max_event_bytes(1024)
        .plugin(logger("log", &s.path("log.jsonl")).subscribe(["chaos.answer"]))
        .plugin(
            Plugin::new("caller", "chaos")
                .isolation(Isolation::Process)
                .subscribe(["cmd.>"])
                .config(json!({"call_on": "cmd.call", "cast_on": "cmd.cast", "call_pad": 2000})),
        )
        .write(&s);
    let events = event("cmd.call", json!({"cmd": "list"}))
        + &event("cmd.cast", json!({"cmd": "list"}))
        + &event("cmd.call", json!({"cmd": "list"}));
    let out = run(&["run", config.to_str().unwrap(), "--events", "-"], &events);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    // {"cmd":"list","pad":"x...x"}: 21 + 2000 + 2 bytes.
    let reason = "command of 2023 bytes is over max_event_bytes (1024 bytes)";
    let answers: Vec<Value> = s
        .log_lines("log.jsonl")
        .into_iter()
        .map(|l| l["payload"].clone())
        .collect();
    let refused = json!({"ok": false, "error": format!("call refused: {reason}")});
    assert_eq!(answers, [refused.clone(), refused]);
    for what in ["call", "cast"] {
        assert!(
            err.lines().any(|l| l.contains("plugin=\"caller\"")
                && l.contains(&format!("{what} refused: {reason}"))),
            "{what}: {err}"
        );
    }
    let row = summary_row(&out, "caller");
    assert_eq!((row.processed, row.failed), (3, 0), "it goes on");
    assert!(!err.contains("its process"), "never killed: {err}");
}
