// The network view's two panels that open on a click (the server computes every number):
// - a hidden unit: its f′(z) on every training sample as a histogram and as a sorted strip,
//   and its state (the article's "ability to learn": saturated and wrong, saturated and
//   right, learning, dead);
// - a weight: the chain rule of ∂C/∂w for one training sample, every factor with its number,
//   and whether it matches the engine's own gradient and central differences.

import { t } from "./i18n.js";
import { formatNumber, prepare } from "./plot.js";

const STATE_EXPLAINED = {
  learning: "unit.explain_learning",
  "saturated-wrong": "unit.explain_saturated_wrong",
  "saturated-right": "unit.explain_saturated_right",
  saturated: "unit.explain_saturated",
  dead: "unit.explain_dead",
  quiet: "unit.explain_quiet",
};
const STATE_NAMES = {
  learning: "state.learning",
  "saturated-wrong": "state.saturated-wrong",
  "saturated-right": "state.saturated-right",
  saturated: "state.saturated",
  dead: "state.dead",
  quiet: "state.quiet",
};
const FACTOR_NAMES = {
  input: "weight.factor_input",
  output_error: "weight.factor_output_error",
  carried: "weight.factor_carried",
  local: "weight.factor_local",
  delta: "weight.factor_delta",
  gradient: "weight.factor_gradient",
};
const REFRESH_MS = 500; // an open panel follows the training at most twice a second
const RIGHT = "#059669";
const WRONG = "#dc2626";
const BAR = "#2563eb";

export class PanelsView {
  constructor(root, send) {
    this.send = send;
    this.el = (id) => root.querySelector(`[data-testid="${id}"]`);
    this.unit = null; // the last "unit" message
    this.weight = null; // the last "weight" message
    this.asked = { unit: null, weight: null }; // what is open: the request to repeat
    this.waiting = { unit: false, weight: false };
    this.lastAsked = 0;
    this.el("network").addEventListener("click", (event) => this.clicked(event.target));
    this.el("weight-sample").addEventListener("change", () => {
      if (this.asked.weight) this.request("weight", { ...this.asked.weight, sample: this.sample() });
    });
    this.el("unit-close").addEventListener("click", () => this.close("unit"));
    this.el("weight-close").addEventListener("click", () => this.close("weight"));
  }

  sample() {
    const value = Math.max(0, Math.floor(Number(this.el("weight-sample").value) || 0));
    this.el("weight-sample").value = String(value);
    return value;
  }

  // A click on the drawing: a hidden unit (a circle with a state) or a weight (a line).
  clicked(target) {
    const node = target.closest("circle");
    if (node && node.classList.contains("node") && node.getAttribute("class").includes("state-")) {
      this.request("unit", { layer: node.dataset.layer, index: Number(node.dataset.unit) });
      return;
    }
    const edge = target.closest("line");
    if (edge && edge.classList.contains("edge") && edge.dataset.layer) {
      this.request("weight", {
        layer: edge.dataset.layer, row: Number(edge.dataset.row), col: Number(edge.dataset.col),
        sample: this.sample(),
      });
    }
  }

  request(kind, fields) {
    this.asked[kind] = fields;
    this.waiting[kind] = true;
    this.lastAsked = performance.now();
    this.send({ type: kind, ...fields });
  }

  close(kind) {
    this.asked[kind] = null;
    this.el(`${kind}-panel`).hidden = true;
  }

  // A new network (configure): the panels described the old one.
  reset() {
    this.close("unit");
    this.close("weight");
  }

  // While the network trains, an open panel asks again now and then.
  onFrame() {
    if (performance.now() - this.lastAsked < REFRESH_MS) return;
    for (const kind of ["unit", "weight"]) {
      if (this.asked[kind] && !this.waiting[kind]) this.request(kind, this.asked[kind]);
    }
  }

  onError() {
    this.waiting = { unit: false, weight: false };
  }

  onUnit(message) {
    this.waiting.unit = false;
    if (!this.asked.unit) return;
    this.unit = message;
    this.el("unit-panel").hidden = false;
    this.drawUnit();
  }

  onWeight(message) {
    this.waiting.weight = false;
    if (!this.asked.weight) return;
    this.weight = message;
    this.el("weight-panel").hidden = false;
    this.drawWeight();
  }

  draw() {
    if (this.unit && !this.el("unit-panel").hidden) this.drawUnit();
    if (this.weight && !this.el("weight-panel").hidden) this.drawWeight();
  }

  drawUnit() {
    const u = this.unit;
    this.el("unit-title").textContent = t("unit.title", {
      layer: u.layer, index: u.index, activation: u.activation, n: u.samples,
    });
    const state = this.el("unit-state");
    state.dataset.state = u.state;
    state.textContent = `${t(STATE_NAMES[u.state] || "state.learning")}: ${t(
      STATE_EXPLAINED[u.state] || "unit.explain_learning")}`;
    const ev = u.evidence;
    const rows = [
      ["unit.active", ev.active_fraction],
      ["unit.mean_derivative", ev.mean_derivative],
      ["unit.positive", ev.positive_fraction],
      ["unit.accuracy_saturated", ev.accuracy_on_saturated],
    ];
    this.el("unit-evidence").replaceChildren(...rows.flatMap(([key, value]) => {
      const dt = document.createElement("dt");
      dt.textContent = t(key);
      const dd = document.createElement("dd");
      dd.textContent = value === null ? "—" : formatNumber(value);
      dd.dataset.value = value === null ? "" : String(value);
      return [dt, dd];
    }));
    this.drawHistogram(u.histogram, u.saturation_bound);
    this.drawStrip(u);
  }

