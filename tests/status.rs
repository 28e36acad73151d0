//! Status and observability: RoadRunner-style endpoints over real HTTP,
//! Prometheus metrics, Lightbus-style state and metrics events, statsd.

mod common;

use common::*;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A `chaos` instance of `work.>` with `config`.
fn chaos(name: &str, config: Value) -> Plugin {
    Plugin::new(name, "chaos")
        .subscribe(["work.>"])
        .config(config)
}

fn finish(mut host: Running) -> std::process::Output {
    drop(host.stdin.take());
    let (out, err) = host.wait(Duration::from_secs(30));
    assert!(out.status.success(), "{}", err.join("\n"));
    out
}

#[test]
fn all_healthy_and_ready_answers_200_and_leaves_out_plugins_that_do_not_report() {
    let s = Scratch::new("healthy");
    let config = Config::new()
        .status(Status::any_port())
        .plugin(chaos("a", json!({"health": "ok", "ready": true})))
        .plugin(chaos("b", json!({"health": "degraded", "ready": true})))
        .plugin(logger("log", &s.path("log.jsonl")).subscribe(["work.>"]))
        .write(&s);
    let mut host = Running::start(&config);
    let address = host.status_address();
    let (code, body) = get_json(&address, "/health");
    // A degraded plugin keeps 200 (it still serves), and says so on top.
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "degraded");
    let (code, only_a) = get_json(&address, "/health?plugin=a");
    assert_eq!((code, &only_a["status"]), (200, &json!("ok")), "{only_a}");
    let (code, only_b) = get_json(&address, "/health?plugin=b");
    assert_eq!(
        (code, &only_b["status"]),
        (200, &json!("degraded")),
        "{only_b}"
    );
    let plugins = body["plugins"].as_array().unwrap();
    assert_eq!(plugins.len(), 2, "the logger reports no health: {body}");
    assert_eq!(
        plugins[0],
        json!({"name": "a", "status": "ok", "message": ""})
    );
    assert_eq!(plugins[1]["status"], "degraded");
    let (code, body) = get_json(&address, "/ready");
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["ready"], true);
    assert_eq!(body["plugins"].as_array().unwrap().len(), 2);
    finish(host);
}

#[test]
fn a_failing_plugin_makes_health_503_and_is_named() {
    let s = Scratch::new("failing");
    let config = Config::new()
        .status(Status::any_port())
        .plugin(chaos("fine", json!({"health": "ok"})))
        .plugin(chaos(
            "broken",
            json!({"health": "failing", "ready": false}),
        ))
        .write(&s);
    let mut host = Running::start(&config);
    let address = host.status_address();
    let (code, body) = get_json(&address, "/health");
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["status"], "failing");
    let broken = body["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "broken")
        .expect("named");
    assert_eq!(broken["status"], "failing");
    assert_eq!(broken["message"], "chaos: told to be failing");
    let (code, body) = get_json(&address, "/ready");
    assert_eq!(code, 503, "{body}");
    assert_eq!(
        body["plugins"][0],
        json!({"name": "broken", "ready": false, "message": "chaos: told not to be ready"})
    );
    finish(host);
}

