//! Container logs of pods that run as local processes: a [`LogBuffer`] per container that
//! the process's stdout and stderr are appended to, and the `pods/log` subresource
//! (`container`, `follow`, `tailLines`, `limitBytes`, `previous`) that `kubectl logs` and
//! kube-rs `Api::<Pod>::logs` read.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::watch;

use super::api::{Reply, WatchStream};
use super::cluster::Cluster;
use super::errors::ApiError;

#[derive(Debug, Default)]
struct LogState {
    bytes: Vec<u8>,
    finished: bool,
}

/// What one container wrote, kept in memory until its pod is deleted; followers are woken
/// when it grows and when the container ends.
#[derive(Debug)]
pub struct LogBuffer {
    state: watch::Sender<LogState>,
}

impl Default for LogBuffer {
    fn default() -> Self {
        Self {
            state: watch::Sender::new(LogState::default()),
        }
    }
}

impl LogBuffer {
    /// Appends output of the container.
    pub fn append(&self, chunk: &[u8]) {
        self.state
            .send_modify(|state| state.bytes.extend_from_slice(chunk));
    }

    /// The container ended: followers stop once they have read everything.
    pub fn finish(&self) {
        self.state.send_modify(|state| state.finished = true);
    }

    /// Everything written so far.
    pub fn contents(&self) -> Vec<u8> {
        self.state.borrow().bytes.clone()
    }

    /// The content from byte `offset` on, then every later chunk until the container ends.
    fn follow(&self, offset: usize) -> WatchStream {
        let receiver = self.state.subscribe();
        Box::pin(futures::stream::unfold(
            (receiver, offset),
            |(mut receiver, offset)| async move {
                loop {
                    let next = {
                        let state = receiver.borrow_and_update();
                        if offset < state.bytes.len() {
                            Some(Bytes::copy_from_slice(&state.bytes[offset..]))
                        } else if state.finished {
                            return None;
                        } else {
                            None
                        }
                    };
                    if let Some(chunk) = next {
                        let end = offset + chunk.len();
                        return Some((chunk, (receiver, end)));
                    }
                    if receiver.changed().await.is_err() {
                        return None;
                    }
                }
            },
        ))
    }
}

/// Where the last `lines` lines of `bytes` start.
fn tail_offset(bytes: &[u8], lines: usize) -> usize {
    if lines == 0 {
        return bytes.len();
    }
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let mut seen = 0;
    for (index, byte) in body.iter().enumerate().rev() {
        if *byte == b'\n' {
            seen += 1;
            if seen == lines {
                return index + 1;
            }
        }
    }
    0
}

fn number(query: &HashMap<String, String>, name: &str) -> Result<Option<usize>, ApiError> {
    match query.get(name).map(String::as_str) {
        None | Some("") => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|_| {
            ApiError::bad_request(format!(
                "{name} must be a non-negative integer, not {text:?}"
            ))
        }),
    }
}

/// The container a log or exec request means: the named one, or the only one.
pub(crate) fn pick_container<'a>(pod: &'a Value, requested: &str) -> Result<&'a Value, ApiError> {
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let containers = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let name_of = |c: &Value| {
        c.get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    if requested.is_empty() {
        return match containers {
            [only] => Ok(only),
            _ => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.iter().map(name_of).collect::<Vec<_>>().join(" ")
            ))),
        };
    }
    containers
        .iter()
        .find(|c| name_of(c) == requested)
        .ok_or_else(|| {
            ApiError::bad_request(format!("container {requested} is not valid for pod {name}"))
        })
}

/// Answers `GET .../pods/{name}/log`.
pub(crate) fn serve(
    cluster: &Cluster,
    pod: &Value,
    query: &HashMap<String, String>,
) -> Result<Reply, ApiError> {
    let container = pick_container(pod, query.get("container").map_or("", String::as_str))?;
    let container_name = container
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let pod_name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if matches!(
        query.get("previous").map(String::as_str),
        Some("true" | "1")
    ) {
        return Err(ApiError::bad_request(format!(
            "previous terminated container \"{container_name}\" in pod \"{pod_name}\" not found"
        )));
    }
    let follow = matches!(query.get("follow").map(String::as_str), Some("true" | "1"));
    let tail = number(query, "tailLines")?;
    let limit = number(query, "limitBytes")?;
    let uid = pod
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(log) = cluster.pod_runtime().existing_log(uid, container_name) else {
        // Containers that are not local processes write nothing.
        return Ok(Reply::Json(200, TEXT, Bytes::new()));
    };
    let contents = log.contents();
    let start = tail.map_or(0, |lines| tail_offset(&contents, lines));
    if follow && limit.is_none() {
        return Ok(Reply::Stream(TEXT, log.follow(start)));
    }
    let mut shown = &contents[start..];
    if let Some(limit) = limit {
        shown = &shown[..shown.len().min(limit)];
    }
    Ok(Reply::Json(200, TEXT, Bytes::copy_from_slice(shown)))
}

const TEXT: &str = "text/plain";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_lines_count_from_the_end() {
        let text = b"one\ntwo\nthree\n";
        assert_eq!(&text[tail_offset(text, 1)..], b"three\n");
        assert_eq!(&text[tail_offset(text, 2)..], b"two\nthree\n");
        assert_eq!(&text[tail_offset(text, 9)..], text);
        assert_eq!(&text[tail_offset(text, 0)..], b"");
        assert_eq!(&b"a\nb"[tail_offset(b"a\nb", 1)..], b"b");
    }
}
