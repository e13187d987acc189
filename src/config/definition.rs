//! A distributed test's definition: the settings `start` ships to the
//! cluster, self-contained.
//!
//! The command line that starts a test reads the files its settings name
//! (`--body-file`, `--https-ca`, a `--points` file, a `--scenario` file) and
//! puts their contents in the definition, within size limits; every peer
//! resolves the
//! definition without ever reading, or looking for, a file. A definition
//! that still names a file is refused with the field named, so an admitted
//! client cannot make peers read their own files and send them anywhere.

use base64::Engine;

use super::ConfigError;
use super::args::RunArgs;
use super::resolve::{Files, RunSettings, parse_points, resolve_with};
use crate::task::grpc::{MAX_PROTO_BYTES, MAX_PROTO_NAME, ProtoSource};
use crate::task::scenario::feeder::MAX_FEEDER_BYTES;
use crate::task::scenario::{MAX_SCENARIO_BYTES, ScenarioSource};

/// Most feeder files a scenario in a definition carries.
pub const MAX_FEEDER_FILES: usize = 16;

/// Largest request body a definition carries (it rides in every Raft
/// entry of the test and in each peer's memory).
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Largest CA bundle a definition carries.
pub const MAX_CA_BYTES: usize = 64 * 1024;
/// Most points a custom pattern may have.
pub const MAX_POINTS: usize = 100_000;

fn invalid(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// `args` with the contents of the files it names in place of their paths,
/// ready to ship (read where the command runs).
pub fn self_contained(mut args: RunArgs) -> Result<RunArgs, ConfigError> {
    // The store is the starting command's own (it records there and reads
    // baselines from there): peers never learn of it.
    args.store = None;
    if let Some(path) = args.body_file.take() {
        let body = read_bounded("body-file", &path, MAX_BODY_BYTES)?;
        args.body_base64 = Some(base64::engine::general_purpose::STANDARD.encode(body));
    }
    if let Some(path) = args.https_ca.take() {
        let pem = read_bounded("https-ca", &path, MAX_CA_BYTES)?;
        let pem = String::from_utf8(pem)
            .map_err(|_| invalid("https-ca", format!("'{}' is not PEM text", path.display())))?;
        args.https_ca_pem = Some(pem);
    }
    if let Some(path) = args.proto.take() {
        let source = ProtoSource::read(&path).map_err(|e| invalid("proto", e))?;
        args.proto_source = Some(source);
    }
    if let Some(path) = args.scenario.take() {
        let source = ScenarioSource::read(&path).map_err(|e| invalid("scenario", e.to_string()))?;
        args.scenario_source = Some(source);
    }
    if let Some(spec) = args.points.take() {
        let points = parse_points(&spec)?;
        if points.len() > MAX_POINTS {
            return Err(invalid(
                "points",
                format!("{} points, above the limit of {MAX_POINTS}", points.len()),
            ));
        }
        let inline: Vec<String> = points
            .iter()
            .map(|p| format!("{}:{}", p.at, p.rate))
            .collect();
        args.points = Some(inline.join(","));
    }
    Ok(args)
}

/// Reads a definition's settings (JSON) from the wire. A key no setting
/// has is refused, naming it: a definition from a newer peer with settings
/// this one lacks must not run without them.
pub fn parse_definition(json: &str) -> Result<RunArgs, ConfigError> {
    let bad = |message: String| invalid("definition", message);
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| bad(format!("not JSON: {e}")))?;
    let Some(fields) = value.as_object() else {
        return Err(bad("not a JSON object".into()));
    };
    let known = super::file::file_keys();
    // The fields a definition carries in place of the files it names.
    let inlined = [
        "body-base64",
        "https-ca-pem",
        "scenario-source",
        "proto-source",
    ];
    if let Some(unknown) = fields
        .keys()
        .find(|k| !known.iter().any(|n| n == *k) && !inlined.contains(&k.as_str()))
    {
        return Err(bad(format!(
            "unknown setting `{unknown}` (a peer of another version?)"
        )));
    }
    serde_json::from_value(value).map_err(|e| bad(e.to_string()))
}

