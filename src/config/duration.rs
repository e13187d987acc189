//! Durations as users write them: `30s`, `5m`, `250ms`, `1.5s`, `1h 30m`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Parses a human duration; a bare number is refused because its unit would
/// be a guess.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration (use e.g. 30s, 500ms, 5m)".into());
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(d);
    }
    parse_decimal(s).ok_or_else(|| {
        if s.parse::<f64>().is_ok() {
            format!("duration '{s}' needs a unit, e.g. {s}s or {s}ms")
        } else {
            format!("invalid duration '{s}' (use e.g. 30s, 1.5s, 500ms, 5m, 1h)")
        }
    })
}

/// `1.5s`, `0.25ms`: decimal amounts, which humantime does not accept.
fn parse_decimal(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = s.split_at(split);
    let value: f64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(value * scale).ok()
}

/// A duration that parses from human text on the command line and in files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_duration(s).map(Self)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(f64),
        }
        match Raw::deserialize(d)? {
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
            Raw::Number(n) => Err(serde::de::Error::custom(format!(
                "duration {n} needs a unit: write it as a string, e.g. \"{n}s\""
            ))),
        }
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl From<HumanDuration> for Duration {
    fn from(d: HumanDuration) -> Self {
        d.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_common_spellings() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
    }

    #[test]
    fn serialises_to_text_that_parses_back() {
        for text in ["30s", "1.5s", "250ms", "1h 30m"] {
            let d: HumanDuration = text.parse().unwrap();
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(
                serde_json::from_str::<HumanDuration>(&json).unwrap(),
                d,
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_unitless_and_garbage_with_a_hint() {
        assert!(parse_duration("30").unwrap_err().contains("needs a unit"));
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .contains("invalid duration")
        );
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
