//! The shipped loggers (`logger` in Rust, `logger_c` in C): what they count
//! as processed is in the file, in whole lines, whatever kills them or the
//! host afterwards. One test body for both.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::Duration;

const LOGGERS: [&str; 2] = ["logger", "logger_c"];

fn plugin_row(address: &str, name: &str) -> Value {
    let (_, plugins) = get_json(address, "/plugins");
    plugins
        .as_array()
        .and_then(|list| list.iter().find(|p| p["name"] == name).cloned())
        .unwrap_or_else(|| panic!("no {name} in {plugins}"))
}

/// The file's lines, each checked to be whole: the file ends with a newline
/// and every line is a JSON object with the payload `i` of the i-th event.
fn whole_lines(s: &Scratch, file: &str) -> usize {
    let text = s.read(file);
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "the last line is whole"
    );
    for (i, line) in text.lines().enumerate() {
        let value: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("line {i} is not whole: {e}: {line:?}"));
        assert_eq!(value["payload"], json!(i), "line {i} in order");
    }
    text.lines().count()
}

fn events(n: usize) -> String {
    (0..n).map(|i| event("work.item", json!(i))).collect()
}

/// The pids of the processes whose parent is `parent` (each thread lists
/// the children it started).
fn children_of(parent: u32) -> Vec<i32> {
    let mut children = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{parent}/task")).unwrap() {
        let listed = std::fs::read_to_string(task.unwrap().path().join("children"));
        let listed = listed.unwrap_or_default();
        children.extend(
            listed
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok()),
        );
    }
    children
}

/// kill -9 of a logger's process once it counted every event processed:
/// every one of them is in the file, whole (a 64 KiB buffer lost ~650).
#[test]
fn kill_9_of_a_logger_s_process_loses_no_line_it_counted() {
    for library in LOGGERS {
        let s = Scratch::new(&format!("logger-kill-{library}"));
        let config = Config::new()
            .status(Status::any_port())
            .plugin(
                Plugin::new("log", library)
                    .isolation(Isolation::Process)
                    .restart(Restart::Never)
                    .subscribe(["work.>"])
                    .set("path", s.path("log.jsonl").display().to_string()),
            )
            .write(&s);
        let mut host = Running::start(&config);
        let address = host.status_address();
        let child = children_of(host.child.id());
        assert_eq!(child.len(), 1, "{library}: one child process");
        host.send(&events(2000));
        eventually("every event processed", || {
            plugin_row(&address, "log")["processed"] == 2000
        });
        // SAFETY: kill(2) with plain integers on our test's grandchild.
        assert_eq!(unsafe { libc::kill(child[0], libc::SIGKILL) }, 0);
        host.wait_for_stderr("its process was killed by SIGKILL");
        drop(host.stdin.take());
        let (out, err) = host.wait(Duration::from_secs(30));
        assert!(out.status.success(), "{}", err.join("\n"));
        assert_eq!(summary_row(&out, "log").processed, 2000, "{library}");
        assert_eq!(whole_lines(&s, "log.jsonl"), 2000, "{library}");
    }
}

/// A thread-mode crash of another plugin kills the host: what the logger
/// counted before is in its file.
#[test]
fn a_host_killed_by_another_plugin_s_crash_leaves_every_counted_line_written() {
    for library in LOGGERS {
        let s = Scratch::new(&format!("logger-host-crash-{library}"));
        let config = Config::new()
            .status(Status::any_port())
            .plugin(
                Plugin::new("log", library)
                    .subscribe(["work.item"])
                    .set("path", s.path("log.jsonl").display().to_string()),
            )
            .plugin(
                Plugin::new("crashy", "chaos_c")
                    .subscribe(["work.crash"])
                    .config(json!({"segfault_on": "work.crash"})),
            )
            .write(&s);
        let mut host = Running::start(&config);
        let address = host.status_address();
        host.send(&events(300));
        eventually("every event processed", || {
            plugin_row(&address, "log")["processed"] == 300
        });
        host.send(&event("work.crash", json!(1)));
        let (out, _) = host.wait(Duration::from_secs(30));
        assert!(!out.status.success(), "{library}: the host died");
        assert_eq!(whole_lines(&s, "log.jsonl"), 300, "{library}");
    }
}

#[test]
fn both_loggers_write_the_same_lines_with_fsync_on() {
    let s = Scratch::new("logger-fsync");
    let config = Config::new()
        .plugin(
            logger("rust", &s.path("rust.jsonl"))
                .subscribe(["work.>"])
                .set("fsync", true),
        )
        .plugin(
            Plugin::new("c", "logger_c")
                .subscribe(["work.>"])
                .set("path", s.path("c.jsonl").display().to_string())
                .set("fsync", true),
        )
        .write(&s);
    let out = run(
        &["run", config.to_str().unwrap(), "--events", "-"],
        &events(200),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(whole_lines(&s, "rust.jsonl"), 200);
    assert_eq!(s.read("rust.jsonl"), s.read("c.jsonl"), "the same bytes");
}

#[test]
fn both_loggers_refuse_an_fsync_that_is_not_a_boolean() {
    let s = Scratch::new("logger-fsync-bad");
    let reasons = [
        ("logger", "invalid type: string \"yes\", expected a boolean"),
        ("logger_c", "`fsync` must be true or false"),
    ];
    for (library, reason) in reasons {
        let config = Config::new()
            .plugin(Plugin::new("log", library).config(json!({"path": "x.jsonl", "fsync": "yes"})))
            .write(&s);
        let line = assert_one_line_error(&run(&["run", config.to_str().unwrap()], ""));
        assert!(
            line.contains("failed to initialize: invalid config"),
            "{library}: {line}"
        );
        assert!(line.contains(reason), "{library}: {line}");
    }
}
