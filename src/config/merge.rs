//! Composing a config from files: `include:` presets, then the file itself, then
//! `--set` overrides, each layer replacing what the one before said.

use super::error::{suggest, ConfigError, ConfigErrors};
use super::tree::{self, Key, Node, Origin, Source, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The key that lists presets a file builds on.
pub const INCLUDE: &str = "include";

pub fn load_tree(path: &Path, overrides: &[String]) -> Result<Node, ConfigErrors> {
    let mut stack = Vec::new();
    let mut tree = load_with_includes(path, &mut stack)?;
    for o in overrides {
        apply_override(&mut tree, o)?;
    }
    Ok(tree)
}

fn parse_error(e: tree::ParseError) -> ConfigErrors {
    ConfigError { origin: e.origin, key: String::new(), message: e.message, hint: None }.into()
}

fn load_with_includes(path: &Path, stack: &mut Vec<PathBuf>) -> Result<Node, ConfigErrors> {
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    if let Some(pos) = stack.iter().position(|p| *p == canonical) {
        let cycle: Vec<String> = stack[pos..].iter().chain([&canonical]).map(|p| p.display().to_string()).collect();
        return Err(ConfigError {
            origin: Origin::File { path: Arc::new(path.to_path_buf()), line: 1, col: 1 },
            key: INCLUDE.into(),
            message: format!("include cycle: {}", cycle.join(" -> ")),
            hint: None,
        }
        .into());
    }
    let mut node = tree::parse_file(path).map_err(parse_error)?;
    match &node.value {
        Value::Map(_) => {}
        Value::Null => node.value = Value::Map(Vec::new()),
        _ => {
            return Err(ConfigError {
                origin: node.origin.clone(),
                key: String::new(),
                message: format!("a config file must be a mapping of keys, found {}", node.kind()),
                hint: None,
            }
            .into())
        }
    }
    let includes = take_includes(&mut node)?;
    if includes.is_empty() {
        return Ok(node);
    }
    stack.push(canonical);
    let base_dir = path.parent().unwrap_or(Path::new("."));
    let mut merged: Option<Node> = None;
    for (i, (name, origin)) in includes.iter().enumerate() {
        let file = resolve_preset(name, base_dir).map_err(|message| ConfigError {
            origin: origin.clone(),
            key: format!("{INCLUDE}[{i}]"),
            message,
            hint: suggest_preset(name),
        })?;
        let layer = load_with_includes(&file, stack)?;
        merged = Some(match merged {
            None => layer,
            Some(mut acc) => {
                merge_into(&mut acc, layer);
                acc
            }
        });
    }
    stack.pop();
    let mut base = merged.expect("includes is not empty");
    merge_into(&mut base, node);
    Ok(base)
}

/// Remove `include:` from a file's top level: a string or a list of strings.
fn take_includes(node: &mut Node) -> Result<Vec<(String, Origin)>, ConfigErrors> {
    let Value::Map(entries) = &mut node.value else { return Ok(Vec::new()) };
    let Some(pos) = entries.iter().position(|(k, _)| k.name == INCLUDE) else { return Ok(Vec::new()) };
    let (_, inc) = entries.remove(pos);
    let bad = |n: &Node, key: String| ConfigError {
        origin: n.origin.clone(),
        key,
        message: format!("expected a preset name or a list of them, found {}", n.kind()),
        hint: None,
    };
    match inc.value {
        Value::Str(s) => Ok(vec![(s, inc.origin)]),
        Value::Seq(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, n)| match n.value {
                Value::Str(s) => Ok((s, n.origin)),
                _ => Err(bad(&n, format!("{INCLUDE}[{i}]")).into()),
            })
            .collect(),
        _ => Err(bad(&inc, INCLUDE.into()).into()),
    }
}

/// A preset is a path relative to the including file, or a name under the
/// project's `configs/` folder (`.yaml` may be left off).
fn resolve_preset(name: &str, base_dir: &Path) -> Result<PathBuf, String> {
    let mut tried = Vec::new();
    let configs = crate::paths::project_root().join("configs");
    for dir in [base_dir, configs.as_path()] {
        for candidate in [dir.join(name), dir.join(format!("{name}.yaml"))] {
            if candidate.is_file() {
                return Ok(candidate);
            }
            tried.push(candidate.display().to_string());
        }
    }
    Err(format!("cannot find preset `{name}` (looked for {})", tried.join(", ")))
}

/// Presets under `configs/`, as the names `include:` accepts.
pub fn preset_names() -> Vec<String> {
    let root = crate::paths::project_root().join("configs");
    let mut names = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "yaml") {
                if let Ok(rel) = p.with_extension("").strip_prefix(&root) {
                    names.push(rel.display().to_string());
                }
            }
        }
    }
    names.sort();
    names
}

fn suggest_preset(name: &str) -> Option<String> {
    suggest(name.trim_end_matches(".yaml"), &preset_names())
}

