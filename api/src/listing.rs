//! The query parameters every listing takes (`after`, `limit`) and the filters each route adds,
//! read into a [`ListQuery`] (or, for the catalog's listings, a [`CatalogQuery`]) with a 400
//! naming any parameter that is wrong (a filter a route does not offer is wrong, never silently
//! ignored).

use std::collections::{BTreeMap, HashMap};

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
    /// `type` (of a workflow run), one of the given names.
    Type(&'static [&'static str]),
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
            Self::Type(_) => "type",
            Self::Cluster => "cluster",
            Self::Location => "location",
            Self::Name => "name",
            Self::Schedule => "schedule",
            Self::Backup => "backup",
            Self::Label => "label",
        }
    }

    /// The values it takes, when it takes only some.
    fn values(self) -> Option<&'static [&'static str]> {
        match self {
            Self::Status(values) | Self::Type(values) => Some(values),
            _ => None,
        }
    }
}

/// A listing's parameters, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Only items after this id (the previous page's `next_after`).
    pub after: Option<String>,
    /// At most this many.
    pub limit: usize,
    /// The filters given (but `label`), by parameter name.
    pub filters: BTreeMap<&'static str, String>,
    /// `label`'s pairs, all of which must match.
    pub labels: BTreeMap<String, String>,
}

impl ListQuery {
    /// The value given for the filter named `parameter`.
    pub fn filter(&self, parameter: &str) -> Option<&str> {
        self.filters.get(parameter).map(String::as_str)
    }
}

/// Reads `query`, which may hold `after`, `limit` and the filters `filters`.
pub fn list_query(
    query: &HashMap<String, String>,
    filters: &[Filter],
) -> Result<ListQuery, ApiError> {
    let mut parsed = ListQuery {
        limit: DEFAULT_LIMIT,
        ..ListQuery::default()
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
                if let Some(names) = filter.values()
                    && !names.contains(&value.as_str())
                {
                    let parameter = filter.parameter();
                    return Err(ApiError::bad_parameter(
                        parameter,
                        format!(
                            "`{parameter}` is one of {}, not `{value}`",
                            names.join(", ")
                        ),
                    ));
                }
                parsed.filters.insert(filter.parameter(), value.clone());
            }
        }
    }
    Ok(parsed)
}

/// Reads `query` with the filters `filters` for a listing of the catalog, which filters by
/// status, cluster, location, name, schedule, backup and label.
pub fn catalog_query(
    query: &HashMap<String, String>,
    filters: &[Filter],
) -> Result<CatalogQuery, ApiError> {
    let ListQuery {
        after,
        limit,
        mut filters,
        labels,
    } = list_query(query, filters)?;
    let mut take = |parameter: &str| filters.remove(parameter);
    Ok(CatalogQuery {
        status: take("status"),
        cluster: take("cluster"),
        location: take("location"),
        name: take("name"),
        schedule: take("schedule"),
        backup: take("backup"),
        labels,
        after,
        limit,
    })
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

    #[test]
    fn a_type_filter_takes_only_its_names() {
        let filters = [
            Filter::Type(&["backup", "restore"]),
            Filter::Status(&["failed"]),
        ];
        let parsed = list_query(
            &query(&[("type", "restore"), ("status", "failed"), ("after", "r1")]),
            &filters,
        )
        .unwrap();
        assert_eq!(parsed.filter("type"), Some("restore"));
        assert_eq!(parsed.filter("status"), Some("failed"));
        assert_eq!(parsed.after.as_deref(), Some("r1"));
        assert_eq!(parsed.limit, DEFAULT_LIMIT);
        let err = list_query(&query(&[("type", "sync")]), &filters).unwrap_err();
        assert_eq!(err.details["parameter"], "type");
        assert!(
            err.message
                .contains("`type` is one of backup, restore, not `sync`"),
            "{}",
            err.message
        );
        let err = list_query(&query(&[("label", "a=b")]), &filters).unwrap_err();
        assert_eq!(err.details["parameter"], "label");
        assert!(
            err.message
                .contains("this route takes after, limit, type, status"),
            "{}",
            err.message
        );
    }
}
