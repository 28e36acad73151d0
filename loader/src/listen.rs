//! The accept loops of the status server and the control socket, and the
//! limits on the status server's connections. An accept loop never ends
//! while the host runs: an accept that fails (no descriptor left, ...) is
//! retried after a pause, and logged once per storm, not once per failure.
//!
//! The status server serves its router with hyper itself: at most
//! `max_connections` at once (more are answered 503 and closed at once, not
//! queued); a client gets `header_timeout` to send a request's headers and
//! may leave a connection silent for `idle_timeout` (between kept-alive
//! requests, or while it sends a body or reads an answer). Time the host
//! takes to answer never counts against the client.

use axum::Router;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// The longest pause between two accepts while they fail.
const MAX_PAUSE: Duration = Duration::from_millis(500);

/// How long a storm (of failed accepts, of refused connections) must be
/// quiet before it is over: one descriptor or slot freed for a moment in
/// the middle of a storm does not end it.
pub const STORM_QUIET: Duration = Duration::from_secs(1);

/// A run of failures reported as two lines, its start and its end, however
/// many failures it holds.
#[derive(Default)]
struct Storm {
    /// The failures so far and the last one, while a storm goes on.
    raging: Option<(u64, Instant)>,
}

impl Storm {
    /// One more failure; true when it begins a storm.
    fn hit(&mut self) -> bool {
        let (failures, began) = match self.raging {
            Some((failures, _)) => (failures + 1, false),
            None => (1, true),
        };
        self.raging = Some((failures, Instant::now()));
        began
    }

    /// A success: the storm's failures, when this ends it.
    fn calm(&mut self) -> Option<u64> {
        let (failures, last) = self.raging?;
        if last.elapsed() < STORM_QUIET {
            return None;
        }
        self.raging = None;
        Some(failures)
    }
}

/// Paces an accept loop through failed accepts and says what happened: one
/// line when a storm of failures begins, one when it is over.
pub struct Retry {
    /// What accepts (`status server`, `control socket`), for the log.
    what: &'static str,
    storm: Storm,
    pause: Duration,
}

impl Retry {
    /// A loop that has not failed yet.
    pub fn new(what: &'static str) -> Retry {
        Retry {
            what,
            storm: Storm::default(),
            pause: Duration::ZERO,
        }
    }

    /// A connection was accepted: the storm, if one raged, is over once no
    /// accept has failed for [`STORM_QUIET`].
    pub fn accepted(&mut self) {
        self.pause = Duration::ZERO;
        if let Some(failures) = self.storm.calm() {
            tracing::info!(
                "{}: accepting connections again (after {failures} failed accept(s))",
                self.what
            );
        }
    }

    /// An accept failed: a client's aborted connection is skipped at once;
    /// anything else (`EMFILE`, `ENFILE`, `ENOBUFS`, ...) waits a moment,
    /// longer each time, before the next try. Only the first failure of a
    /// storm is logged.
    pub async fn failed(&mut self, error: &io::Error) {
        if matches!(
            error.kind(),
            io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionRefused
        ) {
            return;
        }
        if self.storm.hit() {
            tracing::warn!(
                "{}: cannot accept connections: {error}; retrying until it can",
                self.what
            );
        }
        self.pause = (self.pause * 2).clamp(Duration::from_millis(10), MAX_PAUSE);
        tokio::time::sleep(self.pause).await;
    }
}

/// The limits on the status server's connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// What a refused connection reads before it is closed.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
content-length: 51\r\n\
connection: close\r\n\
\r\n\
{\"error\": \"too many connections (max_connections)\"}";

/// Serve `router` on `listener` under `limits`, until the process ends.
pub(crate) async fn serve_http(listener: tokio::net::TcpListener, router: Router, limits: Limits) {
    let service = TowerToHyperService::new(router);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut retry = Retry::new("status server");
    let mut refusals = Storm::default();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                retry.failed(&error).await;
                continue;
            }
        };
        retry.accepted();
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if refusals.hit() {
                tracing::warn!(
                    "status server: {} connections open (max_connections): refusing new ones",
                    limits.max_connections
                );
            }
            // The answer fits any socket buffer: written at once or not at
            // all, never waited for.
            let _ = stream.try_write(REFUSAL);
            continue;
        };
        if let Some(refused) = refusals.calm() {
            tracing::info!("status server: serving new connections again ({refused} refused)");
        }
        let service = service.clone();
        tokio::spawn(async move {
            serve_connection(stream, service, limits).await;
            drop(slot);
        });
    }
}

