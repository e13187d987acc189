//! BlazeMeter's external-results flow against a local fake whose
//! expectations come from the public API as third-party tools use it
//! (../shared/reference/blazemeter-external-api.md): every request's
//! method, path, query, authentication and JSON fields are checked, and
//! what the run submitted for `ALL` adds up to the report's count.

mod common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use common::binary;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use vajra::export::Report;

/// What the fake saw.
#[derive(Default)]
struct Seen {
    /// (method, path) of every request, in order.
    calls: Vec<(String, String)>,
    /// Everything the fake found wrong.
    problems: Vec<String>,
    /// The bodies of the submissions.
    submissions: Vec<Value>,
    /// Whether the external test exists yet.
    test_created: bool,
}

struct Fake {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    /// The authentication header every request must carry.
    auth: Arc<Mutex<(String, String)>>,
    _runtime: tokio::runtime::Runtime,
}

const SESSION: &str = "s-55";
const SIGNATURE: &str = "sig-abc";

impl Fake {
    fn start() -> Self {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let auth = Arc::new(Mutex::new((String::new(), String::new())));
        let (seen2, auth2) = (Arc::clone(&seen), Arc::clone(&auth));
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (seen, auth) = (Arc::clone(&seen2), Arc::clone(&auth2));
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                        let (seen, auth) = (Arc::clone(&seen), Arc::clone(&auth));
                        async move { Ok::<_, Infallible>(answer(request, &seen, &auth).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            seen,
            auth,
            _runtime: runtime,
        }
    }
}

fn reply(status: u16, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn query(request: &Request<hyper::body::Incoming>) -> BTreeMap<String, String> {
    request
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

async fn answer(
    request: Request<hyper::body::Incoming>,
    seen: &Mutex<Seen>,
    auth: &Mutex<(String, String)>,
) -> Response<Full<Bytes>> {
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let query = query(&request);
    let (header, expected) = auth.lock().unwrap().clone();
    let given = request
        .headers()
        .get(header.as_str())
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let is_json = request
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut seen = seen.lock().unwrap();
    seen.calls.push((method.clone(), path.clone()));
    if given.as_deref() != Some(expected.as_str()) {
        seen.problems
            .push(format!("{method} {path}: {header} was {given:?}"));
        return reply(
            401,
            json!({"error": {"code": 401, "message": "Unauthorized"}}),
        );
    }
    let mut problem = |what: String| seen_problem(&mut seen.problems, &method, &path, what);
    let answer = match (method.as_str(), path.as_str()) {
        ("GET", "/api/v4/web/version") => json!({"result": {"version": "fake"}}),
        ("GET", "/api/v4/accounts") => json!({"result": [{"id": 11, "name": "acct"}]}),
        ("GET", "/api/v4/workspaces") => {
            if query.get("accountId").map(String::as_str) != Some("11") {
                problem(format!("accountId {:?}", query.get("accountId")));
            }
            json!({"result": [{"id": 22, "name": "ws", "enabled": true}], "total": 1})
        }
        ("GET", "/api/v4/tests") => {
            if query.get("workspaceId").map(String::as_str) != Some("22") {
                problem(format!("workspaceId {:?}", query.get("workspaceId")));
            }
            let name = query.get("name").cloned().unwrap_or_default();
            if seen.test_created {
                json!({"result": [{"id": 44, "name": name.replace("%20", " "),
                    "configuration": {"type": "external"}}]})
            } else {
                json!({"result": []})
            }
        }
        ("GET", "/api/v4/user") => json!({"result": {"id": 66, "defaultProject": {"id": 33}}}),
        ("POST", "/api/v4/tests") => {
            let ok = is_json
                && json["name"].is_string()
                && json["projectId"] == json!(33)
                && json["configuration"]["type"] == json!("external");
            if !ok {
                seen_problem(&mut seen.problems, &method, &path, format!("body {json}"));
            }
            seen.test_created = true;
            json!({"result": {"id": 44, "name": json["name"]}})
        }
        ("POST", "/api/v4/tests/44/start-external") => {
            if !(json["concurrency"].is_u64() && json["duration"].is_u64()) {
                seen_problem(&mut seen.problems, &method, &path, format!("body {json}"));
            }
            json!({"result": {
                "session": {"id": SESSION, "testId": 44, "userId": 66},
                "master": {"id": 77},
                "signature": SIGNATURE,
            }})
        }
        ("POST", "/submit.php") => {
            let expected = [
                ("session_id", SESSION),
                ("signature", SIGNATURE),
                ("test_id", "44"),
                ("user_id", "66"),
                ("pq", "0"),
                ("target", "labels_bulk"),
                ("update", "1"),
            ];
            for (key, value) in expected {
                if query.get(key).map(String::as_str) != Some(value) {
                    seen_problem(
                        &mut seen.problems,
                        &method,
                        &path,
                        format!("{key} {:?}", query.get(key)),
                    );
                }
            }
            for issue in check_submission(&json) {
                seen_problem(&mut seen.problems, &method, &path, issue);
            }
            seen.submissions.push(json);
            json!({"result": {"session": {"statusCode": 100}}})
        }
        ("POST", p) if p == format!("/api/v4/sessions/{SESSION}/stop") => json!({"result": {}}),
        _ => {
            seen_problem(
                &mut seen.problems,
                &method,
                &path,
                "not part of the flow".into(),
            );
            return reply(404, json!({"error": {"code": 404, "message": "Not Found"}}));
        }
    };
    reply(200, answer)
}

fn seen_problem(problems: &mut Vec<String>, method: &str, path: &str, what: String) {
    problems.push(format!("{method} {path}: {what}"));
}

/// What is wrong with a labels_bulk body, field by field.
fn check_submission(body: &Value) -> Vec<String> {
    let mut issues = Vec::new();
    if !body["sourceID"].is_u64() {
        issues.push("no numeric sourceID".into());
    }
    let Some(labels) = body["labels"].as_array() else {
        return vec!["no labels".into()];
    };
    if labels.first().map(|l| &l["name"]) != Some(&json!("ALL")) {
        issues.push("ALL is not the first label".into());
    }
    for label in labels {
        for key in ["n", "name", "intervals", "summary", "errors", "assertions"] {
            if label[key].is_null() {
                issues.push(format!("label without {key}"));
            }
        }
        let summary = &label["summary"];
        for key in [
            "first",
            "last",
            "duration",
            "failed",
            "hits",
            "avg",
            "min",
            "max",
            "std",
            "tp90",
            "tp95",
            "tp99",
            "latencyAvg",
        ] {
            if !summary[key].is_number() {
                issues.push(format!("summary.{key} is {}", summary[key]));
            }
        }
        for interval in label["intervals"].as_array().into_iter().flatten() {
            for key in ["ts", "n", "na", "ec"] {
                if !interval[key].is_u64() {
                    issues.push(format!("interval.{key} is {}", interval[key]));
                }
            }
            for part in ["t", "lt"] {
                for key in ["min", "max", "sum", "n", "std", "avg"] {
                    if !interval[part][key].is_number() {
                        issues.push(format!("interval.{part}.{key} is {}", interval[part][key]));
                    }
                }
            }
            let codes: u64 = interval["rc"]
                .as_array()
                .map_or(0, |rc| rc.iter().filter_map(|c| c["n"].as_u64()).sum());
            if codes != interval["n"].as_u64().unwrap_or(0) {
                issues.push(format!("rc counts {codes} != n {}", interval["n"]));
            }
            // hstRt: a compressed HdrHistogram V2 of the interval, in ms.
            match decode_hst(interval["hstRt"].as_str().unwrap_or("")) {
                Some(count) if Some(count) == interval["n"].as_u64() => {}
                other => issues.push(format!("hstRt holds {other:?}, n is {}", interval["n"])),
            }
        }
    }
    issues
}

fn decode_hst(text: &str) -> Option<u64> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    // The compressed V2 cookie.
    if bytes.get(..4)? != [0x1c, 0x84, 0x93, 0x14] {
        return None;
    }
    let h: hdrhistogram::Histogram<u64> = hdrhistogram::serialization::Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .ok()?;
    Some(h.len())
}

fn run(fake: &Fake, token_file: &std::path::Path, extra: &[&str]) -> (i32, String, Report) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    let url = format!("http://{}", fake.addr);
    let out = binary()
        .args([
            "run",
            "--task",
            "noop",
            "--tps",
            "500",
            "--duration",
            "4s",
            "--quiet",
        ])
        .args([
            "--export",
            "blazemeter",
            "--blazemeter-api",
            &url,
            "--blazemeter-data",
            &url,
        ])
        .arg("--blazemeter-token-file")
        .arg(token_file)
        .args([
            "--blazemeter-interval",
            "1s",
            "--blazemeter-test",
            "Checkout flow",
        ])
        .args(extra)
        .arg("--output")
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let report = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    (out.status.code().unwrap_or(-1), stdout, report)
}

#[test]
fn a_run_reports_into_an_external_session_and_all_adds_up() {
    let fake = Fake::start();
    let key = common::cluster::secret_file("key-123");
    *fake.auth.lock().unwrap() = ("x-api-key".into(), "key-123".into());
    let (code, stdout, report) = run(&fake, key.path(), &[]);
    assert_eq!(code, 0, "{stdout}");
    let seen = fake.seen.lock().unwrap();
    assert!(seen.problems.is_empty(), "{:#?}", seen.problems);
    let calls: Vec<String> = seen.calls.iter().map(|(m, p)| format!("{m} {p}")).collect();
    let start: Vec<&str> = calls.iter().take(7).map(String::as_str).collect();
    assert_eq!(
        start,
        [
            "GET /api/v4/web/version",
            "GET /api/v4/accounts",
            "GET /api/v4/workspaces",
            "GET /api/v4/tests",
            "GET /api/v4/user",
            "POST /api/v4/tests",
            "POST /api/v4/tests/44/start-external",
        ]
    );
    assert_eq!(
        calls.last().unwrap(),
        &format!("POST /api/v4/sessions/{SESSION}/stop")
    );
    assert!(
        seen.submissions.len() >= 3,
        "submitted every second: {}",
        seen.submissions.len()
    );
    let finals: Vec<bool> = seen
        .submissions
        .iter()
        .map(|s| s["final"] == json!(true))
        .collect();
    assert_eq!(finals.iter().filter(|f| **f).count(), 1);
    assert!(finals.last().unwrap(), "the last submission is final");
    // ALL's intervals, across submissions, hold every execution once.
    let all = |s: &Value| s["labels"][0].clone();
    let in_intervals: u64 = seen
        .submissions
        .iter()
        .flat_map(|s| all(s)["intervals"].as_array().cloned().unwrap_or_default())
        .map(|i| i["n"].as_u64().unwrap())
        .sum();
    assert_eq!(in_intervals, report.main.completed);
    let last = all(seen.submissions.last().unwrap());
    assert_eq!(
        last["summary"]["hits"].as_u64(),
        Some(report.main.completed)
    );
    assert_eq!(last["n"].as_u64(), Some(report.main.completed));
    assert!(
        report.exports[0].is_complete(),
        "{}",
        report.exports[0].describe()
    );
    drop(seen);

    // Again with an id:secret key: HTTP Basic, and the test now exists.
    let pair = common::cluster::secret_file("id7:s3cret");
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("id7:s3cret")
    );
    *fake.auth.lock().unwrap() = ("authorization".into(), basic);
    fake.seen.lock().unwrap().calls.clear();
    let (code, stdout, _) = run(&fake, pair.path(), &[]);
    assert_eq!(code, 0, "{stdout}");
    let seen = fake.seen.lock().unwrap();
    assert!(seen.problems.is_empty(), "{:#?}", seen.problems);
    assert!(
        !seen
            .calls
            .iter()
            .any(|(m, p)| m == "POST" && p == "/api/v4/tests"),
        "an existing external test is reused"
    );
}

#[test]
fn a_refusing_blazemeter_never_stops_the_test() {
    let fake = Fake::start();
    let key = common::cluster::secret_file("wrong-key");
    *fake.auth.lock().unwrap() = ("x-api-key".into(), "right-key".into());
    let (code, stdout, report) = run(&fake, key.path(), &[]);
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(report.main.completed, 2000);
    let bm = &report.exports[0];
    assert!(
        !bm.report_delivered && bm.not_delivered == bm.windows,
        "{bm:?}"
    );
    assert!(bm.describe().contains("401"), "{}", bm.describe());
}
