//! The CLI's HTTP client: the server's REST API with the configured token, and errors that say
//! what to do next.

use std::time::Duration;

use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server did not answer.
    #[error(
        "cannot reach the Stowage server at {server}: {reason}\n  is it running? start one with `stowage server`, or point to another with --server or `stowage login --server URL`"
    )]
    Unreachable {
        /// The server's URL.
        server: String,
        /// What failed.
        reason: String,
    },
    /// The CA file given to trust the server's certificate cannot be used.
    #[error("CA file {path}: {reason}")]
    CaFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The server answered with an error.
    #[error("{message}{hint}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The error's code.
        code: String,
        /// The error's message.
        message: String,
        /// Its details.
        details: serde_json::Value,
        /// What to do about it, if the CLI knows.
        hint: String,
    },
    /// The answer could not be read.
    #[error("unexpected answer from {url}: {reason}")]
    Unexpected {
        /// What was asked.
        url: String,
        /// What was wrong with the answer.
        reason: String,
    },
}

/// What went wrong sending a request, with its causes, and the next step for a certificate the
/// CLI does not trust.
pub(crate) fn send_failure(err: &reqwest::Error) -> String {
    let mut reason = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        reason.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    if reason.contains("UnknownIssuer") || reason.contains("unknown issuer") {
        reason.push_str(
            "\n  the server's certificate is signed by a CA this machine does not trust: give \
             that CA's certificate with --ca-file (or STOWAGE_CA_FILE)",
        );
    } else if reason.contains("NotValidForName") || reason.contains("not valid for name") {
        reason.push_str(
            "\n  the server's certificate does not name this address: use the host name it was \
             issued for in --server",
        );
    }
    reason
}

/// The CA certificates of a PEM file, to trust besides the system's.
pub fn ca_certificates(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, ClientError> {
    let ca_error = |reason: String| ClientError::CaFile {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|err| ca_error(err.to_string()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|err| ca_error(format!("not PEM certificates ({err})")))?;
    if certs.is_empty() {
        return Err(ca_error("holds no CERTIFICATE block".into()));
    }
    Ok(certs)
}

/// Items asked for per page when the CLI reads a whole listing.
const LIST_PAGE: usize = 1000;

/// A client of one server.
#[derive(Debug, Clone)]
pub struct Client {
    server: String,
    token: Option<String>,
    http: reqwest::Client,
    login_command: Option<String>,
}

impl Client {
    /// A client of `server` presenting `token`, trusting the CA certificates in `ca_file` (PEM)
    /// besides the system's.
    pub fn new(
        server: &str,
        token: Option<String>,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Self, ClientError> {
        let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
        if let Some(path) = ca_file {
            builder = builder.tls_certs_merge(ca_certificates(path)?);
        }
        let http = builder.build().map_err(|err| ClientError::Unreachable {
            server: server.to_string(),
            reason: err.to_string(),
        })?;
        Ok(Self {
            server: server.trim_end_matches('/').to_string(),
            token,
            http,
            login_command: None,
        })
    }

    /// The command that logs in again, named when the server refuses the token.
    pub fn with_login_command(mut self, command: String) -> Self {
        self.login_command = Some(command);
        self
    }

    /// The server's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    fn request(&self, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.get(format!("{}{path}", self.server));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        path: &str,
    ) -> Result<reqwest::Response, ClientError> {
        let response = request
            .send()
            .await
            .map_err(|err| ClientError::Unreachable {
                server: self.server.clone(),
                reason: send_failure(&err),
            })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let code = body["code"].as_str().unwrap_or("unknown").to_string();
        let message = body["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("HTTP {status} from {}{path}", self.server));
        let login = self.login_command.clone().unwrap_or_else(|| {
            format!(
                "stowage login --server {} --device (or --client-id ID, or --token TOKEN)",
                self.server
            )
        });
        let hint = match status {
            401 if body["details"]["reason"] == "token_expired" => {
                format!("\n  the token has expired: log in again with `{login}`")
            }
            401 => format!("\n  log in with `{login}`"),
            403 => "\n  ask an admin to share it with you or to grant you a role".into(),
            _ => String::new(),
        };
        Err(ClientError::Api {
            status,
            code,
            message,
            details: body["details"].clone(),
            hint,
        })
    }

    /// GETs `path` and reads the JSON answer.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let response = self.send(self.request(path), path).await?;
        response
            .json()
            .await
            .map_err(|err| ClientError::Unexpected {
                url: format!("{}{path}", self.server),
                reason: err.to_string(),
            })
    }

    /// Sends `method` to `path` with a JSON `body`; the JSON answer, `null` when it has none.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, ClientError> {
        let mut request = self.http.request(method, format!("{}{path}", self.server));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = self.send(request, path).await?;
        let text = response
            .text()
            .await
            .map_err(|err| ClientError::Unexpected {
                url: format!("{}{path}", self.server),
                reason: err.to_string(),
            })?;
        if text.trim().is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_str(&text).map_err(|err| ClientError::Unexpected {
            url: format!("{}{path}", self.server),
            reason: err.to_string(),
        })
    }

    /// Every item of the listing `/v1/{plural}` that the `filters` (query parameters) admit,
    /// following its pages (`next_after`) to the end.
    pub async fn list_all(
        &self,
        plural: &str,
        filters: &[(&str, &str)],
    ) -> Result<Vec<serde_json::Value>, ClientError> {
        let mut items = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut path = format!("/v1/{plural}?limit={LIST_PAGE}");
            let parameters = filters
                .iter()
                .copied()
                .chain(after.as_deref().map(|after| ("after", after)));
            for (name, value) in parameters {
                let value = percent_encoding::utf8_percent_encode(
                    value,
                    percent_encoding::NON_ALPHANUMERIC,
                );
                path.push_str(&format!("&{name}={value}"));
            }
            let mut page = self.call(reqwest::Method::GET, &path, None).await?;
            if let serde_json::Value::Array(found) = page["items"].take() {
                items.extend(found);
            }
            match page["next_after"].as_str() {
                // A server that named the same page again would never end the listing.
                Some(next) if after.as_deref() != Some(next) => after = Some(next.to_string()),
                Some(next) => {
                    return Err(ClientError::Unexpected {
                        url: format!("{}{path}", self.server),
                        reason: format!("the page after `{next}` was `{next}` again"),
                    });
                }
                None => return Ok(items),
            }
        }
    }

    /// GETs `path` as server-sent events and yields each event's data, parsed as JSON.
    pub async fn follow<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<impl Stream<Item = Result<T, ClientError>> + use<T>, ClientError> {
        use eventsource_stream::Eventsource;
        let request = self.request(path).header("accept", "text/event-stream");
        let response = self.send(request, path).await?;
        let url = format!("{}{path}", self.server);
        Ok(response
            .bytes_stream()
            .eventsource()
            .filter_map(move |event| {
                let url = url.clone();
                async move {
                    match event {
                        Ok(event) if event.event == "error" => Some(Err(ClientError::Unexpected {
                            url,
                            reason: event.data,
                        })),
                        Ok(event) if event.data.is_empty() => None,
                        Ok(event) => Some(serde_json::from_str(&event.data).map_err(|err| {
                            ClientError::Unexpected {
                                url,
                                reason: err.to_string(),
                            }
                        })),
                        Err(err) => Some(Err(ClientError::Unexpected {
                            url,
                            reason: err.to_string(),
                        })),
                    }
                }
            }))
    }
}
