// The network view (the articles' second half): a small network learning a 2-D data set on
// the server, streamed here frame by frame. This view draws each frame: the decision
// boundary, the loss and accuracy curves, the network with each hidden unit's state, the
// gradient-flow strip ‖∂C/∂W‖ per layer, and the diagnose rules' findings.

import { significant } from "./descent.js";
import { t } from "./i18n.js";
import { PALETTE, chart, formatNumber, prepare } from "./plot.js";

const ETA_RANGE = [-4, 1];
const HISTORY = 2000; // frames kept for the curves; older ones are thinned, never dropped
const CLASS_RGB = [[249, 115, 22], [37, 99, 235], [5, 150, 105], [124, 58, 237]];
export const STATES = ["learning", "saturated-wrong", "saturated-right", "saturated", "dead",
  "quiet"];
const MAX_EDGES = 1500; // per layer: the largest |w| are drawn, the rest would be a blur
const SVG = "http://www.w3.org/2000/svg";

export class NetworkView {
  constructor(root, send) {
    this.send = send;
    this.el = (id) => root.querySelector(`[data-testid="${id}"]`);
    this.playing = false;
    this.points = { train: [], test: [] };
    this.history = [];
    this.frame = null;
    this.pending = false;
    const slider = this.el("lr");
    [slider.min, slider.max, slider.step] = [ETA_RANGE[0], ETA_RANGE[1], 0.01];
    this.lr = 0.03;
    slider.value = Math.log10(this.lr);
    this.wire();
    this.showButtons();
  }

  wire() {
    for (const id of ["dataset", "layers", "units", "activation", "init", "loss-name",
      "optimizer", "batch-size", "seed"]) {
      this.el(id).addEventListener("change", () => this.configure());
    }
    this.el("lr").addEventListener("input", (event) => {
      this.lr = significant(10 ** Number(event.target.value));
      this.showLr();
      this.send({ type: "set", lr: this.lr });
    });
    this.el("play").addEventListener("click", () => this.setPlaying(true));
    this.el("pause").addEventListener("click", () => this.setPlaying(false));
    this.el("step").addEventListener("click", () => this.send({ type: "step" }));
    this.el("reset").addEventListener("click", () => {
      this.setPlaying(false);
      this.history = [];
      this.send({ type: "reset" });
    });
    this.el("flow-quantity").addEventListener("change", () => this.draw());
  }

  showLr() {
    this.el("lr-value").textContent = `η = ${this.lr}`;
  }

  setPlaying(on) {
    if (!this.send({ type: on ? "play" : "pause" }) && on) return;
    this.playing = on;
    this.showButtons();
  }

  // The socket closed: nothing is playing any more (the session went with it).
  disconnected() {
    this.playing = false;
    this.showButtons();
  }

  showButtons() {
    this.el("play").disabled = this.playing;
    this.el("pause").disabled = !this.playing;
    this.el("step").disabled = this.playing;
  }

  // What the controls describe, as the server's "configure" message.
  configure() {
    if (this.playing) this.setPlaying(false);
    const layers = Number(this.el("layers").value);
    const units = Number(this.el("units").value);
    this.send({
      type: "configure",
      dataset: this.el("dataset").value,
      hidden: Array.from({ length: layers }, () => units),
      activation: this.el("activation").value,
      init: this.el("init").value,
      loss: this.el("loss-name").value,
      optimizer: this.el("optimizer").value,
      lr: this.lr,
      batch_size: Number(this.el("batch-size").value),
      seed: Number(this.el("seed").value),
    });
  }

  // The η the session trains with, as the server confirms it (after "set", in every frame).
  onSessionLr(lr) {
    if (!Number.isFinite(lr)) return;
    this.el("lr-value").dataset.lr = String(lr);
    if (significant(lr) !== this.lr) {
      this.lr = significant(lr);
      this.el("lr").value = Math.log10(lr);
    }
    this.showLr();
  }

  // A refused message: if the session has stopped (diverged), the page is not playing.
  onError() {
    if (this.frame && (this.frame.diverged || this.frame.stopped) && this.playing) {
      this.playing = false;
      this.showButtons();
    }
  }

  onConfigured(message) {
    this.points = message.points;
    this.data = message.data || null; // an uploaded CSV: its features and classes
    this.history = [];
    this.frame = null;
    this.showLr();
  }

