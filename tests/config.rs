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
