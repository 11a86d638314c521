// The live metrics page: polls /api/metrics?history=300 every second and
// draws small SVG line charts. Our own code, no library, no network beyond
// this server. Every string from the server goes in through textContent.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const W = 600, H = 120;

// Charts: [id, title, unit, [[series label, css class, sample -> number]]]
const BASE_CHARTS = [
  ["rps", "Requests per second", "req/s", [["requests", "s1", s => s.rps]]],
  ["errors", "Errors per second by class", "req/s", [
    ["4xx (client)", "s3", s => s.clientErrors],
    ["5xx (server)", "s4", s => s.serverErrors],
    ["shed (503/429)", "s2", s => s.shed]]],
  ["latency", "Latency percentiles (per second)", "ms", [
    ["p50", "s1", s => s.p50Ms], ["p95", "s2", s => s.p95Ms], ["p99", "s4", s => s.p99Ms]]],
  ["active", "Requests in flight", "", [["in flight", "s1", s => s.active]]],
  ["cpu", "Process CPU", "% of one core", [["cpu", "s1", s => s.cpuPercent]]],
];

function el(name, attrs = {}, text) {
  const e = name.startsWith("svg:") ? document.createElementNS(SVG, name.slice(4)) : document.createElement(name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function fmt(v, digits = 1) {
  if (v === undefined || v === null || Number.isNaN(v)) return "–";
  if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString("en");
  return v.toFixed(digits);
}

const charts = new Map();

function chart(id, title, unit, series) {
  if (charts.has(id)) return charts.get(id);
  const fig = el("figure", { class: "chart", "data-chart": id });
  fig.append(el("figcaption", {}, title + (unit ? " (" + unit + ")" : "")));
  const svg = el("svg:svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img", "aria-label": title });
  const lines = series.map(([label, cls]) => {
    const p = el("svg:polyline", { class: cls, "data-series": label, "data-points": "0", points: "" });
    svg.append(p);
    return p;
  });
  const legend = el("div", { class: "legend" });
  const values = series.map(([label, cls]) => {
    const item = el("span", { class: "key " + cls });
    item.append(el("span", { class: "name" }, label + " "));
    const v = el("b", { class: "last" }, "–");
    item.append(v);
    legend.append(item);
    return v;
  });
  const max = el("span", { class: "max" }, "");
  fig.append(svg, legend, max);
  document.getElementById("charts").append(fig);
  const c = { lines, values, max, series };
  charts.set(id, c);
  return c;
}

function draw(c, history) {
  const n = history.length;
  const data = c.series.map(([, , get]) => history.map(s => Number(get(s)) || 0));
  const top = Math.max(1e-9, ...data.flat());
  c.max.textContent = "max " + fmt(top, 2);
  data.forEach((ys, i) => {
    const pts = ys.map((y, j) => {
      const x = n <= 1 ? W : (j / (n - 1)) * W;
      return x.toFixed(1) + "," + (H - 4 - (y / top) * (H - 8)).toFixed(1);
    });
    c.lines[i].setAttribute("points", pts.join(" "));
    c.lines[i].setAttribute("data-points", String(pts.length));
    c.values[i].textContent = fmt(ys[ys.length - 1], 2);
  });
}

function render(m) {
  document.getElementById("stage").textContent = m.stage;
  document.querySelectorAll("#window, .window").forEach(e => (e.textContent = fmt(m.windowSecs, 0)));
  document.getElementById("t-rps").textContent = fmt(m.rps);
  document.getElementById("t-err").textContent = fmt(m.errorRate * 100, 2) + " %";
  document.getElementById("t-lat").textContent = [m.p50Ms, m.p95Ms, m.p99Ms].map(v => fmt(v, 2)).join(" / ");
  document.getElementById("t-active").textContent = String(m.activeRequests);
  const last = m.history.length ? m.history[m.history.length - 1] : null;
  document.getElementById("t-proc").textContent =
    (last ? fmt(last.cpuPercent, 0) + " %" : "–") + " / " + fmt(m.processRssBytes / 1048576, 0) + " MiB";

  for (const [id, title, unit, series] of BASE_CHARTS) draw(chart(id, title, unit, series), m.history);
  // Saturation panels: the hash queue, then whatever the stage reports.
  const sat = [["hash.inFlight", "Password hashes running or queued", false]]
    .concat(m.figures.map(f => [f.key, f.title, f.counter]));
  for (const [key, title, counter] of sat) {
    const c = chart("fig-" + key, title, counter ? "per second" : "", [[key, "s2", s => s.figures[key]]]);
    draw(c, m.history);
  }

  const body = document.getElementById("routes");
  body.replaceChildren(...m.routes.map(r => {
    const tr = el("tr");
    for (const v of [r.method, r.route, fmt(r.rps), r.clientErrors, r.serverErrors, r.shed,
                     fmt(r.p50Ms, 2), fmt(r.p95Ms, 2), fmt(r.p99Ms, 2),
                     fmt(r.pgTrips, 1) + " / " + fmt(r.redisTrips, 1)]) {
      tr.append(el("td", {}, String(v)));
    }
    return tr;
  }));
}

async function poll() {
  const status = document.getElementById("status");
  try {
    const res = await fetch("/api/metrics?history=300", { cache: "no-store" });
    if (!res.ok) throw new Error("HTTP " + res.status);
    render(await res.json());
    status.textContent = "live · updated " + new Date().toLocaleTimeString();
    status.className = "muted";
  } catch (e) {
    status.textContent = "cannot reach the server (" + e.message + "), retrying";
    status.className = "error";
  }
}

poll();
setInterval(poll, 1000);