  onFrame(frame) {
    if (frame.step === 0 || (this.history.length && frame.step < this.history.at(-1).step)) {
      this.history = []; // a reset: the curves start again
    }
    this.frame = frame;
    this.history.push({
      step: frame.step, loss: frame.loss, accuracy: frame.accuracy,
      val_loss: frame.val_loss, val_accuracy: frame.val_accuracy,
      flow: frame.flow.map((f) => [f.grad_W_norm, f.grad_b_norm]),
    });
    if (this.history.length > HISTORY) this.history = this.history.filter((_, i) => i % 2 === 0);
    this.el("step-count").textContent = String(frame.step);
    this.el("epoch").textContent = String(frame.epoch);
    this.el("loss").textContent = formatNumber(frame.loss);
    this.el("accuracy").textContent = formatNumber(frame.accuracy);
    this.el("val-loss").textContent = formatNumber(frame.val_loss);
    this.el("val-accuracy").textContent = formatNumber(frame.val_accuracy);
    this.onSessionLr(frame.lr);
    if ((frame.diverged || frame.stopped) && this.playing) {
      this.playing = false;
      this.showButtons();
    }
    // Frames may come faster than the screen refreshes: draw the newest one per refresh.
    if (!this.pending) {
      this.pending = true;
      requestAnimationFrame(() => {
        this.pending = false;
        this.draw();
      });
    }
  }

  draw() {
    this.showLr();
    this.drawCurves();
    if (!this.frame) return;
    this.drawBoundary(this.frame.boundary);
    this.drawNetwork(this.frame);
    this.drawFlow();
    this.fillFindings(this.frame.findings);
  }

  // p(class 1) on an n×n grid as a soft colour wash (row 0 is the bottom, y = min), then the
  // training points filled and the held-out points as rings.
  drawBoundary(boundary) {
    const canvas = this.el("boundary");
    const { ctx, width, height } = prepare(canvas);
    if (!boundary) { // an uploaded CSV with other than 2 features or 2 classes
      this.boundaryNote(ctx, width, height);
      return;
    }
    delete canvas.dataset.note;
    const n = boundary.n;
    const grid = document.createElement("canvas");
    [grid.width, grid.height] = [n, n];
    const gridCtx = grid.getContext("2d");
    const image = gridCtx.createImageData(n, n);
    boundary.p.forEach((p, index) => {
      const [row, col] = [Math.floor(index / n), index % n];
      const at = ((n - 1 - row) * n + col) * 4;
      const [a, b] = [CLASS_RGB[0], CLASS_RGB[1]];
      const mix = Number.isFinite(p) ? Math.min(1, Math.max(0, p)) : 0.5;
      for (let c = 0; c < 3; c += 1) image.data[at + c] = a[c] + (b[c] - a[c]) * mix;
      image.data[at + 3] = 70 + 110 * Math.abs(mix - 0.5);
    });
    gridCtx.putImageData(image, 0, 0);
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(grid, 0, 0, width, height);
    const [x0, x1] = boundary.x;
    const [y0, y1] = boundary.y;
    const px = (v) => ((v - x0) / (x1 - x0)) * width;
    const py = (v) => height - ((v - y0) / (y1 - y0)) * height;
    const draw = (points, held) => {
      for (const [a, b, label] of points) {
        const rgb = CLASS_RGB[Number(label) % CLASS_RGB.length] || CLASS_RGB[0];
        ctx.beginPath();
        ctx.arc(px(a), py(b), 3.2, 0, 2 * Math.PI);
        ctx.lineWidth = 1.5;
        if (held) {
          ctx.strokeStyle = `rgb(${rgb})`;
          ctx.fillStyle = "#ffffff";
          ctx.fill();
          ctx.stroke();
        } else {
          ctx.fillStyle = `rgb(${rgb})`;
          ctx.strokeStyle = "#ffffff";
          ctx.fill();
          ctx.stroke();
        }
      }
    };
    draw(this.points.train, false);
    draw(this.points.test, true);
  }

  // Why there is no boundary to draw (an uploaded CSV), wrapped on the canvas.
  boundaryNote(ctx, width, height) {
    const data = this.data || { features: 2, classes: [] };
    const text = data.features !== 2
      ? t("network.boundary_features", { n: data.features })
      : t("network.boundary_classes", { k: data.classes.length });
    this.el("boundary").dataset.note = text;
    ctx.fillStyle = "#f3f4f6";
    ctx.fillRect(0, 0, width, height);
    ctx.fillStyle = "#374151";
    ctx.font = "14px system-ui, sans-serif";
    const lines = [""];
    for (const word of text.split(" ")) {
      const next = lines.at(-1) ? `${lines.at(-1)} ${word}` : word;
      if (ctx.measureText(next).width > width - 24 && lines.at(-1)) lines.push(word);
      else lines[lines.length - 1] = next;
    }
    const top = height / 2 - (lines.length - 1) * 9;
    lines.forEach((line, i) => ctx.fillText(line, 12, top + i * 18));
  }

  drawCurves() {
    const pick = (key) => this.history.map((h) => [h.step, h[key]]);
    const titles = (y) => ({ x: t("network.step_axis"), y });
    chart(this.el("loss-curve"), [
      { points: pick("loss"), color: PALETTE[0], width: 2 },
      { points: pick("val_loss"), color: PALETTE[1], width: 2, dash: [5, 3] },
    ], { titles: titles(t("network.loss")) });
    chart(this.el("accuracy-curve"), [
      { points: pick("accuracy"), color: PALETTE[0], width: 2 },
      { points: pick("val_accuracy"), color: PALETTE[1], width: 2, dash: [5, 3] },
    ], { titles: titles(t("network.accuracy")), yRange: [0, 1.02] });
  }