/// Serve one connection until it ends or a limit closes it.
async fn serve_connection(stream: TcpStream, service: TowerToHyperService<Router>, limits: Limits) {
    let watch = Arc::new(Watch::new());
    let io = TokioIo::new(Watched {
        stream,
        watch: watch.clone(),
    });
    let calls = watch.clone();
    let handler = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let serving = Serving::begin(&calls);
        let request = request.map(|body| Tracked {
            body,
            watch: calls.clone(),
        });
        let answer = hyper::service::Service::call(&service, request);
        async move {
            let response = answer.await;
            drop(serving);
            response
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        // The timeouts are the watch's: hyper's header timer would also run
        // while a kept-alive connection waits for its next request.
        .header_read_timeout(None)
        .serve_connection(io, handler);
    tokio::select! {
        _ = connection => {}
        limit = watch.expired(limits) => tracing::debug!("status server: connection closed by {limit}"),
    }
}

/// What one connection is doing, as its reads, writes and requests report
/// it. Times are nanoseconds since `epoch` (a head start of 0 means none).
struct Watch {
    epoch: Instant,
    /// The last byte read or written.
    last_io: AtomicU64,
    /// When the head of the request being received began (+1), or 0.
    head_since: AtomicU64,
    /// Requests the host is answering.
    serving: AtomicUsize,
    /// Whether the host waits for the client to send more of a body.
    reading_body: AtomicBool,
    /// Woken when a deadline may have come closer.
    closer: tokio::sync::Notify,
}

impl Watch {
    fn new() -> Watch {
        // A new connection owes its first request's head from now on.
        Watch {
            epoch: Instant::now(),
            last_io: AtomicU64::new(0),
            head_since: AtomicU64::new(1),
            serving: AtomicUsize::new(0),
            reading_body: AtomicBool::new(false),
            closer: tokio::sync::Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn read(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let now = self.now();
        self.last_io.store(now, Ordering::Relaxed);
        // The first byte after an answer begins the next request's head.
        if self.serving.load(Ordering::Relaxed) == 0 && self.head_since.load(Ordering::Relaxed) == 0
        {
            self.head_since.store(now + 1, Ordering::Relaxed);
            self.closer.notify_one();
        }
    }

    fn wrote(&self, bytes: usize) {
        if bytes > 0 {
            self.last_io.store(self.now(), Ordering::Relaxed);
        }
    }

    /// Wait until a limit is passed; returns its name.
    async fn expired(&self, limits: Limits) -> &'static str {
        let header = limits.header_timeout.as_nanos() as u64;
        let idle = limits.idle_timeout.as_nanos() as u64;
        loop {
            let now = self.now();
            // Nothing can expire before the host has answered: look again later.
            let mut next = now + idle;
            let head_since = self.head_since.load(Ordering::Relaxed);
            if head_since != 0 {
                let deadline = (head_since - 1).saturating_add(header);
                if now >= deadline {
                    return "header_timeout";
                }
                next = next.min(deadline);
            }
            let waiting_for_client = self.serving.load(Ordering::Relaxed) == 0
                || self.reading_body.load(Ordering::Relaxed);
            if waiting_for_client {
                let deadline = self.last_io.load(Ordering::Relaxed).saturating_add(idle);
                if now >= deadline {
                    return "idle_timeout";
                }
                next = next.min(deadline);
            }
            let sleep = tokio::time::sleep_until(self.epoch + Duration::from_nanos(next));
            tokio::select! {
                () = sleep => {}
                () = self.closer.notified() => {}
            }
        }
    }
}

/// A request the host is answering (from its complete head to its answer's
/// head): the client owes nothing meanwhile, unless the host reads its body.
struct Serving(Arc<Watch>);

impl Serving {
    fn begin(watch: &Arc<Watch>) -> Serving {
        watch.head_since.store(0, Ordering::Relaxed);
        watch.serving.fetch_add(1, Ordering::Relaxed);
        Serving(watch.clone())
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.serving.fetch_sub(1, Ordering::Relaxed);
        self.0.reading_body.store(false, Ordering::Relaxed);
        self.0.last_io.store(self.0.now(), Ordering::Relaxed);
    }
}

/// A request body that tells the watch while the host waits for its bytes.
struct Tracked {
    body: Incoming,
    watch: Arc<Watch>,
}

impl Body for Tracked {
    type Data = hyper::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        let waiting = polled.is_pending();
        if self.watch.reading_body.swap(waiting, Ordering::Relaxed) != waiting && waiting {
            self.watch.closer.notify_one();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The connection's socket, reporting its traffic to the watch.
struct Watched {
    stream: TcpStream,
    watch: Arc<Watch>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        self.watch.read(buf.filled().len() - before);
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.watch.wrote(n);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            self.watch.wrote(n);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
