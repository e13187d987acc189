//! What a task is configured with: the run's task options, from the
//! command line or a file, handed to the task's builder.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::http::HttpOptions;
use super::scenario::Scenarios;
use super::sleep::SleepSpec;

/// Options a task can be configured with from the command line or a file.
#[derive(Debug, Clone, Default)]
pub struct TaskOptions {
    /// The registered task name.
    pub name: String,
    /// Options of the built-in `http` task.
    pub http: HttpOptions,
    /// Delay of the built-in `sleep` task.
    pub sleep: Option<SleepSpec>,
    /// The scenarios of the built-in `scenario` task, compiled.
    pub scenario: Option<Arc<Scenarios>>,
    /// The node running the task (a cluster peer's name), if any.
    pub peer: Option<String>,
    /// Free-form `key=value` parameters for user tasks.
    pub params: BTreeMap<String, String>,
    /// The services of the built-in `grpc` task (`--proto`), as read.
    pub proto: Option<Arc<crate::task::grpc::ProtoSource>>,
}

impl TaskOptions {
    /// A parameter given with `--param key=value`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }

    /// The `--param key=value` pairs as the task's own options type `O`
    /// (any serde `Deserialize`): a value that is a JSON number or boolean
    /// written as JSON writes it (`42`, `-3`, `1.5`, `true`) is one, `null`
    /// is null, any other is text. An unknown key (with
    /// `#[serde(deny_unknown_fields)]`), a missing one or a bad value is
    /// an error naming it.
    pub fn typed<O: serde::de::DeserializeOwned>(&self) -> anyhow::Result<O> {
        let fields: serde_json::Map<String, serde_json::Value> = self
            .params
            .iter()
            .map(|(key, text)| {
                // Only a value JSON writes back exactly as given becomes a
                // number or boolean: `1e3` or `0.50` stay the text typed,
                // for the fields that take text (`as_text`).
                let value = match serde_json::from_str::<serde_json::Value>(text) {
                    Ok(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)))
                        if v.to_string().as_str() == text.as_str() =>
                    {
                        v
                    }
                    Ok(serde_json::Value::Null) => serde_json::Value::Null,
                    _ => serde_json::Value::String(text.clone()),
                };
                (key.clone(), value)
            })
            .collect();
        serde_json::from_value(serde_json::Value::Object(fields))
            .map_err(|e| anyhow::anyhow!("--param: {e}"))
    }

    /// A required parameter, or an error naming it.
    pub fn require(&self, key: &str) -> anyhow::Result<&str> {
        self.param(key)
            .ok_or_else(|| anyhow::anyhow!("task '{}' needs --param {key}=...", self.name))
    }
}

/// A `timeout` parameter as a duration, or `default` when it is not given;
/// `Err` names it.
pub fn param_timeout(
    text: Option<&str>,
    default: std::time::Duration,
) -> anyhow::Result<std::time::Duration> {
    match text {
        Some(text) => text
            .parse::<crate::config::duration::HumanDuration>()
            .map(|d| d.0)
            .map_err(|e| anyhow::anyhow!("--param timeout: {e}")),
        None => Ok(default),
    }
}

/// Deserializes a `--param` value that must be text even when it reads as
/// a number or a boolean ([`TaskOptions::typed`] makes those JSON ones):
/// `#[serde(deserialize_with = "as_text")]`.
pub fn as_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    use serde::Deserialize;
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(text) => text,
        other => other.to_string(),
    })
}

/// [`as_text`] for an optional field (with `#[serde(default)]`).
pub fn as_some_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    as_text(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    struct Checksum {
        size: usize,
        verify: bool,
        #[serde(default)]
        label: Option<String>,
    }

    fn with(params: &[(&str, &str)]) -> TaskOptions {
        TaskOptions {
            name: "checksum".into(),
            params: params
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            ..TaskOptions::default()
        }
    }

    #[test]
    fn params_become_the_tasks_own_typed_options() {
        let opts = with(&[("size", "4096"), ("verify", "true"), ("label", "12ab")]);
        assert_eq!(
            opts.typed::<Checksum>().unwrap(),
            Checksum {
                size: 4096,
                verify: true,
                label: Some("12ab".into())
            }
        );
        let e = with(&[("size", "4096"), ("verify", "true"), ("sise", "1")])
            .typed::<Checksum>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `sise`"), "{e}");
        let e = with(&[("size", "big"), ("verify", "true")])
            .typed::<Checksum>()
            .unwrap_err();
        assert!(e.to_string().contains("invalid type"), "{e}");
        let e = with(&[("size", "1")]).typed::<Checksum>().unwrap_err();
        assert!(e.to_string().contains("missing field `verify`"), "{e}");
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Texts {
        #[serde(deserialize_with = "as_text")]
        send: String,
        #[serde(default, deserialize_with = "as_some_text")]
        expect: Option<String>,
    }

    #[test]
    fn text_fields_keep_the_text_typed_even_when_it_reads_as_a_number() {
        for typed in [
            "1e3",
            "0.50",
            "42",
            "-7",
            "true",
            "18446744073709551616",
            "007",
        ] {
            let opts = with(&[("send", typed), ("expect", typed)]);
            let texts = opts.typed::<Texts>().unwrap();
            assert_eq!(texts.send, typed);
            assert_eq!(texts.expect.as_deref(), Some(typed));
        }
        let e = with(&[("size", "1e3"), ("verify", "true")])
            .typed::<Checksum>()
            .unwrap_err();
        assert!(
            e.to_string().contains("invalid type"),
            "a size is an integer: {e}"
        );
    }
}
