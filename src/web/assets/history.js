// Vajra's history pages, on a node that keeps a history (an orchestrator):
// the runs listed and filtered, one run's report, two runs compared with
// their deltas and overlaid per-second charts, and a test's trend across
// its runs. Views of the one-page UI (app.js routes to them).
"use strict";

(function (global) {
  const C = global.VajraCharts;
  const R = global.VajraResult;
  const h = R.h;

  const OUTCOMES = ["", "passed", "failed", "completed", "stopped", "interrupted", "aborted"];
  const started = (ms) => new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "");
  const runLink = (id) => h("a", { href: "#/history/run/" + encodeURIComponent(id), "data-run": id }, id);
  const gate = (passed) => h("span", { class: passed ? "pass" : "fail" }, passed ? "pass" : "FAIL");

  /** The runs, filtered by the form; two picked are compared. */
  async function list(main, ctx) {
    const params = new URLSearchParams(ctx.query || "");
    const input = (name, attrs) => h("input", Object.assign({ name, id: "history-" + name, value: params.get(name) || "" }, attrs));
    const outcome = h("select", { name: "outcome", id: "history-outcome" },
      OUTCOMES.map((o) => h("option", { value: o, selected: (params.get("outcome") || "") === o ? "selected" : null }, o || "any")));
    const form = h("form", { class: "row", id: "history-filter" },
      field("Test name", input("name", { size: "28" })),
      field("Outcome", outcome),
      field("Since", input("since", { type: "date" })),
      field("Before", input("before", { type: "date" })),
      h("button", { type: "submit", class: "primary" }, "Filter"));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const q = new URLSearchParams();
      for (const [k, v] of new FormData(form)) if (v) q.set(k, v);
      location.hash = "#/history" + (q.toString() ? "?" + q : "");
    });
    const compare = h("button", { type: "button", id: "compare-picked", disabled: "disabled" }, "Compare the two picked");
    const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
    main.replaceChildren(h("h2", {}, "History"), form, h("p", {}, compare), body);
    let answer;
    try {
      answer = await ctx.api("GET", "/history/runs?" + params.toString());
    } catch (e) {
      body.replaceChildren(h("div", { class: "notice error" }, e.message));
      return;
    }
    const picked = [];
    const rows = answer.runs.map((r) => {
      const box = h("input", { type: "checkbox", "data-pick": r.id, "aria-label": "pick " + r.id });
      box.addEventListener("change", () => {
        const at = picked.indexOf(r.id);
        if (box.checked && at < 0) picked.push(r.id);
        if (!box.checked && at >= 0) picked.splice(at, 1);
        if (picked.length > 2) {
          const dropped = picked.shift();
          const other = main.querySelector(`input[data-pick="${CSS.escape(dropped)}"]`);
          if (other) other.checked = false;
        }
        compare.disabled = picked.length !== 2;
      });
      return [box, runLink(r.id), started(r.started_ms), r.outcome, gate(r.passed),
        r.target_rate == null ? "–" : C.formatRate(r.target_rate), C.formatRate(r.rate),
        (r.completed ? (100 * r.failures / r.completed) : 0).toFixed(2) + " %", C.formatMicros(r.p99_us),
        h("a", { href: "#/history/trend/" + encodeURIComponent(r.name), "data-trend": r.name }, r.name), r.started_by];
    });
    compare.addEventListener("click", () => {
      // The older run is the reference.
      const order = answer.runs.map((r) => r.id);
      const [a, b] = picked.slice().sort((x, y) => order.indexOf(y) - order.indexOf(x));
      location.hash = "#/history/compare/" + encodeURIComponent(a) + "/" + encodeURIComponent(b);
    });
    const waiting = answer.waiting && answer.waiting.length
      ? h("div", { class: "notice" }, "Waiting for the store (" + answer.store + "): " + answer.waiting.join(", "))
      : null;
    body.replaceChildren(...[waiting, h("p", { class: "muted" }, answer.runs.length + " runs in " + answer.store),
      rows.length
        ? R.table(["", "run", "started (UTC)", "outcome", "gate", "target", "rate", "errors", "p99", "test", "started by"], rows, "num history")
        : h("p", { class: "muted" }, "No recorded run matches.")].filter(Boolean));
  }

  function field(label, input) {
    return h("label", { class: "field" }, h("span", {}, label), input);
  }

  /** One recorded run's report, with its downloads. */
  async function run(main, id, ctx) {
    main.replaceChildren(h("p", { class: "muted" }, "Loading run " + id + "…"));
    try {
      const base = "/history/runs/" + encodeURIComponent(id);
      const [detail, report] = await Promise.all([ctx.api("GET", base), ctx.api("GET", base + "/report.json")]);
      R.render(main, report, {
        title: "Run " + id + " of " + detail.summary.name,
        targetRate: detail.summary.target_rate,
        downloads: ["json", "csv", "html"].map((f) => ({ label: f.toUpperCase(), href: "#", download: id + "." + f })),
      });
      main.insertBefore(h("p", { class: "muted" }, "Started by " + detail.summary.started_by + " · ",
        h("a", { href: "#/history/trend/" + encodeURIComponent(detail.summary.name) }, "trend of this test")), main.children[1]);
      main.querySelectorAll("a[data-format]").forEach((a) => a.addEventListener("click", (e) => {
        e.preventDefault();
        const format = a.dataset.format.toLowerCase();
        ctx.download(base + "/report." + format, id + "." + format).catch((err) => alert(err.message));
      }));
    } catch (e) {
      main.replaceChildren(h("div", { class: "notice error" }, e.message));
    }
  }

  /** A delta's cells: both values and the change, coloured by whether it is worse. */
  function deltaRow(d) {
    const show = (v) => d.unit === "ms" ? C.formatMicros(v * 1000) : d.unit === "/s" ? C.formatRate(v)
      : d.unit === "%" ? v.toFixed(3) + " %" : C.formatCount(v);
    // Higher is worse for latencies, errors and failures; lower for rates and counts.
    const higherIsWorse = d.unit === "ms" || d.metric === "error_rate" || d.metric === "failures";
    let change = "–", cls = "";
    if (d.change !== null && d.change !== undefined) {
      change = (d.change >= 0 ? "+" : "") + (d.change * 100).toFixed(1) + " %";
      const worse = higherIsWorse ? d.change > 0.05 : d.change < -0.05;
      const better = higherIsWorse ? d.change < -0.05 : d.change > 0.05;
      cls = worse ? "fail" : better ? "pass" : "";
    }
    return [d.metric, show(d.a), show(d.b), h("span", { class: cls, "data-metric": d.metric }, change)];
  }

  /** Two runs side by side. */
  async function compare(main, a, b, ctx) {
    main.replaceChildren(h("p", { class: "muted" }, "Comparing " + a + " and " + b + "…"));
    let c;
    try {
      c = await ctx.api("GET", "/history/compare?" + new URLSearchParams({ a, b }));
    } catch (e) {
      main.replaceChildren(h("div", { class: "notice error" }, e.message));
      return;
    }
    const head = ["", "A: " + c.a.id, "B: " + c.b.id, "change"];
    const parts = [h("h2", {}, "Compare runs"),
      R.table(["", "A", "B"], [
        ["run", runLink(c.a.id), runLink(c.b.id)],
        ["test", c.a.name, c.b.name],
        ["started (UTC)", started(c.a.started_ms), started(c.b.started_ms)],
        ["outcome", c.a.outcome, c.b.outcome],
        ["gate", gate(c.a.passed), gate(c.b.passed)]], "kv"),
      h("h3", {}, "Measured phase"), R.table(head, c.overall.map(deltaRow), "num compare")];
    for (const [tag, rows] of Object.entries(c.tags || {})) {
      parts.push(h("h3", {}, "Tag " + tag), R.table(head, rows.map(deltaRow), "num compare"));
    }
    const charts = h("section", { class: "charts" }, h("h3", {}, "Per second, overlaid"));
    parts.push(charts);
    main.replaceChildren(...parts);
    const series = (s, key) => s.map((p) => [p.second + 0.5, p[key]]);
    const rate = new C.LineChart(charts, { title: "Completed per second", unit: "rate", lines: [
      { name: "A " + c.a.id, color: "#8a8f98", dashed: true }, { name: "B " + c.b.id, color: "#2563eb" }] });
    const p99 = new C.LineChart(charts, { title: "Latency p99", unit: "micros", log: true, lines: [
      { name: "A " + c.a.id, color: "#8a8f98", dashed: true }, { name: "B " + c.b.id, color: "#dc2626" }] });
    rate.update([series(c.series_a, "rate"), series(c.series_b, "rate")]);
    p99.update([c.series_a.map((p) => [p.second + 0.5, p.p99_ms * 1000]), c.series_b.map((p) => [p.second + 0.5, p.p99_ms * 1000])]);
    return [rate, p99];
  }

  /** A test's p99 and achieved rate across its runs, oldest first. */
  async function trend(main, name, ctx) {
    main.replaceChildren(h("p", { class: "muted" }, "Loading the trend of " + name + "…"));
    let t;
    try {
      t = await ctx.api("GET", "/history/trend?" + new URLSearchParams({ name }));
    } catch (e) {
      main.replaceChildren(h("div", { class: "notice error" }, e.message));
      return;
    }
    const charts = h("section", { class: "charts", id: "trend-charts" });
    main.replaceChildren(h("h2", {}, "Trend of " + name), h("p", { class: "muted" }, t.runs.length + " runs, oldest first"), charts,
      R.table(["#", "run", "started (UTC)", "outcome", "gate", "rate", "p50", "p99"], t.runs.map((r, i) =>
        [String(i + 1), runLink(r.id), started(r.started_ms), r.outcome, gate(r.passed), C.formatRate(r.rate),
          C.formatMicros(r.p50_us), C.formatMicros(r.p99_us)]), "num"));
    const byRun = (key) => t.runs.map((r, i) => [i + 1, r[key]]);
    const xFormat = (x) => Number.isInteger(x) ? "#" + x : "";
    const latency = new C.LineChart(charts, { title: "Latency by run", unit: "micros", log: true, xFormat, lines: [
      { name: "p50", color: "#16a34a" }, { name: "p99", color: "#dc2626" }] });
    latency.update([byRun("p50_us"), byRun("p99_us")]);
    const rate = new C.LineChart(charts, { title: "Achieved and target rate by run", unit: "rate", xFormat, lines: [
      { name: "target", color: "#8a8f98", dashed: true }, { name: "achieved", color: "#2563eb" }] });
    rate.update([t.runs.filter((r) => r.target_rate != null).map((r) => [t.runs.indexOf(r) + 1, r.target_rate]), byRun("rate")]);
    return [latency, rate];
  }

  global.VajraHistory = { list, run, compare, trend };
})(typeof window !== "undefined" ? window : globalThis);
