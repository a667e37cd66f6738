//! Step 15's `/_proxy/metrics`: what Prometheus (or anyone with `curl`)
//! scrapes, in its text format, written by the `prometheus-client` crate.
//! Kit: counting is a few lines in the step; the format is this crate's.
//!
//! - `proxy_requests_total{rule, class}`: by the rule that answered (`line
//!   N` of the routes, `app NAME`, `none`) and status class (`2xx`…);
//! - `proxy_request_duration_seconds`: until the response head, a histogram;
//! - `proxy_upstream_errors_total{status}`: the 502s and 504s the proxy made;
//! - `proxy_open_connections`;
//! - `proxy_apps{state}`: how many apps are in each state, when scraped.
//!
//! Like `/_proxy/apps`: only with the admin token, only on hosts outside
//! the apps' domain.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode, header};
use std::fmt::Write;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use workshop::body::{Body, full, text};

use crate::apps::{Apps, State};
use crate::apps_api::authorized;

type Labels = Vec<(&'static str, String)>;

/// `proxy_requests_total`'s labels: built for every request, so nothing in
/// them is formatted until a scrape writes them.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    rule: Answerer,
    class: StatusClass,
}

/// Who answered a request: a rule of the routes (by its line), an app, or
/// the proxy itself (no rule: the label says `none`).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub enum Answerer {
    Line(usize),
    App(Arc<str>),
    Proxy,
}

impl EncodeLabelValue for Answerer {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        match self {
            Answerer::Line(line) => write!(encoder, "line {line}"),
            Answerer::App(name) => write!(encoder, "app {name}"),
            Answerer::Proxy => encoder.write_str("none"),
        }
    }
}

/// `2xx`, `5xx`…: the status's first digit.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct StatusClass(u16);

impl StatusClass {
    fn of(status: StatusCode) -> StatusClass {
        StatusClass(status.as_u16() / 100)
    }
}

impl EncodeLabelValue for StatusClass {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        write!(encoder, "{}xx", self.0)
    }
}

/// The proxy's counters; cheap to share (`Arc` inside each metric).
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Histogram,
    upstream_errors: Family<Labels, Counter>,
    open_connections: Gauge,
    apps: Family<Labels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        // 1 ms to about 16 s, doubling.
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        let upstream_errors = Family::<Labels, Counter>::default();
        let open_connections = Gauge::default();
        let apps = Family::<Labels, Gauge>::default();
        registry.register(
            "proxy_requests",
            "Requests, by the rule that answered and status class",
            requests.clone(),
        );
        registry.register(
            "proxy_request_duration_seconds",
            "Time to the response head",
            duration.clone(),
        );
        registry.register(
            "proxy_upstream_errors",
            "502 and 504 answers the proxy made",
            upstream_errors.clone(),
        );
        registry.register(
            "proxy_open_connections",
            "Client connections open now",
            open_connections.clone(),
        );
        registry.register("proxy_apps", "Apps in each state", apps.clone());
        Metrics {
            registry,
            requests,
            duration,
            upstream_errors,
            open_connections,
            apps,
        }
    }
}

impl Metrics {
    /// One response head, answered by `rule`, after `took`.
    pub fn count(&self, rule: Answerer, status: StatusCode, took: Duration) {
        let labels = RequestLabels {
            rule,
            class: StatusClass::of(status),
        };
        self.requests.get_or_create(&labels).inc();
        self.duration.observe(took.as_secs_f64());
    }

    /// A 502 or 504 the proxy made.
    pub fn upstream_error(&self, status: StatusCode) {
        self.upstream_errors
            .get_or_create(&vec![("status", status.as_u16().to_string())])
            .inc();
    }

    /// `/_proxy/metrics` for whoever has the token, `401` otherwise; the
    /// gauges are read now: the connections open, the apps in each state.
    pub fn answer<B>(
        &self,
        open_connections: usize,
        apps: &Apps,
        token: &str,
        request: &Request<B>,
    ) -> Response<Body> {
        if !authorized(request, token) {
            return text(
                StatusCode::UNAUTHORIZED,
                "401 Unauthorized: /_proxy/metrics needs `Authorization: Bearer TOKEN`",
            );
        }
        self.open_connections
            .set(i64::try_from(open_connections).unwrap_or(i64::MAX));
        for state in [
            State::Asleep,
            State::Starting,
            State::Awake,
            State::Stopping,
        ] {
            let count = apps
                .registry()
                .apps
                .values()
                .filter(|app| app.state() == state)
                .count();
            self.apps
                .get_or_create(&vec![("state", state.to_string())])
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        let mut body = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut body, &self.registry) {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("500 Internal Server Error: the metrics: {err}"),
            );
        }
        let mut response = Response::new(full(body));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ),
        );
        response
    }
}
