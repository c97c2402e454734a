use super::*;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn rule(yaml: &str) -> Rule {
    let raw: RawRelabel = serde_saphyr::from_str(yaml).expect("rule parses");
    Rule::compile(&raw).expect("rule is valid")
}

fn error(yaml: &str) -> RuleError {
    let raw: RawRelabel = serde_saphyr::from_str(yaml).expect("rule parses");
    Rule::compile(&raw).expect_err("rule is invalid")
}

#[test]
fn replace_defaults_copy_the_joined_sources_with_semicolons() {
    let r = rule("{source_labels: [a, b], target_label: c}");
    let out = process(labels(&[("a", "x"), ("b", "y")]), &[r]).unwrap();
    assert_eq!(out.get("c").map(String::as_str), Some("x;y"));
}

#[test]
fn replace_regex_is_anchored_at_both_ends() {
    let r = rule("{source_labels: [a], regex: 'b', target_label: c, replacement: hit}");
    let out = process(labels(&[("a", "abc")]), std::slice::from_ref(&r)).unwrap();
    assert!(
        !out.contains_key("c"),
        "an unanchored match would have set c"
    );
    let out = process(labels(&[("a", "b")]), &[r]).unwrap();
    assert_eq!(out["c"], "hit");
}

#[test]
fn replace_expands_numbered_braced_and_named_groups_like_go() {
    let r = rule(
        r#"{source_labels: [a], regex: '(?P<host>[^:]+):(\d+)', target_label: c,
            replacement: '${host}-$2-$$-$2x-${2}x-$02'}"#,
    );
    let out = process(labels(&[("a", "web:8080")]), &[r]).unwrap();
    // `$2x` names a group `2x` (empty); `$02` is a name too; `$$` is a dollar.
    assert_eq!(out["c"], "web-8080-$--8080x-");
}

#[test]
fn replace_with_an_empty_result_removes_the_label() {
    let r = rule("{source_labels: [a], regex: '(x*)', target_label: b, replacement: '$1'}");
    let out = process(labels(&[("a", ""), ("b", "old")]), &[r]).unwrap();
    assert!(!out.contains_key("b"));
}

#[test]
fn replace_with_templated_target_skips_invalid_names() {
    let r = rule("{source_labels: [a], regex: '(.*)', target_label: 'x_$1', replacement: v}");
    let out = process(labels(&[("a", "ok")]), std::slice::from_ref(&r)).unwrap();
    assert_eq!(out["x_ok"], "v");
    let out = process(labels(&[("a", "not-ok")]), &[r]).unwrap();
    assert_eq!(out.len(), 1, "x_not-ok is no label name: nothing is set");
}

#[test]
fn missing_source_labels_join_as_empty_values() {
    let r = rule("{source_labels: [a, missing], target_label: c}");
    let out = process(labels(&[("a", "x")]), &[r]).unwrap();
    assert_eq!(out["c"], "x;");
}

#[test]
fn keep_drops_targets_that_do_not_match() {
    let r = rule("{source_labels: [t], regex: 'planner|worker', action: keep}");
    assert!(process(labels(&[("t", "planner")]), std::slice::from_ref(&r)).is_some());
    assert!(process(labels(&[("t", "plannerx")]), &[r]).is_none());
}

#[test]
fn drop_drops_targets_that_match() {
    let r = rule("{source_labels: [t], regex: 'test-.*', action: drop}");
    assert!(process(labels(&[("t", "test-1")]), std::slice::from_ref(&r)).is_none());
    assert!(process(labels(&[("t", "prod-1")]), &[r]).is_some());
}

#[test]
fn labelmap_copies_matching_names_and_keeps_the_originals() {
    let r = rule("{action: labelmap, regex: '__meta_x_(.+)'}");
    let out = process(labels(&[("__meta_x_zone", "a"), ("other", "b")]), &[r]).unwrap();
    assert_eq!(out["zone"], "a");
    assert_eq!(out["__meta_x_zone"], "a");
    assert_eq!(out["other"], "b");
}

#[test]
fn labeldrop_and_labelkeep_filter_names() {
    let set = labels(&[("tmp_a", "1"), ("tmp_b", "2"), ("keep", "3")]);
    let out = process(set.clone(), &[rule("{action: labeldrop, regex: 'tmp_.*'}")]).unwrap();
    assert_eq!(out.keys().collect::<Vec<_>>(), ["keep"]);
    let out = process(set, &[rule("{action: labelkeep, regex: 'tmp_.*'}")]).unwrap();
    assert_eq!(out.keys().collect::<Vec<_>>(), ["tmp_a", "tmp_b"]);
}

#[test]
fn hashmod_is_md5_low_eight_bytes_big_endian_modulo() {
    // Reference values computed with Python's hashlib for the same definition.
    assert_eq!(hashmod("planner-1", 10), 8);
    assert_eq!(hashmod("", 7), 1);
    assert_eq!(hashmod("a;b", 1000), 74);
    assert_eq!(hashmod("w42", 3), 2);
    let r = rule("{source_labels: [a, b], action: hashmod, modulus: 1000, target_label: s}");
    let out = process(labels(&[("a", "a"), ("b", "b")]), &[r]).unwrap();
    assert_eq!(out["s"], "74");
}

#[test]
fn lowercase_and_uppercase_write_the_target() {
    let set = labels(&[("a", "MiXed")]);
    let lower = rule("{source_labels: [a], action: lowercase, target_label: l}");
    let upper = rule("{source_labels: [a], action: Uppercase, target_label: u}");
    let out = process(set, &[lower, upper]).unwrap();
    assert_eq!((out["l"].as_str(), out["u"].as_str()), ("mixed", "MIXED"));
}

#[test]
fn go_classes_stay_ascii() {
    let r = rule(r"{source_labels: [a], regex: '\d+', action: keep}");
    assert!(process(labels(&[("a", "123")]), std::slice::from_ref(&r)).is_some());
    // U+0663 ARABIC-INDIC DIGIT THREE is a digit to Unicode, not to RE2's \d.
    assert!(process(labels(&[("a", "12\u{663}")]), &[r]).is_none());
}

#[test]
fn rules_apply_in_order_and_stop_at_a_drop() {
    let rules = [
        rule("{source_labels: [a], target_label: b}"),
        rule("{source_labels: [b], regex: x, action: drop}"),
        rule("{target_label: never, replacement: set}"),
    ];
    assert!(process(labels(&[("a", "x")]), &rules).is_none());
    let out = process(labels(&[("a", "y")]), &rules).unwrap();
    assert_eq!(out["never"], "set");
}

#[test]
fn invalid_rules_are_refused_with_a_fix() {
    for (yaml, says) in [
        ("{action: explode}", "unknown relabel action"),
        ("{regex: '(', target_label: a}", "invalid regex"),
        ("{action: hashmod, target_label: s}", "non-zero modulus"),
        ("{action: replace}", "requires target_label"),
        ("{target_label: 'bad-name'}", "invalid target_label"),
        (
            "{action: labeldrop, regex: x, target_label: y}",
            "takes only regex",
        ),
        (
            "{action: lowercase, target_label: y, replacement: z}",
            "replacement cannot",
        ),
        (
            "{action: labelmap, replacement: 'a-b'}",
            "invalid replacement",
        ),
    ] {
        let e = error(yaml);
        assert!(e.message.contains(says), "{yaml}: {}", e.message);
        assert!(!e.fix.is_empty());
    }
}
