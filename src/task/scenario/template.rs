//! Templates: text with `${name}` placeholders, filled in per iteration.
//!
//! A name is a scenario variable (set by an earlier step's extraction, a
//! feeder record's column, or the file's `variables`) or a built-in
//! (`vajra.iteration`, `vajra.instance`, `vajra.peer`, `vajra.scenario`,
//! `vajra.random_id`, `vajra.timestamp_ms`). `$${` writes a literal `${`.
//!
//! A template is parsed once when the file is read and bound once when the
//! scenario is compiled: constants are folded into its text, every other
//! name becomes a slot number, so rendering is appends, never lookups.

use std::fmt::Write as _;

/// A template as written: literal text and the names it uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Name(String),
}

/// Names the engine fills in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// The instance's iteration number (0, 1, 2, ...).
    Iteration,
    /// The task instance's number.
    Instance,
    /// The peer running it (`standalone` outside a cluster).
    Peer,
    /// The scenario's name.
    Scenario,
    /// 16 random hex digits, new at each use.
    RandomId,
    /// Milliseconds since the Unix epoch, when rendered.
    TimestampMs,
}

impl Builtin {
    /// The built-in `name` stands for, if it is one.
    pub fn named(name: &str) -> Option<Self> {
        Some(match name {
            "vajra.iteration" => Self::Iteration,
            "vajra.instance" => Self::Instance,
            "vajra.peer" => Self::Peer,
            "vajra.scenario" => Self::Scenario,
            "vajra.random_id" => Self::RandomId,
            "vajra.timestamp_ms" => Self::TimestampMs,
            _ => return None,
        })
    }
}

/// What a name is bound to when a scenario is compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// A constant, folded into the text.
    Constant(String),
    /// A variable set while the iteration runs: its slot.
    Slot(usize),
    /// A built-in.
    Builtin(Builtin),
}

/// A template ready to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Slot(usize),
    Builtin(Builtin),
}

/// What a template is rendered with.
pub struct Values<'a> {
    /// The iteration's variables, by slot (empty until set).
    pub slots: &'a [String],
    /// The instance's iteration number.
    pub iteration: u64,
    /// The instance's number.
    pub instance: usize,
    /// The peer's name.
    pub peer: &'a str,
    /// The scenario's name.
    pub scenario: &'a str,
    /// Where random ids come from.
    pub rng: &'a mut fastrand::Rng,
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl Parsed {
    /// Parses `text`; an error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            literal.push_str(&rest[..at]);
            let after = &rest[at..];
            if let Some(escaped) = after.strip_prefix("$${") {
                literal.push_str("${");
                rest = escaped;
            } else if let Some(open) = after.strip_prefix("${") {
                let close = open
                    .find('}')
                    .ok_or_else(|| format!("'${{' without a closing '}}' in \"{text}\""))?;
                let name = open[..close].trim();
                if !valid_name(name) {
                    return Err(format!(
                        "'${{{}}}' in \"{text}\" is not a variable name (letters, digits, '_', '.', '-')",
                        &open[..close]
                    ));
                }
                if !literal.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut literal)));
                }
                pieces.push(Piece::Name(name.to_owned()));
                rest = &open[close + 1..];
            } else {
                literal.push('$');
                rest = &after[1..];
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Self { pieces })
    }

    /// The names it uses, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Name(name) => Some(name.as_str()),
            Piece::Text(_) => None,
        })
    }

    /// Binds every name with `bind`; the first name it cannot bind is
    /// returned as the error.
    pub fn bind(&self, bind: impl Fn(&str) -> Option<Binding>) -> Result<Template, String> {
        let mut parts: Vec<Part> = Vec::new();
        let push_text = |parts: &mut Vec<Part>, text: &str| match parts.last_mut() {
            Some(Part::Text(last)) => last.push_str(text),
            _ => parts.push(Part::Text(text.to_owned())),
        };
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => push_text(&mut parts, text),
                Piece::Name(name) => match bind(name).ok_or_else(|| name.clone())? {
                    Binding::Constant(value) => push_text(&mut parts, &value),
                    Binding::Slot(slot) => parts.push(Part::Slot(slot)),
                    Binding::Builtin(builtin) => parts.push(Part::Builtin(builtin)),
                },
            }
        }
        Ok(Template { parts })
    }
}

impl Template {
    /// Its text, if it has no placeholder left once bound.
    pub fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Text(text)] => Some(text),
            _ => None,
        }
    }

    /// Appends its rendering with `values` to `out`.
    pub fn render_into(&self, values: &mut Values<'_>, out: &mut String) {
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Slot(slot) => out.push_str(&values.slots[*slot]),
                Part::Builtin(Builtin::Iteration) => {
                    let _ = write!(out, "{}", values.iteration);
                }
                Part::Builtin(Builtin::Instance) => {
                    let _ = write!(out, "{}", values.instance);
                }
                Part::Builtin(Builtin::Peer) => out.push_str(values.peer),
                Part::Builtin(Builtin::Scenario) => out.push_str(values.scenario),
                Part::Builtin(Builtin::RandomId) => {
                    let _ = write!(out, "{:016x}", values.rng.u64(..));
                }
                Part::Builtin(Builtin::TimestampMs) => {
                    let ms = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis());
                    let _ = write!(out, "{ms}");
                }
            }
        }
    }

    /// Its rendering with `values`.
    pub fn render(&self, values: &mut Values<'_>) -> String {
        let mut out = String::new();
        self.render_into(values, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind_all(text: &str) -> Result<Template, String> {
        Parsed::parse(text)?.bind(|name| match name {
            "host" => Some(Binding::Constant("example.test".into())),
            "token" => Some(Binding::Slot(0)),
            other => Builtin::named(other).map(Binding::Builtin),
        })
    }

    fn render(template: &Template) -> String {
        let mut rng = fastrand::Rng::with_seed(1);
        let slots = ["abc".to_owned()];
        template.render(&mut Values {
            slots: &slots,
            iteration: 41,
            instance: 3,
            peer: "p1",
            scenario: "browse",
            rng: &mut rng,
        })
    }

    #[test]
    fn placeholders_constants_builtins_and_escapes() {
        let t =
            bind_all("http://${host}/a?t=${token}&i=${vajra.iteration}&p=${ vajra.peer }").unwrap();
        assert_eq!(render(&t), "http://example.test/a?t=abc&i=41&p=p1");
        let literal = bind_all("http://${host}/x$${y} costs $5").unwrap();
        assert_eq!(
            literal.as_literal(),
            Some("http://example.test/x${y} costs $5")
        );
        let id = render(&bind_all("${vajra.random_id}").unwrap());
        assert_eq!(id.len(), 16);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn bad_templates_and_unknown_names_are_named() {
        assert!(Parsed::parse("a ${token").unwrap_err().contains("closing"));
        assert!(
            Parsed::parse("${not valid}")
                .unwrap_err()
                .contains("not valid")
        );
        assert!(Parsed::parse("${}").is_err());
        assert_eq!(bind_all("x ${nobody} y").unwrap_err(), "nobody");
        let names: Vec<_> = Parsed::parse("${a}-${b.c}")
            .unwrap()
            .names()
            .map(String::from)
            .collect();
        assert_eq!(names, ["a", "b.c"]);
    }
}
