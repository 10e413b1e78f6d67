// The descent view (the articles' first half): gradient descent on a function the learner
// types. The server runs the whole descent (gradsight's parser, optimizers and verdicts) and
// sends every iterate; this view only replays them, one step at a time, on the curve
// (1 variable: with the tangent and the step −η·f′(x) drawn) or the contour (2 variables).

import { t } from "./i18n.js";
import { PALETTE, axes, chart, extent, formatNumber, line, plotBox, prepare, scale } from "./plot.js";

const ETA_RANGE = [-4, 1]; // the η slider moves log10 η from 1e-4 to 10
const REPLAY_MS = 3000; // a whole run replays in about three seconds

export function significant(v, digits = 3) {
  return Number(Number(v).toPrecision(digits));
}

export function numbers(text) {
  return text.split(/[,;\s]+/).filter(Boolean).map((s) => Number(s.replace("−", "-")));
}

export class DescentView {
  constructor(root, send) {
    this.send = send;
    this.el = (id) => root.querySelector(`[data-testid="${id}"]`);
    this.result = null; // the last "descent" message
    this.k = 0; // how many steps are shown
    this.timer = null;
    this.scales = null; // the main plot's scales, to turn a click into x₀
    const slider = this.el("descent-lr");
    [slider.min, slider.max, slider.step] = [ETA_RANGE[0], ETA_RANGE[1], 0.01];
    slider.value = Math.log10(0.1);
    this.lr = 0.1;
    this.wire();
  }

  wire() {
    let typing = null;
    const later = () => {
      clearTimeout(typing);
      typing = setTimeout(() => this.request(), 300);
    };
    this.el("expression").addEventListener("input", later);
    this.el("descent-x0").addEventListener("input", later);
    this.el("descent-lrs").addEventListener("input", later);
    this.el("descent-steps").addEventListener("change", () => this.request());
    this.el("descent-optimizer").addEventListener("change", () => this.request());
    this.el("descent-lr").addEventListener("input", (event) => {
      this.lr = significant(10 ** Number(event.target.value));
      this.showLr();
      later();
    });
    this.el("descent-step").addEventListener("click", () => this.stepOnce());
    this.el("descent-play").addEventListener("click", () => this.play());
    this.el("descent-pause").addEventListener("click", () => this.pause());
    this.el("descent-reset").addEventListener("click", () => this.rewind());
    this.el("descent-plot").addEventListener("click", (event) => this.pickStart(event));
  }

  showLr() {
    this.el("descent-lr-value").textContent = `η = ${this.lr}`;
  }

  // Ask the server for the descent the controls describe.
  request() {
    const extra = numbers(this.el("descent-lrs").value).filter((v) => v !== this.lr);
    const message = {
      type: "descent",
      expression: this.el("expression").value,
      optimizer: this.el("descent-optimizer").value,
      lr: this.lr,
      x0: numbers(this.el("descent-x0").value),
      steps: Number(this.el("descent-steps").value),
    };
    if (extra.length) message.lrs = [this.lr, ...extra];
    this.send(message);
  }

  onResult(message) {
    this.result = message;
    this.el("expression-error").textContent = "";
    this.el("expression").removeAttribute("aria-invalid");
    this.rewind();
    this.play();
  }

  // A refusal of a field of this view: the parser's one line beside the expression.
  onError(message) {
    this.pause();
    this.el("expression-error").textContent = message.message;
    if (message.field === "expression") this.el("expression").setAttribute("aria-invalid", "true");
  }

  get lastStep() {
    if (!this.result) return 0;
    return Math.max(...this.result.runs.map((run) => run.iterates.length - 1));
  }

  play() {
    if (this.timer || !this.result) return;
    if (this.k >= this.lastStep) this.k = 0;
    const every = Math.min(300, Math.max(30, REPLAY_MS / Math.max(1, this.lastStep)));
    this.timer = setInterval(() => {
      if (this.k >= this.lastStep) this.pause();
      else this.stepOnce();
    }, every);
  }

  pause() {
    clearInterval(this.timer);
    this.timer = null;
  }

  stepOnce() {
    this.k = Math.min(this.k + 1, this.lastStep);
    this.draw();
  }

  rewind() {
    this.pause();
    this.k = 0;
    this.draw();
  }

  pickStart(event) {
    if (!this.scales) return;
    const bounds = event.currentTarget.getBoundingClientRect();
    const [px, py] = [event.clientX - bounds.left, event.clientY - bounds.top];
    const { x, y, twoD } = this.scales;
    const start = twoD ? [x.invert(px), y.invert(py)] : [x.invert(px)];
    this.el("descent-x0").value = start.map((v) => significant(v, 3)).join(", ");
    this.request();
  }

