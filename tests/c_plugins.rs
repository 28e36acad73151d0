//! C plugins: built by `cc` against the generated header, loaded by the same
//! host, on the same threads and mailboxes, next to Rust plugins.

mod common;

use common::*;
use serde_json::json;

/// One test body for the Rust `logger` and the C `logger_c`.
fn receives_n_events_in_order(library: &str) {
    let s = Scratch::new(&format!("n-events-{library}"));
    let config = Config::new()
        .plugin(
            Plugin::new("log", library)
                .subscribe(["n.>"])
                .set("path", s.path("log.jsonl").display().to_string()),
        )
        .write(&s);
    let events: String = (0..20_000)
        .map(|i| event("n.item", json!({"i": i})))
        .collect();
    let out = run(&["run", config.to_str().unwrap(), "--events", "-"], &events);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = s.log_lines("log.jsonl");
    assert_eq!(lines.len(), 20_000);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["payload"], json!({"i": i}));
        assert_eq!(line["topic"], "n.item");
        assert_eq!(line["source"], "stdin");
    }
    assert_eq!(
        summary_row(&out, "log"),
        Row {
            state: "stopped".into(),
            received: 20_000,
            processed: 20_000,
            dropped: 0,
            failed: 0
        }
    );
}

#[test]
fn the_rust_logger_receives_exactly_n_events_in_order() {
    receives_n_events_in_order("logger");
}

#[test]
fn the_c_logger_receives_exactly_n_events_in_order() {
    receives_n_events_in_order("logger_c");
}

#[test]
fn logger_and_logger_c_write_the_same_objects_for_the_same_events() {
    let s = Scratch::new("logger-parity");
    let config = Config::new()
        .plugin(logger("rust", &s.path("rust.jsonl")).subscribe(["p.>"]))
        .plugin(
            Plugin::new("c", "logger_c")
                .subscribe(["p.>"])
                .set("path", s.path("c.jsonl").display().to_string()),
        )
        .write(&s);
    let mut events = String::new();
    events += &event(
        "p.object",
        json!({"a": 1, "nested": {"list": [1, 2.5, -3e5, true, false, null]}}),
    );
    events += &event(
        "p.string",
        json!("quote \" backslash \\ newline \n tab \t unicode é ✓ control \u{1}"),
    );
    events += &event("p.number", json!(-0.5));
    events += &event("p.null", json!(null));
    events += "{\"topic\": \"p.raw\", \"payload_base64\": \"AAECA/+A\"}\n";
    events += "{\"topic\": \"p.json-bytes\", \"payload_base64\": \"WzEsMl0=\"}\n";
    events += "{\"topic\": \"p.empty\", \"payload_base64\": \"\"}\n";
    events += "{\"topic\": \"p.text\", \"payload_text\": \"h\\u00e9 \\\"x\\\" \\u0001 \\n\"}\n";
    let out = run(&["run", config.to_str().unwrap(), "--events", "-"], &events);
    assert!(out.status.success(), "{}", stderr(&out));
    let rust = s.log_lines("rust.jsonl");
    let c = s.log_lines("c.jsonl");
    assert_eq!(rust.len(), 8, "{rust:?}");
    assert_eq!(
        rust[3]["payload"],
        serde_json::Value::Null,
        "a null payload is `null`"
    );
    assert_eq!(rust, c, "same JSON objects, line by line");
    assert_eq!(
        s.read("rust.jsonl"),
        s.read("c.jsonl"),
        "and the same bytes"
    );
}

