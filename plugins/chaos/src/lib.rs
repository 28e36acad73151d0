//! `chaos`, for tests: misbehaves exactly as told.
//!
//! - `panic_on`: a topic pattern; events matching it make `on_event` panic;
//! - `panic_every`: panic on every n-th event this instance receives;
//! - `sleep_ms`: sleep this long in every `on_event` (with `sleep_on`, a
//!   topic pattern: only on the events matching it);
//! - `wait_for`: a path; on the events matching `sleep_on` (every event
//!   without it), wait until that file exists (at most a minute), so a test
//!   can hold the instance while it fills its mailbox;
//! - `log_events`: log `took <topic> <payload>` as each event arrives, before
//!   sleeping, so a test sees when an event has left the mailbox;
//!   `log_sizes`: log `took <topic> <n> bytes` instead;
//! - `log_bytes`: log a line of this many bytes (`x`) on every event;
//! - `publish_topic` + `publish_bytes`: publish that many bytes on that topic
//!   on every event; a refused publish fails the event with its error;
//! - `http_body_bytes`: the routes answer with a body of this many bytes
//!   instead of the echo;
//! - `error_on`: a topic pattern; events matching it make `on_event` return
//!   an error (the event counts as failed, the instance goes on);
//! - `fail_init`: `init` returns an error; `fail_init_if_exists`: a path;
//!   `init` returns an error while that file exists (so a test can make a
//!   restart's `init` fail after a first start that succeeded);
//! - `sleep_in_init_ms`: `init` sleeps this long first; `hang_in_init`:
//!   `init` never returns;
//! - `panic_in_init`, `panic_on_stop`, `panic_in_tick`, `panic_in_route`:
//!   panic there (`tick` runs with the instance's `tick_interval`; a route is
//!   one of `routes`); `hang_in_stop`: `stop` never returns;
//! - `forward_to`: republish every event's payload on this topic, at most
//!   `forward_limit` times in all (default: no limit); `forward_copies`
//!   times per event (default 1);
//! - `publisher_threads`: in `init`, start this many threads of its own,
//!   each publishing `publisher_count` events `{"thread": t, "n": n}` on
//!   `publisher_topic` through a `Publisher` (a refused publish ends the
//!   thread); `publisher_outlive`: the threads then go on publishing
//!   `{"thread": t, "late": true}` every 5 ms, never joined (a careless
//!   plugin), until the host refuses; each refusal is written to
//!   `publisher_refusal_path` (one line per thread);
//! - `health` (`ok` | `degraded` | `failing`), `ready` (bool), `health_delay_ms`:
//!   what health and readiness checks answer, and how long they take;
//! - `jobs`: pipeline names to report in job reports;
//! - `routes`: HTTP routes it serves, answering 200 with the request echoed;
//! - `call_on` / `cast_on`: topic patterns; a matching event's payload is a
//!   host command (JSON) to `call` (the answer is published on `chaos.answer`)
//!   or `cast`; `call_pad`: add a field `pad` of this many bytes to the
//!   command first (to make it too large).

use plughost_api::topic::Pattern;
use plughost_api::{
    Context, Event, Health, HttpRequest, HttpResponse, JobReport, Plugin, Readiness, Result,
    export_plugin,
};
use serde::Deserialize;
use std::time::Duration;

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    panic_on: Option<String>,
    panic_every: u64,
    sleep_ms: u64,
    sleep_on: Option<String>,
    wait_for: Option<std::path::PathBuf>,
    log_events: bool,
    log_sizes: bool,
    log_bytes: usize,
    publish_topic: Option<String>,
    publish_bytes: usize,
    http_body_bytes: Option<usize>,
    error_on: Option<String>,
    fail_init: bool,
    fail_init_if_exists: Option<std::path::PathBuf>,
    sleep_in_init_ms: u64,
    hang_in_init: bool,
    panic_in_init: bool,
    panic_on_stop: bool,
    panic_in_tick: bool,
    panic_in_route: bool,
    hang_in_stop: bool,
    forward_to: Option<String>,
    forward_limit: Option<u64>,
    forward_copies: Option<u64>,
    publisher_threads: u64,
    publisher_topic: Option<String>,
    publisher_count: u64,
    publisher_outlive: bool,
    publisher_refusal_path: Option<std::path::PathBuf>,
    health: Option<HealthConfig>,
    ready: Option<bool>,
    health_delay_ms: u64,
    jobs: Vec<String>,
    routes: Vec<String>,
    call_on: Option<String>,
    cast_on: Option<String>,
    call_pad: usize,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum HealthConfig {
    Ok,
    Degraded,
    Failing,
}

