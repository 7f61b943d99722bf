//! `wyvern status`: one host's health from wyvernd's `/metrics`, without a Prometheus.
//!
//! The text exposition format is parsed here (only what wyvernd emits: no timestamps
//! needed, escaped label values handled), then a handful of sums are printed.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::json;

/// Arguments of `wyvern status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// wyvernd's metrics endpoint (its `--metrics-listen`).
    #[arg(
        long,
        env = "WYVERN_METRICS_URL",
        default_value = "http://127.0.0.1:9464/metrics"
    )]
    pub metrics_url: String,
}

/// Failures of `wyvern status`.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("failed to GET {url}: {source}")]
    Fetch {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("failed to GET {url}: HTTP {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("failed to parse line {line} of the metrics: {text:?}")]
    Parse { line: usize, text: String },
}

/// One sample: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Every sample of one scrape.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub samples: Vec<Sample>,
}

impl Scrape {
    /// Parses the Prometheus text format (comments and blank lines skipped).
    pub fn parse(text: &str) -> Result<Scrape, StatusError> {
        let mut samples = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || StatusError::Parse {
                line: i + 1,
                text: line.to_owned(),
            };
            let (name, labels, rest) = match line.find('{') {
                Some(open) => {
                    let (labels, rest) = parse_labels(&line[open + 1..]).ok_or_else(bad)?;
                    (&line[..open], labels, rest)
                }
                None => {
                    let sp = line.find(' ').ok_or_else(bad)?;
                    (&line[..sp], BTreeMap::new(), &line[sp..])
                }
            };
            let value = rest.split_whitespace().next().ok_or_else(bad)?;
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().map_err(|_| bad())?,
            };
            samples.push(Sample {
                name: name.to_owned(),
                labels,
                value,
            });
        }
        Ok(Scrape { samples })
    }

    /// Distinct metric names (histogram parts keep their `_bucket`/`_sum`/`_count`).
    pub fn names(&self) -> std::collections::BTreeSet<&str> {
        self.samples.iter().map(|s| s.name.as_str()).collect()
    }

    /// Sum of `name` over the samples whose labels include every `(key, value)` of `with`.
    pub fn sum(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                with.iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    /// `name` summed by the values of label `by`.
    pub fn by(&self, name: &str, by: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for s in self.samples.iter().filter(|s| s.name == name) {
            let k = s.labels.get(by).cloned().unwrap_or_default();
            *out.entry(k).or_insert(0.0) += s.value;
        }
        out
    }

    /// Whether any sample of `name` exists.
    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }
}

/// Parses `k="v",k2="v2"} rest`; returns the labels and what follows the `}`.
fn parse_labels(s: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = rest.find('=')?;
        let key = rest[..eq].trim().to_owned();
        let mut chars = rest[eq + 1..].char_indices();
        if chars.next()?.1 != '"' {
            return None;
        }
        let mut value = String::new();
        let mut end = None;
        let mut escaped = false;
        for (i, c) in chars {
            match (escaped, c) {
                (true, 'n') => {
                    value.push('\n');
                    escaped = false;
                }
                (true, c) => {
                    value.push(c);
                    escaped = false;
                }
                (false, '\\') => escaped = true,
                (false, '"') => {
                    end = Some(eq + 1 + i + 1);
                    break;
                }
                (false, c) => value.push(c),
            }
        }
        rest = &rest[end?..];
        labels.insert(key, value);
    }
}

/// Fetches and parses `/metrics`.
pub async fn fetch(url: &str) -> Result<Scrape, StatusError> {
    let fetch = |source| StatusError::Fetch {
        url: url.to_owned(),
        source,
    };
    let res = reqwest::get(url).await.map_err(fetch)?;
    if !res.status().is_success() {
        return Err(StatusError::Status {
            url: url.to_owned(),
            status: res.status(),
        });
    }
    let text = res.text().await.map_err(fetch)?;
    Scrape::parse(&text)
}

