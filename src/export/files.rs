//! Report files: `.json` (everything), `.csv` (the per-second series) and
//! `.html` (the self-contained result page).

use std::path::Path;

use super::report::Report;

/// Writes `report` to `path`, choosing the format by extension.
pub fn write(report: &Report, path: &Path) -> anyhow::Result<()> {
    let shown = path.display();
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => {
            let file = std::fs::File::create(path)
                .map_err(|e| anyhow::anyhow!("cannot write {shown}: {e}"))?;
            serde_json::to_writer_pretty(std::io::BufWriter::new(file), report)?;
        }
        Some("csv") => {
            let csv = csv_bytes(report)?;
            std::fs::write(path, csv).map_err(|e| anyhow::anyhow!("cannot write {shown}: {e}"))?
        }
        Some("html") => {
            let page = super::html::render(report, target_rate(report));
            std::fs::write(path, page).map_err(|e| anyhow::anyhow!("cannot write {shown}: {e}"))?
        }
        _ => anyhow::bail!("{shown}: report files must end in .json, .csv or .html"),
    }
    Ok(())
}

const CSV_HEADER: [&str; 21] = [
    "second",
    "phase",
    "duration_s",
    "dispatched",
    "dropped",
    "missed",
    "success",
    "failure",
    "rate",
    "latency_mean_us",
    "latency_p50_us",
    "latency_p90_us",
    "latency_p99_us",
    "latency_p999_us",
    "latency_max_us",
    "service_mean_us",
    "service_p50_us",
    "service_p99_us",
    "service_max_us",
    "lag_p99_us",
    "cpu_percent",
];

/// The mean target rate of the measured phase, as far as the report tells
/// it (its planned arrivals over its measured length).
fn target_rate(report: &Report) -> Option<f64> {
    let planned = report.planned? as f64;
    let warmup_planned = report
        .warmup
        .as_ref()
        .map_or(0, |w| w.dispatched + w.dropped + w.missed);
    let main_secs = report.load_secs - report.warmup_secs;
    (main_secs > 0.0).then(|| (planned - warmup_planned as f64) / main_secs)
}

/// The per-second series as CSV.
pub fn csv_bytes(report: &Report) -> anyhow::Result<Vec<u8>> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(CSV_HEADER)?;
    for w in &report.series {
        let phase = match w.phase {
            crate::metrics::Phase::Warmup => "warmup",
            crate::metrics::Phase::Main => "main",
        };
        out.write_record([
            w.second.to_string(),
            phase.to_owned(),
            format!("{:.3}", w.duration_s),
            w.dispatched.to_string(),
            w.dropped.to_string(),
            w.missed.to_string(),
            w.success.to_string(),
            w.failure.to_string(),
            format!("{:.2}", w.rate),
            format!("{:.1}", w.latency.mean_us),
            format!("{:.1}", w.latency.p50_us),
            format!("{:.1}", w.latency.p90_us),
            format!("{:.1}", w.latency.p99_us),
            format!("{:.1}", w.latency.p999_us),
            format!("{:.1}", w.latency.max_us),
            format!("{:.1}", w.service.mean_us),
            format!("{:.1}", w.service.p50_us),
            format!("{:.1}", w.service.p99_us),
            format!("{:.1}", w.service.max_us),
            format!("{:.1}", w.lag_p99_us),
            format!("{:.1}", w.cpu_percent),
        ])?;
    }
    out.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
}
