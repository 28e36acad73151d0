//! Shared by the end-to-end tests: build the real plugin libraries, write
//! configs into a scratch directory, run the real `plughost` binary.
#![allow(dead_code, reason = "each test file uses a different part")]

mod config;

#[path = "../../ffi/cflags.rs"]
pub mod cflags;
#[allow(
    unused_imports,
    reason = "a test file that writes no config uses none of it"
)]
pub use config::*;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The `plughost` binary under test.
pub fn plughost_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_plughost"))
}

/// Where cargo put the binary, and so the plugin libraries of the same profile.
pub fn profile_dir() -> PathBuf {
    plughost_bin()
        .parent()
        .expect("binary has a directory")
        .to_owned()
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("loader/ is in the workspace")
        .to_owned()
}

/// Build the shipped plugin crates (cdylibs are not built for another
/// crate's tests) with the same profile as the binary under test, once per
/// test process. Returns the directory holding them.
///
/// Every library of the workspace, not a list of packages: under `cargo test
/// --workspace` every dependency then has the features it was already built
/// with, so this compiles the plugin libraries and nothing twice. No binary:
/// the one under test is never rewritten while tests run it.
pub fn plugin_dir() -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let profile = profile_dir();
        let target_dir = profile.parent().expect("profile dir has a parent");
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo
            .current_dir(workspace_root())
            .args(["build", "--quiet", "--workspace", "--lib"])
            .arg("--target-dir")
            .arg(target_dir);
        if profile.file_name().is_some_and(|name| name == "release") {
            cargo.arg("--release");
        }
        let status = cargo.status().expect("run cargo to build the plugins");
        assert!(status.success(), "building the plugin crates failed");
    });
    profile_dir()
}

/// A library path for the plugin crate `name`.
pub fn plugin_path(name: &str) -> PathBuf {
    plugin_dir().join(format!("lib{name}.so"))
}

/// A fresh scratch directory for one test, removed when the test passes
/// (a failing test leaves it, to look at).
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(test: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "{test}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Write `plugins.toml` with `[host] plugin_dirs` pointing at the built plugins.
    pub fn config(&self, body: &str) -> PathBuf {
        let text = format!(
            "[host]\nplugin_dirs = [{:?}]\n{body}",
            plugin_dir().display().to_string()
        );
        self.write("plugins.toml", &text)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).expect("write scratch file");
        path
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
    }

    /// The JSON objects a `logger` wrote to `name`.
    pub fn log_lines(&self, name: &str) -> Vec<serde_json::Value> {
        self.read(name)
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("bad log line {line:?}: {e}"))
            })
            .collect()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("scratch directory kept: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The working directory of every `plughost` a test starts: plugins given a
/// relative path write there, never into the source tree (cargo runs tests
/// from `loader/`).
pub fn scratch_root() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

/// `plughost ARGS...` with `stdin` piped in; waits for it to exit.
pub fn run(args: &[&str], stdin: &str) -> Output {
    run_with_env(args, stdin, &[])
}

/// [`run`] with extra environment variables.
pub fn run_with_env(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(plughost_bin())
        .args(args)
        .current_dir(scratch_root())
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start plughost");
    let mut input = child.stdin.take().expect("stdin");
    let text = stdin.to_owned();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(text.as_bytes());
    });
    let output = child.wait_with_output().expect("wait for plughost");
    writer.join().expect("stdin writer");
    output
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// One row of the shutdown summary.
#[derive(Debug, PartialEq, Eq)]
pub struct Row {
    pub state: String,
    pub received: u64,
    pub processed: u64,
    pub dropped: u64,
    pub failed: u64,
}

/// The summary row for `instance` in `plughost run`'s output.
pub fn summary_row(output: &Output, instance: &str) -> Row {
    let text = stdout(output);
    let fields: Vec<&str> = text
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|fields| fields.len() == 6 && fields[0] == instance)
        .unwrap_or_else(|| {
            panic!(
                "no summary row for {instance} in:\n{text}\nstderr:\n{}",
                stderr(output)
            )
        });
    let number = |i: usize| fields[i].parse::<u64>().expect("a count");
    Row {
        state: fields[1].to_owned(),
        received: number(2),
        processed: number(3),
        dropped: number(4),
        failed: number(5),
    }
}