/// The numbers `wyvern status` shows, as JSON (for `--json` and scripts).
pub fn summary_json(s: &Scrape) -> serde_json::Value {
    let of_connected = s.sum("wyvern_openflow_connected", &[]) > 0.0;
    json!({
        "version": s.samples.iter().find(|x| x.name == "wyvern_build_info")
            .and_then(|x| x.labels.get("version").cloned()),
        "process": {
            "cpu_seconds": s.sum("process_cpu_seconds_total", &[]),
            "resident_memory_bytes": s.sum("process_resident_memory_bytes", &[]),
            "open_fds": s.sum("process_open_fds", &[]),
        },
        "api": {
            "requests": s.sum("wyvern_api_requests_total", &[]),
            "errors_5xx": s.samples.iter()
                .filter(|x| x.name == "wyvern_api_requests_total"
                    && x.labels.get("status").is_some_and(|c| c.starts_with('5')))
                .map(|x| x.value).sum::<f64>(),
        },
        "store": {
            "revision": s.sum("wyvern_store_revision", &[]),
            "keys": s.by("wyvern_store_keys", "kind"),
            "watch_lag_revisions": s.sum("wyvern_store_watch_lag_revisions", &[]),
        },
        "pipeline": {
            "flows": s.sum("wyvern_pipeline_flows", &[]),
            "flows_by_stage": s.by("wyvern_pipeline_flows", "stage"),
            "flood_groups": s.sum("wyvern_pipeline_flood_groups", &[]),
            "bound_ports": s.sum("wyvern_port_bindings", &[]),
            "compiles": s.by("wyvern_pipeline_compiles_total", "kind"),
            "compiled_revision": s.sum("wyvern_pipeline_compiled_revision", &[]),
            "installed_revision": s.sum("wyvern_pipeline_installed_revision", &[]),
        },
        "sync": {
            "selective": s.sum("wyvern_sync_selective", &[]) > 0.0,
            "objects_held": s.by("wyvern_sync_objects_held", "kind"),
            "watches": s.sum("wyvern_sync_watches", &[]),
            "partitions": s.sum("wyvern_sync_partitions", &[]),
            "events": s.sum("wyvern_sync_events_total", &[]),
        },
        "openflow": {
            "connected": of_connected,
            "flow_mods": s.by("wyvern_openflow_flow_mods_total", "command"),
            "bundles": s.sum("wyvern_openflow_bundles_total", &[]),
            "errors": s.sum("wyvern_openflow_errors_total", &[]),
            "desired_flows": s.sum("wyvern_openflow_flows", &[("state", "desired")]),
            "installed_flows": s.sum("wyvern_openflow_flows", &[("state", "installed")]),
            "sync_differences": s.sum("wyvern_openflow_sync_differences", &[]),
        },
        "packet_in": {
            "by_reason": s.by("wyvern_packet_ins_total", "reason"),
            "drops": s.sum("wyvern_packet_in_drops_total", &[]),
        },
        "dhcp": {
            "messages": s.sum("wyvern_dhcp_messages_total", &[]),
            "replies": s.by("wyvern_dhcp_replies_total", "type"),
            "drops": s.sum("wyvern_dhcp_drops_total", &[]),
            "leases": s.sum("wyvern_dhcp_leases", &[]),
        },
        "reactive": {
            "installed": s.sum("wyvern_reactive_flows_installed_total", &[]),
            "expired": s.sum("wyvern_reactive_flows_expired_total", &[]),
        },
        "offload": {
            "active_targets": s.by("wyvern_offload_backend_active", "target")
                .into_iter().filter(|(_, v)| *v > 0.0).map(|(k, _)| k).collect::<Vec<_>>(),
            "rules": s.sum("wyvern_offload_rules", &[]),
            "refused": s.sum("wyvern_offload_rules_refused_total", &[]),
        },
    })
}

fn int(v: f64) -> String {
    format!("{}", v.round() as i64)
}

