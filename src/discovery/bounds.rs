//! Bounds on what one refresh of a source may hand over, so that a runaway source (millions
//! of targets, megabyte label values) fails its refresh, logged and counted, instead of taking
//! the exporter's memory; the source keeps its last good targets. The answer's size is bounded
//! where it is read: `max_response_bytes` (http_sd), the file size (file_sd), DNS itself.

use super::target::Discovered;
use super::Refresh;

/// Bytes of one label value at most. Prometheus sets no default (`label_value_length_limit`
/// 0); a health target's labels are names, zones and URLs, far below this.
pub const MAX_LABEL_VALUE_BYTES: usize = 4096;

/// Bytes of one label name at most.
pub const MAX_LABEL_NAME_BYTES: usize = 256;

/// Labels of one target at most, the source's own `__` labels included.
pub const MAX_LABELS_PER_TARGET: usize = 64;

/// Whether `targets` (the count of a parsed answer, before its targets are expanded into label
/// sets of their own) is within `max_targets`: an answer of millions of short targets fails
/// here, at the size of its parsed strings, not at a label map per target.
pub fn check_count(targets: usize, max_targets: usize) -> Result<(), String> {
    if targets > max_targets {
        return Err(format!(
            "{targets} targets, more than max_targets {max_targets}; raise max_targets or split the source"
        ));
    }
    Ok(())
}

/// `discovered`, unless it breaks a bound: then why, naming the target.
pub fn check(discovered: Vec<Discovered>, max_targets: usize) -> Refresh {
    check_count(discovered.len(), max_targets)?;
    for target in &discovered {
        let which = || {
            let address = target.labels.get("__address__").map_or("", String::as_str);
            format!("target {:?} ({})", excerpt(address), target.from)
        };
        if target.labels.len() > MAX_LABELS_PER_TARGET {
            return Err(format!(
                "{} has {} labels, more than {MAX_LABELS_PER_TARGET}",
                which(),
                target.labels.len()
            ));
        }
        for (name, value) in target.labels.iter() {
            if name.len() > MAX_LABEL_NAME_BYTES {
                return Err(format!(
                    "{} has a label name of {} bytes, more than {MAX_LABEL_NAME_BYTES}: {:?}…",
                    which(),
                    name.len(),
                    excerpt(name)
                ));
            }
            if value.len() > MAX_LABEL_VALUE_BYTES {
                return Err(format!(
                    "{} has a value of {} bytes in label {:?}, more than {MAX_LABEL_VALUE_BYTES}",
                    which(),
                    value.len(),
                    excerpt(name)
                ));
            }
        }
    }
    Ok(discovered)
}

/// The start of `text`, short enough for a log line.
fn excerpt(text: &str) -> &str {
    let mut end = text.len().min(64);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn target(labels: &[(&str, &str)]) -> Discovered {
        Discovered {
            labels: Arc::new(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            from: "file=t.json".into(),
        }
    }

    #[test]
    fn each_bound_fails_the_refresh_with_its_reason() {
        let ok = target(&[("__address__", "h:1")]);
        assert!(check(vec![ok.clone(); 3], 3).is_ok());
        let error = check(vec![ok.clone(); 4], 3).unwrap_err();
        assert!(
            error.starts_with("4 targets, more than max_targets 3"),
            "{error}"
        );

        let long_value = "é".repeat(MAX_LABEL_VALUE_BYTES);
        let error = check(vec![target(&[("note", &long_value)])], 3).unwrap_err();
        assert!(error.contains("more than 4096"), "{error}");

        let long_name = "n".repeat(MAX_LABEL_NAME_BYTES + 1);
        let error = check(vec![target(&[(&long_name, "x")])], 3).unwrap_err();
        assert!(error.contains("more than 256"), "{error}");

        let names: Vec<String> = (0..=MAX_LABELS_PER_TARGET)
            .map(|i| format!("l{i}"))
            .collect();
        let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "x")).collect();
        let error = check(vec![target(&many)], 3).unwrap_err();
        assert!(error.contains("65 labels, more than 64"), "{error}");
    }
}
