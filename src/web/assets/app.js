// Vajra's web UI: one page, four views (cluster, start a test, live test,
// results) and, on an orchestrator, the history pages (history.js), fed by
// one server-sent event stream of the node's frames
// (GET /api/v1/live). Every request carries the API token the user gave;
// it is kept in this tab's session storage only.
"use strict";

(function () {
  const C = window.VajraCharts;
  const R = window.VajraResult;
  const h = R.h;
  const TOKEN_KEY = "vajra.token";
  /** Most seconds kept in the browser; older ones are folded in pairs. */
  const MAX_POINTS = 7200;

  const state = {
    token: sessionStorage.getItem(TOKEN_KEY) || "",
    role: null,
    cluster: null,
    test: null,
    points: [],
    results: [],
    catalog: null,
    view: null,
    liveCharts: null,
    liveTestId: null,
  };

  // ---- API ---------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, body) {
      const e = (body && body.error) || {};
      super(e.message || "HTTP " + status);
      this.status = status;
      this.field = e.field || null;
    }
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (state.token) headers.Authorization = "Bearer " + state.token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch("/api/v1" + path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    const parsed = text ? JSON.parse(text) : null;
    if (!response.ok) throw new ApiError(response.status, parsed);
    return parsed;
  }

  /** Fetches `path` with the token and saves it as `filename`. */
  async function download(path, filename) {
    const response = await fetch("/api/v1" + path, { headers: { Authorization: "Bearer " + state.token } });
    if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
    const url = URL.createObjectURL(await response.blob());
    const a = h("a", { href: url, download: filename });
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  // ---- the event stream ---------------------------------------------------

  let streaming = false;

  async function stream() {
    if (streaming) return;
    streaming = true;
    while (state.role) {
      try {
        const response = await fetch("/api/v1/live", { headers: { Authorization: "Bearer " + state.token, Accept: "text/event-stream" } });
        if (response.status === 401) { logout("The token was refused."); break; }
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const event = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const data = event.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
            if (data) showFrame(data);
          }
        }
      } catch (e) {
        // The node went away or the network broke: try again shortly.
      }
      await new Promise((r) => setTimeout(r, 2000));
    }
    streaming = false;
  }

  /** A frame that cannot be shown is reported, never left to end the stream. */
  function showFrame(data) {
    try {
      onFrame(JSON.parse(data));
    } catch (e) {
      console.warn("a live frame could not be shown:", e);
    }
  }

  function onFrame(frame) {
    state.cluster = frame.cluster;
    state.results = frame.results || [];
    const test = frame.test;
    if (test) {
      if (frame.snapshot || !state.test || state.test.id !== test.id) state.points = test.points.slice();
      else {
        const last = state.points.length ? state.points[state.points.length - 1].second : -1;
        for (const p of test.points) if (p.second > last) state.points.push(p);
      }
      compact();
    }
    state.test = test;
    refresh();
  }

  /** Folds the oldest seconds in pairs once there are too many. */
  function compact() {
    if (state.points.length <= MAX_POINTS) return;
    const half = Math.floor(state.points.length / 2);
    const old = state.points.slice(0, half), folded = [];
    for (let i = 0; i < old.length; i += 2) {
      const a = old[i], b = old[i + 1] || old[i];
      const max = (x, y) => ({ p50: Math.max(x.p50, y.p50), p90: Math.max(x.p90, y.p90), p99: Math.max(x.p99, y.p99) });
      folded.push({ second: a.second, target: (a.target + b.target) / 2, achieved: (a.achieved + b.achieved) / 2,
        dispatched: a.dispatched + b.dispatched, dropped: a.dropped + b.dropped, missed: a.missed + b.missed,
        failure: a.failure + b.failure, latency: max(a.latency, b.latency), service: max(a.service, b.service) });
    }
    state.points = folded.concat(state.points.slice(half));
  }

  // ---- views --------------------------------------------------------------

  const views = { cluster: clusterView, start: startView, live: liveView, results: resultsView };

  function route() {
    const hash = location.hash.replace(/^#\/?/, "");
    const [path, query] = hash.split("?");
    const [name, ...rest] = path.split("/");
    document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.view === (name || "cluster")));
    const main = document.getElementById("view");
    state.liveCharts = null;
    state.view = null;
    if (!state.role) return loginView(main);
    if (name === "history") return historyView(main, rest, query);
    if (name === "results" && rest.length) {
      let id = rest.join("/");
      try { id = decodeURIComponent(id); } catch (e) { /* shown as typed */ }
      return resultView(main, id);
    }
    const view = views[name] || clusterView;
    state.view = view;
    view(main, true);
  }

  /** The history pages: #/history[?filter], #/history/run/ID,
   * #/history/compare/A/B, #/history/trend/NAME. */
  function historyView(main, rest, query) {
    const H = window.VajraHistory;
    const ctx = { api, download, query };
    const arg = (i) => { try { return decodeURIComponent(rest[i] || ""); } catch (e) { return rest[i] || ""; } };
    let drawn = null;
    if (rest[0] === "run" && rest[1]) drawn = H.run(main, arg(1), ctx);
    else if (rest[0] === "compare" && rest[2]) drawn = H.compare(main, arg(1), arg(2), ctx);
    else if (rest[0] === "trend" && rest[1]) drawn = H.trend(main, rest.slice(1).map((_, i) => arg(i + 1)).join("/"), ctx);
    else drawn = H.list(main, ctx);
    Promise.resolve(drawn).then((charts) => {
      if (!charts) return;
      const redraw = () => charts.forEach((c) => c.draw());
      window.addEventListener("resize", redraw);
    });
  }

  function refresh() {
    if (state.view === clusterView || state.view === liveView || state.view === resultsView) {
      state.view(document.getElementById("view"), false);
    }
  }

  function loginView(main) {
    const input = h("input", { type: "password", name: "token", id: "token", autocomplete: "off", size: "40" });
    const message = h("p", { class: "field-error", id: "login-error" });
    const form = h("form", { class: "login" },
      h("h2", {}, "Sign in"),
      h("p", { class: "muted" }, "Give an API token of this cluster (from the peer's --api-token-file)."),
      h("label", { class: "field" }, h("span", {}, "API token"), input), message,
      h("button", { class: "primary", type: "submit" }, "Sign in"));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      state.token = input.value.trim();
      try { await signIn(); } catch (err) { message.textContent = err.message; }
    });
    main.replaceChildren(form);
    input.focus();
  }

  async function signIn() {
    const me = await api("GET", "/me");
    state.role = me.role;
    sessionStorage.setItem(TOKEN_KEY, state.token);
    document.getElementById("who").textContent = me.role + (me.provider !== "none" ? " (" + me.provider + ")" : "");
    document.body.dataset.role = me.role;
    document.getElementById("nav-history").hidden = !me.history;
    state.catalog = await api("GET", "/catalog");
    stream();
    route();
  }

  function logout(why) {
    state.role = null;
    state.token = "";
    sessionStorage.removeItem(TOKEN_KEY);
    route();
    const error = document.getElementById("login-error");
    if (error) error.textContent = why;
  }

  function card(label, value, id) {
    return h("div", { class: "card" }, h("div", { class: "label" }, label), h("div", { class: "value", id: id || "" }, value));
  }

  function stateBadge(liveness) {
    return h("span", { class: "state state-" + liveness, "data-state": liveness }, liveness);
  }

  // Cluster: every peer, its state and share.
  function clusterView(main) {
    const c = state.cluster;
    if (!c) return main.replaceChildren(h("p", { class: "muted" }, "Waiting for the cluster's picture…"));
    const test = state.test;
    const shares = (test && test.shares) || {};
    const rows = c.members.map((m) => [
      m.id + (m.id === c.leader ? " ★" : ""),
      stateBadge(m.state),
      m.info.raft_role || "none",
      m.info.cpu_percent.toFixed(0) + " %",
      m.info.rss_mb ? m.info.rss_mb.toFixed(0) + " MiB" : "–",
      shares[m.id] !== undefined ? (shares[m.id] * 100).toFixed(1) + " %" : "–",
      // What a dead peer last gossiped is not what it does now.
      m.state === "dead" ? "–" : C.formatRate(m.info.target_rate),
      m.state === "dead" ? "–" : C.formatRate(m.info.achieved_rate),
      m.clock_offset_ms === null || m.clock_offset_ms === undefined ? "–" : m.clock_offset_ms.toFixed(1) + " ms",
      m.address,
    ]);
    const peers = R.table(["peer", "state", "raft", "cpu", "memory", "share", "target", "achieved", "clock offset", "address"], rows, "num peers");
    peers.id = "peers";
    main.replaceChildren(
      h("h2", {}, "Cluster " + c.cluster_id),
      h("div", { class: "cards" },
        card("answering node", c.node), card("leader", c.leader || "none"),
        card("peers alive", String(c.members.filter((m) => m.state === "alive").length) + " of " + c.members.length, "alive-count"),
        card("test", c.test ? c.test.id + " " + c.test.phase : "none", "test-phase"),
        card("clock skew", c.clock_skew_ms.toFixed(1) + " ms"), card("security", c.security)),
      peers);
  }

  // Start a test: the form, its rate curve previewed by the node itself.
  const PATTERN_FIELDS = {
    constant: ["tps", "duration"],
    ramp: ["tps", "duration", "ramp-up", "ramp-down"],
    step: ["steps"],
    spike: ["tps", "duration", "spike-tps", "spike-every", "spike-duration"],
    sine: ["tps", "duration", "amplitude", "period"],
    custom: ["points"],
  };
  const LABELS = {
    tps: "rate (per second)", duration: "duration (e.g. 30s, 5m)", "ramp-up": "ramp up", "ramp-down": "ramp down",
    steps: "steps RATE:DURATION,…", "spike-tps": "spike rate", "spike-every": "spike every", "spike-duration": "spike length",
    amplitude: "amplitude (per second)", period: "period", points: "points TIME:RATE,… (e.g. 0s:0,10s:100)",
  };
  const NUMERIC = new Set(["tps", "spike-tps", "amplitude", "warmup-tps", "max-in-flight"]);
  const DURATION = /^\d+(\.\d+)?(ms|s|m|h)$/;

  function field(name, label, input, wide) {
    input.name = name;
    input.id = "f-" + name;
    return h("label", { class: "field" + (wide ? " wide" : ""), "data-field": name },
      h("span", {}, label), input, h("span", { class: "field-error" }));
  }

  function startView(main, fresh) {
    if (!fresh) return;
    const cat = state.catalog || { tasks: ["http"], strategies: ["equal"], patterns: Object.keys(PATTERN_FIELDS) };
    const select = (options, value) => {
      const s = h("select", {}, options.map((o) => h("option", { value: o }, o)));
      s.value = value;
      return s;
    };
    const text = (value, type) => h("input", { type: type || "text", value: value || "" });
    const patternSelect = select(cat.patterns, "constant");
    const loadFields = h("fieldset", {}, h("legend", {}, "Load"));
    const inputs = {};
    for (const name of Object.keys(LABELS)) {
      inputs[name] = text({ tps: "100", duration: "30s" }[name] || "", NUMERIC.has(name) ? "number" : "text");
      if (NUMERIC.has(name)) inputs[name].setAttribute("step", "any");
    }
    const preview = h("div", { id: "preview" });
    const previewNote = h("p", { class: "muted", id: "preview-total" }, "");
    const taskSelect = select(cat.tasks, cat.tasks.includes("http") ? "http" : cat.tasks[0]);
    const url = text("", "url");
    const method = select(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"], "GET");
    const headers = h("textarea", { placeholder: "Name: value, one per line" });
    const body = h("textarea", {});
    const timeout = text("");
    const warmup = text("");
    const warmupTps = text("", "number");
    const thresholds = h("textarea", { placeholder: "p99<250ms\nerror_rate<1%" });
    const distribution = select(cat.strategies, "equal");
    const notice = h("div", { id: "start-notice" });
    const startButton = h("button", { class: "primary", type: "submit", id: "start-button" }, "Start the test");
    const form = h("form", { class: "start", novalidate: "" },
      h("fieldset", {}, h("legend", {}, "Task"),
        field("task", "task", taskSelect), field("url", "URL", url), field("method", "method", method),
        field("timeout", "timeout (e.g. 5s)", timeout),
        field("header", "headers", headers, true), field("body", "body", body, true)),
      loadFields,
      h("fieldset", {}, h("legend", {}, "Warmup, checks and distribution"),
        field("warmup", "warmup (e.g. 10s)", warmup), field("warmup-tps", "warmup rate", warmupTps),
        field("threshold", "thresholds, one per line", thresholds, true),
        field("distribution", "distribution", distribution)),
      h("div", { class: "wide" }, preview, previewNote, notice, startButton));
    const curveChart = new C.LineChart(preview, { title: "Rate curve preview", unit: "rate", height: 180,
      lines: [{ name: "target rate", color: "#2563eb" }] });

    function layoutLoad() {
      loadFields.replaceChildren(h("legend", {}, "Load"), field("pattern", "pattern", patternSelect));
      for (const name of PATTERN_FIELDS[patternSelect.value]) loadFields.appendChild(field(name, LABELS[name], inputs[name]));
    }

    function definition() {
      const t = { task: taskSelect.value, pattern: patternSelect.value };
      if (taskSelect.value === "http") {
        t.url = url.value.trim();
        t.method = method.value;
        const lines = headers.value.split("\n").map((l) => l.trim()).filter(Boolean);
        if (lines.length) t.header = lines;
        if (body.value) t.body = body.value;
      }
      if (timeout.value.trim()) t.timeout = timeout.value.trim();
      for (const name of PATTERN_FIELDS[patternSelect.value]) {
        const v = inputs[name].value.trim();
        if (v !== "") t[name] = NUMERIC.has(name) ? Number(v) : v;
      }
      if (warmup.value.trim()) t.warmup = warmup.value.trim();
      if (warmupTps.value.trim()) t["warmup-tps"] = Number(warmupTps.value);
      const th = thresholds.value.split("\n").map((l) => l.trim()).filter(Boolean);
      if (th.length) t.threshold = th;
      return { test: t, distribution: distribution.value };
    }

    function mark(name, message) {
      const f = form.querySelector(`[data-field="${name}"]`);
      if (!f) return false;
      f.classList.add("invalid");
      f.querySelector(".field-error").textContent = message;
      return true;
    }

    function clearMarks() {
      form.querySelectorAll(".invalid").forEach((f) => f.classList.remove("invalid"));
      form.querySelectorAll(".field-error").forEach((e) => (e.textContent = ""));
      notice.replaceChildren();
    }

    /** What the browser can tell is wrong without asking the node. */
    function localErrors(d) {
      const errors = [];
      const t = d.test;
      if (t.task === "http") {
        if (!t.url) errors.push(["url", "a URL is required"]);
        else if (!/^https?:\/\/[^\s/]+/.test(t.url)) errors.push(["url", "must start with http:// or https:// and name a host"]);
      }
      for (const name of PATTERN_FIELDS[t.pattern]) {
        const v = t[name];
        if (v === undefined || v === "") {
          if (name !== "ramp-up" && name !== "ramp-down") errors.push([name, "required by the " + t.pattern + " pattern"]);
        } else if (NUMERIC.has(name) && !(isFinite(v) && v >= 0)) errors.push([name, "must be a number of 0 or more"]);
        else if (!NUMERIC.has(name) && ["duration", "ramp-up", "ramp-down", "spike-every", "spike-duration", "period"].includes(name) && !DURATION.test(v)) {
          errors.push([name, "a duration such as 30s, 500ms or 5m"]);
        }
      }
      if (t.timeout && !DURATION.test(t.timeout)) errors.push(["timeout", "a duration such as 5s"]);
      if (t.warmup && !DURATION.test(t.warmup)) errors.push(["warmup", "a duration such as 10s"]);
      return errors;
    }

    let pending = null;
    async function validate() {
      clearMarks();
      const d = definition();
      const local = localErrors(d);
      if (local.length) {
        local.forEach(([n, m]) => mark(n, m));
        startButton.disabled = true;
        previewNote.textContent = "";
        return null;
      }
      try {
        const v = await api("POST", "/tests/validate", d);
        curveChart.update([v.curve.map((p) => [p.at, p.rate])]);
        previewNote.textContent = `${v.total_arrivals} arrivals over ${C.formatSeconds(v.duration_secs)}` +
          (v.warmup_secs ? ` (warmup ${C.formatSeconds(v.warmup_secs)})` : "");
        startButton.disabled = false;
        return d;
      } catch (e) {
        const name = e.field ? e.field.replace(/^test\./, "") : null;
        if (!name || !mark(name, e.message)) notice.replaceChildren(h("div", { class: "notice error" }, e.message));
        startButton.disabled = true;
        return null;
      }
    }
    const schedule = () => { clearTimeout(pending); pending = setTimeout(validate, 250); };
    form.addEventListener("input", schedule);
    form.addEventListener("change", schedule);
    patternSelect.addEventListener("change", () => { layoutLoad(); schedule(); });
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const d = await validate();
      if (!d) return;
      startButton.disabled = true;
      try {
        const answer = await api("POST", "/tests", d);
        notice.replaceChildren(h("div", { class: "notice" }, answer.message));
        location.hash = "#/live";
      } catch (err) {
        const name = err.field ? err.field.replace(/^test\./, "") : null;
        if (!name || !mark(name, err.message)) notice.replaceChildren(h("div", { class: "notice error" }, err.message));
        startButton.disabled = false;
      }
    });
    if (state.role !== "operator") startButton.disabled = true;
    layoutLoad();
    main.replaceChildren(h("h2", {}, "Start a test"), form);
    validate();
  }

  // Live test: target against achieved, percentiles, peers, events.
  function liveView(main, fresh) {
    const test = state.test;
    if (!test) {
      state.liveCharts = null;
      return main.replaceChildren(h("h2", {}, "Live test"), h("p", { class: "muted", id: "no-test" }, "No test is running. Start one from the form."));
    }
    if (fresh || !state.liveCharts || state.liveTestId !== test.id) buildLive(main, test);
    updateLive(test);
  }

  function buildLive(main, test) {
    const charts = h("div", { id: "live-charts" });
    const controls = h("div", { class: "row", id: "controls" });
    const rate = h("input", { type: "number", id: "new-rate", step: "any", min: "0", placeholder: "new rate/s" });
    const change = h("button", { id: "change-rate" }, "Change rate");
    const stop = h("button", { class: "danger", id: "stop-test" }, "Stop the test");
    const message = h("span", { class: "field-error", id: "control-message" });
    change.addEventListener("click", async () => {
      message.textContent = "";
      const tps = Number(rate.value);
      if (rate.value === "" || !(tps >= 0)) { message.textContent = "give a rate of 0 or more"; return; }
      try { await api("PATCH", "/tests/current", { tps }); message.textContent = ""; } catch (e) { message.textContent = e.message; }
    });
    stop.addEventListener("click", async () => {
      try { await api("POST", "/tests/current/stop"); } catch (e) { message.textContent = e.message; }
    });
    // A new pattern for the rest of the test: its kind and its fields.
    const kind = h("select", { id: "new-pattern" }, Object.keys(PATTERN_FIELDS).map((k) => h("option", { value: k }, k)));
    const patternFields = h("span", { class: "row", id: "new-pattern-fields" });
    const patternInputs = {};
    const layoutPattern = () => {
      patternFields.replaceChildren(...PATTERN_FIELDS[kind.value].map((name) => {
        patternInputs[name] = patternInputs[name] || h("input", { type: NUMERIC.has(name) ? "number" : "text", id: "p-" + name, step: "any", size: "10" });
        return h("label", { class: "field" }, h("span", {}, LABELS[name]), patternInputs[name]);
      }));
    };
    kind.addEventListener("change", layoutPattern);
    layoutPattern();
    const apply = h("button", { id: "apply-pattern" }, "Apply the pattern");
    apply.addEventListener("click", async () => {
      message.textContent = "";
      const pattern = { pattern: kind.value };
      for (const name of PATTERN_FIELDS[kind.value]) {
        const v = patternInputs[name].value.trim();
        if (v !== "") pattern[name] = NUMERIC.has(name) ? Number(v) : v;
      }
      try { await api("PATCH", "/tests/current", { pattern }); } catch (e) { message.textContent = (e.field ? e.field + ": " : "") + e.message; }
    });
    if (state.role === "operator") {
      controls.append(h("label", { class: "field" }, h("span", {}, "rate per second"), rate), change, stop, message,
        h("div", { class: "row wide" }, h("label", { class: "field" }, h("span", {}, "or a new pattern from now on"), kind), patternFields, apply));
    }
    main.replaceChildren(
      h("h2", {}, "Live test ", h("span", { id: "live-id" }, test.id)),
      h("div", { class: "cards", id: "live-cards" }), controls, charts,
      h("h3", {}, "Peers"), h("div", { id: "live-peers" }),
      h("h3", {}, "Errors by kind"), h("div", { id: "live-errors" }),
      h("h3", {}, "Events"), h("ul", { class: "events", id: "live-events" }));
    state.liveTestId = test.id;
    state.liveCharts = {
      rate: new C.LineChart(charts, { title: "Target and achieved rate", unit: "rate",
        lines: [{ name: "target", color: "#8a8f98", dashed: true }, { name: "achieved", color: "#2563eb" }] }),
      latency: new C.LineChart(charts, { title: "Latency from the intended start", unit: "micros", log: true,
        lines: [{ name: "p50", color: "#16a34a" }, { name: "p90", color: "#d97706" }, { name: "p99", color: "#dc2626" }] }),
      service: new C.LineChart(charts, { title: "Service time", unit: "micros", log: true,
        lines: [{ name: "p50", color: "#16a34a" }, { name: "p90", color: "#d97706" }, { name: "p99", color: "#dc2626" }] }),
      problems: new C.LineChart(charts, { title: "Errors, drops and misses per second", unit: "count",
        lines: [{ name: "failed", color: "#dc2626" }, { name: "dropped", color: "#7c3aed" }, { name: "missed", color: "#d97706" }] }),
    };
  }

  function updateLive(test) {
    const pts = state.points;
    const last = pts[pts.length - 1];
    const totals = test.totals;
    const over = !["DISTRIBUTING", "RUNNING", "CREATED"].includes(test.phase);
    document.getElementById("live-cards").replaceChildren(
      card("phase", test.phase, "live-phase"),
      card("elapsed", over
        ? "ran " + C.formatSeconds(last ? last.second + 1 : 0) + " of " + C.formatSeconds(test.duration_secs)
        : C.formatSeconds(Math.max(0, test.elapsed_secs)) + " of " + C.formatSeconds(test.duration_secs)),
      card("target now", C.formatRate(test.target_rate), "live-target"),
      card("achieved", last ? C.formatRate(last.achieved) : "–", "live-achieved"),
      card("p99 latency", last ? C.formatMicros(last.latency.p99) : "–"),
      card("completed", totals ? String(totals.completed) : "0", "live-completed"),
      card("errors", totals ? totals.failure + " (" + (totals.error_rate * 100).toFixed(2) + " %)" : "0"),
      card("dropped", totals ? String(totals.dropped) : "0"));
    const controls = document.getElementById("controls");
    controls.querySelectorAll("button, input, select").forEach((b) => (b.disabled = over));
    // The target line: the plan's whole curve, so the future shows too.
    const curve = test.curve.map((p) => [p.at, p.rate]);
    const x = (p) => p.second + 0.5;
    const charts = state.liveCharts;
    // Once over, the axis ends where the test did.
    const xMax = over && last ? last.second + 1 : Math.max(test.duration_secs, last ? last.second + 1 : 0);
    for (const chart of Object.values(charts)) { chart.options.xMin = 0; chart.options.xMax = xMax; }
    charts.rate.update([curve, pts.map((p) => [x(p), p.achieved])]);
    const has = pts.filter((p) => p.latency.p50 > 0);
    charts.latency.update([has.map((p) => [x(p), p.latency.p50]), has.map((p) => [x(p), p.latency.p90]), has.map((p) => [x(p), p.latency.p99])]);
    charts.service.update([has.map((p) => [x(p), p.service.p50]), has.map((p) => [x(p), p.service.p90]), has.map((p) => [x(p), p.service.p99])]);
    charts.problems.update([pts.map((p) => [x(p), p.failure]), pts.map((p) => [x(p), p.dropped]), pts.map((p) => [x(p), p.missed])]);
    const members = (state.cluster && state.cluster.members) || [];
    const peerFigures = Object.fromEntries(((totals && totals.peers) || []).map((p) => [p.id, p]));
    const rows = members.filter((m) => test.shares[m.id] !== undefined || peerFigures[m.id]).map((m) => [
      m.id, stateBadge(m.state),
      test.shares[m.id] !== undefined ? (test.shares[m.id] * 100).toFixed(1) + " %" : "–",
      m.state === "dead" ? "–" : C.formatRate(m.info.target_rate),
      m.state === "dead" ? "–" : C.formatRate(m.info.achieved_rate),
      peerFigures[m.id] ? String(peerFigures[m.id].completed) : "–",
      peerFigures[m.id] ? C.formatMicros(peerFigures[m.id].p99_us) : "–"]);
    const table = R.table(["peer", "state", "share", "target", "achieved", "completed", "p99"], rows, "num");
    table.id = "live-peer-table";
    document.getElementById("live-peers").replaceChildren(table);
    const errors = (totals && totals.errors) || [];
    document.getElementById("live-errors").replaceChildren(errors.length
      ? R.table(["kind", "count", "example"], errors.map((e) => [e.kind, String(e.count), e.example || ""]))
      : h("p", { class: "muted" }, "None."));
    document.getElementById("live-events").replaceChildren(...(test.events || []).map((e) => h("li", {}, e)));
    if (over && state.results.some((r) => r.id === test.id) && !document.getElementById("open-result")) {
      document.getElementById("controls").append(h("a", { class: "button", id: "open-result", href: "#/results/" + encodeURIComponent(test.id) }, "Open the result"));
    }
  }

  // Results: the finished tests this node holds.
  function resultsView(main) {
    const rows = state.results.map((r) => [
      h("a", { href: "#/results/" + encodeURIComponent(r.id), "data-result": r.id }, r.id), r.started_at, r.outcome,
      String(r.completed), String(r.failure), C.formatMicros(r.p99_us),
      h("span", { class: r.thresholds_passed ? "pass" : "fail" }, r.thresholds_passed ? "pass" : "FAIL")]);
    main.replaceChildren(h("h2", {}, "Results"), rows.length
      ? R.table(["test", "started", "outcome", "completed", "failed", "p99", "thresholds"], rows, "num")
      : h("p", { class: "muted" }, "No finished test yet."));
  }

  async function resultView(main, id) {
    main.replaceChildren(h("p", { class: "muted" }, "Loading the result of " + id + "…"));
    try {
      const report = await api("GET", "/tests/" + encodeURIComponent(id) + "/report.json");
      const base = "/tests/" + encodeURIComponent(id) + "/report.";
      R.render(main, report, {
        testId: id,
        downloads: ["json", "csv", "html"].map((f) => ({ label: f.toUpperCase(), href: "#", download: id + "." + f })),
      });
      main.querySelectorAll("a[data-format]").forEach((a) => a.addEventListener("click", (e) => {
        e.preventDefault();
        const format = a.dataset.format.toLowerCase();
        download(base + format, id + "." + format).catch((err) => alert(err.message));
      }));
    } catch (e) {
      main.replaceChildren(h("div", { class: "notice error" }, e.message));
    }
  }

  // ---- start ----------------------------------------------------------------

  window.addEventListener("hashchange", route);
  window.addEventListener("resize", () => state.liveCharts && Object.values(state.liveCharts).forEach((c) => c.draw()));
  const fromHash = location.hash.match(/token=([^&]+)/);
  if (fromHash) {
    state.token = decodeURIComponent(fromHash[1]);
    history.replaceState(null, "", location.pathname + "#/cluster");
  }
  // Ask whether a token is needed before sending none (a refused request
  // would be an error in the console of a page that did nothing wrong).
  api("GET", "/auth").then((auth) => {
    // A client certificate may sign in by itself; anything else needs a token.
    if (auth.required && !state.token && !auth.providers.includes("mtls")) { state.role = null; route(); return; }
    return signIn();
  }).catch(() => { state.role = null; route(); });
})();