/// An `--events` line.
pub fn event(topic: &str, payload: serde_json::Value) -> String {
    serde_json::json!({"topic": topic, "payload": payload}).to_string() + "\n"
}

/// Compile C source into a shared library in `scratch` with the system `cc`.
pub fn cc_shared(scratch: &Scratch, name: &str, source: &str) -> PathBuf {
    let src = scratch.write(&format!("{name}.c"), source);
    let out = scratch.path(&format!("lib{name}.so"));
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("run cc");
    assert!(status.success(), "cc failed for {name}");
    out
}

/// The host never prints a raw panic or a backtrace (a plugin's panic is
/// reported as a message of the host's).
pub fn assert_no_raw_panic(stderr: &str) {
    for sign in ["thread '", "stack backtrace", "RUST_BACKTRACE"] {
        assert!(
            !stderr.contains(sign),
            "raw panic output ({sign:?}) in:\n{stderr}"
        );
    }
}

/// Compile the fixture `tests/fixtures/<name>.c` against plughost.h into
/// `lib<out>.so` in `scratch`, with extra compiler flags (such as `-D...`).
pub fn cc_fixture(scratch: &Scratch, fixture: &str, out: &str, flags: &[&str]) -> PathBuf {
    let root = workspace_root();
    let library = scratch.path(&format!("lib{out}.so"));
    let output = Command::new("cc")
        .args(cflags::C_PLUGIN_FLAGS)
        .args(flags)
        .arg("-I")
        .arg(root.join("ffi/include"))
        .arg("-o")
        .arg(&library)
        .arg(root.join(format!("tests/fixtures/{fixture}.c")))
        .output()
        .expect("run cc");
    assert!(
        output.status.success(),
        "cc {fixture}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    library
}

/// Assert that `output` failed with exit 1 and exactly one `error:` line on stderr.
pub fn assert_one_line_error(output: &Output) -> String {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(1), "exit code; stderr:\n{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line expected in:\n{err}");
    assert_no_raw_panic(&err);
    errors[0].to_owned()
}

/// A `plughost run` left running, with stdin open and stderr watched.
pub struct Running {
    pub child: std::process::Child,
    pub stdin: Option<std::process::ChildStdin>,
    stderr_lines: std::sync::mpsc::Receiver<String>,
    pub stderr_seen: Vec<String>,
}

impl Running {
    pub fn start(config: &Path) -> Running {
        Running::start_with(config, |_| {})
    }

    /// Like [`Running::start`], in a process group of its own (its pid is the
    /// group id), as a shell starts a job: a signal to the group reaches the
    /// host and its plugin processes, as Ctrl-C in a terminal does.
    pub fn start_in_own_group(config: &Path) -> Running {
        use std::os::unix::process::CommandExt;
        Running::start_with(config, |command| {
            command.process_group(0);
        })
    }

    /// Like [`Running::start`], with at most `limit` open descriptors (as
    /// `ulimit -n` sets it), so a test can exhaust them.
    pub fn start_with_fd_limit(config: &Path, limit: u64) -> Running {
        Running::start_with_fd_limits(config, limit, limit)
    }

    /// Like [`Running::start`], with the soft and hard limits on open
    /// descriptors set to `soft` and `hard` (`ulimit -Sn`, `ulimit -Hn`).
    pub fn start_with_fd_limits(config: &Path, soft: u64, hard: u64) -> Running {
        use std::os::unix::process::CommandExt;
        Running::start_with(config, |command| {
            let apply = move || {
                let rlimit = libc::rlimit {
                    rlim_cur: soft,
                    rlim_max: hard,
                };
                // SAFETY: setrlimit(2) reads the struct we pass and changes
                // only the child's own limit.
                if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            };
            // SAFETY: the hook only calls setrlimit(2), which is
            // async-signal-safe, between fork and exec.
            unsafe {
                command.pre_exec(apply);
            }
        })
    }

    fn start_with(config: &Path, adjust: impl FnOnce(&mut Command)) -> Running {
        use std::io::BufRead;
        let mut command = Command::new(plughost_bin());
        // In the config's own (scratch) directory, so a relative plugin path
        // lands beside the config rather than in the source tree.
        command
            .args(["run", config.to_str().unwrap(), "--events", "-"])
            .current_dir(
                config
                    .parent()
                    .filter(|_| config.is_absolute())
                    .unwrap_or(scratch_root()),
            )
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        adjust(&mut command);
        let mut child = command.spawn().expect("start plughost");
        let stdin = child.stdin.take();
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        let mut running = Running {
            child,
            stdin,
            stderr_lines: rx,
            stderr_seen: Vec::new(),
        };
        running.wait_for_stderr("plugin instance(s) running");
        running
    }

