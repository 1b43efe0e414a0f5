// Kiln's dashboard: the project (GET /v1/metadata), live charts computed
// from two scrapes of GET /metrics at a time, and an entity lookup
// (POST /v1/features). Everything it calls is on the listener that served
// it; it keeps nothing but a token, in this tab's session storage.
"use strict";

const POLL_MS = 1000; // how often /metrics is scraped
const KEEP_MS = 5 * 60 * 1000; // how much history the charts keep
const FETCH_TIMEOUT_MS = 5000;
const TOKEN_KEY = "kiln.token";

// The routes and methods that read features, whose requests the read
// charts count and time.
const READ_ROUTES = new Set(["/v1/features", "/get-online-features"]);
const PUSH_ROUTES = new Set(["/v1/push", "/push"]);
const GRPC_READ = { service: "kiln.v1.FeatureService", method: "GetFeatures" };

// ---- Talking to the listener -------------------------------------------

// api fetches path from this listener with the token, if one is kept. A
// 401 or 403 asks for a token and throws; other answers are returned.
async function api(path, init = {}) {
  const headers = new Headers(init.headers || {});
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.set("Authorization", "Bearer " + token);
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
  let res;
  try {
    res = await fetch(path, { ...init, headers, signal: ctl.signal, cache: "no-store" });
  } catch (e) {
    throw new Error(`${path}: ${e.name === "AbortError" ? "no answer within " + FETCH_TIMEOUT_MS / 1000 + " s" : e.message}`);
  } finally {
    clearTimeout(timer);
  }
  if (res.status === 401 || res.status === 403) {
    const msg = await errorOf(res);
    askToken(msg);
    throw new Error(`${path}: ${msg}`);
  }
  return res;
}

// errorOf is the message of an error answer: Kiln's {"error": ...}, or the
// status.
async function errorOf(res) {
  const text = await res.text();
  try {
    const body = JSON.parse(text);
    if (body && typeof body.error === "string") {
      const details = (body.details || []).map((d) => d.message).filter(Boolean);
      return details.length ? `${body.error} (${details.join("; ")})` : body.error;
    }
  } catch (_) { /* not JSON */ }
  return `${res.status} ${res.statusText}`;
}

function askToken(message) {
  const form = document.getElementById("token-form");
  document.getElementById("token-why").textContent =
    (sessionStorage.getItem(TOKEN_KEY) ? "The token was refused: " : "This listener asks for a bearer token with the read scope: ") + message;
  form.hidden = false;
}

function setupToken() {
  const form = document.getElementById("token-form");
  const forget = document.getElementById("token-forget");
  forget.hidden = !sessionStorage.getItem(TOKEN_KEY);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = document.getElementById("token-input");
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    input.value = "";
    form.hidden = true;
    forget.hidden = false;
    if (!project) loadProject();
  });
  forget.addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    forget.hidden = true;
  });
}

// ---- Prometheus text format --------------------------------------------

// parseMetrics reads the text exposition format into a map from metric
// name to its samples, each {labels, value}.
function parseMetrics(text) {
  const out = new Map();
  for (const line of text.split("\n")) {
    if (line === "" || line[0] === "#") continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?\s*$/.exec(line);
    if (!m) continue;
    const labels = {};
    if (m[2]) {
      const re = /\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?/y;
      let l;
      while ((l = re.exec(m[2])) !== null) {
        labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
      }
    }
    let list = out.get(m[1]);
    if (!list) out.set(m[1], (list = []));
    list.push({ labels, value: parseValue(m[3]) });
  }
  return out;
}

function parseValue(s) {
  if (s === "+Inf") return Infinity;
  if (s === "-Inf") return -Infinity;
  return Number(s);
}

function sum(metrics, name, keep = () => true) {
  let total = 0;
  for (const s of metrics.get(name) || []) if (keep(s.labels)) total += s.value;
  return total;
}

const isRead = (l) => READ_ROUTES.has(l.route) || (l.service === GRPC_READ.service && l.method === GRPC_READ.method);

