//! Which settings of an entity are secrets, and hiding them: kubeconfigs, passphrases, secret
//! keys, Azure keys and SAS tokens, service-account keys. Everything the server answers or
//! streams passes through [`redact`]; an update that sends [`REDACTED`] back for a secret keeps
//! the stored value ([`keep_unchanged_secrets`]), so a spec read, edited and written back works.

use serde_json::Value;

/// What a secret is shown as.
pub const REDACTED: &str = "<redacted>";

/// The field names whose values are secrets, in any kind's spec and at any depth.
pub const SECRET_FIELDS: &[&str] = &[
    "kubeconfig",
    "passphrase",
    "secret_access_key",
    "access_key",
    "sas",
    "service_account_key",
];

fn is_secret(field: &str) -> bool {
    SECRET_FIELDS.contains(&field)
}

/// Calls `visit` with the name and text of every secret string in `value`, at any depth, and
/// stops at its first error.
pub(crate) fn try_for_each_secret<E>(
    value: &mut Value,
    visit: &mut impl FnMut(&str, &mut String) -> Result<(), E>,
) -> Result<(), E> {
    match value {
        Value::Object(fields) => {
            for (name, field) in fields.iter_mut() {
                match field {
                    Value::String(text) if is_secret(name) => visit(name, text)?,
                    other => try_for_each_secret(other, visit)?,
                }
            }
            Ok(())
        }
        Value::Array(items) => items
            .iter_mut()
            .try_for_each(|item| try_for_each_secret(item, visit)),
        _ => Ok(()),
    }
}

/// Replaces every secret in `value` (an entity spec, or an event holding one) by [`REDACTED`].
pub fn redact(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            for (name, field) in fields.iter_mut() {
                if is_secret(name) && !field.is_null() {
                    *field = Value::String(REDACTED.to_string());
                } else {
                    redact(field);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// The secret strings in `value`, longest first: for scrubbing messages that might quote one.
pub fn secret_values(value: &Value) -> Vec<String> {
    fn collect(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(fields) => {
                for (name, field) in fields {
                    match field {
                        Value::String(text) if is_secret(name) && !text.is_empty() => {
                            found.push(text.clone())
                        }
                        other => collect(other, found),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| collect(item, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    collect(value, &mut found);
    found.sort_by_key(|text| std::cmp::Reverse(text.len()));
    found
}

/// `message` with every one of `secrets` replaced by [`REDACTED`].
pub fn scrub(message: &str, secrets: &[String]) -> String {
    secrets.iter().fold(message.to_string(), |message, secret| {
        message.replace(secret.as_str(), REDACTED)
    })
}

/// In a new spec, replaces each secret given as [`REDACTED`] by the value at the same place in
/// `stored` (the spec it replaces). A redacted secret with nothing stored stays as it is, and
/// validation then refuses it.
pub fn keep_unchanged_secrets(new: &mut Value, stored: &Value) {
    if let (Value::Object(fields), Value::Object(old)) = (new, stored) {
        for (name, field) in fields.iter_mut() {
            match old.get(name) {
                Some(previous) if is_secret(name) && field.as_str() == Some(REDACTED) => {
                    *field = previous.clone();
                }
                Some(previous) => keep_unchanged_secrets(field, previous),
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn secrets_are_hidden_at_any_depth_and_nothing_else() {
        let mut spec = json!({
            "location": {"kind": {"type": "azure", "account": "a", "auth": {"sas": "sv=1&sig=x"}}},
            "passphrase": "p",
            "list": [{"secret_access_key": "s", "bucket": "b"}],
            "kubeconfig": null,
        });
        redact(&mut spec);
        assert_eq!(
            spec,
            json!({
                "location": {"kind": {"type": "azure", "account": "a", "auth": {"sas": REDACTED}}},
                "passphrase": REDACTED,
                "list": [{"secret_access_key": REDACTED, "bucket": "b"}],
                "kubeconfig": null,
            })
        );
    }

    #[test]
    fn a_redacted_secret_sent_back_keeps_the_stored_one() {
        let stored = json!({"passphrase": "old", "location": {"kind": {"secret_access_key": "k"}}});
        let mut new =
            json!({"passphrase": REDACTED, "location": {"kind": {"secret_access_key": "n"}}});
        keep_unchanged_secrets(&mut new, &stored);
        assert_eq!(
            new,
            json!({"passphrase": "old", "location": {"kind": {"secret_access_key": "n"}}})
        );
    }
}
