//! Control and live change: `plughost ctl` over the real control socket,
//! reload (ctl and SIGHUP) without losing queued events, plugins calling the
//! host, background ticks, plugin HTTP routes, HTTP ingest, webhook.

mod common;

use common::*;
use serde_json::json;
use std::io::{BufRead, Read, Write};
use std::time::Duration;

fn finish(mut host: Running) -> std::process::Output {
    drop(host.stdin.take());
    let (out, err) = host.wait(Duration::from_secs(30));
    assert!(out.status.success(), "{}", err.join("\n"));
    out
}

#[test]
fn ctl_lists_reports_publishes_and_stops_starts_restarts() {
    let s = Scratch::new("ctl");
    let socket = s.path("host.sock");
    let config = Config::new()
        .control_socket(&socket)
        .plugin(logger("log", &s.path("log.jsonl")).subscribe(["work.>", "counter.summary"]))
        .plugin(Plugin::new("count", "counter").subscribe(["work.>"]))
        .write(&s);
    let host = Running::start(&config);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let (code, text, _) = ctl(&socket, &["list"]);
    assert_eq!(code, 0);
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().take(2).eq(["log", "running"])),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().take(2).eq(["count", "running"])),
        "{text}"
    );

    let (code, text, _) = ctl(&socket, &["publish", "work.hello", r#"{"n":1}"#]);
    assert_eq!(code, 0);
    assert!(text.starts_with("published event "), "{text}");
    let (code, text, _) = ctl(&socket, &["status", "log"]);
    assert_eq!(code, 0);
    assert!(text.contains("state           running"), "{text}");

    // Stopping the counter runs its stop: it publishes its summary.
    assert_eq!(
        ctl(&socket, &["stop", "count"]),
        (0, "stopped count\n".to_owned(), String::new())
    );
    let (_, json, _) = ctl(&socket, &["--json", "list"]);
    let list: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(list["result"][1]["state"], "stopped");
    let (code, _, err) = ctl(&socket, &["stop", "count"]);
    assert_eq!((code, err.trim()), (1, "error: `count` is already stopped"));
    assert_eq!(ctl(&socket, &["start", "count"]).0, 0);
    assert_eq!(ctl(&socket, &["restart", "log"]).0, 0);
    let (_, json, _) = ctl(&socket, &["--json", "status", "log"]);
    let status: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(status["result"]["plugins"][0]["restarts"], 1);
    let (code, _, err) = ctl(&socket, &["restart", "nobody"]);
    assert_eq!(
        (code, err.trim()),
        (1, "error: no plugin instance named `nobody`")
    );

    finish(host);
    let lines = s.log_lines("log.jsonl");
    assert_eq!(
        lines[0]["payload"],
        json!({"n": 1}),
        "ctl publish reached the logger"
    );
    let summaries: Vec<_> = lines
        .iter()
        .filter(|l| l["topic"] == "counter.summary")
        .collect();
    assert_eq!(
        summaries[0]["payload"]["total"], 1,
        "stop ran the counter's stop"
    );
    assert!(!socket.exists(), "the socket is removed at exit");
}

#[test]
fn ctl_says_clearly_when_no_host_listens() {
    let s = Scratch::new("ctl-nobody");
    let (code, _, err) = ctl(&s.path("none.sock"), &["list"]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with(&format!(
            "error: no plughost is listening on {}",
            s.path("none.sock").display()
        )),
        "{err}"
    );
}

/// A thread publishing `work.item` events with increasing payloads into a
/// running host, until told to stop.
struct Publisher {
    host: Running,
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<u64>,
}

fn publisher(mut host: Running) -> Publisher {
    let mut stdin = host.stdin.take().unwrap();
    let (stop, stop_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let mut n = 0u64;
        while stop_rx.try_recv().is_err() {
            for _ in 0..50 {
                stdin
                    .write_all(event("work.item", json!(n)).as_bytes())
                    .unwrap();
                n += 1;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        n
    });
    Publisher { host, stop, thread }
}

impl Publisher {
    /// Stop, end the input and wait for the host to exit 0: (events sent,
    /// its output, its log lines).
    fn finish(self) -> (u64, std::process::Output, Vec<String>) {
        self.stop.send(()).unwrap();
        let sent = self.thread.join().unwrap();
        let (out, err) = self.host.wait(Duration::from_secs(60));
        assert!(out.status.success(), "{}", err.join("\n"));
        (sent, out, err)
    }
}

/// The logger's file `name` holds the `sent` events, once each, in order.
fn assert_every_event_once_in_order(s: &Scratch, name: &str, sent: u64) {
    assert_every_event_once_in_order_but_the_moved(s, name, sent, 0);
}

/// The logger's file `name` holds the `sent` events once each, in order but
/// for at most `moved` of them (events moved from an old mailbox to a new
/// one): without those, the rest is in order.
fn assert_every_event_once_in_order_but_the_moved(s: &Scratch, name: &str, sent: u64, moved: u64) {
    let payloads: Vec<u64> = s
        .log_lines(name)
        .iter()
        .map(|l| l["payload"].as_u64().expect("a number"))
        .collect();
    let mut sorted = payloads.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..sent).collect::<Vec<_>>(), "each event once");
    // The longest run in order (patience sorting): what is not in it came late.
    let mut tails: Vec<u64> = Vec::new();
    for &p in &payloads {
        match tails.binary_search(&p) {
            Ok(_) => unreachable!("each event once"),
            Err(at) if at == tails.len() => tails.push(p),
            Err(at) => tails[at] = p,
        }
    }
    let out_of_order = sent - tails.len() as u64;
    assert!(
        out_of_order <= moved,
        "{out_of_order} event(s) out of order, {moved} moved"
    );
}

