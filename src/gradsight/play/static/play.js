// gradsight play — the page. It holds no numbers of its own: the server (gradsight's engine)
// computes every descent and every training step and sends them over one WebSocket; the two
// views draw what arrives. The messages are described beside the server, in gradsight.play.

import { DescentView } from "./descent.js";
import { LANGUAGES, applyCatalogue, loadCatalogue, t } from "./i18n.js";
import { NetworkView } from "./network.js";
import { PanelsView } from "./panels.js";
import { Connection } from "./socket.js";
import { UploadControl } from "./upload.js";
import { VanishingView } from "./vanishing.js";

const query = new URLSearchParams(window.location.search);
const token = query.get("token");

// The token from the page's URL, when it came with one (else the server's cookie is enough).
function withToken(path) {
  if (!token) return path;
  return `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`;
}

const byTestId = (id) => document.querySelector(`[data-testid="${id}"]`);
let notice = null; // the message area's current text: [catalogue key, values, server's words]

// Problems go to the page's message area, never only to the console.
function say(key, values = {}, detail = "") {
  notice = [key, values, detail];
  const area = byTestId("message");
  area.textContent = key ? `${t(key, values)}${detail ? ` ${detail}` : ""}` : "";
  area.hidden = !key;
}

// A refusal stays on screen until the server accepts the next request.
function clearRefusal() {
  if (notice && notice[0] === "message.refused") say(null);
}

const descent = new DescentView(byTestId("view-descent"), (m) => connection.send(m));
const upload = new UploadControl(byTestId("view-network"),
  { withToken, say, configure: () => network.configure() });
const network = new NetworkView(byTestId("view-network"),
  (m) => connection.send(upload.amend(m)));

const panels = new PanelsView(byTestId("view-network"), (m) => connection.send(m));
const vanishing = new VanishingView(byTestId("view-vanishing"), (m) => connection.send(m));
const VIEWS = { descent, network, vanishing };

const DESCENT_FIELDS = new Set(["expression", "x0", "lrs", "steps"]);

const connection = new Connection(
  `${window.location.protocol === "https:" ? "wss" : "ws"}://${window.location.host}${withToken("/ws")}`,
  {
    descent: (m) => {
      descent.onResult(m);
      clearRefusal();
    },
    configured: (m) => {
      network.onConfigured(m);
      panels.onConfigured(m);
      clearRefusal();
    },
    set: (m) => network.onSessionLr(m.lr),
    frame: (m) => {
      network.onFrame(m);
      panels.onFrame(m);
      if (m.diverged || m.stopped) say("message.stopped", {}, m.diverged || m.stopped);
    },
    unit: (m) => panels.onUnit(m),
    weight: (m) => panels.onWeight(m),
    vanishing: (m) => {
      vanishing.onMessage(m);
      clearRefusal();
    },
    error: (m) => {
      if (DESCENT_FIELDS.has(m.field)) {
        descent.onError(m);
      } else {
        network.onError(m);
        panels.onError(m);
        vanishing.onError(m);
        say("message.refused", {}, m.message);
      }
    },
  },
  (status) => {
    byTestId("connection").dataset.status = status;
    byTestId("connection").textContent = t(`connection.${status}`);
    // A refusal that came just before the close (too many sessions) stays in the message.
    const refusal = notice && notice[0] === "message.refused" ? notice[2] : "";
    if (status !== "open") network.disconnected();
    if (status !== "open") vanishing.disconnected();
    if (status === "open") say(null);
    else say(`message.${status === "failed" ? "no_connection" : "connection_lost"}`, {}, refusal);
    byTestId("reconnect").hidden = status === "open";
  },
);

function showView(name) {
  for (const view of Object.keys(VIEWS)) {
    byTestId(`view-${view}`).hidden = view !== name;
    byTestId(`tab-${view}`).setAttribute("aria-selected", String(view === name));
  }
  if (name === "vanishing") vanishing.shown(); // its network is built when first shown
  else VIEWS[name].draw();
}

async function setLanguage(lang) {
  try {
    await loadCatalogue(lang, withToken);
  } catch (error) {
    say("message.no_catalogue", { lang }, String(error.message || error));
    return;
  }
  applyCatalogue();
  upload.relabel();
  byTestId("lang").value = lang;
  byTestId("connection").textContent = t(`connection.${byTestId("connection").dataset.status}`);
  if (notice && notice[0]) say(...notice);
  descent.draw();
  network.draw();
  panels.draw();
  vanishing.draw();
}

// The first language: ?lang= in the page's URL, else the server's --lang (from /api/health).
async function firstLanguage() {
  if (LANGUAGES.includes(query.get("lang"))) return query.get("lang");
  try {
    const health = await (await fetch(withToken("/api/health"))).json();
    if (LANGUAGES.includes(health.lang)) return health.lang;
  } catch {
    // no health answer: the connection's own message will say so
  }
  return "en";
}

async function start() {
  byTestId("tab-descent").addEventListener("click", () => showView("descent"));
  byTestId("tab-network").addEventListener("click", () => showView("network"));
  byTestId("tab-vanishing").addEventListener("click", () => showView("vanishing"));
  byTestId("lang").addEventListener("change", (event) => setLanguage(event.target.value));
  byTestId("reconnect").addEventListener("click", () => {
    connection.open();
    network.configure();
    descent.request();
    if (vanishing.started) vanishing.request();
  });
  await setLanguage(await firstLanguage());
  connection.open();
  network.configure();
  descent.request();
  showView(Object.hasOwn(VIEWS, query.get("view") ?? "") ? query.get("view") : "network");
  document.body.dataset.ready = "true";
}

start();
