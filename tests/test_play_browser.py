"""The playground's page in a real browser: Playwright drives Debian's Chromium (launched by
its path — the test machines cannot download Playwright's own builds) against the real
server (:class:`gradsight.play.PlayServer`, uvicorn in a thread on a free port).

Every page a test opens collects console errors and warnings and uncaught exceptions; each
test ends by asserting there were none. Screenshots of each view go to the test's tmp dir,
and to ``docs/play-network.png`` / ``docs/play-descent.png`` only when
``GRADSIGHT_SCREENSHOTS=1`` (so the suite never writes into the repository by itself).

The catalogue checks at the end need no browser: the four languages hold the same keys, and
every key the markup and the scripts use is in them (the markup holds no text of its own).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from gradsight.play import PlayServer
from gradsight.play.server import STATIC

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium not found (no `chromium` or `chromium-browser` on PATH); install "
           "Debian's chromium package — `make test` does it where apt is available")
LANGUAGES = ("en", "it", "es", "id")
DOCS = Path(__file__).resolve().parents[1] / "docs"
WAIT_MS = 15_000  # generous: the machines running the suite may be busy


# ---- fixtures: one server and one browser for the module, a fresh page per test ----------
@pytest.fixture(scope="module")
def server() -> Iterator[PlayServer]:
    with PlayServer() as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.skip("headless Chromium not found")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed (the dev extra has it)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=["--no-sandbox", "--disable-gpu"])
        yield launched
        launched.close()


class Page:
    """A browser page with its console problems collected."""

    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1300, "height": 1100})
        self.page = self.context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.problems: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.problems.append(f"pageerror: {error}"))

    def _console(self, message: Any) -> None:
        if message.type in ("error", "warning"):
            self.problems.append(f"console {message.type}: {message.text}")

    def open(self, url: str) -> Any:
        self.page.goto(url)
        self.page.wait_for_selector("body[data-ready=true]")
        return self.page


@pytest.fixture
def tab(browser: Any) -> Iterator[Page]:
    page = Page(browser)
    yield page
    page.context.close()


def by(page: Any, testid: str) -> Any:
    return page.get_by_test_id(testid)


def text_of(page: Any, testid: str) -> str:
    return by(page, testid).text_content() or ""


def wait_for(page: Any, script: str, arg: Any = None) -> None:
    """Wait until the JavaScript expression (a function of arg) is truthy in the page."""
    page.wait_for_function(script, arg=arg, timeout=WAIT_MS)


def screenshot(page: Any, tmp_path: Path, name: str, docs: bool = True) -> None:
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    if docs and os.environ.get("GRADSIGHT_SCREENSHOTS") == "1":
        DOCS.mkdir(exist_ok=True)
        page.screenshot(path=str(DOCS / f"{name}.png"), full_page=True)


def first_frame(page: Any) -> float:
    """Wait for the network's first frame; its loss."""
    wait_for(page, "() => document.querySelector('[data-testid=step-count]').textContent !== ''")
    return float(text_of(page, "loss"))


