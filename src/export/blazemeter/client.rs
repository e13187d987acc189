//! BlazeMeter's public API as third-party tools use it for external
//! results: find (or create) a test of type external, start an external
//! session, submit results to the data host, stop the session.

use base64::Engine;
use bytes::Bytes;
use hyper::Method;
use serde_json::{Value, json};

use crate::export::http::{HttpClient, percent_encode as encode};

/// Where and as whom to talk to BlazeMeter.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    /// The API host, e.g. `https://a.blazemeter.com`.
    pub api: String,
    /// The data host, e.g. `https://data.blazemeter.com`.
    pub data: String,
    /// An API key, or `id:secret`.
    pub token: String,
}

/// A started external session.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// The session's id.
    pub id: String,
    /// The test it belongs to.
    pub test_id: String,
    /// The user who owns it.
    pub user_id: String,
    /// Its master (the report page is `/app/#/masters/{id}`).
    pub master_id: String,
    /// What submissions are signed with.
    pub signature: String,
}

/// What submitting told us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// Taken.
    Taken,
    /// Taken, and the session was ended on BlazeMeter's side (stopped from
    /// its web UI): nothing more will be shown.
    SessionEnded,
}

/// A client of one account.
pub struct BlazeMeter {
    http: HttpClient,
    account: Account,
}

