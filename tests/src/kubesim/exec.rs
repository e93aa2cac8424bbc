//! `pods/exec` over WebSocket: checks the request as the API server and kubelet do (the pod
//! exists, is Running, has the container; a command and at least one stream), accepts the
//! upgrade with the channel subprotocol the client prefers (`v5.channel.k8s.io` or
//! `v4.channel.k8s.io`), runs the command as a local process that sees the pod's volumes
//! through [`super::mounts`], and multiplexes it: channel 0 stdin, 1 stdout, 2 stderr, 3 the
//! final `Status` (with an `ExitCode` cause on a non-zero exit), 4 resize (ignored: no TTY is
//! allocated), 255 stream close (v5). SPDY upgrades are refused: only WebSocket is served.

use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

use super::api::query_pairs;
use super::cluster::Cluster;
use super::errors::ApiError;
use super::logs::pick_container;
use super::mounts::{self, ContainerView};
use super::processes;

/// The channel subprotocols served, in the order of preference a client is expected to use.
const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;
const CLOSE: u8 = 255;

/// `(namespace, pod)` when `path` is `/api/v1/namespaces/{ns}/pods/{name}/exec`.
pub(crate) fn target(path: &str) -> Option<(String, String)> {
    let segments: Vec<&str> = path
        .trim_end_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segments.as_slice() {
        ["api", "v1", "namespaces", namespace, "pods", name, "exec"] => {
            Some(((*namespace).to_string(), (*name).to_string()))
        }
        _ => None,
    }
}

/// What an exec request asks for.
#[derive(Debug)]
struct ExecRequest {
    command: Vec<String>,
    container: String,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

fn flag(value: &str) -> bool {
    matches!(value, "true" | "1" | "True")
}

fn parse(query: Option<&str>) -> Result<ExecRequest, ApiError> {
    let mut request = ExecRequest {
        command: Vec::new(),
        container: String::new(),
        stdin: false,
        stdout: false,
        stderr: false,
        tty: false,
    };
    for (key, value) in query_pairs(query) {
        match key.as_str() {
            "command" => request.command.push(value),
            "container" => request.container = value,
            "stdin" => request.stdin = flag(&value),
            "stdout" => request.stdout = flag(&value),
            "stderr" => request.stderr = flag(&value),
            "tty" => request.tty = flag(&value),
            _ => {}
        }
    }
    if request.command.is_empty() {
        return Err(ApiError::bad_request(
            "you must specify at least one command for the container",
        ));
    }
    if !(request.stdin || request.stdout || request.stderr) {
        return Err(ApiError::bad_request(
            "you must specify at least 1 of stdin, stdout, stderr",
        ));
    }
    Ok(request)
}

fn header(request: &http::Request<Incoming>, name: http::header::HeaderName) -> &str {
    request
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
}

/// The subprotocol to answer with: the first one the client offers that is served.
fn choose_protocol(request: &http::Request<Incoming>) -> Option<&'static str> {
    request
        .headers()
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .find_map(|offered| PROTOCOLS.iter().find(|p| **p == offered).copied())
}

