//! Every type error of a document, not just the first: serde stops at the
//! first, so after each one the value it names is patched (an unknown key
//! removed, a wrong value replaced by one of the expected type, a missing
//! key filled) and the document deserialized again. Only the first error at
//! each key is reported; those the patches cause at the same key are not.

use super::error::{self, ConfigError, Seg};
use super::tree::Node;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeMap;

/// Guesses at a value the type at a key takes, tried in turn when the error
/// says nothing of the type.
fn guess(attempt: usize) -> Option<Value> {
    [Value::from(0), Value::from(""), Value::from(false), Value::Object(Default::default()), Value::Array(Vec::new())]
        .get(attempt)
        .cloned()
}

/// A value of the type serde's "expected …" names.
fn of_expected(expected: &str) -> Option<Value> {
    const NUMBERS: &[&str] = &["u8", "u16", "u32", "u64", "usize", "i8", "i16", "i32", "i64", "isize", "f32", "f64"];
    let e = expected.trim();
    Some(match e {
        _ if NUMBERS.contains(&e) || e.contains("integer") || e.contains("number") => Value::from(0),
        "a boolean" | "bool" => Value::from(false),
        _ if e.contains("string") => Value::from(""),
        _ if e.contains("sequence") => Value::Array(Vec::new()),
        _ if e.starts_with("struct") || e.contains("map") => Value::Object(Default::default()),
        _ => return None,
    })
}

fn path_of(err: &serde_path_to_error::Error<serde_json::Error>) -> Vec<Seg> {
    err.path()
        .iter()
        .filter_map(|seg| match seg {
            serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
            serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
            _ => None,
        })
        .collect()
}

fn at_mut<'a>(json: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    path.iter().try_fold(json, |v, seg| match (seg, v) {
        (Seg::Key(k), Value::Object(m)) => m.get_mut(k),
        (Seg::Index(i), Value::Array(a)) => a.get_mut(*i),
        _ => None,
    })
}

/// Put `value` at `path` (`None`: remove the key); false when the path is not there.
fn put(json: &mut Value, path: &[Seg], value: Option<Value>) -> bool {
    let Some((last, parent)) = path.split_last() else { return false };
    match (at_mut(json, parent), last, value) {
        (Some(Value::Object(m)), Seg::Key(k), Some(v)) => {
            m.insert(k.clone(), v);
            true
        }
        (Some(Value::Object(m)), Seg::Key(k), None) => m.remove(k).is_some(),
        (Some(Value::Array(a)), Seg::Index(i), Some(v)) if *i < a.len() => {
            a[*i] = v;
            true
        }
        _ => false,
    }
}

/// How to get past one error: where, and the value to put there.
fn patch(raw: &str, path: &[Seg], attempt: usize) -> Option<(Vec<Seg>, Option<Value>)> {
    if raw.starts_with("unknown field") {
        return Some((path.to_vec(), None));
    }
    if let Some(rest) = raw.strip_prefix("unknown variant") {
        // "unknown variant `x`, expected one of `a`, `b`": the first valid one.
        let first = rest.split('`').nth(3)?;
        return Some((path.to_vec(), Some(Value::from(first))));
    }
    if let Some(field) = raw.strip_prefix("missing field `").and_then(|r| r.strip_suffix('`')) {
        let mut at = path.to_vec();
        at.push(Seg::Key(field.to_string()));
        return Some((at, Some(guess(attempt)?)));
    }
    let expected = raw.rsplit_once(", expected ").map(|(_, e)| e);
    let value = match (attempt, expected.and_then(of_expected)) {
        (0, Some(v)) => v,
        _ => guess(attempt)?,
    };
    Some((path.to_vec(), Some(value)))
}

/// Deserialize `tree` as `T`: every type error of the document (the first at
/// each key), and the config, patched where there were errors (`None` when
/// no patch got past one).
pub fn deserialize<T: DeserializeOwned>(tree: &Node) -> (Option<T>, Vec<ConfigError>) {
    let mut json = tree.to_json();
    let mut errors: Vec<ConfigError> = Vec::new();
    // Key → patches tried there.
    let mut tried: BTreeMap<String, usize> = BTreeMap::new();
    loop {
        let err = match serde_path_to_error::deserialize::<_, T>(&json) {
            Ok(config) => return (Some(config), errors),
            Err(e) => e,
        };
        let path = path_of(&err);
        let raw = err.inner().to_string();
        let reported = error::from_serde(tree, err).0;
        let key = reported.first().map(|e| e.key.clone()).unwrap_or_default();
        let attempt = *tried.get(&key).unwrap_or(&0);
        if attempt == 0 {
            errors.extend(reported);
        }
        tried.insert(key, attempt + 1);
        // A key no patch gets past, or a document too broken to go on: what was found.
        let patched = errors.len() < 100 && patch(&raw, &path, attempt).is_some_and(|(at, v)| put(&mut json, &at, v));
        if !patched {
            return (None, errors);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tree::{parse_str, Source};
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        mode: Mode,
        rate: f64,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        Fast,
        Slow,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        count: u32,
        names: Vec<String>,
        inner: Inner,
        on: bool,
    }

    fn errors_of(yaml: &str) -> (Option<Doc>, Vec<String>) {
        let tree = parse_str(yaml, Source::File(std::sync::Arc::new("t.yaml".into()))).unwrap();
        let (doc, errors) = deserialize::<Doc>(&tree);
        (doc, errors.iter().map(|e| format!("{}: {}", e.key, e.message)).collect())
    }

    #[test]
    fn a_valid_document_has_no_errors() {
        let (doc, errors) = errors_of("count: 2\nnames: [a]\ninner: {mode: fast, rate: 0.5}\non: true\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(doc.unwrap().inner.mode, Mode::Fast);
    }

    #[test]
    fn every_kind_of_error_is_found_once_past_the_first() {
        // A wrong scalar, a scalar for a sequence, an unknown variant, a
        // missing key (an enum's: filled by guesses until one is a variant),
        // an unknown key and a wrong boolean.
        let (doc, errors) = errors_of("count: lots\nnames: 3\ninner: {rate: fast, extra: 1}\non: maybe\n");
        assert_eq!(
            errors,
            [
                "count: expected a non-negative integer, found string \"lots\"",
                "names: expected a sequence, found integer `3`",
                "inner.rate: expected a number, found string \"fast\"",
                "inner.extra: unknown key `extra`; expected one of `mode`, `rate`",
                // Missing keys are known at the end of their section.
                "inner.mode: required key is missing",
                "on: expected true or false, found string \"maybe\"",
            ]
            .map(String::from)
            .to_vec()
        );
        assert!(doc.is_some(), "patched past every error");
    }

    #[test]
    fn a_wrong_variant_is_reported_once_though_a_guess_replaces_it() {
        let (_, errors) = errors_of("count: 1\nnames: []\ninner: {mode: quick, rate: 1}\non: false\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("inner.mode: unknown value `quick`"), "{errors:?}");
    }
}
