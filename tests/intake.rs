//! Hostile input where events and commands enter the host: the host's own
//! topics refused and counted at every entry point (stdin, an events file,
//! `ctl publish`, `POST /events`, a plugin's publish or `call`), each entry's
//! source on the events it lets in, a C plugin's mistyped publishes,
//! `max_event_bytes` at every entry, lines
//! that are not UTF-8, foreign text that cannot forge a log line, and the
//! control socket's hygiene (unknown fields, invalid UTF-8, over-long lines,
//! a reload answer naming what needs a restart).

mod common;

use common::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The `intruder` fixture (a thread-mode C plugin that tries what a hostile
/// one would, see tests/fixtures/intruder.c), built into `s`.
fn intruder(s: &Scratch, flags: &[&str]) -> PathBuf {
    cc_fixture(s, "intruder", "intruder", flags)
}

/// An instance of the `intruder` at `library`, subscribed to the topics
/// that make it act.
fn intruder_instance(name: &str, library: &Path, isolation: Isolation) -> Plugin {
    Plugin::new(name, library).isolation(isolation).subscribe([
        "intruder.forge",
        "intruder.call",
        "intruder.big",
        "intruder.log",
        "intruder.fail",
    ])
}

fn finish(mut host: Running) -> (std::process::Output, Vec<String>) {
    drop(host.stdin.take());
    let (out, err) = host.wait(Duration::from_secs(60));
    assert!(out.status.success(), "{}", err.join("\n"));
    (out, err)
}

/// The value of `plughost_events_refused_total{entry, reason}` in `/metrics`.
fn refused_metric(address: &str, entry: &str, reason: &str) -> u64 {
    let (_, text) = http(address, "GET", "/metrics", "");
    let wanted = format!("plughost_events_refused_total{{entry=\"{entry}\",reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&wanted))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {wanted:?} in /metrics:\n{text}"))
}

/// Every line of `lines` that mentions `FORGED` holds it after an escaped
/// newline (`\n`): a foreign newline never starts a line of the host's.
fn assert_nothing_forged(lines: &[String], at_least: usize) {
    let mentions: Vec<&String> = lines.iter().filter(|l| l.contains("FORGED")).collect();
    assert!(
        mentions.len() >= at_least,
        "expected {at_least} line(s) mentioning FORGED, saw:\n{}",
        lines.join("\n")
    );
    for line in mentions {
        assert!(
            line.contains("\\n2099-01-01T00:00:00.000000Z ERROR plughost: FORGED")
                || line.contains("\\nFORGED"),
            "a foreign newline reached the log raw: {line:?}"
        );
        assert!(!line.starts_with("2099-"), "forged line: {line:?}");
    }
}