  // Columns of nodes (inputs, hidden units, outputs) joined by every weight: blue for w > 0,
  // orange for w < 0, thicker for larger |w|. A hidden unit's colour is its state.
  drawNetwork(frame) {
    const svg = this.el("network");
    const width = svg.clientWidth || 420;
    const height = svg.clientHeight || 260;
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    const sizes = [frame.weights[0].W.length, ...frame.weights.map((w) => w.W[0].length)];
    const states = Object.fromEntries(frame.units.map((u) => [u.layer, u.states]));
    const column = (l) => 24 + (l * (width - 48)) / (sizes.length - 1);
    const row = (l, i) => ((i + 0.5) * height) / sizes[l];
    const radius = Math.max(2, Math.min(9, height / (2.6 * Math.max(...sizes))));
    const edges = [];
    frame.weights.forEach(({ W }, l) => {
      const all = W.flatMap((outs, i) => outs.map((w, j) => [w, i, j]));
      const biggest = Math.max(1e-12, ...all.map(([w]) => Math.abs(w)));
      const shown = all.length > MAX_EDGES
        ? all.sort((a, b) => Math.abs(b[0]) - Math.abs(a[0])).slice(0, MAX_EDGES) : all;
      for (const [w, i, j] of shown) {
        const edge = document.createElementNS(SVG, "line");
        edge.setAttribute("x1", column(l));
        edge.setAttribute("y1", row(l, i));
        edge.setAttribute("x2", column(l + 1));
        edge.setAttribute("y2", row(l + 1, j));
        edge.setAttribute("class", w >= 0 ? "edge positive" : "edge negative");
        edge.setAttribute("stroke-width", (0.3 + 3.2 * Math.abs(w) / biggest).toFixed(2));
        // the weight W[i, j] of this layer: a click opens its chain rule (panels.js)
        Object.assign(edge.dataset, { layer: frame.weights[l].layer, row: i, col: j });
        edges.push(edge);
      }
    });
    const nodes = [];
    sizes.forEach((size, l) => {
      const layerName = l > 0 ? frame.weights[l - 1].layer : null;
      for (let i = 0; i < size; i += 1) {
        const node = document.createElementNS(SVG, "circle");
        node.setAttribute("cx", column(l));
        node.setAttribute("cy", row(l, i));
        node.setAttribute("r", radius);
        const state = states[layerName]?.[i];
        const kind = l === 0 ? "input" : state ? `state-${state}` : "output";
        node.setAttribute("class", `node ${kind}`);
        node.dataset.layer = layerName ?? "input";
        node.dataset.unit = String(i);
        nodes.push(node);
      }
    });
    svg.replaceChildren(...edges, ...nodes);
  }

  // ‖∂C/∂W‖ (or ‖∂C/∂b‖) of each layer against the step on a log axis: a vanishing gradient
  // is a fan of lines, the first layers' far below the last's.
  drawFlow() {
    const which = this.el("flow-quantity").value === "b" ? 1 : 0;
    const layers = this.frame.flow.map((f) => f.layer);
    const series = layers.map((_, l) => ({
      points: this.history.map((h) => [h.step, h.flow[l]?.[which]]),
      color: PALETTE[l % PALETTE.length],
      width: 1.8,
    }));
    chart(this.el("flow"), series, {
      log: true, titles: { x: t("network.step_axis"), y: which ? "‖∂C/∂b‖" : "‖∂C/∂W‖" },
    });
    this.el("flow-legend").replaceChildren(...layers.map((name, l) => {
      const item = document.createElement("li");
      item.style.setProperty("--swatch", PALETTE[l % PALETTE.length]);
      item.textContent = name;
      return item;
    }));
  }

  fillFindings(findings) {
    const list = this.el("findings");
    if (!findings.length) {
      const none = document.createElement("li");
      none.className = "none";
      none.textContent = t("findings.none");
      list.replaceChildren(none);
      return;
    }
    list.replaceChildren(...findings.map((finding) => {
      const item = document.createElement("li");
      item.dataset.code = finding.code;
      const badge = document.createElement("span");
      badge.className = `severity ${finding.severity}`;
      badge.textContent = t(`severity.${finding.severity}`);
      const title = document.createElement("strong");
      title.textContent = finding.title;
      const evidence = document.createElement("div");
      evidence.className = "evidence";
      evidence.textContent = Object.entries(finding.evidence || {})
        .map(([key, value]) => `${key}: ${describe(value)}`).join(" · ");
      item.append(badge, title, evidence);
      return item;
    }));
  }
}

function describe(value) {
  if (typeof value === "number") return formatNumber(value);
  if (Array.isArray(value)) return value.map(describe).join(", ");
  if (value && typeof value === "object") {
    return Object.entries(value).map(([k, v]) => `${k} ${describe(v)}`).join(", ");
  }
  return String(value);
}
