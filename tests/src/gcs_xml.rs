//! A test-only translation from the GCS XML API, which object_store's GCS client speaks, to the
//! GCS JSON API, which is all that fake-gcs-server serves (it answers 400 to XML uploads:
//! fsouza/fake-gcs-server #852 and #331). Real GCS serves both APIs; this exists only so that the
//! GCS backend runs against a live emulator in tests.
//!
//! Covered: object PUT (with `x-goog-if-generation-match`, checked by the proxy because the
//! emulator ignores `ifGenerationMatch` on media uploads), GET and HEAD (ranges, `If-Match`,
//! `If-None-Match`, `generation`), DELETE, copy (`x-goog-copy-source`), the bucket listing
//! (`list-type=2`), and XML multipart uploads (initiate, parts, complete, abort), whose parts are
//! held in memory until completion.
//!
//! Like GCS, it takes a request only with a bearer token signed by the service account it was
//! started for (RS256, the self-signed JWT object_store's GCS client makes from a key), and
//! answers 401 otherwise: the emulator checks no credentials, so this is where a wrong key is
//! caught.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use warp::Filter;
use warp::http::{HeaderMap, Method, Response, StatusCode};

type Reply = Response<Bytes>;
/// Multipart uploads in progress: upload id → part number → bytes.
type Uploads = HashMap<String, BTreeMap<usize, Bytes>>;

/// A running translation server on an ephemeral loopback port; it stops when dropped.
#[derive(Debug)]
pub struct GcsXmlProxy {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
}

/// The service account a proxy takes requests from: its email and public key.
#[derive(Clone)]
pub struct ServiceAccount {
    /// The account's email, the tokens' issuer.
    pub email: String,
    /// Its public key, which checks the tokens' signatures.
    pub public_key: jsonwebtoken::DecodingKey,
}

impl ServiceAccount {
    /// Whether the request's bearer token is a JWT this account signed and that has not expired.
    fn admits(&self, headers: &HeaderMap) -> Result<(), String> {
        let token = headers
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or("no bearer token")?;
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_issuer(&[&self.email]);
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "iss"]);
        jsonwebtoken::decode::<serde_json::Value>(token, &self.public_key, &validation)
            .map(|_| ())
            .map_err(|err| err.to_string())
    }
}