/// The reload tests' instances before `changed`: `keep` logs `work.>`
/// into keep.jsonl, `events` the lifecycle and counters' summaries into
/// events.jsonl.
fn reload_config(s: &Scratch, socket: &std::path::Path) -> Config {
    Config::new()
        .control_socket(socket)
        .plugin(logger("keep", &s.path("keep.jsonl")).subscribe(["work.>"]))
        .plugin(
            logger("events", &s.path("events.jsonl"))
                .subscribe(["plughost.plugin.*", "counter.summary"]),
        )
}

/// Wait until instance `name` has processed at least `n` more events than
/// `since` (events flow through it); its processed count then.
fn flowing(socket: &std::path::Path, name: &str, since: u64, n: u64) -> u64 {
    let mut processed = 0;
    eventually(&format!("{n} more events processed by {name}"), || {
        processed = listed(socket, name)["processed"].as_u64().unwrap_or(0);
        processed >= since + n
    });
    processed
}

/// `changed`: a `chaos` of `work.>` sleeping `sleep_ms` per event.
fn changed(sleep_ms: u64) -> Plugin {
    Plugin::new("changed", "chaos")
        .subscribe(["work.>"])
        .config(json!({"sleep_ms": sleep_ms}))
}

fn reload_keeps_unchanged_instances_flowing(via_signal: bool) {
    let s = Scratch::new(if via_signal { "sighup" } else { "reload" });
    let socket = s.path("host.sock");
    let config = reload_config(&s, &socket)
        .plugin(changed(0))
        .plugin(Plugin::new("removed", "counter").subscribe(["work.>"]))
        .write(&s);
    let host = Running::start(&config);
    let mut publishing = publisher(host);
    let before = flowing(&socket, "keep", 0, 200);
    reload_config(&s, &socket)
        .plugin(changed(1))
        .plugin(Plugin::new("added", "counter").subscribe(["work.>"]))
        .write(&s);
    if via_signal {
        publishing.host.signal(libc::SIGHUP);
        publishing.host.wait_for_stderr("reload 1: added [\"added\"], removed [\"removed\"], restarted [\"changed\"], unchanged [\"keep\", \"events\"]");
    } else {
        let (code, text, err) = ctl(&socket, &["reload"]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            text,
            "added: added\nremoved: removed\nrestarted: changed\nunchanged: keep, events\n"
        );
    }
    // Events flow on after the reload, through the added instance too.
    flowing(&socket, "added", 0, 200);
    flowing(&socket, "keep", before, 400);
    let listed_now: Vec<String> = {
        let (_, text, _) = ctl(&socket, &["--json", "list"]);
        let list: serde_json::Value = serde_json::from_str(&text).unwrap();
        list["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(listed_now, ["keep", "events", "changed", "added"]);
    let (sent, out, _) = publishing.finish();
    // The unchanged logger saw every event, once, in order, across the reload.
    assert_every_event_once_in_order(&s, "keep.jsonl", sent);
    // The changed one kept its queue: nothing dropped.
    let changed = summary_row(&out, "changed");
    assert_eq!(
        (changed.received, changed.processed, changed.dropped),
        (sent, sent, 0),
        "{changed:?}"
    );
    // What the reload did, as the lifecycle events say it.
    let events = s.log_lines("events.jsonl");
    let about = |topic: &str| -> Vec<serde_json::Value> {
        events
            .iter()
            .filter(|l| l["topic"] == topic)
            .map(|l| l["payload"]["name"].clone())
            .collect()
    };
    // (`keep` started before the logger of these events.)
    assert_eq!(
        about("plughost.plugin.started"),
        ["events", "changed", "removed", "added"].map(|n| json!(n))
    );
    assert_eq!(about("plughost.plugin.restarted"), [json!("changed")]);
    // The removed instance ran its stop after its queue (the counter said
    // what it had counted) and is gone from the summary.
    let removed_summaries: Vec<u64> = events
        .iter()
        .filter(|l| l["topic"] == "counter.summary" && l["source"] == "removed")
        .map(|l| l["payload"]["total"].as_u64().unwrap())
        .collect();
    assert_eq!(removed_summaries.len(), 1, "{events:?}");
    assert!(about("plughost.plugin.stopped").starts_with(&[json!("removed")]));
    assert!(
        !stdout(&out).lines().any(|l| l.starts_with("removed ")),
        "{}",
        stdout(&out)
    );
    // Each event reached the removed instance (before the reload) or the
    // added one (after it), never both; some reached neither, published
    // while the one had stopped and the other had not started.
    let added = summary_row(&out, "added");
    assert!(removed_summaries[0] > 0 && added.received > 0, "{added:?}");
    assert!(
        removed_summaries[0] + added.received <= sent,
        "{} + {added:?} of {sent}",
        removed_summaries[0]
    );
    assert_accounted(&added);
}

#[test]
fn ctl_reload_adds_removes_restarts_and_keeps_unchanged_queues() {
    reload_keeps_unchanged_instances_flowing(false);
}

#[test]
fn sighup_reloads_the_same_way() {
    reload_keeps_unchanged_instances_flowing(true);
}

#[test]
fn a_broken_config_on_reload_leaves_the_old_one_running() {
    let s = Scratch::new("reload-broken");
    let socket = s.path("host.sock");
    let config = reload_config(&s, &socket).plugin(changed(0)).write(&s);
    let mut host = Running::start(&config);
    reload_config(&s, &socket)
        .plugin(changed(0))
        .plugin(Plugin::new("x", "nowhere"))
        .write(&s);
    let (code, _, err) = ctl(&socket, &["reload"]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("error: plugin `x`: library `nowhere` not found"),
        "{err}"
    );
    std::fs::write(&config, "[[plugin]\n").unwrap();
    host.signal(libc::SIGHUP);
    host.wait_for_stderr("reload rejected, the running config stays");
    let (code, text, _) = ctl(&socket, &["list"]);
    assert_eq!(code, 0);
    assert_eq!(text.lines().count(), 4, "all three still listed:\n{text}");
    host.send(&event("work.after", json!(1)));
    let out = finish(host);
    assert_eq!(summary_row(&out, "keep").processed, 1);
}

#[test]
fn a_plugin_calls_the_host_to_list_plugins_and_casts_a_restart_of_another() {
    call_and_cast(Isolation::Thread);
}

#[test]
fn a_process_isolated_plugin_calls_and_casts_like_a_thread_one() {
    call_and_cast(Isolation::Process);
}

fn call_and_cast(isolation: Isolation) {
    let s = Scratch::new(&format!("call-cast-{isolation}"));
    let config = Config::new()
        .plugin(logger("log", &s.path("log.jsonl")).subscribe([
            "chaos.answer",
            "plughost.plugin.*",
            "counter.summary",
        ]))
        .plugin(
            Plugin::new("caller", "chaos")
                .isolation(isolation)
                .subscribe(["cmd.>"])
                .config(json!({"call_on": "cmd.call", "cast_on": "cmd.cast"})),
        )
        .plugin(Plugin::new("target", "counter").subscribe(["nothing"]))
        .write(&s);
    let events = event("cmd.call", json!({"cmd": "list"}))
        + &event("cmd.cast", json!({"cmd": "restart", "name": "target"}))
        + &event("cmd.call", json!({"cmd": "restart", "name": "caller"}))
        + &event("cmd.call", json!({"cmd": "stop", "name": "nobody"}));
    let mut host = Running::start(&config);
    host.send(&events);
    // The cast restarts `target`, the call `caller` (after the call returns).
    let mut restarted_now: Vec<bool> = (0..2)
        .map(|_| {
            host.wait_for_stderr("restarted (restart 1)")
                .contains("plugin=caller")
        })
        .collect();
    restarted_now.sort();
    assert_eq!(
        restarted_now,
        [false, true],
        "target, then caller, or the other way round"
    );
    let out = finish(host);
    let lines = s.log_lines("log.jsonl");
    let answers: Vec<_> = lines
        .iter()
        .filter(|l| l["topic"] == "chaos.answer")
        .map(|l| l["payload"].clone())
        .collect();
    assert_eq!(answers.len(), 3, "{answers:?}");
    let names: Vec<_> = answers[0]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["log", "caller", "target"]);
    assert_eq!(
        answers[1],
        json!({"ok": true, "result": "accepted"}),
        "a call about itself does not wait"
    );
    assert_eq!(
        answers[2],
        json!({"ok": false, "error": "no plugin instance named `nobody`"})
    );
    let mut restarted: Vec<_> = lines
        .iter()
        .filter(|l| l["topic"] == "plughost.plugin.restarted")
        .map(|l| {
            (
                l["payload"]["name"].clone(),
                l["payload"]["restarts"].clone(),
            )
        })
        .collect();
    restarted.sort_by_key(|(name, _)| name.to_string());
    assert_eq!(
        restarted,
        [(json!("caller"), json!(1)), (json!("target"), json!(1))]
    );
    assert_eq!(summary_row(&out, "caller").state, "stopped");
}

#[test]
fn teapot_serves_its_route_and_ticks_to_boiling() {
    teapot(Isolation::Thread);
}

#[test]
fn teapot_in_its_own_process_serves_its_route_and_ticks_to_boiling() {
    teapot(Isolation::Process);
}

fn teapot(isolation: Isolation) {
    let s = Scratch::new(&format!("teapot-{isolation}"));
    let config = Config::new()
        .status(Status::any_port())
        .plugin(logger("log", &s.path("log.jsonl")).subscribe(["teapot.>"]))
        .plugin(
            Plugin::new("pot", "teapot")
                .isolation(isolation)
                .tick_interval("5ms")
                .config(json!({"start": 90})),
        )
        .write(&s);
    let mut host = Running::start(&config);
    let address = host.status_address();
    let (code, body) = http(&address, "GET", "/plugins/pot/teapot", "");
    assert_eq!((code, body.as_str()), (418, "I am teapot"));
    assert_eq!(http(&address, "GET", "/plugins/pot/coffee", "").0, 404);
    assert_eq!(http(&address, "GET", "/plugins/nobody/teapot", "").0, 404);
    eventually("the water to boil", || {
        get_json(&address, "/plugins/pot/temperature").1["celsius"] == 100
    });
    // The tick after it says so, and publishes `teapot.ready`.
    host.wait_for_stderr("the water is ready");
    finish(host);
    let lines = s.log_lines("log.jsonl");
    let temperatures: Vec<u64> = lines
        .iter()
        .filter(|l| l["topic"] == "teapot.temperature")
        .map(|l| l["payload"]["celsius"].as_u64().unwrap())
        .collect();
    assert_eq!(temperatures, (91..=100).collect::<Vec<_>>());
    let ready: Vec<_> = lines
        .iter()
        .filter(|l| l["topic"] == "teapot.ready")
        .collect();
    assert_eq!(ready.len(), 1, "ready is published once");
}

#[test]
fn a_route_that_does_not_answer_in_time_gives_504() {
    let s = Scratch::new("route-timeout");
    let config = Config::new()
        .status(Status::any_port().route_timeout("200ms"))
        .plugin(
            Plugin::new("busy", "chaos")
                .subscribe(["work.>"])
                .config(json!({"sleep_ms": 2000, "log_events": true, "routes": ["/echo"]})),
        )
        .write(&s);
    let mut host = Running::start(&config);
    let address = host.status_address();
    let (code, body) = http(&address, "POST", "/plugins/busy/echo?x=1", "hello");
    assert_eq!(code, 200, "{body}");
    let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        echo,
        json!({"method": "POST", "path": "/echo", "query": "x=1", "body": "hello"})
    );
    // CONNECT is never handed to a plugin.
    assert_eq!(http(&address, "CONNECT", "/plugins/busy/echo", "").0, 405);
    host.send(&event("work.slow", json!(1)));
    // Busy in its 2 s handler from now on.
    host.wait_for_stderr("took work.slow");
    let (code, body) = http(&address, "GET", "/plugins/busy/echo", "");
    assert_eq!(code, 504, "{body}");
    finish(host);
}

