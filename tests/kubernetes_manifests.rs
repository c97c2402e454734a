//! The Kubernetes manifests of deploy/kubernetes/ keep the promises the README makes about
//! them: the PrometheusRule carries exactly the groups of alerts/agent-health.rules.yml, and
//! the StatefulSet runs one shard per pod with the hardening and probes listed there.
//! (Rendering with `kubectl kustomize` and schema validation with kubernetes-validate are
//! tests/realworld/kubernetes.sh's job, run by .ci/run; these read the files as written.)

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
    let rule = yaml("deploy/kubernetes/components/prometheus-operator/prometheusrule.yaml");
    assert_eq!(rule["kind"], "PrometheusRule");
    assert!(rules["groups"].as_array().is_some_and(|g| !g.is_empty()));
    assert_eq!(
        rule["spec"]["groups"], rules["groups"],
        "deploy/kubernetes/components/prometheus-operator/prometheusrule.yaml differs from alerts/agent-health.rules.yml: run python3 alerts/generate.py"
    );
}

#[test]
fn statefulset_takes_its_shard_from_the_pod_ordinal_and_runs_hardened() {
    let set = yaml("deploy/kubernetes/exporters/statefulset.yaml");
    let pod = &set["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let args = strings(&container["args"]);
    assert!(args.contains(&"--shard.index=auto"), "{args:?}");
    assert!(args.contains(&"--shard.count=$(SHARD_COUNT)"), "{args:?}");
    assert!(
        args.contains(&"--config.auto-reload-interval=30s"),
        "{args:?}"
    );

    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    // The uid the image runs as (its `USER`), so files the pod mounts are readable by it.
    let dockerfile = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile"),
    )
    .expect("Dockerfile");
    let user = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .and_then(|u| u.split(':').next())
        .expect("the Dockerfile has a USER");
    for key in ["runAsUser", "runAsGroup", "fsGroup"] {
        assert_eq!(
            pod["securityContext"][key].as_u64().map(|u| u.to_string()),
            Some(user.trim().to_owned()),
            "securityContext.{key} is not the image's uid {user}"
        );
    }
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

fn strings(list: &Value) -> Vec<&str> {
    list.as_array()
        .expect("a list")
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

/// A kustomization's `replacements:` copy the StatefulSet's `spec.replicas` into the
/// SHARD_COUNT variable that `--shard.count=$(SHARD_COUNT)` reads: the shard count is
/// given once, in both the base and the ha overlay.
#[test]
fn shard_count_is_filled_from_the_statefulset_replicas() {
    for (path, source) in [
        (
            "deploy/kubernetes/kustomization.yaml",
            "agent-health-exporter",
        ),
        (
            "deploy/kubernetes/overlays/ha/kustomization.yaml",
            "agent-health-exporter-a",
        ),
    ] {
        let kustomization = yaml(path);
        let replacement = &kustomization["replacements"][0];
        assert_eq!(replacement["source"]["kind"], "StatefulSet", "{path}");
        assert_eq!(replacement["source"]["name"], source, "{path}");
        assert_eq!(
            replacement["source"]["fieldPath"], "spec.replicas",
            "{path}"
        );
        let targets: Vec<&str> = replacement["targets"]
            .as_array()
            .expect("targets")
            .iter()
            .flat_map(|t| strings(&t["fieldPaths"]))
            .collect();
        assert!(
            targets.contains(
                &"spec.template.spec.containers.[name=exporter].env.[name=SHARD_COUNT].value"
            ),
            "{path}: {targets:?}"
        );
    }
    let set = yaml("deploy/kubernetes/exporters/statefulset.yaml");
    let env = &set["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(
        env.as_array()
            .expect("env")
            .iter()
            .any(|e| e["name"] == "SHARD_COUNT"),
        "{env}"
    );
}

/// The image comes through kustomize `images:` with a pinned version, never `latest`.
#[test]
fn image_is_pinned_to_the_crate_version_through_kustomize_images() {
    let set = yaml("deploy/kubernetes/exporters/statefulset.yaml");
    let container = &set["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "agent-health-exporter");
    assert_eq!(container["imagePullPolicy"], "IfNotPresent");
    let kustomization = yaml("deploy/kubernetes/exporters/kustomization.yaml");
    assert_eq!(kustomization["images"][0]["name"], "agent-health-exporter");
    assert_eq!(
        kustomization["images"][0]["newTag"],
        env!("CARGO_PKG_VERSION")
    );
}

/// `kubectl apply -k deploy/kubernetes` needs no CRD: the operator's objects are only in
/// the component, which carries the label a default kube-prometheus-stack selects.
#[test]
fn operator_objects_are_only_in_the_component() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    for dir in ["common", "exporters", "overlays/ha/a", "overlays/ha/b", "."] {
        for entry in std::fs::read_dir(root.join(dir)).expect("read_dir") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                !text.contains("monitoring.coreos.com"),
                "{} needs the operator's CRDs",
                path.display()
            );
        }
    }
    let component = yaml("deploy/kubernetes/components/prometheus-operator/kustomization.yaml");
    assert_eq!(component["kind"], "Component");
    for file in ["servicemonitor.yaml", "prometheusrule.yaml"] {
        let object = yaml(&format!(
            "deploy/kubernetes/components/prometheus-operator/{file}"
        ));
        assert_eq!(
            object["metadata"]["labels"]["release"], "kube-prometheus-stack",
            "{file}"
        );
    }
}
