//! Configuration errors that say where (file:line:col), which key, what was
//! expected, and the likely intended key when a name looks misspelt.

use super::tree::{Node, Origin, Value};
use std::fmt;

#[derive(Debug, Clone)]
pub struct ConfigError {
    pub origin: Origin,
    /// Dotted key path (`finetune.lr`, `axes[2].values`); empty for the document.
    pub key: String,
    pub message: String,
    /// "did you mean `lr`?" style help, when there is a likely intended name.
    pub hint: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.origin)?;
        if !self.key.is_empty() {
            write!(f, "key `{}`: ", self.key)?;
        }
        write!(f, "{}", self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "; {h}")?;
        }
        Ok(())
    }
}

/// One or more errors; displayed one per line.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// A step in a key path.
#[derive(Debug, Clone, PartialEq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

pub fn join(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) if s.is_empty() => s.push_str(k),
            Seg::Key(k) => {
                s.push('.');
                s.push_str(k)
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Parse `a.b[2].c` into segments.
pub fn split(key: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in key.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(b) = rest.find('[') {
            if b > 0 {
                out.push(Seg::Key(rest[..b].to_string()));
            }
            rest = &rest[b..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let Some(end) = stripped.find(']') else { break };
                if let Ok(i) = stripped[..end].parse() {
                    out.push(Seg::Index(i));
                }
                rest = &stripped[end + 1..];
            }
        } else {
            out.push(Seg::Key(rest.to_string()));
        }
    }
    out
}

/// The deepest node along `path` and how many segments it consumed.
fn walk<'a>(tree: &'a Node, path: &[Seg]) -> (&'a Node, Option<&'a Origin>, usize) {
    let mut node = tree;
    let mut key_origin = None;
    for (i, seg) in path.iter().enumerate() {
        let next = match (seg, &node.value) {
            (Seg::Key(k), Value::Map(entries)) => entries.iter().find(|(key, _)| &key.name == k).map(|(key, v)| {
                key_origin = Some(&key.origin);
                v
            }),
            (Seg::Index(i), Value::Seq(items)) => items.get(*i),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => return (node, key_origin, i),
        }
    }
    (node, key_origin, path.len())
}

impl ConfigError {
    /// An error about the value at `key` (a dotted path); the origin is where that
    /// value was written, or `default` when no file set it.
    pub fn at_key(tree: &Node, key: &str, message: String) -> Self {
        let path = split(key);
        let (node, _, depth) = walk(tree, &path);
        let origin = if depth == path.len() { node.origin.clone() } else { Origin::Default };
        ConfigError { origin, key: key.to_string(), message, hint: None }
    }
}

/// Turn a serde error (with the path where it happened) into a [`ConfigError`].
pub fn from_serde(tree: &Node, err: serde_path_to_error::Error<serde_json::Error>) -> ConfigErrors {
    let mut path: Vec<Seg> = Vec::new();
    for seg in err.path().iter() {
        match seg {
            serde_path_to_error::Segment::Seq { index } => path.push(Seg::Index(*index)),
            serde_path_to_error::Segment::Map { key } => path.push(Seg::Key(key.clone())),
            serde_path_to_error::Segment::Enum { .. } | serde_path_to_error::Segment::Unknown => {}
        }
    }
    let raw = err.into_inner().to_string();
    let (node, key_origin, depth) = walk(tree, &path);
    let key = join(&path);

    if let Some((name, expected)) = parse_unknown(&raw, "unknown field") {
        // The path ends at the unknown key itself; point at the key, not its value.
        let origin = key_origin.filter(|_| depth == path.len()).unwrap_or(&node.origin).clone();
        let list = if expected.is_empty() {
            "this section takes no keys".to_string()
        } else {
            format!("expected one of {}", quoted(&expected))
        };
        return ConfigError {
            origin,
            key,
            message: format!("unknown key `{name}`; {list}"),
            hint: suggest(&name, &expected),
        }
        .into();
    }
    if let Some((name, expected)) = parse_unknown(&raw, "unknown variant") {
        return ConfigError {
            origin: node.origin.clone(),
            key,
            message: format!("unknown value `{name}`; expected one of {}", quoted(&expected)),
            hint: suggest(&name, &expected),
        }
        .into();
    }
    if let Some(field) = raw.strip_prefix("missing field `").and_then(|r| r.strip_suffix('`')) {
        let full = if key.is_empty() { field.to_string() } else { format!("{key}.{field}") };
        // Point at the section's own key (`finetune:`), or the file's start for the top level.
        let origin = match (key_origin, &node.origin) {
            (Some(o), _) if depth == path.len() && !path.is_empty() => o.clone(),
            (_, Origin::File { path, .. }) => Origin::File { path: path.clone(), line: 1, col: 1 },
            (_, other) => other.clone(),
        };
        return ConfigError { origin, key: full, message: "required key is missing".into(), hint: None }.into();
    }
    let origin = if depth == path.len() { node.origin.clone() } else { Origin::Default };
    ConfigError { origin, key, message: reword_type_error(&raw), hint: None }.into()
}

/// serde's "invalid type: string \"x\", expected u64" → "expected an unsigned integer, found string \"x\"".
fn reword_type_error(raw: &str) -> String {
    let Some(rest) = raw.strip_prefix("invalid type: ").or_else(|| raw.strip_prefix("invalid value: ")) else {
        return raw.to_string();
    };
    let Some((found, expected)) = rest.rsplit_once(", expected ") else { return raw.to_string() };
    let expected = match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a non-negative integer".to_string(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer".to_string(),
        "f32" | "f64" => "a number".to_string(),
        "a boolean" | "bool" => "true or false".to_string(),
        other => other.to_string(),
    };
    format!("expected {expected}, found {found}")
}

/// From "unknown field `x`, expected one of `a`, `b`" → ("x", ["a", "b"]).
fn parse_unknown(raw: &str, prefix: &str) -> Option<(String, Vec<String>)> {
    let rest = raw.strip_prefix(prefix)?.trim_start().strip_prefix('`')?;
    let (name, tail) = rest.split_once('`')?;
    let expected = tail.split('`').skip(1).step_by(2).map(str::to_string).collect();
    Some((name.to_string(), expected))
}

fn quoted(names: &[String]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// The valid name closest to `name`, if it is close enough to be a typo.
pub fn suggest(name: &str, candidates: &[String]) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(&lower, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_split_and_join_round_trip() {
        let p = split("axes[2].values[0].x");
        assert_eq!(p.len(), 5);
        assert_eq!(join(&p), "axes[2].values[0].x");
    }

    #[test]
    fn suggestions_catch_typos_but_not_unrelated_words() {
        let c: Vec<String> = ["output_root", "seed", "name", "cpu_threads"].iter().map(|s| s.to_string()).collect();
        assert_eq!(suggest("outptu_root", &c).as_deref(), Some("did you mean `output_root`?"));
        assert_eq!(suggest("sed", &c).as_deref(), Some("did you mean `seed`?"));
        assert_eq!(suggest("learning_rate", &c), None);
    }

    #[test]
    fn serde_unknown_field_messages_parse() {
        let (n, e) = parse_unknown("unknown field `sed`, expected one of `seed`, `name`", "unknown field").unwrap();
        assert_eq!(n, "sed");
        assert_eq!(e, vec!["seed", "name"]);
        let (_, e) = parse_unknown("unknown field `x`, there are no fields", "unknown field").unwrap();
        assert!(e.is_empty());
    }
}
