//! The Kubernetes manifests of deploy/kubernetes/ keep the promises the README makes about
//! them: the PrometheusRule carries exactly the groups of alerts/agent-health.rules.yml, and
//! the StatefulSet runs one shard per pod with the hardening and probes listed there.
//! (Schema validation of the manifests is kubernetes-validate's job, run by .ci/run.)

use std::path::Path;

use serde_json::Value;

fn yaml(path: &str) -> Value {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn prometheus_rule_groups_are_exactly_the_shipped_rules() {
    let rules = yaml("alerts/agent-health.rules.yml");
    let rule = yaml("deploy/kubernetes/prometheusrule.yaml");
    assert_eq!(rule["kind"], "PrometheusRule");
    assert!(rules["groups"].as_array().is_some_and(|g| !g.is_empty()));
    assert_eq!(
        rule["spec"]["groups"], rules["groups"],
        "deploy/kubernetes/prometheusrule.yaml differs from alerts/agent-health.rules.yml: run python3 alerts/generate.py"
    );
}

#[test]
fn statefulset_takes_its_shard_from_the_pod_ordinal_and_runs_hardened() {
    let set = yaml("deploy/kubernetes/statefulset.yaml");
    let kustomization = yaml("deploy/kubernetes/kustomization.yaml");
    let pod = &set["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(args.contains(&"--shard.index=auto"), "{args:?}");
    assert!(args.contains(&"--shard.count=$(SHARD_COUNT)"), "{args:?}");

    // kustomization.yaml sets the replicas and the shard count to the same number.
    let replicas = &kustomization["replicas"][0]["count"];
    let literal = kustomization["configMapGenerator"][0]["literals"][0]
        .as_str()
        .expect("count literal");
    assert_eq!(literal, format!("count={replicas}"));
    assert_eq!(&set["spec"]["replicas"], replicas);

    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let own = &container["securityContext"];
    assert_eq!(own["readOnlyRootFilesystem"], true);
    assert_eq!(own["allowPrivilegeEscalation"], false);
    assert_eq!(own["capabilities"]["drop"][0], "ALL");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/-/healthy");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/-/ready");
    assert!(container["resources"]["requests"]["memory"].is_string());
}