// snapshot is what the charts need of one scrape: counters (compared with
// the previous scrape's) and gauges.
function snapshot(m, t) {
  const buckets = new Map(); // le -> cumulative count, over every read route
  for (const name of ["kiln_http_request_duration_seconds_bucket", "kiln_grpc_request_duration_seconds_bucket"]) {
    for (const s of m.get(name) || []) {
      if (!isRead(s.labels)) continue;
      const le = parseValue(s.labels.le);
      buckets.set(le, (buckets.get(le) || 0) + s.value);
    }
  }
  const streams = new Set((m.get("kiln_stream_messages_total") || []).map((s) => s.labels.source));
  return {
    t,
    counters: {
      accepted: sum(m, "kiln_ingest_events_total", (l) => l.outcome === "accepted"),
      late: sum(m, "kiln_ingest_events_total", (l) => l.outcome === "late"),
      // Pushes refused whole (a 4xx: nothing of them applied) and stream
      // messages sent to the dead letters.
      rejected:
        sum(m, "kiln_http_requests_total", (l) => PUSH_ROUTES.has(l.route) && l.code[0] === "4") +
        sum(m, "kiln_stream_dead_letters_total"),
      reads: sum(m, "kiln_http_requests_total", isRead) + sum(m, "kiln_grpc_requests_total", isRead),
      refused: sum(m, "kiln_read_refused_total"),
      values: sum(m, "kiln_read_values_served_total"),
      freshSum: sum(m, "kiln_stream_freshness_seconds_sum"),
      freshCount: sum(m, "kiln_stream_freshness_seconds_count"),
    },
    buckets,
    lag: sum(m, "kiln_stream_lag_messages"),
    hasLag: (m.get("kiln_stream_lag_messages") || []).length > 0,
    streams: streams.size,
  };
}

// quantile estimates the q-quantile of the observations counted by
// buckets (le -> count, not cumulative-sorted) as Prometheus's
// histogram_quantile does: linearly within the bucket the rank falls in.
// It is null without observations.
function quantile(q, buckets) {
  const les = [...buckets.keys()].sort((a, b) => a - b);
  if (les.length === 0) return null;
  const total = buckets.get(les[les.length - 1]);
  if (!(total > 0)) return null;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const le of les) {
    const count = buckets.get(le);
    if (count >= rank) {
      if (le === Infinity) return prevLe; // beyond the last bound
      if (count === prevCount) return le;
      return prevLe + ((le - prevLe) * (rank - prevCount)) / (count - prevCount);
    }
    prevLe = le;
    prevCount = count;
  }
  return prevLe;
}

// ---- Charts ---------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";
const W = 480, H = 150, PAD_L = 46, PAD_R = 8, PAD_T = 8, PAD_B = 18;

// A Chart draws series over the last KEEP_MS as hand-written SVG. Its
// figure carries data-points (the samples kept) and, per series,
// data-total-<key> (the sum of the counter increases behind the series'
// rates, when it has one), data-last-<key> and data-peak-<key> (its last
// and largest values), which the tests read.
class Chart {
  constructor(id, title, unit, series, format) {
    this.el = document.getElementById(id);
    this.unit = unit;
    this.series = series; // [{key, name, color}]
    this.format = format;
    this.points = []; // {t, v: {key: number|null}, d: {key: increase}}
    this.totals = {};
    this.emptyText = "waiting for a second scrape…";
    const caption = el("figcaption", {}, title, el("span", { class: "note" }, unit));
    this.svg = document.createElementNS(SVG, "svg");
    this.svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    this.svg.setAttribute("role", "img");
    this.svg.setAttribute("aria-label", title);
    this.legend = el("div", { class: "legend" });
    this.el.replaceChildren(caption, this.svg, this.legend);
    this.render();
  }

