//! HTTP request metrics as a tower layer: requests by resource, method and status, and a
//! latency histogram by resource and method.
//!
//! The resource label comes from a [`Classifier`] over the path that returns one of a fixed
//! set of names, never an id, so a scanner requesting random paths cannot grow the series.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::http::{Method, Request, Response};
use prometheus::{HistogramVec, IntCounterVec, Registry};

use crate::{build, latency_buckets, MetricsError};

/// Maps a request path to a bounded resource label.
pub type Classifier = fn(&str) -> &'static str;

/// Neutron v2.0 resources wyvern knows, and the label of everything else.
const NEUTRON_RESOURCES: &[&str] = &[
    "networks",
    "subnets",
    "ports",
    "routers",
    "extensions",
    "floatingips",
    "security-groups",
    "security-group-rules",
    "subnetpools",
    "quotas",
    "network-ip-availabilities",
    "agents",
    "availability_zones",
];

/// The resource of a Neutron path: `/v2.0/networks/<id>` -> `networks`,
/// `/v2.0/routers/<id>/add_router_interface` -> `routers`, `/` -> `versions`,
/// `/v2.0/` -> `root`, `/metrics` -> `metrics`, anything unknown -> `other`.
pub fn neutron_resource(path: &str) -> &'static str {
    let mut parts = path.split('/').filter(|s| !s.is_empty());
    let first = match parts.next() {
        None => return "versions",
        Some(p) => p,
    };
    let resource = if first == "v2.0" {
        match parts.next() {
            None => return "root",
            Some(p) => p,
        }
    } else if first == "metrics" {
        return "metrics";
    } else {
        first
    };
    let resource = resource.strip_suffix(".json").unwrap_or(resource);
    NEUTRON_RESOURCES
        .iter()
        .find(|r| **r == resource)
        .copied()
        .unwrap_or("other")
}

/// The method label: the standard methods by name, anything else `other`.
pub fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The request metrics of one HTTP service. Cheap to clone (shared handles).
#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    classify: Classifier,
}

impl HttpMetrics {
    /// Registers `<namespace>_requests_total{resource,method,status}` and
    /// `<namespace>_request_duration_seconds{resource,method}` in `registry`.
    /// wyvernd's Neutron API uses namespace `wyvern_api` and [`neutron_resource`].
    pub fn new(
        registry: &Registry,
        namespace: &str,
        classify: Classifier,
    ) -> Result<Self, MetricsError> {
        let requests = build::counter_vec(
            &format!("{namespace}_requests_total"),
            "HTTP requests answered, by resource, method and status code.",
            &["resource", "method", "status"],
        )?;
        let duration = build::histogram_vec(
            &format!("{namespace}_request_duration_seconds"),
            "Time from receiving an HTTP request to its response head, by resource and method.",
            &["resource", "method"],
            latency_buckets(),
        )?;
        registry
            .register(Box::new(requests.clone()))
            .map_err(MetricsError::Register)?;
        registry
            .register(Box::new(duration.clone()))
            .map_err(MetricsError::Register)?;
        Ok(HttpMetrics {
            requests,
            duration,
            classify,
        })
    }

    /// `new(registry, "wyvern_api", neutron_resource)`.
    pub fn neutron(registry: &Registry) -> Result<Self, MetricsError> {
        Self::new(registry, "wyvern_api", neutron_resource)
    }

    /// The layer to put around a router: `router.layer(metrics.layer())`.
    pub fn layer(&self) -> HttpMetricsLayer {
        HttpMetricsLayer {
            metrics: self.clone(),
        }
    }

    /// Records one answered request.
    pub fn observe(&self, resource: &str, method: &str, status: u16, elapsed: std::time::Duration) {
        let mut buf = [0u8; 3];
        let status = status_str(status, &mut buf);
        self.requests
            .with_label_values(&[resource, method, status])
            .inc();
        self.duration
            .with_label_values(&[resource, method])
            .observe(elapsed.as_secs_f64());
    }
}

/// Three-digit status without allocating; anything out of range is `000`.
fn status_str(status: u16, buf: &mut [u8; 3]) -> &str {
    let s = if (100..1000).contains(&status) {
        status
    } else {
        0
    };
    buf[0] = b'0' + (s / 100) as u8;
    buf[1] = b'0' + (s / 10 % 10) as u8;
    buf[2] = b'0' + (s % 10) as u8;
    std::str::from_utf8(buf).unwrap_or("000")
}

/// Tower layer recording [`HttpMetrics`] for every request of the wrapped service.
#[derive(Clone)]
pub struct HttpMetricsLayer {
    metrics: HttpMetrics,
}

impl<S> tower_layer::Layer<S> for HttpMetricsLayer {
    type Service = HttpMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpMetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service [`HttpMetricsLayer`] wraps around another.
#[derive(Clone)]
pub struct HttpMetricsService<S> {
    inner: S,
    metrics: HttpMetrics,
}

impl<S, B, RB> tower_service::Service<Request<B>> for HttpMetricsService<S>
where
    S: tower_service::Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    RB: 'static,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<RB>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let start = Instant::now();
        let resource = (self.metrics.classify)(req.uri().path());
        let method = method_label(req.method());
        let metrics = self.metrics.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await;
            // An error never reaches the client as a response here (axum's are
            // infallible); count it as the 500 the server would answer.
            let status = res.as_ref().map(|r| r.status().as_u16()).unwrap_or(500);
            metrics.observe(resource, method, status, start.elapsed());
            res
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_never_carry_ids() {
        let id = "0190f3c2-0000-7000-8000-000000000001";
        assert_eq!(
            neutron_resource(&format!("/v2.0/networks/{id}")),
            "networks"
        );
        assert_eq!(neutron_resource("/v2.0/networks.json"), "networks");
        assert_eq!(neutron_resource("/v2.0/ports"), "ports");
        assert_eq!(
            neutron_resource(&format!("/v2.0/routers/{id}/add_router_interface")),
            "routers"
        );
        assert_eq!(
            neutron_resource("/v2.0/extensions/allowed-address-pairs"),
            "extensions"
        );
        assert_eq!(neutron_resource("/"), "versions");
        assert_eq!(neutron_resource("/v2.0/"), "root");
        assert_eq!(neutron_resource(&format!("/v2.0/{id}")), "other");
        assert_eq!(neutron_resource("/../../etc/passwd"), "other");
    }

    #[test]
    fn status_labels_are_three_digits() {
        let mut b = [0u8; 3];
        assert_eq!(status_str(200, &mut b), "200");
        let mut b = [0u8; 3];
        assert_eq!(status_str(404, &mut b), "404");
        let mut b = [0u8; 3];
        assert_eq!(status_str(7, &mut b), "000");
    }
}
