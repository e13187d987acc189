// A finished test's result page, from its report (docs/report-schema.md):
// the summary the console prints, threshold verdicts, per-tag and
// per-peer tables, per-second charts and events. The web UI's result view
// and the self-contained HTML report both call VajraResult.render.
// Every value from the report is set as text, never parsed as HTML.
"use strict";

(function (global) {
  const C = global.VajraCharts;

  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else node.setAttribute(k, v);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.appendChild(typeof child === "string" || typeof child === "number"
        ? document.createTextNode(String(child)) : child);
    }
    return node;
  }

  function table(head, rows, cls) {
    return h("table", { class: cls || "" },
      h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))),
      h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c))))));
  }

  const pct = (x) => (x * 100).toFixed(2) + " %";

  function latencyRows(report) {
    const rows = [];
    const add = (name, s) => {
      if (!s) return;
      rows.push([name, C.formatMicros(s.min_us), C.formatMicros(s.mean_us), C.formatMicros(s.p50_us),
        C.formatMicros(s.p90_us), C.formatMicros(s.p95_us), C.formatMicros(s.p99_us),
        C.formatMicros(s.p999_us), C.formatMicros(s.max_us)]);
    };
    add("latency", report.main.latency);
    add("service time", report.main.service);
    add("scheduler lag", report.scheduler_lag);
    return rows;
  }

  function summary(report, targetRate) {
    const m = report.main;
    const rows = [
      ["outcome", report.outcome + (report.abort_reason ? " (" + report.abort_reason + ")" : "")],
      ["task", report.task + " (" + report.model + " model)"],
      ["started", report.started_at],
      ["load", C.formatSeconds(report.load_secs) + (report.warmup_secs ? ", of which warmup " + C.formatSeconds(report.warmup_secs) : "")],
    ];
    if (report.planned !== null && report.planned !== undefined) rows.push(["planned arrivals", String(report.planned)]);
    if (targetRate) rows.push(["target rate", C.formatRate(targetRate)]);
    rows.push(["achieved rate", C.formatRate(m.rate)]);
    rows.push(["completed", m.completed + " (" + m.success + " ok, " + m.failure + " failed, " + pct(m.error_rate) + ")"]);
    rows.push(["dispatched", String(m.dispatched)]);
    rows.push(["dropped", String(m.dropped)]);
    rows.push(["missed", String(m.missed)]);
    if (report.unsent) rows.push(["unsent (lost peers)", String(report.unsent)]);
    if (report.unfinished) rows.push(["unfinished at drain", String(report.unfinished)]);
    return h("section", { class: "summary" },
      h("h3", {}, "Summary"),
      table(["", ""], rows, "kv"),
      table(["", "min", "mean", "p50", "p90", "p95", "p99", "p99.9", "max"], latencyRows(report), "num"));
  }

  function verdict(report) {
    const passed = (report.thresholds || []).every((t) => t.passed);
    const reliable = report.self_check ? report.self_check.reliable : true;
    const text = !passed ? "THRESHOLDS FAILED" : !reliable ? "UNRELIABLE" : "PASSED";
    return h("span", { class: "badge " + (!passed ? "bad" : !reliable ? "warn" : "good"), "data-verdict": text }, text);
  }

  function thresholds(report) {
    if (!report.thresholds || !report.thresholds.length) return null;
    return h("section", {},
      h("h3", {}, "Thresholds"),
      table(["threshold", "actual", "baseline", "verdict"], report.thresholds.map((t) =>
        [t.threshold, t.actual, t.baseline || "", h("span", { class: t.passed ? "pass" : "fail" }, t.passed ? "pass" : "FAIL")])));
  }

  // Per-name figures: the executions' tags, or the steps inside them
  // (whose latency counts from when each step was due).
  function named(title, column, map) {
    const entries = Object.entries(map || {});
    if (!entries.length) return null;
    return h("section", {},
      h("h3", {}, title),
      table([column, "completed", "failed", "rate", "p50", "p90", "p99", "max"], entries.map(([name, p]) =>
        [name, String(p.completed), String(p.failure), C.formatRate(p.rate), C.formatMicros(p.latency.p50_us),
          C.formatMicros(p.latency.p90_us), C.formatMicros(p.latency.p99_us), C.formatMicros(p.latency.max_us)]), "num"));
  }

  function tags(report) {
    return named("By tag", "tag", report.tags);
  }

  function steps(report) {
    return named("By step", "step", report.steps);
  }

  function errors(report) {
    const list = report.main.errors || [];
    if (!list.length) return null;
    return h("section", {},
      h("h3", {}, "Errors by kind"),
      table(["kind", "count", "example"], list.map((e) => [e.kind, String(e.count), e.example || ""])));
  }

  function peers(report) {
    const entries = Object.entries(report.peers || {});
    if (!entries.length) return null;
    return h("section", {},
      h("h3", {}, "Peers"),
      table(["peer", "completed", "failed", "dropped", "rate", "p99", "outcome"], entries.map(([id, r]) =>
        [id, String(r.main.completed), String(r.main.failure), String(r.main.dropped), C.formatRate(r.main.rate),
          C.formatMicros(r.main.latency.p99_us), r.outcome]), "num"));
  }

  function events(report) {
    if (!report.events || !report.events.length) return null;
    return h("section", {}, h("h3", {}, "Events"), h("ul", { class: "events" }, report.events.map((e) => h("li", {}, e))));
  }

  function selfCheck(report) {
    const s = report.self_check;
    if (!s) return null;
    const rows = [["reliable", s.reliable ? "yes" : "no"], ["generator CPU", s.cpu_percent_mean.toFixed(1) + " % mean, " + s.cpu_percent_max.toFixed(1) + " % max"],
      ["peak memory", s.peak_rss_mb.toFixed(1) + " MiB"]];
    for (const r of s.reasons || []) rows.push(["reason", r]);
    return h("section", {}, h("h3", {}, "Self-check"), table(["", ""], rows, "kv"));
  }

  function charts(report, container) {
    const series = report.series || [];
    if (!series.length) return;
    const sec = (w) => w.second + w.duration_s / 2;
    const grid = h("section", { class: "charts" }, h("h3", {}, "Per second"));
    container.appendChild(grid);
    const rate = new C.LineChart(grid, { title: "Rate", unit: "rate", lines: [
      { name: "sent (dispatched)", color: "#8a8f98", dashed: true }, { name: "completed", color: "#2563eb" }] });
    rate.update([series.map((w) => [sec(w), w.dispatched / Math.max(w.duration_s, 1e-9)]), series.map((w) => [sec(w), w.rate])]);
    const withResults = series.filter((w) => w.success + w.failure > 0);
    const lat = new C.LineChart(grid, { title: "Latency from the intended start", unit: "micros", log: true, lines: [
      { name: "p50", color: "#16a34a" }, { name: "p90", color: "#d97706" }, { name: "p99", color: "#dc2626" }] });
    lat.update([withResults.map((w) => [sec(w), w.latency.p50_us]), withResults.map((w) => [sec(w), w.latency.p90_us]),
      withResults.map((w) => [sec(w), w.latency.p99_us])]);
    const svc = new C.LineChart(grid, { title: "Service time from the actual start", unit: "micros", log: true, lines: [
      { name: "p50", color: "#16a34a" }, { name: "p90", color: "#d97706" }, { name: "p99", color: "#dc2626" }] });
    svc.update([withResults.map((w) => [sec(w), w.service.p50_us]), withResults.map((w) => [sec(w), w.service.p90_us]),
      withResults.map((w) => [sec(w), w.service.p99_us])]);
    const bad = new C.LineChart(grid, { title: "Failures, drops and misses", unit: "count", lines: [
      { name: "failed", color: "#dc2626" }, { name: "dropped", color: "#7c3aed" }, { name: "missed", color: "#d97706" }] });
    bad.update([series.map((w) => [sec(w), w.failure]), series.map((w) => [sec(w), w.dropped]), series.map((w) => [sec(w), w.missed])]);
    return [rate, lat, svc, bad];
  }

  /**
   * Renders `report` into `container`. `options.targetRate` is the mean
   * target, `options.downloads` a list of {label, href} links.
   */
  function render(container, report, options) {
    options = options || {};
    container.replaceChildren();
    const head = h("header", { class: "result-head" },
      h("h2", {}, options.title || ("Result" + (options.testId ? " of " + options.testId : ""))), verdict(report));
    container.appendChild(head);
    if (options.downloads && options.downloads.length) {
      container.appendChild(h("p", { class: "downloads" }, "Download: ",
        options.downloads.map((d) => h("a", { href: d.href, download: d.download || "", "data-format": d.label, class: "button" }, d.label))));
    }
    container.appendChild(summary(report, options.targetRate));
    for (const part of [thresholds(report), errors(report), tags(report), steps(report), peers(report)]) if (part) container.appendChild(part);
    const drawn = charts(report, container) || [];
    for (const part of [events(report), selfCheck(report)]) if (part) container.appendChild(part);
    const redraw = () => drawn.forEach((c) => c.draw());
    global.addEventListener("resize", redraw);
    redraw();
  }

  global.VajraResult = { render, h, table };
})(typeof window !== "undefined" ? window : globalThis);
