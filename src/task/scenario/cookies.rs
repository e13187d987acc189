//! An iteration's cookie jar: what responses set, sent back on the
//! requests that match, as a browser session would (RFC 6265's domain,
//! path, `Secure` and `Max-Age` rules; `Expires` dates are not read, so such
//! a cookie lives until the iteration ends, which is all a jar here lives).

/// One stored cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cookie {
    name: String,
    value: String,
    /// Host it was set by, or the domain it names (lower case, no dot).
    domain: String,
    /// Whether only `domain` itself gets it (no `Domain` attribute).
    host_only: bool,
    path: String,
    secure: bool,
}

/// The cookies of one iteration.
#[derive(Debug, Default, Clone)]
pub struct Jar {
    cookies: Vec<Cookie>,
}

/// The value `header` (a `Set-Cookie` value) gives cookie `name`, if it
/// names that cookie.
pub fn set_cookie_value(header: &str, name: &str) -> Option<String> {
    let pair = header.split(';').next()?;
    let (n, v) = pair.split_once('=')?;
    (n.trim() == name).then(|| v.trim().trim_matches('"').to_owned())
}

/// The default path of a cookie set by a request to `path` (RFC 6265 5.1.4).
fn default_path(path: &str) -> String {
    let path = path.split('?').next().unwrap_or("/");
    match path.rfind('/') {
        Some(0) | None => "/".into(),
        Some(at) => path[..at].to_owned(),
    }
}

fn domain_matches(host: &str, domain: &str) -> bool {
    host == domain
        || (host.ends_with(domain)
            && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
            && host.parse::<std::net::IpAddr>().is_err())
}

fn path_matches(path: &str, cookie_path: &str) -> bool {
    let path = path.split('?').next().unwrap_or("/");
    path == cookie_path
        || (path.starts_with(cookie_path)
            && (cookie_path.ends_with('/') || path.as_bytes()[cookie_path.len()] == b'/'))
}

impl Jar {
    /// Forgets every cookie (a new iteration).
    pub fn clear(&mut self) {
        self.cookies.clear();
    }

    /// Stores what a `Set-Cookie` header from `host` for a request to
    /// `path` says; a malformed one, or one for another domain, is ignored
    /// as a browser ignores it.
    pub fn store(&mut self, header: &str, host: &str, path: &str) {
        let mut parts = header.split(';');
        let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else {
            return;
        };
        let name = name.trim();
        if name.is_empty() {
            return;
        }
        let host = host.to_ascii_lowercase();
        let mut cookie = Cookie {
            name: name.to_owned(),
            value: value.trim().trim_matches('"').to_owned(),
            domain: host.clone(),
            host_only: true,
            path: default_path(path),
            secure: false,
        };
        let mut expired = false;
        for attribute in parts {
            let (key, val) = attribute.split_once('=').unwrap_or((attribute, ""));
            let (key, val) = (key.trim().to_ascii_lowercase(), val.trim());
            match key.as_str() {
                "domain" if !val.is_empty() => {
                    let domain = val.trim_start_matches('.').to_ascii_lowercase();
                    if !domain_matches(&host, &domain) {
                        return;
                    }
                    cookie.domain = domain;
                    cookie.host_only = false;
                }
                "path" if val.starts_with('/') => cookie.path = val.to_owned(),
                "secure" => cookie.secure = true,
                "max-age" => expired = val.parse::<i64>().is_ok_and(|s| s <= 0),
                _ => {}
            }
        }
        self.cookies.retain(|c| {
            !(c.name == cookie.name && c.domain == cookie.domain && c.path == cookie.path)
        });
        if !expired {
            self.cookies.push(cookie);
        }
    }

    /// The `Cookie` header value for a request to `host` and `path`, if
    /// any cookie matches: longer paths first, as RFC 6265 orders them.
    pub fn header_for(&self, host: &str, path: &str, https: bool) -> Option<String> {
        let host = host.to_ascii_lowercase();
        let mut matching: Vec<&Cookie> = self
            .cookies
            .iter()
            .filter(|c| {
                (if c.host_only {
                    c.domain == host
                } else {
                    domain_matches(&host, &c.domain)
                }) && path_matches(path, &c.path)
                    && (https || !c.secure)
            })
            .collect();
        if matching.is_empty() {
            return None;
        }
        matching.sort_by_key(|c| std::cmp::Reverse(c.path.len()));
        let pairs: Vec<String> = matching
            .iter()
            .map(|c| format!("{}={}", c.name, c.value))
            .collect();
        Some(pairs.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_go_back_where_they_belong() {
        let mut jar = Jar::default();
        jar.store("sid=abc; Path=/; HttpOnly", "shop.test", "/login");
        jar.store("cart=1", "shop.test", "/cart/add");
        jar.store("pref=dark; Domain=.shop.test; Secure", "www.shop.test", "/");
        jar.store("evil=1; Domain=other.test", "shop.test", "/");
        assert_eq!(
            jar.header_for("shop.test", "/", false).as_deref(),
            Some("sid=abc")
        );
        assert_eq!(
            jar.header_for("shop.test", "/cart/view?x=1", false)
                .as_deref(),
            Some("cart=1; sid=abc")
        );
        assert_eq!(
            jar.header_for("api.shop.test", "/", true).as_deref(),
            Some("pref=dark"),
            "a domain cookie reaches subdomains, over https only"
        );
        assert_eq!(jar.header_for("api.shop.test", "/", false), None);
        assert_eq!(
            jar.header_for("other.test", "/", false),
            None,
            "foreign domain refused"
        );
        assert_eq!(
            jar.header_for("shop.test", "/cartoon", false).as_deref(),
            Some("sid=abc")
        );
        jar.store("sid=new; Path=/", "shop.test", "/");
        jar.store("cart=; Max-Age=0", "shop.test", "/cart/x");
        assert_eq!(
            jar.header_for("shop.test", "/cart/view", false).as_deref(),
            Some("sid=new"),
            "replaced and deleted"
        );
        jar.clear();
        assert_eq!(jar.header_for("shop.test", "/", false), None);
    }

    #[test]
    fn a_set_cookie_names_its_value() {
        assert_eq!(set_cookie_value("a=1; Path=/", "a").as_deref(), Some("1"));
        assert_eq!(set_cookie_value("a=\"q\"", "a").as_deref(), Some("q"));
        assert_eq!(set_cookie_value("b=1", "a"), None);
        assert_eq!(set_cookie_value("garbage", "a"), None);
    }
}