# ---- the token ------------------------------------------------------------------------
def test_without_the_token_there_is_no_page(server: PlayServer) -> None:
    for path in ("/", "/static/play.js", "/api/health", "/api/i18n/en"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(server.base + path, timeout=10)  # noqa: S310 - loopback
        assert refused.value.code == 403
        assert b"token" in refused.value.read()


@needs_browser
def test_a_browser_without_the_token_gets_403(server: PlayServer, tab: Page) -> None:
    response = tab.page.goto(server.base + "/")
    assert response is not None and response.status == 403
    assert tab.page.get_by_test_id("play").count() == 0


# ---- the network view -----------------------------------------------------------------
@needs_browser
def test_play_trains_the_network_live(server: PlayServer, tab: Page, tmp_path: Path) -> None:
    page = tab.open(server.url)
    assert page.get_attribute("[data-testid=tab-network]", "aria-selected") == "true"
    start = first_frame(page)
    assert text_of(page, "step-count") == "0"
    by(page, "play").click()
    wait_for(page, "() => Number(document.querySelector('[data-testid=step-count]')"
                   ".textContent) >= 100")
    wait_for(page, "(start) => Number(document.querySelector('[data-testid=loss]')"
                   ".textContent) < start", start)
    by(page, "pause").click()
    assert by(page, "play").is_enabled() and not by(page, "pause").is_enabled()
    # Everything a frame carries is drawn: units by state, edges, one flow line per layer.
    assert page.locator("[data-testid=network] circle.node").count() == 2 + 8 + 8 + 2
    assert page.locator("[data-testid=network] line.edge").count() == 2 * 8 + 8 * 8 + 8 * 2
    states = page.eval_on_selector_all(
        "[data-testid=network] circle.node", "nodes => nodes.map(n => n.getAttribute('class'))")
    assert sum("state-" in s for s in states) == 16
    assert text_of(page, "flow-legend") == "dense0dense1dense2"
    assert page.locator("[data-testid=findings] li").count() >= 1
    steps = int(text_of(page, "step-count"))
    by(page, "step").click()
    wait_for(page, "(n) => Number(document.querySelector('[data-testid=step-count]')"
                   ".textContent) === n + 1", steps)
    screenshot(page, tmp_path, "play-network")
    assert tab.problems == []


@needs_browser
def test_the_lr_slider_sets_the_sessions_lr(server: PlayServer, tab: Page) -> None:
    page = tab.open(server.url)
    sent: list[dict[str, Any]] = []
    page.on("websocket", lambda ws: ws.on(
        "framesent", lambda payload: sent.append(json.loads(payload))))
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    first_frame(page)
    assert text_of(page, "lr-value") == "η = 0.03"
    slider = by(page, "lr")
    box = slider.bounding_box()
    assert box is not None
    slider.click(position={"x": box["width"] * 0.8, "y": box["height"] / 2})  # η ≈ 1
    wait_for(page, "() => Number(document.querySelector('[data-testid=lr-value]')"
                   ".dataset.lr) > 0.3")
    confirmed = float(page.get_attribute("[data-testid=lr-value]", "data-lr") or "nan")
    asked = [m["lr"] for m in sent if m["type"] == "set"]
    assert asked and asked[-1] == pytest.approx(confirmed)
    assert text_of(page, "lr-value") == f"η = {confirmed:g}"
    assert tab.problems == []


@needs_browser
def test_a_refusal_is_shown_in_the_page(server: PlayServer, tab: Page) -> None:
    page = tab.open(server.url)
    first_frame(page)
    by(page, "units").fill("129")
    by(page, "units").dispatch_event("change")
    wait_for(page, "() => !document.querySelector('[data-testid=message]').hidden")
    message = text_of(page, "message")
    assert message.startswith("The server refused:") and "128" in message
    by(page, "units").fill("4")
    by(page, "units").dispatch_event("change")
    wait_for(page, "() => document.querySelector('[data-testid=message]').hidden")
    # the message hides when the server accepts; the drawing follows with the next frame
    wait_for(page, "() => document.querySelectorAll("
                   "'[data-testid=network] circle.node').length === 12")
    assert page.locator("[data-testid=network] circle.node").count() == 2 + 4 + 4 + 2
    assert tab.problems == []


@needs_browser
def test_a_lost_connection_is_shown_in_the_page(server: PlayServer, tab: Page) -> None:
    # The socket is refused (closed before it opens): the page says so, not only the console.
    tab.page.route_web_socket(re.compile(r".*/ws.*"), lambda ws: ws.close())
    page = tab.open(server.url)
    wait_for(page, "() => !document.querySelector('[data-testid=message]').hidden")
    assert "Cannot reach the gradsight server" in text_of(page, "message")
    assert by(page, "reconnect").is_visible()
    assert by(page, "connection").get_attribute("data-status") == "failed"
    assert tab.problems == []


# ---- the descent view -----------------------------------------------------------------
@needs_browser
def test_descent_replays_the_articles_example(server: PlayServer, tab: Page,
                                              tmp_path: Path) -> None:
    page = tab.open(server.url + "&view=descent")
    assert by(page, "expression").input_value() == "x^2 - 4*x + 6"
    wait_for(page, "() => document.querySelector('[data-testid=descent-verdict]')"
                   ".dataset.verdict === 'converged'")
    rows = page.locator("[data-testid=descent-table] tr")
    assert "x_new = x_old − η·f′(x_old) = 8 − 0.1·12 = 6.8" in rows.nth(1).text_content()
    assert "6.8 − 0.1·9.6 = 5.84" in rows.nth(2).text_content()
    assert text_of(page, "descent-verdict").startswith("η = 0.1: converged after")
    screenshot(page, tmp_path, "play-descent")
    # Step by step: reset empties the table, each step adds one row.
    by(page, "descent-reset").click()
    assert rows.count() == 1  # the header
    by(page, "descent-step").click()
    by(page, "descent-step").click()
    assert rows.count() == 3
    assert text_of(page, "descent-k").startswith("step 2 of")
    assert tab.problems == []


@needs_browser
def test_typing_a_function_shows_its_iterates_or_the_parsers_message(
        server: PlayServer, tab: Page) -> None:
    page = tab.open(server.url + "&view=descent")
    wait_for(page, "() => document.querySelector('[data-testid=descent-table] td')")
    by(page, "expression").fill("x^4 - 3*x")
    by(page, "descent-x0").fill("1.5")
    wait_for(page, "() => document.querySelector('[data-testid=descent-table]')"
                   ".textContent.includes('= 1.5 − 0.1·10.5 = 0.45')")
    by(page, "expression").fill("__import__('os')")
    wait_for(page, "() => document.querySelector('[data-testid=expression-error]')"
                   ".textContent !== ''")
    assert "not allowed" in text_of(page, "expression-error")
    assert by(page, "expression").get_attribute("aria-invalid") == "true"
    # Two variables: a contour, and several η side by side.
    by(page, "expression").fill("x^2 + 3*y^2")
    by(page, "descent-x0").fill("2, 1")
    by(page, "descent-lrs").fill("0.3")
    wait_for(page, "() => document.querySelector('[data-testid=descent-verdict]')"
                   ".textContent.split('\\n').length === 2")
    assert text_of(page, "expression-error") == ""
    assert "(x, y)_new" in text_of(page, "descent-table")
    assert text_of(page, "descent-legend") == "η = 0.1η = 0.3"
    assert tab.problems == []


# ---- languages ------------------------------------------------------------------------
@needs_browser
def test_the_language_switches_live(server: PlayServer, tab: Page, tmp_path: Path) -> None:
    page = tab.open(server.url)
    assert text_of(page, "play") == "Play"
    expected = {"it": ("Avvia", "Rete neurale"), "es": ("Iniciar", "Red neuronal"),
                "id": ("Mulai", "Jaringan saraf"), "en": ("Play", "Neural network")}
    for lang, (play, tab_name) in expected.items():
        by(page, "lang").select_option(lang)
        wait_for(page, "(lang) => document.documentElement.lang === lang", lang)
        assert text_of(page, "play") == play
        assert text_of(page, "tab-network") == tab_name
        if lang == "it":
            screenshot(page, tmp_path, "play-network-it", docs=False)
    # ?lang= in the address chooses the first language.
    page = tab.open(server.url + "&lang=es")
    assert text_of(page, "reset") == "Reiniciar"
    assert tab.problems == []


# ---- the catalogues (no browser) ------------------------------------------------------
def catalogue(lang: str) -> dict[str, str]:
    return json.loads((STATIC / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))


class _Markup(HTMLParser):
    """The keys the markup names, and any text it holds outside script and style."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: set[str] = set()
        self.text: list[str] = []
        self.inside: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name.startswith("data-i18n") and value:
                self.keys.add(value)
            assert not name.startswith("on"), f"inline event handler {name} on <{tag}>"
        if tag not in ("meta", "link", "input", "br", "img"):
            self.inside.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.inside and self.inside[-1] == tag:
            self.inside.pop()

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.text.append(data.strip())


def test_the_four_catalogues_hold_the_same_keys_and_no_blank_text() -> None:
    english = catalogue("en")
    for lang in LANGUAGES:
        words = catalogue(lang)
        assert set(words) == set(english), lang
        assert all(isinstance(v, str) and v.strip() for v in words.values()), lang
        for key, text in words.items():  # the same {placeholders} in every language
            assert set(re.findall(r"\{\w+\}", text)) == set(
                re.findall(r"\{\w+\}", english[key])), (lang, key)
    # The articles' own words.
    assert catalogue("it")["control.lr"] == "Tasso di apprendimento η"
    assert catalogue("es")["control.lr"] == "Tasa de aprendizaje η"
    assert catalogue("id")["control.lr"] == "Tingkat pembelajaran η"
    assert catalogue("it")["state.saturated"] == "saturo"
    assert catalogue("es")["state.dead"] == "muerta"
    assert catalogue("id")["state.saturated"] == "jenuh"


def test_every_key_the_page_uses_is_in_the_catalogue_and_the_markup_has_no_text() -> None:
    markup = _Markup()
    markup.feed((STATIC / "index.html").read_text(encoding="utf-8"))
    assert markup.text == [], f"text in the markup (it belongs in the catalogue): {markup.text}"
    scripts = "".join(p.read_text(encoding="utf-8") for p in STATIC.glob("*.js"))
    used = markup.keys | set(re.findall(r'"([a-z]+\.[a-z0-9_-]+)"', scripts))
    # Keys built from the server's names: a verdict, a state, a severity, the connection.
    used |= {f"verdict.{v}" for v in ("converged", "diverged", "oscillating", "stalled",
                                      "max_iter")}
    used |= {f"severity.{s}" for s in ("critical", "warning", "info")}
    used |= {f"connection.{s}" for s in ("connecting", "open", "closed", "failed")}
    used |= {f"message.{s}" for s in ("no_connection", "connection_lost", "refused", "stopped")}
    assert used, "no keys found"
    english = catalogue("en")
    assert sorted(used - set(english)) == []
    assert sorted(set(english) - used) == [], "keys no page element uses"


# ---- a CSV of one's own ---------------------------------------------------------------
def _csv(path: Path, features: int, delimiter: str = ";", decimal: str = ",") -> Path:
    rows = [delimiter.join([*(f"x{i + 1}" for i in range(features)), "label"])]
    for k in range(120):
        cells = [f"{((k * (7 + 3 * i)) % 23 - 11) / 5:g}".replace(".", decimal)
                 for i in range(features)]
        rows.append(delimiter.join([*cells, str(int(k * 7 % 23 > 11))]))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@needs_browser
def test_an_uploaded_csv_is_read_shown_and_trained(server: PlayServer, tab: Page,
                                                   tmp_path: Path) -> None:
    page = tab.open(server.url)
    first_frame(page)
    assert by(page, "upload").is_enabled()
    by(page, "upload").set_input_files(str(_csv(tmp_path / "mine.csv", 2)))
    wait_for(page, "() => document.querySelector('[data-testid=upload-info]').textContent"
                   ".startsWith('read mine.csv: 120 rows, 3 columns, header: ')")
    assert "decimal mark ','" in text_of(page, "upload-info")
    assert page.input_value("[data-testid=dataset]") == "upload"
    assert page.locator("[data-testid=dataset] option[value=upload]").text_content() == (
        "your CSV: mine.csv")
    wait_for(page, "() => document.querySelector('[data-testid=step-count]').textContent"
                   " === '0'")
    by(page, "play").click()
    wait_for(page, "() => Number(document.querySelector('[data-testid=step-count]')"
                   ".textContent) >= 50")
    by(page, "pause").click()
    assert page.get_attribute("[data-testid=boundary]", "data-note") is None
    screenshot(page, tmp_path, "play-upload", docs=False)
    # Not a CSV: one line in the page's message area; the session trains on.
    (tmp_path / "notes.txt").write_text("hello\n", encoding="utf-8")
    by(page, "upload").set_input_files(str(tmp_path / "notes.txt"))
    wait_for(page, "() => !document.querySelector('[data-testid=message]').hidden")
    assert text_of(page, "message") == (
        "Your CSV was not used: only CSV files can be uploaded (a name ending in .csv), got "
        "'notes.txt'")
    # Four features: the network trains, the boundary panel says why it draws nothing.
    by(page, "upload").set_input_files(str(_csv(tmp_path / "four.csv", 4, ",", ".")))
    wait_for(page, "() => document.querySelector('[data-testid=boundary]').dataset.note")
    assert "cannot be drawn in more than 2 dimensions" in (
        page.get_attribute("[data-testid=boundary]", "data-note") or "")
    assert page.locator("[data-testid=network] circle.node").count() == 4 + 8 + 8 + 2
    by(page, "step").click()
    wait_for(page, "() => document.querySelector('[data-testid=step-count]').textContent"
                   " === '1'")
    assert tab.problems == []


# ---- the click panels and the vanishing view (issue 16) --------------------------------
def _twin_after(steps: int) -> Any:
    """The page's default network after ``steps`` steps, built here (the oracle's weights)."""
    from gradsight.play.protocol import DEFAULT_CONFIG
    from gradsight.play.sessions import NetworkSession

    twin = NetworkSession(dict(DEFAULT_CONFIG))
    for _ in range(steps):
        assert twin.step()
    return twin


def _step_once(page: Any) -> None:
    first_frame(page)
    by(page, "step").click()
    wait_for(page, "() => document.querySelector('[data-testid=step-count]')"
                   ".textContent === '1'")


@needs_browser
def test_clicking_a_unit_shows_its_ability_to_learn(server: PlayServer, tab: Page,
                                                   tmp_path: Path) -> None:
    import numpy as np

    page = tab.open(server.url)
    _step_once(page)
    assert not by(page, "unit-panel").is_visible()
    page.locator("[data-testid=network] circle[data-layer=dense1][data-unit='3']").click()
    wait_for(page, "() => !document.querySelector('[data-testid=unit-panel]').hidden")
    assert text_of(page, "unit-title").startswith("dense1, neuron 3 (tanh)")
    # the oracle: f′(z) = 1 − tanh²(z) of this unit, recomputed with NumPy from the weights
    twin = _twin_after(1)
    a = twin.split.X_train
    for dense in twin.model.dense_layers[:2]:
        z = a @ dense.W + dense.b
        a = np.tanh(z)
    derivatives = 1 - np.tanh(z[:, 3]) ** 2
    counts = page.get_attribute("[data-testid=unit-histogram]", "data-counts") or ""
    shown = [int(c) for c in counts.split(",")]
    assert sum(shown) == 160 == len(derivatives)
    expected, _ = np.histogram(derivatives, bins=len(shown), range=(0.0, 1.0))
    assert shown == expected.tolist()
    assert page.get_attribute("[data-testid=unit-strip]", "data-samples") == "160"
    values = page.eval_on_selector_all("[data-testid=unit-evidence] dd",
                                       "dds => dds.map(d => d.dataset.value)")
    assert float(values[0]) == pytest.approx(np.mean(derivatives >= 0.01))
    assert float(values[1]) == pytest.approx(derivatives.mean())
    state = by(page, "unit-state").get_attribute("data-state")
    assert state == "learning" and text_of(page, "unit-state").startswith("learning: ")
    screenshot(page, tmp_path, "play-unit")
    by(page, "unit-close").click()
    assert not by(page, "unit-panel").is_visible()
    assert tab.problems == []


@needs_browser
def test_clicking_a_weight_shows_its_chain_rule_checked_against_the_engine(
        server: PlayServer, tab: Page, tmp_path: Path) -> None:
    import copy

    import numpy as np

    page = tab.open(server.url)
    _step_once(page)
    page.locator("[data-testid=network] line[data-layer=dense1][data-row='2'][data-col='5']"
                 ).dispatch_event("click")
    wait_for(page, "() => !document.querySelector('[data-testid=weight-panel]').hidden")
    assert text_of(page, "weight-sample-info").startswith("sample 0: x = (")
    assert text_of(page, "weight-title").startswith("dense1: the weight W[2, 5] = ")
    by(page, "weight-sample").fill("7")
    by(page, "weight-sample").dispatch_event("change")
    wait_for(page, "() => document.querySelector('[data-testid=weight-sample-info]')"
                   ".textContent.startsWith('sample 7:')")
    assert text_of(page, "weight-sample-info").startswith("sample 7: x = (")
    check = by(page, "weight-check")
    assert check.get_attribute("data-matches") == "true"
    assert text_of(page, "weight-check").startswith("matches the engine: yes.")
    factors = page.eval_on_selector_all(
        "[data-testid=weight-factors] tr",
        "rows => rows.map(r => [r.dataset.kind, Number(r.lastChild.dataset.value)])")
    shown = dict(factors)
    assert [kind for kind, _ in factors] == ["input", "carried", "local", "delta", "gradient"]
    # the oracles: the engine's backward on sample 7, and central differences of its cost
    twin = _twin_after(1)
    x, label = twin.split.X_train[7], int(twin.split.y_train[7])
    model = copy.deepcopy(twin.model)
    model.backward(twin.loss.gradient(model.forward(x[None, :]), np.array([label])))
    engine = model.dense_layers[1].grad_W[2, 5]

    def cost(shift: float) -> float:
        probe = copy.deepcopy(twin.model)
        probe.dense_layers[1].W[2, 5] += shift
        return twin.loss.value(probe.predict(x[None, :]), np.array([label]))

    numeric = (cost(1e-6) - cost(-1e-6)) / 2e-6
    assert shown["gradient"] == pytest.approx(engine, rel=1e-9, abs=1e-13)
    assert shown["gradient"] == pytest.approx(numeric, rel=1e-5, abs=1e-9)
    a1 = np.tanh(x @ twin.model.dense_layers[0].W + twin.model.dense_layers[0].b)
    z2 = a1 @ twin.model.dense_layers[1].W + twin.model.dense_layers[1].b
    assert shown["input"] == pytest.approx(a1[2], rel=1e-12)
    assert shown["local"] == pytest.approx(1 - np.tanh(z2[5]) ** 2, rel=1e-9)
    assert shown["input"] * shown["delta"] == pytest.approx(shown["gradient"], rel=1e-12)
    assert "∂C/∂W²[2, 5] = a¹[2] · δ²[5]" in text_of(page, "weight-chain")
    # another sample: the panel follows
    by(page, "weight-sample").fill("8")
    by(page, "weight-sample").dispatch_event("change")
    wait_for(page, "() => document.querySelector('[data-testid=weight-sample-info]')"
                   ".textContent.startsWith('sample 8:')")
    assert by(page, "weight-check").get_attribute("data-matches") == "true"
    screenshot(page, tmp_path, "play-weight")
    assert tab.problems == []


@needs_browser
def test_the_vanishing_view_shows_one_bar_per_layer_and_trains(
        server: PlayServer, tab: Page, tmp_path: Path) -> None:
    from gradsight.lab import nielsen_speeds

    page = tab.open(server.url)
    by(page, "tab-vanishing").click()
    assert by(page, "view-vanishing").is_visible() and not by(page, "view-network").is_visible()
    bars = page.locator("[data-testid=vanishing-bars] rect.speed")
    wait_for(page, "() => document.querySelectorAll("
                   "'[data-testid=vanishing-bars] rect.speed').length === 4")
    assert text_of(page, "vanishing-step") == "0"
    speeds = [float(v) for v in bars.evaluate_all("rs => rs.map(r => r.dataset.value)")]
    lab = nielsen_speeds(hidden=(30,) * 4, seed=0)
    assert speeds == [layer["speed_at_init"] for layer in lab.layers]
    bounds = page.locator("[data-testid=vanishing-bars] rect.bound").evaluate_all(
        "rs => rs.map(r => Number(r.dataset.value))")
    assert bounds == pytest.approx([speeds[-1] * 0.25 ** (3 - l) for l in range(4)])
    # the depth slider: one bar per hidden layer
    by(page, "depth").fill("7")
    wait_for(page, "() => document.querySelectorAll("
                   "'[data-testid=vanishing-bars] rect.speed').length === 7")
    assert text_of(page, "depth-value") == "7"
    assert page.locator("[data-testid=vanishing-table] tr").count() == 1 + 7
    by(page, "depth").fill("2")
    wait_for(page, "() => document.querySelectorAll("
                   "'[data-testid=vanishing-bars] rect.speed').length === 2")
    # live: play, the steps rise and the bars follow
    by(page, "vanishing-play").click()
    wait_for(page, "() => Number(document.querySelector('[data-testid=vanishing-step]')"
                   ".textContent) >= 50")
    by(page, "vanishing-pause").click()
    assert by(page, "vanishing-play").is_enabled()
    init = page.locator("[data-testid=vanishing-bars] rect.init").evaluate_all(
        "rs => rs.map(r => Number(r.dataset.value))")
    now = bars.evaluate_all("rs => rs.map(r => Number(r.dataset.value))")
    assert init == [layer["speed_at_init"] for layer in
                    nielsen_speeds(hidden=(30,) * 2, seed=0).layers]
    assert now != init
    screenshot(page, tmp_path, "play-vanishing")
    assert tab.problems == []
