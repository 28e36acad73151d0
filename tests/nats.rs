//! Several hosts, one event stream: real `plughost run` processes, each with
//! a `nats-bridge`, talking through a real `nats-server` that each test
//! starts on a free loopback port and always stops. Delivery in order and
//! once, queue groups, no echo between bridges, a server restart mid-stream
//! (losses counted; none with JetStream), a durable consumer keeping what
//! was published while its host was away, health (failing while the server
//! or a JetStream stream is unavailable, degraded while a full mailbox holds
//! imports up), and what a stopping bridge counts (`discarded` imports, exports
//! `dropped` at `flush_timeout`). `nats-server` must be installed (`.ci/run`
//! installs it): without it these tests fail, they never skip.

mod common;

use common::*;
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The `nats-server` program: on PATH, or where Debian puts it (/usr/sbin,
/// which a user's PATH may lack). Missing, the test fails: it never skips.
fn nats_server_program() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("nats-server"))
        .find(|program| program.is_file())
        .unwrap_or_else(|| {
            panic!(
                "nats-server is not installed: these tests need a real NATS server \
                 (Debian: apt-get install nats-server; .ci/run installs it)"
            )
        })
}

/// A `nats-server` child on 127.0.0.1, killed when dropped.
struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: PathBuf,
    log: PathBuf,
}