  add(t, values, increases = {}) {
    this.points.push({ t, v: values, d: increases });
    for (const [k, d] of Object.entries(increases)) this.totals[k] = (this.totals[k] || 0) + d;
    while (this.points.length && this.points[0].t < t - KEEP_MS) {
      const old = this.points.shift();
      for (const [k, d] of Object.entries(old.d)) this.totals[k] -= d;
    }
    this.render();
  }

  // empty shows text in place of the lines (and keeps no samples).
  empty(text) {
    this.emptyText = text;
    this.points = [];
    this.totals = {};
    this.render();
  }

  render() {
    const now = this.points.length ? this.points[this.points.length - 1].t : Date.now();
    let max = 0;
    for (const p of this.points) for (const s of this.series) if (p.v[s.key] != null) max = Math.max(max, p.v[s.key]);
    const top = niceCeil(max);
    const x = (t) => PAD_L + ((W - PAD_L - PAD_R) * (t - (now - KEEP_MS))) / KEEP_MS;
    const y = (v) => PAD_T + (H - PAD_T - PAD_B) * (1 - v / top);
    const kids = [];
    for (const frac of [0, 0.5, 1]) {
      const yy = y(top * frac);
      kids.push(svg("line", { class: "grid", x1: PAD_L, x2: W - PAD_R, y1: yy, y2: yy }));
      kids.push(svg("text", { class: "axis", x: PAD_L - 4, y: yy + 3, "text-anchor": "end" }, this.format(top * frac)));
    }
    kids.push(svg("text", { class: "axis", x: PAD_L, y: H - 4 }, `−${KEEP_MS / 60000} min`));
    kids.push(svg("text", { class: "axis", x: W - PAD_R, y: H - 4, "text-anchor": "end" }, "now"));
    if (this.points.length === 0) {
      kids.push(svg("text", { class: "empty", x: (W + PAD_L) / 2, y: H / 2, "text-anchor": "middle" }, this.emptyText));
    }
    const legend = [];
    for (const s of this.series) {
      let d = "";
      let pen = false;
      for (const p of this.points) {
        const v = p.v[s.key];
        if (v == null || !isFinite(v)) { pen = false; continue; }
        d += `${pen ? "L" : "M"}${x(p.t).toFixed(1)},${y(v).toFixed(1)}`;
        pen = true;
      }
      // A lone point of a series still shows.
      if (d !== "" && !d.includes("L")) d += "h0.01";
      kids.push(svg("path", { class: "series", d, stroke: s.color, "data-series": s.key }));
      const last = this.points.length ? this.points[this.points.length - 1].v[s.key] : null;
      const swatch = el("span", { class: "swatch" });
      swatch.style.background = s.color;
      legend.push(el("span", {}, swatch, s.name + " ", el("span", { class: "value" }, last == null ? "–" : this.format(last))));
      this.el.dataset["last" + cap(s.key)] = last == null ? "" : String(last);
    }
    for (const s of this.series) {
      let peak = null;
      for (const p of this.points) if (p.v[s.key] != null && (peak == null || p.v[s.key] > peak)) peak = p.v[s.key];
      this.el.dataset["peak" + cap(s.key)] = peak == null ? "" : String(peak);
    }
    for (const [k, v] of Object.entries(this.totals)) this.el.dataset["total" + cap(k)] = String(v);
    this.el.dataset.points = String(this.points.length);
    this.svg.replaceChildren(...kids);
    this.legend.replaceChildren(...legend);
  }
}

function niceCeil(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function cap(s) { return s[0].toUpperCase() + s.slice(1); }

function formatNumber(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e6) return (v / 1e6).toFixed(a >= 1e7 ? 0 : 1) + "M";
  if (a >= 1e4) return (v / 1e3).toFixed(a >= 1e5 ? 0 : 1) + "k";
  if (a >= 100) return v.toFixed(0);
  // Three significant digits at most, without trailing zeros: 1.25, 12.5, 0.05.
  return String(Number(v.toPrecision(a >= 1 ? 3 : 2)));
}