#[test]
fn a_plugin_slower_than_check_timeout_counts_as_failing_by_timeout() {
    let s = Scratch::new("timeout");
    let config = Config::new()
        .status(Status::any_port().check_timeout("200ms"))
        .plugin(chaos(
            "slow",
            json!({"health": "ok", "ready": true, "health_delay_ms": 2000}),
        ))
        .plugin(chaos("quick", json!({"health": "ok", "ready": true})))
        .write(&s);
    let mut host = Running::start(&config);
    let address = host.status_address();
    let asked = Instant::now();
    let (code, body) = get_json(&address, "/health");
    assert!(
        asked.elapsed() < Duration::from_millis(1500),
        "answered after the timeout, not after the plugin"
    );
    assert_eq!(code, 503, "{body}");
    let plugins: HashMap<String, Value> = body["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap().to_owned(), p.clone()))
        .collect();
    assert_eq!(
        plugins["slow"],
        json!({"name": "slow", "status": "failing", "message": "timeout"})
    );
    assert_eq!(plugins["quick"]["status"], "ok");
    // And as not ready.
    let (code, body) = get_json(&address, "/ready");
    assert_eq!(code, 503, "{body}");
    assert_eq!(
        body,
        json!({"ready": false, "plugins": [
            {"name": "slow", "ready": false, "message": "timeout"},
            {"name": "quick", "ready": true, "message": ""},
        ]})
    );
    finish(host);
}

/// A failed instance (it panicked, and is not restarted) counts as failing
/// and not ready, with its failure as the message, whether or not its plugin
/// implements health and readiness.
#[test]
fn a_failed_instance_counts_as_failing_and_not_ready() {
    let s = Scratch::new("failed-not-ready");
    let poisoned = |name: &str, checks: bool| {
        let mut config = json!({"panic_on": "work.poison"});
        if checks {
            config["health"] = json!("ok");
            config["ready"] = json!(true);
        }
        chaos(name, config).restart(Restart::Never)
    };
    let config = Config::new()
        .status(Status::any_port())
        .plugin(poisoned("checked", true))
        .plugin(poisoned("unchecked", false))
        .plugin(chaos("fine", json!({"health": "ok", "ready": true})).subscribe(["other"]))
        .write(&s);
    let mut host = Running::start(&config);
    let address = host.status_address();
    let (code, body) = get_json(&address, "/health");
    assert_eq!(
        (code, body["plugins"].as_array().unwrap().len()),
        (200, 2),
        "{body}"
    );
    host.send(&event("work.poison", json!(1)));
    eventually("both to be failed", || {
        let (_, plugins) = get_json(&address, "/plugins");
        plugins.as_array().unwrap()[..2]
            .iter()
            .all(|p| p["state"] == "failed")
    });
    let is_the_failure = |message: &Value| {
        message.as_str().is_some_and(|m| {
            m.starts_with("failed: on_event(work.poison) panicked at ")
                && m.ends_with("chaos: told to panic on work.poison")
        })
    };
    let (code, health) = get_json(&address, "/health");
    assert_eq!(
        (code, &health["status"]),
        (503, &json!("failing")),
        "{health}"
    );
    let (code, ready) = get_json(&address, "/ready");
    assert_eq!((code, &ready["ready"]), (503, &json!(false)), "{ready}");
    for (i, name) in ["checked", "unchecked"].into_iter().enumerate() {
        let h = &health["plugins"][i];
        assert_eq!(
            (&h["name"], &h["status"]),
            (&json!(name), &json!("failing")),
            "{health}"
        );
        assert!(is_the_failure(&h["message"]), "{health}");
        let r = &ready["plugins"][i];
        assert_eq!(
            (&r["name"], &r["ready"]),
            (&json!(name), &json!(false)),
            "{ready}"
        );
        assert!(is_the_failure(&r["message"]), "{ready}");
    }
    assert_eq!(
        (&health["plugins"][2], &ready["plugins"][2]),
        (
            &json!({"name": "fine", "status": "ok", "message": ""}),
            &json!({"name": "fine", "ready": true, "message": ""})
        )
    );
    assert_eq!(get_json(&address, "/ready?plugin=fine").0, 200);
    finish(host);
}

#[test]
fn plugin_query_filters_to_one_instance() {
    let s = Scratch::new("filter");
    let config = Config::new()
        .status(Status::any_port())
        .plugin(chaos("good", json!({"health": "ok", "ready": true})))
        .plugin(chaos("bad", json!({"health": "failing", "ready": false})))
        .write(&s);
    let mut host = Running::start(&config);
    let address = host.status_address();
    let (code, body) = get_json(&address, "/health?plugin=good");
    assert_eq!(
        (code, body["plugins"].as_array().unwrap().len()),
        (200, 1),
        "{body}"
    );
    assert_eq!(body["plugins"][0]["name"], "good");
    let (code, _) = get_json(&address, "/health?plugin=bad");
    assert_eq!(code, 503);
    let (code, _) = get_json(&address, "/ready?plugin=good");
    assert_eq!(code, 200);
    let (code, body) = get_json(&address, "/ready?plugin=nobody");
    assert_eq!(code, 404);
    assert_eq!(body["error"], "no plugin instance named `nobody`");
    finish(host);
}

#[test]
fn while_draining_after_sigterm_health_and_ready_answer_the_configured_code() {
    let s = Scratch::new("draining");
    let config = Config::new()
        .shutdown_timeout("30s")
        .queue_capacity(10000)
        .status(Status::any_port().unavailable_status_code(599))
        .plugin(chaos(
            "slow",
            json!({"sleep_ms": 20, "health": "ok", "ready": true}),
        ))
        .write(&s);
    let mut host = Running::start(&config);
    let address = host.status_address();
    assert_eq!(get_json(&address, "/health").0, 200);
    let events: String = (0..100).map(|i| event("work.item", json!(i))).collect();
    host.send(&events);
    eventually("all 100 events queued", || {
        get_json(&address, "/plugins").1[0]["received"] == 100
    });
    host.signal(libc::SIGTERM);
    host.wait_for_stderr("SIGTERM: draining queues");
    // The drain takes about 2 s (100 x 20 ms); the server answers meanwhile.
    let unavailable = json!({"status": "unavailable", "reason": "shutting down", "plugins": []});
    assert_eq!(get_json(&address, "/health"), (599, unavailable.clone()));
    assert_eq!(get_json(&address, "/ready"), (599, unavailable));
    let (out, err) = host.wait(Duration::from_secs(30));
    assert!(out.status.success(), "{}", err.join("\n"));
    let row = summary_row(&out, "slow");
    assert_eq!(
        (row.received, row.processed),
        (100, 100),
        "drained while unavailable"
    );
}

/// Parse Prometheus/OpenMetrics text into `name{labels}` -> value, checking each line's shape.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    assert!(
        text.trim_end().ends_with("# EOF"),
        "OpenMetrics text ends with # EOF"
    );
    let mut samples = HashMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(comment) = line.strip_prefix("# ") {
            let kind = comment.split_whitespace().next().unwrap();
            assert!(
                ["TYPE", "HELP", "UNIT", "EOF"].contains(&kind),
                "bad comment line {line:?}"
            );
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample line {line:?}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "bad labels in {line:?}");
        }
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        samples.insert(series.to_owned(), value);
    }
    samples
}