impl NatsServer {
    /// Start one with JetStream (its store in `s`) on a free port.
    fn start(s: &Scratch) -> NatsServer {
        let store = s.path("nats-store");
        let log = s.path("nats-server.log");
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("find a free port")
                .port();
            let mut server = NatsServer {
                child: None,
                port,
                store: store.clone(),
                log: log.clone(),
            };
            if server.spawn() {
                return server;
            }
        }
        panic!(
            "nats-server did not start on any free port; see {}",
            log.display()
        );
    }

    /// Start the server on `self.port`; false when it exited (port taken).
    fn spawn(&mut self) -> bool {
        let child = Command::new(nats_server_program())
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&self.log).expect("create the server log"))
            .spawn();
        let mut child = child.unwrap_or_else(|e| panic!("cannot start nats-server: {e}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if child.try_wait().expect("poll nats-server").is_some() {
                return false;
            }
            if self.answers() {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "nats-server did not answer on port {} within 10s:\n{}",
            self.port,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// Whether a NATS server greets a client on the port.
    fn answers(&self) -> bool {
        let Ok(stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("INFO ")
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: the server gets no chance to say goodbye.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start again on the same port, with the same store.
    fn restart(&mut self) {
        self.kill();
        assert!(
            self.spawn(),
            "nats-server did not start again on port {}",
            self.port
        );
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A plain NATS client speaking the text protocol on one connection: it
/// publishes and calls the JetStream API as another program would, with no
/// bridge involved.
struct RawClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    next_sid: u32,
}

impl RawClient {
    fn connect(server: &NatsServer) -> RawClient {
        let writer =
            TcpStream::connect(("127.0.0.1", server.port)).expect("connect to nats-server");
        writer
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set a read timeout");
        let mut client = RawClient {
            reader: BufReader::new(writer.try_clone().expect("clone the socket")),
            writer,
            next_sid: 1,
        };
        assert!(client.line().starts_with("INFO "), "a NATS server greets");
        // `headers`: so that `HPUB` is allowed.
        client.write(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\n");
        client
    }

    fn write(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write to nats-server");
    }

    /// The next protocol line, answering the server's pings on the way.
    fn line(&mut self) -> String {
        loop {
            let mut line = String::new();
            self.reader
                .read_line(&mut line)
                .expect("read from nats-server");
            assert!(!line.is_empty(), "nats-server closed the connection");
            assert!(!line.starts_with("-ERR"), "nats-server: {line}");
            match line.trim_end() {
                "PING" => self.write(b"PONG\r\n"),
                "+OK" => {}
                line => return line.to_owned(),
            }
        }
    }

    fn publish(&mut self, subject: &str, payload: &[u8]) {
        let mut message = format!("PUB {subject} {}\r\n", payload.len()).into_bytes();
        message.extend_from_slice(payload);
        message.extend_from_slice(b"\r\n");
        self.write(&message);
    }

    /// Publish with NATS headers (`HPUB`).
    fn publish_with_headers(&mut self, subject: &str, headers: &[(&str, &str)], payload: &[u8]) {
        let mut head = String::from("NATS/1.0\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let total = head.len() + payload.len();
        let mut message = format!("HPUB {subject} {} {total}\r\n{head}", head.len()).into_bytes();
        message.extend_from_slice(payload);
        message.extend_from_slice(b"\r\n");
        self.write(&message);
    }

    /// Publish JSON as a foreign publisher says it is: `Content-Type:
    /// application/json` (without it, an import is bytes).
    fn publish_json(&mut self, subject: &str, value: &serde_json::Value) {
        let payload = value.to_string();
        self.publish_with_headers(
            subject,
            &[("Content-Type", "application/json")],
            payload.as_bytes(),
        );
    }

    /// Return once the server has handled everything sent before (and so
    /// has routed every message published so far to its subscribers).
    fn flush(&mut self) {
        self.write(b"PING\r\n");
        let line = self.line();
        assert_eq!(line, "PONG");
    }

    /// A request and its one reply, as JSON (the JetStream API).
    fn request(&mut self, subject: &str, payload: serde_json::Value) -> serde_json::Value {
        let sid = self.next_sid;
        self.next_sid += 1;
        let inbox = format!("_INBOX.raw.{sid}");
        let payload = payload.to_string();
        self.write(
            format!(
                "SUB {inbox} {sid}\r\nPUB {subject} {inbox} {}\r\n{payload}\r\n",
                payload.len()
            )
            .as_bytes(),
        );
        let header = self.line();
        let words: Vec<&str> = header.split(' ').collect();
        assert!(
            words[0] == "MSG" && words[1] == inbox,
            "a reply to {subject}: {header}"
        );
        let len: usize = words.last().unwrap().parse().expect("a payload length");
        let mut body = vec![0u8; len + 2];
        std::io::Read::read_exact(&mut self.reader, &mut body).expect("read the reply");
        self.write(format!("UNSUB {sid}\r\n").as_bytes());
        serde_json::from_slice(&body[..len]).expect("a JSON reply")
    }
}

/// A `plughost run` with a status server, fed events on stdin.
struct Host {
    running: Option<Running>,
    address: String,
    name: &'static str,
}

impl Host {
    /// Run `config` (with a status server on any port) as `NAME.toml` in `s`.
    fn start(s: &Scratch, name: &'static str, config: Config) -> Host {
        let text = config.status(Status::any_port()).render();
        let path = s.write(&format!("{name}.toml"), &text);
        let mut running = Running::start(&path);
        let address = running.status_address();
        Host {
            running: Some(running),
            address,
            name,
        }
    }

    fn send(&mut self, text: &str) {
        self.running.as_mut().expect("running").send(text);
    }

    /// The bridge's health: (status, message).
    fn health(&self) -> (String, String) {
        let (_, body) = get_json(&self.address, "/health?plugin=bridge");
        let plugin = &body["plugins"][0];
        (
            plugin["status"].as_str().unwrap_or_default().to_owned(),
            plugin["message"].as_str().unwrap_or_default().to_owned(),
        )
    }

    /// One of the counts in the bridge's health message.
    fn count(&self, key: &str) -> u64 {
        count_in(&self.health().1, key)
    }

    fn ready(&self) -> bool {
        get_json(&self.address, "/ready?plugin=bridge").0 == 200
    }

    /// Events the instance `name` has handled.
    fn processed(&self, name: &str) -> u64 {
        let (_, body) = get_json(&self.address, "/plugins");
        body.as_array()
            .expect("a list of instances")
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["processed"].as_u64())
            .unwrap_or_else(|| panic!("no instance {name} on {}: {body}", self.name))
    }

    /// The bridge's job report (`/jobs`).
    fn job(&self) -> serde_json::Value {
        let (_, body) = get_json(&self.address, "/jobs");
        body.as_array()
            .expect("a list of job reports")
            .iter()
            .find(|job| job["plugin"] == "bridge")
            .unwrap_or_else(|| panic!("no job report from the bridge: {body}"))
            .clone()
    }

    /// End the input, let it drain and stop; return the bridge's final counts line.
    fn finish(self) -> String {
        self.finish_with_log().0
    }

    /// [`Host::finish`], with every line the host wrote to stderr.
    fn finish_with_log(mut self) -> (String, Vec<String>) {
        let mut running = self.running.take().expect("running");
        drop(running.stdin.take());
        let (out, err) = running.wait(Duration::from_secs(30));
        assert!(
            out.status.success(),
            "host {} failed:\n{}",
            self.name,
            err.join("\n")
        );
        assert_no_raw_panic(&err.join("\n"));
        let counts = err
            .iter()
            .find(|line| line.contains("stopped: exported="))
            .unwrap_or_else(|| {
                panic!(
                    "no final counts from {}'s bridge:\n{}",
                    self.name,
                    err.join("\n")
                )
            })
            .clone();
        (counts, err)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut running) = self.running.take() {
            let _ = running.child.kill();
            let _ = running.child.wait();
        }
    }
}

/// `key=N` in a bridge's counts.
fn count_in(text: &str, key: &str) -> u64 {
    let needle = format!("{key}=");
    text.split_whitespace()
        .find_map(|word| word.strip_prefix(&needle))
        .and_then(|n| n.trim_end_matches([',', ';', '"']).parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {text:?}"))
}

/// A logger `name` writing what it hears on `subscribe` to `file` in `s`.
fn log(s: &Scratch, name: &str, subscribe: &[&str], file: &str) -> Plugin {
    logger(name, &s.path(file)).subscribe(subscribe)
}

/// A bridge instance named `bridge`, ticking every 10 ms, connected to
/// `server`, with the other `[plugin.config]` keys of `config`.
fn bridge(server: &NatsServer, subscribe: &[&str], config: serde_json::Value) -> Plugin {
    bridge_without_ticks(server, subscribe, config).tick_interval("10ms")
}

/// [`bridge`] without a `tick_interval`: only an event makes it publish
/// its imports.
fn bridge_without_ticks(
    server: &NatsServer,
    subscribe: &[&str],
    config: serde_json::Value,
) -> Plugin {
    Plugin::new("bridge", "nats_bridge")
        .subscribe(subscribe)
        .config(config)
        .set("url", server.url())
}

/// Poll `condition` every 20 ms for up to `limit`.
fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

const LIMIT: Duration = Duration::from_secs(20);

/// The `n` payloads a logger wrote, with topic and source checked.
fn payloads(s: &Scratch, file: &str, topic: &str, source: &str) -> Vec<u64> {
    s.log_lines(file)
        .iter()
        .filter(|line| line["topic"] == topic)
        .map(|line| {
            assert_eq!(line["source"], source, "{line}");
            line["payload"]["n"].as_u64().expect("payload n")
        })
        .collect()
}

#[test]
fn events_published_on_one_host_reach_another_in_order_once_each() {
    let s = Scratch::new("nats-pair");
    let server = NatsServer::start(&s);
    // Both sides under the same subject prefix: `fleet.orders.*` on NATS.
    let mut a = Host::start(
        &s,
        "a",
        Config::new().plugin(bridge(
            &server,
            &["orders.>"],
            json!({"export": ["orders.>"], "prefix": "fleet"}),
        )),
    );
    let b = Host::start(
        &s,
        "b",
        Config::new()
            .plugin(log(&s, "log", &["orders.>"], "b.jsonl"))
            .plugin(bridge(
                &server,
                &[],
                json!({"import": ["orders.>"], "prefix": "fleet"}),
            )),
    );
    wait_until("both bridges ready", LIMIT, || a.ready() && b.ready());

    const N: u64 = 300;
    let mut input = String::new();
    for n in 0..N {
        input.push_str(&event("orders.created", json!({"n": n})));
    }
    a.send(&input);
    wait_until("B's logger to get every event", LIMIT, || {
        b.processed("log") >= N
    });

    let a_counts = a.finish();
    let b_counts = b.finish();
    assert_eq!(
        payloads(&s, "b.jsonl", "orders.created", "bridge"),
        (0..N).collect::<Vec<_>>()
    );
    assert_eq!(
        s.log_lines("b.jsonl").len() as u64,
        N,
        "nothing else arrived"
    );
    assert_eq!(
        (
            count_in(&a_counts, "exported"),
            count_in(&a_counts, "dropped")
        ),
        (N, 0),
        "{a_counts}"
    );
    for key in ["missed", "duplicates", "rejected"] {
        assert_eq!(count_in(&b_counts, key), 0, "{key}: {b_counts}");
    }
    assert_eq!(count_in(&b_counts, "imported"), N, "{b_counts}");
}

/// A host's lifecycle events exported to NATS are not imported as such by
/// another host: its own topics are the host's alone (`plughost.>`), so the
/// bridge's publish is refused there, counted by the host and the bridge.
#[test]
fn another_hosts_lifecycle_events_are_not_imported_as_this_ones() {
    let s = Scratch::new("nats-reserved");
    let server = NatsServer::start(&s);
    let mut a = Host::start(
        &s,
        "a",
        Config::new()
            .plugin(
                Plugin::new("crash", "chaos")
                    .subscribe(["orders.poison"])
                    .restart(Restart::Always)
                    .set("panic_on", "orders.poison"),
            )
            .plugin(bridge(
                &server,
                &["orders.>", "plughost.>"],
                json!({"export": ["orders.>", "plughost.>"]}),
            )),
    );
    let b = Host::start(
        &s,
        "b",
        Config::new()
            .plugin(log(&s, "log", &["orders.>", "plughost.>"], "b.jsonl"))
            .plugin(bridge(
                &server,
                &[],
                json!({"import": ["orders.>", "plughost.>"]}),
            )),
    );
    wait_until("both bridges ready", LIMIT, || a.ready() && b.ready());
    a.send(&(event("orders.created", json!({"n": 0})) + &event("orders.poison", json!({"n": 1}))));
    // A's `crash` fails and restarts: plughost.plugin.failed and .restarted
    // go out to NATS, and B refuses both.
    wait_until("B to refuse A's lifecycle events", LIMIT, || {
        b.count("rejected") >= 2
    });
    let (_, metrics) = http(&b.address, "GET", "/metrics", "");
    let refused = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                r#"plughost_events_refused_total{entry="plugin",reason="reserved_topic"} "#,
            )
        })
        .and_then(|n| n.trim().parse::<u64>().ok());
    assert!(refused.is_some_and(|n| n >= 2), "{metrics}");
    wait_until("B's logger to get both orders", LIMIT, || {
        b.processed("log") >= 2
    });
    a.finish();
    b.finish();
    let lines = s.log_lines("b.jsonl");
    assert_eq!(payloads(&s, "b.jsonl", "orders.created", "bridge"), [0]);
    assert_eq!(payloads(&s, "b.jsonl", "orders.poison", "bridge"), [1]);
    for line in lines
        .iter()
        .filter(|l| l["topic"].as_str().unwrap().starts_with("plughost."))
    {
        assert_eq!(line["source"], "host", "{line}");
        assert_ne!(
            line["payload"]["name"], "crash",
            "A's event reached B: {line}"
        );
    }
}

#[test]
fn a_queue_group_splits_a_stream_between_two_hosts_without_loss_or_duplicate() {
    let s = Scratch::new("nats-queue");
    let server = NatsServer::start(&s);
    let mut producer = Host::start(
        &s,
        "producer",
        Config::new().plugin(bridge(&server, &["work.>"], json!({"export": ["work.>"]}))),
    );
    let worker = |name: &'static str| {
        Host::start(
            &s,
            name,
            Config::new()
                .plugin(log(&s, "log", &["work.>"], &format!("{name}.jsonl")))
                .plugin(bridge(
                    &server,
                    &[],
                    json!({"import": ["work.>"], "queue_group": "workers"}),
                )),
        )
    };
    let (w1, w2) = (worker("w1"), worker("w2"));
    wait_until("the bridges ready", LIMIT, || {
        producer.ready() && w1.ready() && w2.ready()
    });

    const N: u64 = 400;
    let mut input = String::new();
    for n in 0..N {
        input.push_str(&event("work.item", json!({"n": n})));
    }
    producer.send(&input);
    wait_until("the workers to share every item", LIMIT, || {
        w1.processed("log") + w2.processed("log") >= N
    });

    let produced = producer.finish();
    assert_eq!(count_in(&produced, "exported"), N, "{produced}");
    let (c1, c2) = (w1.finish(), w2.finish());
    let got1 = payloads(&s, "w1.jsonl", "work.item", "bridge");
    let got2 = payloads(&s, "w2.jsonl", "work.item", "bridge");
    assert_eq!(
        count_in(&c1, "imported") + count_in(&c2, "imported"),
        N,
        "{c1}\n{c2}"
    );
    assert!(
        !got1.is_empty() && !got2.is_empty(),
        "both members took work: {} and {}",
        got1.len(),
        got2.len()
    );
    let mut all: Vec<u64> = got1.iter().chain(&got2).copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..N).collect::<Vec<_>>(),
        "the union is every item, each once"
    );
    // Each member still sees its share in the producer's order.
    assert!(got1.is_sorted() && got2.is_sorted());
}

