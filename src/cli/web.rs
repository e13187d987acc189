//! The web API's flags on `join`, and `vajra-peer report`.

use std::net::SocketAddr;
use std::path::PathBuf;

use std::sync::Arc;

use clap::Args;

use super::process::{EXIT_CONFIG, EXIT_OK, EXIT_RUNTIME};
use crate::export::Report;
use crate::web::auth::{Authenticator, Providers, TokenFile};
use crate::web::oidc::{JwksSource, Oidc, OidcSettings};
use crate::web::tls::ClientCertificates;

/// Where and to whom a peer serves its web UI and API.
#[derive(Debug, Clone, Default, Args)]
pub struct WebArgs {
    /// Serve the web UI and the JSON API on this TCP address (e.g.
    /// 127.0.0.1:8080). Any address but loopback needs authentication.
    #[arg(long = "http", env = "VAJRA_HTTP", value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// API tokens, one per line: `ROLE TOKEN` (ROLE viewer or operator) or
    /// a lone TOKEN (an operator's). Tokens are at least 16 bytes.
    #[arg(long, env = "VAJRA_API_TOKEN_FILE", value_name = "FILE")]
    pub api_token_file: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate (chain).
    #[arg(
        long,
        env = "VAJRA_HTTP_TLS_CERT",
        value_name = "FILE",
        requires = "http_tls_key"
    )]
    pub http_tls_cert: Option<PathBuf>,
    /// The HTTPS certificate's PEM private key.
    #[arg(
        long,
        env = "VAJRA_HTTP_TLS_KEY",
        value_name = "FILE",
        requires = "http_tls_cert"
    )]
    pub http_tls_key: Option<PathBuf>,
    /// Accept client certificates this PEM CA signed (HTTPS only); the
    /// subject's organizational unit `vajra-operator` or `vajra-viewer`
    /// gives the role.
    #[arg(long, env = "VAJRA_API_CLIENT_CA", value_name = "FILE")]
    pub api_client_ca: Option<PathBuf>,
    /// Accept OIDC bearer tokens (JWTs) from this issuer (its URL, the
    /// tokens' `iss`).
    #[arg(
        long,
        env = "VAJRA_OIDC_ISSUER",
        value_name = "URL",
        requires = "oidc_audience"
    )]
    pub oidc_issuer: Option<String>,
    /// The audience OIDC tokens must name (`aud`).
    #[arg(
        long,
        env = "VAJRA_OIDC_AUDIENCE",
        value_name = "AUD",
        requires = "oidc_issuer"
    )]
    pub oidc_audience: Option<String>,
    /// The issuer's keys: a JWKS file or URL [default: the issuer's
    /// discovery document's jwks_uri].
    #[arg(
        long,
        env = "VAJRA_OIDC_JWKS",
        value_name = "FILE|URL",
        requires = "oidc_issuer"
    )]
    pub oidc_jwks: Option<String>,
    /// The token claim listing the caller's roles.
    #[arg(long, default_value = "roles", requires = "oidc_issuer")]
    pub oidc_role_claim: String,
    /// The role name (in that claim) of an operator.
    #[arg(long, default_value = "vajra-operator", requires = "oidc_issuer")]
    pub oidc_operator_role: String,
    /// The role name (in that claim) of a viewer.
    #[arg(long, default_value = "vajra-viewer", requires = "oidc_issuer")]
    pub oidc_viewer_role: String,
}

/// The web API a peer is asked to serve, its flags checked.
pub struct WebSettings {
    /// Where.
    pub listen: SocketAddr,
    /// HTTPS, when asked for.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    tokens: Option<TokenFile>,
    client_certificates: bool,
    oidc: Option<OidcSettings>,
}

