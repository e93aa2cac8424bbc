//! `/metrics`: Prometheus text exposition of the API's requests (counts by route, method and
//! status; latencies by route), of the workflows the engine knows (runs by type and status) and
//! of what the runs did (step durations, bytes uploaded and restored: see [`runs`]).

mod runs;

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use stowage_engine::{Store, WORKFLOW_PROJECTION, run_counts};

/// Labels of a request counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

/// Labels of a latency histogram.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

/// Labels of the workflow gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkflowLabels {
    workflow: String,
    status: String,
}

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    workflows: Family<WorkflowLabels, Gauge>,
    runs: runs::RunMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric the server exports.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("stowage");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "api_requests",
            "API requests answered, by route, method and status",
            requests.clone(),
        );
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "api_request_duration_seconds",
            "Time to answer an API request, by route",
            latency.clone(),
        );
        let workflows = Family::<WorkflowLabels, Gauge>::default();
        registry.register(
            "workflow_runs",
            "Workflow runs recorded, by workflow type and status",
            workflows.clone(),
        );
        let runs = runs::RunMetrics::new(&mut registry);
        Self {
            registry,
            requests,
            latency,
            workflows,
            runs,
        }
    }

    /// Counts one answered request.
    pub fn observe_request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_string(),
                method: method.to_string(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                route: route.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// The exposition text, with workflow counts read from the store now and the events
    /// committed since the last call folded in.
    pub fn render(&self, store: &Store) -> Result<String, stowage_engine::Error> {
        self.runs.catch_up(store)?;
        if store.has_projection(WORKFLOW_PROJECTION) {
            self.workflows.clear();
            for count in run_counts(store)? {
                self.workflows
                    .get_or_create(&WorkflowLabels {
                        workflow: count.workflow,
                        status: count.status.as_str().to_string(),
                    })
                    .set(i64::try_from(count.runs).unwrap_or(i64::MAX));
            }
        }
        let mut text = String::new();
        // Writing to a String cannot fail; an error here would be a bug in the encoder.
        if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(error = %err, "cannot encode metrics");
        }
        Ok(text)
    }
}

/// The documented operation (method and route template, `{name}` matching one segment) a
/// request belongs to, so that metric labels stay few; `unmatched` for a request that is no
/// documented operation. A request the server answers (neither 404 nor 405) that comes out
/// `unmatched` is a served route missing from the OpenAPI document: the tests that drive the
/// server look for such series in `/metrics` and fail on them.
pub fn route_template(method: &str, path: &str) -> &'static str {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    crate::openapi::ROUTES
        .iter()
        .filter(|(documented, _)| documented.eq_ignore_ascii_case(method))
        .map(|(_, template)| *template)
        .find(|template| {
            let pattern: Vec<&str> = template.trim_matches('/').split('/').collect();
            pattern.len() == segments.len()
                && pattern
                    .iter()
                    .zip(&segments)
                    .all(|(want, got)| want.starts_with('{') || want == got)
        })
        .unwrap_or(UNMATCHED)
}

/// The route label of requests that are no documented operation.
pub const UNMATCHED: &str = "unmatched";

/// The series of `/metrics` text that count answered requests to no documented operation
/// (statuses other than 404 and 405): each is a served route the OpenAPI document lacks.
pub fn undocumented_routes(metrics_text: &str) -> Vec<&str> {
    let unmatched = format!("route=\"{UNMATCHED}\"");
    metrics_text
        .lines()
        .filter(|line| line.starts_with("stowage_api_requests_total{"))
        .filter(|line| line.contains(&unmatched))
        .filter(|line| !line.contains("status=\"404\"") && !line.contains("status=\"405\""))
        .collect()
}

/// The Prometheus exposition of the server's metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "meta",
    security(()),
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain")),
)]
pub(crate) fn metrics_reply(
    metrics: &Metrics,
    store: &Store,
) -> Result<impl warp::Reply + use<>, warp::Rejection> {
    metrics
        .render(store)
        .map(|text| {
            warp::reply::with_header(
                text,
                "content-type",
                "text/plain; version=0.0.4; charset=utf-8",
            )
        })
        .map_err(|err| crate::error::ApiError::internal(&err).reject())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_their_route_templates() {
        assert_eq!(route_template("GET", "/v1/events"), "/v1/events");
        assert_eq!(route_template("GET", "/v1/events/"), "/v1/events");
        assert_eq!(route_template("GET", "/healthz"), "/healthz");
        assert_eq!(route_template("GET", "/v1/nothing/here"), "unmatched");
        assert_eq!(
            route_template("POST", "/v1/backups/0199/retry"),
            "/v1/backups/{id}/retry"
        );
        // A documented path with a method it does not document is no operation.
        assert_eq!(route_template("PATCH", "/v1/backups/0199"), "unmatched");
    }

    #[test]
    fn answered_requests_to_no_documented_operation_are_found() {
        let text = "\
# TYPE stowage_api_requests_total counter
stowage_api_requests_total{route=\"/v1/events\",method=\"GET\",status=\"200\"} 3
stowage_api_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1
stowage_api_requests_total{route=\"unmatched\",method=\"PATCH\",status=\"405\"} 1
stowage_api_requests_total{route=\"unmatched\",method=\"GET\",status=\"200\"} 2
";
        assert_eq!(
            undocumented_routes(text),
            ["stowage_api_requests_total{route=\"unmatched\",method=\"GET\",status=\"200\"} 2"]
        );
    }
}