#[test]
fn two_bridges_exchanging_the_same_subjects_do_not_echo() {
    let s = Scratch::new("nats-echo");
    let server = NatsServer::start(&s);
    let side = |name: &'static str| {
        Host::start(
            &s,
            name,
            Config::new()
                .plugin(log(&s, "log", &["chat.>"], &format!("{name}.jsonl")))
                .plugin(bridge(
                    &server,
                    &["chat.>"],
                    json!({"export": ["chat.>"], "import": ["chat.>"]}),
                )),
        )
    };
    let (mut a, mut b) = (side("a"), side("b"));
    wait_until("both bridges ready", LIMIT, || a.ready() && b.ready());

    const N: u64 = 100;
    let lines = |topic: &str| -> String { (0..N).map(|n| event(topic, json!({"n": n}))).collect() };
    a.send(&lines("chat.from_a"));
    b.send(&lines("chat.from_b"));
    // Each side's own messages come back from NATS and are skipped: once
    // all of them did, nothing can still be on its way.
    wait_until(
        "every event on both sides, own messages back",
        LIMIT,
        || {
            a.processed("log") >= 2 * N
                && b.processed("log") >= 2 * N
                && a.count("echoes") >= N
                && b.count("echoes") >= N
        },
    );

    let (ca, cb) = (a.finish(), b.finish());
    for (file, counts, own, other) in [
        ("a.jsonl", &ca, "chat.from_a", "chat.from_b"),
        ("b.jsonl", &cb, "chat.from_b", "chat.from_a"),
    ] {
        let all: Vec<u64> = (0..N).collect();
        assert_eq!(
            payloads(&s, file, own, "stdin"),
            all,
            "{file}: its own events, once"
        );
        assert_eq!(
            payloads(&s, file, other, "bridge"),
            all,
            "{file}: the other's, once"
        );
        assert_eq!(
            s.log_lines(file).len() as u64,
            2 * N,
            "{file}: nothing came back"
        );
        // Imports were not exported again, and own messages were skipped.
        assert_eq!(count_in(counts, "exported"), N, "{counts}");
        assert_eq!(count_in(counts, "imported"), N, "{counts}");
        assert_eq!(count_in(counts, "echoes"), N, "{counts}");
        assert_eq!(count_in(counts, "duplicates"), 0, "{counts}");
    }
}

