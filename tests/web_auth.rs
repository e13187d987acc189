//! The web API's other providers, end to end on a peer serving HTTPS:
//! client certificates a CA the test makes signed (the role from their
//! organizational unit), and OIDC tokens the test signs itself, verified
//! against a JWKS file with their audience and expiry checked.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::cluster::{Cluster, free_port};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;

/// A CA and what it signed, as PEM files.
struct Pki {
    dir: tempfile::TempDir,
    ca_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "test CA");
        let key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        Self {
            dir,
            ca_der: ca.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }

    /// A certificate for `names`, with `unit` as its organizational unit,
    /// written as `file.pem` and `file.key`; its DER chain and key.
    fn sign(
        &self,
        file: &str,
        names: &[&str],
        unit: Option<&str>,
        client: bool,
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, file);
        if let Some(unit) = unit {
            params
                .distinguished_name
                .push(DnType::OrganizationalUnitName, unit);
        }
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        std::fs::write(self.dir.path().join(format!("{file}.pem")), cert.pem()).unwrap();
        std::fs::write(
            self.dir.path().join(format!("{file}.key")),
            key.serialize_pem(),
        )
        .unwrap();
        let der = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        (vec![cert.der().clone()], der)
    }
}

/// `method path` over HTTPS to `addr`, trusting `ca`, presenting
/// `identity` and `token` if given: the status and the JSON body (status
/// 0 when the handshake fails).
fn https(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    token: Option<&str>,
    method: &str,
    path: &str,
) -> (u16, Value) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let socket = TcpStream::connect(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut stream = rustls::StreamOwned::new(connection, socket);
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if method != "GET" {
        head.push_str("Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
    } else {
        head.push_str("\r\n");
    }
    if stream.write_all(head.as_bytes()).is_err() {
        return (0, Value::Null);
    }
    let mut raw = Vec::new();
    if stream.read_to_end(&mut raw).is_err() && raw.is_empty() {
        return (0, Value::Null);
    }
    let answer = common::http::parse(&raw);
    (
        answer.status,
        serde_json::from_str(&answer.body).unwrap_or(Value::Null),
    )
}

/// A certificate chain and its key.
type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn copy(identity: &Identity) -> Identity {
    (identity.0.clone(), identity.1.clone_key())
}

/// A P-256 key: its PKCS#8, and a JWKS holding its public half as `kid`.
fn signing_key(kid: &str) -> (Vec<u8>, Value) {
    use base64::Engine;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwks = serde_json::json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
        "x": b64(&point[1..33]), "y": b64(&point[33..65]),
    }]});
    (pkcs8.as_ref().to_vec(), jwks)
}

fn jwt(pkcs8: &[u8], kid: &str, audience: &str, expires_in: i64, roles: &[&str]) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(kid.into());
    let claims = serde_json::json!({
        "iss": "https://idp.test", "aud": audience, "sub": "ana",
        "iat": now, "exp": now + expires_in, "roles": roles,
    });
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_der(pkcs8),
    )
    .unwrap()
}

#[test]
fn client_certificates_and_oidc_tokens_give_their_roles() {
    let pki = Pki::new();
    pki.sign("server", &["127.0.0.1"], None, false);
    let operator = pki.sign("operator", &["ana"], Some("vajra-operator"), true);
    let viewer = pki.sign("viewer", &["ben"], Some("vajra-viewer"), true);
    let unitless = pki.sign("nobody", &["cy"], Some("sales"), true);
    let stranger = Pki::new().sign("stranger", &["dee"], Some("vajra-operator"), true);
    let (key, jwks) = signing_key("k1");
    let jwks_path = pki.path("jwks.json");
    std::fs::write(&jwks_path, jwks.to_string()).unwrap();

    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut cluster = Cluster::new();
    let flags = vec![
        "--http".to_owned(),
        api.to_string(),
        "--http-tls-cert".into(),
        pki.path("server.pem"),
        "--http-tls-key".into(),
        pki.path("server.key"),
        "--api-client-ca".into(),
        pki.path("ca.pem"),
        "--oidc-issuer".into(),
        "https://idp.test".into(),
        "--oidc-audience".into(),
        "vajra".into(),
        "--oidc-jwks".into(),
        jwks_path.clone(),
    ];
    cluster.start_joined(&["tls1"], |_| flags.clone());
    let ca = &pki.ca_der;
    let until = Instant::now() + Duration::from_secs(10);
    while https(api, ca, None, None, "GET", "/api/v1/auth").0 != 200 {
        assert!(Instant::now() < until, "the HTTPS API never answered");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Certificates: the unit names the role; others are refused.
    let me = |identity, token: Option<&str>| https(api, ca, identity, token, "GET", "/api/v1/me");
    let (status, body) = me(Some(copy(&operator)), None);
    assert_eq!(
        (status, body["role"].as_str()),
        (200, Some("operator")),
        "{body}"
    );
    assert_eq!(body["provider"], "mtls");
    let (status, body) = me(Some(copy(&viewer)), None);
    assert_eq!(
        (status, body["role"].as_str()),
        (200, Some("viewer")),
        "{body}"
    );
    let (status, body) = https(
        api,
        ca,
        Some(viewer),
        None,
        "POST",
        "/api/v1/tests/current/stop",
    );
    assert_eq!(
        status, 403,
        "a viewer's certificate cannot stop a test: {body}"
    );
    let (status, body) = me(Some(unitless), None);
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("organizational unit")
    );
    let (status, _) = me(Some(stranger), None);
    assert!(
        status == 0 || status == 401,
        "a certificate of another CA is not admitted (got {status})"
    );
    let (status, _) = me(None, None);
    assert_eq!(status, 401, "nothing presented");

    // OIDC tokens: signature, audience, expiry and role all checked.
    let (status, body) = me(
        None,
        Some(&jwt(&key, "k1", "vajra", 300, &["vajra-operator"])),
    );
    assert_eq!(
        (status, body["role"].as_str()),
        (200, Some("operator")),
        "{body}"
    );
    assert_eq!(body["provider"], "oidc");
    let (status, body) = me(
        None,
        Some(&jwt(&key, "k1", "vajra", 300, &["vajra-viewer"])),
    );
    assert_eq!(body["role"], "viewer", "{status} {body}");
    for (token, why) in [
        (
            jwt(&key, "k1", "vajra", -3600, &["vajra-operator"]),
            "Expired",
        ),
        (
            jwt(&key, "k1", "someone-else", 300, &["vajra-operator"]),
            "Audience",
        ),
        (
            jwt(
                &signing_key("k1").0,
                "k1",
                "vajra",
                300,
                &["vajra-operator"],
            ),
            "Signature",
        ),
        (jwt(&key, "k1", "vajra", 300, &["admin"]), "neither"),
    ] {
        let (status, body) = me(None, Some(&token));
        assert_eq!(status, 401, "{why}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(why), "{why}: {message}");
    }
}