#[test]
fn ingest_publishes_posted_bodies_and_refuses_big_or_bad_ones() {
    let s = Scratch::new("ingest");
    let config = Config::new()
        .status(Status::any_port().ingest(true).ingest_max_bytes(100))
        .plugin(logger("log", &s.path("log.jsonl")).subscribe(["orders.>"]))
        .write(&s);
    let mut host = Running::start(&config);
    let address = host.status_address();
    let (code, body) = http(&address, "POST", "/events/orders.created", r#"{"id":7}"#);
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        http(&address, "POST", "/events/orders.big", &"x".repeat(101)).0,
        413
    );
    assert_eq!(http(&address, "POST", "/events/orders.*", "{}").0, 400);
    assert_eq!(http(&address, "GET", "/events/orders.created", "").0, 405);
    let out = finish(host);
    assert_eq!(summary_row(&out, "log").processed, 1);
    // Without a Content-Type the body is bytes (tests/content.rs has the others).
    assert_eq!(
        s.log_lines("log.jsonl")[0]["payload_base64"],
        json!("eyJpZCI6N30=")
    );
}

/// A real HTTP server on loopback that answers `statuses` in turn (then 200),
/// and hands back the bodies it received.
fn webhook_server(statuses: Vec<u16>) -> (String, std::sync::mpsc::Receiver<String>) {
    webhook_server_on(
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        statuses,
    )
}

