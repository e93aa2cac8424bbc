//! Kubernetes API errors: each becomes a `Status` object with the reason and HTTP code a real
//! kube-apiserver gives, so that kubectl prints the same message and kube-rs sees the same
//! `ErrorResponse`. Also the error type of kubesim's start-up.

use serde_json::{Value, json};

/// A field that failed validation, reported in `details.causes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldCause {
    /// The field path, e.g. `metadata.name`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
    /// `causes[].reason`: `FieldValueInvalid` for most, `NamespaceTerminating`, ...
    pub reason: &'static str,
}

/// An error answered as a Kubernetes `Status`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} ({code}): {message}")]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `Status.reason`, e.g. `NotFound`.
    pub reason: &'static str,
    /// `Status.message`, what kubectl prints.
    pub message: String,
    /// `Status.details`, boxed to keep results small.
    pub details: Box<StatusDetails>,
}

/// The `details` of a `Status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusDetails {
    /// `details.name`.
    pub name: Option<String>,
    /// `details.group`.
    pub group: Option<String>,
    /// `details.kind` (the resource plural, as the real server puts it).
    pub kind: Option<String>,
    /// `details.causes`.
    pub causes: Vec<FieldCause>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: Box::default(),
        }
    }

    fn about(mut self, group: &str, plural: &str, name: &str) -> Self {
        self.details.group = (!group.is_empty()).then(|| group.to_string());
        self.details.kind = Some(plural.to_string());
        self.details.name = (!name.is_empty()).then(|| name.to_string());
        self
    }

    /// 404: `<resource> "<name>" not found`.
    pub fn not_found(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(group, plural)),
        )
        .about(group, plural, name)
    }

    /// 404 for a path or resource type the server does not serve.
    pub fn no_such_resource(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    /// 409: the object already exists.
    pub fn already_exists(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(group, plural)),
        )
        .about(group, plural, name)
    }

    /// 409: the update named an old resourceVersion.
    pub fn conflict(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                qualified(group, plural)
            ),
        )
        .about(group, plural, name)
    }

    /// 422: the object is invalid; `causes` name the fields.
    pub fn invalid(kind: &str, group: &str, name: &str, causes: Vec<FieldCause>) -> Self {
        let detail = causes
            .iter()
            .map(|cause| format!("{}: {}", cause.field, cause.message))
            .collect::<Vec<_>>()
            .join(", ");
        let mut error = Self::new(
            422,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {detail}"),
        );
        error.details.group = (!group.is_empty()).then(|| group.to_string());
        error.details.kind = Some(kind.to_string());
        error.details.name = (!name.is_empty()).then(|| name.to_string());
        error.details.causes = causes;
        error
    }

    /// 400 with a message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 405: the resource does not allow the verb.
    pub fn method_not_allowed(verb: &str, group: &str, plural: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!(
                "the server does not allow this method on the requested resource ({verb} {})",
                qualified(group, plural)
            ),
        )
        .about(group, plural, "")
    }

    /// 401: no or a wrong bearer token.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 410: a watch asked for a resourceVersion older than the kept history.
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 415: a body type the server does not read.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format: {content_type}"),
        )
    }

    /// 403: the namespace is being deleted.
    pub fn namespace_terminating(group: &str, plural: &str, name: &str, namespace: &str) -> Self {
        let mut error = Self::new(
            403,
            "Forbidden",
            format!(
                "{} \"{name}\" is forbidden: unable to create new content in namespace \
                 {namespace} because it is being terminated",
                qualified(group, plural)
            ),
        )
        .about(group, plural, name);
        error.details.causes.push(FieldCause {
            field: "metadata.namespace".into(),
            message: format!("namespace {namespace} is being terminated"),
            reason: "NamespaceTerminating",
        });
        error
    }

    /// 500 for a failure of kubesim itself (e.g. its state folder).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut details = serde_json::Map::new();
        if let Some(name) = &self.details.name {
            details.insert("name".into(), json!(name));
        }
        if let Some(group) = &self.details.group {
            details.insert("group".into(), json!(group));
        }
        if let Some(kind) = &self.details.kind {
            details.insert("kind".into(), json!(kind));
        }
        if !self.details.causes.is_empty() {
            let causes: Vec<Value> = self
                .details
                .causes
                .iter()
                .map(|cause| {
                    json!({"reason": cause.reason, "message": cause.message, "field": cause.field})
                })
                .collect();
            details.insert("causes".into(), Value::Array(causes));
        }
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if !details.is_empty() {
            status["details"] = Value::Object(details);
        }
        status
    }
}

fn qualified(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

/// Why kubesim could not start or keep its state.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Reading or writing the state folder failed.
    #[error("kubesim state folder {path}: {source}")]
    State {
        /// The file or folder.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line of the object journal could not be read back.
    #[error("kubesim journal {path} line {line}: {message}")]
    Journal {
        /// The journal file.
        path: std::path::PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Generating or loading the CA or the serving certificate failed.
    #[error("kubesim certificates: {0}")]
    Certificate(String),
    /// Creating the objects every cluster starts with failed.
    #[error("kubesim could not install the cluster's built-in objects: {0}")]
    Install(ApiError),
    /// Binding the listening socket failed.
    #[error("kubesim could not listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_names_the_qualified_resource() {
        let status = ApiError::not_found("apps", "deployments", "web").to_status();
        assert_eq!(status["message"], "deployments.apps \"web\" not found");
        assert_eq!(status["reason"], "NotFound");
        assert_eq!(status["code"], 404);
        assert_eq!(status["details"]["group"], "apps");
        assert_eq!(status["details"]["kind"], "deployments");
    }

    #[test]
    fn invalid_lists_field_causes() {
        let error = ApiError::invalid(
            "ConfigMap",
            "",
            "Bad_Name",
            vec![FieldCause {
                field: "metadata.name".into(),
                message: "Invalid value: \"Bad_Name\": must be lowercase".into(),
                reason: "FieldValueInvalid",
            }],
        );
        let status = error.to_status();
        assert_eq!(status["code"], 422);
        assert_eq!(status["details"]["causes"][0]["field"], "metadata.name");
        assert!(
            status["message"]
                .as_str()
                .unwrap()
                .starts_with("ConfigMap \"Bad_Name\" is invalid")
        );
    }
}
