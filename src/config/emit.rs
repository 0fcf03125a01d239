//! Writing a resolved config back out as YAML that uorch reads again, optionally
//! with a comment on each value saying which file, line or override set it.

use super::error::Seg;
use super::tree::{Node, Origin, Value as TreeValue};
use serde_json::Value;
use std::fmt::Write as _;

/// YAML text for `value`. With `origins`, leaf values get `# file:line:col`
/// (or `# default`) comments, looked up in `tree` by key path.
pub fn to_yaml(value: &Value, origins: Option<&Node>) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => emit_map(&mut out, map, 0, &mut Vec::new(), origins),
        other => {
            let _ = writeln!(out, "{}", scalar(other));
        }
    }
    out
}

fn emit_map(
    out: &mut String,
    map: &serde_json::Map<String, Value>,
    indent: usize,
    path: &mut Vec<Seg>,
    origins: Option<&Node>,
) {
    for (k, v) in map {
        path.push(Seg::Key(k.clone()));
        let pad = " ".repeat(indent);
        let key = scalar(&Value::String(k.clone()));
        match v {
            Value::Object(m) if !m.is_empty() => {
                let _ = writeln!(out, "{pad}{key}:");
                emit_map(out, m, indent + 2, path, origins);
            }
            Value::Array(items) if items.iter().any(|i| i.is_object() || i.is_array()) => {
                let _ = writeln!(out, "{pad}{key}:");
                for (i, item) in items.iter().enumerate() {
                    path.push(Seg::Index(i));
                    match item {
                        Value::Object(m) if !m.is_empty() => {
                            let mut nested = String::new();
                            emit_map(&mut nested, m, indent + 4, path, origins);
                            let _ = write!(out, "{pad}  - {}", nested.trim_start());
                        }
                        other => {
                            let _ = writeln!(out, "{pad}  - {}{}", flow(other), comment(origins, path));
                        }
                    }
                    path.pop();
                }
            }
            other => {
                let _ = writeln!(out, "{pad}{key}: {}{}", flow(other), comment(origins, path));
            }
        }
        path.pop();
    }
}

fn comment(origins: Option<&Node>, path: &[Seg]) -> String {
    let Some(tree) = origins else { return String::new() };
    let origin = lookup(tree, path).map(|n| n.origin.clone()).unwrap_or(Origin::Default);
    format!("  # {origin}")
}

fn lookup<'a>(tree: &'a Node, path: &[Seg]) -> Option<&'a Node> {
    let mut node = tree;
    for seg in path {
        node = match (seg, &node.value) {
            (Seg::Key(k), TreeValue::Map(_)) => node.get(k)?,
            (Seg::Index(i), TreeValue::Seq(items)) => items.get(*i)?,
            _ => return None,
        };
    }
    Some(node)
}

/// A value on one line: scalars, and lists/maps in flow style.
fn flow(v: &Value) -> String {
    match v {
        Value::Array(items) => format!("[{}]", items.iter().map(flow).collect::<Vec<_>>().join(", ")),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{}: {}", scalar(&Value::String(k.clone())), flow(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => scalar(other),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => {
            let s = n.to_string();
            // Keep floats floats when read back (1.0 stays 1.0, not the integer 1).
            if n.is_f64() && !s.contains(['.', 'e', 'E']) {
                format!("{s}.0")
            } else {
                s
            }
        }
        Value::String(s) if is_plain(s) => s.clone(),
        // A JSON string literal is also a valid YAML double-quoted scalar.
        Value::String(s) => Value::String(s.clone()).to_string(),
        other => flow(other),
    }
}

/// Whether `s` reads back as the same string without quotes.
fn is_plain(s: &str) -> bool {
    let first_ok = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '/' || c == '.');
    first_ok
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "_-./=+".contains(c))
        && matches!(yaml_rust2::Yaml::from_str(s), yaml_rust2::Yaml::String(_))
        && !matches!(s.to_ascii_lowercase().as_str(), "yes" | "no" | "on" | "off" | "y" | "n" | ".inf" | ".nan")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tree::{parse_str, Source};
    use std::sync::Arc;

    #[test]
    fn emitted_yaml_parses_back_to_the_same_values() {
        let v = serde_json::json!({
            "name": "run-1", "lr": 0.0003, "whole": 1.0, "n": 7, "flag": true, "none": null,
            "tricky": ["yes", "1", "a: b", "", " padded", "#hash", "true"],
            "nested": {"layers": [1, 2, 3], "deep": {"x": "y"}},
            "objs": [{"a": 1, "b": {"c": 2}}, {"a": 3}]
        });
        let text = to_yaml(&v, None);
        let back = parse_str(&text, Source::File(Arc::new("dump.yaml".into()))).unwrap().to_json();
        assert_eq!(back, v, "\n{text}");
    }
}