#[test]
fn metrics_parse_as_prometheus_and_count_every_event_sent() {
    let s = Scratch::new("metrics");
    let config = Config::new()
        .status(Status::any_port())
        .plugin(logger("log", &s.path("log.jsonl")).subscribe(["work.>"]))
        .plugin(chaos("picky", json!({"panic_on": "work.poison"})).restart(Restart::Never))
        .write(&s);
    let mut host = Running::start(&config);
    let address = host.status_address();
    let events: String = (0..1000)
        .map(|i| event("work.item", json!(i)))
        .collect::<String>()
        + &event("work.poison", json!(0));
    host.send(&events);
    eventually("the logger to process everything", || {
        let (_, plugins) = get_json(&address, "/plugins");
        plugins[0]["processed"] == 1001
    });
    let (code, text) = http(&address, "GET", "/metrics", "");
    assert_eq!(code, 200);
    let m = parse_metrics(&text);
    assert_eq!(m["plughost_events_received_total{plugin=\"log\"}"], 1001.0);
    assert_eq!(m["plughost_events_processed_total{plugin=\"log\"}"], 1001.0);
    assert_eq!(m["plughost_events_dropped_total{plugin=\"log\"}"], 0.0);
    assert_eq!(m["plughost_events_failed_total{plugin=\"log\"}"], 0.0);
    assert_eq!(m["plughost_queue_depth{plugin=\"log\"}"], 0.0);
    assert_eq!(m["plughost_plugin_up{plugin=\"log\"}"], 1.0);
    assert_eq!(m["plughost_plugin_restarts_total{plugin=\"log\"}"], 0.0);
    assert_eq!(m["plughost_handler_seconds_count{plugin=\"log\"}"], 1001.0);
    assert_eq!(
        m["plughost_handler_seconds_bucket{le=\"+Inf\",plugin=\"log\"}"],
        1001.0
    );
    assert_eq!(
        m["plughost_events_received_total{plugin=\"picky\"}"],
        1001.0
    );
    assert_eq!(
        m["plughost_events_processed_total{plugin=\"picky\"}"],
        1000.0
    );
    assert_eq!(m["plughost_events_failed_total{plugin=\"picky\"}"], 1.0);
    assert_eq!(m["plughost_plugin_up{plugin=\"picky\"}"], 0.0);

    let (_, plugins) = get_json(&address, "/plugins");
    let picky = &plugins[1];
    assert_eq!(picky["name"], "picky");
    assert_eq!(picky["state"], "failed");
    assert_eq!(picky["language"], "rust");
    assert_eq!(picky["isolation"], "thread");
    assert_eq!(picky["queue_capacity"], 1024);
    assert!(
        picky["last_error"]
            .as_str()
            .unwrap()
            .contains("told to panic on work.poison")
    );
    finish(host);
}

