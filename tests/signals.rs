//! The host's own signals: SIGTERM and SIGINT drain and stop, SIGHUP
//! reloads, whatever a thread-mode plugin does to the signal dispositions of
//! the process it shares with the host.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

/// A config with the `intruder` fixture built to take SIGTERM, SIGHUP
/// (swallowed by its own handler) and SIGINT (ignored) in its `create`, and
/// a logger behind it.
fn config_with_signal_thief(s: &Scratch) -> Config {
    let library = cc_fixture(s, "intruder", "intruder", &["-DINTRUDER_SIGNALS"]);
    Config::new()
        .control_socket(&s.path("host.sock"))
        .plugin(Plugin::new("thief", &library).subscribe(["work.>"]))
        .plugin(logger("log", &s.path("log.jsonl")).subscribe(["work.>"]))
}

/// Send `count` events and wait until both instances have processed them
/// (a signal closes intake: what is not published by then is not sent).
fn send_work(s: &Scratch, host: &mut Running, count: u64) {
    let events: String = (0..count).map(|i| event("work.item", json!(i))).collect();
    host.send(&events);
    let socket = s.path("host.sock");
    eventually("every event processed", || {
        let (_, text, _) = ctl(&socket, &["--json", "list"]);
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        answer["result"]
            .as_array()
            .is_some_and(|list| list.iter().all(|p| p["processed"] == count))
    });
}

fn assert_drained(out: &std::process::Output, s: &Scratch, sent: u64) {
    for name in ["thief", "log"] {
        let row = summary_row(out, name);
        assert_eq!(
            (row.state.as_str(), row.received, row.processed, row.dropped),
            ("stopped", sent, sent, 0),
            "{name}: {row:?}"
        );
    }
    assert_eq!(s.log_lines("log.jsonl").len() as u64, sent);
}

#[test]
fn a_plugin_that_takes_sigterm_and_sighup_does_not_stop_shutdown_or_reload() {
    let s = Scratch::new("signal-thief");
    let config = config_with_signal_thief(&s).write(&s);
    let mut host = Running::start(&config);
    send_work(&s, &mut host, 500);
    // SIGHUP still reloads: the added instance starts.
    config_with_signal_thief(&s)
        .plugin(Plugin::new("added", "counter").subscribe(["work.>"]))
        .write(&s);
    host.signal(libc::SIGHUP);
    host.wait_for_stderr("reload 1: added [\"added\"]");
    // SIGTERM still drains and exits 0.
    host.signal(libc::SIGTERM);
    host.wait_for_stderr("SIGTERM: draining queues and stopping plugins");
    let (out, err) = host.wait(Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(0), "{}", err.join("\n"));
    assert_drained(&out, &s, 500);
    assert_no_raw_panic(&err.join("\n"));
}

#[test]
fn a_plugin_that_ignores_sigint_does_not_stop_ctrl_c() {
    let s = Scratch::new("sigint-thief");
    let config = config_with_signal_thief(&s).write(&s);
    let mut host = Running::start(&config);
    send_work(&s, &mut host, 200);
    host.signal(libc::SIGINT);
    host.wait_for_stderr("SIGINT: draining queues and stopping plugins");
    let (out, err) = host.wait(Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(0), "{}", err.join("\n"));
    assert_drained(&out, &s, 200);
}

/// The pids whose parent is `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // `pid (comm) state ppid ...`; comm may hold spaces.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                == Some(parent)
        })
        .collect()
}

/// The signals blocked in process `pid`'s main thread (`SigBlk`).
fn blocked(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .expect("SigBlk");
    u64::from_str_radix(mask.trim(), 16).unwrap()
}

/// SIGHUP (1), SIGINT (2) and SIGTERM (15) as bits of a signal mask.
const HOST_SIGNALS: u64 = 1 << 0 | 1 << 1 | 1 << 14;

#[test]
fn the_host_blocks_its_signals_but_the_children_it_forks_start_without_that_mask() {
    let s = Scratch::new("child-mask");
    let library = cc_fixture(&s, "intruder", "intruder", &[]);
    let config = Config::new()
        .plugin(
            Plugin::new("proc", "counter")
                .isolation(Isolation::Process)
                .subscribe(["work.>"]),
        )
        .plugin(Plugin::new("spawner", &library).subscribe(["intruder.spawn"]))
        .write(&s);
    let mut host = Running::start(&config);
    let pid = host.child.id();
    assert_eq!(
        blocked(pid) & HOST_SIGNALS,
        HOST_SIGNALS,
        "the host blocks them"
    );
    let comm = |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    // The process plugin's child (std::process::Command with a pre_exec).
    let children = children_of(pid);
    assert_eq!(children.len(), 1, "{children:?}");
    assert_eq!(
        blocked(children[0]) & HOST_SIGNALS,
        0,
        "process plugin child"
    );
    // A thread plugin's own child (fork and exec in C).
    host.send(&event("intruder.spawn", json!(null)));
    let mut sleeper = None;
    eventually("the plugin's child", || {
        sleeper = children_of(pid)
            .into_iter()
            .find(|c| comm(*c).trim() == "sleep");
        sleeper.is_some()
    });
    let sleeper = sleeper.unwrap();
    assert_eq!(blocked(sleeper) & HOST_SIGNALS, 0, "a plugin's own child");
    // So SIGTERM ends it, as whoever started it expects.
    // SAFETY: kill(2) with plain integers, on a child of our child.
    assert_eq!(unsafe { libc::kill(sleeper as i32, libc::SIGTERM) }, 0);
    eventually("the plugin's child to end", || {
        let status = std::fs::read_to_string(format!("/proc/{sleeper}/status")).unwrap_or_default();
        status.is_empty() || status.contains("State:\tZ")
    });
    drop(host.stdin.take());
    let (out, err) = host.wait(Duration::from_secs(30));
    assert!(out.status.success(), "{}", err.join("\n"));
}

#[test]
fn sighup_is_ignored_and_sigterm_stops_a_startup_that_hangs_at_once_with_exit_0() {
    use std::io::BufRead;
    let s = Scratch::new("startup-signal");
    let config = Config::new()
        .control_socket(&s.path("host.sock"))
        .plugin(logger("log", &s.path("log.jsonl")).subscribe(["work.>"]))
        .plugin(
            Plugin::new("stuck", "chaos")
                .subscribe(["work.>"])
                .start_timeout("1h")
                .config(json!({"hang_in_init": true})),
        )
        .write(&s);
    let mut child = std::process::Command::new(plughost_bin())
        .args(["run", config.to_str().unwrap()])
        .current_dir(&s.dir)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let mut wait_for = |needle: &str| loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no {needle:?} in:\n{}", seen.join("\n")));
        seen.push(line.clone());
        if line.contains(needle) {
            return;
        }
    };
    // `log` started; `stuck` is in its init, which never returns, on its
    // own thread.
    wait_for("started plugin=log");
    let pid = child.id();
    eventually("stuck's thread, in its init", || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|task| {
                std::fs::read_to_string(task.path().join("comm"))
                    .is_ok_and(|comm| comm.trim_end() == "plughost:stuck")
            })
    });
    // A SIGHUP now has nothing to reload: ignored, with a warning.
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGHUP) }, 0);
    wait_for("SIGHUP during startup: ignored (nothing to reload yet)");
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    wait_for("SIGTERM during startup: the instances started so far were stopped");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running:\n{}",
            seen.join("\n")
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "{}", seen.join("\n"));
    assert!(
        !s.path("host.sock").exists(),
        "the control socket is removed"
    );
}
