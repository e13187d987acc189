//! Admission: proving cluster membership over a fresh TLS session.
//!
//! With a cluster secret, each side sends `HMAC-SHA256(secret, ekm || role)`
//! where `ekm` is keying material exported from this very TLS session
//! (RFC 5705). A stranger without the secret cannot compute it; a man in the
//! middle has two different sessions, so a proof relayed from one does not
//! verify on the other. The client proves first, and the server reveals its
//! own proof (and anything else) only after checking the client's.

use std::path::Path;
use std::sync::Arc;

use ring::hmac;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

/// Wire protocol version, checked in the hello: peers of other versions
/// refuse each other rather than fail on each other's messages. 2: plans
/// carry a compiled `TestDefinition`, addresses are typed. 3: epochs name
/// the peers that left gracefully (`Plan::departed`). 4: long series come
/// in pages (`ControlReply::more`), leavers hand their reports over
/// (`ControlRequest::Keep`).
pub const PROTOCOL: u32 = 4;
const EKM_LABEL: &[u8] = b"EXPORTER-vajra-cluster-admission";

/// How peers are admitted.
#[derive(Clone)]
pub enum Admission {
    /// Peers must prove knowledge of this secret.
    Secret(Vec<u8>),
    /// Peers must present a certificate signed by the cluster's CA (mutual
    /// TLS); the TLS handshake itself admits them.
    Mtls(Arc<MtlsIdentity>),
    /// Anyone may join (development only; shown loudly in status).
    Insecure,
}

/// A peer's certificate, its key and the CA that signs every peer's.
pub struct MtlsIdentity {
    /// CA certificates peers' certificates must chain to.
    pub roots: Arc<RootCertStore>,
    /// This peer's certificate chain.
    pub chain: Vec<CertificateDer<'static>>,
    /// This peer's private key.
    pub key: PrivateKeyDer<'static>,
}

impl MtlsIdentity {
    /// Loads PEM files; errors name the file at fault.
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<Self, String> {
        let read_certs = crate::tls::read_certificates;
        let mut roots = RootCertStore::empty();
        for ca_cert in read_certs(ca)? {
            roots
                .add(ca_cert)
                .map_err(|e| format!("{} is not a usable CA certificate: {e}", ca.display()))?;
        }
        let chain = read_certs(cert)?;
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| format!("{} is not a PEM private key: {e}", key.display()))?;
        Ok(Self {
            roots: Arc::new(roots),
            chain,
            key,
        })
    }
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.mode())
    }
}

impl Admission {
    /// "secret", "mtls" or "insecure".
    pub fn mode(&self) -> &'static str {
        match self {
            Self::Secret(_) => "secret",
            Self::Mtls(_) => "mtls",
            Self::Insecure => "insecure",
        }
    }

    /// The proof this side sends for `role` over a session with `ekm`.
    pub fn proof(&self, ekm: &[u8], role: &str) -> String {
        match self {
            Self::Secret(secret) => {
                let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
                let mut ctx = hmac::Context::with_key(&key);
                ctx.update(ekm);
                ctx.update(role.as_bytes());
                hex(ctx.sign().as_ref())
            }
            Self::Mtls(_) | Self::Insecure => String::new(),
        }
    }

    /// Checks the other side's proof in constant time.
    pub fn verify(&self, ekm: &[u8], role: &str, proof: &str) -> bool {
        match self {
            Self::Secret(secret) => {
                let Some(tag) = unhex(proof) else {
                    return false;
                };
                let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
                let mut message = ekm.to_vec();
                message.extend_from_slice(role.as_bytes());
                hmac::verify(&key, &message, &tag).is_ok()
            }
            // The TLS handshake already verified the certificate chain both
            // ways; a secret proof means a peer of another admission mode.
            Self::Mtls(_) | Self::Insecure => proof.is_empty(),
        }
    }
}

/// Keying material bound to `conn`'s TLS session.
pub fn session_ekm(conn: &quinn::Connection) -> anyhow::Result<[u8; 32]> {
    let mut out = [0u8; 32];
    conn.export_keying_material(&mut out, EKM_LABEL, b"")
        .map_err(|_| anyhow::anyhow!("TLS session cannot export keying material"))?;
    Ok(out)
}

/// What a connecting side is to the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A member: gossips, votes, runs shares.
    Peer,
    /// A command-line client (`status`, `start`, `stop`, `update`): may
    /// only ask and command, never gossip or take part in Raft.
    Client,
}

/// What a connecting side says first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTOCOL`] of the sender.
    pub protocol: u32,
    /// Cluster the sender belongs to.
    pub cluster_id: String,
    /// A member or a client.
    pub role: Role,
    /// The sender's node id.
    pub node: String,
    /// Where the sender's endpoint listens.
    pub advertise: String,
    /// Proof of the secret (empty when insecure).
    pub proof: String,
}

/// The accepting side's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Welcome {
    /// Whether the hello was accepted.
    pub ok: bool,
    /// Why not.
    pub error: Option<String>,
    /// The server's proof (empty when refused or insecure).
    pub proof: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_verify_only_with_the_same_secret_session_and_role() {
        let a = Admission::Secret(b"s3cret".to_vec());
        let b = Admission::Secret(b"other".to_vec());
        let ekm = [7u8; 32];
        let proof = a.proof(&ekm, "client");
        assert!(a.verify(&ekm, "client", &proof));
        assert!(!b.verify(&ekm, "client", &proof), "wrong secret");
        assert!(!a.verify(&[8u8; 32], "client", &proof), "other session");
        assert!(!a.verify(&ekm, "server", &proof), "reflected proof");
        assert!(!a.verify(&ekm, "client", ""), "no proof");
        assert!(!a.verify(&ekm, "client", "zz"), "garbage proof");
        assert!(
            !Admission::Insecure.verify(&ekm, "client", &proof),
            "insecure rejects secret peers"
        );
    }
}
