//! The shipped dashboards and alert rules use only metrics wyvernd exports.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::common::{docs_dir, Host};

/// Every dashboard's panel queries: (file name, expr). Panics on a dashboard without panels
/// or a panel without a query: a dashboard that shows nothing is a bug too.
pub fn dashboard_queries() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(docs_dir().join("grafana"))
        .expect("docs/grafana exists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "four dashboards: {files:?}");
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let dash: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
        assert!(
            dash["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{name} has a title"
        );
        let panels = dash["panels"].as_array().cloned().unwrap_or_default();
        assert!(!panels.is_empty(), "{name} has panels");
        for p in panels.iter().filter(|p| p["type"] != "row") {
            let targets = p["targets"].as_array().cloned().unwrap_or_default();
            assert!(
                !targets.is_empty(),
                "{name}: panel {:?} has no query",
                p["title"]
            );
            for t in targets {
                let expr = t["expr"].as_str().unwrap_or_default();
                assert!(
                    !expr.is_empty(),
                    "{name}: panel {:?} has an empty query",
                    p["title"]
                );
                out.push((name.clone(), expr.to_owned()));
            }
        }
        // Template variables query Prometheus too.
        for v in dash["templating"]["list"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            if v["type"] == "query" {
                let q = v["query"]
                    .as_str()
                    .or_else(|| v["query"]["query"].as_str())
                    .unwrap_or_default();
                out.push((name.clone(), q.to_owned()));
            }
        }
    }
    out
}

/// Metric names in a PromQL expression (or any text): identifiers starting with `wyvern_`
/// or `process_`, outside quoted strings.
pub fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut chars = text.char_indices().peekable();
    let mut quote: Option<char> = None;
    let bytes = text.as_bytes();
    while let Some((i, c)) = chars.next() {
        if let Some(q) = quote {
            if c == '\\' {
                chars.next();
            } else if c == q {
                quote = None;
            }
            continue;
        }
        if c == '"' || c == '\'' || c == '`' {
            quote = Some(c);
            continue;
        }
        let starts_ident = c.is_ascii_alphabetic() || c == '_';
        let prev_ident = i > 0 && {
            let p = bytes[i - 1] as char;
            p.is_ascii_alphanumeric() || p == '_' || p == ':'
        };
        if starts_ident && !prev_ident {
            let end = text[i..]
                .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_' || ch == ':'))
                .map_or(text.len(), |n| i + n);
            let ident = &text[i..end];
            if ident.starts_with("wyvern_") || ident.starts_with("process_") {
                names.insert(ident.to_owned());
            }
            while chars.peek().is_some_and(|(j, _)| *j < end) {
                chars.next();
            }
        }
    }
    names
}

#[test]
fn metric_names_are_found_outside_strings_only() {
    let n = metric_names(
        r#"sum by (stage) (rate(wyvern_x_total{job="wyvern_not_a_metric"}[5m])) / process_open_fds"#,
    );
    assert_eq!(
        n.into_iter().collect::<Vec<_>>(),
        vec!["process_open_fds".to_owned(), "wyvern_x_total".to_owned()]
    );
}

#[test]
fn dashboards_and_alerts_use_only_exported_metrics() {
    let host = Host::start();
    let scrape = host.scrape().unwrap();
    let exported: BTreeSet<String> = wyvern_daemon::status::Scrape::parse(&scrape)
        .unwrap()
        .names()
        .into_iter()
        .map(str::to_owned)
        .collect();

    let mut used: Vec<(String, String)> = Vec::new();
    let queries = dashboard_queries();
    for (file, expr) in &queries {
        for n in metric_names(expr) {
            used.push((file.clone(), n));
        }
    }
    // The alert rules: every expression, and the metrics the annotations point readers to.
    let alerts = std::fs::read_to_string(docs_dir().join("prometheus/alerts.yml")).unwrap();
    let rule_exprs = alerts.lines().filter(|l| !l.trim_start().starts_with('#'));
    for n in metric_names(&rule_exprs.collect::<Vec<_>>().join("\n")) {
        used.push(("alerts.yml".into(), n));
    }
    // Outside quotes only: annotations are quoted, so take their metric names as well.
    for line in alerts.lines().filter(|l| l.contains("description:")) {
        let unquoted = line.replace('"', " ");
        for n in metric_names(&unquoted) {
            used.push(("alerts.yml annotations".into(), n));
        }
    }
    let distinct: BTreeSet<&str> = used.iter().map(|(_, n)| n.as_str()).collect();
    assert!(
        distinct.len() >= 30,
        "the dashboards cover the metrics: {distinct:?}"
    );
    let missing: Vec<_> = used.iter().filter(|(_, n)| !exported.contains(n)).collect();
    assert!(
        missing.is_empty(),
        "used but not exported by wyvernd: {missing:?}\nexported: {exported:?}"
    );

    // docs/metrics.md documents every metric family wyvernd exports.
    let doc = std::fs::read_to_string(docs_dir().join("metrics.md")).unwrap();
    let families: BTreeSet<&str> = scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let undocumented: Vec<_> = families
        .iter()
        .filter(|f| !doc.contains(&format!("`{f}`")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "not in docs/metrics.md: {undocumented:?}"
    );
}