/// Instance `name`'s row in `/plugins`: (received, processed, dropped, failed).
fn row(host: &Host, name: &str) -> (u64, u64, u64, u64) {
    let (_, body) = get_json(&host.address, "/plugins");
    let p = body
        .as_array()
        .expect("a list of instances")
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no instance {name}: {body}"))
        .clone();
    let n = |key: &str| p[key].as_u64().unwrap_or_else(|| panic!("{key} in {p}"));
    (n("received"), n("processed"), n("dropped"), n("failed"))
}

/// Bidirectional bridging under a burst: each host's bridge exports and
/// imports `chat.>` and is subscribed to it; 10,000 events are published on
/// each host at once. Each host gets the other's 10,000 exactly once, in
/// order, and its own once (from its input): the bridges do not receive
/// their own imports (no echo), so no bridge publishes into its own
/// mailbox, nothing is dropped and no cycle is broken. No `tick_interval`.
#[test]
fn ten_thousand_events_each_way_between_two_bridged_hosts_arrive_once_in_order() {
    let s = Scratch::new("nats-both-ways");
    let server = NatsServer::start(&s);
    let side = |name: &'static str| {
        Host::start(
            &s,
            name,
            Config::new()
                .plugin(log(&s, "log", &["chat.>"], &format!("{name}.jsonl")))
                .plugin(bridge_without_ticks(
                    &server,
                    &["chat.>"],
                    json!({"export": ["chat.>"], "import": ["chat.>"]}),
                )),
        )
    };
    let (mut a, mut b) = (side("a"), side("b"));
    wait_until("both bridges ready", LIMIT, || a.ready() && b.ready());

    const N: u64 = 10_000;
    let lines = |topic: &str| -> String { (0..N).map(|n| event(topic, json!({"n": n}))).collect() };
    let (from_a, from_b) = (lines("chat.from_a"), lines("chat.from_b"));
    let feeder = {
        let mut b_input = b.running.as_mut().expect("running").stdin.take();
        std::thread::spawn(move || {
            use std::io::Write as _;
            let input = b_input.as_mut().expect("b's stdin");
            input.write_all(from_b.as_bytes()).expect("feed b");
            b_input
        })
    };
    a.send(&from_a);
    b.running.as_mut().expect("running").stdin = feeder.join().expect("fed b");
    wait_until(
        "every event on both sides, own messages back",
        Duration::from_secs(120),
        || {
            a.processed("log") >= 2 * N
                && b.processed("log") >= 2 * N
                && a.count("echoes") >= N
                && b.count("echoes") >= N
        },
    );
    for host in [&a, &b] {
        // The bridge got its own host's events only (to export them), none
        // of its imports; nothing dropped anywhere.
        assert_eq!(row(host, "bridge"), (N, N, 0, 0), "bridge on {}", host.name);
        assert_eq!(
            row(host, "log"),
            (2 * N, 2 * N, 0, 0),
            "log on {}",
            host.name
        );
    }
    let ((ca, la), (cb, lb)) = (a.finish_with_log(), b.finish_with_log());
    for (file, counts, log, own, other) in [
        ("a.jsonl", &ca, &la, "chat.from_a", "chat.from_b"),
        ("b.jsonl", &cb, &lb, "chat.from_b", "chat.from_a"),
    ] {
        let all: Vec<u64> = (0..N).collect();
        assert_eq!(
            payloads(&s, file, own, "stdin"),
            all,
            "{file}: its own, once, in order"
        );
        assert_eq!(
            payloads(&s, file, other, "bridge"),
            all,
            "{file}: the other's, once, in order"
        );
        assert_eq!(
            s.log_lines(file).len() as u64,
            2 * N,
            "{file}: nothing else"
        );
        for line in log {
            assert!(
                !line.contains("blocked on each other in a cycle")
                    && !line.contains("dropped event"),
                "{file}: {line}"
            );
        }
        for (key, want) in [
            ("exported", N),
            ("imported", N),
            ("echoes", N),
            ("dropped", 0),
            ("missed", 0),
            ("duplicates", 0),
            ("rejected", 0),
            ("discarded", 0),
        ] {
            assert_eq!(count_in(counts, key), want, "{key}: {counts}");
        }
    }
}

