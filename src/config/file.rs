//! Reading settings from a TOML or YAML file.

use std::path::Path;

use super::ConfigError;
use super::args::RunArgs;

/// Reads `path` as YAML (`.yaml`, `.yml`) or TOML (anything else). Unknown
/// keys and bad values are errors that name the key and, where the parser
/// knows it, the line.
pub fn load(path: &Path) -> Result<RunArgs, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: shown.clone(),
        message: format!("cannot read it: {e}"),
    })?;
    let is_yaml = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    let parsed = if is_yaml {
        parse_yaml(&text)
    } else {
        parse_toml(&text)
    };
    parsed.map_err(|message| ConfigError::File {
        path: shown,
        message,
    })
}

/// Parses TOML settings.
pub fn parse_toml(text: &str) -> Result<RunArgs, String> {
    toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
}

/// Parses YAML settings (an empty document means no settings).
pub fn parse_yaml(text: &str) -> Result<RunArgs, String> {
    if text.trim().is_empty() {
        return Ok(RunArgs::default());
    }
    serde_yaml_ng::from_str(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_keys_are_flag_names() {
        let args = parse_toml("tps = 250\nramp-up = \"30s\"\nthresholds = [\"p99<1s\"]\n").unwrap();
        assert_eq!(args.tps, Some(250.0));
        assert_eq!(args.ramp_up.unwrap().0.as_secs(), 30);
        assert_eq!(args.threshold, vec!["p99<1s".to_string()]);
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let e = parse_toml("tps = 1\ntpss = 2\n").unwrap_err();
        assert!(e.contains("tpss") && e.contains("line 2"), "{e}");
        let e = parse_yaml("tps: 1\nbogus: 2\n").unwrap_err();
        assert!(e.contains("bogus") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let e = parse_toml("duration = \"ten seconds\"").unwrap_err();
        assert!(
            e.contains("duration") || e.contains("invalid duration"),
            "{e}"
        );
        let e = parse_toml("duration = 10").unwrap_err();
        assert!(e.contains("needs a unit"), "{e}");
        let e = parse_yaml("tps: fast").unwrap_err();
        assert!(e.contains("tps"), "{e}");
    }
}
