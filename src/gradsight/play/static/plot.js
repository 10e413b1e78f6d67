// Small hand-drawn plots on <canvas>: scales, axes with ticks, and lines. No library: what a
// plot needs here is a few dozen lines, and a learner can read all of them.

export const PALETTE = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2",
  "#db2777", "#65a30d", "#4b5563", "#9333ea"];
const INK = "#1f2937";
const GRID = "#e5e7eb";
const FONT = "11px system-ui, sans-serif";
export const MARGIN = { left: 52, right: 12, top: 10, bottom: 30 };

// Size the canvas's pixels to its CSS box (sharp on high-DPI screens); return the context,
// drawing in CSS pixels, with the box's width and height.
export function prepare(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || Number(canvas.getAttribute("width")) || 300;
  const height = canvas.clientHeight || Number(canvas.getAttribute("height")) || 150;
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  return { ctx, width, height };
}

// A map from data [d0, d1] to pixels [p0, p1]; `log` maps log10 of the data instead.
export function scale(d0, d1, p0, p1, log = false) {
  const f = log ? Math.log10 : (v) => v;
  const [a, b] = [f(d0), f(d1)];
  const span = b - a || 1;
  const map = (v) => p0 + ((f(v) - a) / span) * (p1 - p0);
  map.invert = (p) => {
    const v = a + ((p - p0) / (p1 - p0)) * span;
    return log ? 10 ** v : v;
  };
  map.domain = [d0, d1];
  map.log = log;
  return map;
}

// The finite [min, max] of some numbers, widened a little (and never empty).
export function extent(values, pad = 0.05) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (Number.isFinite(v)) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
  }
  if (lo === Infinity) return [0, 1];
  if (lo === hi) return [lo - 1, hi + 1];
  const margin = (hi - lo) * pad;
  return [lo - margin, hi + margin];
}

function ticks(lo, hi, log, count = 5) {
  if (log) {
    const out = [];
    for (let e = Math.ceil(Math.log10(lo)); e <= Math.floor(Math.log10(hi)); e += 1) out.push(10 ** e);
    return out.length > 7 ? out.filter((_, i) => i % 2 === 0) : out;
  }
  const raw = (hi - lo) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(v);
  return out;
}

export function formatNumber(v) {
  if (!Number.isFinite(v)) return String(v);
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e4 || a < 1e-3) return v.toExponential(1).replace(".0e", "e").replace("e+", "e");
  return String(Number(v.toPrecision(4)));
}

// Axes, grid and tick labels for x and y scales inside the plot box; axis titles if given.
export function axes(ctx, x, y, box, titles = {}) {
  ctx.save();
  ctx.font = FONT;
  ctx.lineWidth = 1;
  ctx.fillStyle = INK;
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (const v of ticks(...x.domain, x.log)) {
    const px = x(v);
    ctx.strokeStyle = GRID;
    ctx.beginPath();
    ctx.moveTo(px, box.top);
    ctx.lineTo(px, box.bottom);
    ctx.stroke();
    ctx.fillText(formatNumber(v), px, box.bottom + 4);
  }
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const v of ticks(...y.domain, y.log)) {
    const py = y(v);
    ctx.strokeStyle = GRID;
    ctx.beginPath();
    ctx.moveTo(box.left, py);
    ctx.lineTo(box.right, py);
    ctx.stroke();
    ctx.fillText(formatNumber(v), box.left - 4, py);
  }
  ctx.strokeStyle = INK;
  ctx.strokeRect(box.left, box.top, box.right - box.left, box.bottom - box.top);
  if (titles.x) {
    ctx.textAlign = "right";
    ctx.textBaseline = "bottom";
    ctx.fillText(titles.x, box.right, box.bottom - 3);
  }
  if (titles.y) {
    ctx.textAlign = "left";
    ctx.textBaseline = "top";
    ctx.fillText(titles.y, box.left + 4, box.top + 3);
  }
  ctx.restore();
}

export function plotBox(width, height) {
  return { left: MARGIN.left, right: width - MARGIN.right, top: MARGIN.top,
    bottom: height - MARGIN.bottom };
}

// A polyline through points [[x, y], ...] (non-finite points break the line), clipped to box.
export function line(ctx, points, x, y, box, { color = INK, width = 1.5, dash = [] } = {}) {
  ctx.save();
  ctx.beginPath();
  ctx.rect(box.left, box.top, box.right - box.left, box.bottom - box.top);
  ctx.clip();
  ctx.strokeStyle = color;
  ctx.lineWidth = width;
  ctx.setLineDash(dash);
  ctx.beginPath();
  let pen = false;
  for (const [px, py] of points) {
    const ok = Number.isFinite(px) && Number.isFinite(py) && !(y.log && py <= 0);
    if (!ok) {
      pen = false;
      continue;
    }
    if (pen) ctx.lineTo(x(px), y(py));
    else ctx.moveTo(x(px), y(py));
    pen = true;
  }
  ctx.stroke();
  ctx.restore();
}

// A whole line chart: series = [{points, color, dash, width}]; log = a log-scale y axis.
export function chart(canvas, series, { log = false, titles = {}, yRange = null } = {}) {
  const { ctx, width, height } = prepare(canvas);
  const box = plotBox(width, height);
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  let ys = series.flatMap((s) => s.points.map((p) => p[1]));
  if (log) ys = ys.filter((v) => v > 0);
  let [x0, x1] = extent(xs, 0);
  if (x0 === x1) x1 = x0 + 1;
  let [y0, y1] = yRange || extent(ys);
  if (log) {
    const finite = ys.filter(Number.isFinite);
    const [lo, hi] = finite.length ? [Math.min(...finite), Math.max(...finite)] : [1e-3, 1];
    [y0, y1] = [lo / 1.5, hi * 1.5];
  }
  const x = scale(x0, x1, box.left, box.right);
  const y = scale(y0, y1, box.bottom, box.top, log);
  axes(ctx, x, y, box, titles);
  for (const s of series) line(ctx, s.points, x, y, box, s);
  return { ctx, x, y, box };
}
