//! Config errors reach the user as one line naming file, line and column.

mod common;

use common::*;

#[test]
fn malformed_toml_names_file_line_and_column() {
    let s = Scratch::new("malformed");
    let config = s.write(
        "plugins.toml",
        "[host]\nqueue_capacity = 16\n[[plugin]\nname = \"a\"\n",
    );
    for command in ["run", "check"] {
        let out = run(&[command, config.to_str().unwrap()], "");
        let line = assert_one_line_error(&out);
        assert!(
            line.starts_with(&format!(
                "error: {}:3:9: invalid table header",
                config.display()
            )),
            "{line}"
        );
    }
}

#[test]
fn an_unknown_key_names_file_line_and_column() {
    let s = Scratch::new("unknown-key");
    let config = s.write(
        "plugins.toml",
        "[[plugin]]\nname = \"a\"\nlibrary = \"logger\"\nsubscribes = [\">\"]\n",
    );
    let out = run(&["check", config.to_str().unwrap()], "");
    let line = assert_one_line_error(&out);
    assert!(
        line.starts_with(&format!(
            "error: {}:4:1: unknown field `subscribes`, expected one of",
            config.display()
        )),
        "{line}"
    );
}

#[test]
fn semantic_errors_point_at_the_value() {
    let s = Scratch::new("semantic");
    let cases = [
        (
            "[host]\nshutdown_timeout = \"soon\"\n",
            "2:20: invalid duration `soon`",
        ),
        (
            "[host]\nqueue_capacity = 0\n",
            "2:18: `queue_capacity` must be between 1 and 1048576 (it is 0)",
        ),
        (
            "[host]\nqueue_capacity = 1000000000000\n",
            "2:18: `queue_capacity` must be between 1 and 1048576 (it is 1000000000000)",
        ),
        (
            "[[plugin]]\nname = \"a\"\nlibrary = \"x\"\ntick_interval = \"9223372036854775808s\"\n",
            "4:17: `tick_interval` must be at most 24h (it is 9223372036854775808s)",
        ),
        (
            "[[plugin]]\nname = \"a\"\nlibrary = \"x\"\nsubscribe = [\"a.>.b\"]\n",
            "4:14: invalid pattern `a.>.b`: `>` may only be the last token",
        ),
        (
            "[[plugin]]\nname = \"a\"\nlibrary = \"x\"\n[[plugin]]\nname = \"a\"\nlibrary = \"y\"\n",
            "5:8: duplicate plugin name `a` (first defined on line 2)",
        ),
    ];
    for (text, expected) in cases {
        let config = s.write("plugins.toml", text);
        let out = run(&["check", config.to_str().unwrap()], "");
        let line = assert_one_line_error(&out);
        let want = format!("error: {}:{expected}", config.display());
        assert!(
            line.starts_with(&want),
            "for:\n{text}\n got: {line}\nwant: {want}"
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    let out = run(&["frobnicate"], "");
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["discover"], "");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn check_says_so_when_no_instance_is_configured() {
    let s = Scratch::new("no-plugins");
    let config = s.write("plugins.toml", "[host]\nqueue_capacity = 8\n");
    let out = run(&["check", config.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out),
        "no [[plugin]] instances configured: nothing to check\n"
    );
}

#[test]
fn check_and_run_report_every_invalid_value_at_once() {
    let s = Scratch::new("several");
    let config = s.write(
        "plugins.toml",
        "[host]\nshutdown_timeout = \"soon\"\n\
         [[plugin]]\nname = \"a\"\nlibrary = \"x\"\nsha256 = \"abc\"\n\
         [[plugin]]\nname = \"a\"\nlibrary = \"y\"\nsubscribe = [\"a.>.b\"]\ntick_interval = \"often\"\n",
    );
    let path = config.display().to_string();
    for command in ["check", "run"] {
        let out = run(&[command, config.to_str().unwrap()], "");
        assert_eq!(out.status.code(), Some(1), "{command}");
        let err = stderr(&out);
        assert_no_raw_panic(&err);
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(
            lines,
            [
                format!(
                    "error: {path}:2:20: invalid duration `soon`: write a whole number and a unit, such as \"250ms\", \"5s\", \"1m\" or \"2h\""
                ),
                format!("error: {path}:6:10: `sha256` must be 64 hexadecimal digits"),
                format!("error: {path}:8:8: duplicate plugin name `a` (first defined on line 4)"),
                format!(
                    "error: {path}:10:14: invalid pattern `a.>.b`: `>` may only be the last token"
                ),
                format!(
                    "error: {path}:11:17: invalid duration `often`: write a whole number and a unit, such as \"250ms\", \"5s\", \"1m\" or \"2h\""
                ),
            ],
            "{command}: every problem, in file order, one line each"
        );
    }
}

/// The tests' config builder (tests/common/config.rs) adds nothing a test
/// did not set but `plugin_dirs`, and every key it sets reaches the host as
/// the key it names.
#[test]
fn the_test_config_builder_writes_exactly_the_keys_a_test_sets() {
    use plughost::config::{Isolation as I, Overflow as O, Restart as R};
    use std::time::Duration;
    let bare = Config::new().plugin(Plugin::new("a", "logger")).render();
    assert_eq!(
        bare,
        format!(
            "[host]\nplugin_dirs = [{}]\n[[plugin]]\nname = \"a\"\nlibrary = \"logger\"\n",
            toml::Value::String(plugin_dir().display().to_string())
        )
    );

    let s = Scratch::new("builder");
    let path = Config::new()
        .queue_capacity(7)
        .overflow(Overflow::DropNewest)
        .shutdown_timeout("3s")
        .control_socket(&s.path("x.sock"))
        .max_event_bytes(4096)
        .control_max_line_bytes(2048)
        .status(
            Status::any_port()
                .check_timeout("2s")
                .unavailable_status_code(599)
                .ingest(true)
                .ingest_max_bytes(99)
                .route_timeout("4s")
                .route_max_pending(5)
                .header_timeout("6s")
                .idle_timeout("7s")
                .max_connections(8),
        )
        .state(
            State::new()
                .enabled(true)
                .ping_enabled(false)
                .ping_interval("9s")
                .process_name("p"),
        )
        .metrics_enabled(true)
        .plugin(
            Plugin::new("b", "chaos")
                .subscribe(["x.>", "y"])
                .enabled(false)
                .queue_capacity(11)
                .overflow(Overflow::DropOldest)
                .isolation(Isolation::Process)
                .restart(Restart::Never)
                .max_restarts(12)
                .restart_window("13s")
                .handler_timeout("14s")
                .start_timeout("15s")
                .required(false)
                .tick_interval("16s")
                .sha256(&"ab".repeat(32))
                .allow_insecure_permissions(true)
                .config(serde_json::json!({"n": 1, "list": ["a"], "nested": {"f": 0.5}}))
                .set("key with space", true),
        )
        .write(&s);
    let config = plughost::Config::load(&path).unwrap();
    let host = &config.host;
    assert_eq!(
        (
            host.queue_capacity.get(),
            host.overflow,
            host.shutdown_timeout,
            host.control_socket.clone(),
            host.max_event_bytes,
            host.control_max_line_bytes,
        ),
        (
            7,
            O::DropNewest,
            Duration::from_secs(3),
            Some(s.path("x.sock")),
            4096,
            2048
        )
    );
    let status = config.status.expect("[status]");
    assert_eq!(
        (
            status.address.to_string(),
            status.check_timeout,
            status.unavailable_status_code,
            status.ingest,
            status.ingest_max_bytes,
            status.route_timeout,
            status.route_max_pending,
            status.header_timeout,
            status.idle_timeout,
            status.max_connections,
        ),
        (
            "127.0.0.1:0".to_owned(),
            Duration::from_secs(2),
            599,
            true,
            99,
            Duration::from_secs(4),
            5,
            Duration::from_secs(6),
            Duration::from_secs(7),
            8
        )
    );
    let state = &config.state;
    assert_eq!(
        (
            state.enabled,
            state.ping_enabled,
            state.ping_interval,
            state.process_name.as_str()
        ),
        (true, false, Duration::from_secs(9), "p")
    );
    assert!(config.metrics.enabled);
    let b = &config.plugins[0];
    let patterns: Vec<String> = b.subscribe.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        (b.name.as_str(), b.library.as_str(), patterns, b.enabled),
        ("b", "chaos", vec!["x.>".to_owned(), "y".to_owned()], false)
    );
    assert_eq!(
        (
            b.queue_capacity.get(),
            b.overflow,
            b.isolation,
            b.restart,
            b.max_restarts,
            b.restart_window,
        ),
        (
            11,
            O::DropOldest,
            I::Process,
            R::Never,
            12,
            Duration::from_secs(13)
        )
    );
    assert_eq!(
        (
            b.handler_timeout,
            b.start_timeout,
            b.required,
            b.tick_interval,
            b.sha256.clone(),
            b.allow_insecure_permissions,
        ),
        (
            Some(Duration::from_secs(14)),
            Duration::from_secs(15),
            false,
            Some(Duration::from_secs(16)),
            Some("ab".repeat(32)),
            true
        )
    );
    assert_eq!(
        b.config,
        serde_json::json!({"n": 1, "list": ["a"], "nested": {"f": 0.5}, "key with space": true})
    );
}