impl GcsXmlProxy {
    /// Starts a translation server in front of the emulator's JSON API at `json_endpoint`,
    /// taking requests signed by `account` only.
    pub async fn start(json_endpoint: &str, account: ServiceAccount) -> Self {
        let state = Arc::new(State {
            json: json_endpoint.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            uploads: Mutex::new(HashMap::new()),
            account,
        });
        let route = warp::method()
            .and(warp::path::full())
            .and(warp::query::<HashMap<String, String>>())
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .then(
                move |method, path: warp::path::FullPath, query, headers, body| {
                    let state = state.clone();
                    async move {
                        let request = XmlRequest {
                            method,
                            path: path.as_str().to_string(),
                            query,
                            headers,
                            body,
                        };
                        match state.handle(request).await {
                            Ok(reply) => reply,
                            Err(err) => {
                                plain(StatusCode::BAD_GATEWAY, format!("gcs-xml proxy: {err}"))
                            }
                        }
                    }
                },
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|err| panic!("gcs-xml proxy cannot bind a loopback port: {err}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|err| panic!("gcs-xml proxy has no local address: {err}"));
        let (shutdown, stop) = oneshot::channel::<()>();
        tokio::spawn(
            warp::serve(route)
                .incoming(listener)
                .graceful(async {
                    let _ = stop.await;
                })
                .run(),
        );
        Self {
            addr,
            shutdown: Some(shutdown),
        }
    }

    /// The base URL to give object_store's GCS client.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for GcsXmlProxy {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

struct XmlRequest {
    method: Method,
    path: String,
    query: HashMap<String, String>,
    headers: HeaderMap,
    body: Bytes,
}

impl XmlRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

struct State {
    json: String,
    http: reqwest::Client,
    uploads: Mutex<Uploads>,
    account: ServiceAccount,
}

/// An object's metadata as the JSON API returns it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonObject {
    name: String,
    #[serde(default)]
    size: Option<String>,
    #[serde(default)]
    updated: Option<String>,
    #[serde(default)]
    etag: Option<String>,
    #[serde(default)]
    generation: Option<String>,
    #[serde(default)]
    content_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonList {
    #[serde(default)]
    items: Vec<JsonObject>,
    #[serde(default)]
    prefixes: Vec<String>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Serialize)]
#[serde(rename = "ListBucketResult", rename_all = "PascalCase")]
struct XmlList {
    contents: Vec<XmlContents>,
    common_prefixes: Vec<XmlPrefix>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_continuation_token: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct XmlContents {
    key: String,
    size: u64,
    last_modified: String,
    #[serde(rename = "ETag")]
    e_tag: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct XmlPrefix {
    prefix: String,
}

#[derive(Serialize)]
#[serde(rename = "InitiateMultipartUploadResult", rename_all = "PascalCase")]
struct XmlInitiated {
    upload_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct XmlComplete {
    #[serde(default)]
    part: Vec<XmlPart>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct XmlPart {
    part_number: usize,
}

#[derive(Serialize)]
#[serde(rename = "CompleteMultipartUploadResult", rename_all = "PascalCase")]
struct XmlCompleted {
    #[serde(rename = "ETag")]
    e_tag: String,
}

fn plain(status: StatusCode, message: String) -> Reply {
    let mut reply = Response::new(Bytes::from(message));
    *reply.status_mut() = status;
    reply
}

/// An error as GCS's XML API answers one.
fn xml_error(status: StatusCode, code: &str, message: &str) -> Reply {
    let body = format!(
        "<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{}</Message></Error>",
        message.replace('&', "&amp;").replace('<', "&lt;")
    );
    let mut reply = Response::new(Bytes::from(body));
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        "content-type",
        warp::http::HeaderValue::from_static("application/xml"),
    );
    reply
}

fn xml<T: Serialize>(value: &T) -> Result<Reply, String> {
    let body = quick_xml::se::to_string(value).map_err(|err| err.to_string())?;
    Response::builder()
        .header("content-type", "application/xml")
        .body(Bytes::from(body))
        .map_err(|err| err.to_string())
}

/// The HTTP date of an RFC 3339 time, as `Last-Modified` wants it.
fn http_date(rfc3339: Option<&str>) -> String {
    let time = rfc3339
        .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
        .map(|time| time.with_timezone(&Utc))
        .unwrap_or_else(Utc::now);
    time.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

fn etag_of(object: &JsonObject) -> String {
    let raw = object
        .etag
        .clone()
        .or_else(|| object.generation.clone())
        .unwrap_or_default();
    format!("\"{}\"", raw.trim_matches('"'))
}

impl State {
    async fn handle(&self, request: XmlRequest) -> Result<Reply, String> {
        if let Err(why) = self.account.admits(&request.headers) {
            return Ok(xml_error(
                StatusCode::UNAUTHORIZED,
                "AuthenticationRequired",
                &format!("Invalid Credentials: {why}"),
            ));
        }
        let trimmed = request.path.trim_start_matches('/');
        let (bucket, object) = match trimmed.split_once('/') {
            Some((bucket, object)) => (bucket.to_string(), object.to_string()),
            None => (trimmed.to_string(), String::new()),
        };
        if object.is_empty() {
            return match request.method {
                Method::GET => self.list(&bucket, &request).await,
                _ => Ok(plain(
                    StatusCode::NOT_IMPLEMENTED,
                    format!("gcs-xml proxy: {} on a bucket", request.method),
                )),
            };
        }
        // `object` is percent-encoded as object_store sent it; the JSON API takes it encoded too.
        let name = percent_decode_str(&object)
            .decode_utf8()
            .map_err(|err| format!("object name is not UTF-8: {err}"))?
            .into_owned();
        let encoded = utf8_percent_encode(&name, NON_ALPHANUMERIC).to_string();
        let method = request.method.clone();
        match method {
            Method::GET | Method::HEAD => self.get(&bucket, &encoded, &request).await,
            Method::DELETE => match request.query.get("uploadId") {
                Some(upload_id) => {
                    self.lock_uploads()?.remove(upload_id);
                    Ok(plain(StatusCode::NO_CONTENT, String::new()))
                }
                None => self.delete(&bucket, &encoded).await,
            },
            Method::PUT => {
                if let Some(source) = request.header("x-goog-copy-source") {
                    let source = source.trim_start_matches('/').to_string();
                    return self.copy(&bucket, &encoded, &source, &request).await;
                }
                match (
                    request.query.get("partNumber"),
                    request.query.get("uploadId"),
                ) {
                    (Some(part), Some(upload_id)) => self.put_part(upload_id, part, &request),
                    _ => {
                        let generation_match = request.header("x-goog-if-generation-match");
                        self.upload(&bucket, &name, request.body.clone(), generation_match)
                            .await
                    }
                }
            }
            Method::POST if request.query.contains_key("uploads") => {
                let upload_id = uuid::Uuid::new_v4().to_string();
                self.lock_uploads()?
                    .insert(upload_id.clone(), BTreeMap::new());
                xml(&XmlInitiated { upload_id })
            }
            Method::POST => match request.query.get("uploadId") {
                Some(upload_id) => self.complete(&bucket, &name, upload_id, &request).await,
                None => Ok(plain(
                    StatusCode::NOT_IMPLEMENTED,
                    "gcs-xml proxy: POST without uploads or uploadId".into(),
                )),
            },
            other => Ok(plain(
                StatusCode::NOT_IMPLEMENTED,
                format!("gcs-xml proxy: {other} is not translated"),
            )),
        }
    }

    fn lock_uploads(&self) -> Result<std::sync::MutexGuard<'_, Uploads>, String> {
        self.uploads
            .lock()
            .map_err(|_| "the multipart upload table is poisoned".to_string())
    }

    async fn metadata(
        &self,
        bucket: &str,
        encoded: &str,
        generation: Option<&String>,
    ) -> Result<Result<JsonObject, Reply>, String> {
        let mut request = self
            .http
            .get(format!("{}/storage/v1/b/{bucket}/o/{encoded}", self.json));
        if let Some(generation) = generation {
            request = request.query(&[("generation", generation)]);
        }
        let response = request.send().await.map_err(|err| err.to_string())?;
        if !response.status().is_success() {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            return Ok(Err(plain(status, text)));
        }
        Ok(Ok(response.json().await.map_err(|err| err.to_string())?))
    }

    async fn get(
        &self,
        bucket: &str,
        encoded: &str,
        request: &XmlRequest,
    ) -> Result<Reply, String> {
        let generation = request.query.get("generation");
        let object = match self.metadata(bucket, encoded, generation).await? {
            Ok(object) => object,
            Err(reply) => return Ok(reply),
        };
        let etag = etag_of(&object);
        let same = |tag: &str| tag == "*" || tag.trim_matches('"') == etag.trim_matches('"');
        if request.header("if-match").is_some_and(|tag| !same(tag)) {
            return Ok(plain(StatusCode::PRECONDITION_FAILED, "If-Match".into()));
        }
        if request.header("if-none-match").is_some_and(same) {
            return Ok(plain(StatusCode::NOT_MODIFIED, String::new()));
        }
        let mut builder = Response::builder()
            .header("etag", &etag)
            .header("last-modified", http_date(object.updated.as_deref()))
            .header(
                "content-type",
                object
                    .content_type
                    .as_deref()
                    .unwrap_or("application/octet-stream"),
            );
        if let Some(generation) = &object.generation {
            builder = builder.header("x-goog-generation", generation);
        }
        if request.method == Method::HEAD {
            let size = object.size.as_deref().unwrap_or("0");
            return builder
                .header("content-length", size)
                .body(Bytes::new())
                .map_err(|err| err.to_string());
        }
        let mut media = self
            .http
            .get(format!("{}/storage/v1/b/{bucket}/o/{encoded}", self.json))
            .query(&[("alt", "media")]);
        if let Some(generation) = generation {
            media = media.query(&[("generation", generation)]);
        }
        if let Some(range) = request.header("range") {
            media = media.header("range", range);
        }
        let response = media.send().await.map_err(|err| err.to_string())?;
        let status = response.status();
        if let Some(range) = response.headers().get("content-range") {
            builder = builder.header("content-range", range);
        }
        let body = response.bytes().await.map_err(|err| err.to_string())?;
        builder
            .status(status)
            .header("content-length", body.len())
            .body(body)
            .map_err(|err| err.to_string())
    }

    async fn delete(&self, bucket: &str, encoded: &str) -> Result<Reply, String> {
        let response = self
            .http
            .delete(format!("{}/storage/v1/b/{bucket}/o/{encoded}", self.json))
            .send()
            .await
            .map_err(|err| err.to_string())?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        Ok(plain(status, text))
    }

    async fn upload(
        &self,
        bucket: &str,
        name: &str,
        body: Bytes,
        generation_match: Option<&str>,
    ) -> Result<Reply, String> {
        if let Some(expected) = generation_match {
            // fake-gcs-server ignores ifGenerationMatch on media uploads, so the precondition is
            // checked here first: not atomic, which is enough for a test's single writer.
            let encoded = utf8_percent_encode(name, NON_ALPHANUMERIC).to_string();
            let current = match self.metadata(bucket, &encoded, None).await? {
                Ok(object) => object.generation.unwrap_or_default(),
                Err(_) => "0".to_string(),
            };
            if current != expected {
                return Ok(plain(
                    StatusCode::PRECONDITION_FAILED,
                    format!("generation is {current}, expected {expected}"),
                ));
            }
        }
        let response = self
            .http
            .post(format!("{}/upload/storage/v1/b/{bucket}/o", self.json))
            .query(&[("uploadType", "media"), ("name", name)])
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await
            .map_err(|err| err.to_string())?;
        self.written(response).await
    }

    /// Turns the JSON API's answer to a write into the XML API's headers.
    async fn written(&self, response: reqwest::Response) -> Result<Reply, String> {
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Ok(plain(status, text));
        }
        let object: JsonObject = response.json().await.map_err(|err| err.to_string())?;
        let mut builder = Response::builder().header("etag", etag_of(&object));
        if let Some(generation) = &object.generation {
            builder = builder.header("x-goog-generation", generation);
        }
        builder.body(Bytes::new()).map_err(|err| err.to_string())
    }

    async fn copy(
        &self,
        bucket: &str,
        encoded: &str,
        source: &str,
        request: &XmlRequest,
    ) -> Result<Reply, String> {
        let (source_bucket, source_object) = source
            .split_once('/')
            .ok_or_else(|| format!("x-goog-copy-source `{source}` has no object"))?;
        let mut copy = self.http.post(format!(
            "{}/storage/v1/b/{source_bucket}/o/{source_object}/copyTo/b/{bucket}/o/{encoded}",
            self.json
        ));
        if let Some(generation) = request.header("x-goog-if-generation-match") {
            // As for uploads, the emulator's own precondition check is not relied on.
            if generation == "0" && self.metadata(bucket, encoded, None).await?.is_ok() {
                return Ok(plain(StatusCode::PRECONDITION_FAILED, "exists".into()));
            }
            copy = copy.query(&[("ifGenerationMatch", generation)]);
        }
        let response = copy.send().await.map_err(|err| err.to_string())?;
        self.written(response).await
    }

    fn put_part(&self, upload_id: &str, part: &str, request: &XmlRequest) -> Result<Reply, String> {
        let number: usize = part
            .parse()
            .map_err(|_| format!("partNumber `{part}` is not a number"))?;
        let mut uploads = self.lock_uploads()?;
        let Some(parts) = uploads.get_mut(upload_id) else {
            return Ok(plain(StatusCode::NOT_FOUND, "no such upload".into()));
        };
        let etag = format!("\"{}\"", part_etag(&request.body, number));
        parts.insert(number, request.body.clone());
        Response::builder()
            .header("etag", etag)
            .body(Bytes::new())
            .map_err(|err| err.to_string())
    }

    async fn complete(
        &self,
        bucket: &str,
        name: &str,
        upload_id: &str,
        request: &XmlRequest,
    ) -> Result<Reply, String> {
        let listed: XmlComplete = quick_xml::de::from_reader(request.body.as_ref())
            .map_err(|err| format!("CompleteMultipartUpload body: {err}"))?;
        let parts = match self.lock_uploads()?.remove(upload_id) {
            Some(parts) => parts,
            None => return Ok(plain(StatusCode::NOT_FOUND, "no such upload".into())),
        };
        let mut whole = Vec::new();
        for part in &listed.part {
            let bytes = parts
                .get(&part.part_number)
                .ok_or_else(|| format!("part {} was never uploaded", part.part_number))?;
            whole.extend_from_slice(bytes);
        }
        let written = self.upload(bucket, name, Bytes::from(whole), None).await?;
        if !written.status().is_success() {
            return Ok(written);
        }
        let etag = written
            .headers()
            .get("etag")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let mut reply = xml(&XmlCompleted { e_tag: etag })?;
        if let Some(generation) = written.headers().get("x-goog-generation") {
            reply
                .headers_mut()
                .insert("x-goog-generation", generation.clone());
        }
        Ok(reply)
    }

    async fn list(&self, bucket: &str, request: &XmlRequest) -> Result<Reply, String> {
        let mut query: Vec<(&str, &str)> = Vec::new();
        let get = |key: &str| request.query.get(key).map(String::as_str);
        if let Some(prefix) = get("prefix") {
            query.push(("prefix", prefix));
        }
        if let Some(delimiter) = get("delimiter") {
            query.push(("delimiter", delimiter));
        }
        if let Some(token) = get("continuation-token") {
            query.push(("pageToken", token));
        }
        if let Some(max) = get("max-keys") {
            query.push(("maxResults", max));
        }
        if let Some(after) = get("start-after") {
            query.push(("startOffset", after));
        }
        let response = self
            .http
            .get(format!("{}/storage/v1/b/{bucket}/o", self.json))
            .query(&query)
            .send()
            .await
            .map_err(|err| err.to_string())?;
        if !response.status().is_success() {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            return Ok(plain(status, text));
        }
        let listed: JsonList = response.json().await.map_err(|err| err.to_string())?;
        let start_after = get("start-after");
        let contents = listed
            .items
            .iter()
            // The XML API's start-after is exclusive, the JSON API's startOffset inclusive.
            .filter(|object| Some(object.name.as_str()) != start_after)
            .map(|object| XmlContents {
                key: object.name.clone(),
                size: object
                    .size
                    .as_deref()
                    .and_then(|size| size.parse().ok())
                    .unwrap_or(0),
                last_modified: object
                    .updated
                    .clone()
                    .unwrap_or_else(|| Utc::now().to_rfc3339()),
                e_tag: etag_of(object),
            })
            .collect();
        xml(&XmlList {
            contents,
            common_prefixes: listed
                .prefixes
                .into_iter()
                .map(|prefix| XmlPrefix { prefix })
                .collect(),
            next_continuation_token: listed.next_page_token,
        })
    }
}

/// A part's ETag: its number and a digest of its bytes, so different parts differ.
fn part_etag(bytes: &[u8], number: usize) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    format!("{number}-{:016x}", hasher.finish())
}
