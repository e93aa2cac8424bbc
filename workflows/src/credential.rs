//! Cloud credentials registered once and named by locations (`"credential": "<id>"`) instead of
//! inline keys: an S3 access key and secret, an Azure account key or SAS token, or a GCS
//! service-account key. This module owns the credential's spec and putting its keys into a
//! location spec when the location is used.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::entity::{Entities, EntityError, Kind};
use crate::location::LocationSpec;
use crate::storage::{AzureAuth, Secret};
use crate::validate::{FieldError, Problems};

/// A credential's settings: which store it is for, and its keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum CredentialSpec {
    /// An S3 (or S3-compatible) access key.
    S3 {
        /// The access key id.
        access_key_id: String,
        /// The secret access key.
        secret_access_key: Secret,
    },
    /// An Azure storage account's shared key or a SAS token.
    Azure {
        /// `{"access_key": ...}` or `{"sas": ...}`.
        auth: AzureAuth,
    },
    /// A Google service-account key, as the JSON document Google issues.
    Gcs {
        /// The key document.
        service_account_key: Secret,
    },
}

/// Why a location's credential could not be put in place.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The location spec, or the credential it names, is invalid; fields under `spec`.
    #[error("invalid location: {}", describe(.0))]
    Invalid(Vec<FieldError>),
    /// The entity store failed.
    #[error(transparent)]
    Store(#[from] EntityError),
}

fn describe(problems: &[FieldError]) -> String {
    problems
        .iter()
        .map(|problem| format!("{}: {}", problem.field, problem.message))
        .collect::<Vec<_>>()
        .join("; ")
}

fn problem(field: &str, message: impl Into<String>) -> Vec<FieldError> {
    vec![FieldError {
        field: field.to_string(),
        message: message.into(),
    }]
}

impl CredentialSpec {
    /// Reads and checks a spec, naming every invalid field (paths under `spec`).
    pub fn parse(spec: &Value) -> Result<Self, Vec<FieldError>> {
        let credential: Self =
            serde_json::from_value(spec.clone()).map_err(|err| problem("spec", err.to_string()))?;
        let mut problems = Problems::default();
        match &credential {
            Self::S3 {
                access_key_id,
                secret_access_key,
            } => {
                if access_key_id.trim().is_empty() {
                    problems.add("spec.access_key_id", "must not be empty");
                }
                if secret_access_key.expose().is_empty() {
                    problems.add("spec.secret_access_key", "must not be empty");
                }
            }
            Self::Azure { auth } => {
                let (field, value) = match auth {
                    AzureAuth::AccessKey(key) => ("spec.auth.access_key", key),
                    AzureAuth::Sas(sas) => ("spec.auth.sas", sas),
                };
                if value.expose().is_empty() {
                    problems.add(field, "must not be empty");
                }
            }
            Self::Gcs {
                service_account_key,
            } => {
                if serde_json::from_str::<serde_json::Map<String, Value>>(
                    service_account_key.expose(),
                )
                .is_err()
                {
                    problems.add(
                        "spec.service_account_key",
                        "must be the service-account key JSON document Google issues",
                    );
                }
            }
        }
        problems.finish().map(|()| credential)
    }

    /// The store type it is for, as in a location's `kind.type`.
    pub fn store_type(&self) -> &'static str {
        match self {
            Self::S3 { .. } => "s3",
            Self::Azure { .. } => "azure",
            Self::Gcs { .. } => "gcs",
        }
    }

    /// The location `kind` fields this credential fills.
    fn fields(&self) -> serde_json::Map<String, Value> {
        let value = serde_json::to_value(self).unwrap_or_default();
        match value {
            Value::Object(mut fields) => {
                fields.remove("type");
                fields
            }
            _ => serde_json::Map::new(),
        }
    }
}

/// The id of the credential a location spec names, if it names one.
pub fn named_credential(location_spec: &Value) -> Option<&str> {
    location_spec.get("credential").and_then(Value::as_str)
}

