//! Routing: wildcard subscriptions, exactly-once in-order delivery, plugins
//! publishing to plugins (themselves, with `echo = true`) without deadlock.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::Duration;

#[test]
fn a_hundred_thousand_events_reach_a_logger_exactly_once_in_order() {
    let s = Scratch::new("100k");
    let config = Config::new()
        .plugin(logger("log", &s.path("log.jsonl")).subscribe(["load.>"]))
        .write(&s);
    let events: String = (0..100_000)
        .map(|n| format!("{{\"topic\":\"load.test\",\"payload\":{{\"n\":{n}}}}}\n"))
        .collect();
    let out = run(&["run", config.to_str().unwrap(), "--events", "-"], &events);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = s.log_lines("log.jsonl");
    assert_eq!(lines.len(), 100_000);
    let mut last_id = 0;
    for (n, line) in lines.iter().enumerate() {
        assert_eq!(line["payload"], json!({"n": n}), "line {n}");
        let id = line["id"].as_u64().unwrap();
        assert!(id > last_id, "ids increase");
        last_id = id;
    }
    let row = summary_row(&out, "log");
    assert_eq!(
        row,
        Row {
            state: "stopped".into(),
            received: 100_000,
            processed: 100_000,
            dropped: 0,
            failed: 0
        }
    );
}

#[test]
fn wildcards_route_each_event_to_exactly_the_matching_subscribers() {
    let s = Scratch::new("wildcards");
    let subscriptions: [(&str, &[&str]); 5] = [
        ("star", &["orders.*"]),
        ("rest", &["orders.>"]),
        ("all", &[">"]),
        ("created", &["*.created"]),
        ("two", &["orders.created", "payments.*"]),
    ];
    let config = subscriptions
        .iter()
        .fold(Config::new(), |config, (name, sub)| {
            config.plugin(logger(name, &s.path(&format!("{name}.jsonl"))).subscribe(*sub))
        })
        .write(&s);
    let topics = [
        "orders",
        "orders.created",
        "orders.created.eu",
        "payments.created",
        "payments.refund.full",
        "misc",
    ];
    let events: String = topics.iter().map(|t| event(t, json!(null))).collect();
    let out = run(&["run", config.to_str().unwrap(), "--events", "-"], &events);
    assert!(out.status.success(), "{}", stderr(&out));
    let got = |name: &str| -> Vec<String> {
        s.log_lines(&format!("{name}.jsonl"))
            .iter()
            .map(|l| l["topic"].as_str().unwrap().to_owned())
            .filter(|t| !t.starts_with("plughost."))
            .collect()
    };
    assert_eq!(got("star"), ["orders.created"]);
    assert_eq!(got("rest"), ["orders.created", "orders.created.eu"]);
    assert_eq!(got("all"), topics);
    assert_eq!(got("created"), ["orders.created", "payments.created"]);
    assert_eq!(got("two"), ["orders.created", "payments.created"]);
}

