//! Where a protocol task's URL points: the one parser behind the `http`,
//! `grpc` and `websocket` tasks' URLs and a scenario's steps', so they all
//! take the same URLs and say the same thing about a bad one.

use hyper::Uri;

/// A protocol's two schemes: plain and over TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schemes {
    /// The plain one (`http`).
    pub plain: &'static str,
    /// The one over TLS (`https`).
    pub secure: &'static str,
}

/// `http://` and `https://`.
pub const HTTP: Schemes = Schemes {
    plain: "http",
    secure: "https",
};

/// `ws://` and `wss://`.
pub const WEBSOCKET: Schemes = Schemes {
    plain: "ws",
    secure: "wss",
};

/// An absolute URL, checked: its parts, and where to connect.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The URL as parsed.
    pub uri: Uri,
    /// Whether its scheme is the one over TLS.
    pub secure: bool,
    /// The host, as written (the name TLS verifies).
    pub host: String,
    /// `host:port` to connect to, the scheme's port if none is written.
    pub address: String,
    /// The authority as written (`Host` and `:authority`).
    pub authority: String,
}

impl Origin {
    /// Parses `url`, which must have one of `schemes` and a host. `Err`
    /// says what is wrong with it, quoting it.
    pub fn parse(url: &str, schemes: Schemes) -> Result<Self, String> {
        if !url.contains("://") {
            return Err(format!(
                "'{url}' needs a scheme, e.g. {}://{url}",
                schemes.plain
            ));
        }
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("'{url}' is not a valid URL: {e}"))?;
        let secure = match uri.scheme_str() {
            Some(s) if s == schemes.plain => false,
            Some(s) if s == schemes.secure => true,
            _ => {
                return Err(format!(
                    "'{url}' must start with {}:// or {}://",
                    schemes.plain, schemes.secure
                ));
            }
        };
        let authority = uri
            .authority()
            .ok_or_else(|| format!("'{url}' has no host"))?
            .clone();
        let port = authority
            .port_u16()
            .unwrap_or(if secure { 443 } else { 80 });
        Ok(Self {
            secure,
            host: authority.host().to_owned(),
            address: format!("{}:{port}", authority.host()),
            authority: authority.as_str().to_owned(),
            uri,
        })
    }

    /// The path and query (`/` when the URL has none).
    pub fn path(&self) -> &str {
        self.uri.path_and_query().map_or("/", |p| p.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_default_by_scheme_and_bad_urls_are_named() {
        let o = Origin::parse("https://shop.test/cart?x=1", HTTP).unwrap();
        assert!(o.secure);
        assert_eq!(o.address, "shop.test:443");
        assert_eq!(o.path(), "/cart?x=1");
        let o = Origin::parse("ws://127.0.0.1:9000", WEBSOCKET).unwrap();
        assert_eq!(
            (o.secure, o.address.as_str(), o.path()),
            (false, "127.0.0.1:9000", "/")
        );
        for (url, schemes, needle) in [
            (
                "shop.test/x",
                HTTP,
                "needs a scheme, e.g. http://shop.test/x",
            ),
            (
                "ftp://shop.test/",
                HTTP,
                "must start with http:// or https://",
            ),
            (
                "http://shop.test/",
                WEBSOCKET,
                "must start with ws:// or wss://",
            ),
            ("http:// bad/", HTTP, "is not a valid URL"),
        ] {
            let e = Origin::parse(url, schemes).unwrap_err();
            assert!(e.contains(needle), "{url}: {e}");
        }
    }
}