impl WebArgs {
    /// The API to serve, or `None` without `--http`; `Err` says what is
    /// wrong.
    pub fn resolve(&self) -> Result<Option<WebSettings>, String> {
        let Some(listen) = self.http else {
            let stray = [
                ("--api-token-file", self.api_token_file.is_some()),
                ("--http-tls-cert", self.http_tls_cert.is_some()),
                ("--api-client-ca", self.api_client_ca.is_some()),
                ("--oidc-issuer", self.oidc_issuer.is_some()),
            ];
            if let Some((flag, _)) = stray.iter().find(|(_, given)| *given) {
                return Err(format!("{flag} needs --http ADDR"));
            }
            return Ok(None);
        };
        let tls = match (&self.http_tls_cert, &self.http_tls_key) {
            (Some(cert), Some(key)) => Some(crate::web::tls::server_config(
                cert,
                key,
                self.api_client_ca.as_deref(),
            )?),
            _ if self.api_client_ca.is_some() => {
                return Err(
                    "--api-client-ca needs HTTPS: give --http-tls-cert and --http-tls-key".into(),
                );
            }
            _ => None,
        };
        let tokens = self
            .api_token_file
            .as_deref()
            .map(TokenFile::load)
            .transpose()?;
        let oidc = self.oidc_settings()?;
        let settings = WebSettings {
            listen,
            tls,
            tokens,
            client_certificates: self.api_client_ca.is_some(),
            oidc,
        };
        if settings.is_open() && !listen.ip().is_loopback() {
            return Err(format!(
                "refusing to serve the API on {listen} without authentication: give \
                 --api-token-file FILE (or --api-client-ca, --oidc-issuer), or bind a \
                 loopback address (127.0.0.1)"
            ));
        }
        Ok(Some(settings))
    }

    fn oidc_settings(&self) -> Result<Option<OidcSettings>, String> {
        let Some(issuer) = self.oidc_issuer.clone() else {
            return Ok(None);
        };
        // Keys fetched in clear text could be anyone's.
        for (flag, url) in [
            ("--oidc-issuer", Some(&issuer)),
            ("--oidc-jwks", self.oidc_jwks.as_ref()),
        ] {
            if let Some(url) = url.filter(|u| u.starts_with("http://")) {
                let uri: Option<hyper::Uri> = url.parse().ok();
                let host = uri.as_ref().and_then(|u| u.host()).unwrap_or("");
                if !matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1") {
                    return Err(format!(
                        "{flag} {url}: keys must come over https:// (or from a file)"
                    ));
                }
            }
        }
        let jwks = match &self.oidc_jwks {
            Some(url) if url.starts_with("https://") || url.starts_with("http://") => {
                JwksSource::Url(url.clone())
            }
            Some(path) => JwksSource::File(PathBuf::from(path)),
            None => JwksSource::Discovery,
        };
        Ok(Some(OidcSettings {
            issuer,
            audience: self.oidc_audience.clone().unwrap_or_default(),
            jwks,
            role_claim: self.oidc_role_claim.clone(),
            operator_role: self.oidc_operator_role.clone(),
            viewer_role: self.oidc_viewer_role.clone(),
        }))
    }
}

impl WebSettings {
    /// Whether no provider is configured (everyone is an operator).
    pub fn is_open(&self) -> bool {
        self.tokens.is_none() && !self.client_certificates && self.oidc.is_none()
    }

    /// The configured providers, the OIDC issuer's keys fetched (on the
    /// current runtime, which then keeps them fresh).
    pub async fn providers(&mut self) -> Result<Providers, String> {
        let mut providers: Vec<Arc<dyn Authenticator>> = Vec::new();
        if let Some(tokens) = self.tokens.take() {
            providers.push(Arc::new(tokens));
        }
        if self.client_certificates {
            providers.push(Arc::new(ClientCertificates));
        }
        if let Some(settings) = self.oidc.take() {
            providers.push(Oidc::start(settings).await?);
        }
        Ok(Providers::new(providers))
    }
}

/// Arguments of `vajra-peer report`.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// A report written by `--output FILE.json`.
    pub input: PathBuf,
    /// Where to write it: `.html` (a self-contained page), `.csv` or `.json`.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: PathBuf,
}

/// Runs `vajra-peer report`: converts a JSON report.
pub fn report(args: ReportArgs) -> u8 {
    let shown = args.input.display();
    let text = match std::fs::read_to_string(&args.input) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: cannot read {shown}: {e}");
            return EXIT_CONFIG;
        }
    };
    let report: Report = match serde_json::from_str(&text) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {shown} is not a Vajra JSON report: {e}");
            return EXIT_CONFIG;
        }
    };
    if report.schema != crate::export::report::SCHEMA {
        eprintln!(
            "error: {shown} has schema `{}`; this version reads `{}`",
            report.schema,
            crate::export::report::SCHEMA
        );
        return EXIT_CONFIG;
    }
    match crate::export::files::write(&report, &args.output) {
        Ok(()) => {
            eprintln!("wrote {}", args.output.display());
            EXIT_OK
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            EXIT_RUNTIME
        }
    }
}