/// A JSON field as text (ids come as numbers).
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl BlazeMeter {
    /// A client of `account` over `http`.
    pub fn new(http: HttpClient, account: Account) -> Self {
        Self { http, account }
    }

    /// The authentication header: HTTP Basic for an `id:secret` key,
    /// `X-Api-Key` otherwise.
    fn auth(&self) -> (String, String) {
        match self.account.token.split_once(':') {
            Some(_) => (
                "authorization".into(),
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(&self.account.token)
                ),
            ),
            None => ("x-api-key".into(), self.account.token.clone()),
        }
    }

    async fn call(&self, method: Method, url: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut headers = vec![
            self.auth(),
            ("x-client-id".into(), "vajra".into()),
            ("x-client-version".into(), env!("CARGO_PKG_VERSION").into()),
        ];
        let body = match body {
            Some(json) => {
                headers.push(("content-type".into(), "application/json".into()));
                Bytes::from(json.to_string())
            }
            None => Bytes::new(),
        };
        let answer = self.http.send(method.clone(), url, &headers, body).await?;
        let parsed: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        if !answer.status.is_success() {
            let why = parsed["error"]["message"]
                .as_str()
                .map_or_else(|| answer.excerpt(200), str::to_owned);
            anyhow::bail!("{method} {url}: HTTP {}: {why}", answer.status);
        }
        if !parsed["error"].is_null() {
            anyhow::bail!("{method} {url}: {}", parsed["error"]);
        }
        Ok(parsed)
    }

    async fn api(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.account.api.trim_end_matches('/'));
        self.call(method, &url, body).await
    }

    /// Finds the external test `name` (in `project` if named) in the
    /// account's first enabled workspace, creating it if it does not
    /// exist, and starts an external session of it.
    pub async fn start_session(
        &self,
        name: &str,
        project: Option<&str>,
        duration_minutes: u64,
    ) -> anyhow::Result<Session> {
        self.api(Method::GET, "/api/v4/web/version", None).await?;
        let accounts = self.api(Method::GET, "/api/v4/accounts", None).await?;
        let account = accounts["result"][0]["id"]
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("the key sees no account"))?;
        let workspaces = self
            .api(
                Method::GET,
                &format!("/api/v4/workspaces?accountId={account}&enabled=true&limit=100&skip=0"),
                None,
            )
            .await?;
        let workspace = workspaces["result"]
            .as_array()
            .and_then(|all| all.iter().find(|w| w["enabled"].as_bool() != Some(false)))
            .and_then(|w| w["id"].as_u64())
            .ok_or_else(|| anyhow::anyhow!("account {account} has no enabled workspace"))?;
        let project_id = match project {
            Some(project) => Some(self.project(workspace, project).await?),
            None => None,
        };
        let scope = match project_id {
            Some(p) => format!("projectId={p}"),
            None => format!("workspaceId={workspace}"),
        };
        let tests = self
            .api(
                Method::GET,
                &format!(
                    "/api/v4/tests?{scope}&name={}&limit=100&skip=0",
                    encode(name)
                ),
                None,
            )
            .await?;
        let existing = tests["result"].as_array().and_then(|all| {
            all.iter().find(|t| {
                t["name"].as_str() == Some(name)
                    && t["configuration"]["type"].as_str() == Some("external")
            })
        });
        let test_id = match existing.and_then(|t| text(&t["id"])) {
            Some(id) => id,
            None => self.create_test(name, project_id).await?,
        };
        let started = self
            .api(
                Method::POST,
                &format!("/api/v4/tests/{test_id}/start-external"),
                Some(json!({"concurrency": 1, "duration": duration_minutes.max(1)})),
            )
            .await?;
        let result = &started["result"];
        let field = |value: &Value, what: &str| {
            text(value).ok_or_else(|| anyhow::anyhow!("start-external answered no {what}"))
        };
        Ok(Session {
            id: field(&result["session"]["id"], "session id")?,
            test_id,
            user_id: field(&result["session"]["userId"], "user id")?,
            master_id: field(&result["master"]["id"], "master id")?,
            signature: field(&result["signature"], "signature")?,
        })
    }

    async fn project(&self, workspace: u64, name: &str) -> anyhow::Result<u64> {
        let found = self
            .api(
                Method::GET,
                &format!(
                    "/api/v4/projects?workspaceId={workspace}&name={}&limit=100&skip=0",
                    encode(name)
                ),
                None,
            )
            .await?;
        let existing = found["result"]
            .as_array()
            .and_then(|all| all.iter().find(|p| p["name"].as_str() == Some(name)))
            .and_then(|p| p["id"].as_u64());
        if let Some(id) = existing {
            return Ok(id);
        }
        let created = self
            .api(
                Method::POST,
                "/api/v4/projects",
                Some(json!({"name": name, "workspaceId": workspace})),
            )
            .await?;
        created["result"]["id"]
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("creating project '{name}' answered no id"))
    }

    async fn create_test(&self, name: &str, project: Option<u64>) -> anyhow::Result<String> {
        let project = match project {
            Some(p) => p,
            None => {
                let user = self.api(Method::GET, "/api/v4/user", None).await?;
                user["result"]["defaultProject"]["id"]
                    .as_u64()
                    .ok_or_else(|| anyhow::anyhow!("the user has no default project"))?
            }
        };
        let created = self
            .api(
                Method::POST,
                "/api/v4/tests",
                Some(json!({
                    "name": name,
                    "projectId": project,
                    "configuration": {"type": "external"},
                })),
            )
            .await?;
        text(&created["result"]["id"])
            .ok_or_else(|| anyhow::anyhow!("creating test '{name}' answered no id"))
    }

    /// Submits a labels_bulk `body` to the session.
    pub async fn submit(&self, session: &Session, body: Value) -> anyhow::Result<Submitted> {
        let url = format!(
            "{}/submit.php?session_id={}&signature={}&test_id={}&user_id={}&pq=0&target=labels_bulk&update=1",
            self.account.data.trim_end_matches('/'),
            encode(&session.id),
            encode(&session.signature),
            encode(&session.test_id),
            encode(&session.user_id),
        );
        let answer = self.call(Method::POST, &url, Some(body)).await?;
        // A session status above 100 ("data received") means it ended.
        let status = answer["result"]["session"]["statusCode"]
            .as_u64()
            .unwrap_or(0);
        Ok(if status > 100 {
            Submitted::SessionEnded
        } else {
            Submitted::Taken
        })
    }

    /// Stops the session.
    pub async fn stop(&self, session: &Session) -> anyhow::Result<()> {
        self.api(
            Method::POST,
            &format!("/api/v4/sessions/{}/stop", session.id),
            None,
        )
        .await?;
        Ok(())
    }

    /// The session's report page.
    pub fn report_url(&self, session: &Session) -> String {
        format!(
            "{}/app/#/masters/{}",
            self.account.api.trim_end_matches('/'),
            session.master_id
        )
    }
}