  draw() {
    this.showLr();
    const k = this.k;
    const n = this.lastStep;
    this.el("descent-k").textContent = t("descent.k", { k, n });
    if (!this.result) return;
    if (this.result.contour) this.drawContour(k);
    else this.drawCurve(k);
    this.drawValues(k);
    this.fillTable(k);
    this.fillVerdict(k);
  }

  // 1 variable: f on its range, the iterates so far, and at the newest one the tangent
  // (slope f′(x)) and the step −η·f′(x) it prescribes.
  drawCurve(k) {
    const canvas = this.el("descent-plot");
    const { ctx, width, height } = prepare(canvas);
    const box = plotBox(width, height);
    const curve = this.result.curve;
    const x = scale(...extent(curve.x, 0), box.left, box.right);
    const y = scale(...extent(curve.y, 0.08), box.bottom, box.top);
    this.scales = { x, y, twoD: false };
    axes(ctx, x, y, box, { x: "x", y: "f(x)" });
    line(ctx, curve.x.map((v, i) => [v, curve.y[i]]), x, y, box, { color: "#111827", width: 2 });
    this.result.runs.forEach((run, r) => {
      const color = PALETTE[r % PALETTE.length];
      const upTo = Math.min(k, run.iterates.length - 1);
      const points = run.iterates.slice(0, upTo + 1).map((p, i) => [p[0], run.values[i]]);
      line(ctx, points, x, y, box, { color, width: 1, dash: [3, 3] });
      points.forEach(([px, py], i) => dot(ctx, x(px), y(py), i === upTo ? 5 : 2.5, color, box));
      if (r === 0 && upTo === k) this.drawTangentAndStep(ctx, run, k, x, y, box, color);
    });
  }

  drawTangentAndStep(ctx, run, k, x, y, box, color) {
    const [xk] = run.iterates[k];
    const fk = run.values[k];
    const slope = run.gradients[k]?.[0];
    if (![xk, fk, slope].every(Number.isFinite)) return;
    const half = (x.domain[1] - x.domain[0]) * 0.12;
    const tangent = [[xk - half, fk - slope * half], [xk + half, fk + slope * half]];
    line(ctx, tangent, x, y, box, { color: "#6b7280", width: 1.5 });
    const next = run.iterates[k + 1]?.[0];
    if (!Number.isFinite(next)) return;
    arrow(ctx, x(xk), y(fk), x(next), y(fk), color, box);
    ctx.save();
    ctx.font = "12px system-ui, sans-serif";
    ctx.fillStyle = color;
    ctx.textAlign = "center";
    ctx.fillText(t("descent.step_label"), (x(xk) + x(next)) / 2, y(fk) - 8);
    ctx.restore();
  }