/// Reads a location spec, putting the keys of `credential` (the one it names, if any) in place of
/// the reference, and checks it. A spec that names a credential must not also carry the keys.
pub fn resolve(
    location_spec: &Value,
    credential: Option<&CredentialSpec>,
) -> Result<LocationSpec, Vec<FieldError>> {
    let mut spec = location_spec.clone();
    let named = spec
        .as_object_mut()
        .and_then(|fields| fields.remove("credential"));
    match (named, credential) {
        (None, None) => {}
        (Some(Value::String(_)), Some(credential)) => {
            let Some(kind) = spec
                .pointer_mut("/location/kind")
                .and_then(Value::as_object_mut)
            else {
                return Err(problem("spec.location.kind", "missing"));
            };
            let store_type = kind.get("type").and_then(Value::as_str).unwrap_or_default();
            if store_type != credential.store_type() {
                return Err(problem(
                    "spec.credential",
                    format!(
                        "the credential is for {} stores, the location is {}",
                        credential.store_type(),
                        if store_type.is_empty() {
                            "untyped"
                        } else {
                            store_type
                        }
                    ),
                ));
            }
            for (name, value) in credential.fields() {
                if kind.contains_key(&name) {
                    return Err(problem(
                        &format!("spec.location.kind.{name}"),
                        "give the keys inline or name a credential, not both",
                    ));
                }
                kind.insert(name, value);
            }
        }
        (Some(Value::String(id)), None) => {
            return Err(problem(
                "spec.credential",
                format!("there is no credential `{id}` you may use"),
            ));
        }
        (Some(_), _) => return Err(problem("spec.credential", "must be a credential's id")),
        (None, Some(_)) => {
            return Err(problem(
                "spec.credential",
                "a credential was given for a location that names none",
            ));
        }
    }
    LocationSpec::parse(&spec)
}

/// The location a stored location spec describes, with its credential (if it names one) read
/// from `entities`: what a backup or restore calls before it opens the repository.
pub fn resolve_location(entities: &Entities, spec: &Value) -> Result<LocationSpec, ResolveError> {
    let credential = match named_credential(spec) {
        None => None,
        Some(id) => match entities.get(Kind::Credential, id)? {
            None => None,
            Some(record) => {
                Some(CredentialSpec::parse(&record.spec).map_err(ResolveError::Invalid)?)
            }
        },
    };
    resolve(spec, credential.as_ref()).map_err(ResolveError::Invalid)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    fn s3_location() -> Value {
        json!({
            "location": {"kind": {"type": "s3", "bucket": "b", "region": "us-east-1"}, "prefix": "p"},
            "passphrase": "long enough",
            "credential": "c1",
        })
    }

    fn fields(result: Result<LocationSpec, Vec<FieldError>>) -> Vec<String> {
        result.unwrap_err().into_iter().map(|p| p.field).collect()
    }

    #[test]
    fn a_credential_fills_the_keys_of_a_location_of_its_type() {
        let s3 = CredentialSpec::parse(
            &json!({"type": "s3", "access_key_id": "AK", "secret_access_key": "SK"}),
        )
        .unwrap();
        let location = resolve(&s3_location(), Some(&s3)).unwrap();
        match location.location.kind {
            crate::storage::LocationKind::S3 {
                access_key_id,
                secret_access_key,
                ..
            } => assert_eq!(
                (access_key_id.as_str(), secret_access_key.expose()),
                ("AK", "SK")
            ),
            other => panic!("{other:?}"),
        }
        let gcs = CredentialSpec::parse(
            &json!({"type": "gcs", "service_account_key": "{\"type\": \"service_account\"}"}),
        )
        .unwrap();
        assert_eq!(
            fields(resolve(&s3_location(), Some(&gcs))),
            ["spec.credential"]
        );
        assert_eq!(fields(resolve(&s3_location(), None)), ["spec.credential"]);
        let mut both = s3_location();
        both["location"]["kind"]["secret_access_key"] = json!("inline");
        assert_eq!(
            fields(resolve(&both, Some(&s3))),
            ["spec.location.kind.secret_access_key"]
        );
    }

    #[test]
    fn credential_specs_name_their_bad_fields() {
        let bad = |spec: Value| -> Vec<String> {
            CredentialSpec::parse(&spec)
                .unwrap_err()
                .into_iter()
                .map(|p| p.field)
                .collect()
        };
        assert_eq!(
            bad(json!({"type": "s3", "access_key_id": "", "secret_access_key": "x"})),
            ["spec.access_key_id"]
        );
        assert_eq!(
            bad(json!({"type": "azure", "auth": {"sas": ""}})),
            ["spec.auth.sas"]
        );
        assert_eq!(
            bad(json!({"type": "gcs", "service_account_key": "not json"})),
            ["spec.service_account_key"]
        );
        assert_eq!(bad(json!({"type": "ftp"})), ["spec"]);
    }
}
