// The presage dashboard: a workloads table polled from /api/v1/workloads and, for the
// workload named in the URL hash (#/workload/<id>), CPU and memory charts drawn as SVG
// from /api/v1/workloads/<id>/history. No libraries, no build step. Every value from the
// API goes into the page through textContent or attributes, never as HTML.
"use strict";

const POLL_MS = 2000;
const SVG_NS = "http://www.w3.org/2000/svg";
const state = { sort: "risk", order: "desc", selected: null };

function $(id) { return document.getElementById(id); }

async function getJson(url) {
  const r = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) { throw new Error((body && body.error) || (url + ": HTTP " + r.status)); }
  return body;
}

function showError(e) {
  const p = $("error");
  if (e) { p.textContent = String(e.message || e); p.hidden = false; } else { p.hidden = true; }
}

// Numbers for people: cores with two decimals, bytes in binary units.
function fmtCores(v) { return v == null ? "–" : v.toFixed(2); }
function fmtBytes(v) {
  if (v == null) { return "–"; }
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return v.toFixed(i === 0 ? 0 : 1) + " " + units[i];
}
function fmtFrac(v) { return v == null ? "–" : (100 * v).toFixed(0) + "%"; }
function fmtNum(v, digits) { return v == null ? "–" : Number(v).toFixed(digits); }
function maxSlack(w) {
  const values = Object.values(w.slack || {});
  return values.length ? Math.max(...values) : null;
}

async function refreshStatus() {
  try {
    const s = await getJson("/api/v1/status");
    $("status-mode").textContent = s.mode;
    $("status-ticks").textContent = String(s.loop.ticks);
    $("status-duration").textContent = (1000 * s.loop.last_duration_s).toFixed(1) + " ms";
    $("status-overruns").textContent = String(s.loop.overruns);
    $("status-errors").textContent = String(s.loop.errors);
    $("status-workloads").textContent = String(s.workload_count);
  } catch (e) { showError(e); }
  try {
    const r = await fetch("/healthz");
    const h = await r.json().catch(() => ({}));
    $("status-health").textContent = h.status || ("HTTP " + r.status);
    $("status-health").title = h.error || "";
  } catch (e) { $("status-health").textContent = "unreachable"; }
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) { td.className = cls; }
  row.appendChild(td);
  return td;
}

function renderTable(list) {
  const body = document.querySelector("#workloads tbody");
  const rows = list.map((w) => {
    const tr = document.createElement("tr");
    tr.className = "workload" + (w.id === state.selected ? " selected" : "");
    tr.dataset.id = w.id;
    cell(tr, w.id, "id").title = w.id;
    cell(tr, w.policy_name);
    const lim = w.limits || {};
    cell(tr, fmtCores(w.usage.cpu) + " / " + fmtCores(lim.cpu_quota_cores), "num");
    cell(tr, fmtBytes(w.usage.memory) + " / " + fmtBytes(lim.memory_max_bytes), "num");
    cell(tr, fmtFrac(w.risk_max), "num" + (w.risk_max >= 0.5 ? " risk-high" : ""));
    cell(tr, fmtNum(w.behavior_score, 1), "num");
    cell(tr, fmtNum(w.anomaly_score, 2), "num");
    cell(tr, fmtFrac(maxSlack(w)), "num");
    cell(tr, w.model || "–");
    tr.addEventListener("click", () => { location.hash = "#/workload/" + encodeURIComponent(w.id); });
    return tr;
  });
  body.replaceChildren(...rows);
  document.querySelectorAll("#workloads th[data-sort]").forEach((th) => {
    th.classList.toggle("sorted", th.dataset.sort === state.sort);
    th.classList.toggle("asc", th.dataset.sort === state.sort && state.order === "asc");
    th.classList.toggle("desc", th.dataset.sort === state.sort && state.order === "desc");
  });
  document.body.dataset.ready = "1";
}

async function refreshTable() {
  try {
    const q = "sort=" + encodeURIComponent(state.sort) + "&order=" + encodeURIComponent(state.order);
    renderTable(await getJson("/api/v1/workloads?" + q));
    showError(null);
  } catch (e) { showError(e); }
}

function svg(tag, attrs, parent) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) { el.setAttribute(k, String(v)); }
  if (parent) { parent.appendChild(el); }
  return el;
}

// A polyline path through the points where `get` has a value; gaps break the line.
function linePath(points, get, x, y) {
  let d = "";
  let pen = false;
  for (const p of points) {
    const v = get(p);
    if (v == null) { pen = false; continue; }
    d += (pen ? "L" : "M") + x(p.t_ms).toFixed(1) + "," + y(v).toFixed(1);
    pen = true;
  }
  return d;
}