  // 2 variables: f as bands of equal rank (a filled contour map), and each run's path.
  drawContour(k) {
    const canvas = this.el("descent-plot");
    const { ctx, width, height } = prepare(canvas);
    const box = plotBox(width, height);
    const { x: gx, y: gy, z } = this.result.contour;
    const x = scale(gx[0], gx[gx.length - 1], box.left, box.right);
    const y = scale(gy[0], gy[gy.length - 1], box.bottom, box.top);
    this.scales = { x, y, twoD: true };
    const sorted = z.flat().filter(Number.isFinite).sort((a, b) => a - b);
    const bands = 12;
    const rank = (v) => {
      let lo = 0;
      let hi = sorted.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (sorted[mid] < v) lo = mid + 1;
        else hi = mid;
      }
      return Math.min(bands - 1, Math.floor((lo / sorted.length) * bands));
    };
    // One pixel per grid point, stretched (and smoothed) over the plot box; row 0 is y = min.
    const grid = document.createElement("canvas");
    [grid.width, grid.height] = [gx.length, gy.length];
    const gridCtx = grid.getContext("2d");
    const image = gridCtx.createImageData(gx.length, gy.length);
    z.forEach((row, i) => row.forEach((v, j) => {
      const shade = Number.isFinite(v) ? 240 - rank(v) * 15 : 90;
      const at = ((gy.length - 1 - i) * gx.length + j) * 4;
      image.data.set([shade, Math.min(255, shade + 10), 255, 255], at);
    }));
    gridCtx.putImageData(image, 0, 0);
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(grid, box.left, box.top, box.right - box.left, box.bottom - box.top);
    axes(ctx, x, y, box, { x: this.result.variables[0], y: this.result.variables[1] });
    this.result.runs.forEach((run, r) => {
      const color = PALETTE[r % PALETTE.length];
      const upTo = Math.min(k, run.iterates.length - 1);
      const path = run.iterates.slice(0, upTo + 1);
      line(ctx, path, x, y, box, { color, width: 1.5 });
      path.forEach(([px, py], i) => dot(ctx, x(px), y(py), i === upTo ? 5 : 2, color, box));
      const next = run.iterates[upTo + 1];
      if (r === 0 && next && next.every(Number.isFinite)) {
        const [px, py] = path[upTo];
        arrow(ctx, x(px), y(py), x(next[0]), y(next[1]), color, box);
      }
    });
  }

  // f at each iterate against the step number, one line per η; a log axis when f > 0
  // spans more than three decades (a diverging run).
  drawValues(k) {
    const runs = this.result.runs;
    const all = runs.flatMap((run) => run.values).filter(Number.isFinite);
    const positive = all.length > 0 && all.every((v) => v > 0);
    const log = positive && Math.max(...all) / Math.min(...all) > 1e3;
    const series = runs.map((run, r) => ({
      points: run.values.slice(0, k + 1).map((v, i) => [i, v]),
      color: PALETTE[r % PALETTE.length],
      width: 2,
    }));
    // A point at the last step keeps the x axis still while the replay grows.
    series.push({ points: [[this.lastStep, NaN], [0, NaN]], color: "transparent" });
    chart(this.el("descent-loss"), series, {
      log, titles: { x: t("descent.step_axis"), y: "f" },
      yRange: log ? null : extent(all),
    });
    this.el("descent-legend").replaceChildren(...runs.map((run, r) => {
      const item = document.createElement("li");
      item.style.setProperty("--swatch", PALETTE[r % PALETTE.length]);
      item.textContent = `η = ${run.lr}`;
      return item;
    }));
  }

  // The articles' iteration table: x_new = x_old − η·f′(x_old) with the numbers, step by step.
  fillTable(k) {
    const run = this.result.runs[0];
    const caption = document.createElement("caption");
    caption.textContent = t("descent.table_caption", { lr: run.lr });
    const head = document.createElement("tr");
    for (const key of ["descent.col_k", "descent.col_update", "descent.col_f"]) {
      const cell = document.createElement("th");
      cell.textContent = t(key);
      head.append(cell);
    }
    const rows = run.table.slice(0, k).map((text, i) => {
      const row = document.createElement("tr");
      for (const value of [i + 1, text, formatNumber(run.values[i + 1])]) {
        const cell = document.createElement("td");
        cell.textContent = value;
        row.append(cell);
      }
      return row;
    });
    const table = this.el("descent-table");
    table.replaceChildren(caption, head, ...rows);
    table.parentElement.scrollTop = table.parentElement.scrollHeight;
  }

  fillVerdict(k) {
    const box = this.el("descent-verdict");
    if (k < this.lastStep) {
      box.textContent = t("descent.verdict_pending");
      box.dataset.verdict = "";
      return;
    }
    const lines = this.result.runs.map((run) => {
      const last = run.iterates.length - 1;
      return t("descent.verdict_line", {
        lr: run.lr,
        verdict: t(`verdict.${run.verdict}`),
        n: last,
        x: run.iterates[last].map(formatNumber).join(", "),
        f: formatNumber(run.values[last]),
      });
    });
    box.textContent = lines.join("\n");
    box.dataset.verdict = this.result.runs[0].verdict;
  }
}

function dot(ctx, px, py, radius, color, box) {
  if (!Number.isFinite(px) || !Number.isFinite(py)) return;
  if (px < box.left || px > box.right || py < box.top || py > box.bottom) return;
  ctx.beginPath();
  ctx.arc(px, py, radius, 0, 2 * Math.PI);
  ctx.fillStyle = color;
  ctx.fill();
}

function arrow(ctx, x0, y0, x1, y1, color, box) {
  ctx.save();
  ctx.beginPath();
  ctx.rect(box.left, box.top, box.right - box.left, box.bottom - box.top);
  ctx.clip();
  ctx.strokeStyle = color;
  ctx.fillStyle = color;
  ctx.lineWidth = 2;
  ctx.beginPath();
  ctx.moveTo(x0, y0);
  ctx.lineTo(x1, y1);
  ctx.stroke();
  const angle = Math.atan2(y1 - y0, x1 - x0);
  ctx.beginPath();
  ctx.moveTo(x1, y1);
  ctx.lineTo(x1 - 9 * Math.cos(angle - 0.4), y1 - 9 * Math.sin(angle - 0.4));
  ctx.lineTo(x1 - 9 * Math.cos(angle + 0.4), y1 - 9 * Math.sin(angle + 0.4));
  ctx.closePath();
  ctx.fill();
  ctx.restore();
}