#[test]
fn events_cross_between_c_and_rust_plugins_both_ways() {
    let s = Scratch::new("interop");
    let config = Config::new()
        // host -> echo_c (C) publishes echo.<topic> -> logger (Rust)
        .plugin(Plugin::new("echo", "echo_c").subscribe(["in.>"]))
        .plugin(logger("rust-log", &s.path("rust.jsonl")).subscribe(["echo.>"]))
        // host -> chaos (Rust) forwards to to-c.forwarded -> logger_c (C)
        .plugin(
            Plugin::new("forward", "chaos")
                .subscribe(["in.>"])
                .config(json!({"forward_to": "to-c.forwarded"})),
        )
        .plugin(
            Plugin::new("c-log", "logger_c")
                .subscribe(["to-c.>"])
                .set("path", s.path("c.jsonl").display().to_string()),
        )
        .write(&s);
    let events: String = (0..100).map(|i| event("in.x", json!(i))).collect();
    let out = run(&["run", config.to_str().unwrap(), "--events", "-"], &events);
    assert!(out.status.success(), "{}", stderr(&out));
    let from_c = s.log_lines("rust.jsonl");
    assert_eq!(from_c.len(), 100);
    for (i, line) in from_c.iter().enumerate() {
        assert_eq!(
            (&line["topic"], &line["source"], &line["payload"]),
            (&json!("echo.in.x"), &json!("echo"), &json!(i))
        );
    }
    let from_rust = s.log_lines("c.jsonl");
    assert_eq!(from_rust.len(), 100);
    for (i, line) in from_rust.iter().enumerate() {
        assert_eq!(
            (&line["topic"], &line["source"], &line["payload"]),
            (&json!("to-c.forwarded"), &json!("forward"), &json!(i))
        );
    }
}

