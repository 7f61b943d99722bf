//! The cascade's metrics: jobs by type and outcome, retries, pods up, and jobs by status
//! read from the ledger at scrape time. Exposed at `/metrics` on the admin listener in the
//! Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};

use crate::state::{JobStatus, Ledger};

#[derive(Default)]
struct Counters {
    /// (type, outcome) -> count; outcome is `queued`, `success` or `fail`.
    jobs: BTreeMap<(String, &'static str), u64>,
    retries: BTreeMap<String, u64>,
    pods_up: BTreeMap<String, bool>,
}

/// Cheap to clone; every clone counts into the same numbers.
#[derive(Clone, Default)]
pub struct Metrics(Arc<Mutex<Counters>>);

impl Metrics {
    fn with(&self, f: impl FnOnce(&mut Counters)) {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()));
    }
    pub fn job_queued(&self, job_type: &str) {
        self.with(|c| *c.jobs.entry((job_type.to_owned(), "queued")).or_default() += 1);
    }
    pub fn job_done(&self, job_type: &str, outcome: &'static str) {
        self.with(|c| *c.jobs.entry((job_type.to_owned(), outcome)).or_default() += 1);
    }
    pub fn retry(&self, job_type: &str) {
        self.with(|c| *c.retries.entry(job_type.to_owned()).or_default() += 1);
    }
    pub fn pod_up(&self, region: &str, up: bool) {
        self.with(|c| {
            c.pods_up.insert(region.to_owned(), up);
        });
    }

    /// The text exposition of every metric.
    pub async fn render(&self, ledger: &Ledger) -> String {
        let by_status = ledger
            .read(|s| {
                let mut m: BTreeMap<(&'static str, String), u64> = BTreeMap::new();
                for j in s.jobs.values() {
                    let st = match j.status {
                        JobStatus::New => "new",
                        JobStatus::Running => "running",
                        JobStatus::Success => "success",
                        JobStatus::Fail => "fail",
                    };
                    *m.entry((st, j.job_type.clone())).or_default() += 1;
                }
                (m, s.pods.len(), s.routings.len())
            })
            .await;
        let c = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        let _ = writeln!(out, "# HELP wyvern_cascade_jobs_total Jobs queued and finished, by type and outcome.\n# TYPE wyvern_cascade_jobs_total counter");
        for ((t, o), n) in &c.jobs {
            let _ = writeln!(
                out,
                "wyvern_cascade_jobs_total{{type=\"{t}\",outcome=\"{o}\"}} {n}"
            );
        }
        let _ = writeln!(out, "# HELP wyvern_cascade_job_retries_total Job attempts that could not reach their pod.\n# TYPE wyvern_cascade_job_retries_total counter");
        for (t, n) in &c.retries {
            let _ = writeln!(out, "wyvern_cascade_job_retries_total{{type=\"{t}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP wyvern_cascade_jobs Jobs in the ledger, by status and type.\n# TYPE wyvern_cascade_jobs gauge");
        for ((st, t), n) in &by_status.0 {
            let _ = writeln!(
                out,
                "wyvern_cascade_jobs{{status=\"{st}\",type=\"{t}\"}} {n}"
            );
        }
        let _ = writeln!(out, "# HELP wyvern_cascade_pods Pods registered.\n# TYPE wyvern_cascade_pods gauge\nwyvern_cascade_pods {}", by_status.1);
        let up = c.pods_up.values().filter(|u| **u).count();
        let _ = writeln!(out, "# HELP wyvern_cascade_pods_up Pods whose API answered the last status poll.\n# TYPE wyvern_cascade_pods_up gauge\nwyvern_cascade_pods_up {up}");
        let _ = writeln!(out, "# HELP wyvern_cascade_routings Routings (top id to bottom id per pod).\n# TYPE wyvern_cascade_routings gauge\nwyvern_cascade_routings {}", by_status.2);
        out
    }
}
