//! Composing a config from files: `include:` presets, then the file itself, then
//! overrides, each layer replacing what the one before said; then `${env:VAR}`
//! interpolation.
//!
//! Overrides use Hydra's grammar: `key.path=value` sets (the value is YAML),
//! `+key=value` adds a key that must not exist yet, `++key=value` sets
//! whether or not it exists, `~key` deletes one, and `group=name` where
//! `configs/<group>/<name>.yaml` exists chooses that preset in place of the
//! file's `include:` of the same group (or adds it when there is none), so
//! the file's own values still win over it.

use super::error::{suggest, ConfigError, ConfigErrors};
use super::tree::{self, Key, Node, Origin, Source, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The key that lists presets a file builds on.
pub const INCLUDE: &str = "include";

pub fn load_tree(path: &Path, overrides: &[String]) -> Result<Node, ConfigErrors> {
    let (mut choices, mut rest) = (Vec::new(), Vec::new());
    for o in overrides {
        match preset_choice(o) {
            Some((group, name)) => choices.push(Choice {
                preset: format!("{group}/{name}"),
                group: group.to_string(),
                text: o.clone(),
                used: false,
            }),
            None => rest.push(o),
        }
    }
    let mut stack = Vec::new();
    let mut tree = load_with_includes(path, &mut stack, &mut choices)?;
    for o in rest {
        apply_override(&mut tree, o)?;
    }
    interpolate_env(&mut tree, "")?;
    Ok(tree)
}

/// A preset chosen on the command line (`encoder=base`).
struct Choice {
    group: String,
    /// `encoder/base`
    preset: String,
    /// The override as given.
    text: String,
    used: bool,
}

/// `group=name` when `configs/<group>/` is a preset group holding `name`.
fn preset_choice(text: &str) -> Option<(&str, &str)> {
    let (group, name) = text.split_once('=')?;
    let plain = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !plain(group) || !plain(name) {
        return None;
    }
    let dir = crate::paths::project_root().join("configs").join(group);
    dir.join(format!("{name}.yaml")).is_file().then_some((group, name))
}

fn parse_error(e: tree::ParseError) -> ConfigErrors {
    ConfigError { origin: e.origin, key: String::new(), message: e.message, hint: None }.into()
}

fn load_with_includes(path: &Path, stack: &mut Vec<PathBuf>, choices: &mut [Choice]) -> Result<Node, ConfigErrors> {
    let top = stack.is_empty();
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
    let mut includes = take_includes(&mut node)?;
    // A preset chosen on the command line replaces the one of its group.
    for (name, origin) in includes.iter_mut() {
        let group = name.split_once('/').map(|(g, _)| g);
        if let Some(c) = choices.iter_mut().find(|c| Some(c.group.as_str()) == group) {
            *name = c.preset.clone();
            *origin = Origin::Override(Arc::from(c.text.as_str()));
            c.used = true;
        }
    }
    if top {
        for c in choices.iter_mut().filter(|c| !c.used) {
            includes.push((c.preset.clone(), Origin::Override(Arc::from(c.text.as_str()))));
            c.used = true;
        }
    }
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
        let layer = load_with_includes(&file, stack, choices)?;
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

/// Apply one override: `key.path=value` (the value is YAML: `3e-4`,
/// `[1, 2]`, `{a: 1}`, `'quoted'`), `+key=value` (the key must be new),
/// `++key=value` (set either way) or `~key` (delete it).
pub fn apply_override(tree: &mut Node, text: &str) -> Result<(), ConfigErrors> {
    let origin = Origin::Override(Arc::from(text));
    let err = |key: &str, message: String| -> ConfigErrors {
        ConfigError { origin: origin.clone(), key: key.to_string(), message, hint: None }.into()
    };
    if let Some(key) = text.strip_prefix('~') {
        if key.contains('=') {
            return Err(err(key, "~KEY deletes a key and takes no value (write ~finetune.lr)".into()));
        }
        let segments = key_path(key).map_err(|m| err(key, m))?;
        return match remove(tree, &segments) {
            true => Ok(()),
            false => Err(err(key, format!("cannot delete `{key}`: it is not set"))),
        };
    }
    let (mode, body) = if let Some(b) = text.strip_prefix("++") {
        (Mode::Force, b)
    } else if let Some(b) = text.strip_prefix('+') {
        (Mode::Add, b)
    } else {
        (Mode::Set, text)
    };
    let Some((key, raw)) = body.split_once('=') else {
        return Err(err(
            "",
            "expected KEY=VALUE, +KEY=VALUE, ++KEY=VALUE or ~KEY (for example finetune.lr=3e-4)".into(),
        ));
    };
    let key = key.trim();
    let segments = key_path(key).map_err(|m| err(key, m))?;
    if segments[0] == INCLUDE {
        return Err(err(key, "presets cannot be added by an override; choose one with GROUP=NAME (encoder=base) or list it under include:".into()));
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
            Some(p) => {
                if mode == Mode::Add && i + 1 == segments.len() {
                    let at = &entries[p].1.origin;
                    return Err(err(key, format!("`{key}` is already set (at {at}); write {key}=... to change it, or ++{key}=... to set it either way")));
                }
                p
            }
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

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Set,
    Add,
    Force,
}

fn key_path(key: &str) -> Result<Vec<&str>, String> {
    let segments: Vec<&str> = key.split('.').collect();
    if key.is_empty() || segments.iter().any(|s| s.is_empty()) {
        return Err("expected a dotted key path such as finetune.lr".into());
    }
    Ok(segments)
}

/// Delete the key at `path`; whether it was there.
fn remove(tree: &mut Node, path: &[&str]) -> bool {
    let Value::Map(entries) = &mut tree.value else { return false };
    let Some(pos) = entries.iter().position(|(k, _)| k.name == path[0]) else { return false };
    if path.len() == 1 {
        entries.remove(pos);
        return true;
    }
    remove(&mut entries[pos].1, &path[1..])
}

/// Replace `${env:VAR}` and `${env:VAR,default}` in string values with the
/// variable's value; a string that is only that is read as YAML (so
/// `lr: ${env:LR}` is a number). An unset variable without a default is an
/// error naming the key and where it was written.
fn interpolate_env(node: &mut Node, key: &str) -> Result<(), ConfigErrors> {
    const OPEN: &str = "${env:";
    match &mut node.value {
        Value::Map(entries) => {
            for (k, v) in entries.iter_mut() {
                let path = if key.is_empty() { k.name.clone() } else { format!("{key}.{}", k.name) };
                interpolate_env(v, &path)?;
            }
        }
        Value::Seq(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                interpolate_env(v, &format!("{key}[{i}]"))?;
            }
        }
        Value::Str(s) if s.contains(OPEN) => {
            let err = |message: String| -> ConfigErrors {
                ConfigError { origin: node.origin.clone(), key: key.to_string(), message, hint: None }.into()
            };
            let (mut out, mut rest) = (String::new(), s.as_str());
            while let Some(start) = rest.find(OPEN) {
                out.push_str(&rest[..start]);
                let after = &rest[start + OPEN.len()..];
                let end = after.find('}').ok_or_else(|| err(format!("unclosed ${{env:...}} in {s:?}")))?;
                let (var, default) = match after[..end].split_once(',') {
                    Some((v, d)) => (v.trim(), Some(d)),
                    None => (after[..end].trim(), None),
                };
                match (std::env::var(var), default) {
                    (Ok(v), _) => out.push_str(&v),
                    (Err(_), Some(d)) => out.push_str(d),
                    (Err(_), None) => {
                        return Err(err(format!(
                            "environment variable {var} is not set (write ${{env:{var},DEFAULT}} for a fallback)"
                        )))
                    }
                }
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            let whole = s.trim().starts_with(OPEN) && s.trim().ends_with('}') && s.matches(OPEN).count() == 1;
            node.value = if whole {
                let source = Source::Override(Arc::from(format!("{key}={out}").as_str()));
                tree::parse_str(&out, source).map(|n| n.value).unwrap_or(Value::Str(out))
            } else {
                Value::Str(out)
            };
        }
        _ => {}
    }
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
    fn hydra_add_force_and_delete_overrides() {
        let d = tempfile::tempdir().unwrap();
        let main = write(d.path(), "main.yaml", "seed: 3\nfinetune: {lr: 0.1, steps: 5}\n");
        let o = |v: &[&str]| load_tree(&main, &v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let t = o(&["+finetune.batch_size=4", "++seed=9", "++fresh=1", "~finetune.steps"]).unwrap();
        let f = t.get("finetune").unwrap();
        assert_eq!(f.get("batch_size").unwrap().value, Value::Int(4));
        assert_eq!(t.get("seed").unwrap().value, Value::Int(9));
        assert_eq!(t.get("fresh").unwrap().value, Value::Int(1));
        assert!(f.get("steps").is_none());
        assert_eq!(f.get("lr").unwrap().value, Value::Float(0.1));
        let e = o(&["+seed=4"]).unwrap_err().to_string();
        assert!(e.contains("`seed` is already set (at ") && e.contains("main.yaml:1:7"), "{e}");
        let e = o(&["~finetune.nothing"]).unwrap_err().to_string();
        assert!(e.contains("cannot delete `finetune.nothing`: it is not set"), "{e}");
        let e = o(&["~seed=3"]).unwrap_err().to_string();
        assert!(e.contains("takes no value"), "{e}");
    }

    #[test]
    fn a_preset_chosen_on_the_command_line_replaces_its_groups_include_and_the_file_still_wins() {
        let d = tempfile::tempdir().unwrap();
        let main = write(d.path(), "main.yaml", "include: [encoder/small]\nencoder: {layers: 7}\n");
        let enc = |t: &Node, k: &str| t.get("encoder").unwrap().get(k).unwrap().value.clone();
        let small = load_tree(&main, &[]).unwrap();
        assert_eq!(enc(&small, "dim"), Value::Int(64));
        let base = load_tree(&main, &["encoder=base".into()]).unwrap();
        // base's dim (256), not small's; the file's own layers still.
        assert_eq!(enc(&base, "dim"), Value::Int(256));
        assert_eq!(enc(&base, "layers"), Value::Int(7));
        assert!(base
            .get("encoder")
            .unwrap()
            .get("dim")
            .unwrap()
            .origin
            .to_string()
            .contains("configs/encoder/base.yaml"));
        // A file without that group's include gets it under its own values.
        let bare = write(d.path(), "bare.yaml", "seed: 1\n");
        assert_eq!(enc(&load_tree(&bare, &["encoder=large".into()]).unwrap(), "dim"), Value::Int(512));
        // Not a preset of the group: an ordinary value.
        let t = load_tree(&bare, &["encoder=nosuch".into()]).unwrap();
        assert_eq!(t.get("encoder").unwrap().value, Value::Str("nosuch".into()));
    }

    #[test]
    fn env_interpolation_reads_variables_with_defaults_and_names_a_missing_one() {
        let d = tempfile::tempdir().unwrap();
        // Variables no other test or tool sets (the tests share the environment).
        std::env::set_var("UORCH_TEST_INTERP_LR", "0.003");
        let main = write(
            d.path(),
            "main.yaml",
            "finetune: {lr: '${env:UORCH_TEST_INTERP_LR}'}\nname: 'run-${env:UORCH_TEST_INTERP_LR}-${env:UORCH_TEST_INTERP_NONE,x}'\n",
        );
        let t = load_tree(&main, &[]).unwrap();
        assert_eq!(t.get("finetune").unwrap().get("lr").unwrap().value, Value::Float(0.003));
        assert_eq!(t.get("name").unwrap().value, Value::Str("run-0.003-x".into()));
        let bad = write(d.path(), "bad.yaml", "seed: 1\nname: '${env:UORCH_TEST_INTERP_NONE}'\n");
        let e = load_tree(&bad, &[]).unwrap_err().to_string();
        assert!(
            e.contains("bad.yaml:2:7") && e.contains("`name`") && e.contains("UORCH_TEST_INTERP_NONE is not set"),
            "{e}"
        );
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
