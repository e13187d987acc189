//! The self-contained HTML report: one file holding the result page's
//! styles, scripts (the web UI's own charts and result view) and the
//! report's data, so it opens in any browser, offline, months later.

use super::report::Report;
use crate::web::assets::{CHARTS_JS, RESULT_JS, STYLE_CSS};

/// The HTML page of `report`; `target_rate` is the mean target over its
/// measured phase, when known.
pub fn render(report: &Report, target_rate: Option<f64>) -> String {
    // Per-second histograms are for merging, not for reading: the page
    // shows their percentiles, which each window already has.
    let mut shown = report.clone();
    for window in &mut shown.series {
        window.histograms = None;
    }
    for peer in shown.peers.values_mut() {
        peer.series.clear();
    }
    let data = serde_json::json!({ "report": shown, "target_rate": target_rate });
    let title = format!("Vajra report: {} {}", report.task, report.started_at);
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>\n{STYLE_CSS}</style>\n</head>\n<body>\n\
         <main id=\"report\"></main>\n\
         <script type=\"application/json\" id=\"report-data\">{data}</script>\n\
         <script>\n{CHARTS_JS}</script>\n<script>\n{RESULT_JS}</script>\n\
         <script>\n{BOOT}</script>\n</body>\n</html>\n",
        title = escape_text(&title),
        data = script_safe(&data.to_string()),
    )
}

/// Reads the embedded data and renders it.
const BOOT: &str = r#""use strict";
(function () {
  const data = JSON.parse(document.getElementById("report-data").textContent);
  VajraResult.render(document.getElementById("report"), data.report, {
    title: "Vajra report: " + data.report.task + ", " + data.report.started_at,
    targetRate: data.target_rate,
  });
})();
"#;

/// `json` made safe inside a `<script>` element: no `</script>` or `<!--`
/// can close it early (`<` becomes its JSON escape).
fn script_safe(json: &str) -> String {
    json.replace('<', "\\u003c")
}

/// `text` safe as HTML text.
fn escape_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_holds_its_data_and_no_early_end_of_script() {
        let mut report = Report::failed("t</script><script>alert(1)</script>", "boom");
        report.events.push("<!-- x".into());
        let page = render(&report, Some(10.0));
        let data_start = page.find("id=\"report-data\">").unwrap();
        let data_end = page[data_start..].find("</script>").unwrap() + data_start;
        let data = &page[data_start + "id=\"report-data\">".len()..data_end];
        let parsed: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(
            parsed["report"]["task"],
            "t</script><script>alert(1)</script>"
        );
        assert_eq!(parsed["target_rate"], 10.0);
        assert!(!page.contains("<script>alert(1)"));
        // Nothing is loaded from elsewhere (the SVG namespace is a name,
        // not a fetch).
        for loads in ["src=", "<link", "fetch(", "@import", "url("] {
            assert!(!page.contains(loads), "the page loads something: {loads}");
        }
    }
}