#[test]
fn forged_host_events_are_refused_and_counted_at_every_entry_point() {
    let s = Scratch::new("forged");
    let socket = s.path("host.sock");
    let library = intruder(&s, &[]);
    let config = Config::new()
        .control_socket(&socket)
        .status(Status::any_port().ingest(true))
        .plugin(logger("log", &s.path("log.jsonl")).subscribe([">"]))
        .plugin(intruder_instance("intruder", &library, Isolation::Thread))
        .plugin(intruder_instance("isolated", &library, Isolation::Process))
        .plugin(
            Plugin::new("caller", "chaos")
                .subscribe(["cmd.call"])
                .config(json!({"call_on": "cmd.call"})),
        )
        .write(&s);
    let mut host = Running::start(&config);
    let address = host.status_address();
    let forged = json!({"name": "log", "library": "liblogger.so", "reason": "forged"});

    // stdin
    host.send(
        &(event("plughost.plugin.failed", forged.clone()) + &event("orders.stdin", json!(1))),
    );
    host.wait_for_stderr("stdin:1: skipped: topic `plughost.plugin.failed` is reserved");
    // ctl, on a lifecycle topic and on a [state] topic although [state] is off
    for topic in ["plughost.plugin.failed", "internal.state.worker_ping"] {
        let (code, _, err) = ctl(&socket, &["publish", topic, &forged.to_string()]);
        assert_eq!(code, 1, "{err}");
        assert_eq!(
            err.trim(),
            format!(
                "error: topic `{topic}` is reserved: only the host publishes on plughost.>, internal.state.> and internal.metrics.>"
            )
        );
    }
    assert_eq!(ctl(&socket, &["publish", "orders.ctl", "2"]).0, 0);
    // HTTP ingest
    let (code, body) = http(
        &address,
        "POST",
        "/events/plughost.plugin.failed",
        &forged.to_string(),
    );
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("is reserved"), "{body}");
    assert_eq!(http(&address, "POST", "/events/orders.http", "3").0, 200);
    // plugins: a C plugin's publish and call, in thread and process
    // isolation, and a Rust plugin's call
    host.send(
        &(event("intruder.forge", json!(null))
            + &event("intruder.call", json!(null))
            + &event(
                "cmd.call",
                json!({"cmd": "publish", "topic": "plughost.plugin.failed", "payload": "forged"}),
            )
            + &event(
                "cmd.call",
                json!({"cmd": "publish", "topic": "orders.call", "payload": "4"}),
            )),
    );
    eventually("five refused plugin publishes", || {
        refused_metric(&address, "plugin", "reserved_topic") == 5
    });
    assert_eq!(refused_metric(&address, "stdin", "reserved_topic"), 1);
    assert_eq!(refused_metric(&address, "ctl", "reserved_topic"), 2);
    assert_eq!(refused_metric(&address, "http", "reserved_topic"), 1);
    assert_eq!(refused_metric(&address, "http", "too_large"), 0);
    let (out, _) = finish(host);

    let text = stdout(&out);
    for line in [
        "refused: 1 event(s) from stdin (reserved_topic)",
        "refused: 2 event(s) from ctl (reserved_topic)",
        "refused: 1 event(s) from http (reserved_topic)",
        "refused: 5 event(s) from plugin (reserved_topic)",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
    // Each plugin saw its publish refused at the call (its event failed).
    for name in ["intruder", "isolated"] {
        let row = summary_row(&out, name);
        assert_eq!((row.processed, row.failed), (1, 1), "{name}: {row:?}");
    }
    let lines = s.log_lines("log.jsonl");
    let failed: Vec<&Value> = lines
        .iter()
        .filter(|l| l["topic"] == "plughost.plugin.failed")
        .collect();
    assert!(failed.is_empty(), "forged events got through: {failed:?}");
    let source_of = |topic: &str| -> Vec<Value> {
        lines
            .iter()
            .filter(|l| l["topic"] == topic)
            .map(|l| l["source"].clone())
            .collect()
    };
    assert_eq!(source_of("orders.stdin"), [json!("stdin")]);
    assert_eq!(source_of("orders.ctl"), [json!("ctl")]);
    assert_eq!(source_of("orders.http"), [json!("http")]);
    assert_eq!(source_of("orders.call"), [json!("caller")]);
    // The call's answers say why.
    let answers: Vec<&Value> = lines
        .iter()
        .filter(|l| l["topic"] == "intruder.answer" || l["topic"] == "chaos.answer")
        .map(|l| &l["payload"])
        .collect();
    assert_eq!(answers.len(), 4, "{answers:?}");
    let refusals = answers
        .iter()
        .filter(|a| a["ok"] == false && a["error"].as_str().unwrap().contains("is reserved"))
        .count();
    assert_eq!(refusals, 3, "{answers:?}");
}

#[test]
fn an_events_file_is_the_source_file_and_its_refusals_are_counted_as_file() {
    let s = Scratch::new("events-file");
    let config = Config::new()
        .plugin(logger("log", &s.path("log.jsonl")).subscribe(["orders.>", "internal.>"]))
        .write(&s);
    let events = s.write(
        "events.jsonl",
        &(event("internal.metrics.event_fired", json!({})) + &event("orders.file", json!(1))),
    );
    let out = run(
        &[
            "run",
            config.to_str().unwrap(),
            "--events",
            events.to_str().unwrap(),
        ],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out)
            .contains("events.jsonl:1: skipped: topic `internal.metrics.event_fired` is reserved"),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l == "refused: 1 event(s) from file (reserved_topic)"),
        "{}",
        stdout(&out)
    );
    let lines = s.log_lines("log.jsonl");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(
        (&lines[0]["topic"], &lines[0]["source"]),
        (&json!("orders.file"), &json!("file"))
    );
}

