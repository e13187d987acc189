//! Where each field of a scenario file is: the line of every key and list
//! entry, by its path, so an error found after parsing (a variable never
//! set, a regex that does not compile) names the line it is on.
//!
//! serde gives lines only for the errors it finds itself; the checks that
//! need the whole file come later, so the file is read once more, by an
//! event parser that knows positions (yaml-rust2 for YAML, toml's own
//! spanned tables for TOML), into a map from path to line.

use std::collections::HashMap;
use std::fmt;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// One step of a path into the file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// A mapping's key.
    Key(String),
    /// A list's entry.
    Index(usize),
}

/// A field's place in the file: `scenarios[0].steps[2].request.url`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Path(Vec<Segment>);

impl Path {
    /// The file's root.
    pub fn root() -> Self {
        Self::default()
    }

    /// This path, then key `key`.
    pub fn key(&self, key: &str) -> Self {
        let mut next = self.clone();
        next.0.push(Segment::Key(key.to_owned()));
        next
    }

    /// This path, then entry `index`.
    pub fn index(&self, index: usize) -> Self {
        let mut next = self.clone();
        next.0.push(Segment::Index(index));
        next
    }

    fn parent(&self) -> Option<Self> {
        let mut parent = self.clone();
        parent.0.pop().map(|_| parent)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => write!(f, "{key}")?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// The line (1-based) of every path in one file.
#[derive(Debug, Default)]
pub struct Lines(HashMap<Path, usize>);

impl Lines {
    /// The lines of a YAML text; none if it does not parse (serde then
    /// reports the syntax error with its own line).
    pub fn of_yaml(text: &str) -> Self {
        let mut index = YamlIndex::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut index, false).is_err() {
            return Self::default();
        }
        Self(index.lines)
    }

    /// The lines of a TOML text; none if it does not parse.
    pub fn of_toml(text: &str) -> Self {
        let Ok(table) = toml::de::DeTable::parse(text) else {
            return Self::default();
        };
        let starts = line_starts(text);
        let mut lines = HashMap::new();
        toml_table(table.get_ref(), &Path::root(), &starts, &mut lines);
        Self(lines)
    }

    /// The line of `path`, or of its nearest ancestor the file has.
    pub fn line_of(&self, path: &Path) -> Option<usize> {
        let mut at = Some(path.clone());
        while let Some(path) = at {
            if let Some(line) = self.0.get(&path) {
                return Some(*line);
            }
            at = path.parent();
        }
        None
    }
}

/// A YAML container being read: a mapping (and the key whose value comes
/// next) or a list (and its next index).
enum Frame {
    Mapping { path: Path, key: Option<String> },
    List { path: Path, next: usize },
}

#[derive(Default)]
struct YamlIndex {
    stack: Vec<Frame>,
    lines: HashMap<Path, usize>,
}

impl YamlIndex {
    /// The path of the node starting now, given where it is; `None` for a
    /// mapping's key (recorded as its own path, with the key's line).
    fn place(&mut self, event: &Event, line: usize) -> Option<Path> {
        match self.stack.last_mut() {
            None => Some(Path::root()),
            Some(Frame::List { path, next }) => {
                *next += 1;
                Some(path.index(*next - 1))
            }
            Some(Frame::Mapping { path, key }) => match key.take() {
                Some(name) => Some(path.key(&name)),
                None => {
                    let name = match event {
                        Event::Scalar(text, ..) => text.clone(),
                        _ => String::new(),
                    };
                    self.lines.entry(path.key(&name)).or_insert(line);
                    *key = Some(name);
                    None
                }
            },
        }
    }
}

impl MarkedEventReceiver for YamlIndex {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let line = mark.line();
        match &event {
            Event::Scalar(..)
            | Event::Alias(_)
            | Event::SequenceStart(..)
            | Event::MappingStart(..) => {
                let Some(path) = self.place(&event, line) else {
                    return;
                };
                self.lines.entry(path.clone()).or_insert(line);
                match event {
                    Event::SequenceStart(..) => self.stack.push(Frame::List { path, next: 0 }),
                    Event::MappingStart(..) => {
                        self.stack.push(Frame::Mapping { path, key: None });
                    }
                    _ => {}
                }
            }
            Event::SequenceEnd | Event::MappingEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

/// The byte offset each line starts at.
fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(at, _)| at + 1))
        .collect()
}

fn line_at(starts: &[usize], offset: usize) -> usize {
    starts.partition_point(|&start| start <= offset)
}

fn toml_table(
    table: &toml::de::DeTable<'_>,
    path: &Path,
    starts: &[usize],
    lines: &mut HashMap<Path, usize>,
) {
    for (key, value) in table.iter() {
        let at = path.key(key.get_ref());
        lines.insert(at.clone(), line_at(starts, key.span().start));
        toml_value(value, &at, starts, lines);
    }
}

fn toml_value(
    value: &toml::Spanned<toml::de::DeValue<'_>>,
    path: &Path,
    starts: &[usize],
    lines: &mut HashMap<Path, usize>,
) {
    match value.get_ref() {
        toml::de::DeValue::Table(table) => toml_table(table, path, starts, lines),
        toml::de::DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let at = path.index(i);
                lines.insert(at.clone(), line_at(starts, item.span().start));
                toml_value(item, &at, starts, lines);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url_of(step: usize) -> Path {
        Path::root()
            .key("scenarios")
            .index(0)
            .key("steps")
            .index(step)
            .key("request")
            .key("url")
    }

    #[test]
    fn yaml_keys_and_entries_have_their_lines() {
        let text = "scenarios:\n  - name: a\n    steps:\n      - request:\n          url: /x\n      - think: 1s\n      - request:\n          method: GET\n          url: /y\n";
        let lines = Lines::of_yaml(text);
        assert_eq!(lines.line_of(&url_of(0)), Some(5));
        assert_eq!(lines.line_of(&url_of(2)), Some(9));
        let think = Path::root().key("scenarios").index(0).key("steps").index(1);
        assert_eq!(lines.line_of(&think), Some(6));
        assert_eq!(
            lines.line_of(&think.key("missing")),
            Some(6),
            "nearest ancestor"
        );
        assert_eq!(url_of(2).to_string(), "scenarios[0].steps[2].request.url");
    }

    #[test]
    fn toml_keys_and_entries_have_their_lines() {
        let text = "[[scenarios]]\nname = \"a\"\n\n[[scenarios.steps]]\nrequest = { url = \"/x\" }\n\n[[scenarios.steps]]\nthink = \"1s\"\n\n[[scenarios.steps]]\n[scenarios.steps.request]\nmethod = \"GET\"\nurl = \"/y\"\n";
        let lines = Lines::of_toml(text);
        assert_eq!(lines.line_of(&url_of(0)), Some(5));
        assert_eq!(lines.line_of(&url_of(2)), Some(13));
    }

    #[test]
    fn an_unparsable_file_has_no_lines_and_no_panic() {
        assert_eq!(Lines::of_yaml("a: [").line_of(&Path::root()), None);
        assert_eq!(Lines::of_toml("a = ").line_of(&Path::root()), None);
    }
}
