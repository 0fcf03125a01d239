//! A YAML document as a tree whose every node remembers where it was written
//! (file, line, column), so that configuration errors can point at the text.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};
use yaml_rust2::Yaml;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// A file, 1-based line and column.
    File { path: Arc<PathBuf>, line: usize, col: usize },
    /// A `--set key=value` given on the command line.
    Override(Arc<str>),
    /// Not written anywhere: a default.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line, col } => write!(f, "{}:{line}:{col}", path.display()),
            Origin::Override(s) => write!(f, "--set {s}"),
            Origin::Default => write!(f, "default"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Insertion-ordered; keys are unique (duplicates are a parse error).
    Map(Vec<(Key, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub origin: Origin,
}

impl Node {
    pub fn new(value: Value, origin: Origin) -> Self {
        Self { value, origin }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn key(&self, key: &str) -> Option<&Key> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(k, _)| k),
            _ => None,
        }
    }

    /// Short name of the node's type, for error messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// Plain JSON, for typed deserialization.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(x) => serde_json::Number::from_f64(*x).map(J::Number).unwrap_or(J::Null),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(entries.iter().map(|(k, v)| (k.name.clone(), v.to_json())).collect()),
        }
    }
}

/// A YAML syntax error, or a construct configs do not allow.
#[derive(Debug, Clone)]
pub struct ParseError {
    pub origin: Origin,
    pub message: String,
}

/// Parse one YAML document. The source decides how positions are reported: a
/// `--set` value reports the override itself rather than a line of a file.
pub fn parse_str(text: &str, source: Source) -> Result<Node, ParseError> {
    let mut builder =
        Builder { source: source.clone(), stack: Vec::new(), anchors: Vec::new(), root: None, error: None, docs: 0 };
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut builder, true) {
        let m = e.marker();
        return Err(ParseError { origin: source.origin(m), message: e.info().to_string() });
    }
    if let Some(e) = builder.error {
        return Err(e);
    }
    Ok(builder.root.unwrap_or_else(|| Node::new(Value::Null, source.start())))
}

pub fn parse_file(path: &Path) -> Result<Node, ParseError> {
    let text = std::fs::read_to_string(path).map_err(|e| ParseError {
        origin: Origin::File { path: Arc::new(path.to_path_buf()), line: 0, col: 0 },
        message: format!("cannot read: {e}"),
    })?;
    parse_str(&text, Source::File(Arc::new(path.to_path_buf())))
}

#[derive(Debug, Clone)]
pub enum Source {
    File(Arc<PathBuf>),
    Override(Arc<str>),
}

impl Source {
    fn start(&self) -> Origin {
        match self {
            Source::File(p) => Origin::File { path: p.clone(), line: 1, col: 1 },
            Source::Override(s) => Origin::Override(s.clone()),
        }
    }

    fn origin(&self, m: &Marker) -> Origin {
        match self {
            Source::File(p) => Origin::File { path: p.clone(), line: m.line(), col: m.col() + 1 },
            Source::Override(s) => Origin::Override(s.clone()),
        }
    }
}

enum Frame {
    Seq(Node, usize),
    /// A mapping being built, its anchor, and the key waiting for its value.
    Map(Node, usize, Option<Key>),
}

struct Builder {
    source: Source,
    stack: Vec<Frame>,
    anchors: Vec<(usize, Node)>,
    root: Option<Node>,
    error: Option<ParseError>,
    docs: usize,
}

impl Builder {
    fn fail(&mut self, origin: Origin, message: String) {
        if self.error.is_none() {
            self.error = Some(ParseError { origin, message });
        }
    }