fn webhook_server_on(
    listener: std::net::TcpListener,
    statuses: Vec<u16>,
) -> (String, std::sync::mpsc::Receiver<String>) {
    let address = listener.local_addr().unwrap().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut statuses = statuses.into_iter();
        for stream in listener.incoming().take(50) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let status = statuses.next().unwrap_or(200);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            if status == 200 {
                let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
            }
        }
    });
    (address, rx)
}

#[test]
fn webhook_delivers_batches_and_retries_while_the_server_fails() {
    let s = Scratch::new("webhook");
    let (address, bodies) = webhook_server(vec![500, 503]);
    let config = Config::new()
        .plugin(
            Plugin::new("hook", "webhook")
                .subscribe(["work.>"])
                .tick_interval("20ms")
                .config(json!({
                    "url": format!("http://{address}/hook"),
                    "batch_size": 3,
                    "flush_interval": "100ms",
                    "retries": 3,
                    "retry_backoff": "10ms",
                })),
        )
        .write(&s);
    let events: String = (0..5).map(|i| event("work.item", json!(i))).collect();
    let mut host = Running::start(&config);
    host.send(&events);
    let first: serde_json::Value =
        serde_json::from_str(&bodies.recv_timeout(Duration::from_secs(20)).unwrap()).unwrap();
    let second: serde_json::Value =
        serde_json::from_str(&bodies.recv_timeout(Duration::from_secs(20)).unwrap()).unwrap();
    assert_eq!(
        first
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["payload"].clone())
            .collect::<Vec<_>>(),
        [json!(0), json!(1), json!(2)]
    );
    assert_eq!(
        second
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["payload"].clone())
            .collect::<Vec<_>>(),
        [json!(3), json!(4)]
    );
    assert_eq!(first[0]["topic"], "work.item");
    drop(host.stdin.take());
    let (out, lines) = host.wait(Duration::from_secs(30));
    assert!(out.status.success());
    let err = lines.join("\n");
    assert!(
        err.contains("answered 500 Internal Server Error (attempt 1)"),
        "{err}"
    );
    assert!(
        err.contains("answered 503 Service Unavailable (attempt 2)"),
        "{err}"
    );
    assert!(
        err.contains("delivered 2 batch(es); undeliverable: 0 batch(es), 0 event(s)"),
        "{err}"
    );
}