/// Resolves a definition that came from another process: refused if it
/// names a file, and resolved without touching the file system.
pub fn resolve_definition(args: RunArgs) -> Result<RunSettings, ConfigError> {
    if args.store.is_some() {
        return Err(invalid(
            "store",
            "a test's definition names no history store: a peer never opens one the wire names",
        ));
    }
    if let Some(body) = &args.body_base64
        && body.len() > MAX_BODY_BYTES.div_ceil(3) * 4
    {
        return Err(invalid(
            "body-base64",
            format!("the body is above the limit of {MAX_BODY_BYTES} bytes"),
        ));
    }
    if args
        .scenario_source
        .as_ref()
        .is_some_and(|s| s.text.len() > MAX_SCENARIO_BYTES)
    {
        return Err(invalid(
            "scenario-source",
            format!("above the limit of {MAX_SCENARIO_BYTES} bytes"),
        ));
    }
    if let Some(source) = &args.scenario_source
        && (source.files.len() > MAX_FEEDER_FILES
            || source.files.values().any(|f| f.len() > MAX_FEEDER_BYTES))
    {
        return Err(invalid(
            "scenario-source",
            format!("at most {MAX_FEEDER_FILES} feeder files of {MAX_FEEDER_BYTES} bytes each"),
        ));
    }
    if let Some(source) = &args.scenario_source
        && (source.protos.len() > MAX_FEEDER_FILES
            || source.protos.values().any(|p| !p.within_limits()))
    {
        return Err(invalid(
            "scenario-source",
            format!(
                "at most {MAX_FEEDER_FILES} service definitions of {MAX_PROTO_BYTES} bytes each"
            ),
        ));
    }
    if args
        .https_ca_pem
        .as_ref()
        .is_some_and(|pem| pem.len() > MAX_CA_BYTES)
    {
        return Err(invalid(
            "https-ca-pem",
            format!("above the limit of {MAX_CA_BYTES} bytes"),
        ));
    }
    if args
        .proto_source
        .as_ref()
        .is_some_and(|p| !p.within_limits())
    {
        return Err(invalid(
            "proto-source",
            format!(
                "above the limit of {MAX_PROTO_BYTES} bytes (or a name above {MAX_PROTO_NAME})"
            ),
        ));
    }
    let settings = resolve_with(args, Files::Never)?;
    Ok(settings)
}