struct Chaos {
    config: Config,
    sleep_on: Option<Pattern>,
    panic_on: Option<Pattern>,
    error_on: Option<Pattern>,
    call_on: Option<Pattern>,
    cast_on: Option<Pattern>,
    forwards_left: u64,
    seen: u64,
}

impl Chaos {
    /// The host command an event's payload holds, padded by `call_pad`.
    fn command(&self, event: &Event<'_>) -> Result<serde_json::Value> {
        let mut command: serde_json::Value = event.json()?;
        if self.config.call_pad > 0 {
            command["pad"] = "x".repeat(self.config.call_pad).into();
        }
        Ok(command)
    }
}

/// A thread of the plugin's own publishing through a `Publisher` (see
/// `publisher_threads` in the module docs).
fn start_publisher(config: &Config, thread: u64, ctx: &Context) -> Result<()> {
    let publisher = ctx.publisher();
    let topic = config
        .publisher_topic
        .clone()
        .ok_or("publisher_threads needs publisher_topic")?;
    let (count, outlive) = (config.publisher_count, config.publisher_outlive);
    let refusals = config.publisher_refusal_path.clone();
    let refused = move |refusal: String| {
        if let Some(path) = &refusals {
            use std::io::Write as _;
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path);
            let _ = file.and_then(|mut f| f.write_all(format!("{refusal}\n").as_bytes()));
        }
    };
    std::thread::Builder::new()
        .name(format!("chaos-publisher-{thread}"))
        .spawn(move || {
            for n in 0..count {
                let event = serde_json::json!({"thread": thread, "n": n});
                if let Err(e) = publisher.publish_json(&topic, &event) {
                    return refused(e.to_string());
                }
            }
            if !outlive {
                return;
            }
            let late = serde_json::json!({"thread": thread, "late": true});
            loop {
                std::thread::sleep(Duration::from_millis(5));
                if let Err(e) = publisher.publish_json(&topic, &late) {
                    return refused(e.to_string());
                }
            }
        })?;
    Ok(())
}

impl Plugin for Chaos {
    type Config = Config;

    fn init(config: Config, ctx: &Context) -> Result<Self> {
        std::thread::sleep(Duration::from_millis(config.sleep_in_init_ms));
        if config.hang_in_init {
            loop {
                std::thread::park();
            }
        }
        if config.panic_in_init {
            panic!("chaos: told to panic in init");
        }
        if config.fail_init {
            return Err("fail_init is set".into());
        }
        if let Some(path) = config.fail_init_if_exists.as_ref().filter(|p| p.exists()) {
            return Err(format!("{} exists (fail_init_if_exists)", path.display()).into());
        }
        for thread in 0..config.publisher_threads {
            start_publisher(&config, thread, ctx)?;
        }
        Ok(Chaos {
            sleep_on: config.sleep_on.as_deref().map(Pattern::parse).transpose()?,
            panic_on: config.panic_on.as_deref().map(Pattern::parse).transpose()?,
            error_on: config.error_on.as_deref().map(Pattern::parse).transpose()?,
            call_on: config.call_on.as_deref().map(Pattern::parse).transpose()?,
            cast_on: config.cast_on.as_deref().map(Pattern::parse).transpose()?,
            forwards_left: config.forward_limit.unwrap_or(u64::MAX),
            config,
            seen: 0,
        })
    }

