//! The query parameters every catalog listing takes (`after`, `limit`) and the filters each
//! route adds, read into a [`CatalogQuery`] with a 400 naming any parameter that is wrong (a
//! filter a route does not offer is wrong, never silently ignored).

use std::collections::HashMap;

use stowage_workflows::catalog::CatalogQuery;

use crate::error::ApiError;

/// Items on a page unless `limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 100;
/// The most items on a page.
pub const MAX_LIMIT: usize = 1000;

/// A filter a route accepts besides `after` and `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// `status`, one of the given names.
    Status(&'static [&'static str]),
    /// `cluster`.
    Cluster,
    /// `location`.
    Location,
    /// `name`.
    Name,
    /// `schedule`.
    Schedule,
    /// `backup`.
    Backup,
    /// `label`: `key=value[,key=value]`, all of which must match.
    Label,
}

impl Filter {
    fn parameter(self) -> &'static str {
        match self {
            Self::Status(_) => "status",
            Self::Cluster => "cluster",
            Self::Location => "location",
            Self::Name => "name",
            Self::Schedule => "schedule",
            Self::Backup => "backup",
            Self::Label => "label",
        }
    }
}

/// Reads `query` with the filters `filters`.
pub fn catalog_query(
    query: &HashMap<String, String>,
    filters: &[Filter],
) -> Result<CatalogQuery, ApiError> {
    let mut parsed = CatalogQuery {
        limit: DEFAULT_LIMIT,
        ..CatalogQuery::default()
    };
    for (name, value) in query {
        match name.as_str() {
            "after" => parsed.after = Some(value.clone()),
            "limit" => {
                parsed.limit = value
                    .parse()
                    .ok()
                    .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                    .ok_or_else(|| {
                        ApiError::bad_parameter(
                            "limit",
                            format!("`limit` must be between 1 and {MAX_LIMIT}, not `{value}`"),
                        )
                    })?
            }
            "label" if filters.contains(&Filter::Label) => {
                for pair in value.split(',') {
                    let (key, value) = pair.split_once('=').ok_or_else(|| {
                        ApiError::bad_parameter(
                            "label",
                            format!(
                                "`label` takes key=value pairs separated by commas, not `{pair}`"
                            ),
                        )
                    })?;
                    parsed.labels.insert(key.to_string(), value.to_string());
                }
            }
            other => {
                let Some(filter) = filters.iter().find(|filter| filter.parameter() == other) else {
                    let mut known = vec!["after", "limit"];
                    known.extend(filters.iter().map(|filter| filter.parameter()));
                    return Err(ApiError::bad_parameter(
                        other,
                        format!(
                            "unknown parameter `{other}`; this route takes {}",
                            known.join(", ")
                        ),
                    ));
                };
                if let Filter::Status(names) = filter
                    && !names.contains(&value.as_str())
                {
                    return Err(ApiError::bad_parameter(
                        "status",
                        format!("`status` is one of {}, not `{value}`", names.join(", ")),
                    ));
                }
                let value = Some(value.clone());
                match filter {
                    Filter::Status(_) => parsed.status = value,
                    Filter::Cluster => parsed.cluster = value,
                    Filter::Location => parsed.location = value,
                    Filter::Name => parsed.name = value,
                    Filter::Schedule => parsed.schedule = value,
                    Filter::Backup => parsed.backup = value,
                    // Read above, before any filter that takes one value.
                    Filter::Label => {}
                }
            }
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn filters_are_read_and_wrong_ones_named() {
        let filters = [
            Filter::Status(&["running", "failed"]),
            Filter::Cluster,
            Filter::Label,
        ];
        let parsed = catalog_query(
            &query(&[
                ("status", "failed"),
                ("cluster", "c1"),
                ("limit", "5"),
                ("label", "app=web,tier=db"),
            ]),
            &filters,
        )
        .unwrap();
        assert_eq!(parsed.status.as_deref(), Some("failed"));
        assert_eq!(parsed.cluster.as_deref(), Some("c1"));
        assert_eq!(parsed.limit, 5);
        assert_eq!(parsed.labels.len(), 2);
        for (bad, parameter) in [
            (("status", "done"), "status"),
            (("limit", "0"), "limit"),
            (("limit", "x"), "limit"),
            (("label", "app"), "label"),
            (("location", "l"), "location"),
        ] {
            let err = catalog_query(&query(&[bad]), &filters).unwrap_err();
            assert_eq!(err.status, 400, "{bad:?}");
            assert_eq!(err.details["parameter"], parameter, "{bad:?}");
        }
        // A route without labels names `label` as unknown instead of ignoring it.
        let err = catalog_query(&query(&[("label", "app=web")]), &filters[..2]).unwrap_err();
        assert_eq!(err.details["parameter"], "label");
        assert!(
            err.message.contains("unknown parameter `label`"),
            "{}",
            err.message
        );
    }
}
