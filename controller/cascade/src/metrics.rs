//! The cascade's metrics on the process registry (wyvern-metrics): jobs by type and outcome,
//! retries, pods up, and the ledger's jobs by status, pods and routings read at scrape time.
//! Served at `/metrics` on the admin listener, with the HTTP request metrics of both APIs.

use std::sync::Arc;

use wyvern_metrics::prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Registry};
use wyvern_metrics::{build, MetricsError, OnScrape};

use crate::state::{JobStatus, Ledger};

/// Cheap to clone; every clone counts into the same metrics.
#[derive(Clone)]
pub struct Metrics {
    jobs: IntCounterVec,
    retries: IntCounterVec,
    pods_up: IntGaugeVec,
}

impl Metrics {
    /// Creates the metrics and registers them (plus the ledger gauges) on `registry`.
    pub fn register(registry: &Registry, ledger: Arc<Ledger>) -> Result<Metrics, MetricsError> {
        let m = Metrics {
            jobs: build::counter_vec(
                "wyvern_cascade_jobs_total",
                "Jobs queued and finished, by type and outcome (queued, success, fail).",
                &["type", "outcome"],
            )?,
            retries: build::counter_vec(
                "wyvern_cascade_job_retries_total",
                "Job attempts that could not reach their pod.",
                &["type"],
            )?,
            pods_up: build::gauge_vec(
                "wyvern_cascade_pod_up",
                "1 if the pod's API answered the last status poll.",
                &["region"],
            )?,
        };
        let by_status = build::gauge_vec(
            "wyvern_cascade_jobs",
            "Jobs in the ledger, by status and type.",
            &["status", "type"],
        )?;
        let pods = build::gauge("wyvern_cascade_pods", "Pods registered.")?;
        let routings = build::gauge(
            "wyvern_cascade_routings",
            "Routings (top id to bottom id per pod).",
        )?;
        let (g_status, g_pods, g_routings): (IntGaugeVec, IntGauge, IntGauge) =
            (by_status.clone(), pods.clone(), routings.clone());
        let scrape = OnScrape::new(
            vec![Box::new(by_status), Box::new(pods), Box::new(routings)],
            move || {
                // Never block a scrape on the ledger: a busy ledger keeps the last values.
                let Some(s) = ledger.try_read() else { return };
                g_status.reset();
                for j in s.jobs.values() {
                    let st = match j.status {
                        JobStatus::New => "new",
                        JobStatus::Running => "running",
                        JobStatus::Success => "success",
                        JobStatus::Fail => "fail",
                    };
                    g_status.with_label_values(&[st, &j.job_type]).inc();
                }
                g_pods.set(s.pods.len() as i64);
                g_routings.set(s.routings.len() as i64);
            },
        );
        for c in [
            Box::new(m.jobs.clone()) as Box<dyn wyvern_metrics::prometheus::core::Collector>,
            Box::new(m.retries.clone()),
            Box::new(m.pods_up.clone()),
            Box::new(scrape),
        ] {
            registry.register(c).map_err(MetricsError::Register)?;
        }
        Ok(m)
    }

    pub fn job_queued(&self, job_type: &str) {
        self.jobs.with_label_values(&[job_type, "queued"]).inc();
    }
    pub fn job_done(&self, job_type: &str, outcome: &'static str) {
        self.jobs.with_label_values(&[job_type, outcome]).inc();
    }
    pub fn retry(&self, job_type: &str) {
        self.retries.with_label_values(&[job_type]).inc();
    }
    pub fn pod_up(&self, region: &str, up: bool) {
        self.pods_up.with_label_values(&[region]).set(i64::from(up));
    }
}
