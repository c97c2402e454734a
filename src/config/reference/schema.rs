//! `--config.schema`: the JSON Schema (draft 2020-12) of the config file, rendered from the key
//! table, for editors (YAML language server) and validators. It accepts what the parser
//! accepts (YAML scalars taken as text where the parser takes them so, nulls where a key may
//! be left empty) and refuses unknown keys, as the parser does.

use serde_json::{json, Map, Value};

use super::{sections, Key, Section, Ty, ROOT};

/// A duration as humantime reads it: terms such as `1m`, `30s`, `1.5h`, spaces allowed.
const DURATION: &str = "^\\s*([0-9]+(\\.[0-9]+)?\\s*(nanos|nsec|ns|usec|us|µs|millis|msec|ms|seconds|second|secs|sec|s|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|wks|wk|w|months|month|M|years|year|yrs|yr|y)\\s*)+$";
/// A size as `parse_size` reads it: `1024`, `64KiB`, `1 MB`, `2m`; units in any case.
const SIZE: &str = "^\\s*[0-9]+\\s*([bB]|[kKmMgG]([iI]?[bB])?)?\\s*$";
/// An HTTP status code or class as `parse_status` reads it.
const STATUS: &str = "^\\s*([1-5][0-9][0-9]|[1-5][xX][xX])\\s*$";

/// The schema as a JSON value.
pub fn schema() -> Value {
    let mut defs = Map::new();
    for section in sections() {
        if section.id != ROOT.id {
            defs.insert(section.id.to_owned(), Value::Object(object(section)));
        }
    }
    let mut root = object(&ROOT);
    // An empty file is a valid config; YAML reads it as null.
    root.insert("type".into(), json!(["object", "null"]));
    let mut out = Map::new();
    out.insert(
        "$schema".into(),
        json!("https://json-schema.org/draft/2020-12/schema"),
    );
    out.insert("title".into(), json!("agent-health-exporter configuration"));
    out.extend(root);
    out.insert("$defs".into(), Value::Object(defs));
    Value::Object(out)
}

/// A section as a closed object.
fn object(section: &Section) -> Map<String, Value> {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for key in section.all_keys() {
        properties.insert(key.name.to_owned(), property(key));
        if key.required {
            required.push(key.name);
        }
    }
    let mut out = Map::new();
    out.insert("type".into(), json!("object"));
    out.insert("description".into(), json!(section.doc));
    out.insert("additionalProperties".into(), json!(false));
    out.insert("properties".into(), Value::Object(properties));
    if !required.is_empty() {
        out.insert("required".into(), json!(required));
    }
    out
}

fn property(key: &Key) -> Value {
    let mut out = match value(key.ty) {
        Value::Object(fields) => fields,
        _ => Map::new(),
    };
    if key.nullable {
        // `key:` with nothing after it leaves the key unset, as the parser reads it.
        let inner = Value::Object(std::mem::take(&mut out));
        out.insert("anyOf".into(), json!([inner, {"type": "null"}]));
    }
    out.insert("description".into(), json!(key.doc));
    if let Some(default) = key.default.json() {
        out.insert("default".into(), default);
    }
    Value::Object(out)
}

/// Text where the parser reads a string: YAML numbers and booleans are taken as their text.
fn scalar() -> Value {
    json!({"type": ["string", "number", "boolean"]})
}

fn value(ty: Ty) -> Value {
    match ty {
        Ty::Duration => json!({"type": "string", "pattern": DURATION}),
        Ty::Size => json!({"anyOf": [
            {"type": "integer", "minimum": 0},
            {"type": "string", "pattern": SIZE}
        ]}),
        Ty::Integer { min, max } if max == u64::MAX => json!({"type": "integer", "minimum": min}),
        Ty::Integer { min, max } => json!({"type": "integer", "minimum": min, "maximum": max}),
        Ty::Bool => json!({"type": "boolean"}),
        Ty::Text | Ty::File | Ty::SecretFile => scalar(),
        Ty::Enum {
            values,
            any_case,
            trimmed,
        } => json!({"anyOf": [
            {"enum": values},
            {"type": "string", "pattern": word_pattern(values, any_case, trimmed)}
        ]}),
        Ty::TextList => json!({"type": "array", "items": scalar()}),
        Ty::TextMap | Ty::SecretFileMap => {
            json!({"type": "object", "additionalProperties": scalar()})
        }
        Ty::JsonMap | Ty::AnyMap => json!({"type": "object"}),
        Ty::Status => {
            let one = json!({"anyOf": [
                {"type": "integer", "minimum": 100, "maximum": 599},
                {"type": "string", "pattern": STATUS}
            ]});
            json!({"anyOf": [one.clone(), {"type": "array", "items": one}]})
        }
        Ty::Section(s) => reference(s),
        Ty::List(s) => json!({"type": "array", "items": reference(s)}),
        Ty::Map(s) => json!({"type": "object", "additionalProperties": reference(s)}),
    }
}

fn reference(section: &Section) -> Value {
    json!({"$ref": format!("#/$defs/{}", section.id)})
}

/// The words as the parser takes them: in any case where it ignores case, with surrounding
/// space where it trims.
fn word_pattern(values: &[&str], any_case: bool, trimmed: bool) -> String {
    let words: Vec<String> = values
        .iter()
        .map(|w| {
            if !any_case {
                return w.to_string();
            }
            w.chars()
                .map(|c| format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase()))
                .collect()
        })
        .collect();
    let space = if trimmed { "\\s*" } else { "" };
    format!("^{space}({}){space}$", words.join("|"))
}