#[test]
fn webhook_counts_batches_it_cannot_deliver() {
    let s = Scratch::new("webhook-down");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = Config::new()
        .plugin(
            Plugin::new("hook", "webhook")
                .subscribe(["work.>"])
                .config(json!({
                    "url": format!("http://127.0.0.1:{port}/hook"),
                    "batch_size": 2,
                    "retries": 2,
                    "retry_backoff": "5ms",
                })),
        )
        .write(&s);
    let events: String = (0..4).map(|i| event("work.item", json!(i))).collect();
    let out = run(&["run", config.to_str().unwrap(), "--events", "-"], &events);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("gave up on a batch of 2 event(s) after 3 attempts; undeliverable so far: 2 batch(es), 4 event(s)"), "{err}");
    assert!(
        err.contains("undeliverable: 2 batch(es), 4 event(s)"),
        "{err}"
    );
}

#[test]
fn reload_restarts_an_instance_whose_library_content_changed_and_keeps_one_whose_did_not() {
    use std::os::unix::fs::MetadataExt;
    let s = Scratch::new("reload-library");
    let socket = s.path("host.sock");
    std::fs::create_dir(s.path("libs")).unwrap();
    let library = s.path("libs/libswap.so");
    std::fs::copy(plugin_path("counter"), &library).unwrap();
    let config = Config::new()
        .control_socket(&socket)
        .plugin(logger("log", &s.path("log.jsonl")).subscribe(["counter.summary", "teapot.>"]))
        .plugin(
            Plugin::new("swap", &library)
                .subscribe(["work.>"])
                .tick_interval("10ms"),
        )
        .write(&s);
    let mut host = Running::start(&config);
    host.send(
        &(0..3)
            .map(|i| event("work.item", json!(i)))
            .collect::<String>(),
    );

    // The same bytes in a new file (a reinstall): left alone.
    let staged = s.path("libs/staged.so");
    std::fs::copy(plugin_path("counter"), &staged).unwrap();
    std::fs::rename(&staged, &library).unwrap();
    let (code, text, err) = ctl(&socket, &["reload"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        text,
        "added: -\nremoved: -\nrestarted: -\nunchanged: log, swap\n"
    );

    // Another plugin written over the same file (same inode): the loader
    // must not hand back its cached copy of the old code.
    let inode = std::fs::metadata(&library).unwrap().ino();
    std::fs::write(&library, std::fs::read(plugin_path("teapot")).unwrap()).unwrap();
    assert_eq!(std::fs::metadata(&library).unwrap().ino(), inode);
    let (code, text, err) = ctl(&socket, &["reload"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        text,
        "added: -\nremoved: -\nrestarted: swap\nunchanged: log\n"
    );
    // teapot's ticks take the water from 20 to 100 degrees, then say so.
    host.wait_for_stderr("the water is ready");
    let out = finish(host);
    let lines = s.log_lines("log.jsonl");
    let temperatures = lines
        .iter()
        .filter(|l| l["topic"] == "teapot.temperature")
        .count();
    assert_eq!(temperatures, 80, "the new code runs");
    let summaries: Vec<_> = lines
        .iter()
        .filter(|l| l["topic"] == "counter.summary")
        .map(|l| l["payload"]["total"].clone())
        .collect();
    assert_eq!(
        summaries,
        [json!(3)],
        "the old code stopped once, after its 3 events"
    );
    assert_eq!(summary_row(&out, "swap").state, "stopped");
}

#[test]
fn reload_changing_queue_capacity_loses_nothing_under_steady_publishing() {
    let s = Scratch::new("reload-capacity");
    let socket = s.path("host.sock");
    let write = |capacity: u64| {
        Config::new()
            .control_socket(&socket)
            .plugin(
                logger("changed", &s.path("log.jsonl"))
                    .subscribe(["work.>"])
                    .queue_capacity(capacity),
            )
            .write(&s)
    };
    let config = write(16);
    let host = Running::start(&config);
    let publishing = publisher(host);
    let before = flowing(&socket, "changed", 0, 300);
    write(4096);
    let (code, text, err) = ctl(&socket, &["reload"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        text,
        "added: -\nremoved: -\nrestarted: changed\nunchanged: -\n"
    );
    assert_eq!(listed(&socket, "changed")["queue_capacity"], 4096);
    flowing(&socket, "changed", before, 600);
    let (sent, out, err) = publishing.finish();
    assert!(
        !err.iter().any(|l| l.contains("dropped event")),
        "{}",
        err.join("\n")
    );
    // Every event reached the old or the new instance, once, in order, but
    // for the documented exception: an event racing the switch is moved to
    // the new mailbox (the log says how many) and may come after events
    // published a moment later.
    let moved: u64 = err
        .iter()
        .filter_map(|l| {
            l.split_once("moved ")?
                .1
                .split_once(" event(s) from the old mailbox")?
                .0
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert_every_event_once_in_order_but_the_moved(&s, "log.jsonl", sent, moved);
    // Its totals are the name's, across both mailboxes: nothing reset.
    let row = summary_row(&out, "changed");
    assert_eq!(
        (row.received, row.processed, row.dropped, row.failed),
        (sent, sent, 0, 0),
        "{row:?} of {sent}"
    );
}

#[test]
fn webhook_delivers_once_its_target_comes_up_and_stays_checkable_while_retrying() {
    let s = Scratch::new("webhook-late");
    // A port nobody listens on yet: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = Config::new()
        .status(Status::any_port().check_timeout("500ms"))
        .plugin(
            Plugin::new("hook", "webhook")
                .subscribe(["work.>"])
                .tick_interval("20ms")
                .config(json!({
                    "url": format!("http://127.0.0.1:{port}/hook"),
                    "batch_size": 2,
                    "retries": 100,
                    "retry_backoff": "20ms",
                    "max_backoff": "100ms",
                    "timeout": "1s",
                })),
        )
        .write(&s);
    let mut host = Running::start(&config);
    let address = host.status_address();
    host.send(
        &(0..2)
            .map(|i| event("work.item", json!(i)))
            .collect::<String>(),
    );
    host.wait_for_stderr("(attempt 3)");
    // Retries wait on ticks, not in a sleep: checks are answered meanwhile.
    let (code, health) = get_json(&address, "/health?plugin=hook");
    assert_eq!(
        (code, &health["status"]),
        (200, &json!("degraded")),
        "{health}"
    );
    let message = health["plugins"][0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("1 batch(es), 2 event(s) waiting to be retried"),
        "{message}"
    );
    let (code, jobs) = get_json(&address, "/jobs");
    assert_eq!(code, 200, "{jobs}");
    assert_eq!(
        (jobs[0]["plugin"].clone(), jobs[0]["delayed"].clone()),
        (json!("hook"), json!(2)),
        "{jobs}"
    );

    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let (_, bodies) = webhook_server_on(listener, vec![]);
    let body: serde_json::Value =
        serde_json::from_str(&bodies.recv_timeout(Duration::from_secs(20)).unwrap()).unwrap();
    let payloads: Vec<_> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["payload"].clone())
        .collect();
    assert_eq!(payloads, [json!(0), json!(1)]);
    host.wait_for_stderr("delivered a batch of 2 event(s) on attempt");
    let (code, health) = get_json(&address, "/health?plugin=hook");
    assert_eq!((code, &health["status"]), (200, &json!("ok")), "{health}");
    drop(host.stdin.take());
    let (out, lines) = host.wait(Duration::from_secs(30));
    assert!(out.status.success());
    let err = lines.join("\n");
    assert!(
        err.contains("delivered 1 batch(es); undeliverable: 0 batch(es), 0 event(s)"),
        "{err}"
    );
    assert!(!err.contains("gave up"), "{err}");
}

#[test]
fn a_control_socket_path_holding_something_else_is_refused_and_left_alone() {
    let s = Scratch::new("socket-not-socket");
    let path = s.write("host.sock", "precious data\n");
    let config = Config::new()
        .control_socket(&path)
        .plugin(Plugin::new("count", "counter").subscribe(["work.>"]))
        .write(&s);
    let out = run(&["run", config.to_str().unwrap(), "--events", "-"], "");
    let line = assert_one_line_error(&out);
    assert!(
        line.contains(&format!(
            "{} exists and is not a socket; remove it or set another control_socket",
            path.display()
        )),
        "{line}"
    );
    assert_eq!(s.read("host.sock"), "precious data\n");
    // A socket left behind by a host that is gone is replaced, mode 0600.
    let stale = std::os::unix::net::UnixListener::bind(s.path("stale.sock")).unwrap();
    drop(stale);
    let config = Config::new()
        .control_socket(&s.path("stale.sock"))
        .plugin(Plugin::new("count", "counter").subscribe(["work.>"]))
        .write(&s);
    let host = Running::start(&config);
    let (code, text, err) = ctl(&s.path("stale.sock"), &["list"]);
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("count"), "{text}");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(s.path("stale.sock"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    finish(host);
    let leftovers: Vec<_> = std::fs::read_dir(&s.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn ingest_answers_503_while_the_host_shuts_down() {
    let s = Scratch::new("ingest-shutdown");
    let config = Config::new()
        .shutdown_timeout("30s")
        .status(Status::any_port().ingest(true))
        .plugin(
            Plugin::new("slow", "chaos")
                .subscribe(["work.>"])
                .config(json!({"sleep_ms": 1500})),
        )
        .write(&s);
    let mut host = Running::start(&config);
    let address = host.status_address();
    assert_eq!(http(&address, "POST", "/events/work.one", "1").0, 200);
    assert_eq!(http(&address, "POST", "/events/work.two", "2").0, 200);
    host.signal(libc::SIGTERM);
    host.wait_for_stderr("SIGTERM: draining queues");
    // `slow` needs about 3 s to drain: the server still answers meanwhile.
    eventually("the host to say it shuts down", || {
        http(&address, "GET", "/health", "").0 == 503
    });
    let (code, body) = http(&address, "POST", "/events/work.late", "3");
    assert_eq!(code, 503, "{body}");
    let (out, err) = host.wait(Duration::from_secs(30));
    assert!(out.status.success(), "{}", err.join("\n"));
    let slow = summary_row(&out, "slow");
    assert_eq!(
        (slow.received, slow.processed, slow.dropped),
        (2, 2, 0),
        "the refused event was never published: {slow:?}"
    );
}

/// `ctl --json list`, as JSON objects by instance name.
fn listed(socket: &std::path::Path, name: &str) -> serde_json::Value {
    let (code, text, err) = ctl(socket, &["--json", "list"]);
    assert_eq!(code, 0, "{err}");
    let list: serde_json::Value = serde_json::from_str(&text).unwrap();
    list["result"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed: {list}"))
        .clone()
}

#[test]
fn an_instance_stopped_by_an_operator_still_counts_what_it_misses() {
    let s = Scratch::new("stopped-counts");
    let socket = s.path("host.sock");
    let config = Config::new()
        .control_socket(&socket)
        .plugin(logger("log", &s.path("log.jsonl")).subscribe(["work.>"]))
        .plugin(Plugin::new("count", "counter").subscribe(["work.>"]))
        .write(&s);
    let mut host = Running::start(&config);
    for i in 0..3 {
        host.send(&event("work.item", json!(i)));
    }
    eventually("3 events routed to count", || {
        listed(&socket, "count")["received"] == 3
    });
    assert_eq!(ctl(&socket, &["stop", "count"]).0, 0);
    for i in 3..8 {
        host.send(&event("work.item", json!(i)));
    }
    eventually("the 5 later events counted for count", || {
        listed(&socket, "count")["received"] == 8
    });
    let out = finish(host);
    // Still listed and subscribed: it misses 5 events, counted as dropped.
    let count = summary_row(&out, "count");
    assert_eq!(
        (
            count.state.as_str(),
            count.received,
            count.processed,
            count.dropped
        ),
        ("stopped", 8, 3, 5)
    );
    assert_eq!(summary_row(&out, "log").processed, 8);
}

#[test]
fn an_instance_keeps_its_totals_restarts_and_handler_times_across_a_reload_that_changes_its_capacity()
 {
    let s = Scratch::new("reload-totals");
    let socket = s.path("host.sock");
    let write = |capacity: u64| {
        Config::new()
            .control_socket(&socket)
            .status(Status::any_port())
            .plugin(logger("events", &s.path("events.jsonl")).subscribe(["plughost.plugin.*"]))
            .plugin(
                logger("changed", &s.path("log.jsonl"))
                    .subscribe(["work.>"])
                    .queue_capacity(capacity),
            )
            .write(&s)
    };
    let config = write(16);
    let mut host = Running::start(&config);
    let address = host.status_address();
    let send = |host: &mut Running, range: std::ops::Range<u64>| {
        for i in range {
            host.send(&event("work.item", json!(i)));
        }
    };
    send(&mut host, 0..100);
    eventually("100 processed", || {
        listed(&socket, "changed")["processed"] == 100
    });
    assert_eq!(ctl(&socket, &["restart", "changed"]).0, 0);
    write(64);
    let (code, text, err) = ctl(&socket, &["reload"]);
    assert_eq!(
        (code, text.as_str()),
        (
            0,
            "added: -\nremoved: -\nrestarted: changed\nunchanged: events\n"
        ),
        "{err}"
    );
    send(&mut host, 100..200);
    eventually("200 processed", || {
        listed(&socket, "changed")["processed"] == 200
    });
    let row = listed(&socket, "changed");
    assert_eq!(
        (
            &row["received"],
            &row["processed"],
            &row["dropped"],
            &row["restarts"],
            &row["queue_capacity"]
        ),
        (&json!(200), &json!(200), &json!(0), &json!(2), &json!(64)),
        "{row}"
    );
    let (status, metrics) = http(&address, "GET", "/metrics", "");
    assert_eq!(status, 200);
    for line in [
        "plughost_events_received_total{plugin=\"changed\"} 200",
        "plughost_plugin_restarts_total{plugin=\"changed\"} 2",
        "plughost_handler_seconds_count{plugin=\"changed\"} 200",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    let out = finish(host);
    let row = summary_row(&out, "changed");
    assert_eq!((row.received, row.processed, row.dropped), (200, 200, 0));
    assert_every_event_once_in_order(&s, "log.jsonl", 200);
    // Both restarts were announced, counting on.
    let restarts: Vec<_> = s
        .log_lines("events.jsonl")
        .into_iter()
        .filter(|l| l["topic"] == "plughost.plugin.restarted")
        .map(|l| l["payload"]["restarts"].clone())
        .collect();
    assert_eq!(restarts, [json!(1), json!(2)]);
}

/// A call from a thread the plugin started itself: a thread plugin's works
/// (the host table may be used from any thread); a process plugin's is
/// refused with the documented error, since its child can answer calls only
/// inside a callback; a cast works from there in both.
#[test]
fn a_call_from_a_plugin_s_own_thread_works_in_a_thread_and_is_refused_in_a_process() {
    for isolation in [Isolation::Thread, Isolation::Process] {
        let s = Scratch::new(&format!("thread-call-{isolation}"));
        let library = cc_fixture(&s, "intruder", "intruder", &[]);
        let config = Config::new()
            .plugin(
                logger("log", &s.path("log.jsonl")).subscribe(["intruder.answer", "intruder.cast"]),
            )
            .plugin(
                Plugin::new("threaded", &library)
                    .isolation(isolation)
                    .subscribe(["intruder.thread_call", "intruder.thread_cast"]),
            )
            .write(&s);
        let events = event("intruder.thread_call", json!(null))
            + &event("intruder.thread_cast", json!(null));
        let out = run(&["run", config.to_str().unwrap(), "--events", "-"], &events);
        assert!(out.status.success(), "{isolation}: {}", stderr(&out));
        let row = summary_row(&out, "threaded");
        assert_eq!((row.processed, row.failed), (2, 0), "{isolation}");
        let lines = s.log_lines("log.jsonl");
        let answers: Vec<&serde_json::Value> = lines
            .iter()
            .filter(|l| l["topic"] == "intruder.answer")
            .map(|l| &l["payload"])
            .collect();
        assert_eq!(answers.len(), 1, "{isolation}: {lines:?}");
        match isolation {
            Isolation::Thread => {
                let names: Vec<&str> = answers[0]["result"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{}", answers[0]))
                    .iter()
                    .map(|p| p["name"].as_str().unwrap())
                    .collect();
                assert_eq!(
                    (&answers[0]["ok"], names),
                    (&json!(true), vec!["log", "threaded"])
                );
            }
            Isolation::Process => assert_eq!(
                answers[0],
                &json!({"ok": false, "error": "a process-isolated plugin can call the host only from inside a callback (on_event, tick, http), not from a thread of its own; use cast there"})
            ),
        }
        let casts: Vec<(&serde_json::Value, &serde_json::Value)> = lines
            .iter()
            .filter(|l| l["topic"] == "intruder.cast")
            .map(|l| (&l["source"], &l["payload_text"]))
            .collect();
        // "from a thread", not JSON, so a `publish` command makes it text.
        assert_eq!(
            casts,
            [(&json!("threaded"), &json!("from a thread"))],
            "{isolation}"
        );
    }
}

/// `plughost ctl ready`: "ready" and exit 0 when every instance that reports
/// readiness is ready, else "not ready" and exit 1; one line per instance
/// that reports it, with its message.
#[test]
fn ctl_ready_says_whether_every_reporting_instance_is_ready_and_exits_accordingly() {
    let s = Scratch::new("ctl-ready");
    let socket = s.path("host.sock");
    let up = Plugin::new("up", "chaos")
        .subscribe(["work.>"])
        .config(json!({"ready": true}));
    let silent = Plugin::new("silent", "counter").subscribe(["work.>"]);
    let config = Config::new()
        .control_socket(&socket)
        .plugin(up.clone())
        .plugin(
            Plugin::new("down", "chaos")
                .subscribe(["work.>"])
                .config(json!({"ready": false})),
        )
        .plugin(silent.clone())
        .write(&s);
    let host = Running::start(&config);
    assert_eq!(
        ctl(&socket, &["ready"]),
        (
            1,
            "not ready\n  up: ready \n  down: not ready chaos: told not to be ready\n".to_owned(),
            String::new()
        )
    );
    let (code, text, _) = ctl(&socket, &["--json", "ready"]);
    assert_eq!(code, 1);
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        answer,
        json!({"ok": true, "result": {"ready": false, "plugins": [
            {"name": "up", "ready": true, "message": ""},
            {"name": "down", "ready": false, "message": "chaos: told not to be ready"},
        ]}})
    );
    Config::new()
        .control_socket(&socket)
        .plugin(up)
        .plugin(silent)
        .write(&s);
    assert_eq!(ctl(&socket, &["reload"]).0, 0);
    assert_eq!(
        ctl(&socket, &["ready"]),
        (0, "ready\n  up: ready \n".to_owned(), String::new())
    );
    finish(host);
}