function formatMs(seconds) { return formatNumber(seconds * 1000) + " ms"; }
function formatSeconds(s) { return formatNumber(s) + " s"; }

// ---- DOM helpers -------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) if (c != null) e.append(c);
  return e;
}

function svg(tag, attrs = {}, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text != null) e.textContent = text;
  return e;
}

function table(head, rows, numeric = []) {
  return el("table", {},
    el("thead", {}, el("tr", {}, ...head.map((h, i) => el("th", numeric.includes(i) ? { class: "num" } : {}, h)))),
    el("tbody", {}, ...rows.map((r) => el("tr", {}, ...r.map((c, i) => el("td", numeric.includes(i) ? { class: "num" } : {}, c))))));
}

// ---- Live charts -------------------------------------------------------

const charts = {};
let previous = null; // the last scrape's snapshot

function setupCharts() {
  charts.ingest = new Chart("chart-ingest", "Ingest", "events/s", [
    { key: "accepted", name: "accepted", color: "#15803d" },
    { key: "late", name: "late", color: "#d97706" },
    { key: "rejected", name: "rejected", color: "#b91c1c" },
  ], formatNumber);
  charts.freshness = new Chart("chart-freshness", "Freshness", "mean, broker to readable", [
    { key: "freshness", name: "mean", color: "#7c3aed" },
  ], formatSeconds);
  charts.lag = new Chart("chart-lag", "Consumer lag", "messages behind the broker", [
    { key: "lag", name: "lag", color: "#0e7490" },
  ], formatNumber);
  charts.reads = new Chart("chart-reads", "Reads", "requests/s", [
    { key: "reads", name: "answered", color: "#2563eb" },
    { key: "refused", name: "refused (at capacity)", color: "#b91c1c" },
  ], formatNumber);
  charts.latency = new Chart("chart-latency", "Read latency", "HTTP and gRPC feature reads", [
    { key: "p50", name: "p50", color: "#2563eb" },
    { key: "p99", name: "p99", color: "#c2410c" },
  ], formatMs);
}

// observe turns two scrapes into a point of each chart: rates from the
// counters' increases, percentiles from the histograms' bucket increases.
function observe(prev, cur) {
  const dt = (cur.t - prev.t) / 1000;
  const inc = {};
  for (const [k, v] of Object.entries(cur.counters)) inc[k] = v - prev.counters[k];
  if (dt <= 0 || Object.values(inc).some((d) => d < 0)) return; // the process restarted
  const rate = (k) => inc[k] / dt;
  charts.ingest.add(cur.t,
    { accepted: rate("accepted"), late: rate("late"), rejected: rate("rejected") },
    { accepted: inc.accepted, late: inc.late, rejected: inc.rejected });
  charts.reads.add(cur.t, { reads: rate("reads"), refused: rate("refused") }, { reads: inc.reads, refused: inc.refused });
  const window = new Map();
  for (const [le, c] of cur.buckets) window.set(le, c - (prev.buckets.get(le) || 0));
  charts.latency.add(cur.t, { p50: quantile(0.5, window), p99: quantile(0.99, window) });
  if (cur.streams === 0) {
    const why = "no streaming source: a push is readable once answered";
    if (charts.freshness.emptyText !== why) { charts.freshness.empty(why); charts.lag.empty(why); }
  } else {
    charts.freshness.add(cur.t, { freshness: inc.freshCount > 0 ? inc.freshSum / inc.freshCount : null });
    charts.lag.add(cur.t, { lag: cur.hasLag ? cur.lag : null });
  }
  document.getElementById("live-note").textContent =
    `${formatNumber(rate("values"))} feature values served/s · scraped every ${POLL_MS / 1000} s, the last ${KEEP_MS / 60000} min kept in this page`;
}