/// A C plugin's `publish_typed` (ABI 1.3) refuses text that is not UTF-8,
/// json that is not JSON and a content type the host does not know: the
/// plugin gets `PLUGHOST_ERROR`, nothing is routed, the log says why, and each
/// is counted as `invalid_content` from a plugin, in either isolation.
#[test]
fn a_c_plugins_mistyped_publishes_are_refused_said_and_counted_in_both_isolation_modes() {
    for isolation in [Isolation::Thread, Isolation::Process] {
        let s = Scratch::new("mistyped");
        let library = intruder(&s, &[]);
        let config = Config::new()
            .status(Status::any_port())
            .plugin(logger("log", &s.path("log.jsonl")).subscribe(["intruder.typed.>"]))
            .plugin(
                Plugin::new("intruder", &library)
                    .isolation(isolation)
                    .subscribe(["intruder.typed"]),
            )
            .write(&s);
        let mut host = Running::start(&config);
        let address = host.status_address();
        host.send(&event("intruder.typed", json!(null)));
        eventually("three refused publishes", || {
            refused_metric(&address, "plugin", "invalid_content") == 3
        });
        let (out, err) = finish(host);
        let logged: Vec<(String, Value)> = s
            .log_lines("log.jsonl")
            .into_iter()
            .map(|l| {
                let payload = l.get("payload_text").or(l.get("payload_base64")).cloned();
                (l["topic"].as_str().unwrap().to_owned(), payload.unwrap())
            })
            .collect();
        assert_eq!(
            logged,
            [
                ("intruder.typed.text".to_owned(), json!("fine")),
                // "3", published as bytes
                ("intruder.typed.refused".to_owned(), json!("Mw==")),
            ],
            "{isolation}"
        );
        let err = err.join("\n");
        for why in [
            "publish refused: the text payload is not valid UTF-8 (invalid byte at offset 3)",
            "publish refused: the json payload is not valid JSON (",
            "publish refused: unknown content type 99",
        ] {
            let said = err
                .lines()
                .filter(|l| l.contains("plugin=\"intruder\"") && l.contains(why))
                .count();
            assert_eq!(said, 1, "{isolation}: {why:?} in\n{err}");
        }
        assert!(
            stdout(&out).contains("refused: 3 event(s) from plugin (invalid_content)"),
            "{isolation}: {}",
            stdout(&out)
        );
        let log = summary_row(&out, "log");
        assert_eq!(
            (log.received, log.processed),
            (2, 2),
            "{isolation}: {log:?}"
        );
    }
}

#[test]
fn an_event_larger_than_max_event_bytes_is_refused_at_every_entry_point() {
    let s = Scratch::new("too-large");
    let socket = s.path("host.sock");
    let library = intruder(&s, &[]);
    // ingest_max_bytes (1 MiB by default) would take it: the host's limit decides.
    let config = Config::new()
        .control_socket(&socket)
        .max_event_bytes(1024)
        .status(Status::any_port().ingest(true))
        .plugin(logger("log", &s.path("log.jsonl")).subscribe(["orders.>", "intruder.big.out"]))
        .plugin(intruder_instance("intruder", &library, Isolation::Thread))
        .write(&s);
    let mut host = Running::start(&config);
    let address = host.status_address();
    let big = "x".repeat(2000);
    let refusal = "the event is 2002 bytes, more than max_event_bytes (1024)";

    host.send(&(event("orders.a", json!(big)) + &event("orders.a", json!("fits"))));
    host.wait_for_stderr(&format!("stdin:1: skipped: {refusal}"));
    let (code, _, err) = ctl(&socket, &["publish", "orders.b", &big]);
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        "error: the event is 2000 bytes, more than max_event_bytes (1024)"
    );
    assert_eq!(ctl(&socket, &["publish", "orders.b", "fits"]).0, 0);
    let (code, body) = http(&address, "POST", "/events/orders.c", &big);
    assert_eq!(code, 413, "{body}");
    assert!(body.contains("more than max_event_bytes (1024)"), "{body}");
    assert_eq!(http(&address, "POST", "/events/orders.c", "fits").0, 200);
    // The intruder publishes 4096 bytes: refused at its call, the event fails.
    host.send(&event("intruder.big", json!(null)));
    eventually("the plugin's refusal", || {
        refused_metric(&address, "plugin", "too_large") == 1
    });
    for entry in ["stdin", "ctl", "http"] {
        assert_eq!(refused_metric(&address, entry, "too_large"), 1, "{entry}");
    }
    let (out, _) = finish(host);
    assert_eq!(summary_row(&out, "intruder").failed, 1);
    assert_eq!(summary_row(&out, "log").processed, 3, "the three that fit");
    let topics: Vec<Value> = s
        .log_lines("log.jsonl")
        .iter()
        .map(|l| l["topic"].clone())
        .collect();
    assert_eq!(topics, ["orders.a", "orders.b", "orders.c"]);
    assert!(!s.read("log.jsonl").contains("xxxx"));
}