#[test]
fn payloads_arrive_as_compact_json_or_raw_bytes() {
    let s = Scratch::new("payloads");
    let config = Config::new()
        .plugin(logger("log", &s.path("log.jsonl")).subscribe([">"]))
        .write(&s);
    let events = "{\"topic\": \"a\", \"payload\": { \"z\" : 1, \"a\" : [ 1, 2 ] }}\n{\"topic\": \"b\", \"payload_base64\": \"AAH/\"}\n";
    let out = run(&["run", config.to_str().unwrap(), "--events", "-"], events);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = s.read("log.jsonl");
    assert!(text.contains(r#""topic":"a","source":"stdin","#), "{text}");
    assert!(
        text.contains(r#""payload":{"z":1,"a":[1,2]}"#),
        "keys keep their order: {text}"
    );
    assert!(text.contains(r#""payload_base64":"AAH/""#), "{text}");
}

#[test]
fn a_malformed_input_line_is_reported_with_its_number_and_skipped() {
    let s = Scratch::new("bad-lines");
    let config = Config::new()
        .plugin(logger("log", &s.path("log.jsonl")).subscribe(["*"]))
        .write(&s);
    let events = format!(
        "{}not json\n{}{{\"topic\": \"bad topic\", \"payload\": 1}}\n{}",
        event("a", json!(1)),
        event("b", json!(2)),
        event("c", json!(3))
    );
    let out = run(&["run", config.to_str().unwrap(), "--events", "-"], &events);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    // What is wrong, and what a line should look like.
    assert!(
        err.contains(
            r#"stdin:2: skipped: expected ident at line 1 column 2; write each event as one JSON object on its own line, such as {"topic": "orders.created", "payload": {"id": 1}}"#
        ),
        "{err}"
    );
    assert!(
        err.contains("stdin:4: skipped: invalid topic `bad topic`"),
        "{err}"
    );
    assert!(
        err.contains("3 event(s) published, 2 line(s) skipped"),
        "{err}"
    );
    let topics: Vec<_> = s
        .log_lines("log.jsonl")
        .iter()
        .map(|l| l["topic"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(topics, ["a", "b", "c"]);
}

/// A forwarder subscribed to the topic it forwards to: `echo` (on `loop.>`,
/// forwarding to `loop.again`) gets 3 `loop.start` from stdin and 2
/// `loop.again` from `other`, and forwards each. Without `echo = true` it
/// never gets its own forwards back (a logger sees them all); with it, it
/// gets them too, until its 10 forwards are spent.
fn a_forwarder_on_its_own_topic(echo: Option<bool>) -> (Row, Vec<Value>) {
    let s = Scratch::new(&format!("self-publish-{echo:?}"));
    let mut forwarder = Plugin::new("echo", "chaos")
        .subscribe(["loop.>"])
        .config(json!({"forward_to": "loop.again", "forward_limit": 10}));
    if let Some(on) = echo {
        forwarder = forwarder.echo(on);
    }
    let config = Config::new()
        .plugin(logger("log", &s.path("log.jsonl")).subscribe(["loop.>"]))
        .plugin(forwarder)
        .plugin(
            Plugin::new("other", "chaos")
                .subscribe(["go"])
                .config(json!({"forward_to": "loop.again"})),
        )
        .write(&s);
    let events: String = [("loop.start", 0), ("go", 1), ("loop.start", 2)]
        .iter()
        .chain(&[("go", 3), ("loop.start", 4)])
        .map(|(topic, n)| event(topic, json!(n)))
        .collect();
    let out = run(&["run", config.to_str().unwrap(), "--events", "-"], &events);
    assert!(out.status.success(), "{}", stderr(&out));
    let row = summary_row(&out, "echo");
    assert_accounted(&row);
    (row, s.log_lines("log.jsonl"))
}

#[test]
fn a_forwarder_subscribed_to_its_own_topic_receives_only_what_others_published() {
    for echo in [None, Some(false)] {
        let (row, lines) = a_forwarder_on_its_own_topic(echo);
        // 3 from stdin + 2 from `other`: none of its own 5 forwards.
        assert_eq!((row.received, row.processed), (5, 5), "echo = {echo:?}");
        let from = |source: &str| lines.iter().filter(|l| l["source"] == source).count();
        assert_eq!(
            (from("stdin"), from("other"), from("echo")),
            (3, 2, 5),
            "the logger sees every publisher's events (echo = {echo:?})"
        );
        // Each event it got, once (stdin's and `other`'s interleave).
        let mut forwarded: Vec<u64> = lines
            .iter()
            .filter(|l| l["source"] == "echo")
            .map(|l| l["payload"].as_u64().unwrap())
            .collect();
        forwarded.sort_unstable();
        assert_eq!(forwarded, [0, 1, 2, 3, 4], "echo = {echo:?}");
    }
}

#[test]
fn with_echo_true_a_forwarder_receives_its_own_events_too() {
    let (row, lines) = a_forwarder_on_its_own_topic(Some(true));
    // 5 from others + its 10 forwards (5, then the 5 those made).
    assert_eq!((row.received, row.processed), (15, 15));
    assert_eq!(lines.iter().filter(|l| l["source"] == "echo").count(), 10);
}

/// With `echo = true`, a plugin that publishes 100 copies of each event to
/// itself through a one-place mailbox blocks on its own full mailbox: it can
/// never make room, so each copy past the first is dropped at once (counted
/// for it, with a warning), not after a wait. Its 9,900 drops finish well
/// within the test's deadline (at 10 ms each they would take 99 s).
#[test]
fn a_plugin_blocked_on_its_own_full_mailbox_drops_the_event_at_once() {
    let s = Scratch::new("self-block");
    let config = Config::new()
        .plugin(
            Plugin::new("echo", "chaos")
                .subscribe(["self"])
                .queue_capacity(1)
                .echo(true)
                .config(
                    json!({"forward_to": "self", "forward_copies": 100, "forward_limit": 10_000}),
                ),
        )
        .write(&s);
    let mut host = Running::start(&config);
    host.send(&event("self", json!(0)));
    drop(host.stdin.take());
    let (out, err) = host.wait(Duration::from_secs(60));
    let err = err.join("\n");
    assert!(out.status.success(), "{err}");
    // Each event it handles makes 100 copies: the first finds the mailbox
    // empty, the other 99 find it full. 100 events make copies (10,000 in
    // all), and the last one it takes makes none.
    let row = summary_row(&out, "echo");
    assert_eq!(
        row,
        Row {
            state: "stopped".into(),
            received: 10_001,
            processed: 101,
            dropped: 9_900,
            failed: 0
        }
    );
    let cycle = "publishers blocked on each other in a cycle";
    let warned = err
        .lines()
        .filter(|l| l.contains(cycle) && l.contains("plugin=echo"))
        .count();
    assert_eq!(warned, 9_900, "one warning per drop");
}

#[test]
fn two_plugins_publishing_to_each_other_with_full_queues_never_deadlock() {
    let s = Scratch::new("ping-pong");
    let config = Config::new()
        .plugin(
            Plugin::new("ping", "chaos")
                .subscribe(["ping"])
                .queue_capacity(1)
                .config(json!({"forward_to": "pong", "forward_limit": 3000})),
        )
        .plugin(
            Plugin::new("pong", "chaos")
                .subscribe(["pong"])
                .queue_capacity(1)
                .config(json!({"forward_to": "ping", "forward_limit": 3000})),
        )
        .write(&s);
    let events: String = (0..2000)
        .map(|i| event(if i % 2 == 0 { "ping" } else { "pong" }, json!(i)))
        .collect();
    let mut host = Running::start(&config);
    host.send(&events);
    drop(host.stdin.take());
    let (out, err) = host.wait(Duration::from_secs(60));
    let err = err.join("\n");
    assert!(out.status.success(), "{err}");
    // Whenever the two block on each other's full mailbox, the one listed
    // first (`ping`, the lower position) drops the event it is blocked on,
    // counts it as dropped for `pong`, and says so once.
    let cycle = "publishers blocked on each other in a cycle";
    let warned = |name: &str| {
        err.lines()
            .filter(|l| l.contains(cycle) && l.contains(&format!("plugin={name}")))
            .count() as u64
    };
    let ping = summary_row(&out, "ping");
    let pong = summary_row(&out, "pong");
    assert!(
        pong.dropped >= 1,
        "the queues of one slot made a cycle: {pong:?}"
    );
    assert_eq!(
        (warned("ping"), warned("pong")),
        (0, pong.dropped),
        "one warning per drop, all of them for pong:\n{err}"
    );
    // Each handles its 1000 events from stdin and forwards what it handles
    // to the other, 3000 at most; a dropped forward is still routed to (and
    // counted by) its receiver. Nothing else is lost.
    let routed_to = |other: &Row| 1000 + other.processed.min(3000);
    assert_eq!(
        ping,
        Row {
            state: "stopped".into(),
            received: routed_to(&pong),
            processed: routed_to(&pong),
            dropped: 0,
            failed: 0
        }
    );
    assert_eq!(
        pong,
        Row {
            state: "stopped".into(),
            received: routed_to(&ping),
            processed: routed_to(&ping) - pong.dropped,
            dropped: pong.dropped,
            failed: 0
        }
    );
    // ping handled all it was sent, so it forwarded its 3000.
    assert_eq!(pong.received, 4000);
}

/// Two plugins that publish 100 copies of each event to each other through
/// one-place mailboxes block on each other at once, over and over: each
/// time, the one that closes the cycle finds it and wakes `ping` (listed
/// first), which drops the one event it is blocked on. With a cycle broken
/// at once rather than after a 10 ms wait, every forward is made
/// (each delivered or dropped, and counted) well within the drain's
/// `shutdown_timeout` of 60 s; at 10 ms per drop (thousands of them) they
/// would not be.
#[test]
fn two_plugins_forwarding_bursts_to_each_other_break_every_cycle_at_once() {
    let s = Scratch::new("burst-cycles");
    let forwarder = |name: &str, to: &str| {
        Plugin::new(name, "chaos")
            .subscribe([name])
            .queue_capacity(1)
            .config(json!({"forward_to": to, "forward_copies": 100, "forward_limit": 10_000}))
    };
    let config = Config::new()
        .shutdown_timeout("60s")
        .plugin(forwarder("ping", "pong"))
        .plugin(forwarder("pong", "ping"))
        .write(&s);
    let mut host = Running::start(&config);
    host.send(&event("ping", json!(0)));
    drop(host.stdin.take());
    let (out, err) = host.wait(Duration::from_secs(120));
    let err = err.join("\n");
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("shutdown_timeout reached"), "{err}");
    let (ping, pong) = (summary_row(&out, "ping"), summary_row(&out, "pong"));
    assert_accounted(&ping);
    assert_accounted(&pong);
    // Every forward was made (100 per event handled, 10,000 at most) and
    // routed to the other: delivered or dropped, counted either way.
    let forwards = |row: &Row| (row.processed * 100).min(10_000);
    assert_eq!(pong.received, forwards(&ping), "{ping:?} {pong:?}");
    assert_eq!(ping.received, 1 + forwards(&pong), "{ping:?} {pong:?}");
    // Only `ping`, the lower position, gives up: what it drops was for pong.
    assert_eq!(ping.dropped, 0, "{ping:?}");
    assert!(pong.dropped >= 1, "{pong:?}");
    let cycle = "publishers blocked on each other in a cycle";
    let warned = err.lines().filter(|l| l.contains(cycle)).count() as u64;
    assert_eq!(warned, pong.dropped, "one warning per drop");
}

/// Events sent into a two-slot mailbox while its plugin is busy, for the drop
/// policies. A slow `chaos` takes `work.item 0` off its mailbox (the test
/// waits for its log line) and sleeps; meanwhile `work.item 1..=10` arrive at
/// once, so exactly two fit and eight meet a full mailbox. `chaos` forwards
/// what it handles to a logger, so what survived is visible, in order.
/// Returns the slow instance's summary row and the payloads it handled.
fn burst_into_a_busy_two_slot_mailbox(overflow: Overflow) -> (Row, Vec<serde_json::Value>) {
    let s = Scratch::new(&format!("overflow-{overflow}"));
    let config = Config::new()
        .plugin(
            Plugin::new("slow", "chaos")
                .subscribe(["work.>"])
                .queue_capacity(2)
                .overflow(overflow)
                .config(json!({"sleep_ms": 800, "log_events": true, "forward_to": "handled"})),
        )
        .plugin(logger("handled", &s.path("handled.jsonl")).subscribe(["handled"]))
        .write(&s);
    let mut host = Running::start(&config);
    host.send(&event("work.item", json!(0)));
    // Its mailbox is empty again and it sleeps for 800 ms: time enough for
    // the burst to arrive while it is busy.
    host.wait_for_stderr("took work.item 0");
    host.send(
        &(1..=10)
            .map(|i| event("work.item", json!(i)))
            .collect::<String>(),
    );
    drop(host.stdin.take());
    let (out, err) = host.wait(Duration::from_secs(60));
    assert!(out.status.success(), "{}", err.join("\n"));
    let handled = s
        .log_lines("handled.jsonl")
        .into_iter()
        .map(|l| l["payload"].clone())
        .collect();
    (summary_row(&out, "slow"), handled)
}

/// Under `policy`, the handler took event 0, then the mailbox kept `kept`;
/// of the 11 received, the other 8 are counted as dropped.
fn assert_the_burst_kept(policy: Overflow, kept: [u64; 2]) {
    let (row, handled) = burst_into_a_busy_two_slot_mailbox(policy);
    assert_eq!(handled, [json!(0), json!(kept[0]), json!(kept[1])]);
    assert_eq!(
        row,
        Row {
            state: "stopped".into(),
            received: 11,
            processed: 3,
            dropped: 11 - 3,
            failed: 0
        }
    );
}

#[test]
fn drop_newest_keeps_what_was_queued_first_and_counts_the_rest() {
    // The mailbox kept 1 and 2; 3..=10 found it full and were dropped.
    assert_the_burst_kept(Overflow::DropNewest, [1, 2]);
}

#[test]
fn drop_oldest_keeps_the_latest_events_and_counts_the_rest() {
    // Each arrival pushed out the oldest waiting event: 9 and 10 remained.
    assert_the_burst_kept(Overflow::DropOldest, [9, 10]);
}

/// The host's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("host status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Topics with subscribers are interned, but only up to 1 MiB of them: a
/// publisher that invents a new topic for every event cannot grow the host
/// without bound, and every such event is still delivered and counted.
#[test]
fn a_publisher_inventing_a_topic_per_event_leaves_the_host_s_memory_bounded() {
    let s = Scratch::new("intern-bound");
    let socket = s.path("host.sock");
    let config = Config::new()
        .control_socket(&socket)
        .plugin(Plugin::new("sink", "chaos").subscribe(["invented.>"]))
        .write(&s);
    let mut host = Running::start(&config);
    let pid = host.child.id();
    let padding = "p".repeat(180);
    // Topics of about 200 bytes, each new.
    let invent = |range: std::ops::Range<u64>| -> String {
        range
            .map(|n| format!("{{\"topic\":\"invented.{n}.{padding}\",\"payload\":{n}}}\n"))
            .collect()
    };
    let processed = |n: u64| {
        eventually(&format!("{n} events processed"), || {
            let (_, text, _) = ctl(&socket, &["--json", "list"]);
            let list: Value = serde_json::from_str(&text).unwrap_or_default();
            list["result"][0]["processed"] == n
        })
    };
    // 6000 topics, 1.2 MB: past the intern limit, and the route cache (4096
    // topics per publishing thread) has filled up once.
    host.send(&invent(0..6000));
    processed(6000);
    let before = rss_kib(pid);
    // 100,000 more: 20 MB of topics nobody will publish on again.
    host.send(&invent(6000..106_000));
    processed(106_000);
    let after = rss_kib(pid);
    assert!(
        after < before + 8 * 1024,
        "the host grew from {before} KiB to {after} KiB for 20 MB of new topics"
    );
    drop(host.stdin.take());
    let (out, err) = host.wait(Duration::from_secs(60));
    assert!(out.status.success(), "{}", err.join("\n"));
    assert_eq!(
        summary_row(&out, "sink"),
        Row {
            state: "stopped".into(),
            received: 106_000,
            processed: 106_000,
            dropped: 0,
            failed: 0
        }
    );
}
