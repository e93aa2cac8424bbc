//! The HTTPS listener: accepts TLS connections on loopback, serves HTTP/1.1 with hyper, checks
//! the bearer token, hands each request to the API layer and turns its reply into a response
//! (watches as a streamed body). Stopping aborts every open connection.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::{TlsAcceptor, rustls};

use super::api::{self, ApiRequest, Reply};
use super::cluster::Cluster;
use super::errors::ApiError;
use super::exec;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// What every connection shares.
pub(crate) struct Shared {
    pub(crate) cluster: Arc<Cluster>,
    pub(crate) token: String,
    pub(crate) server_address: String,
}

/// Paths anyone may read without a token, as a real API server allows them.
fn is_public(path: &str) -> bool {
    matches!(path, "/healthz" | "/livez" | "/readyz" | "/version")
}

fn streamed(
    builder: http::response::Builder,
    content_type: &'static str,
    stream: api::WatchStream,
) -> Result<http::Response<Body>, http::Error> {
    builder
        .status(200)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::TRANSFER_ENCODING, "chunked")
        .body(
            StreamBody::new(stream.map(|chunk| Ok::<_, Infallible>(Frame::data(chunk))))
                .boxed_unsync(),
        )
}

fn respond(reply: Reply) -> http::Response<Body> {
    let builder = http::Response::builder();
    let result = match reply {
        Reply::Json(code, content_type, body) => builder
            .status(code)
            .header(http::header::CONTENT_TYPE, content_type)
            .body(Full::new(body).boxed_unsync()),
        Reply::Text(code, text) => builder
            .status(code)
            .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from_static(text.as_bytes())).boxed_unsync()),
        Reply::Watch(stream) => streamed(builder, "application/json", stream),
        Reply::Stream(content_type, stream) => streamed(builder, content_type, stream),
    };
    // The status codes above are all valid and the header values are static ASCII, so
    // building the response cannot fail; answer 500 rather than panic if it ever does.
    result.unwrap_or_else(|_| {
        let mut response = http::Response::new(Full::new(Bytes::new()).boxed_unsync());
        *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        response
    })
}

fn header(request: &http::Request<Incoming>, name: http::header::HeaderName) -> String {
    request
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

async fn serve(shared: Arc<Shared>, request: http::Request<Incoming>) -> http::Response<Body> {
    let path = request.uri().path().to_string();
    let authorized = header(&request, http::header::AUTHORIZATION)
        .strip_prefix("Bearer ")
        .is_some_and(|token| token.trim() == shared.token);
    if !authorized && !is_public(&path) {
        return respond(ApiError::unauthorized().into());
    }
    if let Some((namespace, pod)) = exec::target(&path) {
        return match exec::accept(&shared.cluster, &namespace, &pod, request) {
            Ok(response) => response.map(|()| Full::new(Bytes::new()).boxed_unsync()),
            Err(error) => respond(error.into()),
        };
    }
    let method = request.method().clone();
    let query = request.uri().query().map(str::to_string);
    let accept = header(&request, http::header::ACCEPT);
    let content_type = header(&request, http::header::CONTENT_TYPE);
    let span = tracing::debug_span!("kubesim_request", %method, %path);
    let _entered = span.enter();
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            return respond(
                ApiError::bad_request(format!("reading the request body: {error}")).into(),
            );
        }
    };
    let api_request = ApiRequest {
        method,
        path,
        query,
        accept,
        content_type,
        body,
    };
    let reply = api::handle(&shared.cluster, &shared.server_address, api_request).await;
    tracing::debug!(?reply, "answered");
    respond(reply)
}

/// Serves until `stop` turns true, then aborts every open connection.
pub(crate) async fn run(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (stream, peer): (_, SocketAddr) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "kubesim accept failed");
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let shared = Arc::clone(&shared);
        connections.spawn(async move {
            let tls = match acceptor.accept(stream).await {
                Ok(tls) => tls,
                Err(error) => {
                    tracing::debug!(%error, %peer, "TLS handshake failed");
                    return;
                }
            };
            let service = service_fn(move |request| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, Infallible>(serve(shared, request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .with_upgrades();
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
        });
    }
    connections.abort_all();
}