#[test]
fn jobs_lists_the_reports_of_plugins_that_have_them() {
    let s = Scratch::new("jobs");
    let config = Config::new()
        .status(Status::any_port())
        .plugin(chaos("worker", json!({"jobs": ["emails", "images"]})))
        .write(&s);
    let mut host = Running::start(&config);
    let address = host.status_address();
    host.send(&event("work.item", json!(1)));
    eventually("the event to be seen", || {
        get_json(&address, "/plugins").1[0]["processed"] == 1
    });
    let (code, jobs) = get_json(&address, "/jobs");
    assert_eq!(code, 200);
    assert_eq!(
        jobs[0],
        json!({"plugin": "worker", "pipeline": "emails", "priority": 10, "ready": true, "queue": "emails-queue",
               "active": 1, "delayed": 0, "reserved": 0, "driver": "memory", "error_message": ""})
    );
    assert_eq!(jobs[1]["pipeline"], "images");
    finish(host);
}

#[test]
fn state_events_carry_lightbus_fields_and_pings_come_at_the_interval() {
    let s = Scratch::new("state");
    let config = Config::new()
        .state(
            State::new()
                .enabled(true)
                .ping_interval("200ms")
                .process_name("test-worker"),
        )
        .plugin(logger("log", &s.path("log.jsonl")).subscribe(["internal.state.>"]))
        .plugin(chaos("other", json!({})))
        .write(&s);
    let host = Running::start(&config);
    eventually("five pings logged", || {
        std::fs::read_to_string(s.path("log.jsonl"))
            .unwrap_or_default()
            .matches("\"internal.state.worker_ping\"")
            .count()
            >= 5
    });
    finish(host);
    let lines = s.log_lines("log.jsonl");
    let topics: Vec<&str> = lines.iter().map(|l| l["topic"].as_str().unwrap()).collect();
    assert_eq!(
        topics.first(),
        Some(&"internal.state.worker_started"),
        "{topics:?}"
    );
    assert_eq!(
        topics.last(),
        Some(&"internal.state.worker_stopped"),
        "{topics:?}"
    );
    let started = &lines[0]["payload"];
    assert_eq!(started["process_name"], "test-worker");
    assert_eq!(started["metrics_enabled"], false);
    assert_eq!(started["api_names"], json!(["log", "other"]));
    assert_eq!(
        started["listening_for"],
        json!(["internal.state.>", "work.>"])
    );
    assert_eq!(started["ping_interval"], 0.2);
    assert!(started["timestamp"].as_f64().unwrap() > 1.7e9);
    let pings: Vec<f64> = lines
        .iter()
        .filter(|l| l["topic"] == "internal.state.worker_ping")
        .map(|l| l["payload"]["timestamp"].as_f64().unwrap())
        .collect();
    assert!(pings.len() >= 5, "waited for five: {pings:?}");
    // A ping comes `ping_interval` after the last one, never sooner (the
    // stamps' coarse clock may round it down by one tick, at most 10 ms).
    for gap in pings.windows(2).map(|w| w[1] - w[0]) {
        assert!((0.189..0.6).contains(&gap), "pings every 200 ms: {pings:?}");
    }
    assert_eq!(
        lines.last().unwrap()["payload"]["process_name"],
        "test-worker"
    );
}

#[test]
fn metrics_events_describe_each_event_and_never_themselves() {
    let s = Scratch::new("metrics-events");
    let config = Config::new()
        .state(State::new().process_name("w1"))
        .metrics_enabled(true)
        .plugin(logger("log", &s.path("log.jsonl")).subscribe(["internal.metrics.>"]))
        .plugin(chaos("handler", json!({})))
        .write(&s);
    let events: String = (0..3)
        .map(|i| event("work.item", json!({"n": i})))
        .collect();
    let out = run(&["run", config.to_str().unwrap(), "--events", "-"], &events);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = s.log_lines("log.jsonl");
    // The payloads of `kind` events about the three work events.
    let about_work = |kind: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|l| l["topic"] == format!("internal.metrics.{kind}"))
            .map(|l| &l["payload"])
            .filter(|p| p["api_name"] == "work")
            .collect()
    };
    let common = [
        "api_name",
        "event_id",
        "event_name",
        "kwargs",
        "process_name",
        "source",
        "timestamp",
    ];
    let mut ids = None;
    for (kind, extra) in [
        ("event_fired", &[][..]),
        ("event_received", &["listener"][..]),
        ("event_processed", &["duration_ms", "listener"][..]),
    ] {
        let payloads = about_work(kind);
        assert_eq!(payloads.len(), 3, "{kind}: {payloads:?}");
        let mut wanted: Vec<&str> = common.iter().chain(extra).copied().collect();
        wanted.sort();
        for (n, payload) in payloads.iter().enumerate() {
            let keys: Vec<&str> = payload
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(keys, wanted, "{kind}: {payload}");
            assert_eq!(
                (
                    &payload["process_name"],
                    &payload["event_name"],
                    &payload["kwargs"],
                    &payload["source"]
                ),
                (
                    &json!("w1"),
                    &json!("item"),
                    &json!({"n": n}),
                    &json!("stdin")
                ),
                "{kind}: {payload}"
            );
            assert!(payload["timestamp"].as_f64().unwrap() > 1.7e9, "{payload}");
            if !extra.is_empty() {
                assert_eq!(payload["listener"], "handler", "{kind}: {payload}");
            }
            if kind == "event_processed" {
                let took = payload["duration_ms"].as_f64();
                assert!(took.is_some_and(|ms| ms >= 0.0), "{payload}");
            }
        }
        // The three kinds describe the same three events.
        let these: Vec<u64> = payloads
            .iter()
            .map(|p| p["event_id"].as_u64().unwrap())
            .collect();
        assert_eq!(ids.get_or_insert_with(|| these.clone()), &these, "{kind}");
    }
    assert!(
        lines.iter().all(|l| !l["payload"]["api_name"]
            .as_str()
            .unwrap_or("")
            .starts_with("internal.metrics")),
        "no metrics about metrics events"
    );
}

