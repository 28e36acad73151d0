//! The `[status]` HTTP server (RoadRunner's status plugin, extended):
//! `/health`, `/ready` (both with `?plugin=NAME`), `/jobs`, `/plugins`,
//! `/metrics`. Checks run on each plugin's own thread through its control
//! lane; the handlers wait for them off the async runtime. While the host
//! shuts down, `/health` and `/ready` answer `unavailable_status_code`.

use crate::config::StatusConfig;
use crate::host::Host;
use crate::instance::{HANDLER_BUCKETS, State};
use crate::supervisor::RouteOutcome;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath};
use axum::extract::{Query, State as Shared};
use axum::http::{HeaderMap, Method, Uri};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
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
    let ingest_limit = config.ingest_max_bytes;
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
        .route("/plugins/{name}", any(plugin_route))
        .route("/plugins/{name}/{*rest}", any(plugin_route))
        .route(
            "/events/{topic}",
            post(ingest).layer(DefaultBodyLimit::max(ingest_limit)),
        )
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
    // Degraded keeps 200: the plugin still serves, and taking the whole host
    // out of a load balancer for it would turn a partial fault into an
    // outage. The body says so, for whoever looks.
    let worst = |status: &str| reports.iter().any(|r| r.status == status);
    let (code, status) = if worst("failing") {
        (StatusCode::SERVICE_UNAVAILABLE, "failing")
    } else if worst("degraded") {
        (StatusCode::OK, "degraded")
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

/// `ANY /plugins/NAME/...`: forwarded to that plugin's thread; 404 when it
/// serves no such route, 504 when it does not answer within `route_timeout`.
async fn plugin_route(
    Shared(state): Shared<Arc<StatusState>>,
    UrlPath(params): UrlPath<Vec<(String, String)>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let name = params
        .iter()
        .find(|(k, _)| k == "name")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let rest = params
        .iter()
        .find(|(k, _)| k == "rest")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let request = plughost_api::HttpRequest {
        method: method.to_string(),
        path: format!("/{rest}"),
        query: uri.query().unwrap_or_default().to_owned(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    };
    let timeout = state.config.route_timeout;
    let host = state.host.clone();
    let outcome = tokio::task::spawn_blocking(move || host.route(&name, request, timeout)).await;
    match outcome {
        Ok(RouteOutcome::Answer(response)) => {
            let mut builder = Response::builder()
                .status(StatusCode::from_u16(response.status).unwrap_or(StatusCode::OK));
            for (k, v) in &response.headers {
                builder = builder.header(k, v);
            }
            builder
                .body(axum::body::Body::from(response.body))
                .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
        }
        Ok(RouteOutcome::NotFound) => json_response(
            StatusCode::NOT_FOUND,
            json!({"error": "no such plugin route"}),
        ),
        Ok(RouteOutcome::Failed(error)) => {
            json_response(StatusCode::BAD_GATEWAY, json!({"error": error}))
        }
        Ok(RouteOutcome::Timeout) | Err(_) => json_response(
            StatusCode::GATEWAY_TIMEOUT,
            json!({"error": "the plugin did not answer in time"}),
        ),
    }
}

/// `POST /events/TOPIC` (with `[status] ingest = true`): publish the body.
async fn ingest(
    Shared(state): Shared<Arc<StatusState>>,
    UrlPath(topic): UrlPath<String>,
    body: Bytes,
) -> Response {
    if !state.config.ingest {
        return json_response(
            StatusCode::NOT_FOUND,
            json!({"error": "ingest is off ([status] ingest = true turns it on)"}),
        );
    }
    if state.host.is_shutting_down() {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "shutting down"}),
        );
    }
    let host = state.host.clone();
    let published = tokio::task::spawn_blocking(move || {
        host.publish_from(crate::intake::Entry::Http, &topic, body.to_vec())
    })
    .await;
    use crate::intake::PublishError;
    let error = match published {
        Ok(Ok(id)) => return json_response(StatusCode::OK, json!({"id": id})),
        Ok(Err(error)) => error,
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let code = match &error {
        PublishError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        PublishError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        PublishError::Reserved { .. } => StatusCode::FORBIDDEN,
        _ => StatusCode::BAD_REQUEST,
    };
    json_response(code, json!({"error": error.to_string()}))
}

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
            "1 while the instance runs (0 while a handler is stuck)",
            None,
            MetricType::Gauge,
        )?;
        for slot in &slots {
            let up = i64::from(slot.state() == State::Running && !slot.is_stuck());
            ConstGauge::new(up).encode(metric.encode_family(&[("plugin", &*slot.name)])?)?;
        }
        let mut metric = encoder.encode_descriptor(
            "plughost_events_refused",
            "Events refused where they entered, by entry point and reason",
            None,
            MetricType::Counter,
        )?;
        for refused in self.host.inner.bus.refusals.all() {
            ConstCounter::new(refused.count).encode(
                metric.encode_family(&[("entry", refused.entry), ("reason", refused.reason)])?,
            )?;
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
