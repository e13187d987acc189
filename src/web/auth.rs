//! Who may use the web API, and as what: the [`Authenticator`] seam and
//! its providers.
//!
//! Each request's credentials (a bearer token, a verified client
//! certificate) are shown to every configured provider in turn; the first
//! that recognises them gives the caller's [`Role`]. Credentials no
//! provider recognises are refused (401), as is a request without any;
//! a viewer asking for an operator's action is forbidden (403).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use ring::digest::{SHA256, digest};
use serde::Serialize;

/// Shortest accepted API token, in bytes.
pub const MIN_TOKEN_LEN: usize = 16;

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads the cluster, live figures and results.
    Viewer,
    /// Also starts, changes, stops and deletes tests.
    Operator,
}

impl Role {
    /// The role a configuration names, or `None`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "viewer" => Some(Self::Viewer),
            "operator" => Some(Self::Operator),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
        })
    }
}

/// What a request presents.
#[derive(Debug, Default, Clone, Copy)]
pub struct Credentials<'a> {
    /// The token of an `Authorization: Bearer` header.
    pub bearer: Option<&'a str>,
    /// The DER client certificate the TLS handshake verified.
    pub client_certificate: Option<&'a [u8]>,
}

/// A provider's answer about a request's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Recognised: the caller has this role.
    Allowed(Role),
    /// Nothing this provider reads was presented.
    NotPresented,
    /// Presented but refused, and why (shown to the caller).
    Refused(String),
}

/// Tells a request's caller's role from its credentials.
pub trait Authenticator: Send + Sync {
    /// The provider's name, for logs and `/api/v1/me`.
    fn name(&self) -> &'static str;
    /// The verdict on `credentials`.
    fn check(&self, credentials: &Credentials<'_>) -> Verdict;
}

/// Every configured provider, asked in turn.
pub struct Providers {
    providers: Vec<Arc<dyn Authenticator>>,
}

/// What a client must present to use the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthRequirements {
    /// Whether credentials are needed at all.
    pub required: bool,
    /// The providers that recognise them.
    pub providers: Vec<&'static str>,
}

/// Who a request's caller is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Caller {
    /// Its role.
    pub role: Role,
    /// The provider that recognised it ("none" without authentication).
    pub provider: &'static str,
}

impl Providers {
    /// No authentication: every caller is an operator. Only for an API on a
    /// loopback address (the command line refuses it elsewhere).
    pub fn open() -> Self {
        Self {
            providers: Vec::new(),
        }
    }

    /// These providers, asked in this order.
    pub fn new(providers: Vec<Arc<dyn Authenticator>>) -> Self {
        Self { providers }
    }

    /// What a client must present, for `GET /api/v1/auth`.
    pub fn describe(&self) -> AuthRequirements {
        AuthRequirements {
            required: !self.is_open(),
            providers: self.providers.iter().map(|p| p.name()).collect(),
        }
    }

    /// Whether any provider is configured.
    pub fn is_open(&self) -> bool {
        self.providers.is_empty()
    }

    /// The caller presenting `credentials`, or why it is refused.
    pub fn caller(&self, credentials: &Credentials<'_>) -> Result<Caller, String> {
        if self.is_open() {
            return Ok(Caller {
                role: Role::Operator,
                provider: "none",
            });
        }
        let mut refusal = None;
        for provider in &self.providers {
            match provider.check(credentials) {
                Verdict::Allowed(role) => {
                    return Ok(Caller {
                        role,
                        provider: provider.name(),
                    });
                }
                // The last provider to refuse says why: one that read the
                // credentials (a JWT's verifier) knows best.
                Verdict::Refused(why) => refusal = Some(why),
                Verdict::NotPresented => {}
            }
        }
        Err(refusal.unwrap_or_else(|| {
            "authentication required: send `Authorization: Bearer TOKEN`".to_owned()
        }))
    }
}

/// API tokens from a file, compared in constant time.
pub struct TokenFile {
    /// SHA-256 of each token, with its role.
    tokens: Vec<([u8; 32], Role)>,
}

