//! An iteration's cookie jar: what responses set, sent back on the
//! requests that match, as a browser session would (RFC 6265's domain,
//! path, `Secure`, `Max-Age` and `Expires` rules). A cookie lives at most
//! until the iteration ends, which is all a jar here lives.

use std::time::{SystemTime, UNIX_EPOCH};

use super::cookie_date;

/// Most cookies a jar holds (RFC 6265 6.1 asks for at least 3000); past
/// it the oldest goes, so a server setting a new name on every response
/// cannot grow a long iteration's jar without bound.
const MAX_COOKIES: usize = 3000;

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
    /// When it expires, in seconds since the Unix epoch, if it says.
    expires: Option<i64>,
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

/// Seconds since the Unix epoch, now.
fn unix_now() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
}

/// When a cookie with `Max-Age` `value` expires, set at `now`: a number of
/// seconds (zero or less: already), or `None` if it is not one (RFC 6265
/// 5.2.2: the attribute is then ignored).
fn max_age_of(value: &str, now: i64) -> Option<i64> {
    let digits = value.strip_prefix('-').unwrap_or(value);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // A number too long for i64 is still a number: far past or far ahead.
    let seconds = value.parse::<i64>().unwrap_or(if value.starts_with('-') {
        i64::MIN
    } else {
        i64::MAX
    });
    Some(if seconds <= 0 {
        i64::MIN
    } else {
        now.saturating_add(seconds)
    })
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
        self.store_at(header, host, path, unix_now());
    }

    /// [`store`](Self::store) at `now` (seconds since the Unix epoch).
    fn store_at(&mut self, header: &str, host: &str, path: &str, now: i64) {
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
            expires: None,
        };
        // Max-Age wins over Expires, whichever comes first.
        let (mut max_age, mut expires) = (None, None);
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
                "max-age" => max_age = max_age_of(val, now).or(max_age),
                "expires" => expires = cookie_date::unix_seconds(val).or(expires),
                _ => {}
            }
        }
        cookie.expires = max_age.or(expires);
        self.cookies.retain(|c| {
            !(c.name == cookie.name && c.domain == cookie.domain && c.path == cookie.path)
        });
        // A cookie set already expired deletes the one it names.
        if cookie.expires.is_none_or(|at| at > now) {
            if self.cookies.len() >= MAX_COOKIES {
                self.cookies.remove(0);
            }
            self.cookies.push(cookie);
        }
    }

    /// The `Cookie` header value for a request to `host` and `path`, if
    /// any cookie matches: longer paths first, as RFC 6265 orders them.
    pub fn header_for(&self, host: &str, path: &str, https: bool) -> Option<String> {
        // The clock is read only if some cookie can expire.
        let expiring = self.cookies.iter().any(|c| c.expires.is_some());
        let now = if expiring { unix_now() } else { i64::MIN };
        self.header_at(host, path, https, now)
    }

    /// [`header_for`](Self::header_for) at `now`.
    fn header_at(&self, host: &str, path: &str, https: bool, now: i64) -> Option<String> {
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
                    && c.expires.is_none_or(|at| at > now)
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
    fn expiry_dates_and_ages_are_kept() {
        let now = 1_445_412_480; // Wed, 21 Oct 2015 07:28:00 GMT
        let mut jar = Jar::default();
        jar.store_at("a=1; Expires=Wed, 21-Oct-2015 07:28:10 GMT", "t", "/", now);
        jar.store_at(
            "b=1; Max-Age=5; Expires=Thu, 01 Jan 2099 00:00:00 GMT",
            "t",
            "/",
            now,
        );
        jar.store_at("c=1; Max-Age=soon", "t", "/", now);
        assert_eq!(
            jar.header_at("t", "/", false, now).as_deref(),
            Some("a=1; b=1; c=1")
        );
        assert_eq!(
            jar.header_at("t", "/", false, now + 6).as_deref(),
            Some("a=1; c=1"),
            "Max-Age wins over Expires"
        );
        assert_eq!(
            jar.header_at("t", "/", false, now + 10).as_deref(),
            Some("c=1")
        );
        // The usual logout: a date in the past deletes the cookie.
        jar.store_at("c=; Expires=Thu, 01 Jan 1970 00:00:00 GMT", "t", "/", now);
        jar.store_at("d=1; Max-Age=-1", "t", "/", now);
        jar.store_at("e=1; Max-Age=99999999999999999999999", "t", "/", now);
        assert_eq!(
            jar.header_at("t", "/", false, now).as_deref(),
            Some("a=1; b=1; e=1")
        );
        // An unreadable date is ignored, not taken as expired.
        jar.store_at("f=1; Expires=someday", "t", "/", now);
        assert!(
            jar.header_at("t", "/", false, now)
                .unwrap()
                .ends_with("f=1")
        );
    }

    #[test]
    fn a_jar_keeps_at_most_its_bound_dropping_the_oldest() {
        let mut jar = Jar::default();
        for n in 0..MAX_COOKIES + 5 {
            jar.store(&format!("c{n}=1"), "t", "/");
        }
        assert_eq!(jar.cookies.len(), MAX_COOKIES);
        assert_eq!(jar.cookies[0].name, "c5");
    }

    #[test]
    fn a_set_cookie_names_its_value() {
        assert_eq!(set_cookie_value("a=1; Path=/", "a").as_deref(), Some("1"));
        assert_eq!(set_cookie_value("a=\"q\"", "a").as_deref(), Some("q"));
        assert_eq!(set_cookie_value("b=1", "a"), None);
        assert_eq!(set_cookie_value("garbage", "a"), None);
    }
}
