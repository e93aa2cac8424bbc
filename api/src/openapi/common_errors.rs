//! The error answers every operation of a kind can give, added to the document so that each
//! operation lists every status the server may answer it with (each with an [`ApiError`] body):
//! 401 and 503 for operations behind a bearer token, 400 for those that read parameters or a
//! body, 404 for those on an `{id}`, 403 for the changes, 413 for those with a body.
//! Statuses an operation's own annotation lists keep its wording.

use utoipa::Modify;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};

#[cfg(doc)]
use crate::error::ApiError;

/// Adds the common error answers to every operation.
pub(super) struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let on_id = path.contains("{id}");
            for (changes, operation) in [
                (false, item.get.as_mut()),
                (true, item.put.as_mut()),
                (true, item.post.as_mut()),
                (true, item.delete.as_mut()),
            ] {
                if let Some(operation) = operation {
                    add_errors(operation, on_id, changes);
                }
            }
        }
    }
}

fn add_errors(operation: &mut Operation, on_id: bool, changes: bool) {
    // An operation with `security(())` is public; one without its own inherits the bearer token.
    let secured = operation
        .security
        .as_ref()
        .is_none_or(|requirements| requirements.iter().any(|r| *r != Default::default()));
    let reads_input = operation.request_body.is_some()
        || operation
            .parameters
            .iter()
            .flatten()
            .any(|parameter| match parameter {
                RefOr::T(parameter) => parameter.parameter_in != ParameterIn::Path,
                RefOr::Ref(_) => true,
            });
    let has_body = operation.request_body.is_some();
    let mut add = |status: &str, description: &str| {
        operation
            .responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| error_response(description));
    };
    if secured {
        add("401", "No valid bearer token");
        add(
            "503",
            "Tokens cannot be verified now (the OIDC issuer does not answer)",
        );
    }
    if reads_input {
        add(
            "400",
            "The request cannot be read: a parameter, header or the body is malformed",
        );
    }
    if on_id && secured {
        add("404", "None you may see");
    }
    if changes && secured {
        add("403", "Your role or share does not allow this");
    }
    if has_body {
        add("413", "The body is larger than 1 MiB");
    }
}

fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ApiError")))
                    .build(),
            )
            .build(),
    )
}
