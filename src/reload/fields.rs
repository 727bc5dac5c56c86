//! Which fields of a config item changed, with their values before and
//! after: the detail under each `~` line of a diff.
//!
//! Items are compared in the form `/-/config` shows them (their `Serialize`
//! form): a key is there by prefix only, never by digest, and the admin
//! token digests are `"<redacted>"`, so no secret can appear in a diff.

use serde::Serialize;
use serde_json::Value;

/// One changed field: its path in the item (`health_check.interval`,
/// `backends[1].weight`) and its values before and after (`null`: absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub old: Value,
    pub new: Value,
}

/// The fields that differ between `old` and `new`, leaving out the
/// top-level fields in `skip`. Objects are compared key by key; lists of
/// the same length element by element; anything else as a whole.
pub fn between<T: Serialize>(old: &T, new: &T, skip: &[&str]) -> Vec<FieldChange> {
    let (Ok(mut old), Ok(mut new)) = (serde_json::to_value(old), serde_json::to_value(new)) else {
        return Vec::new();
    };
    for field in skip {
        for v in [&mut old, &mut new] {
            if let Some(map) = v.as_object_mut() {
                map.remove(*field);
            }
        }
    }
    let mut out = Vec::new();
    walk(&old, &new, String::new(), &mut out);
    out
}

fn walk(old: &Value, new: &Value, path: String, out: &mut Vec<FieldChange>) {
    if old == new {
        return;
    }
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let (x, y) = (
                    a.get(key).unwrap_or(&Value::Null),
                    b.get(key).unwrap_or(&Value::Null),
                );
                walk(x, y, join(key), out);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                walk(x, y, format!("{path}[{i}]"), out);
            }
        }
        _ => out.push(FieldChange {
            field: if path.is_empty() {
                "value".to_string()
            } else {
                path
            },
            old: old.clone(),
            new: new.clone(),
        }),
    }
}

/// `field: old → new`, values as compact JSON cut to a readable length.
pub fn line(change: &FieldChange) -> String {
    format!(
        "{}: {} → {}",
        change.field,
        short(&change.old),
        short(&change.new)
    )
}

/// Values longer than this are cut (with `…`) in the text form; the JSON
/// form keeps them whole.
const SHOWN_CHARS: usize = 120;

fn short(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() <= SHOWN_CHARS {
        return text;
    }
    let mut cut: String = text.chars().take(SHOWN_CHARS).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_fields_lists_and_absent_values() {
        let old =
            json!({"a": 1, "b": {"c": "5s", "d": [1, 2]}, "e": [1], "gone": true, "same": "x"});
        let new =
            json!({"a": 1, "b": {"c": "10s", "d": [1, 3]}, "e": [1, 2], "added": 0, "same": "x"});
        let lines: Vec<String> = between(&old, &new, &[]).iter().map(line).collect();
        assert_eq!(
            lines,
            [
                "added: null → 0",
                "b.c: \"5s\" → \"10s\"",
                "b.d[1]: 2 → 3",
                "e: [1] → [1,2]",
                "gone: true → null",
            ]
        );
        assert!(between(&old, &old, &[]).is_empty());
        assert_eq!(between(&old, &new, &["b", "e", "gone", "added"]), []);
    }

    #[test]
    fn long_values_are_cut_in_the_text_only() {
        let long = "x".repeat(500);
        let changes = between(&json!({"v": ""}), &json!({"v": long}), &[]);
        assert_eq!(changes[0].new, json!(long));
        assert!(line(&changes[0]).ends_with('…') && line(&changes[0]).len() < 200);
    }
}
