//! The service's Prometheus metrics (served on `/metrics` of the API port).

use wyvern_metrics::build;
use wyvern_metrics::prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, Registry};
use wyvern_metrics::MetricsError;

/// Counters and histograms of checkpoints and restores.
#[derive(Clone)]
pub struct Metrics {
    checkpoints: IntCounterVec,
    checkpoint_seconds: HistogramVec,
    checkpoint_bytes: IntCounter,
    restores: IntCounterVec,
    restore_seconds: Histogram,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> Result<Metrics, MetricsError> {
        let m = Metrics {
            checkpoints: build::counter_vec(
                "wyvern_checkpoints_total",
                "Checkpoints finished, by provider and result (available or error).",
                &["provider", "result"],
            )?,
            checkpoint_seconds: build::histogram_vec(
                "wyvern_checkpoint_duration_seconds",
                "Time from start to manifest write (or failure) of a checkpoint.",
                &["provider"],
                wyvern_metrics::latency_buckets(),
            )?,
            checkpoint_bytes: build::counter(
                "wyvern_checkpoint_written_bytes_total",
                "Bytes of data objects written to banks.",
            )?,
            restores: build::counter_vec(
                "wyvern_restores_total",
                "Restores finished, by result (success or fail).",
                &["result"],
            )?,
            restore_seconds: build::histogram(
                "wyvern_restore_duration_seconds",
                "Time of a restore, verification included.",
                wyvern_metrics::latency_buckets(),
            )?,
        };
        for c in [
            Box::new(m.checkpoints.clone()) as Box<dyn wyvern_metrics::prometheus::core::Collector>,
            Box::new(m.checkpoint_seconds.clone()),
            Box::new(m.checkpoint_bytes.clone()),
            Box::new(m.restores.clone()),
            Box::new(m.restore_seconds.clone()),
        ] {
            registry.register(c).map_err(MetricsError::Register)?;
        }
        Ok(m)
    }

    /// Metrics registered nowhere (library users and tests).
    pub fn unregistered() -> Result<Metrics, MetricsError> {
        Metrics::new(&Registry::new())
    }

    pub fn checkpoint_done(&self, provider: &str, ok: bool, seconds: f64, bytes: u64) {
        let result = if ok { "available" } else { "error" };
        self.checkpoints
            .with_label_values(&[provider, result])
            .inc();
        self.checkpoint_seconds
            .with_label_values(&[provider])
            .observe(seconds);
        self.checkpoint_bytes.inc_by(bytes);
    }

    pub fn restore_done(&self, ok: bool, seconds: f64) {
        let result = if ok { "success" } else { "fail" };
        self.restores.with_label_values(&[result]).inc();
        self.restore_seconds.observe(seconds);
    }
}