/// Merge `over` into `base`: maps key by key (recursively), anything else replaced.
pub fn merge_into(base: &mut Node, over: Node) {
    match (&mut base.value, over.value) {
        (Value::Map(base_entries), Value::Map(over_entries)) => {
            for (key, value) in over_entries {
                match base_entries.iter_mut().find(|(k, _)| k.name == key.name) {
                    Some((k, existing)) => {
                        *k = key;
                        merge_into(existing, value);
                    }
                    None => base_entries.push((key, value)),
                }
            }
            base.origin = over.origin;
        }
        (_, value) => {
            base.value = value;
            base.origin = over.origin;
        }
    }
}

/// Apply one `key.path=value` override. The value is YAML (`3e-4`, `[1, 2]`,
/// `{a: 1}`, `'quoted'`).
pub fn apply_override(tree: &mut Node, text: &str) -> Result<(), ConfigErrors> {
    let origin = Origin::Override(Arc::from(text));
    let err = |key: &str, message: String| -> ConfigErrors {
        ConfigError { origin: origin.clone(), key: key.to_string(), message, hint: None }.into()
    };
    let Some((key, raw)) = text.split_once('=') else {
        return Err(err("", "expected KEY=VALUE (for example finetune.lr=3e-4)".into()));
    };
    let key = key.trim();
    let segments: Vec<&str> = key.split('.').collect();
    if key.is_empty() || segments.iter().any(|s| s.is_empty()) {
        return Err(err(key, "expected a dotted key path such as finetune.lr".into()));
    }
    if segments[0] == INCLUDE {
        return Err(err(key, "presets cannot be added by --set; list them under include: in the file".into()));
    }
    let value = tree::parse_str(raw, Source::Override(Arc::from(text))).map_err(parse_error)?;
    let mut node = tree;
    for (i, seg) in segments.iter().enumerate() {
        if let Value::Null = node.value {
            node.value = Value::Map(Vec::new());
        }
        let kind = node.kind();
        let Value::Map(entries) = &mut node.value else {
            let parent = segments[..i].join(".");
            return Err(err(key, format!("`{parent}` is {kind}, not a mapping, so it has no key `{seg}`")));
        };
        let pos = match entries.iter().position(|(k, _)| k.name == *seg) {
            Some(p) => p,
            None => {
                let fresh = Node::new(Value::Null, origin.clone());
                entries.push((Key { name: seg.to_string(), origin: origin.clone() }, fresh));
                entries.len() - 1
            }
        };
        node = &mut entries[pos].1;
    }
    *node = value;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn includes_merge_in_order_and_the_file_wins() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "a.yaml", "x: 1\nsub: {p: 1, q: 1}\n");
        write(d.path(), "b.yaml", "x: 2\nsub: {q: 2}\n");
        let main = write(d.path(), "main.yaml", "include: [a, b.yaml]\nsub: {r: 3}\n");
        let t = load_tree(&main, &[]).unwrap();
        assert_eq!(t.get("x").unwrap().value, Value::Int(2));
        let sub = t.get("sub").unwrap();
        assert_eq!(sub.get("p").unwrap().value, Value::Int(1));
        assert_eq!(sub.get("q").unwrap().value, Value::Int(2));
        assert_eq!(sub.get("r").unwrap().value, Value::Int(3));
        assert!(t.get("include").is_none());
        // The value remembers the file that set it.
        assert!(t.get("x").unwrap().origin.to_string().contains("b.yaml:1:4"));
    }

    #[test]
    fn overrides_replace_values_and_create_sections() {
        let d = tempfile::tempdir().unwrap();
        let main = write(d.path(), "main.yaml", "finetune: {lr: 0.1}\n");
        let t = load_tree(&main, &["finetune.lr=3e-4".into(), "new.deep.list=[1, 2]".into()]).unwrap();
        assert_eq!(t.get("finetune").unwrap().get("lr").unwrap().value, Value::Float(3e-4));
        let list = t.get("new").unwrap().get("deep").unwrap().get("list").unwrap();
        assert!(matches!(&list.value, Value::Seq(v) if v.len() == 2));
        assert_eq!(list.origin.to_string(), "--set new.deep.list=[1, 2]");
    }

    #[test]
    fn override_through_a_scalar_is_an_error_naming_the_key() {
        let d = tempfile::tempdir().unwrap();
        let main = write(d.path(), "main.yaml", "seed: 3\n");
        let e = load_tree(&main, &["seed.x=1".into()]).unwrap_err().to_string();
        assert!(e.contains("--set seed.x=1: key `seed.x`: `seed` is an integer, not a mapping"), "{e}");
        let e = load_tree(&main, &["seed".into()]).unwrap_err().to_string();
        assert!(e.contains("expected KEY=VALUE"), "{e}");
    }

    #[test]
    fn include_cycles_and_missing_presets_are_errors() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "a.yaml", "include: b\n");
        let b = write(d.path(), "b.yaml", "include: a\n");
        let e = load_tree(&b, &[]).unwrap_err().to_string();
        assert!(e.contains("include cycle"), "{e}");
        let m = write(d.path(), "m.yaml", "x: 1\ninclude: [nope]\n");
        let e = load_tree(&m, &[]).unwrap_err().to_string();
        assert!(e.contains("m.yaml:2:11: key `include[0]`: cannot find preset `nope`"), "{e}");
    }
}
