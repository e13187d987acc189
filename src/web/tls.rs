//! HTTPS for the web API, and client certificates as credentials: a
//! certificate the configured CA signed is verified by the handshake, and
//! its subject's organizational unit (`vajra-operator` or `vajra-viewer`)
//! gives the caller's role.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use rustls::server::WebPkiClientVerifier;

use super::auth::{Authenticator, Credentials, Role, Verdict};

/// The organizational unit that makes a certificate's holder an operator.
pub const OPERATOR_UNIT: &str = "vajra-operator";
/// The organizational unit that makes a certificate's holder a viewer.
pub const VIEWER_UNIT: &str = "vajra-viewer";

/// The TLS configuration of an HTTPS API serving `cert` with `key`;
/// with `client_ca`, clients may present a certificate it signed (those
/// that present none may still use another provider, a token).
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let chain = crate::tls::read_certificates(cert)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("{} is not a PEM private key: {e}", key.display()))?;
    let provider = crate::tls::provider();
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for certificate in crate::tls::read_certificates(ca)? {
                roots
                    .add(certificate)
                    .map_err(|e| format!("{} is not a usable CA certificate: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| format!("--api-client-ca {}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Client certificates the handshake verified, their role read from the
/// subject's organizational units.
pub struct ClientCertificates;

impl Authenticator for ClientCertificates {
    fn name(&self) -> &'static str {
        "mtls"
    }

    fn check(&self, credentials: &Credentials<'_>) -> Verdict {
        let Some(der) = credentials.client_certificate else {
            return Verdict::NotPresented;
        };
        match role_of(der) {
            Ok(role) => Verdict::Allowed(role),
            Err(why) => Verdict::Refused(why),
        }
    }
}

/// The role a (verified) DER certificate's subject gives.
fn role_of(der: &[u8]) -> Result<Role, String> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("the client certificate does not parse: {e}"))?;
    let units: Vec<&str> = certificate
        .subject()
        .iter_organizational_unit()
        .filter_map(|unit| unit.as_str().ok())
        .collect();
    if units.contains(&OPERATOR_UNIT) {
        Ok(Role::Operator)
    } else if units.contains(&VIEWER_UNIT) {
        Ok(Role::Viewer)
    } else {
        Err(format!(
            "the client certificate's subject has no organizational unit `{OPERATOR_UNIT}` \
             or `{VIEWER_UNIT}`"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair};

    fn certificate(unit: Option<&str>) -> Vec<u8> {
        let mut params = CertificateParams::new(vec!["client".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, "ana");
        if let Some(unit) = unit {
            params
                .distinguished_name
                .push(DnType::OrganizationalUnitName, unit);
        }
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_subject_unit_names_the_role() {
        assert_eq!(
            role_of(&certificate(Some(OPERATOR_UNIT))),
            Ok(Role::Operator)
        );
        assert_eq!(role_of(&certificate(Some(VIEWER_UNIT))), Ok(Role::Viewer));
        let none = role_of(&certificate(Some("sales"))).unwrap_err();
        assert!(none.contains(OPERATOR_UNIT), "{none}");
        assert!(role_of(&certificate(None)).is_err());
        assert!(role_of(b"not a certificate").is_err());
    }
}
