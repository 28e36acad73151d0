//! The `[status]` HTTP server (RoadRunner's status plugin, extended):
//! `/health`, `/ready` (both with `?plugin=NAME`), `/jobs`, `/plugins`,
//! `/metrics`. Checks run on each plugin's own thread through its control
//! lane; the handlers wait for them off the async runtime. While the host
//! shuts down, `/health` and `/ready` answer `unavailable_status_code`.

use crate::config::StatusConfig;
use crate::host::Host;
use crate::instance::{HANDLER_BUCKETS, State};
use axum::Router;
use axum::extract::{Query, State as Shared};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;

struct StatusState {
    host: Host,
    config: StatusConfig,
    registry: Registry,
}

#[derive(Deserialize)]
struct Filter {
    plugin: Option<String>,
}

/// Bind the configured address (loopback unless told otherwise).
pub async fn bind(config: &StatusConfig) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(config.address).await
}

/// Serve the status endpoints for `host` on `listener` until the process ends.
pub async fn serve(
    host: Host,
    config: StatusConfig,
    listener: tokio::net::TcpListener,
) -> std::io::Result<()> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Collector { host: host.clone() }));
    let state = Arc::new(StatusState {
        host,
        config,
        registry,
    });
    let app = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/jobs", get(jobs))
        .route("/plugins", get(plugins))
        .route("/metrics", get(metrics))
        .with_state(state);
    axum::serve(listener, app).await
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The answer while shutting down, or for an unknown `?plugin=`.
fn precheck(state: &StatusState, filter: &Filter) -> Option<Response> {
    if state.host.is_shutting_down() {
        let code = StatusCode::from_u16(state.config.unavailable_status_code)
            .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return Some(json_response(
            code,
            json!({"status": "unavailable", "reason": "shutting down", "plugins": []}),
        ));
    }
    let name = filter.plugin.as_deref()?;
    if state.host.report().iter().any(|r| r.name == name) {
        return None;
    }
    Some(json_response(
        StatusCode::NOT_FOUND,
        json!({"error": format!("no plugin instance named `{name}`")}),
    ))
}

async fn health(Shared(state): Shared<Arc<StatusState>>, Query(filter): Query<Filter>) -> Response {
    if let Some(response) = precheck(&state, &filter) {
        return response;
    }
    let timeout = state.config.check_timeout;
    let host = state.host.clone();
    let reports =
        tokio::task::spawn_blocking(move || host.health(timeout, filter.plugin.as_deref()))
            .await
            .unwrap_or_default();
    let failing = reports.iter().any(|r| r.status == "failing");
    let (code, status) = if failing {
        (StatusCode::SERVICE_UNAVAILABLE, "failing")
    } else {
        (StatusCode::OK, "ok")
    };
    json_response(code, json!({"status": status, "plugins": reports}))
}

async fn ready(Shared(state): Shared<Arc<StatusState>>, Query(filter): Query<Filter>) -> Response {
    if let Some(response) = precheck(&state, &filter) {
        return response;
    }
    let timeout = state.config.check_timeout;
    let host = state.host.clone();
    let reports =
        tokio::task::spawn_blocking(move || host.readiness(timeout, filter.plugin.as_deref()))
            .await
            .unwrap_or_default();
    let ready = reports.iter().all(|r| r.ready);
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(code, json!({"ready": ready, "plugins": reports}))
}

async fn jobs(Shared(state): Shared<Arc<StatusState>>) -> Response {
    let timeout = state.config.check_timeout;
    let host = state.host.clone();
    let jobs = tokio::task::spawn_blocking(move || host.jobs(timeout))
        .await
        .unwrap_or_default();
    json_response(StatusCode::OK, json!(jobs))
}

async fn plugins(Shared(state): Shared<Arc<StatusState>>) -> Response {
    json_response(StatusCode::OK, json!(state.host.report()))
}

async fn metrics(Shared(state): Shared<Arc<StatusState>>) -> Response {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Picks one count out of an instance's counts.
type CountOf = fn(&crate::instance::Counts) -> u64;

/// Reads the instances' counters at scrape time: counting itself takes no
/// lock and no registry on the event path.
#[derive(Debug)]
struct Collector {
    host: Host,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host").finish_non_exhaustive()
    }
}

impl prometheus_client::collector::Collector for Collector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let slots = self.host.slots();
        let counters: [(&str, &str, CountOf); 4] = [
            (
                "plughost_events_received",
                "Events routed to the instance",
                |c| c.received,
            ),
            (
                "plughost_events_processed",
                "Events its handler finished without error",
                |c| c.processed,
            ),
            (
                "plughost_events_dropped",
                "Events dropped by overflow, failure or shutdown",
                |c| c.dropped,
            ),
            (
                "plughost_events_failed",
                "Events whose handler returned an error or panicked",
                |c| c.failed,
            ),
        ];
        let counts: Vec<_> = slots
            .iter()
            .map(|s| (s.name.to_string(), s.counts()))
            .collect();
        for (name, help, value) in counters {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (plugin, c) in &counts {
                ConstCounter::new(value(c))
                    .encode(metric.encode_family(&[("plugin", plugin.as_str())])?)?;
            }
        }
        let mut metric = encoder.encode_descriptor(
            "plughost_plugin_restarts",
            "Restarts of the instance",
            None,
            MetricType::Counter,
        )?;
        for slot in &slots {
            ConstCounter::new(slot.restarts.load(Ordering::Acquire))
                .encode(metric.encode_family(&[("plugin", &*slot.name)])?)?;
        }
        let mut metric = encoder.encode_descriptor(
            "plughost_queue_depth",
            "Events waiting in the mailbox",
            None,
            MetricType::Gauge,
        )?;
        for slot in &slots {
            ConstGauge::new(slot.rx.len() as i64)
                .encode(metric.encode_family(&[("plugin", &*slot.name)])?)?;
        }
        let mut metric = encoder.encode_descriptor(
            "plughost_plugin_up",
            "1 while the instance runs",
            None,
            MetricType::Gauge,
        )?;
        for slot in &slots {
            let up = i64::from(slot.state() == State::Running);
            ConstGauge::new(up).encode(metric.encode_family(&[("plugin", &*slot.name)])?)?;
        }
        let mut metric = encoder.encode_descriptor(
            "plughost_handler_seconds",
            "Time spent in on_event",
            None,
            MetricType::Histogram,
        )?;
        for slot in &slots {
            let (sum, count, buckets) = slot.stats.consumer.handler.snapshot();
            debug_assert_eq!(buckets.len(), HANDLER_BUCKETS.len() + 1);
            metric
                .encode_family(&[("plugin", &*slot.name)])?
                .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                sum, count, &buckets, None,
            )?;
        }
        Ok(())
    }
}