  // The number of samples in each bin of f′(z): a unit that can learn has mass away from 0.
  drawHistogram(histogram, bound) {
    const canvas = this.el("unit-histogram");
    const { ctx, width, height } = prepare(canvas);
    const { edges, counts } = histogram;
    canvas.dataset.counts = counts.join(",");
    const [left, right, top, bottom] = [36, 8, 8, 24];
    const [lo, hi] = [edges[0], edges.at(-1)];
    const px = (v) => left + ((v - lo) / (hi - lo || 1)) * (width - left - right);
    const most = Math.max(1, ...counts);
    const py = (c) => height - bottom - (c / most) * (height - top - bottom);
    ctx.fillStyle = BAR;
    counts.forEach((count, i) => {
      if (!count) return;
      const [x0, x1] = [px(edges[i]), px(edges[i + 1])];
      ctx.fillRect(x0 + 0.5, py(count), Math.max(1, x1 - x0 - 1), height - bottom - py(count));
    });
    ctx.strokeStyle = "#1f2937";
    ctx.beginPath();
    ctx.moveTo(left, height - bottom);
    ctx.lineTo(width - right, height - bottom);
    ctx.moveTo(left, top);
    ctx.lineTo(left, height - bottom);
    ctx.stroke();
    ctx.setLineDash([3, 3]);
    ctx.strokeStyle = WRONG;
    ctx.beginPath();
    ctx.moveTo(px(bound), top);
    ctx.lineTo(px(bound), height - bottom);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = "#1f2937";
    ctx.font = "11px system-ui, sans-serif";
    ctx.textAlign = "center";
    for (const v of [lo, (lo + hi) / 2, hi]) ctx.fillText(formatNumber(v), px(v), height - 8);
    ctx.textAlign = "right";
    ctx.fillText(String(most), left - 4, top + 8);
    ctx.fillText("0", left - 4, height - bottom);
    ctx.textAlign = "left";
    ctx.fillText("f′(z)", width - right - 30, height - bottom - 4);
  }

  // Every sample's f′(z), sorted, as a thin bar: green where the network is right on it,
  // red where it is wrong (saturated and wrong: all red, all near 0).
  drawStrip(u) {
    const canvas = this.el("unit-strip");
    const { ctx, width, height } = prepare(canvas);
    const order = u.derivatives.map((d, i) => [d, u.correct[i]]).sort((a, b) => a[0] - b[0]);
    const hi = Math.max(u.max_derivative, ...u.derivatives.filter(Number.isFinite), 1e-12);
    const step = width / Math.max(1, order.length);
    order.forEach(([d, right], i) => {
      const h = Math.max(1, (Math.max(0, d) / hi) * (height - 2));
      ctx.fillStyle = right ? RIGHT : WRONG;
      ctx.fillRect(i * step, height - h, Math.max(1, step - 0.2), h);
    });
    canvas.dataset.samples = String(order.length);
  }

  drawWeight() {
    const w = this.weight;
    this.el("weight-title").textContent = t("weight.title", {
      layer: w.layer, row: w.row, col: w.col, w: formatNumber(w.w),
    });
    this.el("weight-sample").max = String(Math.max(0, (this.samples ?? 1) - 1));
    this.el("weight-sample-info").textContent = t("weight.sample_info", {
      k: w.sample, x: w.x.map((v) => formatNumber(v)).join(", "), label: w.label,
      cost: formatNumber(w.cost),
    });
    const table = this.el("weight-factors");
    table.replaceChildren(...w.factors.map((factor) => {
      const row = document.createElement("tr");
      row.dataset.kind = factor.kind;
      const name = document.createElement("td");
      name.textContent = t(FACTOR_NAMES[factor.kind] || "weight.factor_gradient");
      const symbol = document.createElement("td");
      symbol.textContent = factor.symbol;
      const value = document.createElement("td");
      value.textContent = formatNumber(factor.value);
      value.dataset.value = String(factor.value);
      row.append(name, symbol, value);
      return row;
    }));
    this.el("weight-chain").textContent = w.chain.join("\n");
    const check = this.el("weight-check");
    check.dataset.matches = String(w.matches);
    check.textContent = `${t("weight.matches", {
      answer: t(w.matches ? "weight.yes" : "weight.no"),
    })} ${t("weight.compared", { engine: formatNumber(w.engine), numeric: formatNumber(w.numeric) })}`;
  }

  // The number of training samples (from "configured"): the sample field's range.
  onConfigured(message) {
    this.samples = message.points.train.length;
    this.el("weight-sample").max = String(Math.max(0, this.samples - 1));
    this.reset();
  }
}
