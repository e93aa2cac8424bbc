//! The API's error model: every failure is answered as `{code, message, details}` with the HTTP
//! status that fits it, whether it comes from a handler or from warp's own request checks.

use std::convert::Infallible;

use serde::Serialize;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Rejection, Reply};

use crate::auth::AuthError;

/// An error answered to an API caller.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApiError {
    /// The HTTP status.
    #[serde(skip)]
    #[schema(ignore)]
    pub status: StatusCode,
    /// A stable machine-readable code, e.g. `not_found`, `invalid`.
    pub code: &'static str,
    /// What went wrong, for a person.
    pub message: String,
    /// Structured particulars, e.g. the field that is invalid; null when there are none.
    #[schema(value_type = Option<Object>)]
    pub details: serde_json::Value,
}

impl warp::reject::Reject for ApiError {}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: serde_json::Value::Null,
        }
    }

    /// Adds structured details.
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    /// 400: the request cannot be read.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 400 naming a query parameter.
    pub fn bad_parameter(parameter: &str, message: impl Into<String>) -> Self {
        Self::bad_request(message).with_details(serde_json::json!({ "parameter": parameter }))
    }

    /// 401: who is calling is not established.
    pub fn unauthenticated(err: &AuthError) -> Self {
        let error = Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", err.to_string());
        match err {
            // Clients tell an expired token from a bad one by this, to log in again.
            AuthError::Expired => {
                error.with_details(serde_json::json!({ "reason": "token_expired" }))
            }
            _ => error,
        }
    }

    /// 403: the caller may not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404: nothing by that name (or nothing the caller may know of).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409: the object changed since the caller read it, or already exists.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 422: well-formed but invalid, naming the field.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
            .with_details(serde_json::json!({ "field": field }))
    }

    /// 503: a service the server depends on is not available.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// 500: the server's own fault. The message is logged; the caller gets a reference only.
    pub fn internal(err: &dyn std::fmt::Display) -> Self {
        let reference = uuid::Uuid::now_v7();
        tracing::error!(%reference, error = %err, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("internal error; the server log has it under reference {reference}"),
        )
    }

    /// The same error as a warp rejection.
    pub fn reject(self) -> Rejection {
        warp::reject::custom(self)
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        if err.is_server_side() {
            tracing::warn!(error = %err, "cannot verify a token");
            Self::unavailable(format!("cannot verify tokens now: {err}"))
        } else {
            Self::unauthenticated(&err)
        }
    }
}

impl Reply for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let mut response =
            warp::reply::with_status(warp::reply::json(&self), status).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                warp::http::header::WWW_AUTHENTICATE,
                warp::http::HeaderValue::from_static("Bearer realm=\"stowage\""),
            );
        }
        response
    }
}

/// Turns any rejection into an [`ApiError`] reply; the last filter of the route tree.
pub async fn recover(rejection: Rejection) -> Result<ApiError, Infallible> {
    Ok(from_rejection(&rejection))
}

fn from_rejection(rejection: &Rejection) -> ApiError {
    use warp::reject;
    if let Some(err) = rejection.find::<ApiError>() {
        return err.clone();
    }
    if rejection.is_not_found() {
        return ApiError::not_found("no such route; see /v1/openapi.json for the routes");
    }
    if let Some(err) = rejection.find::<warp::filters::body::BodyDeserializeError>() {
        return ApiError::bad_request(format!(
            "the request body is not valid JSON for this route: {err}"
        ));
    }
    if let Some(err) = rejection.find::<reject::InvalidQuery>() {
        return ApiError::bad_request(format!("{err}"));
    }
    if let Some(err) = rejection.find::<reject::MissingHeader>() {
        return ApiError::bad_request(format!("missing header `{}`", err.name()));
    }
    if let Some(err) = rejection.find::<reject::InvalidHeader>() {
        return ApiError::bad_request(format!("invalid header `{}`", err.name()));
    }
    if rejection.find::<reject::PayloadTooLarge>().is_some() {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is too large",
        );
    }
    if rejection.find::<reject::UnsupportedMediaType>().is_some() {
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as application/json",
        );
    }
    if rejection.find::<reject::LengthRequired>().is_some() {
        return ApiError::new(
            StatusCode::LENGTH_REQUIRED,
            "length_required",
            "a Content-Length header is required",
        );
    }
    if rejection.find::<reject::MethodNotAllowed>().is_some() {
        return ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this route does not take that HTTP method",
        );
    }
    ApiError::internal(&format!("unhandled rejection: {rejection:?}"))
}