fn list(m: &BTreeMap<String, f64>) -> String {
    m.iter()
        .filter(|(_, v)| **v > 0.0)
        .map(|(k, v)| format!("{k} {}", int(*v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The human summary: one line per subsystem.
pub fn summary_text(s: &Scrape) -> String {
    let mut o = String::new();
    let version = s
        .samples
        .iter()
        .find(|x| x.name == "wyvern_build_info")
        .and_then(|x| x.labels.get("version").cloned())
        .unwrap_or_else(|| "?".into());
    let _ = writeln!(o, "wyvernd {version}");
    let _ = writeln!(
        o,
        "process    cpu {:.2} s, rss {:.1} MiB, open fds {}",
        s.sum("process_cpu_seconds_total", &[]),
        s.sum("process_resident_memory_bytes", &[]) / (1024.0 * 1024.0),
        int(s.sum("process_open_fds", &[]))
    );
    let total = s.sum("wyvern_api_requests_total", &[]);
    let e5 = s
        .samples
        .iter()
        .filter(|x| {
            x.name == "wyvern_api_requests_total"
                && x.labels.get("status").is_some_and(|c| c.starts_with('5'))
        })
        .map(|x| x.value)
        .sum::<f64>();
    let _ = writeln!(
        o,
        "api        {} requests, {} answered 5xx",
        int(total),
        int(e5)
    );
    let keys = s.by("wyvern_store_keys", "kind");
    let _ = writeln!(
        o,
        "store      revision {}, keys: {}; watch lag {} revisions",
        int(s.sum("wyvern_store_revision", &[])),
        keys.iter()
            .map(|(k, v)| format!("{} {k}s", int(*v)))
            .collect::<Vec<_>>()
            .join(", "),
        int(s.sum("wyvern_store_watch_lag_revisions", &[]))
    );
    if !s.has("wyvern_openflow_connected") {
        let _ = writeln!(o, "switch     none (wyvernd runs without --ovsdb)");
        return o;
    }
    let compiles = s.by("wyvern_pipeline_compiles_total", "kind");
    let _ = writeln!(
        o,
        "pipeline   {} flows ({}), {} flood groups, {} bound ports, compiles: {} full, {} incremental",
        int(s.sum("wyvern_pipeline_flows", &[])),
        list(&s.by("wyvern_pipeline_flows", "stage")),
        int(s.sum("wyvern_pipeline_flood_groups", &[])),
        int(s.sum("wyvern_port_bindings", &[])),
        int(compiles.get("full").copied().unwrap_or(0.0)),
        int(compiles.get("incremental").copied().unwrap_or(0.0)),
    );
    if s.has("wyvern_sync_selective") {
        let _ = writeln!(
            o,
            "sync       {}, held: {}; {} watches, {} network partitions",
            if s.sum("wyvern_sync_selective", &[]) > 0.0 {
                "selective"
            } else {
                "full"
            },
            list(&s.by("wyvern_sync_objects_held", "kind")),
            int(s.sum("wyvern_sync_watches", &[])),
            int(s.sum("wyvern_sync_partitions", &[])),
        );
    }
    let connected = s.sum("wyvern_openflow_connected", &[]) > 0.0;
    let _ = writeln!(
        o,
        "openflow   {}, {} desired / {} installed flows, {} sync differences, flow-mods: {}, {} bundles, {} errors",
        if connected { "connected" } else { "DISCONNECTED" },
        int(s.sum("wyvern_openflow_flows", &[("state", "desired")])),
        int(s.sum("wyvern_openflow_flows", &[("state", "installed")])),
        int(s.sum("wyvern_openflow_sync_differences", &[])),
        list(&s.by("wyvern_openflow_flow_mods_total", "command")),
        int(s.sum("wyvern_openflow_bundles_total", &[])),
        int(s.sum("wyvern_openflow_errors_total", &[])),
    );
    let _ = writeln!(
        o,
        "packet-in  {} ({}), {} dropped",
        int(s.sum("wyvern_packet_ins_total", &[])),
        list(&s.by("wyvern_packet_ins_total", "reason")),
        int(s.sum("wyvern_packet_in_drops_total", &[])),
    );
    let replies = s.by("wyvern_dhcp_replies_total", "type");
    let r = |k: &str| int(replies.get(k).copied().unwrap_or(0.0));
    let _ = writeln!(
        o,
        "dhcp       {} messages, {} offers, {} acks, {} naks, {} dropped, {} active leases",
        int(s.sum("wyvern_dhcp_messages_total", &[])),
        r("offer"),
        r("ack"),
        r("nak"),
        int(s.sum("wyvern_dhcp_drops_total", &[])),
        int(s.sum("wyvern_dhcp_leases", &[])),
    );
    let _ = writeln!(
        o,
        "reactive   {} routes installed, {} expired",
        int(s.sum("wyvern_reactive_flows_installed_total", &[])),
        int(s.sum("wyvern_reactive_flows_expired_total", &[])),
    );
    let active: Vec<String> = s
        .by("wyvern_offload_backend_active", "target")
        .into_iter()
        .filter(|(_, v)| *v > 0.0)
        .map(|(k, _)| k)
        .collect();
    if active.is_empty() {
        let _ = writeln!(o, "offload    no back end active");
    } else {
        let _ = writeln!(
            o,
            "offload    {}: {} rules, {} refused",
            active.join(", "),
            int(s.sum("wyvern_offload_rules", &[])),
            int(s.sum("wyvern_offload_rules_refused_total", &[])),
        );
    }
    o
}

/// Runs `wyvern status`.
pub async fn run(args: &StatusArgs, as_json: bool) -> Result<(), StatusError> {
    let scrape = fetch(&args.metrics_url).await?;
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary_json(&scrape)).unwrap_or_default()
        );
    } else {
        print!("{}", summary_text(&scrape));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_text_format() {
        let text = "# HELP x_total Things.\n# TYPE x_total counter\nx_total{a=\"1\",b=\"q\\\"uo,te\"} 3\ny 2.5\nz_bucket{le=\"+Inf\"} 4\n";
        let s = Scrape::parse(text).unwrap();
        assert_eq!(s.samples.len(), 3);
        assert_eq!(s.samples[0].labels["b"], "q\"uo,te");
        assert_eq!(s.sum("x_total", &[("a", "1")]), 3.0);
        assert_eq!(s.sum("x_total", &[("a", "2")]), 0.0);
        assert_eq!(s.sum("y", &[]), 2.5);
        assert!(Scrape::parse("x_total{a=\"1\" 3").is_err());
        assert!(Scrape::parse("x_total notanumber").is_err());
    }
}