#[test]
fn an_input_line_too_long_for_any_event_is_skipped_without_being_held() {
    let s = Scratch::new("long-line");
    let config = Config::new()
        .max_event_bytes(1024)
        .plugin(logger("log", &s.path("log.jsonl")).subscribe(["a"]))
        .write(&s);
    // Longer than 2 × 1024 + 64 KiB, with no newline for most of it.
    let long = format!(
        "{{\"topic\": \"a\", \"payload\": \"{}\"}}\n",
        "y".repeat(200_000)
    );
    let input = event("a", json!(1)) + &long + &event("a", json!(2));
    let out = run(&["run", config.to_str().unwrap(), "--events", "-"], &input);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("stdin:2: skipped: longer than 67584 bytes, more than an event of max_event_bytes (1024) needs; not read"),
        "{}",
        stderr(&out)
    );
    let payloads: Vec<Value> = s
        .log_lines("log.jsonl")
        .iter()
        .map(|l| l["payload"].clone())
        .collect();
    assert_eq!(payloads, [json!(1), json!(2)]);
}

#[test]
fn invalid_utf8_in_events_is_skipped_with_its_line_number_and_the_rest_delivered() {
    let s = Scratch::new("utf8");
    let config = Config::new()
        .plugin(logger("log", &s.path("log.jsonl")).subscribe(["a"]))
        .write(&s);
    let mut input = event("a", json!(1)).into_bytes();
    input.extend_from_slice(b"{\"topic\": \"a\", \"payload\": \"\xff\xfe\"}\n");
    input.extend_from_slice(event("a", json!(3)).as_bytes());
    let events = s.path("events.jsonl");
    std::fs::write(&events, &input).unwrap();
    let out = run(
        &[
            "run",
            config.to_str().unwrap(),
            "--events",
            events.to_str().unwrap(),
        ],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("events.jsonl:2: skipped: not valid UTF-8 (invalid byte at offset 27); give raw bytes as payload_base64"),
        "{err}"
    );
    assert!(
        err.contains("end of input: 2 event(s) published, 1 line(s) skipped"),
        "{err}"
    );
    let payloads: Vec<Value> = s
        .log_lines("log.jsonl")
        .iter()
        .map(|l| l["payload"].clone())
        .collect();
    assert_eq!(payloads, [json!(1), json!(3)]);
}

#[test]
fn events_from_a_directory_exit_1_with_one_line() {
    let s = Scratch::new("events-dir");
    let config = Config::new()
        .plugin(logger("log", &s.path("log.jsonl")).subscribe([">"]))
        .write(&s);
    let out = run(
        &[
            "run",
            config.to_str().unwrap(),
            "--events",
            s.dir.to_str().unwrap(),
        ],
        "",
    );
    let line = assert_one_line_error(&out);
    assert_eq!(
        line,
        format!(
            "error: cannot read events file {}: is a directory",
            s.dir.display()
        )
    );
    assert!(!s.path("log.jsonl").exists(), "nothing started");
}

#[test]
fn a_newline_in_a_topic_or_a_plugins_message_never_forges_a_log_line() {
    let s = Scratch::new("forge-log");
    let library = intruder(&s, &[]);
    let config = Config::new()
        .plugin(intruder_instance("intruder", &library, Isolation::Thread))
        .write(&s);
    let input = format!(
        "{{\"topic\": \"a\\nFORGED by stdin\", \"payload\": 1}}\n{}{}",
        event("intruder.log", json!(null)),
        event("intruder.fail", json!(null))
    );
    let out = run(&["run", config.to_str().unwrap(), "--events", "-"], &input);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<String> = stderr(&out).lines().map(str::to_owned).collect();
    // The topic's warning, the plugin's log line and its error.
    assert_nothing_forged(&lines, 3);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("stdin:1: skipped: invalid topic `a\\nFORGED by stdin`")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("a message\\n2099-")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("failed: an error\\n2099-")),
        "{lines:?}"
    );
}

