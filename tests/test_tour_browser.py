"""The tour page in a real browser: headless Chromium loads DIR/index.html from disk.

No Python dependency: Chromium runs with ``--dump-dom``; the page's own self-check script
(see gradsight.present.tour._page) writes what it saw after ``load`` — images decoded
(``naturalWidth > 0``), section ids, errors caught by ``window.onerror``, ``console.error`` and
the page's Content-Security-Policy — into ``<pre id="selfcheck">``, and every console message
Chromium logs on stderr (``CONSOLE`` lines) is a second, independent net. Negative controls
(a corrupted image, a script error, an external resource) prove the check can fail.
"""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import pytest

from _bounded import run_bounded
from gradsight.present.tour import SECTION_IDS, run_tour

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip(
        "headless Chromium not found (no `chromium` or `chromium-browser` on PATH); "
        "install Debian's chromium package — `make test` does it where apt is available",
        allow_module_level=True,
    )

_SELFCHECK = re.compile(r'<pre id="selfcheck"[^>]*data-status="(\w+)"[^>]*>(.*?)</pre>', re.S)
_CONSOLE = re.compile(r"^.*:CONSOLE[:(].*$", re.M)


def load_in_chromium(page: Path, profile: Path) -> tuple[str, dict, list[str]]:
    """Open ``page`` (file:// URL) headless; return (status, self-check report, console lines)."""
    command = [
        CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-extensions", f"--user-data-dir={profile}",
        "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000",
        "--dump-dom", page.resolve().as_uri(),
    ]
    done = run_bounded(command, timeout=90)
    assert done.returncode == 0, f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    match = _SELFCHECK.search(done.stdout)
    assert match, "the dumped DOM has no #selfcheck element"
    status, text = match.group(1), html.unescape(match.group(2))
    report = json.loads(text) if text.strip() else {}
    return status, report, _CONSOLE.findall(done.stderr)


@pytest.fixture(scope="module")
def tour_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("browser") / "tour"
    run_tour(out, quick=True, progress=False)
    return out


def test_page_loads_cleanly_in_chromium(tour_dir: Path, tmp_path: Path) -> None:
    page = tour_dir / "index.html"
    n_img_tags = len(re.findall(r"<img\b", page.read_text(encoding="utf-8")))
    status, report, console = load_in_chromium(page, tmp_path / "profile")
    assert console == [], f"console messages while loading the page: {console}"
    assert report["errors"] == [], report["errors"]
    assert report["broken"] == [], f"images that did not load: {report['broken']}"
    assert report["images"] == n_img_tags >= len(SECTION_IDS)
    assert report["loaded"] == report["images"]
    assert report["sections"] == SECTION_IDS
    assert status == "ok"


def _corrupt_first_image(text: str) -> str:
    start = text.index("data:image/png;base64,") + len("data:image/png;base64,")
    return text[:start] + "AAAA" * 16 + text[start + 64:]


def test_check_catches_a_broken_image(tour_dir: Path, tmp_path: Path) -> None:
    # Negative control: the same page with one corrupted data URI must fail the check.
    bad = tour_dir / "broken-image.html"
    bad.write_text(_corrupt_first_image((tour_dir / "index.html").read_text("utf-8")), "utf-8")
    status, report, _ = load_in_chromium(bad, tmp_path / "profile")
    assert status == "fail"
    assert report["loaded"] == report["images"] - 1
    assert len(report["broken"]) == 1 and report["broken"][0].startswith("figures/")


def test_check_catches_script_errors_and_external_resources(tour_dir: Path,
                                                            tmp_path: Path) -> None:
    # Negative control: an uncaught error and an external image (blocked: the page must load
    # nothing from outside) are both reported, by the page and on Chromium's console.
    text = (tour_dir / "index.html").read_text("utf-8")
    injected = ('<img src="https://example.invalid/x.png" alt="external">'
                "<script>notDefinedAnywhere();</script></main>")
    bad = tour_dir / "bad-script.html"
    bad.write_text(text.replace("</main>", injected, 1), "utf-8")
    status, report, console = load_in_chromium(bad, tmp_path / "profile")
    assert status == "fail"
    assert any("notDefinedAnywhere" in e for e in report["errors"])
    assert any("security policy" in e for e in report["errors"])
    assert any("notDefinedAnywhere" in line for line in console)
    assert report["sections"] == SECTION_IDS
