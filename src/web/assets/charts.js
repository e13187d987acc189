// Vajra's charts: SVG line charts with axes, units and a legend, owned by
// the project (no library). Used by the web UI and by the self-contained
// HTML report. A chart keeps at most `maxPoints` per line on screen: older
// points are folded into min/max pairs per column, so an hour-long test
// draws as fast as a minute-long one.
"use strict";

(function (global) {
  const SVG = "http://www.w3.org/2000/svg";

  function el(name, attrs, parent) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (parent) parent.appendChild(node);
    return node;
  }

  /** "1.23 ms" for a value in microseconds. */
  function formatMicros(us) {
    if (!isFinite(us)) return "–";
    if (us >= 1e6) return (us / 1e6).toPrecision(3) + " s";
    if (us >= 1e3) return (us / 1e3).toPrecision(3) + " ms";
    return us.toPrecision(3) + " µs";
  }

  /** "12.3k/s" for a rate per second. */
  function formatRate(r) {
    if (!isFinite(r)) return "–";
    if (Math.abs(r) >= 1e6) return (r / 1e6).toPrecision(3) + "M/s";
    if (Math.abs(r) >= 1e4) return (r / 1e3).toPrecision(3) + "k/s";
    return (Math.round(r * 10) / 10) + "/s";
  }

  function formatCount(n) {
    if (!isFinite(n)) return "–";
    if (Math.abs(n) >= 1e6) return (n / 1e6).toPrecision(3) + "M";
    if (Math.abs(n) >= 1e4) return (n / 1e3).toPrecision(3) + "k";
    return String(Math.round(n * 100) / 100);
  }

  /** "1m05s" for seconds. */
  function formatSeconds(s) {
    if (!isFinite(s)) return "–";
    if (s < 10 && Math.abs(s - Math.round(s)) > 1e-6) return s.toFixed(1) + "s";
    if (s < 60) return Math.round(s) + "s";
    const m = Math.floor(s / 60), r = Math.round(s % 60);
    return m + "m" + String(r).padStart(2, "0") + "s";
  }

  const UNITS = { micros: formatMicros, rate: formatRate, count: formatCount };

  /** Round tick steps covering [lo, hi] with about `n` ticks. */
  function linearTicks(lo, hi, n) {
    if (hi <= lo) hi = lo + 1;
    const raw = (hi - lo) / n;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
    const ticks = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(t);
    return ticks;
  }

  function logTicks(lo, hi) {
    const ticks = [];
    for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
      const t = Math.pow(10, e);
      if (t >= lo * 0.999 && t <= hi * 1.001) ticks.push(t);
    }
    return ticks.length >= 2 ? ticks : [lo, hi];
  }

  /**
   * Folds `points` ([x, y] sorted by x) into at most `max` points: each
   * column of x keeps its lowest and highest y, so spikes stay visible.
   */
  function downsample(points, max) {
    if (points.length <= max) return points;
    const x0 = points[0][0], x1 = points[points.length - 1][0];
    const columns = Math.max(1, Math.floor(max / 2));
    const width = (x1 - x0) / columns || 1;
    const out = [];
    let column = -1, lo = null, hi = null;
    const flush = () => {
      if (lo === null) return;
      if (lo[0] <= hi[0]) out.push(lo, hi); else out.push(hi, lo);
      if (lo === hi) out.pop();
    };
    for (const p of points) {
      const c = Math.min(columns - 1, Math.floor((p[0] - x0) / width));
      if (c !== column) {
        flush();
        column = c; lo = p; hi = p;
      } else {
        if (p[1] < lo[1]) lo = p;
        if (p[1] > hi[1]) hi = p;
      }
    }
    flush();
    return out;
  }

  /**
   * A line chart in `container`. `options`: title, unit ("micros", "rate",
   * "count"), log (a log y axis), lines: [{name, color, dashed}], height,
   * maxPoints, xFormat (the x ticks' labels; seconds by default).
   * `update(data)` redraws with data[i] the points of lines[i].
   */
  function LineChart(container, options) {
    this.options = Object.assign({ height: 220, maxPoints: 800, unit: "count", log: false }, options);
    this.root = document.createElement("figure");
    this.root.className = "chart";
    const caption = document.createElement("figcaption");
    caption.textContent = this.options.title || "";
    this.root.appendChild(caption);
    this.legend = document.createElement("div");
    this.legend.className = "legend";
    for (const line of this.options.lines) {
      const item = document.createElement("span");
      const swatch = document.createElement("i");
      swatch.style.background = line.color;
      if (line.dashed) swatch.className = "dashed";
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(line.name));
      this.legend.appendChild(item);
    }
    this.root.appendChild(this.legend);
    this.svg = el("svg", { role: "img", "aria-label": this.options.title || "chart" }, this.root);
    container.appendChild(this.root);
    this.data = this.options.lines.map(() => []);
  }

  LineChart.prototype.update = function (data) {
    this.data = data;
    this.draw();
  };

  LineChart.prototype.draw = function () {
    const o = this.options;
    const width = Math.max(320, this.root.clientWidth || 640);
    const height = o.height;
    const m = { left: 64, right: 12, top: 8, bottom: 28 };
    const svg = this.svg;
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    const lines = this.data.map((pts) =>
      downsample((pts || []).filter((p) => isFinite(p[1]) && (!o.log || p[1] > 0)), o.maxPoints));
    const all = lines.flat();
    let x0 = o.xMin !== undefined ? o.xMin : Math.min(...all.map((p) => p[0]));
    let x1 = o.xMax !== undefined ? o.xMax : Math.max(...all.map((p) => p[0]));
    if (!isFinite(x0) || !isFinite(x1)) { x0 = 0; x1 = 60; }
    if (x1 <= x0) x1 = x0 + 1;
    let y0 = o.log ? Math.min(...all.map((p) => p[1])) : 0;
    let y1 = Math.max(...all.map((p) => p[1]));
    if (!isFinite(y1) || y1 <= 0) y1 = o.log ? 1000 : 1;
    if (!isFinite(y0) || y0 <= 0) y0 = o.log ? y1 / 100 : 0;
    if (o.log) { y0 = Math.pow(10, Math.floor(Math.log10(y0))); y1 = Math.pow(10, Math.ceil(Math.log10(y1 * 1.01))); }
    else y1 *= 1.08;
    const plotW = width - m.left - m.right, plotH = height - m.top - m.bottom;
    const sx = (x) => m.left + ((x - x0) / (x1 - x0)) * plotW;
    const sy = o.log
      ? (y) => m.top + plotH - ((Math.log10(y) - Math.log10(y0)) / (Math.log10(y1) - Math.log10(y0))) * plotH
      : (y) => m.top + plotH - ((y - y0) / (y1 - y0)) * plotH;
    const fmt = UNITS[o.unit] || formatCount;
    const yTicks = o.log ? logTicks(y0, y1) : linearTicks(y0, y1, 4);
    for (const t of yTicks) {
      const y = sy(t);
      el("line", { x1: m.left, x2: width - m.right, y1: y, y2: y, class: "grid" }, svg);
      el("text", { x: m.left - 6, y: y + 4, "text-anchor": "end", class: "tick" }, svg).textContent = fmt(t);
    }
    for (const t of linearTicks(x0, x1, 6)) {
      const x = sx(t);
      el("line", { x1: x, x2: x, y1: m.top + plotH, y2: m.top + plotH + 4, class: "axis" }, svg);
      el("text", { x, y: height - 8, "text-anchor": "middle", class: "tick" }, svg).textContent = (o.xFormat || formatSeconds)(t);
    }
    el("line", { x1: m.left, x2: width - m.right, y1: m.top + plotH, y2: m.top + plotH, class: "axis" }, svg);
    el("line", { x1: m.left, x2: m.left, y1: m.top, y2: m.top + plotH, class: "axis" }, svg);
    lines.forEach((pts, i) => {
      if (!pts.length) return;
      const line = o.lines[i];
      const d = pts.map((p, j) => (j ? "L" : "M") + sx(p[0]).toFixed(1) + "," + sy(p[1]).toFixed(1)).join("");
      el("path", {
        d, fill: "none", stroke: line.color, "stroke-width": line.width || 1.6,
        "stroke-dasharray": line.dashed ? "5 4" : "none", class: "line",
        "data-line": line.name, "data-points": String(pts.length),
      }, svg);
    });
  };

  global.VajraCharts = { LineChart, downsample, formatMicros, formatRate, formatCount, formatSeconds };
})(typeof window !== "undefined" ? window : globalThis);
