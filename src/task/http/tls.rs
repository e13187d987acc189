//! HTTPS for the `http` task: one TLS client configuration per run, shared
//! by every instance's connection (and its session cache, so a reconnect
//! resumes instead of doing a full handshake).
//!
//! Servers are verified against Mozilla's root certificates (built in, so a
//! `FROM scratch` image needs no system store), plus the CA certificates of
//! `--https-ca`, or not at all with `--https-skip-verify` (a test target's
//! self-signed certificate; the handshake signatures are still checked).

use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::task::TaskError;
use crate::tls::{AnyCertificate, parse_certificates, provider};

/// How to reach an HTTPS target: the shared configuration and the name the
/// server's certificate must carry.
#[derive(Clone)]
pub struct TlsTarget {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl std::fmt::Debug for TlsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTarget")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TlsTarget {
    /// A target named `host` (a DNS name or an IP address), verified
    /// against the built-in roots and `extra_ca`, or not at all.
    pub fn new(
        host: &str,
        extra_ca: Option<&super::CaCertificates>,
        skip_verify: bool,
    ) -> Result<Self, String> {
        Self::offering(host, (extra_ca, skip_verify), b"http/1.1")
    }

    /// Like [`new`](Self::new), offering only HTTP/2 (`h2`) in ALPN.
    pub fn http2(
        host: &str,
        extra_ca: Option<&super::CaCertificates>,
        skip_verify: bool,
    ) -> Result<Self, String> {
        Self::offering(host, (extra_ca, skip_verify), b"h2")
    }

    fn offering(
        host: &str,
        (extra_ca, skip_verify): (Option<&super::CaCertificates>, bool),
        protocol: &[u8],
    ) -> Result<Self, String> {
        let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
            .map_err(|e| format!("'{host}' is not a valid TLS server name: {e}"))?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let mut config = if skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
                .with_no_client_auth()
        } else {
            builder
                .with_root_certificates(roots(extra_ca)?)
                .with_no_client_auth()
        };
        config.alpn_protocols = vec![protocol.to_vec()];
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            name,
        })
    }

    /// Runs the handshake over `stream`; a failure is a `tls` error naming
    /// what the handshake refused (an unknown issuer, a wrong name, ...).
    pub async fn handshake(&self, stream: TcpStream) -> Result<TlsStream<TcpStream>, TaskError> {
        self.connector
            .connect(self.name.clone(), stream)
            .await
            .map_err(|e| TaskError::new("tls", format!("TLS handshake: {e}{}", self.hint(&e))))
    }

    /// What a refused ALPN offer means, for a handshake that failed with
    /// `error`; empty for any other failure.
    fn hint(&self, error: &std::io::Error) -> String {
        let refused = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .is_some_and(|e| {
                *e == rustls::Error::AlertReceived(rustls::AlertDescription::NoApplicationProtocol)
            });
        let offered = self.connector.config().alpn_protocols.first();
        match offered {
            Some(protocol) if refused => format!(
                " (the server does not speak {}, the one protocol offered in ALPN)",
                String::from_utf8_lossy(protocol)
            ),
            _ => String::new(),
        }
    }
}

fn roots(extra_ca: Option<&super::CaCertificates>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(ca) = extra_ca {
        for cert in parse_certificates(&ca.pem, &ca.origin)? {
            roots
                .add(cert)
                .map_err(|e| format!("{} is not a usable CA certificate: {e}", ca.origin))?;
        }
    }
    Ok(roots)
}
