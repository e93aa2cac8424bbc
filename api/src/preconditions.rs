//! Optimistic concurrency over HTTP for entity routes: the `ETag` an entity is answered with
//! (its version, `"<version>"`) and the `If-Match` header a change may carry instead of the
//! `version` field or parameter.
//!
//! `If-Match` is an HTTP precondition (RFC 9110 §13.1.1): when no tag in it is the current
//! version the answer is 412 Precondition Failed. The `version` field of a body is not one, and a
//! stale field keeps its 409 Conflict.

use warp::http::{HeaderValue, StatusCode};

use crate::error::ApiError;

/// The `ETag` of an entity at `version`: a strong tag, the version in quotes.
pub fn etag(version: u64) -> HeaderValue {
    // Invariant: digits between quotes are always a valid header value.
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// An `If-Match` header, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// `*`: any current version.
    Any,
    /// The versions named by strong tags (weak tags never match a strong comparison and are
    /// left out).
    Versions(Vec<u64>),
}

impl IfMatch {
    /// Reads the header's value: `*`, or a comma-separated list of entity tags (`"3"`,
    /// `W/"3"`). A strong tag that is not a version in quotes is a 400 naming the header.
    pub fn parse(value: &str) -> Result<Self, ApiError> {
        let value = value.trim();
        if value == "*" {
            return Ok(Self::Any);
        }
        let mut versions = Vec::new();
        for tag in value.split(',').map(str::trim) {
            if tag.starts_with("W/\"") && tag.len() > 3 && tag.ends_with('"') {
                continue;
            }
            let version = tag
                .strip_prefix('"')
                .and_then(|rest| rest.strip_suffix('"'))
                .and_then(|inner| inner.parse::<u64>().ok())
                .ok_or_else(|| malformed(value))?;
            versions.push(version);
        }
        Ok(Self::Versions(versions))
    }

    /// The version a change must be made at, given the entity is at `current`: `current` when
    /// the header matches it, otherwise a 412 telling the current version.
    pub fn version_to_change(&self, current: u64) -> Result<u64, ApiError> {
        match self {
            Self::Any => Ok(current),
            Self::Versions(versions) if versions.contains(&current) => Ok(current),
            Self::Versions(_) => Err(precondition_failed(current)),
        }
    }
}

fn malformed(value: &str) -> ApiError {
    ApiError::bad_request(format!(
        "`If-Match` takes `*` or entity tags such as `\"3\"` (an ETag of this API), not `{value}`"
    ))
    .with_details(serde_json::json!({ "header": "if-match" }))
}

/// 412: the entity is no longer at the version `If-Match` named.
pub fn precondition_failed(current: u64) -> ApiError {
    ApiError::new(
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
        format!(
            "`If-Match` names a version other than the current one ({current}): read it again and retry"
        ),
    )
    .with_details(serde_json::json!({ "header": "if-match", "current_version": current }))
}

/// The version a change is made at: the `If-Match` header's, or else `from_request` (the body's
/// field or the query parameter), or else `None`. Both given and naming different versions is a
/// 400: the request contradicts itself.
pub fn requested_version(
    if_match: Option<&str>,
    from_request: Option<u64>,
    current: u64,
) -> Result<Option<u64>, ApiError> {
    let Some(header) = if_match else {
        return Ok(from_request);
    };
    let version = IfMatch::parse(header)?.version_to_change(current)?;
    match from_request {
        Some(named) if named != version => Err(ApiError::bad_request(format!(
            "`If-Match` and `version` name different versions ({header} and {named}): give one"
        ))
        .with_details(serde_json::json!({ "header": "if-match", "field": "version" }))),
        _ => Ok(Some(version)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tags_are_read_and_compared_strongly() {
        assert_eq!(IfMatch::parse("*").unwrap(), IfMatch::Any);
        assert_eq!(
            IfMatch::parse("\"3\", W/\"4\", \"5\"").unwrap(),
            IfMatch::Versions(vec![3, 5])
        );
        assert_eq!(
            IfMatch::parse("\"3\"")
                .unwrap()
                .version_to_change(3)
                .unwrap(),
            3
        );
        assert_eq!(
            IfMatch::parse("*").unwrap().version_to_change(7).unwrap(),
            7
        );
        let stale = IfMatch::parse("W/\"3\"")
            .unwrap()
            .version_to_change(3)
            .unwrap_err();
        assert_eq!(stale.status, 412);
        assert_eq!(stale.details["current_version"], 3);
        for bad in ["3", "\"x\"", "\"3", ""] {
            let err = IfMatch::parse(bad).unwrap_err();
            assert_eq!(err.status, 400, "{bad}");
            assert_eq!(err.details["header"], "if-match", "{bad}");
        }
        assert_eq!(etag(12), "\"12\"");
    }

    #[test]
    fn the_header_and_the_field_must_agree() {
        assert_eq!(requested_version(None, Some(2), 5).unwrap(), Some(2));
        assert_eq!(requested_version(None, None, 5).unwrap(), None);
        assert_eq!(requested_version(Some("\"5\""), None, 5).unwrap(), Some(5));
        assert_eq!(
            requested_version(Some("\"5\""), Some(5), 5).unwrap(),
            Some(5)
        );
        assert_eq!(
            requested_version(Some("\"5\""), Some(4), 5)
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            requested_version(Some("\"4\""), None, 5)
                .unwrap_err()
                .status,
            412
        );
    }
}