#[test]
fn check_and_discover_show_language_and_abi_version() {
    let s = Scratch::new("c-check");
    let config = Config::new()
        .plugin(Plugin::new("echo", "echo_c"))
        .plugin(Plugin::new("count", "counter"))
        .write(&s);
    let out = run(&["check", config.to_str().unwrap()], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("echo: ok: echo_c 0.1.0 (c, plughost.h 1.3) from "),
        "{text}"
    );
    assert!(
        text.contains("count: ok: counter 0.1.0 (rust, plughost-api ABI 1.1) from "),
        "{text}"
    );
    std::fs::copy(plugin_path("echo_c"), s.path("libecho_c.so")).unwrap();
    let out = run(&["discover", s.dir.to_str().unwrap()], "");
    assert!(
        stdout(&out).contains("libecho_c.so: echo_c 0.1.0 (c, plughost.h 1.3): fully supported"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn null_optional_callbacks_and_a_null_instance_are_fine() {
    let s = Scratch::new("c-null-optionals");
    let library = cc_fixture(&s, "versioned", "versioned", &[]);
    let config = Config::new()
        .plugin(Plugin::new("v", &library).subscribe(["t"]))
        .plugin(logger("log", &s.path("log.jsonl")).subscribe(["t.seen"]))
        .write(&s);
    let events: String = (0..10).map(|i| event("t", json!(i))).collect();
    let out = run(&["run", config.to_str().unwrap(), "--events", "-"], &events);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        summary_row(&out, "v"),
        Row {
            state: "stopped".into(),
            received: 10,
            processed: 10,
            dropped: 0,
            failed: 0
        }
    );
    assert_eq!(s.log_lines("log.jsonl").len(), 10);
}

fn refused(flags: &[&str]) -> String {
    let s = Scratch::new("c-version");
    let library = cc_fixture(&s, "versioned", "versioned", flags);
    let config = Config::new().plugin(Plugin::new("v", &library)).write(&s);
    let line = assert_one_line_error(&run(&["run", config.to_str().unwrap()], ""));
    let prefix = format!("error: plugin `v`: {}: ", library.display());
    assert!(line.starts_with(&prefix), "{line}");
    // `check` refuses it the same way.
    let out = run(&["check", config.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains(&line["error: plugin `v`: ".len()..]),
        "{}",
        stdout(&out)
    );
    line[prefix.len()..].to_owned()
}

#[test]
fn a_wrong_major_version_is_refused_naming_both_versions() {
    assert_eq!(
        refused(&["-DFIXTURE_MAJOR=2"]),
        "built for C ABI 2.3, but this host speaks 1.3: rebuild it against this host's plughost.h"
    );
}

#[test]
fn a_newer_minor_version_that_sets_nothing_this_host_lacks_loads_fully() {
    // Built against a newer header, its descriptor ends where this host's
    // does: it uses nothing this host lacks (docs/compatibility.md). One
    // that sets more is in tests/compat.rs.
    let s = Scratch::new("c-newer-minor");
    let library = cc_fixture(&s, "versioned", "versioned", &["-DFIXTURE_MINOR=7"]);
    let config = Config::new()
        .plugin(Plugin::new("v", &library).subscribe(["t"]))
        .write(&s);
    let out = run(&["check", config.to_str().unwrap()], "");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "v: ok: versioned 0.0.1 (c, plughost.h 1.7) from {} (config not checked: this plugin reads it only when it starts)\n",
            library.display()
        )
    );
    let out = run(
        &["run", config.to_str().unwrap(), "--events", "-"],
        &event("t", json!(1)),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(summary_row(&out, "v").processed, 1);
}

#[test]
fn a_too_small_descriptor_is_refused() {
    let line = refused(&["-DFIXTURE_SIZE=16"]);
    assert!(
        line.starts_with("its plughost_plugin descriptor declares 16 bytes, fewer than the "),
        "{line}"
    );
    assert!(
        line.ends_with(" of C ABI 1.0: set `size = sizeof(plughost_plugin)`"),
        "{line}"
    );
}

#[test]
fn a_descriptor_larger_than_any_1_x_descriptor_is_refused() {
    // The host reads a newer plugin's descriptor up to its declared size:
    // a size no 1.x descriptor comes near is refused before any of it is read.
    assert_eq!(
        refused(&["-DFIXTURE_SIZE=5000"]),
        "its plughost_plugin descriptor declares 5000 bytes, more than the 4096 any C ABI 1.x descriptor may have: set `size = sizeof(plughost_plugin)`"
    );
}

#[test]
fn the_plugin_in_the_c_tutorial_builds_with_its_one_command_and_runs() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/writing-a-c-plugin.md"
    ))
    .unwrap();
    let code = doc
        .split("```c\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a ```c block");
    assert!(
        code.lines().count() <= 40,
        "the minimal plugin stays within 40 lines"
    );
    let s = Scratch::new("c-tutorial");
    s.write("hello.c", code);
    let include = concat!(env!("CARGO_MANIFEST_DIR"), "/../ffi/include");
    let command = doc
        .lines()
        .find(|l| l.starts_with("cc "))
        .expect("the build command");
    let command = command.replace("/path/to/plughost/ffi/include", include);
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(&command)
        .current_dir(&s.dir)
        .status()
        .unwrap();
    assert!(status.success(), "{command}");
    let config = Config::new()
        .plugin_dirs(["."])
        .plugin(Plugin::new("hello", "hello").subscribe(["orders.>"]))
        .write(&s);
    let out = run(
        &["run", config.to_str().unwrap(), "--events", "-"],
        &event("orders.created", json!({"id": 1})),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("event 1: orders.created (8 bytes)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_plugin_built_against_abi_1_0_still_loads_in_a_newer_host() {
    let s = Scratch::new("c-old-minor");
    let size = "-DFIXTURE_SIZE=offsetof(plughost_plugin, health)";
    let library = cc_fixture(&s, "versioned", "versioned", &["-DFIXTURE_MINOR=0", size]);
    let config = Config::new()
        .plugin(Plugin::new("old", &library).subscribe(["t"]))
        .write(&s);
    let out = run(&["check", config.to_str().unwrap()], "");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("old: ok: versioned 0.0.1 (c, plughost.h 1.0) from "),
        "{}",
        stdout(&out)
    );
    let out = run(
        &["run", config.to_str().unwrap(), "--events", "-"],
        &event("t", json!(1)),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(summary_row(&out, "old").processed, 1);
}

#[test]
fn a_c_plugin_reports_health_readiness_and_jobs_over_http() {
    let s = Scratch::new("c-reports");
    let library = cc_fixture(&s, "versioned", "reporter", &["-DFIXTURE_REPORTS"]);
    let config = Config::new()
        .status(Status::any_port())
        .plugin(Plugin::new("c", &library))
        .write(&s);
    let mut host = Running::start(&config);
    let address = host.status_address();
    let (code, health) = get_json(&address, "/health");
    assert_eq!(code, 200, "degraded is still up: {health}");
    assert_eq!(
        health["plugins"][0],
        json!({"name": "c", "status": "degraded", "message": "fixture is degraded"})
    );
    let (code, ready) = get_json(&address, "/ready");
    assert_eq!((code, &ready["plugins"][0]["ready"]), (200, &json!(true)));
    let (_, jobs) = get_json(&address, "/jobs");
    assert_eq!(
        jobs,
        json!([{"plugin": "c", "pipeline": "c-pipe", "priority": 3, "ready": true, "queue": "q", "active": 2,
                "delayed": 1, "reserved": 0, "driver": "c", "error_message": ""}])
    );
    drop(host.stdin.take());
    let (out, _) = host.wait(std::time::Duration::from_secs(30));
    assert!(out.status.success());
}

/// Payloads that are JSON, almost JSON, or not at all, for the parity test.
fn tricky_payloads() -> Vec<Vec<u8>> {
    let fixed: [&[u8]; 30] = [
        b"0",
        b"-0",
        b"01",
        b"1.",
        b".5",
        b"1e5",
        b"1E+5",
        b"-1.5e-7",
        b"true",
        b"tru",
        b"null ",
        b" [1, 2] ",
        b"[1,]",
        b"{\"a\":1,}",
        b"{\"a\" : [ {} , [] ] }",
        b"\"\\u00e9\\n\"",
        b"\"\\x\"",
        b"\"\t\"",
        b"\"\xc3\xa9\"",
        b"\"\xc3\"",
        b"\"\xed\xa0\x80\"",
        b"{\"a\":1}{}",
        b"[[[[[[[[[[1]]]]]]]]]]",
        b"\"\\ud83d\\ude00\"",
        b"1 2",
        b"{\"k\":\"v\"",
        b"\xff\xfe",
        b"",
        b"\n",
        b"[\"\\/\"]",
    ];
    let mut payloads: Vec<Vec<u8>> = fixed.iter().map(|p| p.to_vec()).collect();
    payloads.push(format!("{}1{}", "[".repeat(128), "]".repeat(128)).into_bytes());
    payloads.push(format!("{}1{}", "[".repeat(129), "]".repeat(129)).into_bytes());
    // Deep enough to overflow a recursive validator on a plugin thread's stack.
    payloads.push(format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes());
    // Deterministic pseudo-random bytes drawn mostly from JSON's alphabet.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let alphabet = b"{}[]:,\"\\ 0123456789.-+eEtrufalsn\xc3\xa9\x01abc";
    for _ in 0..3000 {
        let mut payload = Vec::new();
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        for _ in 0..(state % 12) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            payload.push(alphabet[(state % alphabet.len() as u64) as usize]);
        }
        payloads.push(payload);
    }
    payloads
}

