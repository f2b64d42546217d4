//! The Grafana dashboard shipped in the chart only queries metrics dockwright really exports.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use dockwright::desired::{Kind, ResourceKey};
use dockwright::docker::DaemonEvent;
use dockwright::execute::{ActionReport, Outcome};
use dockwright::metrics::Metrics;

#[test]
fn dashboard_queries_only_exported_metrics() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/charts/dockwright/dashboards/dockwright.json"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    assert!(exprs.len() >= 8, "{exprs:?}");
    let mut used = BTreeSet::new();
    for expr in &exprs {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("dockwright_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            used.insert(name);
        }
    }
    // Labelled series appear once something was counted: count one of each.
    let metrics = Metrics::new().unwrap();
    let report = ActionReport {
        id: 0,
        resource: ResourceKey::new(Kind::Container, "default", "web"),
        verb: "create",
        target: "web".into(),
        outcome: Outcome::Succeeded,
        elapsed: Duration::from_millis(5),
    };
    metrics.count_action(&report);
    metrics.count_drift_correction("missing");
    metrics.count_docker_event(&DaemonEvent::Connected);
    metrics.sync_docker_requests(&BTreeMap::from([("container_list", 1)]));
    metrics.observe_reconcile(Duration::from_millis(3), true);
    let exported = metrics.render();
    for name in &used {
        let line_start =
            |l: &str| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{"));
        assert!(
            exported
                .lines()
                .any(|l| line_start(l) || l.starts_with(&format!("# TYPE {name} "))),
            "dashboard queries {name}, which /metrics does not export:\n{exported}"
        );
    }
    assert!(used.contains("dockwright_reconcile_duration_seconds_bucket"));
}