/// Write `orders.created` events with `n` = 0, 1, 2, ... to `host`'s input,
/// one every 2 ms, until `stop`; return how many were written.
fn stream_into(
    host: &mut Host,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) -> std::thread::JoinHandle<u64> {
    let mut stdin = host
        .running
        .as_mut()
        .expect("running")
        .stdin
        .take()
        .expect("stdin");
    std::thread::spawn(move || {
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            stdin
                .write_all(event("orders.created", json!({"n": n})).as_bytes())
                .expect("write an event");
            stdin.flush().expect("flush");
            n += 1;
            sent.store(n, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(2));
        }
        n
    })
}

/// Host A streams into B; the server is killed mid-stream and started again.
/// Returns the final count lines of A and B and how many events A sent.
fn restart_mid_stream(
    s: &Scratch,
    a_config: serde_json::Value,
    b_config: serde_json::Value,
    wait_for_drops: bool,
) -> (String, String, u64) {
    let mut server = NatsServer::start(s);
    let mut a = Host::start(
        s,
        "a",
        Config::new().plugin(bridge(&server, &["orders.>"], a_config)),
    );
    let b = Host::start(
        s,
        "b",
        Config::new()
            .plugin(log(s, "log", &["orders.>"], "b.jsonl"))
            .plugin(bridge(&server, &[], b_config)),
    );
    wait_until("both bridges ready", LIMIT, || a.ready() && b.ready());
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let writer = stream_into(&mut a, stop.clone(), sent.clone());
    wait_until("the stream to flow", LIMIT, || b.count("imported") >= 50);

    server.kill();
    wait_until("both bridges to report the server gone", LIMIT, || {
        let (sa, ma) = a.health();
        let (sb, mb) = b.health();
        sa == "failing"
            && sb == "failing"
            && ma.contains("not connected")
            && mb.contains("not connected")
    });
    // The stream goes on meanwhile: A holds what it can and counts the rest.
    let before = sent.load(Ordering::Relaxed);
    wait_until("more events while the server is away", LIMIT, || {
        sent.load(Ordering::Relaxed) >= before + 100 && (!wait_for_drops || a.count("dropped") > 0)
    });

    server.restart();
    wait_until("both bridges to reconnect", LIMIT, || {
        a.health().0 == "ok" && b.health().0 == "ok" && a.ready() && b.ready()
    });
    let after = b.count("imported");
    wait_until("the stream to flow again", LIMIT, || {
        b.count("imported") >= after + 50
    });
    stop.store(true, Ordering::Relaxed);
    let total = writer.join().expect("writer");
    assert_eq!(total, sent.load(Ordering::Relaxed));
    // Every event is accounted for at B: published there, or counted missed.
    let deadline = Instant::now() + LIMIT;
    loop {
        let counts = b.health().1;
        if count_in(&counts, "imported") + count_in(&counts, "missed") >= total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B did not account for all {total} events within {LIMIT:?}: {counts}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (ca, cb) = (a.finish(), b.finish());
    eprintln!("sent {total}\nA: {ca}\nB: {cb}");
    (ca, cb, total)
}

#[test]
fn core_nats_server_restart_mid_stream_reconnects_and_counts_what_was_lost() {
    let s = Scratch::new("nats-restart");
    let (ca, cb, sent) = restart_mid_stream(
        &s,
        json!({"export": ["orders.>"], "buffer": 20}),
        json!({"import": ["orders.>"]}),
        true,
    );
    let (imported, missed) = (count_in(&cb, "imported"), count_in(&cb, "missed"));
    assert_eq!(
        imported + missed,
        sent,
        "received + reported lost == sent: {cb}"
    );
    let dropped = count_in(&ca, "dropped");
    assert!(
        dropped > 0,
        "A's buffer of 20 overflowed while the server was away: {ca}"
    );
    assert!(
        missed >= dropped,
        "what A dropped is missing at B: {ca}\n{cb}"
    );
    assert_eq!(count_in(&cb, "duplicates"), 0, "{cb}");
    // What arrived, arrived once and in order.
    let got = payloads(&s, "b.jsonl", "orders.created", "bridge");
    assert_eq!(got.len() as u64, imported);
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order, no repeats");
}

#[test]
fn jetstream_loses_nothing_across_a_server_restart() {
    let s = Scratch::new("nats-jetstream");
    let (ca, cb, sent) = restart_mid_stream(
        &s,
        json!({"export": ["orders.>"], "jetstream": "ORDERS"}),
        json!({"import": ["orders.>"], "jetstream": "ORDERS", "consumer": "b", "ack_wait": "1s"}),
        false,
    );
    assert_eq!(count_in(&ca, "exported"), sent, "{ca}");
    assert_eq!(count_in(&ca, "dropped"), 0, "{ca}");
    assert_eq!(count_in(&cb, "imported"), sent, "{cb}");
    assert_eq!(count_in(&cb, "missed"), 0, "{cb}");
    let mut got = payloads(&s, "b.jsonl", "orders.created", "bridge");
    got.sort_unstable();
    assert_eq!(got, (0..sent).collect::<Vec<_>>(), "every event, once");
}

/// An importing bridge without `tick_interval` that receives no event of
/// its own publishes its imports while it runs, as they come (through its
/// importer thread's `Publisher`), not only when it stops.
#[test]
fn an_importer_without_tick_interval_delivers_while_it_runs() {
    let s = Scratch::new("nats-no-ticks");
    let server = NatsServer::start(&s);
    let mut raw = RawClient::connect(&server);
    let b = Host::start(
        &s,
        "b",
        Config::new()
            .plugin(log(&s, "log", &["work.>"], "b.jsonl"))
            .plugin(bridge_without_ticks(
                &server,
                &[],
                json!({"import": ["work.>"]}),
            )),
    );
    wait_until("the bridge ready", LIMIT, || b.ready());
    const N: u64 = 100;
    for n in 0..N {
        raw.publish_json("work.item", &json!({"n": n}));
    }
    raw.flush();
    wait_until("every import published while the host runs", LIMIT, || {
        b.processed("log") == N
    });
    assert_eq!(b.processed("bridge"), 0, "no event reached the bridge");
    assert_eq!(b.job()["reserved"], 0, "no import waits in the bridge");
    assert_eq!(b.health().0, "ok");
    let counts = b.finish();
    assert_eq!(count_in(&counts, "imported"), N, "{counts}");
    assert_eq!(
        payloads(&s, "b.jsonl", "work.item", "bridge"),
        (0..N).collect::<Vec<_>>()
    );
}

/// Content types cross NATS as a `Content-Type` header: what host A's
/// bridge exports as json, text and bytes, host B's imports as the same
/// (its logger writes `payload`, `payload_text`, `payload_base64`); a
/// foreign message without the header is bytes, one with `text/plain` text,
/// and one whose payload is not what its header says is bytes.
#[test]
fn content_types_cross_nats_as_a_content_type_header() {
    let s = Scratch::new("nats-content");
    let server = NatsServer::start(&s);
    let mut raw = RawClient::connect(&server);
    let mut a = Host::start(
        &s,
        "a",
        Config::new().plugin(bridge(
            &server,
            &["notes.>"],
            json!({"export": ["notes.>"]}),
        )),
    );
    let b = Host::start(
        &s,
        "b",
        Config::new()
            .plugin(log(&s, "log", &["notes.>"], "b.jsonl"))
            .plugin(bridge(&server, &[], json!({"import": ["notes.>"]}))),
    );
    wait_until("both bridges ready", LIMIT, || a.ready() && b.ready());
    let lines = [
        json!({"topic": "notes.json", "payload": {"id": 1, "s": "é"}}),
        json!({"topic": "notes.text", "payload_text": "{\"looks\": 1}"}),
        json!({"topic": "notes.bytes", "payload_base64": "AP8="}),
    ];
    for line in &lines {
        a.send(&format!("{line}\n"));
    }
    raw.publish("notes.bare", br#"{"id": 2}"#);
    raw.publish_with_headers("notes.plain", &[("Content-Type", "text/plain")], b"hi");
    raw.publish_with_headers(
        "notes.liar",
        &[("Content-Type", "application/json")],
        b"not json",
    );
    raw.flush();
    wait_until("B's logger to get six events", LIMIT, || {
        b.processed("log") >= 6
    });
    a.finish();
    let counts = b.finish();
    assert_eq!(count_in(&counts, "rejected"), 0, "{counts}");
    let logged: std::collections::BTreeMap<String, serde_json::Value> = s
        .log_lines("b.jsonl")
        .into_iter()
        .map(|mut line| {
            let topic = line["topic"].as_str().unwrap().to_owned();
            let object = line.as_object_mut().unwrap();
            for key in ["id", "topic", "source", "timestamp"] {
                object.remove(key);
            }
            (topic, line)
        })
        .collect();
    let expected: std::collections::BTreeMap<String, serde_json::Value> = [
        ("notes.json", json!({"payload": {"id": 1, "s": "é"}})),
        ("notes.text", json!({"payload_text": "{\"looks\": 1}"})),
        ("notes.bytes", json!({"payload_base64": "AP8="})),
        ("notes.bare", json!({"payload_base64": "eyJpZCI6IDJ9"})),
        ("notes.plain", json!({"payload_text": "hi"})),
        ("notes.liar", json!({"payload_base64": "bm90IGpzb24="})),
    ]
    .into_iter()
    .map(|(topic, line)| (topic.to_owned(), line))
    .collect();
    assert_eq!(logged, expected);
}

/// A JetStream stream the server refuses to create (its subjects overlap
/// another stream's) makes the bridge `failing` (503) with the server's
/// reason; exports wait; once the other stream is gone the bridge creates
/// its stream, is `ok`, and what waited reaches the stream.
#[test]
fn a_jetstream_stream_that_cannot_be_set_up_is_failing_until_it_can() {
    let s = Scratch::new("nats-stream-failing");
    let server = NatsServer::start(&s);
    let mut raw = RawClient::connect(&server);
    let created = raw.request(
        "$JS.API.STREAM.CREATE.OTHER",
        json!({"name": "OTHER", "subjects": ["orders.>"], "storage": "memory"}),
    );
    assert!(created.get("error").is_none(), "{created}");
    let mut a = Host::start(
        &s,
        "a",
        Config::new().plugin(bridge(
            &server,
            &["orders.>"],
            json!({"export": ["orders.>"], "jetstream": "ORDERS"}),
        )),
    );
    wait_until("the bridge to report the stream", LIMIT, || {
        a.health().1.contains("jetstream")
    });
    let (status, message) = a.health();
    assert_eq!(status, "failing", "{message}");
    assert!(
        message.starts_with("jetstream stream `ORDERS`: ") && message.contains("overlap"),
        "the server's reason: {message}"
    );
    assert_eq!(get_json(&a.address, "/health?plugin=bridge").0, 503);
    let mut input = String::new();
    for n in 0..5 {
        input.push_str(&event("orders.created", json!({"n": n})));
    }
    a.send(&input);
    wait_until("the bridge to hold the events", LIMIT, || {
        a.processed("bridge") == 5
    });
    assert_eq!(a.count("exported"), 0);

    let deleted = raw.request("$JS.API.STREAM.DELETE.OTHER", json!({}));
    assert_eq!(deleted["success"], true, "{deleted}");
    wait_until("the bridge to create its stream", LIMIT, || {
        a.health().0 == "ok"
    });
    wait_until("the held events in the stream", LIMIT, || {
        a.count("exported") == 5
    });
    let counts = a.finish();
    assert_eq!(
        (count_in(&counts, "exported"), count_in(&counts, "dropped")),
        (5, 0),
        "{counts}"
    );
    let info = raw.request("$JS.API.STREAM.INFO.ORDERS", json!({}));
    assert_eq!(info["state"]["messages"], 5, "{info}");
    assert_eq!(info["config"]["subjects"], json!(["orders.>"]), "{info}");
}

/// A host `b` (`shutdown_timeout` 1 s) whose bridge, without ticks,
/// imports `work.>` (and the other keys of `config`) for `slow`: one place
/// in its mailbox, `sleep_ms` an event, so it holds the importer up. Once
/// the bridge is ready.
fn held_up_importer(
    s: &Scratch,
    server: &NatsServer,
    sleep_ms: u64,
    mut config: serde_json::Value,
) -> Host {
    config["import"] = json!(["work.>"]);
    let b = Host::start(
        s,
        "b",
        Config::new()
            .shutdown_timeout("1s")
            .plugin(
                Plugin::new("slow", "chaos")
                    .subscribe(["work.>"])
                    .queue_capacity(1)
                    .config(json!({"sleep_ms": sleep_ms})),
            )
            .plugin(bridge_without_ticks(server, &[], config)),
    );
    wait_until("the bridge ready", LIMIT, || b.ready());
    b
}

/// A stopping bridge publishes the core imports its importer already holds;
/// what its client took from NATS beyond them is counted as `discarded`,
/// never lost silently: imported + discarded is every message the server
/// sent it. Here a slow subscriber (one place, 100 ms an event, `block`)
/// holds the importer up, so most of the 50 are still in the client when
/// the host stops, a second after the input ends.
#[test]
fn a_stopping_importer_counts_what_it_took_and_did_not_publish_as_discarded() {
    let s = Scratch::new("nats-discarded");
    let server = NatsServer::start(&s);
    let mut raw = RawClient::connect(&server);
    let b = held_up_importer(&s, &server, 100, json!({"import_buffer": 1}));
    const N: u64 = 50;
    for n in 0..N {
        raw.publish("work.item", json!({"n": n}).to_string().as_bytes());
    }
    // The server has sent B every message before B's bridge stops.
    raw.flush();
    wait_until("the importer held up by the slow subscriber", LIMIT, || {
        b.processed("slow") >= 1
    });
    let counts = b.finish();
    let (imported, discarded) = (
        count_in(&counts, "imported"),
        count_in(&counts, "discarded"),
    );
    assert!(imported >= 1 && discarded >= 1, "{counts}");
    assert_eq!(imported + discarded, N, "{counts}");
}

/// Imports that a full mailbox holds up for over 5 s make the bridge
/// degraded, saying so (it is connected, but behind); once one moves again it
/// is ok.
#[test]
fn imports_held_up_by_a_full_mailbox_make_the_bridge_degraded_until_they_move() {
    let s = Scratch::new("nats-degraded");
    let server = NatsServer::start(&s);
    let mut raw = RawClient::connect(&server);
    let b = held_up_importer(&s, &server, 8000, json!({}));
    assert_eq!(b.health().0, "ok", "{:?}", b.health());
    // `slow` takes the first for 8 s, its mailbox holds the second, the
    // importer waits to publish the third; two wait in the import queue.
    for n in 0..5 {
        raw.publish("work.item", json!({"n": n}).to_string().as_bytes());
    }
    raw.flush();
    let started = Instant::now();
    wait_until("the bridge degraded", LIMIT, || b.health().0 == "degraded");
    let (_, message) = b.health();
    assert!(
        message.contains("imports wait: none was published for over 5s"),
        "{message}"
    );
    assert!(started.elapsed() >= Duration::from_secs(5), "{message}");
    // At 8 s `slow` takes the second, and the importer publishes the third.
    wait_until("the bridge ok again", LIMIT, || b.health().0 == "ok");
    assert!(b.processed("slow") >= 1);
    b.finish();
}

/// Exports held while the server is away are flushed when the bridge stops,
/// for up to `flush_timeout`; what is still held then is dropped, counted
/// and said. None of it counts as exported.
#[test]
fn exports_still_held_at_flush_timeout_are_dropped_and_counted() {
    let s = Scratch::new("nats-flush-timeout");
    let mut server = NatsServer::start(&s);
    let mut a = Host::start(
        &s,
        "a",
        Config::new().plugin(bridge(
            &server,
            &["orders.>"],
            json!({"export": ["orders.>"], "flush_timeout": "300ms"}),
        )),
    );
    wait_until("the bridge ready", LIMIT, || a.ready());
    server.kill();
    wait_until("the bridge to report the server gone", LIMIT, || {
        a.health().1.contains("not connected")
    });
    const N: u64 = 20;
    let mut input = String::new();
    for n in 0..N {
        input.push_str(&event("orders.created", json!({"n": n})));
    }
    a.send(&input);
    wait_until("the bridge to take every event", LIMIT, || {
        a.processed("bridge") == N
    });
    let (counts, log) = a.finish_with_log();
    assert_eq!(
        (count_in(&counts, "exported"), count_in(&counts, "dropped")),
        (0, N),
        "{counts}"
    );
    assert!(
        log.iter().any(|line| line.contains(
            "WARN plughost::plugin: 20 export(s) not delivered within 300ms (flush_timeout): dropped"
        )),
        "{}",
        log.join("\n")
    );
}

/// With JetStream, an importing host that goes away (stops cleanly) and
/// comes back finds what was published meanwhile waiting for its durable
/// consumer: every event reaches it.
#[test]
fn a_durable_consumer_keeps_what_was_published_while_its_host_was_away() {
    let s = Scratch::new("nats-durable");
    let server = NatsServer::start(&s);
    let mut a = Host::start(
        &s,
        "a",
        Config::new().plugin(bridge(
            &server,
            &["orders.>"],
            json!({"export": ["orders.>"], "jetstream": "ORDERS"}),
        )),
    );
    let importer = |file: &str| {
        Host::start(
            &s,
            "b",
            Config::new()
                .plugin(log(&s, "log", &["orders.>"], file))
                .plugin(bridge(
                    &server,
                    &[],
                    json!({"import": ["orders.>"], "jetstream": "ORDERS", "consumer": "b"}),
                )),
        )
    };
    let b = importer("b1.jsonl");
    wait_until("both bridges ready", LIMIT, || a.ready() && b.ready());
    let events = |range: std::ops::Range<u64>| -> String {
        range
            .map(|n| event("orders.created", json!({"n": n})))
            .collect()
    };
    a.send(&events(0..10));
    wait_until("B to get the first events", LIMIT, || {
        b.processed("log") == 10
    });
    let first = b.finish();
    assert_eq!(count_in(&first, "imported"), 10, "{first}");

    // B is away: A goes on publishing, into the stream.
    a.send(&events(10..30));
    wait_until("A's events in the stream", LIMIT, || {
        a.count("exported") == 30
    });
    let b = importer("b2.jsonl");
    wait_until("B to get what it missed", LIMIT, || {
        b.processed("log") >= 20
    });
    let second = b.finish();
    let ca = a.finish();
    assert_eq!(count_in(&ca, "exported"), 30, "{ca}");
    assert_eq!(
        payloads(&s, "b1.jsonl", "orders.created", "bridge"),
        (0..10).collect::<Vec<_>>()
    );
    // Acknowledged before B stopped, the first ten are not sent again.
    assert_eq!(
        payloads(&s, "b2.jsonl", "orders.created", "bridge"),
        (10..30).collect::<Vec<_>>(),
        "{second}"
    );
    assert_eq!(count_in(&second, "imported"), 20, "{second}");
}
