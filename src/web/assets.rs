//! The web UI's files, compiled into the binary: no CDN, no build step.

/// `index.html`: the page shell.
pub const INDEX_HTML: &str = include_str!("assets/index.html");
/// The stylesheet (also inlined into HTML reports).
pub const STYLE_CSS: &str = include_str!("assets/style.css");
/// The SVG charts (also inlined into HTML reports).
pub const CHARTS_JS: &str = include_str!("assets/charts.js");
/// The result page (also inlined into HTML reports).
pub const RESULT_JS: &str = include_str!("assets/result.js");
/// The history pages (an orchestrator's).
pub const HISTORY_JS: &str = include_str!("assets/history.js");
/// The single-page app.
pub const APP_JS: &str = include_str!("assets/app.js");
/// The page icon.
pub const ICON_SVG: &str = include_str!("assets/icon.svg");
/// The API's OpenAPI 3 description (`docs/openapi.json`).
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// What the UI's pages may load and connect to: this node only, its own
/// scripts only (no inline script runs).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'";

/// The content type and bytes of the UI file at `path`, if there is one.
pub fn file(path: &str) -> Option<(&'static str, &'static [u8])> {
    let (content_type, text) = match path {
        "/" | "/index.html" => ("text/html; charset=utf-8", INDEX_HTML),
        "/ui/style.css" => ("text/css; charset=utf-8", STYLE_CSS),
        "/ui/charts.js" => ("text/javascript; charset=utf-8", CHARTS_JS),
        "/ui/result.js" => ("text/javascript; charset=utf-8", RESULT_JS),
        "/ui/history.js" => ("text/javascript; charset=utf-8", HISTORY_JS),
        "/ui/app.js" => ("text/javascript; charset=utf-8", APP_JS),
        "/ui/icon.svg" | "/favicon.ico" => ("image/svg+xml", ICON_SVG),
        _ => return None,
    };
    Some((content_type, text.as_bytes()))
}
