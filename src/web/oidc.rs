//! OIDC bearer tokens: JWTs signed by a configured issuer, verified
//! against its JSON Web Key Set (a file, a URL, or the issuer's discovery
//! document), with their issuer, audience and expiry checked, and the
//! caller's role read from a claim.
//!
//! Keys fetched from a URL are refreshed every [`REFRESH_EVERY`], and at
//! once (at most every [`REFRESH_AT_MOST`]) when a token names a key not
//! held: an issuer rotating its keys is followed without a restart.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::Method;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use parking_lot::RwLock;
use serde_json::{Map, Value};
use tokio::sync::Notify;

use super::auth::{Authenticator, Credentials, Role, Verdict};
use crate::export::http::HttpClient;

/// How often keys from a URL are fetched again.
pub const REFRESH_EVERY: Duration = Duration::from_secs(600);
/// Fewest seconds between two fetches asked for by unknown keys.
pub const REFRESH_AT_MOST: Duration = Duration::from_secs(30);
/// Clock difference tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 30;
/// Signature algorithms accepted (never `none`, never a shared secret).
const ALGORITHMS: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// Where the issuer's keys are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A JWKS file, read once at start.
    File(PathBuf),
    /// A JWKS URL, fetched and refreshed.
    Url(String),
    /// The `jwks_uri` of the issuer's `/.well-known/openid-configuration`.
    Discovery,
}

/// What an OIDC provider checks.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// The `iss` tokens must carry (the issuer's URL).
    pub issuer: String,
    /// The `aud` tokens must include.
    pub audience: String,
    /// Where the keys are.
    pub jwks: JwksSource,
    /// The claim holding the caller's roles (a string of space-separated
    /// names, or an array of names).
    pub role_claim: String,
    /// The role name that makes an operator.
    pub operator_role: String,
    /// The role name that makes a viewer.
    pub viewer_role: String,
}

/// Verifies OIDC bearer tokens.
pub struct Oidc {
    settings: OidcSettings,
    keys: RwLock<JwkSet>,
    refresh: Notify,
}

impl Oidc {
    /// Loads the issuer's keys (failing at once if they cannot be had) and,
    /// for keys from a URL, keeps them fresh on the current runtime.
    pub async fn start(settings: OidcSettings) -> Result<Arc<Self>, String> {
        let http = HttpClient::new(Duration::from_secs(10)).map_err(|e| e.to_string())?;
        let url = match &settings.jwks {
            JwksSource::File(_) => None,
            JwksSource::Url(url) => Some(url.clone()),
            JwksSource::Discovery => Some(discover_jwks_uri(&http, &settings.issuer).await?),
        };
        let keys = match (&settings.jwks, &url) {
            (JwksSource::File(path), _) => read_jwks(path)?,
            (_, Some(url)) => fetch_jwks(&http, url).await?,
            (_, None) => unreachable!("a URL is known unless the keys are in a file"),
        };
        let oidc = Arc::new(Self {
            settings,
            keys: RwLock::new(keys),
            refresh: Notify::new(),
        });
        if let Some(url) = url {
            tokio::spawn(keep_fresh(Arc::downgrade(&oidc), http, url));
        }
        Ok(oidc)
    }

    fn verify(&self, token: &str) -> Result<Role, String> {
        let header = decode_header(token).map_err(|e| format!("not a valid JWT: {e}"))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(format!(
                "tokens signed with {:?} are not accepted",
                header.alg
            ));
        }
        let key = {
            let keys = self.keys.read();
            let jwk = match &header.kid {
                Some(kid) => keys.find(kid),
                None if keys.keys.len() == 1 => keys.keys.first(),
                None => None,
            };
            let Some(jwk) = jwk else {
                self.refresh.notify_one();
                return Err("the token's signing key is not among the issuer's keys".into());
            };
            DecodingKey::from_jwk(jwk).map_err(|e| format!("the issuer's key: {e}"))?
        };
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        // Checked only when present unless required: a token of the same
        // issuer for another audience must not pass for lacking one.
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        let claims = decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|e| format!("token refused: {e}"))?
            .claims;
        self.role_of(&claims)
    }

    fn role_of(&self, claims: &Map<String, Value>) -> Result<Role, String> {
        let names: Vec<&str> = match claims.get(&self.settings.role_claim) {
            Some(Value::String(text)) => text.split_whitespace().collect(),
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let s = &self.settings;
        if names.contains(&s.operator_role.as_str()) {
            Ok(Role::Operator)
        } else if names.contains(&s.viewer_role.as_str()) {
            Ok(Role::Viewer)
        } else {
            Err(format!(
                "the token's `{}` claim names neither `{}` nor `{}`",
                s.role_claim, s.operator_role, s.viewer_role
            ))
        }
    }
}

impl Authenticator for Oidc {
    fn name(&self) -> &'static str {
        "oidc"
    }

    fn check(&self, credentials: &Credentials<'_>) -> Verdict {
        let Some(token) = credentials.bearer else {
            return Verdict::NotPresented;
        };
        // Not a JWT's shape: an API token, for another provider.
        if token.split('.').count() != 3 {
            return Verdict::NotPresented;
        }
        match self.verify(token) {
            Ok(role) => Verdict::Allowed(role),
            Err(why) => Verdict::Refused(why),
        }
    }
}