    /// The status server's address, from its start-up log line.
    pub fn status_address(&mut self) -> String {
        const NEEDLE: &str = "status server listening on http://";
        let seen = self
            .stderr_seen
            .iter()
            .find(|l| l.contains(NEEDLE))
            .cloned();
        let line = seen.unwrap_or_else(|| self.wait_for_stderr(NEEDLE));
        line.rsplit("http://")
            .next()
            .expect("address")
            .trim()
            .to_owned()
    }

    /// Wait (up to 30 s) for a stderr line containing `needle`; return it.
    pub fn wait_for_stderr(&mut self, needle: &str) -> String {
        self.stderr_within(needle, std::time::Duration::from_secs(30))
            .unwrap_or_else(|| {
                panic!(
                    "no stderr line with {needle:?}; saw:\n{}",
                    self.stderr_seen.join("\n")
                )
            })
    }

    /// A new stderr line containing `needle`, if one comes within `limit`.
    pub fn stderr_within(&mut self, needle: &str, limit: std::time::Duration) -> Option<String> {
        let deadline = std::time::Instant::now() + limit;
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.stderr_lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.stderr_seen.push(line.clone());
                    if found {
                        return Some(line);
                    }
                }
                Err(_) => break,
            }
        }
        None
    }

    pub fn send(&mut self, text: &str) {
        self.stdin
            .as_mut()
            .expect("stdin open")
            .write_all(text.as_bytes())
            .expect("write events");
        self.stdin.as_mut().unwrap().flush().unwrap();
    }

    /// Send `signal` to the host's whole process group (see
    /// [`Running::start_in_own_group`]).
    pub fn signal_group(&self, signal: i32) {
        // SAFETY: kill(2) with plain integers, on the group our child leads.
        let rc = unsafe { libc::kill(-(self.child.id() as i32), signal) };
        assert_eq!(rc, 0, "kill of the process group failed");
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid has no memory-safety concerns.
        let rc = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Wait up to `limit` for exit; kill and fail if it does not exit.
    pub fn wait(mut self, limit: std::time::Duration) -> (Output, Vec<String>) {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(_status) = self.child.try_wait().expect("try_wait") {
                break;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "plughost did not exit within {limit:?}; stderr:\n{}",
                    self.stderr_seen.join("\n")
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let output = self.child.wait_with_output().expect("collect output");
        let mut lines = self.stderr_seen;
        lines.extend(self.stderr_lines.try_iter());
        (output, lines)
    }
}

/// `received = processed + failed + dropped` once everything has stopped.
pub fn assert_accounted(row: &Row) {
    assert_eq!(
        row.received,
        row.processed + row.failed + row.dropped,
        "every event is accounted for: {row:?}"
    );
}

/// A real HTTP/1.1 request to `address`; returns (status, body).
pub fn http(address: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    http_request(address, method, path, &[], body.as_bytes())
}

/// A real HTTP/1.1 request with extra header lines (`"Content-Type: text/plain"`)
/// and a body of any bytes; returns (status, body, read lossily as UTF-8).
pub fn http_request(
    address: &str,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> (u16, String) {
    use std::io::Read;
    let mut stream =
        std::net::TcpStream::connect(address).unwrap_or_else(|e| panic!("connect {address}: {e}"));
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_owned())
}

/// `http` GET, with the body parsed as JSON.
pub fn get_json(address: &str, path: &str) -> (u16, serde_json::Value) {
    let (status, body) = http(address, "GET", path, "");
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body:?}"));
    (status, json)
}

/// Poll `condition` every 20 ms for up to 30 s.
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if condition() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

/// `plughost ctl --socket SOCKET ARGS...`; returns (exit code, stdout, stderr).
pub fn ctl(socket: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(plughost_bin())
        .arg("ctl")
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("run plughost ctl");
    (out.status.code().unwrap_or(-1), stdout(&out), stderr(&out))
}