    fn on_event(&mut self, event: &Event<'_>, ctx: &Context) -> Result<()> {
        self.seen += 1;
        if self.config.log_events {
            ctx.info(format!(
                "took {} {}",
                event.topic(),
                String::from_utf8_lossy(event.payload())
            ));
        }
        if self.config.log_sizes {
            ctx.info(format!(
                "took {} {} bytes",
                event.topic(),
                event.payload().len()
            ));
        }
        if self.config.log_bytes > 0 {
            ctx.info("x".repeat(self.config.log_bytes));
        }
        let sleeps = self
            .sleep_on
            .as_ref()
            .is_none_or(|p| p.matches(event.topic()));
        if self.config.sleep_ms > 0 && sleeps {
            std::thread::sleep(Duration::from_millis(self.config.sleep_ms));
        }
        if let Some(path) = self.config.wait_for.as_ref().filter(|_| sleeps) {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while !path.exists() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if let Some(topic) = &self.config.publish_topic {
            ctx.publish(topic, vec![0u8; self.config.publish_bytes])?;
        }
        if self.config.panic_every > 0 && self.seen.is_multiple_of(self.config.panic_every) {
            panic!(
                "chaos: told to panic on every {}th event",
                self.config.panic_every
            );
        }
        if self
            .panic_on
            .as_ref()
            .is_some_and(|p| p.matches(event.topic()))
        {
            panic!("chaos: told to panic on {}", event.topic());
        }
        if self
            .error_on
            .as_ref()
            .is_some_and(|p| p.matches(event.topic()))
        {
            return Err(format!("chaos: told to fail on {}", event.topic()).into());
        }
        if self
            .call_on
            .as_ref()
            .is_some_and(|p| p.matches(event.topic()))
        {
            let answer = match ctx.call(&self.command(event)?) {
                Ok(result) => serde_json::json!({"ok": true, "result": result}),
                Err(error) => serde_json::json!({"ok": false, "error": error.to_string()}),
            };
            ctx.publish_json("chaos.answer", &answer)?;
        }
        if self
            .cast_on
            .as_ref()
            .is_some_and(|p| p.matches(event.topic()))
        {
            ctx.cast(&self.command(event)?);
        }
        if let Some(topic) = &self.config.forward_to {
            for _ in 0..self.config.forward_copies.unwrap_or(1) {
                if self.forwards_left == 0 {
                    break;
                }
                self.forwards_left -= 1;
                ctx.publish_typed(topic, event.bytes(), event.content_type())?;
            }
        }
        Ok(())
    }

    fn stop(&mut self, _ctx: &Context) -> Result<()> {
        if self.config.panic_on_stop {
            panic!("chaos: told to panic on stop");
        }
        if self.config.hang_in_stop {
            loop {
                std::thread::park();
            }
        }
        Ok(())
    }

    fn health(&mut self, _ctx: &Context) -> Option<Health> {
        let health = self.config.health?;
        std::thread::sleep(Duration::from_millis(self.config.health_delay_ms));
        Some(match health {
            HealthConfig::Ok => Health::ok(),
            HealthConfig::Degraded => Health::degraded("chaos: told to be degraded"),
            HealthConfig::Failing => Health::failing("chaos: told to be failing"),
        })
    }

    fn ready(&mut self, _ctx: &Context) -> Option<Readiness> {
        let ready = self.config.ready?;
        std::thread::sleep(Duration::from_millis(self.config.health_delay_ms));
        let message = if ready {
            String::new()
        } else {
            "chaos: told not to be ready".to_owned()
        };
        Some(Readiness { ready, message })
    }

    fn tick(&mut self, _ctx: &Context) -> Result<()> {
        if self.config.panic_in_tick {
            panic!("chaos: told to panic in tick");
        }
        Ok(())
    }

    fn routes(&self) -> Vec<String> {
        self.config.routes.clone()
    }

    fn http(&mut self, request: &HttpRequest, _ctx: &Context) -> Option<HttpResponse> {
        if self.config.panic_in_route {
            panic!("chaos: told to panic in route {}", request.path);
        }
        if let Some(n) = self.config.http_body_bytes {
            return Some(HttpResponse {
                status: 200,
                headers: Vec::new(),
                body: vec![b'x'; n],
            });
        }
        let echo = serde_json::json!({
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "body": String::from_utf8_lossy(&request.body),
        });
        Some(HttpResponse::json(&echo))
    }

    fn jobs(&mut self, _ctx: &Context) -> Option<Vec<JobReport>> {
        if self.config.jobs.is_empty() {
            return None;
        }
        let report = |pipeline: &String| JobReport {
            pipeline: pipeline.clone(),
            priority: 10,
            ready: true,
            queue: format!("{pipeline}-queue"),
            active: self.seen as i64,
            driver: "memory".to_owned(),
            ..JobReport::default()
        };
        Some(self.config.jobs.iter().map(report).collect())
    }
}

export_plugin!(Chaos);
