// The vanishing view: Nielsen's speed of learning ‖∂C/∂b‖ of each hidden layer of a deep
// network (the vanishing-gradient lab's, on the digits), as bars on a log scale beside the
// bound σ′ ≤ 0.25 per layer, at initialisation and while the network trains. The server
// builds and trains the network and measures; the page asks for steps while playing.

import { t } from "./i18n.js";
import { formatNumber } from "./plot.js";

const SVG = "http://www.w3.org/2000/svg";
const STEPS_PER_REQUEST = 5; // SGD mini-batches between two measurements while playing
const PAUSE_MS = 40; // between an answer and the next request while playing

export class VanishingView {
  constructor(root, send) {
    this.send = send;
    this.el = (id) => root.querySelector(`[data-testid="${id}"]`);
    this.message = null; // the last "vanishing" message
    this.atInit = null; // the speeds at step 0 of this network
    this.playing = false;
    this.started = false; // the first request goes out when the view is first shown
    for (const id of ["depth", "vanishing-activation", "vanishing-init", "vanishing-seed"]) {
      this.el(id).addEventListener(id === "depth" ? "input" : "change", () => this.request());
    }
    this.el("vanishing-play").addEventListener("click", () => this.setPlaying(true));
    this.el("vanishing-pause").addEventListener("click", () => this.setPlaying(false));
    this.el("vanishing-reset").addEventListener("click", () => this.request());
    this.el("depth-value").textContent = this.el("depth").value;
    this.showButtons();
  }

  // A fresh network from the controls: its speeds at initialisation come back.
  request() {
    this.started = true;
    this.setPlaying(false);
    this.el("depth-value").textContent = this.el("depth").value;
    this.send({
      type: "vanishing",
      depth: Number(this.el("depth").value),
      activation: this.el("vanishing-activation").value,
      init: this.el("vanishing-init").value,
      seed: Number(this.el("vanishing-seed").value),
    });
  }

  shown() {
    if (!this.started) this.request();
    this.draw();
  }

  setPlaying(on) {
    const was = this.playing;
    this.playing = on && Boolean(this.message) && !this.message.diverged;
    this.showButtons();
    if (this.playing && !was) this.send({ type: "vanishing_step", count: STEPS_PER_REQUEST });
  }

  showButtons() {
    this.el("vanishing-play").disabled = this.playing;
    this.el("vanishing-pause").disabled = !this.playing;
  }

  disconnected() {
    this.playing = false;
    this.showButtons();
  }

  onMessage(message) {
    if (message.step === 0) this.atInit = message.speeds;
    this.message = message;
    this.draw();
    if (message.diverged) this.setPlaying(false);
    if (this.playing) {
      setTimeout(() => {
        if (this.playing) this.send({ type: "vanishing_step", count: STEPS_PER_REQUEST });
      }, PAUSE_MS);
    }
  }

  onError() {
    this.setPlaying(false);
  }

  draw() {
    const m = this.message;
    if (!m) return;
    this.el("vanishing-step").textContent = String(m.step);
    this.el("vanishing-loss").textContent = formatNumber(m.loss);
    this.el("vanishing-accuracy").textContent = formatNumber(m.accuracy);
    this.el("vanishing-ratio").textContent = m.ratio_last_first === null
      ? "—" : formatNumber(m.ratio_last_first);
    this.drawBars(m);
    this.fillTable(m);
  }

  // One group per hidden layer (first on the left): the speed now (solid), at initialisation
  // (light, behind) and the σ′ bound 0.25^(L−l) × the last layer's speed (outlined).
  drawBars(m) {
    const svg = this.el("vanishing-bars");
    const width = svg.clientWidth || 560;
    const height = svg.clientHeight || 280;
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    const init = this.atInit && this.atInit.length === m.speeds.length ? this.atInit : m.speeds;
    const all = [...m.speeds, ...init, ...m.bound].filter((v) => Number.isFinite(v) && v > 0);
    const lo = Math.log10(Math.min(...all, 1)) - 0.3;
    const hi = Math.log10(Math.max(...all, 1e-12)) + 0.3;
    const [left, right, top, bottom] = [48, 8, 8, 28];
    const py = (v) => {
      const at = v > 0 && Number.isFinite(v) ? Math.log10(v) : lo;
      return top + ((hi - at) / (hi - lo || 1)) * (height - top - bottom);
    };
    const group = (width - left - right) / m.speeds.length;
    const bar = Math.min(28, group / 4);
    const parts = [];
    const rect = (cls, x, v, layer) => {
      const r = document.createElementNS(SVG, "rect");
      r.setAttribute("class", cls);
      r.setAttribute("x", x.toFixed(1));
      r.setAttribute("width", bar.toFixed(1));
      r.setAttribute("y", py(v).toFixed(1));
      r.setAttribute("height", Math.max(0, height - bottom - py(v)).toFixed(1));
      r.dataset.layer = String(layer);
      r.dataset.value = String(v);
      parts.push(r);
    };
    const text = (x, y, words, anchor = "middle") => {
      const label = document.createElementNS(SVG, "text");
      label.setAttribute("x", x.toFixed(1));
      label.setAttribute("y", y.toFixed(1));
      label.setAttribute("text-anchor", anchor);
      label.textContent = words;
      parts.push(label);
    };
    for (let e = Math.ceil(lo); e <= Math.floor(hi); e += 1) {
      const line = document.createElementNS(SVG, "line");
      line.setAttribute("class", "grid");
      line.setAttribute("x1", left);
      line.setAttribute("x2", width - right);
      line.setAttribute("y1", py(10 ** e).toFixed(1));
      line.setAttribute("y2", py(10 ** e).toFixed(1));
      parts.push(line);
      text(left - 4, py(10 ** e) + 4, `1e${e}`, "end");
    }
    m.speeds.forEach((speed, l) => {
      const x = left + l * group + (group - 3 * bar) / 2;
      rect("init", x, init[l], l + 1);
      rect("speed", x + bar, speed, l + 1);
      rect("bound", x + 2 * bar, m.bound[l], l + 1);
      text(x + 1.5 * bar, height - 10, t("vanishing.layer_n", { n: l + 1 }));
    });
    svg.replaceChildren(...parts);
  }

  fillTable(m) {
    const init = this.atInit && this.atInit.length === m.speeds.length ? this.atInit : m.speeds;
    const head = document.createElement("tr");
    for (const key of ["vanishing.col_layer", "vanishing.col_speed", "vanishing.col_init",
      "vanishing.col_bound"]) {
      const th = document.createElement("th");
      th.textContent = t(key);
      head.append(th);
    }
    const rows = m.speeds.map((speed, l) => {
      const row = document.createElement("tr");
      [l + 1, speed, init[l], m.bound[l]].forEach((value, column) => {
        const td = document.createElement("td");
        td.textContent = column === 0 ? String(value) : formatNumber(value);
        td.dataset.value = String(value);
        row.append(td);
      });
      return row;
    });
    this.el("vanishing-table").replaceChildren(head, ...rows);
  }
}
