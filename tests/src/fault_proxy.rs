//! A fault-injecting HTTP proxy for tests, on an ephemeral loopback port in front of a real
//! server (e.g. the S3 server): it forwards every request, except that every `every`-th one
//! fails in turn with a 503, a dropped connection (the client sees a reset), or a stall longer
//! than the client's timeout; and it can be switched down (every connection dropped) to play a
//! store that went away.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

/// What the proxy injects.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    /// One request in this many fails (0: none).
    pub every: u64,
    /// How long a stalled request hangs before it is answered with a 503.
    pub stall: Duration,
}

/// Counts of what the proxy did.
#[derive(Debug, Default)]
pub struct FaultCounts {
    /// Requests received.
    pub requests: AtomicU64,
    /// Answered 503 without forwarding.
    pub unavailable: AtomicU64,
    /// Connections dropped without an answer.
    pub dropped: AtomicU64,
    /// Requests stalled.
    pub stalled: AtomicU64,
}

/// A running proxy; it stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    down: Arc<AtomicBool>,
    counts: Arc<FaultCounts>,
    shutdown: Option<oneshot::Sender<()>>,
}

/// The dropped connection: the service fails, and hyper closes the connection unanswered.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the fault proxy")
    }
}

impl std::error::Error for Dropped {}

struct Shared {
    upstream: String,
    faults: Faults,
    down: Arc<AtomicBool>,
    counts: Arc<FaultCounts>,
    http: reqwest::Client,
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream` (`http://host:port`).
    pub async fn start(upstream: &str, faults: Faults) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|err| panic!("fault proxy cannot bind a loopback port: {err}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|err| panic!("fault proxy has no local address: {err}"));
        let down = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(FaultCounts::default());
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            faults,
            down: down.clone(),
            counts: counts.clone(),
            http: reqwest::Client::new(),
        });
        let (shutdown, mut stop) = oneshot::channel::<()>();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = &mut stop => return,
                };
                let Ok((stream, _)) = accepted else { continue };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let shared = shared.clone();
                        async move { shared.handle(request).await }
                    });
                    // A dropped connection ends here with an error, as intended.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            down,
            counts,
            shutdown: Some(shutdown),
        }
    }

    /// The endpoint to give the client instead of the upstream's.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Takes the store down (every connection dropped) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// What the proxy did so far.
    pub fn counts(&self) -> &FaultCounts {
        &self.counts
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

impl Shared {
    async fn handle(&self, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Dropped> {
        let number = self.counts.requests.fetch_add(1, Ordering::SeqCst) + 1;
        if self.down.load(Ordering::SeqCst) {
            self.counts.dropped.fetch_add(1, Ordering::SeqCst);
            return Err(Dropped);
        }
        let every = self.faults.every;
        if every > 0 && number.is_multiple_of(every) {
            match (number / every) % 3 {
                0 => {
                    self.counts.unavailable.fetch_add(1, Ordering::SeqCst);
                    return Ok(answer(StatusCode::SERVICE_UNAVAILABLE, "injected 503"));
                }
                1 => {
                    self.counts.dropped.fetch_add(1, Ordering::SeqCst);
                    return Err(Dropped);
                }
                _ => {
                    self.counts.stalled.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(self.faults.stall).await;
                    return Ok(answer(StatusCode::SERVICE_UNAVAILABLE, "injected stall"));
                }
            }
        }
        Ok(self.forward(request).await)
    }

    async fn forward(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(err) => return answer(StatusCode::BAD_REQUEST, &format!("body: {err}")),
        };
        let path = parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/");
        let mut outgoing = self
            .http
            .request(parts.method, format!("{}{path}", self.upstream))
            .body(body);
        for (name, value) in &parts.headers {
            // The Host the client signed is kept: the upstream checks signatures over it.
            if name != hyper::header::CONTENT_LENGTH && name != hyper::header::CONNECTION {
                outgoing = outgoing.header(name, value);
            }
        }
        let reply = match outgoing.send().await {
            Ok(reply) => reply,
            Err(err) => {
                return answer(
                    StatusCode::BAD_GATEWAY,
                    &format!("upstream: {}", chain(&err)),
                );
            }
        };
        let status = reply.status();
        let headers = reply.headers().clone();
        let bytes = match reply.bytes().await {
            Ok(bytes) => bytes,
            Err(err) => return answer(StatusCode::BAD_GATEWAY, &format!("upstream body: {err}")),
        };
        let mut response = Response::new(Full::new(bytes));
        *response.status_mut() = status;
        for (name, value) in &headers {
            if name != hyper::header::CONTENT_LENGTH
                && name != hyper::header::TRANSFER_ENCODING
                && name != hyper::header::CONNECTION
            {
                response.headers_mut().append(name, value.clone());
            }
        }
        response
    }
}

/// An error and its sources, for the 502 body.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut next = err.source();
    while let Some(source) = next {
        text.push_str(&format!(": {source}"));
        next = source.source();
    }
    text
}

fn answer(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_string())));
    *response.status_mut() = status;
    response
}
