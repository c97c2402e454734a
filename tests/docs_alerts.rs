//! The alert table of docs/prometheus.md is the rule files' own list: every alert of
//! alerts/*.rules.yml with its severities and `for:`, and nothing else.

mod docs_md;

use std::collections::{BTreeMap, BTreeSet};

use docs_md::repo;

/// alert name -> (severities, `for:` values, "none" when a rule has none).
type Alerts = BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)>;

fn shipped() -> Alerts {
    let mut alerts = Alerts::new();
    for name in ["agent-health.rules.yml", "agent-slo.rules.yml"] {
        let text = std::fs::read_to_string(repo().join("alerts").join(name)).expect("rule file");
        let file: serde_json::Value = serde_saphyr::from_str(&text).expect("rule file parses");
        for group in file["groups"].as_array().expect("groups") {
            for rule in group["rules"].as_array().expect("rules") {
                let Some(alert) = rule["alert"].as_str() else {
                    continue;
                };
                let entry = alerts.entry(alert.to_string()).or_default();
                entry.0.insert(
                    rule["labels"]["severity"]
                        .as_str()
                        .unwrap_or("none")
                        .to_string(),
                );
                entry
                    .1
                    .insert(rule["for"].as_str().unwrap_or("none").to_string());
            }
        }
    }
    alerts
}

fn documented() -> Alerts {
    let text =
        std::fs::read_to_string(repo().join("docs/prometheus.md")).expect("docs/prometheus.md");
    let mut alerts = Alerts::new();
    for line in text.lines().filter(|l| l.starts_with("| `Agent")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // "", alert, severity, for, fires when, ""
        let name = cells[1].trim_matches('`').to_string();
        let split = |cell: &str| {
            cell.split(" / ")
                .map(str::to_string)
                .collect::<BTreeSet<_>>()
        };
        alerts.insert(name, (split(cells[2]), split(cells[3])));
    }
    alerts
}

#[test]
fn alert_table_lists_every_shipped_alert() {
    let shipped = shipped();
    assert!(
        shipped.len() >= 10,
        "the rule files hold {} alerts",
        shipped.len()
    );
    assert_eq!(
        documented(),
        shipped,
        "the alert table of docs/prometheus.md (alert | severity | for) differs from alerts/*.rules.yml"
    );
}