// The p50–p99 band: along p99 forward, back along p50, closed; one band per run of
// points that have both.
function bandPath(points, lo, hi, x, y) {
  let d = "";
  let run = [];
  const flush = () => {
    if (run.length > 0) {
      d += "M" + run.map((p) => x(p.t_ms).toFixed(1) + "," + y(hi(p)).toFixed(1)).join("L");
      d += "L" + run.slice().reverse().map((p) => x(p.t_ms).toFixed(1) + "," + y(lo(p)).toFixed(1)).join("L") + "Z";
    }
    run = [];
  };
  for (const p of points) {
    if (lo(p) == null || hi(p) == null) { flush(); } else { run.push(p); }
  }
  flush();
  return d;
}

function drawChart(containerId, hist, key, fmt) {
  const box = $(containerId);
  const W = 600, H = 220, L = 64, R = 8, T = 8, B = 22;
  const pts = hist.points;
  const get = (suffix) => (p) => p[key + suffix];
  const values = [];
  for (const p of pts) {
    for (const s of ["", "_limit", "_p50", "_p99"]) { if (p[key + s] != null) { values.push(p[key + s]); } }
  }
  // The axis spans what is known (at least a minute), not the whole window asked for: a
  // workload adopted a minute ago would otherwise be a sliver at the right edge.
  const first = pts.length ? pts[0].t_ms : hist.to_ms;
  const t1 = Math.max(hist.to_ms, (pts.length ? pts[pts.length - 1].t_ms : hist.to_ms));
  const t0 = Math.max(hist.from_ms, Math.min(first, t1 - 60000));
  const top = values.length ? Math.max(...values) * 1.1 || 1 : 1;
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => H - B - (v / top) * (H - T - B);
  const root = svg("svg", { viewBox: "0 0 " + W + " " + H, preserveAspectRatio: "none", role: "img" });
  svg("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }, root);
  svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }, root);
  svg("text", { x: L - 4, y: T + 10, "text-anchor": "end" }, root).textContent = fmt(top);
  svg("text", { x: L - 4, y: H - B, "text-anchor": "end" }, root).textContent = "0";
  svg("text", { x: L, y: H - 6 }, root).textContent = new Date(t0).toLocaleTimeString();
  svg("text", { x: W - R, y: H - 6, "text-anchor": "end" }, root).textContent = new Date(t1).toLocaleTimeString();
  svg("path", { class: "envelope", d: bandPath(pts, get("_p50"), get("_p99"), x, y) }, root);
  svg("path", { class: "limit", d: linePath(pts, get("_limit"), x, y) }, root);
  svg("path", { class: "usage", d: linePath(pts, get(""), x, y) }, root);
  for (const m of hist.markers) {
    if (m.t_ms < t0) { continue; }
    const line = svg("line", { class: "marker-" + m.kind, x1: x(m.t_ms), x2: x(m.t_ms), y1: T, y2: H - B }, root);
    svg("title", {}, line).textContent = m.kind + ": " + m.label + " — " + m.detail + " (" + new Date(m.t_ms).toLocaleString() + ")";
  }
  box.replaceChildren(root);
  box.dataset.chartPoints = String(pts.length);
}

async function refreshDetail() {
  const id = state.selected;
  if (id == null) { return; }
  try {
    const [w, hist] = await Promise.all([
      getJson("/api/v1/workloads/" + encodeURIComponent(id)),
      getJson("/api/v1/workloads/" + encodeURIComponent(id) + "/history"),
    ]);
    if (state.selected !== id) { return; }
    $("detail-info").textContent = "policy " + w.policy_name + " · model " + (w.model || "–") +
      " · behaviour " + fmtNum(w.behavior_score, 1) + " · anomaly " + fmtNum(w.anomaly_score, 2) +
      (w.override_limits ? " · override until " + new Date(w.override_limits.expires_at_ms).toLocaleString() : "");
    drawChart("chart-cpu", hist, "cpu", fmtCores);
    drawChart("chart-memory", hist, "memory", fmtBytes);
    showError(null);
  } catch (e) { showError(e); }
}

function route() {
  const m = /^#\/workload\/(.+)$/.exec(location.hash);
  let id = null;
  if (m) { try { id = decodeURIComponent(m[1]); } catch (e) { id = null; } }
  state.selected = id;
  $("detail").hidden = id == null;
  $("detail-id").textContent = id || "";
  document.querySelectorAll("tr.workload").forEach((tr) => tr.classList.toggle("selected", tr.dataset.id === id));
  if (id != null) {
    $("chart-cpu").replaceChildren();
    $("chart-memory").replaceChildren();
    refreshDetail();
  }
}

document.querySelectorAll("#workloads th[data-sort]").forEach((th) => {
  th.addEventListener("click", () => {
    const key = th.dataset.sort;
    if (state.sort === key) {
      state.order = state.order === "asc" ? "desc" : "asc";
    } else {
      state.sort = key;
      state.order = key === "id" ? "asc" : "desc";
    }
    refreshTable();
  });
});
$("detail-close").addEventListener("click", (e) => { e.preventDefault(); location.hash = ""; });
window.addEventListener("hashchange", route);

function tick() {
  refreshStatus();
  refreshTable();
  refreshDetail();
}
route();
tick();
setInterval(tick, POLL_MS);