impl TokenFile {
    /// Reads `path`: one token per line, `ROLE TOKEN` (ROLE `viewer` or
    /// `operator`) or a lone `TOKEN` (an operator's); blank lines and
    /// lines starting with `#` are skipped.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read --api-token-file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("--api-token-file {}: {e}", path.display()))
    }

    /// Parses a token file's text (see [`TokenFile::load`]).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut tokens = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (role, token) = match fields.as_slice() {
                [token] => (Role::Operator, *token),
                [role, token] => (
                    Role::parse(role).ok_or_else(|| {
                        format!("line {}: unknown role `{role}` (viewer or operator)", n + 1)
                    })?,
                    *token,
                ),
                _ => return Err(format!("line {}: expected `ROLE TOKEN`", n + 1)),
            };
            if token.len() < MIN_TOKEN_LEN {
                return Err(format!(
                    "line {}: a token must be at least {MIN_TOKEN_LEN} bytes",
                    n + 1
                ));
            }
            tokens.push((sha256(token.as_bytes()), role));
        }
        if tokens.is_empty() {
            return Err("no token in the file".into());
        }
        Ok(Self { tokens })
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    digest(&SHA256, bytes)
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

/// Whether `a` and `b` are equal, in a time that does not depend on where
/// they differ.
fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

impl Authenticator for TokenFile {
    fn name(&self) -> &'static str {
        "token"
    }

    fn check(&self, credentials: &Credentials<'_>) -> Verdict {
        let Some(token) = credentials.bearer else {
            return Verdict::NotPresented;
        };
        // Hashing first makes the comparison independent of the token's
        // length, and every stored token is compared (no early exit).
        let presented = sha256(token.as_bytes());
        let mut found = None;
        for (stored, role) in &self.tokens {
            if same_digest(stored, &presented) {
                found = found.max(Some(*role));
            }
        }
        match found {
            Some(role) => Verdict::Allowed(role),
            None => Verdict::Refused("unknown API token".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPERATOR: &str = "operator-token-0123456789";
    const VIEWER: &str = "viewer-token-0123456789";

    fn tokens() -> Providers {
        let file = TokenFile::parse(&format!(
            "# tokens\noperator {OPERATOR}\n\nviewer {VIEWER}\n"
        ))
        .unwrap();
        Providers::new(vec![Arc::new(file)])
    }

    fn bearer(token: &str) -> Credentials<'_> {
        Credentials {
            bearer: Some(token),
            ..Credentials::default()
        }
    }

    #[test]
    fn tokens_give_their_roles_and_strangers_are_refused() {
        let providers = tokens();
        assert_eq!(
            providers.caller(&bearer(OPERATOR)).unwrap().role,
            Role::Operator
        );
        assert_eq!(
            providers.caller(&bearer(VIEWER)).unwrap().role,
            Role::Viewer
        );
        let wrong = providers
            .caller(&bearer("viewer-token-012345678X"))
            .unwrap_err();
        assert!(wrong.contains("unknown API token"), "{wrong}");
        let none = providers.caller(&Credentials::default()).unwrap_err();
        assert!(none.contains("Authorization: Bearer"), "{none}");
    }

    #[test]
    fn an_open_api_makes_everyone_an_operator() {
        let caller = Providers::open().caller(&Credentials::default()).unwrap();
        assert_eq!(caller.role, Role::Operator);
    }

    #[test]
    fn a_bad_token_file_names_its_line() {
        let short = TokenFile::parse("operator short").err().unwrap();
        assert!(
            short.contains("line 1") && short.contains("16 bytes"),
            "{short}"
        );
        let role = TokenFile::parse("\nadmin 0123456789abcdef").err().unwrap();
        assert!(
            role.contains("line 2") && role.contains("`admin`"),
            "{role}"
        );
        assert!(TokenFile::parse("# nothing\n").is_err());
        let lone = TokenFile::parse("0123456789abcdef0").unwrap();
        assert_eq!(lone.tokens[0].1, Role::Operator);
    }
}
