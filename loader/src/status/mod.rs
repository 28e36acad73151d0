//! The `[status]` HTTP server (RoadRunner's status plugin, extended):
//! `/health`, `/ready` (both with `?plugin=NAME`), `/jobs`, `/plugins`,
//! `/metrics`, plugin routes and `POST /events`. Checks and route calls run
//! on each plugin's own thread through its control lane; the handlers wait
//! for them without holding a thread, so no request load grows the host's
//! threads. While the host shuts down, `/health` and `/ready` answer
//! `unavailable_status_code`. Connections and their limits: [`crate::listen`].

mod metrics;

use crate::config::StatusConfig;
use crate::host::Host;
use crate::supervisor::RouteAnswer;
use crate::text::Escaped;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath};
use axum::extract::{Query, State as Shared};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use prometheus_client::registry::Registry;
use serde::Deserialize;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// Publishes from `POST /events` running at once: under the `block` policy
/// one waits for room in a full mailbox, on a thread; more wait their turn.
const INGEST_AT_ONCE: usize = 16;

/// Distinct things (plugin and header, plugin and status) logged about
/// plugins' answers; past it, new ones are not logged.
const WARNED_MAX: usize = 4096;

struct StatusState {
    host: Host,
    config: StatusConfig,
    registry: Registry,
    lanes: Lanes,
    ingest: Semaphore,
    /// What was already logged about plugins' answers (each thing once).
    warned: Mutex<HashSet<(String, String)>>,
}

impl StatusState {
    /// Log `message` about `plugin`'s answers, the first time for `what`.
    fn warn_once(&self, plugin: &str, what: &str, message: impl FnOnce() -> String) {
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        if warned.len() >= WARNED_MAX || !warned.insert((plugin.to_owned(), what.to_owned())) {
            return;
        }
        drop(warned);
        tracing::warn!(plugin = %Escaped(plugin), "{}", message());
    }
}

/// The route calls of each instance. One at a time is on its control lane
/// (a probe waits behind at most that one); the rest wait here, without a
/// thread, up to `route_max_pending` an instance.
#[derive(Default)]
struct Lanes(Mutex<HashMap<String, Arc<Lane>>>);

struct Lane {
    /// Requests for this instance not yet answered (the one on its lane too).
    pending: AtomicUsize,
    /// One permit: the route call on the instance's lane holds it until the
    /// instance answers, even when its request gave up waiting.
    turn: Arc<Semaphore>,
}

impl Lanes {
    /// The lane of instance `name` (an instance the host knows).
    fn of(&self, name: &str) -> Arc<Lane> {
        let mut lanes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        lanes
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(Lane {
                    pending: AtomicUsize::new(0),
                    turn: Arc::new(Semaphore::new(1)),
                })
            })
            .clone()
    }
}

/// A request counted in its lane's `pending` until it is answered.
struct Pending(Arc<Lane>);

