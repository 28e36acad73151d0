//! The status server under hostile clients and careless plugins, over real
//! sockets: connection limits and timeouts, descriptor exhaustion, floods
//! of route calls, and plugin answers that try to frame themselves.

mod common;

use common::*;
use serde_json::{Value, json};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A `chaos` instance of `NAME.>` with `config`.
fn chaos(name: &str, config: serde_json::Value) -> Plugin {
    Plugin::new(name, "chaos")
        .subscribe([format!("{name}.>")])
        .config(config)
}

fn finish(mut host: Running) -> Vec<String> {
    drop(host.stdin.take());
    let (out, err) = host.wait(Duration::from_secs(60));
    assert!(out.status.success(), "{}", err.join("\n"));
    err
}

fn connect(address: &str) -> TcpStream {
    let stream = TcpStream::connect(address).unwrap_or_else(|e| panic!("connect {address}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

/// Read until the server closes the connection; what it sent before.
/// Panics when it neither sends nor closes within the read timeout.
fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return seen,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return seen,
            Err(e) => panic!(
                "the server kept the connection open ({e}); it sent {:?}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
}

/// One answer read off a kept-alive connection, framed by its Content-Length.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Send `GET path` on `stream` (kept alive) and read exactly one answer.
fn exchange(stream: &mut TcpStream, path: &str) -> Answer {
    let request = format!("GET {path} HTTP/1.1\r\nHost: plughost\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    read_answer(stream)
}

fn read_answer(stream: &mut TcpStream) -> Answer {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!(
                "no complete answer head ({other:?}); got {:?}",
                String::from_utf8_lossy(&head)
            ),
        }
    }
    let head = String::from_utf8(head).expect("an ASCII head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let headers: Vec<(String, String)> = lines
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (k, v) = line.split_once(':').expect("name: value");
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    let mut answer = Answer {
        status,
        headers,
        body: Vec::new(),
    };
    assert_eq!(
        answer.header("transfer-encoding"),
        None,
        "a whole body is sent with its length: {head}"
    );
    let length: usize = answer
        .header("content-length")
        .unwrap_or_else(|| panic!("no content-length in {head:?}"))
        .parse()
        .expect("a length");
    answer.body.resize(length, 0);
    stream
        .read_exact(&mut answer.body)
        .unwrap_or_else(|e| panic!("body of {length} bytes after {head:?}: {e}"));
    answer
}

/// The host's thread count, from /proc.
fn threads(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a Threads: line")
}

fn count(lines: &[String], needle: &str) -> usize {
    lines.iter().filter(|l| l.contains(needle)).count()
}

#[test]
fn header_timeout_closes_connections_that_never_finish_their_headers() {
    let s = Scratch::new("http-header-timeout");
    let config = Config::new()
        .status(Status::any_port().header_timeout("1s").idle_timeout("60s"))
        .plugin(chaos("a", json!({"health": "ok"})))
        .write(&s);
    let mut host = Running::start(&config);
    let address = host.status_address();
    // Half say nothing at all, half stop in the middle of their headers.
    let mut half_open: Vec<(TcpStream, Instant)> = (0..100)
        .map(|i| {
            let mut stream = connect(&address);
            if i % 2 == 1 {
                stream
                    .write_all(b"GET /health HTTP/1.1\r\nHost: plughost\r\nX-Slow: ")
                    .unwrap();
            }
            (stream, Instant::now())
        })
        .collect();
    for (stream, opened) in &mut half_open {
        let sent = read_to_close(stream);
        assert!(sent.is_empty(), "no answer to an unfinished request");
        assert!(
            opened.elapsed() >= Duration::from_millis(900),
            "closed before header_timeout: after {:?}",
            opened.elapsed()
        );
    }
    let (code, body) = get_json(&address, "/health");
    assert_eq!((code, &body["status"]), (200, &Value::from("ok")), "{body}");
    finish(host);
}

#[test]
fn a_kept_alive_connection_waits_idle_timeout_for_its_next_request_then_closes() {
    let s = Scratch::new("http-idle-timeout");
    let config = Config::new()
        .status(Status::any_port().header_timeout("1s").idle_timeout("4s"))
        .plugin(chaos("a", json!({"health": "ok"})))
        .write(&s);
    let mut host = Running::start(&config);
    let address = host.status_address();
    let mut stream = connect(&address);
    assert_eq!(exchange(&mut stream, "/health").status, 200);
    // Longer than header_timeout: waiting for the next request is idle time.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(exchange(&mut stream, "/health").status, 200);
    let answered = Instant::now();
    assert!(read_to_close(&mut stream).is_empty());
    assert!(
        answered.elapsed() >= Duration::from_millis(3900),
        "closed before idle_timeout: after {:?}",
        answered.elapsed()
    );
    finish(host);
}

#[test]
fn max_connections_refuses_new_connections_at_once_and_serves_again_when_one_closes() {
    let s = Scratch::new("http-max-connections");
    let config = Config::new()
        .status(Status::any_port().max_connections(4).header_timeout("60s"))
        .plugin(chaos("a", json!({"health": "ok"})))
        .write(&s);
    let mut host = Running::start(&config);
    let address = host.status_address();
    let mut open: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut stream = connect(&address);
            assert_eq!(exchange(&mut stream, "/health").status, 200);
            stream
        })
        .collect();
    for _ in 0..3 {
        // Nothing sent: a server that took the connection would wait for a
        // request; a refusal comes at once.
        let mut extra = connect(&address);
        let refusal = String::from_utf8(read_to_close(&mut extra)).unwrap();
        assert!(
            refusal.starts_with("HTTP/1.1 503 ") && refusal.contains("max_connections"),
            "{refusal:?}"
        );
    }
    // The open ones are still served.
    assert_eq!(exchange(&mut open[0], "/health").status, 200);
    drop(open.pop());
    eventually("a connection served after one closed", || {
        let mut stream = connect(&address);
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: plughost\r\n\r\n")
            .unwrap();
        String::from_utf8_lossy(&read_to_close_or_answer(&mut stream)).starts_with("HTTP/1.1 200 ")
    });
    // Refusals end a second after the last one: the next connection says so.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(get_json(&address, "/health").0, 200);
    host.wait_for_stderr("serving new connections again (");
    drop(open);
    let log = finish(host);
    let all = log.join("\n");
    assert_eq!(
        count(&log, "refusing new ones"),
        1,
        "once per storm:\n{all}"
    );
    assert_eq!(count(&log, "serving new connections again"), 1, "{all}");
}

/// The first answer's head, or what came before the server closed.
fn read_to_close_or_answer(stream: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    seen
}

/// The soft and hard limits on open descriptors of a running process.
fn fd_limits(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

#[test]
fn run_raises_its_descriptor_limit_and_warns_when_the_caps_exceed_it() {
    let s = Scratch::new("http-fd-limit");
    let config = Config::new()
        .status(Status::any_port())
        .plugin(chaos("a", json!({"health": "ok"})))
        .write(&s);
    let warning = "open descriptors are limited to";
    // Soft 256 under a hard 4096: raised to 4096, which the default caps
    // (1024 HTTP + 64 control connections) fit in: no warning.
    let mut host = Running::start_with_fd_limits(&config, 256, 4096);
    let address = host.status_address();
    assert_eq!(fd_limits(host.child.id()), (4096, 4096));
    assert_eq!(get_json(&address, "/health").0, 200);
    let log = finish(host);
    assert_eq!(count(&log, warning), 0, "{}", log.join("\n"));
    // A hard limit of 256 cannot hold 1024 connections: said at start,
    // naming the keys to lower, and the host runs.
    let mut host = Running::start_with_fd_limits(&config, 128, 256);
    let address = host.status_address();
    assert_eq!(fd_limits(host.child.id()), (256, 256));
    // The warning comes before the status server listens: already read.
    let line = host
        .stderr_seen
        .iter()
        .find(|l| l.contains(warning))
        .cloned()
        .unwrap_or_default();
    assert!(
        line.contains(
            "open descriptors are limited to 256 (ulimit -n), but [status] max_connections, \
             [host] control_max_connections and 1 plugin instances may need 1156"
        ),
        "{line}"
    );
    assert_eq!(get_json(&address, "/health").0, 200);
    finish(host);
}

#[test]
fn after_a_descriptor_storm_the_control_socket_and_status_server_answer_again() {
    let s = Scratch::new("http-fd-storm");
    let socket = s.path("ctl.sock");
    let config = Config::new()
        .control_socket(&socket)
        .status(Status::any_port().header_timeout("60s"))
        .plugin(chaos("a", json!({"health": "ok"})))
        .write(&s);
    let mut host = Running::start_with_fd_limit(&config, 128);
    let address = host.status_address();
    assert_eq!(ctl(&socket, &["list"]).0, 0);
    // Connections until the host takes no more: it runs out of descriptors
    // (every accept fails with EMFILE), then its listen backlog fills up.
    let target: std::net::SocketAddr = address.parse().unwrap();
    let mut storm: Vec<TcpStream> = Vec::new();
    while let Ok(stream) = TcpStream::connect_timeout(&target, Duration::from_millis(500)) {
        storm.push(stream);
        assert!(storm.len() < 2000, "the host never ran out of descriptors");
    }
    // A control client now: its accept fails the same way (a host whose
    // control socket gives up answers it with a reset).
    let waiting = {
        let socket = socket.clone();
        std::thread::spawn(move || ctl(&socket, &["list"]))
    };
    let patience = Instant::now() + Duration::from_secs(30);
    while !waiting.is_finished() && Instant::now() < patience {
        let needle = "control socket: cannot accept connections: Too many open files";
        if host
            .stderr_within(needle, Duration::from_millis(50))
            .is_some()
        {
            break;
        }
    }
    // Let both loops fail over and over before the storm ends.
    std::thread::sleep(Duration::from_secs(1));
    drop(storm);
    let (code, out, err) = waiting.join().unwrap();
    assert_eq!(
        code, 0,
        "the waiting ctl was answered after the storm: {err}"
    );
    assert!(out.contains('a'), "{out}");
    let (code, out, err) = ctl(&socket, &["list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains('a'), "{out}");
    let (code, body) = get_json(&address, "/health");
    assert_eq!((code, &body["status"]), (200, &Value::from("ok")), "{body}");
    // A storm is over after a second without a failed accept: the next
    // connection of each server says so.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(ctl(&socket, &["list"]).0, 0);
    assert_eq!(get_json(&address, "/health").0, 200);
    host.wait_for_stderr("control socket: accepting connections again");
    host.wait_for_stderr("status server: accepting connections again");
    let log = finish(host);
    let all = log.join("\n");
    assert_eq!(
        count(&log, "status server: cannot accept"),
        1,
        "once per storm:\n{all}"
    );
    assert_eq!(
        count(&log, "control socket: cannot accept"),
        1,
        "once per storm:\n{all}"
    );
    assert_eq!(
        count(&log, "control socket: accepting connections again"),
        1,
        "{all}"
    );
    assert_eq!(
        count(&log, "status server: accepting connections again"),
        1,
        "{all}"
    );
    assert_eq!(count(&log, "socket stopped"), 0, "{all}");
    assert_eq!(count(&log, "server stopped"), 0, "{all}");
}

/// The status of a complete answer in `bytes`, if they hold one.
fn complete_answer(bytes: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_owned())
        })?
        .parse()
        .ok()?;
    (body.len() >= length).then(|| head.split(' ').nth(1)?.parse().ok())?
}

/// Raise this process's descriptor limit (and so the host's it starts) to
/// at least `wanted`, as far as the hard limit allows.
fn allow_descriptors(wanted: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes the struct we own.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(read, 0, "getrlimit");
    if limit.rlim_cur >= wanted {
        return;
    }
    assert!(
        limit.rlim_max >= wanted,
        "this test needs {wanted} descriptors; the hard limit is {}",
        limit.rlim_max
    );
    limit.rlim_cur = wanted;
    // SAFETY: setrlimit(2) reads the struct we own.
    let set = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    assert_eq!(set, 0, "setrlimit");
}

#[test]
fn a_flood_of_route_calls_to_a_busy_plugin_neither_starves_health_nor_grows_threads() {
    const FLOOD: usize = 3000;
    const PENDING: usize = 64;
    // The test's ends of the flood, and the host's (which inherits the limit).
    allow_descriptors(2 * FLOOD as u64 + 1024);
    let s = Scratch::new("http-route-flood");
    let config = Config::new()
        .shutdown_timeout("1s")
        .status(
            Status::any_port()
                .check_timeout("2s")
                .route_timeout("120s")
                .max_connections(4096)
                .header_timeout("120s"),
        )
        // Busy for longer than the test: the admitted calls stay pending.
        .plugin(chaos(
            "busy",
            json!({"sleep_ms": 120000, "log_events": true, "routes": ["/echo"]}),
        ))
        .plugin(chaos("other", json!({"health": "ok"})))
        .write(&s);
    let mut host = Running::start(&config);
    let address = host.status_address();
    let pid = host.child.id();
    let before = threads(pid);
    host.send(&event("busy.work", json!(1)));
    host.wait_for_stderr("took busy.work");
    let started = Instant::now();
    let mut flood: Vec<(TcpStream, Vec<u8>)> = (0..FLOOD)
        .map(|_| {
            let mut stream = connect(&address);
            stream
                .write_all(b"GET /plugins/busy/echo HTTP/1.1\r\nHost: plughost\r\n\r\n")
                .unwrap();
            stream.set_nonblocking(true).unwrap();
            (stream, Vec::new())
        })
        .collect();
    // The other plugin answers its check while the flood waits on `busy`.
    let asked = Instant::now();
    let (code, body) = get_json(&address, "/health?plugin=other");
    let took = asked.elapsed();
    assert_eq!((code, &body["status"]), (200, &Value::from("ok")), "{body}");
    assert!(
        took < Duration::from_secs(2),
        "/health?plugin=other took {took:?}, more than check_timeout"
    );
    let during = threads(pid);
    // Past route_max_pending, 503 at once; the admitted ones still wait.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut refused = 0;
    while refused < FLOOD - PENDING && Instant::now() < deadline {
        refused = 0;
        for (stream, seen) in &mut flood {
            let mut buf = [0u8; 1024];
            match stream.read(&mut buf) {
                Ok(n) => seen.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("a flooding connection failed: {e}"),
            }
            if let Some(status) = complete_answer(seen) {
                assert_eq!(status, 503, "{}", String::from_utf8_lossy(seen));
                refused += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let all_refused = started.elapsed();
    let waiting = flood.iter().filter(|(_, seen)| seen.is_empty()).count();
    assert_eq!(
        (refused, waiting),
        (FLOOD - PENDING, PENDING),
        "route_max_pending calls wait, the rest are refused"
    );
    let after = threads(pid);
    assert!(
        during <= before + 4 && after <= before + 4,
        "{before} threads before the flood, {during} during, {after} after it was refused"
    );
    println!(
        "threads: {before} before the flood, {during} during, {after} after; \
         /health?plugin=other took {took:?}; {} refused within {all_refused:?}",
        FLOOD - PENDING
    );
    drop(flood);
    finish(host);
}

#[test]
fn a_plugin_cannot_frame_its_own_answer_or_send_an_invalid_status() {
    let s = Scratch::new("http-framing");
    let library = cc_fixture(&s, "framing", "framing", &[]);
    let config = Config::new()
        .status(Status::any_port())
        .plugin(Plugin::new("framing", &library))
        .write(&s);
    let mut host = Running::start(&config);
    let address = host.status_address();
    let mut stream = connect(&address);
    let then_fine = |stream: &mut TcpStream| {
        // The next answer on the same connection is the real one.
        let next = exchange(stream, "/plugins/framing/ok");
        assert_eq!((next.status, next.text().as_str()), (200, "fine"));
    };

    for _ in 0..2 {
        let forged = exchange(&mut stream, "/plugins/framing/length");
        assert_eq!(forged.status, 200);
        assert_eq!(
            forged.text(),
            "XHTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged",
            "the whole body, as one answer's body"
        );
        then_fine(&mut stream);
    }

    let long = exchange(&mut stream, "/plugins/framing/long");
    assert_eq!((long.status, long.text().as_str()), (200, "four"));
    then_fine(&mut stream);

    let chunked = exchange(&mut stream, "/plugins/framing/chunked");
    assert_eq!(
        (chunked.status, chunked.text().as_str()),
        (200, "not chunked")
    );
    then_fine(&mut stream);

    let hop = exchange(&mut stream, "/plugins/framing/hop");
    assert_eq!((hop.status, hop.text().as_str()), (200, "hop"));
    for name in [
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "proxy-authenticate",
    ] {
        assert_eq!(hop.header(name), None, "{name} in {:?}", hop.headers);
    }
    then_fine(&mut stream);

    let invalid = exchange(&mut stream, "/plugins/framing/invalid");
    assert_eq!((invalid.status, invalid.text().as_str()), (200, "invalid"));
    assert_eq!(invalid.header("x-good"), Some("yes"));
    assert_eq!(invalid.header("content-type"), Some("text/plain"));
    assert_eq!(invalid.header("set-cookie"), None);
    assert_eq!(invalid.header("x-split"), None);
    then_fine(&mut stream);

    for (code, expected) in [
        ("0", 502),
        ("42", 502),
        ("100", 502),
        ("101", 502),
        ("600", 502),
        ("999", 502),
        ("200", 200),
        ("418", 418),
        ("599", 599),
    ] {
        let answer = exchange(&mut stream, &format!("/plugins/framing/status?{code}"));
        assert_eq!(answer.status, expected, "status {code}: {answer:?}");
        then_fine(&mut stream);
    }
    host.wait_for_stderr("status 999");
    for needle in [
        "route answered status 0, which is not a final HTTP status: sent 502 instead plugin=framing",
        "route answered status 999, which is not a final HTTP status: sent 502 instead plugin=framing",
        "route set the header `content-length`, which only the host sets: dropped plugin=framing",
        "route set the header `transfer-encoding`, which only the host sets: dropped plugin=framing",
        "route set the header `connection`, which only the host sets: dropped plugin=framing",
        "route set the header `proxy-authenticate`, which only the host sets: dropped plugin=framing",
        r"route set the header `x-split` to an invalid value `a\r\nset-cookie: forged=1`: dropped plugin=framing",
        "route set a header with an invalid name `bad name`: dropped plugin=framing",
    ] {
        assert!(
            host.stderr_seen.iter().any(|line| line.contains(needle)),
            "no line with {needle:?} in:\n{}",
            host.stderr_seen.join("\n")
        );
    }
    drop(stream);
    let log = finish(host);
    // Each thing once per plugin, however often the plugin does it.
    assert_eq!(
        count(&log, "`content-length`, which only the host sets"),
        1,
        "{}",
        log.join("\n")
    );
}
