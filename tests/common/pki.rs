//! A test PKI: a CA made here and a server certificate it signed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// A CA (written to `dir/ca.pem`) and a server configuration whose
/// certificate it signed for 127.0.0.1 and localhost.
pub fn pki(dir: &Path) -> (PathBuf, Arc<rustls::ServerConfig>) {
    let (ca_path, cert, key) = signed(dir);
    let server = rustls::ServerConfig::builder_with_provider(vajra::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    (ca_path, Arc::new(server))
}

/// Like [`pki`], the server's certificate and key as PEM text.
pub fn pki_pem(dir: &Path) -> (PathBuf, String, String) {
    let (ca_path, cert, key) = signed(dir);
    (ca_path, cert.pem(), key.serialize_pem())
}

/// A CA (written to `dir/ca.pem`), and a certificate it signed for
/// 127.0.0.1 and localhost with its key.
fn signed(dir: &Path) -> (PathBuf, rcgen::Certificate, rcgen::KeyPair) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "test target CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca_cert.pem()).unwrap();
    let issuer = Issuer::new(ca_params, &ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca_path, cert, key)
}
