//! TLS for the peer endpoint: every peer connection is QUIC, hence TLS 1.3.
//!
//! In cluster-secret and insecure modes each peer presents a fresh
//! self-signed certificate and clients accept any certificate: identity is
//! proven afterwards by the secret challenge bound to the TLS session (see
//! [`crate::cluster::endpoint::auth`]), which a man in the middle cannot relay. In mutual-TLS
//! mode both sides present certificates that must chain to the cluster CA
//! and carry the DNS name [`SERVER_NAME`].

use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;

use crate::cluster::endpoint::auth::Admission;
use crate::tls::{AnyCertificate, provider};

/// ALPN protocol id; a peer speaking another version fails the handshake.
pub const ALPN: &[u8] = b"vajra/1";
/// Server name used on every connection (identity is checked by the secret).
pub const SERVER_NAME: &str = "vajra-peer";
/// A connection silent this long is closed (keep-alives are sent every second).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(4);

fn transport() -> Arc<quinn::TransportConfig> {
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_idle_timeout(Some(IDLE_TIMEOUT.try_into().expect("small constant")))
        .keep_alive_interval(Some(Duration::from_secs(1)));
    Arc::new(transport)
}

/// Server side: the mTLS identity, or a fresh self-signed certificate.
pub fn server_config(admission: &Admission) -> anyhow::Result<quinn::ServerConfig> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let mut tls = match admission {
        Admission::Mtls(id) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::clone(&id.roots), provider())
                    .build()?;
            builder
                .with_client_cert_verifier(verifier)
                .with_single_cert(id.chain.clone(), id.key.clone_key())?
        }
        Admission::Secret(_) | Admission::Insecure => {
            let cert = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_owned()])?;
            let key =
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
            builder
                .with_no_client_auth()
                .with_single_cert(vec![cert.cert.der().clone()], key)?
        }
    };
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
    config.transport_config(transport());
    Ok(config)
}

/// Client side: in mTLS mode, verifies the server against the CA and
/// presents this peer's certificate; otherwise accepts the server's
/// self-signed certificate (the secret challenge authenticates it).
pub fn client_config(admission: &Admission) -> anyhow::Result<quinn::ClientConfig> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let mut tls = match admission {
        Admission::Mtls(id) => builder
            .with_root_certificates(Arc::clone(&id.roots))
            .with_client_auth_cert(id.chain.clone(), id.key.clone_key())?,
        Admission::Secret(_) | Admission::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
    };
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    config.transport_config(transport());
    Ok(config)
}