#[test]
fn statsd_sends_a_counter_per_event_to_a_real_udp_socket() {
    let s = Scratch::new("statsd");
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    let config = Config::new()
        .plugin(
            Plugin::new("stats", "statsd")
                .subscribe(["work.>"])
                .config(json!({"port": port, "prefix": "app"})),
        )
        .write(&s);
    let events: String = (0..5)
        .map(|i| event(if i % 2 == 0 { "work.even" } else { "work.odd" }, json!(i)))
        .collect();
    let out = run(&["run", config.to_str().unwrap(), "--events", "-"], &events);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut packets = Vec::new();
    let mut buffer = [0u8; 512];
    for _ in 0..5 {
        let n = socket.recv(&mut buffer).expect("a statsd packet");
        packets.push(String::from_utf8_lossy(&buffer[..n]).into_owned());
    }
    assert_eq!(
        packets,
        [
            "app.work.even:1|c",
            "app.work.odd:1|c",
            "app.work.even:1|c",
            "app.work.odd:1|c",
            "app.work.even:1|c"
        ]
    );
}

/// With `[metrics]` on, statsd sends a timer
/// `<prefix>.handler.<instance>:<ms>|ms` for every
/// `internal.metrics.event_processed` it receives (and counts that event too).
#[test]
fn statsd_sends_a_handler_timer_for_every_event_processed() {
    let s = Scratch::new("statsd-timer");
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    let config = Config::new()
        .metrics_enabled(true)
        .plugin(
            Plugin::new("stats", "statsd")
                .subscribe(["work.>", "internal.metrics.event_processed"])
                .config(json!({"port": port, "prefix": "app"})),
        )
        .plugin(chaos("handler", json!({})))
        .write(&s);
    let events: String = (0..3).map(|i| event("work.item", json!(i))).collect();
    let out = run(&["run", config.to_str().unwrap(), "--events", "-"], &events);
    assert!(out.status.success(), "{}", stderr(&out));
    // Everything was sent before the host exited: read what the socket holds.
    socket.set_nonblocking(true).unwrap();
    let mut packets = Vec::new();
    let mut buffer = [0u8; 512];
    while let Ok(n) = socket.recv(&mut buffer) {
        packets.push(String::from_utf8_lossy(&buffer[..n]).into_owned());
    }
    let count = |wanted: &str| packets.iter().filter(|p| *p == wanted).count();
    // `handler` and `stats` each processed the 3 work events: 6
    // event_processed, none about a metrics event.
    assert_eq!(count("app.work.item:1|c"), 3, "{packets:?}");
    assert_eq!(
        count("app.internal.metrics.event_processed:1|c"),
        6,
        "{packets:?}"
    );
    for listener in ["handler", "stats"] {
        let timers: Vec<f64> = packets
            .iter()
            .filter_map(|p| p.strip_prefix(&format!("app.handler.{listener}:")))
            .map(|rest| {
                let ms = rest
                    .strip_suffix("|ms")
                    .expect("a timer line ends with |ms");
                assert_eq!(ms.split_once('.').map(|(_, f)| f.len()), Some(3), "{rest}");
                ms.parse().unwrap()
            })
            .collect();
        assert_eq!(timers.len(), 3, "{listener}: {packets:?}");
        assert!(timers.iter().all(|ms| *ms >= 0.0), "{timers:?}");
    }
    assert_eq!(packets.len(), 3 + 6 + 6, "nothing else: {packets:?}");
}
