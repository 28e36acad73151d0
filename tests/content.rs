//! Content types end to end: every event is `json`, `text` or `bytes` from
//! where it enters (an `--events` line's key, `ctl publish` and its flags,
//! `POST /events` and its `Content-Type`) to every plugin (a thread and a
//! process instance of the Rust `logger`, the C `logger_c` reading the
//! event's `content_type`), whose lines say it with their key; a logger's
//! file is `--events` input again. Payloads that are not what their type
//! says are refused at each entry (HTTP 400, `ctl` one error line).
//! (Through a NATS server: `tests/nats.rs`.)

mod common;

use common::*;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

/// `POST path` with `body` and, when given, a `Content-Type`; (status, body).
fn post(address: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> (u16, String) {
    let header = content_type.map(|t| format!("Content-Type: {t}"));
    let headers: Vec<&str> = header.iter().map(String::as_str).collect();
    http_request(address, "POST", path, &headers, body)
}

/// A host with a control socket, HTTP ingest, and three loggers of `t.>`:
/// the Rust one on a thread (`log.jsonl`) and in its own process
/// (`process.jsonl`), and the C one (`c.jsonl`).
fn host(s: &Scratch) -> (Running, String, std::path::PathBuf) {
    let socket = s.path("host.sock");
    let config = Config::new()
        .control_socket(&socket)
        .status(Status::any_port().ingest(true))
        .plugin(logger("log", &s.path("log.jsonl")).subscribe(["t.>"]))
        .plugin(
            logger("process", &s.path("process.jsonl"))
                .subscribe(["t.>"])
                .isolation(Isolation::Process),
        )
        .plugin(
            Plugin::new("c", "logger_c")
                .subscribe(["t.>"])
                .set("path", s.path("c.jsonl").display().to_string()),
        )
        .write(s);
    let mut host = Running::start(&config);
    let address = host.status_address();
    (host, address, socket)
}

fn finish(mut host: Running) {
    drop(host.stdin.take());
    let (out, err) = host.wait(Duration::from_secs(60));
    assert!(out.status.success(), "{}", err.join("\n"));
    assert_no_raw_panic(&err.join("\n"));
}

/// The line without what differs between entries (id, topic, source, time).
fn payload_part(line: &Value) -> Value {
    let mut line = line.clone();
    for key in ["id", "topic", "source", "timestamp"] {
        line.as_object_mut().unwrap().remove(key);
    }
    line
}

/// A logger's lines by topic.
fn by_topic(s: &Scratch, file: &str) -> std::collections::BTreeMap<String, Value> {
    s.log_lines(file)
        .into_iter()
        .map(|line| (line["topic"].as_str().unwrap().to_owned(), line))
        .collect()
}

fn ctl_ok(socket: &Path, args: &[&str]) -> String {
    let (code, out, err) = ctl(socket, args);
    assert_eq!(code, 0, "ctl {args:?}: {err}");
    out
}

#[test]
fn the_same_text_json_and_bytes_via_stdin_ctl_and_http_arrive_with_one_content_type_and_are_logged_identically()
 {
    let s = Scratch::new("content-entries");
    let (mut host, address, socket) = host(&s);
    let text = "hello, wörld \"quoted\"\ttab";
    let json_looking = r#"{"id": 1}"#;
    let json_text = r#"{ "id": 1, "name": "é", "tags": [1, 2.5, null] }"#;
    let bytes: &[u8] = &[0, 159, 146, 150, 255];
    let b64 = "AJ+Slv8=";

    // stdin: the key says the type.
    let lines = [
        json!({"topic": "t.text.stdin", "payload_text": text}).to_string(),
        json!({"topic": "t.looks.stdin", "payload_text": json_looking}).to_string(),
        format!(r#"{{"topic": "t.json.stdin", "payload": {json_text}}}"#),
        json!({"topic": "t.bytes.stdin", "payload_base64": b64}).to_string(),
    ];
    host.send(&(lines.join("\n") + "\n"));

    // ctl: json when it parses, else text; the flags force it.
    let out = ctl_ok(&socket, &["publish", "t.text.ctl", text]);
    assert!(out.ends_with("(text)\n"), "{out}");
    let out = ctl_ok(&socket, &["publish", "--text", "t.looks.ctl", json_looking]);
    assert!(out.ends_with("(text)\n"), "{out}");
    let out = ctl_ok(&socket, &["publish", "t.json.ctl", json_text]);
    assert!(out.ends_with("(json)\n"), "{out}");
    let out = ctl_ok(&socket, &["publish", "--base64", "t.bytes.ctl", b64]);
    assert!(out.ends_with("(bytes)\n"), "{out}");

    // HTTP: the Content-Type says it.
    let plain = Some("text/plain; charset=utf-8");
    for (topic, content_type, body) in [
        ("t.text.http", plain, text.as_bytes()),
        ("t.looks.http", Some("text/plain"), json_looking.as_bytes()),
        (
            "t.json.http",
            Some("application/json"),
            json_text.as_bytes(),
        ),
        ("t.bytes.http", None, bytes),
    ] {
        let (code, answer) = post(&address, &format!("/events/{topic}"), content_type, body);
        assert_eq!(code, 200, "{topic}: {answer}");
    }
    eventually("12 events in each log", || {
        ["log.jsonl", "process.jsonl", "c.jsonl"]
            .iter()
            .all(|f| s.read(f).lines().count() >= 12)
    });
    finish(host);

    let thread = by_topic(&s, "log.jsonl");
    assert_eq!(thread.len(), 12, "{thread:?}");
    let expected = [
        ("text", json!({"payload_text": text})),
        ("looks", json!({"payload_text": json_looking})),
        (
            "json",
            json!({"payload": {"id": 1, "name": "é", "tags": [1, 2.5, null]}}),
        ),
        ("bytes", json!({"payload_base64": b64})),
    ];
    for (kind, payload) in &expected {
        for entry in ["stdin", "ctl", "http"] {
            let line = &thread[&format!("t.{kind}.{entry}")];
            assert_eq!(&payload_part(line), payload, "{kind} via {entry}: {line}");
        }
    }
    // The JSON value is logged as its compact text, whatever the spacing sent.
    let raw = s.read("log.jsonl");
    assert_eq!(
        raw.matches(r#""payload":{"id":1,"name":"é","tags":[1,2.5,null]}"#)
            .count(),
        3,
        "{raw}"
    );
    // The process instance and the C logger (reading `content_type`) write
    // the very same lines: the type crossed the process boundary and the C ABI.
    for file in ["process.jsonl", "c.jsonl"] {
        assert_eq!(by_topic(&s, file), thread, "{file}");
    }
}

#[test]
fn a_body_that_does_not_match_its_content_type_is_refused_with_400_and_counted() {
    let s = Scratch::new("content-http-400");
    let (host, address, _) = host(&s);
    for (content_type, body, code) in [
        (Some("application/json"), &b"hello"[..], 400),
        (Some("application/json"), b"", 400),
        (Some("application/json"), b"{\"a\": 1} {}", 400),
        (Some("text/plain"), b"ab\xffcd", 400),
        (Some("text/plain; charset=latin1"), b"caf\xe9", 415),
        (Some("application/json; charset=iso-8859-1"), b"1", 415),
    ] {
        let (status, answer) = post(&address, "/events/t.bad", content_type, body);
        assert_eq!(status, code, "{content_type:?} {body:?}: {answer}");
        let error: Value = serde_json::from_str(&answer).expect("a JSON error");
        assert!(error["error"].is_string(), "{answer}");
    }
    let (_, answer) = post(&address, "/events/t.bad", Some("text/plain"), b"ab\xffcd");
    assert!(answer.contains("not valid UTF-8"), "{answer}");
    // Empty text and empty bytes are events; so is text in US-ASCII.
    for (content_type, body) in [
        (Some("text/plain"), &b""[..]),
        (None, b""),
        (Some("text/plain; charset=us-ascii"), b"plain"),
    ] {
        let (status, answer) = post(&address, "/events/t.ok", content_type, body);
        assert_eq!(status, 200, "{content_type:?}: {answer}");
    }
    let metrics = http(&address, "GET", "/metrics", "").1;
    let refused = metrics
        .lines()
        .find(|l| l.contains("entry=\"http\"") && l.contains("reason=\"invalid_content\""))
        .unwrap_or_else(|| panic!("no invalid_content count for http:\n{metrics}"));
    // The four bodies above that do not match, and the one sent again; a
    // charset the host does not take is not a payload refused.
    assert!(refused.ends_with(" 5"), "{refused}");
    finish(host);
    let lines = s.log_lines("log.jsonl");
    assert_eq!(
        lines.iter().map(payload_part).collect::<Vec<_>>(),
        [
            json!({"payload_text": ""}),
            json!({"payload_base64": ""}),
            json!({"payload_text": "plain"})
        ]
    );
}

#[test]
fn ctl_publish_refuses_invalid_json_and_base64_with_one_line_and_exit_1() {
    let s = Scratch::new("content-ctl");
    let (host, _, socket) = host(&s);
    let (code, out, err) = ctl(&socket, &["publish", "--json", "t.x", "{oops"]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: the json payload is not valid JSON"),
        "{err}"
    );
    let (code, _, err) = ctl(&socket, &["publish", "--base64", "t.x", "not base64!"]);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: invalid base64 payload"), "{err}");
    let (code, _, err) = ctl(&socket, &["publish", "--json", "--text", "t.x", "1"]);
    assert_eq!(code, 2, "two types is a usage error: {err}");
    // An empty payload is text; `--json` makes `1` a number.
    assert!(ctl_ok(&socket, &["publish", "t.empty", ""]).ends_with("(text)\n"));
    assert!(ctl_ok(&socket, &["publish", "--json", "t.n", "1"]).ends_with("(json)\n"));
    // The socket takes the same as `as`; an unknown one is refused.
    let answer = plughost::control::request(
        &socket,
        &json!({"cmd": "publish", "topic": "t.as", "payload": "AP8=", "as": "base64"}),
    )
    .unwrap();
    assert_eq!(answer["result"]["content_type"], "bytes", "{answer}");
    let answer = plughost::control::request(
        &socket,
        &json!({"cmd": "publish", "topic": "t.as", "payload": "x", "as": "xml"}),
    )
    .unwrap();
    assert_eq!(answer["ok"], false, "{answer}");
    finish(host);
    let lines = s.log_lines("log.jsonl");
    assert_eq!(
        lines.iter().map(payload_part).collect::<Vec<_>>(),
        [
            json!({"payload_text": ""}),
            json!({"payload": 1}),
            json!({"payload_base64": "AP8="})
        ]
    );
}

#[test]
fn a_logger_file_is_events_input_again_and_logs_the_same_payloads() {
    let s = Scratch::new("content-round-trip");
    let first = Config::new()
        .plugin(logger("log", &s.path("first.jsonl")).subscribe(["t.>"]))
        .write(&s);
    let input = [
        json!({"topic": "t.a", "payload": {"k": [1, "two"]}}),
        json!({"topic": "t.b", "payload_text": "{\"looks\": \"like json\"}\n"}),
        json!({"topic": "t.c", "payload_base64": "AAEC/w=="}),
        json!({"topic": "t.d", "payload": null}),
        json!({"topic": "t.e", "payload_text": ""}),
    ]
    .map(|line| line.to_string() + "\n")
    .concat();
    let out = run(&["run", first.to_str().unwrap(), "--events", "-"], &input);
    assert!(out.status.success(), "{}", stderr(&out));
    let second = Config::new()
        .plugin(logger("log", &s.path("second.jsonl")).subscribe(["t.>"]))
        .write(&s);
    let file = s.path("first.jsonl");
    let out = run(
        &[
            "run",
            second.to_str().unwrap(),
            "--events",
            file.to_str().unwrap(),
        ],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("5 event(s) published, 0 line(s) skipped"),
        "{}",
        stderr(&out)
    );
    let (a, b) = (s.log_lines("first.jsonl"), s.log_lines("second.jsonl"));
    assert_eq!(a.len(), 5);
    let strip = |lines: &[Value]| -> Vec<Value> {
        lines
            .iter()
            .map(|l| {
                let mut l = l.clone();
                for key in ["id", "source", "timestamp"] {
                    l.as_object_mut().unwrap().remove(key);
                }
                l
            })
            .collect()
    };
    assert_eq!(strip(&a), strip(&b));
    assert!(b.iter().all(|l| l["source"] == "file"));
}