#[test]
fn logger_c_agrees_with_serde_json_on_which_payloads_are_json() {
    use base64::Engine as _;
    let s = Scratch::new("logger-parity-fuzz");
    let config = Config::new()
        .plugin(logger("rust", &s.path("rust.jsonl")).subscribe(["f"]))
        .plugin(
            Plugin::new("c", "logger_c")
                .subscribe(["f"])
                .set("path", s.path("c.jsonl").display().to_string()),
        )
        .write(&s);
    // Each payload as bytes, as text when it is UTF-8, and as JSON when
    // serde_json reads it as a value: the two loggers write the same line.
    let mut lines = Vec::new();
    for p in tricky_payloads() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(&p);
        lines.push(json!({"topic": "f", "payload_base64": b64}).to_string());
        if let Ok(text) = std::str::from_utf8(&p) {
            lines.push(json!({"topic": "f", "payload_text": text}).to_string());
            // (A raw newline would end the input line.)
            if serde_json::from_str::<&serde_json::value::RawValue>(text).is_ok()
                && !text.contains('\n')
            {
                lines.push(format!(r#"{{"topic": "f", "payload": {text}}}"#));
            }
        }
    }
    let events = lines.join("\n") + "\n";
    let out = run(&["run", config.to_str().unwrap(), "--events", "-"], &events);
    assert!(out.status.success(), "{}", stderr(&out));
    let (rust, c) = (s.read("rust.jsonl"), s.read("c.jsonl"));
    assert_eq!(
        (rust.lines().count(), c.lines().count()),
        (lines.len(), lines.len())
    );
    for ((r, c), line) in rust.lines().zip(c.lines()).zip(&lines) {
        assert_eq!(r, c, "for the input line {line}");
    }
    for kind in ["\"payload\":", "\"payload_text\":", "\"payload_base64\":"] {
        assert!(rust.contains(kind), "some lines have {kind}");
    }
}

#[test]
fn a_c_plugin_ticks_serves_routes_and_calls_the_host() {
    let s = Scratch::new("c-routes");
    let library = cc_fixture(&s, "versioned", "router", &["-DFIXTURE_ROUTES"]);
    let config = Config::new()
        .status(Status::any_port())
        .plugin(Plugin::new("c", &library).tick_interval("10ms"))
        .write(&s);
    let mut host = Running::start(&config);
    let address = host.status_address();
    let (code, body) = http(&address, "POST", "/plugins/c/hello?x=1", "");
    assert_eq!(
        (code, body.as_str()),
        (201, "hello from C, POST with a query, list ok: 1")
    );
    assert_eq!(http(&address, "GET", "/plugins/c/other", "").0, 404);
    eventually("a few ticks", || {
        http(&address, "GET", "/plugins/c/ticks", "")
            .1
            .parse::<u64>()
            .unwrap_or(0)
            >= 3
    });
    drop(host.stdin.take());
    let (out, _) = host.wait(std::time::Duration::from_secs(30));
    assert!(out.status.success());
}

#[test]
fn every_shipped_c_plugin_refuses_an_unknown_config_key() {
    // A misspelt key must stop the instance with one line, not silently fall
    // back to a default (as `echo_c` once did with `prefx`).
    let s = Scratch::new("c-unknown-key");
    for library in ["logger_c", "echo_c", "chaos_c"] {
        let config = Config::new()
            .plugin(Plugin::new("x", library).set("prefx", "typo."))
            .write(&s);
        let line = assert_one_line_error(&run(&["run", config.to_str().unwrap()], ""));
        assert_eq!(
            line,
            format!(
                "error: plugin `x` ({}) failed to initialize: unknown config key `prefx`",
                plugin_path(library).display()
            )
        );
    }
}

#[test]
fn echo_c_refuses_a_prefix_it_cannot_use() {
    let s = Scratch::new("c-echo-prefix");
    for prefix in [json!(42), json!("p.".repeat(40))] {
        let config = Config::new()
            .plugin(Plugin::new("echo", "echo_c").set("prefix", prefix))
            .write(&s);
        let line = assert_one_line_error(&run(&["run", config.to_str().unwrap()], ""));
        assert_eq!(
            line,
            format!(
                "error: plugin `echo` ({}) failed to initialize: invalid config: `prefix` must be a string of at most 63 bytes, such as \"echo.\"",
                plugin_path("echo_c").display()
            )
        );
    }
}

/// `plughost run` of a thread-mode `hostile` fixture built to crash on an
/// event, fed one event on `topic`: the host dies of the crash.
fn crash_on(topic: &str) -> (std::process::Output, std::path::PathBuf) {
    let s = Scratch::new(&format!("crash-{topic}"));
    let library = cc_fixture(&s, "hostile", "crashing", &["-DHOSTILE_CRASHES_ON_EVENT"]);
    let config = Config::new()
        .plugin(Plugin::new("crasher", &library).subscribe(["crash.>"]))
        .write(&s);
    let out = run(
        &["run", config.to_str().unwrap(), "--events", "-"],
        &event(topic, json!(1)),
    );
    (out, library)
}

#[test]
fn a_thread_mode_plugin_that_crashes_the_host_is_named_on_stderr() {
    use std::os::unix::process::ExitStatusExt;
    let (out, library) = crash_on("crash.segv");
    let err = stderr(&out);
    assert_eq!(out.status.signal(), Some(libc::SIGSEGV), "{err}");
    let line = format!(
        "error: plugin `crasher` (library {}) crashed with SIGSEGV while handling an event on topic `crash.segv`",
        library.display()
    );
    assert_eq!(
        err.lines().filter(|l| *l == line).count(),
        1,
        "wanted once: {line}\nin:\n{err}"
    );
}

#[test]
fn a_stack_overflow_in_a_thread_mode_plugin_is_named_and_rust_still_reports_it() {
    use std::os::unix::process::ExitStatusExt;
    let (out, library) = crash_on("crash.overflow");
    let err = stderr(&out);
    // Rust's own report runs after ours, and ends the host with abort().
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{err}");
    let ours = format!(
        "error: plugin `crasher` (library {}) crashed with SIGSEGV while handling an event on topic `crash.overflow`",
        library.display()
    );
    let ours_at = err.lines().position(|l| l == ours);
    let rusts_at = err.lines().position(|l| {
        l.contains("thread 'plughost:crasher") && l.contains("has overflowed its stack")
    });
    assert!(
        ours_at.is_some() && rusts_at.is_some() && ours_at < rusts_at,
        "wanted our line, then Rust's stack overflow report, in:\n{err}"
    );
}

/// A C plugin's `publish` takes a concrete topic only: one holding a
/// wildcard (`*` or `>`) is refused at the call (the plugin sees
/// PLUGHOST_ERROR), counted, and never routed, in both isolation modes.
#[test]
fn a_c_plugin_publishing_on_a_wildcard_topic_is_refused() {
    for isolation in [Isolation::Thread, Isolation::Process] {
        let s = Scratch::new(&format!("c-wildcard-{isolation}"));
        let echo = |name: &str, prefix: &str| {
            Plugin::new(name, "echo_c")
                .isolation(isolation)
                .subscribe(["in.>"])
                .set("prefix", prefix)
        };
        let config = Config::new()
            .plugin(logger("log", &s.path("log.jsonl")).subscribe([">"]))
            .plugin(echo("star", "star.*."))
            .plugin(echo("rest", "rest.>."))
            .plugin(echo("plain", "plain."))
            .write(&s);
        let events: String = (0..3).map(|i| event("in.x", json!(i))).collect();
        let out = run(&["run", config.to_str().unwrap(), "--events", "-"], &events);
        let err = stderr(&out);
        assert!(out.status.success(), "{isolation}: {err}");
        for name in ["star", "rest"] {
            let row = summary_row(&out, name);
            assert_eq!(
                (row.received, row.processed, row.failed, row.dropped),
                (3, 0, 3, 0),
                "{isolation}: {name} failed each event with the refusal"
            );
        }
        let refusals = err
            .lines()
            .filter(|l| l.contains("on in.x failed: publish refused"))
            .count();
        assert_eq!(refusals, 6, "{isolation}: {err}");
        assert_eq!(summary_row(&out, "plain").processed, 3, "{isolation}");
        assert!(
            stdout(&out)
                .lines()
                .any(|l| l == "refused: 6 event(s) from plugin (invalid_topic)"),
            "{isolation}: {}",
            stdout(&out)
        );
        let mut topics: Vec<String> = s
            .log_lines("log.jsonl")
            .iter()
            .map(|l| l["topic"].as_str().unwrap().to_owned())
            .filter(|t| !t.starts_with("plughost."))
            .collect();
        topics.sort();
        let mut wanted = vec!["in.x"; 3];
        wanted.extend(["plain.in.x"; 3]);
        assert_eq!(topics, wanted, "{isolation}: nothing wild was routed");
    }
}
