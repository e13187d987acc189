//! Checks on a response, and values extracted from it.
//!
//! A failed check fails its step with a kind saying which check
//! (`check_status`, `check_body`, `check_header`, `check_json`); a value
//! that cannot be extracted fails it with `extract`. Either ends the
//! iteration: the later steps would use what is missing.

use regex::Regex;

use super::cookies::set_cookie_value;
use crate::task::TaskError;
use crate::task::http::client::Kept;

/// A response as checks see it.
pub struct Response<'a> {
    /// Its status.
    pub status: u16,
    /// Its headers and (up to the limit) body.
    pub kept: &'a Kept,
    /// Its body as JSON, parsed on first use.
    json: Option<Result<serde_json::Value, String>>,
}

impl<'a> Response<'a> {
    /// The response with `status` and what was kept of it.
    pub fn new(status: u16, kept: &'a Kept) -> Self {
        Self {
            status,
            kept,
            json: None,
        }
    }

    fn header(&self, name: &str) -> Option<&'a str> {
        let kept: &'a Kept = self.kept;
        kept.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn body(&self) -> std::borrow::Cow<'a, str> {
        let kept: &'a Kept = self.kept;
        String::from_utf8_lossy(&kept.body)
    }

    fn json(&mut self) -> Result<&serde_json::Value, String> {
        let kept = self.kept;
        self.json
            .get_or_insert_with(|| {
                serde_json::from_slice(&kept.body).map_err(|e| {
                    let cut = if kept.truncated {
                        " (the body was cut at the file's max_body)"
                    } else {
                        ""
                    };
                    format!("the body is not JSON{cut}: {e}")
                })
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// How a header's or JSON value's text is compared.
#[derive(Debug, Clone)]
pub enum Compare {
    /// Present, whatever it is.
    Present,
    /// Exactly this (for JSON: this JSON value).
    Equals(serde_json::Value),
    /// Contains this text.
    Contains(String),
    /// Matches this regular expression.
    Matches(Regex),
}

/// One compiled check.
#[derive(Debug, Clone)]
pub enum Check {
    /// The status is one of these.
    Status(Vec<u16>),
    /// The body contains this text.
    BodyContains(String),
    /// The body matches this expression.
    BodyMatches(Regex),
    /// A header compares so.
    Header(String, Compare),
    /// A JSON value compares so.
    Json(String, Compare),
}

fn failed(kind: &'static str, message: String) -> TaskError {
    TaskError::new(kind, message)
}

impl Check {
    /// Whether a step's error of `kind` came from judging its whole answer
    /// (a check or an extraction), so its connection is still in step.
    pub fn judged(kind: &str) -> bool {
        kind.starts_with("check_") || kind == "extract"
    }
}

impl Compare {
    /// Whether `text` (a header's value, or a JSON value: `json` is it as
    /// parsed) satisfies it.
    fn holds(&self, text: &str, json: Option<&serde_json::Value>) -> bool {
        match self {
            Self::Present => true,
            Self::Equals(expected) => match (json, expected) {
                (Some(actual), expected) => actual == expected,
                (None, serde_json::Value::String(s)) => text == s,
                (None, other) => {
                    serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| v == *other)
                }
            },
            Self::Contains(part) => text.contains(part.as_str()),
            Self::Matches(re) => re.is_match(text),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Present => "to be present".into(),
            Self::Equals(v) => format!("to equal {v}"),
            Self::Contains(s) => format!("to contain {s:?}"),
            Self::Matches(re) => format!("to match /{re}/"),
        }
    }
}

impl Check {
    /// Whether the response passes; the error says what it saw.
    pub fn verify(&self, response: &mut Response<'_>) -> Result<(), TaskError> {
        match self {
            Self::Status(allowed) if allowed.contains(&response.status) => Ok(()),
            Self::Status(allowed) => Err(failed(
                "check_status",
                format!("status {} is not {allowed:?}", response.status),
            )),
            Self::BodyContains(part) if response.body().contains(part.as_str()) => Ok(()),
            Self::BodyContains(part) => Err(failed(
                "check_body",
                format!("the body does not contain {part:?}"),
            )),
            Self::BodyMatches(re) if re.is_match(&response.body()) => Ok(()),
            Self::BodyMatches(re) => Err(failed(
                "check_body",
                format!("the body does not match /{re}/"),
            )),
            Self::Header(name, compare) => match response.header(name) {
                Some(value) if compare.holds(value, None) => Ok(()),
                seen => Err(failed(
                    "check_header",
                    format!(
                        "expected header {name} {}, got {seen:?}",
                        compare.describe()
                    ),
                )),
            },
            Self::Json(pointer, compare) => {
                let json = response.json().map_err(|e| failed("check_json", e))?;
                match json.pointer(pointer) {
                    Some(value) if compare.holds(&json_text(value), Some(value)) => Ok(()),
                    seen => Err(failed(
                        "check_json",
                        format!(
                            "expected {pointer} {}, got {}",
                            compare.describe(),
                            seen.map_or("nothing".into(), ToString::to_string)
                        ),
                    )),
                }
            }
        }
    }
}

/// A JSON value as text: a string as is, anything else as JSON.
fn json_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Where an extracted value comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The JSON value at a pointer.
    Json(String),
    /// A regular expression's capture group (0: the whole match).
    Regex(Regex, usize),
    /// A response header.
    Header(String),
    /// A cookie the response set.
    Cookie(String),
}

impl Source {
    /// The value, or an error saying what was missing.
    pub fn extract(&self, response: &mut Response<'_>) -> Result<String, TaskError> {
        let missing = |what: String| failed("extract", what);
        match self {
            Self::Json(pointer) => {
                let json = response.json().map_err(|e| failed("extract", e))?;
                json.pointer(pointer)
                    .map(json_text)
                    .ok_or_else(|| missing(format!("no JSON value at {pointer}")))
            }
            Self::Regex(re, group) => re
                .captures(&response.body())
                .and_then(|c| c.get(*group).map(|m| m.as_str().to_owned()))
                .ok_or_else(|| missing(format!("nothing in the body matches /{re}/"))),
            Self::Header(name) => response
                .header(name)
                .map(str::to_owned)
                .ok_or_else(|| missing(format!("no {name} header"))),
            Self::Cookie(name) => response
                .kept
                .headers
                .iter()
                .filter(|(n, _)| n == "set-cookie")
                .find_map(|(_, v)| set_cookie_value(v, name))
                .ok_or_else(|| missing(format!("the response set no cookie {name}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(headers: &[(&str, &str)], body: &str) -> Kept {
        Kept {
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            body: body.as_bytes().to_vec(),
            body_limit: 1 << 20,
            ..Kept::default()
        }
    }

    #[test]
    fn checks_pass_and_fail_with_their_kind() {
        let k = kept(
            &[("content-type", "application/json")],
            r#"{"ok":true,"user":{"id":7,"name":"ann"}}"#,
        );
        let mut r = Response::new(200, &k);
        let pass = [
            Check::Status(vec![200, 201]),
            Check::BodyContains("ann".into()),
            Check::BodyMatches(Regex::new(r#""id":\d+"#).unwrap()),
            Check::Header("Content-Type".into(), Compare::Contains("json".into())),
            Check::Json("/ok".into(), Compare::Equals(serde_json::json!(true))),
            Check::Json("/user/id".into(), Compare::Equals(serde_json::json!(7))),
            Check::Json("/user/name".into(), Compare::Present),
        ];
        for check in &pass {
            assert!(check.verify(&mut r).is_ok(), "{check:?}");
        }
        let fail = [
            (Check::Status(vec![201]), "check_status"),
            (Check::BodyContains("bob".into()), "check_body"),
            (
                Check::Header("x-missing".into(), Compare::Present),
                "check_header",
            ),
            (
                Check::Json("/user/id".into(), Compare::Equals(serde_json::json!("7"))),
                "check_json",
            ),
            (Check::Json("/nope".into(), Compare::Present), "check_json"),
        ];
        for (check, kind) in &fail {
            assert_eq!(check.verify(&mut r).unwrap_err().kind(), *kind, "{check:?}");
        }
    }

    #[test]
    fn values_are_extracted_or_the_step_fails() {
        let k = kept(
            &[
                ("location", "/items/9"),
                ("set-cookie", "sid=abc123; Path=/; HttpOnly"),
            ],
            r#"{"token":"t-1","n":3,"note":"id=42"}"#,
        );
        let mut r = Response::new(200, &k);
        let get = |source: Source, r: &mut Response<'_>| source.extract(r);
        assert_eq!(get(Source::Json("/token".into()), &mut r).unwrap(), "t-1");
        assert_eq!(get(Source::Json("/n".into()), &mut r).unwrap(), "3");
        assert_eq!(
            get(Source::Header("Location".into()), &mut r).unwrap(),
            "/items/9"
        );
        assert_eq!(get(Source::Cookie("sid".into()), &mut r).unwrap(), "abc123");
        let re = Regex::new(r"id=(\d+)").unwrap();
        assert_eq!(get(Source::Regex(re, 1), &mut r).unwrap(), "42");
        let e = get(Source::Cookie("other".into()), &mut r).unwrap_err();
        assert_eq!(e.kind(), "extract");
        let not_json = kept(&[], "<html>");
        let e = get(
            Source::Json("/a".into()),
            &mut Response::new(200, &not_json),
        )
        .unwrap_err();
        assert!(e.message().contains("not JSON"), "{e}");
    }
}