/// Fetches the keys again every [`REFRESH_EVERY`], or sooner when a token
/// named an unknown key, until the provider is dropped.
async fn keep_fresh(oidc: std::sync::Weak<Oidc>, http: HttpClient, url: String) {
    let mut last = Instant::now();
    loop {
        let Some(strong) = oidc.upgrade() else { return };
        let asked = async { strong.refresh.notified().await };
        let _ = tokio::time::timeout(REFRESH_EVERY, asked).await;
        let wait = REFRESH_AT_MOST.saturating_sub(last.elapsed());
        tokio::time::sleep(wait).await;
        last = Instant::now();
        match fetch_jwks(&http, &url).await {
            Ok(keys) => *strong.keys.write() = keys,
            Err(e) => tracing::warn!("OIDC keys not refreshed (the old ones stay): {e}"),
        }
    }
}

fn read_jwks(path: &std::path::Path) -> Result<JwkSet, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read --oidc-jwks {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "--oidc-jwks {} is not a JSON Web Key Set: {e}",
            path.display()
        )
    })
}

async fn fetch_jwks(http: &HttpClient, url: &str) -> Result<JwkSet, String> {
    let answer = http
        .send(Method::GET, url, &[], bytes::Bytes::new())
        .await
        .map_err(|e| format!("fetching the OIDC keys: {e:#}"))?;
    if !answer.status.is_success() {
        return Err(format!(
            "fetching the OIDC keys: {url} answered {}",
            answer.status
        ));
    }
    serde_json::from_slice(&answer.body)
        .map_err(|e| format!("{url} is not a JSON Web Key Set: {e}"))
}

/// The `jwks_uri` the issuer's discovery document names.
async fn discover_jwks_uri(http: &HttpClient, issuer: &str) -> Result<String, String> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let answer = http
        .send(Method::GET, &url, &[], bytes::Bytes::new())
        .await
        .map_err(|e| format!("OIDC discovery: {e:#}"))?;
    if !answer.status.is_success() {
        return Err(format!("OIDC discovery: {url} answered {}", answer.status));
    }
    let document: Value = serde_json::from_slice(&answer.body)
        .map_err(|e| format!("OIDC discovery: {url} is not JSON: {e}"))?;
    if document["issuer"].as_str() != Some(issuer) {
        return Err(format!(
            "OIDC discovery: {url} names issuer {} rather than {issuer}",
            document["issuer"]
        ));
    }
    document["jwks_uri"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("OIDC discovery: {url} names no jwks_uri"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

    /// A P-256 key pair: its PKCS#8 and its public key as a JWK.
    fn key(kid: &str) -> (Vec<u8>, Value) {
        use base64::Engine;
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = pair.public_key().as_ref();
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
            "x": b64(&point[1..33]), "y": b64(&point[33..65]),
        });
        (pkcs8.as_ref().to_vec(), jwk)
    }

    fn provider(jwks: Value) -> Oidc {
        Oidc {
            settings: OidcSettings {
                issuer: "https://idp.example".into(),
                audience: "vajra".into(),
                jwks: JwksSource::Discovery,
                role_claim: "roles".into(),
                operator_role: "vajra-operator".into(),
                viewer_role: "vajra-viewer".into(),
            },
            keys: RwLock::new(serde_json::from_value(jwks).unwrap()),
            refresh: Notify::new(),
        }
    }

    fn sign(pkcs8: &[u8], kid: &str, claims: Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.into());
        encode(&header, &claims, &EncodingKey::from_ec_der(pkcs8)).unwrap()
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn claims(aud: &str, exp: u64, roles: Value) -> Value {
        serde_json::json!({"iss": "https://idp.example", "aud": aud, "exp": exp, "sub": "ana", "roles": roles})
    }

    fn check(oidc: &Oidc, token: &str) -> Verdict {
        oidc.check(&Credentials {
            bearer: Some(token),
            ..Credentials::default()
        })
    }

    #[test]
    fn a_token_the_issuer_signed_gives_its_role() {
        let (pkcs8, jwk) = key("k1");
        let oidc = provider(serde_json::json!({"keys": [jwk]}));
        let operator = sign(
            &pkcs8,
            "k1",
            claims("vajra", now() + 300, "vajra-operator".into()),
        );
        assert_eq!(check(&oidc, &operator), Verdict::Allowed(Role::Operator));
        let viewer = sign(
            &pkcs8,
            "k1",
            claims(
                "vajra",
                now() + 300,
                serde_json::json!(["x", "vajra-viewer"]),
            ),
        );
        assert_eq!(check(&oidc, &viewer), Verdict::Allowed(Role::Viewer));
    }

    #[test]
    fn expired_foreign_or_roleless_tokens_are_refused() {
        let (pkcs8, jwk) = key("k1");
        let (other, _) = key("k1");
        let oidc = provider(serde_json::json!({"keys": [jwk]}));
        let refused = |token: &str, why: &str| match check(&oidc, token) {
            Verdict::Refused(message) => assert!(message.contains(why), "{message}"),
            other => panic!("{other:?} for a token that should say {why}"),
        };
        let role = serde_json::json!("vajra-operator");
        refused(
            &sign(&pkcs8, "k1", claims("vajra", now() - 3600, role.clone())),
            "Expired",
        );
        refused(
            &sign(&pkcs8, "k1", claims("other-app", now() + 300, role.clone())),
            "Audience",
        );
        refused(
            &sign(&other, "k1", claims("vajra", now() + 300, role.clone())),
            "Signature",
        );
        refused(
            &sign(&pkcs8, "k9", claims("vajra", now() + 300, role)),
            "not among",
        );
        refused(
            &sign(&pkcs8, "k1", claims("vajra", now() + 300, "admin".into())),
            "neither",
        );
        assert_eq!(
            check(&oidc, "an-api-token-0123456789"),
            Verdict::NotPresented
        );
    }
}