/// Checks an exec request and, when it is valid, answers `101 Switching Protocols` and runs
/// the command on the upgraded connection.
pub(crate) fn accept(
    cluster: &Arc<Cluster>,
    namespace: &str,
    pod_name: &str,
    mut request: http::Request<Incoming>,
) -> Result<http::Response<()>, ApiError> {
    let exec = parse(request.uri().query())?;
    let pod = cluster
        .store()
        .get("/pods", namespace, pod_name)
        .ok_or_else(|| ApiError::not_found("", "pods", pod_name))?;
    let container = pick_container(&pod, &exec.container)?;
    let container_name = container
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(ApiError::bad_request(format!(
            "pod {pod_name} does not have a host assigned"
        )));
    }
    if matches!(phase, "Succeeded" | "Failed") {
        return Err(ApiError::bad_request(format!(
            "cannot exec into a container in a completed pod; current phase is {phase}"
        )));
    }
    if phase != "Running" {
        return Err(ApiError::bad_request(format!(
            "unable to upgrade connection: container not found (\"{container_name}\")"
        )));
    }
    let upgrade = header(&request, http::header::UPGRADE);
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return Err(ApiError::bad_request(if upgrade.is_empty() {
            "Upgrade request required".to_string()
        } else {
            format!(
                "upgrade to {upgrade} is not supported: kubesim serves exec over websocket only"
            )
        }));
    }
    let key = header(&request, http::header::SEC_WEBSOCKET_KEY).to_string();
    if key.is_empty() {
        return Err(ApiError::bad_request(
            "the websocket upgrade has no Sec-WebSocket-Key",
        ));
    }
    let protocol = choose_protocol(&request).ok_or_else(|| {
        ApiError::bad_request(format!(
            "no supported websocket subprotocol was offered; kubesim serves {}",
            PROTOCOLS.join(", ")
        ))
    })?;
    let view = mounts::resolve(cluster.store(), cluster.volume_folders(), &pod, container)
        .map_err(|error| {
            ApiError::internal(format!("preparing container {container_name}: {error}"))
        })?;
    let kill = cluster.pod_runtime().kill_signal(
        pod.pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default(),
    );
    let upgraded = hyper::upgrade::on(&mut request);
    let session = Session {
        argv: exec.command.iter().map(|arg| view.rewrite(arg)).collect(),
        command: exec.command.clone(),
        view,
        pod_name: pod_name.to_string(),
        exec,
        v5: protocol == PROTOCOLS[0],
        kill,
    };
    tokio::spawn(async move {
        match upgraded.await {
            Ok(upgraded) => {
                let socket =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                session.run(socket).await;
            }
            Err(error) => tracing::debug!(%error, "exec upgrade failed"),
        }
    });
    http::Response::builder()
        .status(http::StatusCode::SWITCHING_PROTOCOLS)
        .header(http::header::UPGRADE, "websocket")
        .header(http::header::CONNECTION, "Upgrade")
        .header(
            http::header::SEC_WEBSOCKET_ACCEPT,
            derive_accept_key(key.as_bytes()),
        )
        .header(http::header::SEC_WEBSOCKET_PROTOCOL, protocol)
        .body(())
        .map_err(|error| ApiError::internal(format!("building the upgrade response: {error}")))
}

/// One exec session on an upgraded connection.
struct Session {
    /// The command as the client sent it (for messages).
    command: Vec<String>,
    /// The command with mount paths rewritten to host folders.
    argv: Vec<String>,
    view: ContainerView,
    pod_name: String,
    exec: ExecRequest,
    v5: bool,
    kill: tokio::sync::watch::Receiver<bool>,
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::Binary(Bytes::from(bytes))
}

/// Sends a pipe's output on `channel` until it closes; output of a stream the client did
/// not ask for (`channel` is `None`) is read and dropped so the command never blocks on it.
async fn pump(mut pipe: impl AsyncRead + Unpin, channel: Option<u8>, out: mpsc::Sender<Message>) {
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        match pipe.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => {
                if let Some(channel) = channel
                    && out.send(frame(channel, &buffer[..read])).await.is_err()
                {
                    return;
                }
            }
        }
    }
}