fn read_bounded(field: &str, path: &std::path::Path, limit: usize) -> Result<Vec<u8>, ConfigError> {
    let bytes = std::fs::read(path)
        .map_err(|e| invalid(field, format!("cannot read '{}': {e}", path.display())))?;
    if bytes.len() > limit {
        return Err(invalid(
            field,
            format!(
                "'{}' holds {} bytes, above the limit of {limit} a test's definition carries",
                path.display(),
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn args(text: &str) -> RunArgs {
        super::super::file::parse_toml(text).unwrap()
    }

    #[test]
    fn files_are_inlined_and_the_definition_resolves_the_same() {
        let mut body = tempfile::NamedTempFile::new().unwrap();
        body.write_all(&[0, 159, 146, 150, b'{']).unwrap();
        let mut points = tempfile::NamedTempFile::new().unwrap();
        writeln!(points, "# time,rate\n0,0\n5,100\n10,100").unwrap();
        let local = args(&format!(
            "url = \"http://127.0.0.1:9/\"\nbody-file = {:?}\npoints = {:?}\nduration = \"10s\"",
            body.path(),
            points.path()
        ));
        let here = super::super::resolve(local.clone()).unwrap();
        let shipped = self_contained(local).unwrap();
        assert!(shipped.body_file.is_none() && shipped.https_ca.is_none());
        let wire = serde_json::to_string(&shipped).unwrap();
        drop((body, points));
        let there = resolve_definition(parse_definition(&wire).unwrap()).unwrap();
        assert_eq!(
            there.task.http.body, here.task.http.body,
            "binary body intact"
        );
        let curve = |s: &RunSettings| match &s.engine.load {
            crate::engine::LoadModel::Open { profile, .. } => profile.curve.clone(),
            _ => unreachable!(),
        };
        assert_eq!(curve(&there), curve(&here));
    }

    #[test]
    fn a_proto_file_travels_as_text_and_a_descriptor_set_as_base64() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("a.proto");
        std::fs::write(&text, "syntax = \"proto3\";").unwrap();
        let set = dir.path().join("a.pb");
        std::fs::write(&set, [0u8, 1, 2, 255]).unwrap();
        for (path, inlined) in [(&text, "syntax"), (&set, "AAEC/w==")] {
            let local = args(&format!(
                "task = \"grpc\"\ntps = 1\nduration = \"1s\"\nproto = {path:?}"
            ));
            let here = super::super::resolve(local.clone()).unwrap();
            let shipped = self_contained(local).unwrap();
            assert!(shipped.proto.is_none(), "the path does not travel");
            let wire = serde_json::to_string(&shipped).unwrap();
            assert!(wire.contains(inlined), "{wire}");
            let there = resolve_definition(parse_definition(&wire).unwrap()).unwrap();
            assert_eq!(there.task.proto, here.task.proto);
        }
    }

    #[test]
    fn a_scenarios_proto_files_travel_with_it_within_limits() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("s.proto"),
            "syntax = \"proto3\"; package s; message M {} service S { rpc Do (M) returns (M); }",
        )
        .unwrap();
        let scenario = dir.path().join("calls.yaml");
        std::fs::write(
            &scenario,
            "scenarios:\n  - name: c\n    steps:\n      - grpc:\n          url: http://127.0.0.1:9\n          \
             proto: s.proto\n          method: s.S/Do\n",
        )
        .unwrap();
        let local = args(&format!(
            "tps = 1\nduration = \"1s\"\nscenario = {scenario:?}"
        ));
        let shipped = self_contained(local).unwrap();
        let wire = serde_json::to_string(&shipped).unwrap();
        drop(dir);
        let mut there = parse_definition(&wire).unwrap();
        assert!(resolve_definition(there.clone()).is_ok(), "{wire}");
        let source = there.scenario_source.as_mut().unwrap();
        assert!(source.protos["s.proto"].text.is_some());
        source.protos.get_mut("s.proto").unwrap().text = Some("x".repeat(MAX_PROTO_BYTES + 1));
        let e = resolve_definition(there).unwrap_err().to_string();
        assert!(e.contains("service definitions"), "{e}");
    }

    #[test]
    fn a_definition_naming_a_file_is_refused_and_the_file_is_not_read() {
        for (text, field) in [
            (
                "url = \"http://x/\"\ntps = 1\nduration = \"1s\"\nbody-file = \"/etc/passwd\"",
                "body-file",
            ),
            (
                "url = \"https://x/\"\ntps = 1\nduration = \"1s\"\nhttps-ca = \"/etc/ssl/x.pem\"",
                "https-ca",
            ),
            ("url = \"http://x/\"\npoints = \"/etc/passwd\"", "points"),
            (
                "tps = 1\nduration = \"1s\"\nscenario = \"/etc/x.yaml\"",
                "scenario",
            ),
            (
                "task = \"grpc\"\ntps = 1\nduration = \"1s\"\nproto = \"/etc/x.proto\"",
                "proto",
            ),
        ] {
            let e = resolve_definition(args(text)).unwrap_err().to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
        let e = resolve_definition(args("url = \"http://x/\"\npoints = \"/etc/passwd\""))
            .unwrap_err()
            .to_string();
        assert!(!e.contains("root:"), "the file's contents leaked: {e}");
    }

    #[test]
    fn a_definition_with_a_setting_this_peer_lacks_is_refused() {
        let e = parse_definition(r#"{"tps": 5, "duration": "1s", "turbo-mode": true}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("turbo-mode"), "{e}");
        assert!(parse_definition("[1, 2]").is_err());
        let args = parse_definition(r#"{"tps": 5, "body-base64": "aGk="}"#).unwrap();
        assert_eq!(args.tps, Some(5.0));
    }

    #[test]
    fn absurd_rates_are_refused_with_the_limit() {
        let e = resolve_definition(args("url = \"http://x/\"\npoints = \"0s:0,10s:1e300\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("limit"), "{e}");
        let e = super::super::resolve(args("tps = 1e300\nduration = \"1s\"\ntask = \"noop\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("tps") && e.contains("limit"), "{e}");
    }
}
