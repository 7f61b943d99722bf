//! Prometheus metrics for wyvern services: one registry per process, `/metrics`, and a tower
//! layer that counts and times HTTP requests by resource, method and status.
//!
//! Conventions every service follows (checked by `promtool check metrics` in wyvernd's
//! tests): names start with `wyvern_`, carry base units (`_seconds`, `_bytes`), counters end
//! in `_total`, every metric has help text, and no label takes a value per port, network or
//! request id, so the number of series stays flat as a host grows.
//!
//! Values that already live in atomics elsewhere are read at scrape time ([`OnScrape`]),
//! never pushed from hot paths.

#[cfg(feature = "http")]
mod http;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Encoder, IntCounter, Registry, TextEncoder};

#[cfg(feature = "http")]
pub use http::{
    method_label, neutron_resource, Classifier, HttpMetrics, HttpMetricsLayer, HttpMetricsService,
};
/// Re-exported so that every service uses the same version of the crate.
pub use prometheus;

/// Content type of the text exposition format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Errors of metric registration and encoding.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("failed to create metric {name}: {source}")]
    Create {
        name: String,
        #[source]
        source: prometheus::Error,
    },
    #[error("failed to register metrics: {0}")]
    Register(#[source] prometheus::Error),
    #[error("failed to encode metrics: {0}")]
    Encode(#[source] prometheus::Error),
}

/// A new registry with the process collector (CPU, RSS, open fds, start time) registered.
/// Create one per process and pass it to every component that exports metrics.
pub fn new_registry() -> Result<Registry, MetricsError> {
    let registry = Registry::new();
    #[cfg(all(feature = "http", target_os = "linux"))]
    registry
        .register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .map_err(MetricsError::Register)?;
    Ok(registry)
}

/// Encodes every metric of `registry` in the Prometheus text format.
pub fn encode(registry: &Registry) -> Result<String, MetricsError> {
    let families = registry.gather();
    let mut buf = Vec::with_capacity(16 * 1024);
    TextEncoder::new()
        .encode(&families, &mut buf)
        .map_err(MetricsError::Encode)?;
    // The text encoder writes only UTF-8 (names, label values and help are `String`s).
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

#[cfg(feature = "http")]
/// A router serving `GET /metrics` from `registry` (text format). Merge it into a service's
/// own router, or serve it alone on a separate listener.
pub fn metrics_router(registry: Registry) -> axum::Router {
    use axum::http::header::CONTENT_TYPE;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let registry = std::sync::Arc::new(registry);
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let registry = registry.clone();
            async move {
                match encode(&registry) {
                    Ok(text) => {
                        (StatusCode::OK, [(CONTENT_TYPE, TEXT_CONTENT_TYPE)], text).into_response()
                    }
                    Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
                }
            }
        }),
    )
}

/// Serves [`metrics_router`] alone on `listener` (a service's separate metrics port).
#[cfg(feature = "http")]
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Registry,
) -> Result<(), std::io::Error> {
    axum::serve(listener, metrics_router(registry)).await
}

/// A collector whose values are refreshed from elsewhere (atomics, snapshots) right before
/// each scrape: `refresh` runs once per scrape and sets the wrapped metrics, which are then
/// collected. Register the `OnScrape`, not the wrapped metrics.
pub struct OnScrape {
    metrics: Vec<Box<dyn Collector>>,
    refresh: Box<dyn Fn() + Send + Sync>,
}

impl OnScrape {
    pub fn new(
        metrics: Vec<Box<dyn Collector>>,
        refresh: impl Fn() + Send + Sync + 'static,
    ) -> Self {
        OnScrape {
            metrics,
            refresh: Box::new(refresh),
        }
    }
}

impl Collector for OnScrape {
    fn desc(&self) -> Vec<&Desc> {
        self.metrics.iter().flat_map(|m| m.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        (self.refresh)();
        self.metrics.iter().flat_map(|m| m.collect()).collect()
    }
}

/// Moves a counter up to `value` (a monotonic total read from an atomic). A smaller value
/// (the source restarted) leaves the counter where it is: counters never go down.
pub fn set_counter(counter: &IntCounter, value: u64) {
    let now = counter.get();
    if value > now {
        counter.inc_by(value - now);
    }
}

/// Shorthands that turn the crate's errors into [`MetricsError`] with the metric's name.
pub mod build {
    use prometheus::{
        HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    };

    use crate::MetricsError;

    fn err(name: &str) -> impl FnOnce(prometheus::Error) -> MetricsError + '_ {
        move |source| MetricsError::Create {
            name: name.to_owned(),
            source,
        }
    }

    pub fn counter(name: &str, help: &str) -> Result<IntCounter, MetricsError> {
        IntCounter::with_opts(Opts::new(name, help)).map_err(err(name))
    }

    pub fn counter_vec(
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntCounterVec, MetricsError> {
        IntCounterVec::new(Opts::new(name, help), labels).map_err(err(name))
    }

    pub fn gauge(name: &str, help: &str) -> Result<IntGauge, MetricsError> {
        IntGauge::with_opts(Opts::new(name, help)).map_err(err(name))
    }

    pub fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> Result<IntGaugeVec, MetricsError> {
        IntGaugeVec::new(Opts::new(name, help), labels).map_err(err(name))
    }

    pub fn float_gauge(name: &str, help: &str) -> Result<prometheus::Gauge, MetricsError> {
        prometheus::Gauge::with_opts(Opts::new(name, help)).map_err(err(name))
    }

    pub fn histogram_vec(
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: Vec<f64>,
    ) -> Result<HistogramVec, MetricsError> {
        HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
            .map_err(err(name))
    }

    pub fn histogram(
        name: &str,
        help: &str,
        buckets: Vec<f64>,
    ) -> Result<prometheus::Histogram, MetricsError> {
        prometheus::Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
            .map_err(err(name))
    }
}

/// Latency buckets from 100 µs to 10 s, for requests and control-plane operations.
pub fn latency_buckets() -> Vec<f64> {
    vec![
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0,
    ]
}