impl Session {
    /// The `Status` sent on channel 3 when the command ended with `exit_code`.
    fn status(&self, exit_code: i32) -> Value {
        if exit_code == 0 {
            return json!({"metadata": {}, "status": "Success"});
        }
        json!({
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "command terminated with non-zero exit code: error executing command [{}], exit code {exit_code}",
                self.command.join(" ")
            ),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": exit_code.to_string()}]},
        })
    }

    #[tracing::instrument(skip_all, fields(pod = %self.pod_name, command = ?self.command))]
    async fn run<S>(mut self, socket: WebSocketStream<S>)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let (mut sink, mut source) = socket.split();
        let mut guard =
            match processes::spawn(&self.view, &self.pod_name, &self.argv, self.exec.stdin) {
                Ok(guard) => guard,
                Err(error) => {
                    let status = json!({
                        "metadata": {},
                        "status": "Failure",
                        "message": format!(
                            "failed to exec in container {}: starting {:?}: {error}",
                            self.view.container, self.command[0]
                        ),
                        "reason": "InternalError",
                        "code": 500,
                    });
                    let _ = sink
                        .send(frame(STATUS, status.to_string().as_bytes()))
                        .await;
                    let _ = sink.send(normal_close()).await;
                    return;
                }
            };
        let (out, mut outgoing) = mpsc::channel::<Message>(16);
        if let Some(stdout) = guard.child().stdout.take() {
            let channel = self.exec.stdout.then_some(STDOUT);
            tokio::spawn(pump(stdout, channel, out.clone()));
        }
        if let Some(stderr) = guard.child().stderr.take() {
            // With a TTY the terminal merges stderr into stdout.
            let channel = match (self.exec.tty, self.exec.stderr) {
                (true, _) => self.exec.stdout.then_some(STDOUT),
                (false, true) => Some(STDERR),
                (false, false) => None,
            };
            tokio::spawn(pump(stderr, channel, out.clone()));
        }
        drop(out);
        let (stdin_sender, mut stdin_receiver) = mpsc::unbounded_channel::<Bytes>();
        if let Some(mut stdin) = guard.child().stdin.take() {
            tokio::spawn(async move {
                while let Some(chunk) = stdin_receiver.recv().await {
                    if stdin.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
                let _ = stdin.shutdown().await;
            });
        }
        let mut stdin_sender = Some(stdin_sender);
        let mut exit = None;
        let mut output_done = false;
        while exit.is_none() || !output_done {
            tokio::select! {
                message = outgoing.recv(), if !output_done => match message {
                    Some(message) => {
                        if sink.send(message).await.is_err() {
                            return;
                        }
                    }
                    None => output_done = true,
                },
                incoming = source.next() => match incoming {
                    Some(Ok(Message::Binary(data))) => match data.first() {
                        Some(&STDIN) => {
                            if let Some(sender) = &stdin_sender {
                                let _ = sender.send(data.slice(1..));
                            }
                        }
                        Some(&CLOSE) if self.v5 && data.get(1) == Some(&STDIN) => {
                            stdin_sender = None;
                        }
                        _ => {}
                    },
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                        // The client closed the connection (on v4, also how it ends stdin):
                        // nothing can reach it any more, so the command is killed as the
                        // guard drops, as kubelet ends an exec whose stream is gone.
                        return;
                    }
                    Some(Ok(_)) => {}
                },
                status = guard.child().wait(), if exit.is_none() => {
                    // Whatever the command left running in its group dies with it, which
                    // also closes the pipes the output pumps read.
                    guard.kill();
                    exit = Some(match status {
                        Ok(status) => status
                            .code()
                            .or_else(|| status.signal().map(|signal| 128 + signal))
                            .unwrap_or(1),
                        Err(_) => 1,
                    });
                },
                _ = processes::signalled(&mut self.kill), if exit.is_none() => {
                    guard.kill();
                },
            }
        }
        let code = exit.unwrap_or(1);
        let status = self.status(code);
        let _ = sink
            .send(frame(STATUS, status.to_string().as_bytes()))
            .await;
        let _ = sink.send(normal_close()).await;
    }
}

/// A close frame with status 1000: client-go treats a close without a status (1005) as an
/// error of the stream.
fn normal_close() -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_paths_are_recognised() {
        assert_eq!(
            target("/api/v1/namespaces/ns/pods/web/exec"),
            Some(("ns".to_string(), "web".to_string()))
        );
        assert_eq!(target("/api/v1/namespaces/ns/pods/web/log"), None);
        assert_eq!(target("/api/v1/namespaces/ns/pods/web"), None);
    }

    #[test]
    fn exec_requests_need_a_command_and_a_stream() {
        let request = parse(Some(
            "command=sh&command=-c&command=echo+hi&container=app&stdout=true&stderr=true",
        ))
        .unwrap();
        assert_eq!(request.command, ["sh", "-c", "echo hi"]);
        assert_eq!(request.container, "app");
        assert!(request.stdout && request.stderr && !request.stdin);
        assert!(
            parse(Some("stdout=true"))
                .unwrap_err()
                .message
                .contains("at least one command")
        );
        assert!(
            parse(Some("command=ls"))
                .unwrap_err()
                .message
                .contains("at least 1 of stdin")
        );
    }
}
