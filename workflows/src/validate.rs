//! Field-level validation: every rejected input names the field (as a JSON path such as
//! `actions[1].command`) and says what is wrong with it.

use serde::Serialize;

/// One invalid field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Where, e.g. `spec.actions[0].timeout_seconds`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Collects the problems of one input.
#[derive(Debug, Default)]
pub struct Problems(Vec<FieldError>);

impl Problems {
    /// Records that `field` is invalid.
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// The problems found, or `Ok` when there are none.
    pub fn finish(self) -> Result<(), Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

/// The longest object name.
pub const MAX_NAME: usize = 63;

/// Checks a Kubernetes-style name (RFC 1123 label: lower-case letters, digits and `-`, starting
/// and ending with a letter or digit, at most 63 characters).
pub fn check_name(problems: &mut Problems, field: &str, name: &str) {
    if name.is_empty() {
        problems.add(field, "must not be empty");
    } else if name.len() > MAX_NAME {
        problems.add(
            field,
            format!("must be at most {MAX_NAME} characters, not {}", name.len()),
        );
    } else if !name
        .bytes()
        .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
        || name.starts_with('-')
        || name.ends_with('-')
    {
        problems.add(
            field,
            format!("`{name}` is not a valid name: use lower-case letters, digits and '-', starting and ending with a letter or digit"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_rfc_1123_labels() {
        for good in ["a", "mysql-prod", "0db", "a1-b2"] {
            let mut problems = Problems::default();
            check_name(&mut problems, "name", good);
            assert!(problems.finish().is_ok(), "{good}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "Upper",
            "under_score",
            "dot.ted",
            &"x".repeat(64),
        ] {
            let mut problems = Problems::default();
            check_name(&mut problems, "name", bad);
            let errors = problems.finish().unwrap_err();
            assert_eq!(errors[0].field, "name", "{bad}");
        }
    }
}