async function scrape() {
  const status = document.getElementById("status");
  try {
    const res = await api("/metrics");
    if (!res.ok) throw new Error("/metrics: " + (await errorOf(res)));
    const cur = snapshot(parseMetrics(await res.text()), Date.now());
    if (previous) observe(previous, cur);
    previous = cur;
    status.textContent = "metrics at " + new Date(cur.t).toLocaleTimeString();
    status.classList.remove("error");
  } catch (e) {
    status.textContent = e.message;
    status.classList.add("error");
    previous = null; // a gap, not a rate over it
  }
  setTimeout(scrape, POLL_MS);
}

// ---- Project -----------------------------------------------------------

let project = null;

async function loadProject() {
  const body = document.getElementById("project-body");
  try {
    const res = await api("/v1/metadata");
    if (!res.ok) throw new Error("/v1/metadata: " + (await errorOf(res)));
    project = await res.json();
    // An empty list may come as null (a project without services).
    for (const k of ["entities", "sources", "views", "services"]) project[k] = project[k] || [];
  } catch (e) {
    body.replaceChildren(el("p", { class: "error" }, e.message));
    return;
  }
  document.getElementById("project-name").textContent = project.project;
  document.title = `Kiln · ${project.project}`;
  renderProject(body, project);
  setupLookup(project);
}

function renderProject(body, p) {
  const fields = (fs) => fs.map((f) => `${f.name} ${f.type || "(unused)"}`).join(", ");
  const kids = [
    el("h3", {}, "Entities"),
    table(["entity", "key"], p.entities.map((e) => [e.name, fields(e.keys)])),
    el("h3", {}, "Sources"),
    table(["source", "type", "event time", "fields"], p.sources.map((s) => [s.name, s.type, s.event_time, fields(s.fields)])),
    el("h3", {}, "Views"),
  ];
  for (const v of p.views) {
    const plan = v.plan;
    kids.push(el("details", { class: "view", "data-view": v.name },
      el("summary", {}, el("strong", {}, v.name), ` — entity ${v.entity}, source ${v.source}, ${v.served.length} values served`),
      table(["feature", "aggregation", "where", "windows"], v.features.map((f) => [
        f.name,
        f.field ? `${f.agg}(${f.field})` : f.agg,
        (f.where || []).map((w) => `${w.field} in ${JSON.stringify(w.values)}`).join(" and "),
        f.windows.length ? f.windows.join(", ") : "all time",
      ])),
      el("div", { class: "note" }, "Tile plan"),
      table(["window", "tile", "tiles read", "covers", "max deviation", "features"], plan.levels.map((l) => [
        l.window || "all time",
        l.tile_size || "—",
        String(l.tiles_read),
        l.covers_min === l.covers_max ? l.covers_min : `${l.covers_min} – ${l.covers_max}`,
        (l.max_deviation * 100).toFixed(1) + "%",
        l.features.join(", "),
      ]), [2, 4]),
      el("div", { class: "note" }, `A row holds ${plan.row_bytes_empty}–${plan.row_bytes_full} bytes; ` +
        (plan.late_horizon ? `events older than ${plan.late_horizon} are late.` : "all-time features keep every event."))));
  }
  kids.push(el("h3", {}, "Services"),
    table(["service", "entities", "features"], p.services.map((s) => [s.name, s.entities.join(", "), s.features.join(", ")])));
  body.replaceChildren(...kids);
}

// ---- Entity lookup -----------------------------------------------------

// targets are what the lookup can read, by the select's value: a service
// (its features, its entities) or a view (every value it serves, its one
// entity).
const targets = new Map();

function setupLookup(p) {
  const select = document.getElementById("lookup-target");
  const groups = [];
  if (p.services.length) {
    groups.push(el("optgroup", { label: "Services" }, ...p.services.map((s) => {
      targets.set("service:" + s.name, { service: s.name, entities: s.entities });
      return el("option", { value: "service:" + s.name }, s.name);
    })));
  }
  groups.push(el("optgroup", { label: "Views" }, ...p.views.map((v) => {
    targets.set("view:" + v.name, { features: v.served.map((s) => s.name), entities: [v.entity] });
    return el("option", { value: "view:" + v.name }, v.name);
  })));
  select.replaceChildren(...groups);
  select.addEventListener("change", () => renderKeyInputs(p));
  renderKeyInputs(p);
  document.getElementById("lookup-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    lookup();
  });
}

