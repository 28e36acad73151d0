//! Startup: `start_timeout` bounds every plugin's `init` (a thread stuck in
//! it is abandoned, a process killed), `required` decides whether an
//! instance that cannot start stops the host's start, and a start can be
//! cancelled.

mod common;

use common::*;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// `log`: a logger of `work.>` and the lifecycle into log.jsonl.
fn log(s: &Scratch) -> Plugin {
    logger("log", &s.path("log.jsonl")).subscribe(["work.>", "plughost.plugin.*"])
}

/// `plughost run CONFIG --events -` with `stdin`; killed (and the test
/// failed) if it does not exit within `limit`.
fn run_within(config: &std::path::Path, stdin: &str, limit: Duration) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(plughost_bin())
        .args(["run", config.to_str().unwrap(), "--events", "-"])
        .current_dir(scratch_root())
        .env("RUST_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start plughost");
    let mut input = child.stdin.take().unwrap();
    let text = stdin.to_owned();
    std::thread::spawn(move || {
        let _ = input.write_all(text.as_bytes());
    });
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "plughost did not exit within {limit:?}; stderr:\n{}",
                stderr(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// `hang`: a `chaos` whose `init` never returns, with a `start_timeout` of 1s.
fn hanging(isolation: Isolation) -> Plugin {
    Plugin::new("hang", "chaos")
        .isolation(isolation)
        .subscribe(["work.>"])
        .start_timeout("1s")
        .config(json!({"hang_in_init": true}))
}

#[test]
fn an_init_that_never_returns_in_a_thread_fails_the_start_at_start_timeout_with_one_line() {
    let s = Scratch::new("hang-thread");
    let config = Config::new()
        .plugin(log(&s))
        .plugin(hanging(Isolation::Thread))
        .write(&s);
    let out = run_within(&config, "", Duration::from_secs(30));
    let line = assert_one_line_error(&out);
    let expected = format!(
        "error: plugin `hang` ({}) failed to initialize: did not return within 1s (start_timeout); its thread is abandoned, blocked in the plugin, and its library stays loaded (1 such thread(s) for this instance)",
        plugin_path("chaos").display()
    );
    assert_eq!(line, expected);
    // What had started was stopped: the logger wrote what it had.
    let topics: Vec<_> = s
        .log_lines("log.jsonl")
        .into_iter()
        .map(|l| (l["topic"].clone(), l["payload"]["name"].clone()))
        .collect();
    assert_eq!(
        topics,
        [
            (json!("plughost.plugin.started"), json!("log")),
            (json!("plughost.plugin.failed"), json!("hang")),
        ]
    );
}

fn children_of(parent: u32) -> Vec<i32> {
    let out = std::process::Command::new("pgrep")
        .args(["-P", &parent.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[test]
fn an_init_that_never_returns_in_a_child_process_gets_it_killed_and_fails_the_start() {
    let s = Scratch::new("hang-process");
    let config = Config::new()
        .plugin(log(&s))
        .plugin(hanging(Isolation::Process))
        .write(&s);
    let mut host = std::process::Command::new(plughost_bin())
        .args(["run", config.to_str().unwrap(), "--events", "-"])
        .current_dir(scratch_root())
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = host.id();
    // Its child is there, stuck in init, until the host kills it.
    let mut child = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.is_empty() && Instant::now() < deadline && host.try_wait().unwrap().is_none() {
        child = children_of(pid);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(child.len(), 1, "one child process");
    let deadline = Instant::now() + Duration::from_secs(30);
    while host.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = host.kill();
            for pid in &child {
                // SAFETY: kill(2) with plain integers on our test's grandchild.
                unsafe { libc::kill(*pid, libc::SIGKILL) };
            }
            panic!("plughost did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = host.wait_with_output().unwrap();
    let line = assert_one_line_error(&out);
    assert!(
        line.ends_with(
            "failed to initialize: did not return within 1s (start_timeout); its process was killed"
        ),
        "{line}"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{}", child[0])).exists(),
        "the child is gone"
    );
}

#[test]
fn an_instance_that_is_not_required_fails_under_its_restart_policy_and_the_start_goes_on() {
    for isolation in [Isolation::Thread, Isolation::Process] {
        let s = Scratch::new(&format!("not-required-{isolation}"));
        let config = Config::new()
            .plugin(log(&s))
            .plugin(
                hanging(isolation)
                    .required(false)
                    .restart(Restart::OnFailure)
                    .max_restarts(1),
            )
            .write(&s);
        let mut host = Running::start(&config);
        // The first start timed out; the restart policy restarts it in the
        // background, and it times out again: flapping.
        host.wait_for_stderr("flapping: 1 restarts within 60s; stopped for good");
        host.send(&event("work.item", json!(1)));
        drop(host.stdin.take());
        let (out, err) = host.wait(Duration::from_secs(30));
        let err = err.join("\n");
        assert!(out.status.success(), "{isolation}: {err}");
        assert!(
            err.contains("not required (`required = false`): the start goes on"),
            "{isolation}: {err}"
        );
        let hang = summary_row(&out, "hang");
        assert_eq!(
            (hang.state.as_str(), hang.received, hang.dropped),
            ("flapping", 1, 1),
            "{isolation}"
        );
        let log = summary_row(&out, "log");
        assert_eq!(log.failed + log.dropped, 0, "{isolation}: {log:?}");
        let failed: Vec<_> = s
            .log_lines("log.jsonl")
            .into_iter()
            .filter(|l| l["topic"] == "plughost.plugin.failed")
            .map(|l| l["payload"]["reason"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(failed.len(), 2, "{isolation}: {failed:?}");
        assert!(
            failed[1].starts_with("init did not return within 1s (start_timeout); "),
            "{isolation}: {failed:?}"
        );
    }
}

#[test]
fn an_init_that_hangs_after_a_reload_is_a_failure_for_the_restart_policy() {
    let s = Scratch::new("hang-reload");
    let socket = s.path("host.sock");
    let write = |hang_in_init: bool| {
        Config::new()
            .control_socket(&socket)
            .plugin(log(&s))
            .plugin(
                Plugin::new("hang", "chaos")
                    .subscribe(["work.>"])
                    .start_timeout("500ms")
                    .restart(Restart::Never)
                    .config(json!({"hang_in_init": hang_in_init})),
            )
            .write(&s)
    };
    let config = write(false);
    let mut host = Running::start(&config);
    write(true);
    let (code, _, err) = ctl(&socket, &["reload"]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("error: reload applied, but: init did not return within 500ms (start_timeout); its thread is abandoned"),
        "{err}"
    );
    host.wait_for_stderr("plugin failed: init did not return within 500ms (start_timeout)");
    // The host goes on; the instance is failed (restart = "never").
    host.send(&event("work.item", json!(1)));
    drop(host.stdin.take());
    let (out, err) = host.wait(Duration::from_secs(30));
    assert!(out.status.success(), "{}", err.join("\n"));
    let hang = summary_row(&out, "hang");
    assert_eq!(
        (hang.state.as_str(), hang.received, hang.dropped),
        ("failed", 1, 1)
    );
    // The event, and started (log, hang) and failed (hang).
    assert_eq!(summary_row(&out, "log").processed, 1 + 3);
}

/// The config of a `Host` started by the library: `log`, then `slow` (a
/// `chaos` whose `init` never returns when `hang_in_init`).
fn library_config(s: &Scratch, hang_in_init: bool) -> plughost::Config {
    let path = Config::new()
        .plugin(log(s))
        .plugin(
            Plugin::new("slow", "chaos")
                .start_timeout("60s")
                .config(json!({"hang_in_init": hang_in_init})),
        )
        .write(s);
    plughost::Config::load(&path).unwrap()
}

#[test]
fn a_start_cancelled_while_an_init_runs_stops_what_it_started_and_says_cancelled() {
    let s = Scratch::new("cancel");
    let config = library_config(&s, true);
    let cancelled = Arc::new(AtomicBool::new(false));
    let flag = cancelled.clone();
    // Cancel once `slow`'s init runs, on its thread in this very process.
    let canceller = std::thread::spawn(move || {
        eventually("slow's thread, in its init", || {
            std::fs::read_dir("/proc/self/task")
                .into_iter()
                .flatten()
                .flatten()
                .any(|task| {
                    std::fs::read_to_string(task.path().join("comm"))
                        .is_ok_and(|comm| comm.trim_end() == "plughost:slow")
                })
        });
        flag.store(true, Ordering::Release);
    });
    let asked = Instant::now();
    let outcome = plughost::Host::start_cancellable(config, cancelled);
    canceller.join().unwrap();
    assert!(
        matches!(outcome, Err(plughost::StartError::Cancelled)),
        "{:?}",
        outcome.err()
    );
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
    // The logger had started: it was stopped (its stop flushed its file).
    let lines = s.log_lines("log.jsonl");
    assert_eq!(lines[0]["topic"], "plughost.plugin.started");
    assert_eq!(lines[0]["payload"]["name"], "log");
}

#[test]
fn a_start_cancelled_before_it_begins_starts_nothing() {
    let s = Scratch::new("cancel-early");
    let config = library_config(&s, false);
    let outcome = plughost::Host::start_cancellable(config, Arc::new(AtomicBool::new(true)));
    assert!(matches!(outcome, Err(plughost::StartError::Cancelled)));
    assert!(!s.path("log.jsonl").exists(), "no plugin was created");
}