    /// Attach a finished node to its parent (or make it the root).
    fn push(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.push((anchor, node.clone()));
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq(seq, _)) => {
                if let Value::Seq(items) = &mut seq.value {
                    items.push(node);
                }
            }
            Some(Frame::Map(map, _, pending)) => match pending.take() {
                None => {
                    let name = match &node.value {
                        Value::Str(s) => s.clone(),
                        Value::Int(i) => i.to_string(),
                        Value::Bool(b) => b.to_string(),
                        _ => {
                            let origin = node.origin.clone();
                            let kind = node.kind();
                            self.fail(origin, format!("mapping keys must be plain names, found {kind}"));
                            return;
                        }
                    };
                    if let Value::Map(entries) = &map.value {
                        if let Some((first, _)) = entries.iter().find(|(k, _)| k.name == name) {
                            let msg = format!("duplicate key `{name}` (first given at {})", first.origin);
                            self.fail(node.origin.clone(), msg);
                            return;
                        }
                    }
                    *pending = Some(Key { name, origin: node.origin });
                }
                Some(key) => {
                    if let Value::Map(entries) = &mut map.value {
                        entries.push((key, node));
                    }
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let origin = self.source.origin(&mark);
        match ev {
            Event::DocumentStart => {
                self.docs += 1;
                if self.docs > 1 {
                    self.fail(origin, "a config file holds one YAML document; found a second `---`".into());
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let value = if style != TScalarStyle::Plain || tag.is_some_and(|t| t.suffix == "str") {
                    Value::Str(text)
                } else {
                    match Yaml::from_str(&text) {
                        Yaml::Null => Value::Null,
                        Yaml::Boolean(b) => Value::Bool(b),
                        Yaml::Integer(i) => Value::Int(i),
                        Yaml::Real(r) => {
                            let x = r.parse::<f64>().ok().or_else(|| parse_special_float(&r)).unwrap_or(f64::NAN);
                            if !x.is_finite() {
                                let why = if r.trim_start_matches(['+', '-']).starts_with('.') {
                                    "is not a finite number: config numbers must be finite"
                                } else {
                                    "is beyond the range of a 64-bit float (about 1.8e308): write a finite number"
                                };
                                self.fail(origin.clone(), format!("{text} {why}"));
                            }
                            Value::Float(x)
                        }
                        _ => Value::Str(text),
                    }
                };
                self.push(Node::new(value, origin), anchor);
            }
            Event::SequenceStart(anchor, _) => {
                self.stack.push(Frame::Seq(Node::new(Value::Seq(Vec::new()), origin), anchor))
            }
            Event::MappingStart(anchor, _) => {
                self.stack.push(Frame::Map(Node::new(Value::Map(Vec::new()), origin), anchor, None))
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(Frame::Seq(node, anchor) | Frame::Map(node, anchor, _)) = self.stack.pop() {
                    self.push(node, anchor);
                }
            }
            Event::Alias(id) => match self.anchors.iter().rev().find(|(a, _)| *a == id) {
                Some((_, node)) => {
                    let node = node.clone();
                    self.push(node, 0)
                }
                None => self.fail(origin, "alias to an unknown anchor".into()),
            },
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
    }
}

fn parse_special_float(s: &str) -> Option<f64> {
    match s.to_ascii_lowercase().as_str() {
        ".inf" | "+.inf" => Some(f64::INFINITY),
        "-.inf" => Some(f64::NEG_INFINITY),
        ".nan" => Some(f64::NAN),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Node, ParseError> {
        parse_str(text, Source::File(Arc::new("t.yaml".into())))
    }

    #[test]
    fn scalars_follow_yaml_core_types_and_quotes_force_strings() {
        let n = parse("a: 1\nb: 3e-4\nc: true\nd: '1'\ne: ~\nf: hello\ng: 0.5\n").unwrap();
        assert_eq!(n.get("a").unwrap().value, Value::Int(1));
        assert_eq!(n.get("b").unwrap().value, Value::Float(3e-4));
        assert_eq!(n.get("c").unwrap().value, Value::Bool(true));
        assert_eq!(n.get("d").unwrap().value, Value::Str("1".into()));
        assert_eq!(n.get("e").unwrap().value, Value::Null);
        assert_eq!(n.get("f").unwrap().value, Value::Str("hello".into()));
        assert_eq!(n.get("g").unwrap().value, Value::Float(0.5));
    }

    #[test]
    fn numbers_beyond_f64_and_non_finite_ones_get_their_own_message() {
        let e = parse("pretrain:\n  lr: 1e400\n").unwrap_err();
        assert_eq!(e.origin.to_string(), "t.yaml:2:7");
        assert!(e.message.contains("1e400 is beyond the range of a 64-bit float"), "{}", e.message);
        let e = parse("lr: -.inf\n").unwrap_err();
        assert!(e.message.contains("-.inf is not a finite number"), "{}", e.message);
        assert_eq!(parse("lr: 1.5e300\n").unwrap().get("lr").unwrap().value, Value::Float(1.5e300));
    }

    #[test]
    fn nodes_and_keys_record_line_and_column() {
        let n = parse("top:\n  inner: 5\n  other: [1, 2]\n").unwrap();
        let top = n.get("top").unwrap();
        let key = top.key("other").unwrap();
        assert_eq!(key.origin.to_string(), "t.yaml:3:3");
        assert_eq!(top.get("inner").unwrap().origin.to_string(), "t.yaml:2:10");
    }

    #[test]
    fn duplicate_keys_are_rejected_with_both_places() {
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.origin.to_string(), "t.yaml:3:1");
        assert!(e.message.contains("duplicate key `a` (first given at t.yaml:1:1)"), "{}", e.message);
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(matches!(e.origin, Origin::File { line, .. } if line >= 1), "{:?}", e);
    }

    #[test]
    fn anchors_and_aliases_copy_the_anchored_node() {
        let n = parse("base: &b {x: 1}\nother: *b\n").unwrap();
        assert_eq!(n.get("other").unwrap().get("x").unwrap().value, Value::Int(1));
    }
}