impl Pending {
    fn admit(lane: Arc<Lane>, max: usize) -> Option<Pending> {
        let admitted = lane
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        admitted.then(|| Pending(lane))
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::AcqRel);
    }
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
pub async fn serve(host: Host, config: StatusConfig, listener: tokio::net::TcpListener) {
    let registry = metrics::registry(&host);
    let ingest_limit = config.ingest_max_bytes;
    let limits = crate::listen::Limits {
        header_timeout: config.header_timeout,
        idle_timeout: config.idle_timeout,
        max_connections: config.max_connections,
    };
    let state = Arc::new(StatusState {
        host,
        config,
        registry,
        lanes: Lanes::default(),
        ingest: Semaphore::new(INGEST_AT_ONCE),
        warned: Mutex::default(),
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
    crate::listen::serve_http(listener, app, limits).await
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
    let reports = state
        .host
        .health_async(timeout, filter.plugin.as_deref())
        .await;
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
    let reports = state
        .host
        .readiness_async(timeout, filter.plugin.as_deref())
        .await;
    let ready = reports.iter().all(|r| r.ready);
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(code, json!({"ready": ready, "plugins": reports}))
}

async fn jobs(Shared(state): Shared<Arc<StatusState>>) -> Response {
    let jobs = state.host.jobs_async(state.config.check_timeout).await;
    json_response(StatusCode::OK, json!(jobs))
}

async fn plugins(Shared(state): Shared<Arc<StatusState>>) -> Response {
    json_response(StatusCode::OK, json!(state.host.report()))
}

async fn metrics(Shared(state): Shared<Arc<StatusState>>) -> Response {
    match metrics::encode(&state.registry) {
        Some(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// `ANY /plugins/NAME/...`: forwarded to that plugin's thread; 404 when it
/// serves no such route, 503 at once when `route_max_pending` requests
/// already wait for it, 504 when it does not answer within `route_timeout`.
async fn plugin_route(
    Shared(state): Shared<Arc<StatusState>>,
    UrlPath(params): UrlPath<Vec<(String, String)>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let deadline = tokio::time::Instant::now() + state.config.route_timeout;
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
    let not_found = || {
        json_response(
            StatusCode::NOT_FOUND,
            json!({"error": "no such plugin route"}),
        )
    };
    let timed_out = || {
        json_response(
            StatusCode::GATEWAY_TIMEOUT,
            json!({"error": "the plugin did not answer in time"}),
        )
    };
    // A tunnel is no plugin's business (hyper would frame a 2xx answer to
    // it as raw bytes).
    if method == Method::CONNECT {
        return json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"error": "CONNECT is not forwarded to plugins"}),
        );
    }
    // Checked before a lane is made: a lane exists only for a real instance.
    if !state.host.supervisor.serves(&name, &request.path) {
        return not_found();
    }
    let max = state.config.route_max_pending;
    let Some(pending) = Pending::admit(state.lanes.of(&name), max) else {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": format!("{max} requests already wait for this plugin (route_max_pending)")}),
        );
    };
    let turn = pending.0.turn.clone().acquire_owned();
    let Ok(Ok(turn)) = tokio::time::timeout_at(deadline, turn).await else {
        return timed_out();
    };
    let (reply_tx, reply_rx) = tokio::sync::oneshot::channel::<RouteAnswer>();
    let reply = Box::new(move |answer| {
        // The next call takes the lane once this one is answered.
        drop(turn);
        let _ = reply_tx.send(answer);
    });
    if !state.host.supervisor.route(&name, request, reply) {
        return not_found();
    }
    let answer = match tokio::time::timeout_at(deadline, reply_rx).await {
        Ok(Ok(Ok(Some(response)))) => plugin_response(&state, &name, response),
        Ok(Ok(Ok(None))) => not_found(),
        Ok(Ok(Err(error))) => json_response(StatusCode::BAD_GATEWAY, json!({"error": error})),
        // The order was dropped unanswered: the instance stopped meanwhile.
        Ok(Err(_)) => json_response(
            StatusCode::BAD_GATEWAY,
            json!({"error": "the plugin stopped before it answered"}),
        ),
        Err(_) => timed_out(),
    };
    drop(pending);
    answer
}

/// Whether `name` is a header only the host may set: framing, and the
/// hop-by-hop headers of RFC 9110 section 7.6.1 (and their old forms).
fn host_only(name: &HeaderName) -> bool {
    let name = name.as_str();
    matches!(
        name,
        "content-length"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "upgrade"
            | "te"
            | "trailer"
            | "trailers"
    ) || name.starts_with("proxy-")
}

/// The HTTP answer made of a plugin's response. The host alone frames it:
/// a plugin's framing and hop-by-hop headers are dropped, as are invalid
/// headers, each logged once per plugin and header; a status no final
/// answer can have (outside 200 to 599) becomes 502, logged once per
/// plugin and status.
fn plugin_response(
    state: &StatusState,
    plugin: &str,
    response: plughost_api::HttpResponse,
) -> Response {
    let status = match StatusCode::from_u16(response.status) {
        Ok(status) if (200..=599).contains(&response.status) => status,
        _ => {
            let code = response.status;
            state.warn_once(plugin, &format!("status {code}"), || {
                format!("route answered status {code}, which is not a final HTTP status: sent 502 instead")
            });
            return json_response(
                StatusCode::BAD_GATEWAY,
                json!({"error": format!("the plugin answered an invalid status ({code})")}),
            );
        }
    };
    let mut headers = HeaderMap::new();
    for (name, value) in response.headers {
        let parsed_name = HeaderName::from_bytes(name.as_bytes());
        let parsed_value = HeaderValue::from_bytes(value.as_bytes());
        match (parsed_name, parsed_value) {
            (Ok(name), _) if host_only(&name) => {
                state.warn_once(plugin, name.as_str(), || {
                    format!("route set the header `{name}`, which only the host sets: dropped")
                });
            }
            (Ok(name), Ok(value)) => {
                headers.append(name, value);
            }
            (Ok(name), Err(_)) => {
                state.warn_once(plugin, name.as_str(), || {
                    format!(
                        "route set the header `{name}` to an invalid value `{}`: dropped",
                        Escaped(&value)
                    )
                });
            }
            (Err(_), _) => {
                state.warn_once(plugin, &name, || {
                    format!(
                        "route set a header with an invalid name `{}`: dropped",
                        Escaped(&name)
                    )
                });
            }
        }
    }
    let mut answer = Response::new(axum::body::Body::from(response.body));
    *answer.status_mut() = status;
    *answer.headers_mut() = headers;
    answer
}

/// `POST /events/TOPIC` (with `[status] ingest = true`): publish the body,
/// of the content type its `Content-Type` names (`application/json`: json,
/// `text/*`: text, anything else or none: bytes). A body that is not what
/// its type says is refused (400), as is text in a charset other than
/// UTF-8 (415).
async fn ingest(
    Shared(state): Shared<Arc<StatusState>>,
    UrlPath(topic): UrlPath<String>,
    headers: HeaderMap,
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
    // A header that is not ASCII text names no type: bytes.
    let header = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let content = match plughost_api::ContentType::from_mime(header) {
        Ok(content) => content,
        Err(e) => {
            let error = json!({"error": e.to_string()});
            return json_response(StatusCode::UNSUPPORTED_MEDIA_TYPE, error);
        }
    };
    // Under the `block` policy a publish waits for room on a thread: only
    // so many at once, the rest wait here without one.
    let Ok(_turn) = state.ingest.acquire().await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let host = state.host.clone();
    let published = tokio::task::spawn_blocking(move || {
        let payload = crate::event::entering(body.to_vec(), content);
        host.publish_typed(crate::intake::Entry::Http, &topic, payload, content)
    })
    .await;
    use crate::intake::PublishError;
    let error = match published {
        Ok(Ok(id)) => {
            let answer = json!({"id": id, "content_type": content.as_str()});
            return json_response(StatusCode::OK, answer);
        }
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
