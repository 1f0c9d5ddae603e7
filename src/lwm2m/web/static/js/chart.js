// A small inline-SVG line chart of numeric values over time (no library, no CDN).

const NS = "http://www.w3.org/2000/svg";

export class Series {
  constructor(limit = 120) {
    this.limit = limit;
    this.points = [];
  }

  push(value, time = Date.now()) {
    if (typeof value !== "number" || !Number.isFinite(value)) return;
    this.points.push({ t: time, v: value });
    if (this.points.length > this.limit) this.points.shift();
  }
}

function el(name, attrs = {}) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

function fmt(v) {
  if (Math.abs(v) >= 1e5 || (Math.abs(v) < 1e-3 && v !== 0)) return v.toExponential(2);
  return String(Math.round(v * 1000) / 1000);
}

// Renders `series` into an <svg>; width/height in CSS pixels.
export function renderChart(series, { width = 320, height = 90, unit = "" } = {}) {
  const svg = el("svg", {
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    class: "chart",
    role: "img",
  });
  const pts = series.points;
  const padL = 44;
  const padR = 8;
  const padT = 8;
  const padB = 16;
  svg.appendChild(el("rect", { x: 0, y: 0, width, height, class: "chart-bg", rx: 6 }));
  if (pts.length === 0) {
    const t = el("text", { x: width / 2, y: height / 2, class: "chart-empty", "text-anchor": "middle" });
    t.textContent = "waiting for values";
    svg.appendChild(t);
    return svg;
  }
  let lo = Math.min(...pts.map((p) => p.v));
  let hi = Math.max(...pts.map((p) => p.v));
  if (lo === hi) {
    lo -= 1;
    hi += 1;
  }
  const t0 = pts[0].t;
  const t1 = Math.max(pts[pts.length - 1].t, t0 + 1);
  const x = (t) => padL + ((t - t0) / (t1 - t0)) * (width - padL - padR);
  const y = (v) => padT + (1 - (v - lo) / (hi - lo)) * (height - padT - padB);
  for (const v of [hi, (hi + lo) / 2, lo]) {
    svg.appendChild(el("line", { x1: padL, x2: width - padR, y1: y(v), y2: y(v), class: "chart-grid" }));
    const label = el("text", { x: padL - 6, y: y(v) + 3, class: "chart-label", "text-anchor": "end" });
    label.textContent = fmt(v);
    svg.appendChild(label);
  }
  const line = pts.length === 1
    ? `${padL},${y(pts[0].v)} ${width - padR},${y(pts[0].v)}`
    : pts.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ");
  svg.appendChild(el("polyline", { points: line, class: "chart-line" }));
  const last = pts[pts.length - 1];
  svg.appendChild(el("circle", { cx: pts.length === 1 ? width - padR : x(last.t), cy: y(last.v), r: 3, class: "chart-dot" }));
  const caption = el("text", { x: width - padR, y: height - 3, class: "chart-label", "text-anchor": "end" });
  const secs = Math.round((t1 - t0) / 1000);
  caption.textContent = `${pts.length} values · ${secs}s${unit ? " · " + unit : ""}`;
  svg.appendChild(caption);
  return svg;
}
