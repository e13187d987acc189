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
    let shown = |e: toml::de::Error| e.to_string().trim_end().to_owned();
    let table: toml::Table = toml::from_str(text).map_err(shown)?;
    check_keys(table.keys().map(String::as_str), text)?;
    // The run's and the exporters' settings are read from the same text,
    // each ignoring the other's keys, so a bad value keeps its line.
    let mut args: RunArgs = toml::from_str(text).map_err(shown)?;
    args.export = toml::from_str(text).map_err(shown)?;
    Ok(args)
}

/// Parses YAML settings (an empty document means no settings).
pub fn parse_yaml(text: &str) -> Result<RunArgs, String> {
    if text.trim().is_empty() {
        return Ok(RunArgs::default());
    }
    let shown = |e: serde_yaml_ng::Error| e.to_string();
    let mapping: serde_yaml_ng::Mapping = serde_yaml_ng::from_str(text).map_err(shown)?;
    let mut keys = Vec::new();
    for key in mapping.keys() {
        keys.push(
            key.as_str()
                .ok_or_else(|| format!("a key that is not text: {key:?}"))?,
        );
    }
    check_keys(keys.into_iter(), text)?;
    let mut args: RunArgs = serde_yaml_ng::from_str(text).map_err(shown)?;
    args.export = serde_yaml_ng::from_str(text).map_err(shown)?;
    Ok(args)
}

/// Refuses a key that is no flag's name (or alias), naming it and its line.
fn check_keys<'a>(keys: impl Iterator<Item = &'a str>, text: &str) -> Result<(), String> {
    let known = file_keys();
    for key in keys {
        if !known.iter().any(|k| k == key) {
            let line = line_of(key, text).map_or(String::new(), |n| format!(" at line {n}"));
            return Err(format!(
                "unknown field `{key}`{line}: keys are the flag names of `run` (`tps`, `ramp-up`, ...)"
            ));
        }
    }
    Ok(())
}

/// Every key a file may hold: the long flag names of `run` and their
/// aliases, except `config` itself.
pub(crate) fn file_keys() -> Vec<String> {
    let command = <RunArgs as clap::Args>::augment_args(clap::Command::new("file"));
    command
        .get_arguments()
        .flat_map(|arg| {
            let aliases = arg.get_all_aliases().unwrap_or_default();
            arg.get_long().into_iter().chain(aliases)
        })
        .filter(|name| *name != "config")
        .map(str::to_owned)
        .collect()
}

/// The first line (1-based) that sets `key` at its start (`key =`, `key:`,
/// or a `[key]` table).
fn line_of(key: &str, text: &str) -> Option<usize> {
    text.lines()
        .position(|line| {
            let line = line.trim_start();
            let rest = line
                .strip_prefix(key)
                .or_else(|| line.strip_prefix(&format!("\"{key}\"")))
                .map(str::trim_start);
            matches!(rest, Some(r) if r.starts_with('=') || r.starts_with(':'))
                || line.trim_start_matches('[').starts_with(key) && line.starts_with('[')
        })
        .map(|n| n + 1)
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
    fn export_keys_sit_beside_the_run_keys() {
        let args = parse_toml("tps = 5\nexport = [\"otlp\"]\nlabels = [\"env=ci\"]\n").unwrap();
        assert_eq!(args.tps, Some(5.0));
        assert_eq!(args.export.export, vec!["otlp".to_string()]);
        assert_eq!(args.export.label, vec!["env=ci".to_string()]);
        let args =
            parse_yaml("metrics-listen: 127.0.0.1:9000\nthresholds: [\"p99<1s\"]\n").unwrap();
        assert_eq!(args.export.metrics_listen.unwrap().port(), 9000);
        assert_eq!(args.threshold.len(), 1);
        let e = parse_toml("tps = 1\nexport-queue = \"many\"\n").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        let e = parse_toml("tps = 1\n[otlp]\nendpoint = 1\n").unwrap_err();
        assert!(e.contains("`otlp`") && e.contains("line 2"), "{e}");
        let e = parse_toml("config = \"other.toml\"\n").unwrap_err();
        assert!(e.contains("`config`"), "{e}");
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