/// A raw connection to the control socket: one request line (any bytes),
/// one answer line.
struct Client {
    reader: BufReader<std::os::unix::net::UnixStream>,
    writer: std::os::unix::net::UnixStream,
}

impl Client {
    fn connect(socket: &Path) -> Client {
        let stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    fn ask(&mut self, line: &[u8]) -> Value {
        self.writer.write_all(line).unwrap();
        self.writer.write_all(b"\n").unwrap();
        let mut answer = String::new();
        self.reader.read_line(&mut answer).unwrap();
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer:?}"))
    }
}

#[test]
fn the_control_socket_refuses_unknown_fields_invalid_utf8_and_long_lines_and_goes_on() {
    let s = Scratch::new("ctl-hygiene");
    let socket = s.path("host.sock");
    let config = Config::new()
        .control_socket(&socket)
        .control_max_line_bytes(1024)
        .plugin(Plugin::new("count", "counter").subscribe(["work.>"]))
        .write(&s);
    let host = Running::start(&config);
    let mut client = Client::connect(&socket);
    for (request, error) in [
        (
            &br#"{"cmd": "stop", "name": "count", "force": true}"#[..],
            "bad request: unknown field `force`, expected `name`",
        ),
        (
            br#"{"cmd": "list", "name": "count"}"#,
            "bad request: unknown field `name`, there are no fields",
        ),
        (
            b"{\"cmd\": \"li\xffst\"}",
            "bad request: not UTF-8 (invalid byte at offset 11); send one JSON object per line",
        ),
    ] {
        let answer = client.ask(request);
        assert_eq!(answer, json!({"ok": false, "error": error}));
    }
    let long = format!(r#"{{"cmd": "status", "name": "{}"}}"#, "n".repeat(5000));
    assert_eq!(
        client.ask(long.as_bytes()),
        json!({"ok": false, "error": "bad request: longer than 1024 bytes ([host] control_max_line_bytes); the line is skipped"})
    );
    // The same connection still answers, and the instance was not stopped.
    let answer = client.ask(br#"{"cmd": "list"}"#);
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(answer["result"][0]["state"], "running", "{answer}");
    let (out, _) = finish(host);
    assert_eq!(summary_row(&out, "count").state, "stopped");
}

/// The next line a control connection gets, or `None` at its end.
fn next_line(reader: &mut BufReader<std::os::unix::net::UnixStream>) -> Option<Value> {
    let mut line = String::new();
    match reader.read_line(&mut line).unwrap() {
        0 => None,
        _ => Some(serde_json::from_str(&line).unwrap()),
    }
}

#[test]
fn control_connections_are_capped_and_idle_ones_closed_so_the_socket_recovers() {
    let s = Scratch::new("ctl-cap");
    let socket = s.path("host.sock");
    let config = Config::new()
        .control_socket(&socket)
        .control_max_connections(4)
        .control_idle_timeout("1s")
        .status(Status::any_port())
        .plugin(Plugin::new("count", "counter").subscribe(["work.>"]))
        .write(&s);
    let mut host = Running::start(&config);
    let address = host.status_address();
    let connect = || {
        let stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        BufReader::new(stream)
    };
    // Four connections that never send a command take every place...
    let opened = std::time::Instant::now();
    let mut idle: Vec<_> = (0..4).map(|_| connect()).collect();
    // ...so a fifth is refused at once, with a line saying why, and closed.
    let mut fifth = connect();
    assert_eq!(
        next_line(&mut fifth),
        Some(
            json!({"ok": false, "error": "too many control connections: 4 are open ([host] control_max_connections); try again later"})
        )
    );
    assert_eq!(next_line(&mut fifth), None);
    // The status server is not held up by any of it.
    assert_eq!(get_json(&address, "/health").0, 200);
    // Each idle connection is told and closed once it has been idle for
    // `control_idle_timeout`, not before.
    for reader in &mut idle {
        assert_eq!(
            next_line(reader),
            Some(
                json!({"ok": false, "error": "no command for 1s ([host] control_idle_timeout): the connection is closed"})
            )
        );
        assert_eq!(next_line(reader), None);
    }
    assert!(opened.elapsed() >= Duration::from_secs(1));
    // The places are free again: the operator gets in.
    let (code, out, err) = ctl(&socket, &["list"]);
    assert_eq!(code, 0, "{out}{err}");
    finish(host);
}

#[test]
fn a_reload_names_the_changed_keys_that_need_a_restart() {
    let s = Scratch::new("reload-restart");
    let socket = s.path("host.sock");
    let count = Plugin::new("count", "counter").subscribe(["work.>"]);
    let config = Config::new()
        .control_socket(&socket)
        .plugin(count.clone())
        .write(&s);
    let host = Running::start(&config);
    Config::new()
        .control_socket(&s.path("other.sock"))
        .shutdown_timeout("7s")
        .max_event_bytes(2048)
        .status(Status::any_port())
        .state(State::new().enabled(true))
        .plugin(count)
        .write(&s);
    let (code, text, err) = ctl(&socket, &["reload"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        text,
        "added: -\nremoved: -\nrestarted: -\nunchanged: count\nrestart_needed: [host] control_socket, [status], [state] enabled\n"
    );
    let (_, json, _) = ctl(&socket, &["--json", "reload"]);
    let answer: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        answer["result"]["restart_needed"],
        json!(["[host] control_socket", "[status]", "[state] enabled"])
    );
    // The control socket stays where it was; what a reload can apply is in
    // force: the new max_event_bytes.
    assert!(!s.path("other.sock").exists());
    let (code, _, err) = ctl(&socket, &["publish", "work.x", &"x".repeat(2049)]);
    assert_eq!(
        (code, err.trim()),
        (
            1,
            "error: the event is 2049 bytes, more than max_event_bytes (2048)"
        )
    );
    finish(host);
}

/// `--log-format json`: every log line is one JSON object (timestamp,
/// level, target, and the message and fields), a plugin's own lines and the
/// host's lines about it carry its name, and foreign text (a newline in a
/// plugin's message) cannot break a line.
#[test]
fn log_format_json_writes_every_log_line_as_one_json_object() {
    let s = Scratch::new("log-json");
    let library = intruder(&s, &[]);
    let config = Config::new()
        .plugin(
            Plugin::new("chatty", "chaos")
                .subscribe(["work.>"])
                .config(json!({"log_events": true, "error_on": "work.bad"})),
        )
        .plugin(intruder_instance("intruder", &library, Isolation::Thread))
        .write(&s);
    let input = event("work.item", json!(1))
        + &event("work.bad", json!(2))
        + &event("intruder.log", json!(null));
    let out = run(
        &[
            "--log-format",
            "json",
            "run",
            config.to_str().unwrap(),
            "--events",
            "-",
        ],
        &input,
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let lines: Vec<Value> = err
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
        })
        .collect();
    for line in &lines {
        let keys: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["fields", "level", "target", "timestamp"], "{line}");
        assert!(line["fields"]["message"].is_string(), "{line}");
    }
    let find = |message: &str| {
        lines
            .iter()
            .find(|l| l["fields"]["message"] == message)
            .unwrap_or_else(|| panic!("no line {message:?} in:\n{err}"))
    };
    assert_eq!(find("2 plugin instance(s) running")["level"], "INFO");
    let took = find("took work.item 1");
    assert_eq!(
        (&took["level"], &took["fields"]["plugin"]),
        (&json!("INFO"), &json!("chatty"))
    );
    let failed = lines
        .iter()
        .find(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.ends_with("on work.bad failed: chaos: told to fail on work.bad"))
        })
        .unwrap_or_else(|| panic!("no handler error in:\n{err}"));
    assert_eq!(
        (&failed["level"], &failed["fields"]["plugin"]),
        (&json!("WARN"), &json!("chatty"))
    );
    // The intruder's message holds a newline and a forged log line: still
    // one line, one object, with the newline escaped.
    let forged = lines
        .iter()
        .find(|l| {
            l["fields"]["plugin"] == "intruder"
                && l["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("a message"))
        })
        .unwrap_or_else(|| panic!("no intruder line in:\n{err}"));
    let message = forged["fields"]["message"].as_str().unwrap();
    assert!(message.starts_with("a message\\n2099-01-01"), "{message}");
    assert!(!message.contains('\n'), "{message}");
    // The summary is not a log: plain text on stdout.
    assert_eq!(summary_row(&out, "chatty").failed, 1);
}