function renderKeyInputs(p) {
  const target = targets.get(document.getElementById("lookup-target").value);
  const inputs = [];
  for (const name of target.entities) {
    const entity = p.entities.find((e) => e.name === name);
    for (const k of entity.keys) {
      const input = el("input", { name: `${name}.${k.name}`, "data-entity": name, "data-key": k.name, "data-type": k.type, required: "", size: "12" });
      if (k.type === "int64") input.setAttribute("inputmode", "numeric");
      inputs.push(el("label", {}, `${name}.${k.name} (${k.type || "any"})`, input));
    }
  }
  document.getElementById("lookup-keys").replaceChildren(...inputs);
}

// keyJSON is the JSON of one key field's typed text, or throws saying what
// to type.
function keyJSON(input) {
  const text = input.value.trim();
  const what = `${input.dataset.entity}.${input.dataset.key}`;
  switch (input.dataset.type) {
    case "int64":
      if (!/^-?\d+$/.test(text)) throw new Error(`${what} is an int64: type a whole number`);
      return text; // as typed: a JSON number keeps all 64 bits
    case "float64":
      if (text === "" || !isFinite(Number(text))) throw new Error(`${what} is a float64: type a number`);
      return String(Number(text));
    case "bool":
      if (text !== "true" && text !== "false") throw new Error(`${what} is a bool: type true or false`);
      return text;
    default:
      return JSON.stringify(text);
  }
}

async function lookup() {
  const out = document.getElementById("lookup-result");
  const button = document.getElementById("lookup-read");
  const target = targets.get(document.getElementById("lookup-target").value);
  let body;
  try {
    const keys = {};
    for (const input of document.querySelectorAll("#lookup-keys input")) {
      const e = input.dataset.entity;
      (keys[e] = keys[e] || []).push(`${JSON.stringify(input.dataset.key)}:${keyJSON(input)}`);
    }
    const entities = Object.entries(keys).map(([e, fs]) => `${JSON.stringify(e)}:[{${fs.join(",")}}]`).join(",");
    const what = target.service ? `"service":${JSON.stringify(target.service)}` : `"features":${JSON.stringify(target.features)}`;
    body = `{${what},"entities":{${entities}}}`;
  } catch (e) {
    out.replaceChildren(el("p", { class: "error" }, e.message));
    return;
  }
  button.disabled = true;
  try {
    const res = await api("/v1/features", { method: "POST", headers: { "Content-Type": "application/json" }, body });
    if (!res.ok) throw new Error(await errorOf(res));
    renderResult(out, await res.json());
  } catch (e) {
    out.replaceChildren(el("p", { class: "error" }, e.message));
  } finally {
    button.disabled = false;
  }
}

function renderResult(out, answer) {
  const kids = [];
  for (const [entity, rows] of Object.entries(answer.entities)) {
    for (const row of rows) {
      const key = Object.entries(row.key).map(([k, v]) => `${k} ${JSON.stringify(v)}`).join(", ");
      const trs = Object.entries(row.features).map(([name, v]) =>
        el("tr", { "data-feature": name },
          el("td", { class: "mono" }, name),
          el("td", { class: v == null ? "num null value" : "num value" }, v == null ? "null" : String(v))));
      kids.push(el("div", { class: "entity", "data-entity": entity, "data-status": row.status },
        el("div", {},
          el("strong", {}, `${entity} ${key}`), " · ",
          el("span", { class: "status" }, row.status), " · newest event ",
          el("span", { class: "event-time mono" }, row.event_time == null ? "none" : row.event_time)),
        el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "feature"), el("th", { class: "num" }, "value"))), el("tbody", {}, ...trs))));
    }
  }
  out.replaceChildren(...kids);
}

// ---- Start -------------------------------------------------------------

setupToken();
setupCharts();
loadProject();
scrape();
