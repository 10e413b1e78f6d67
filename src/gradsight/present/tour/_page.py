"""The tour's page: one self-contained HTML file (Jinja2).

Figures are embedded as PNG data URIs, the style sheet and the only script are inline, and
a Content-Security-Policy forbids loading anything else, so the page opens offline from disk
with nothing to fetch. The small script at the top of the page checks the page itself once it
has loaded — every image decoded (``naturalWidth > 0``), no error reported — and writes the
result into a hidden ``<pre id="selfcheck">`` that the browser test reads back.
"""

from __future__ import annotations

import base64
import re
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

from ... import __version__
from ._base import Section

_CODE_SPAN = re.compile(r"`([^`]+)`")

#: the articles gradsight retells, each named once by language and subject, with what of it
#: the tour runs (the sections then say "the article on …")
ARTICLES = (
    "the Italian article on the sigmoid's derivative and the same article in Spanish "
    "(σ′ = σ(1 − σ), derived two ways, and why backpropagation uses that form)",
    "the Spanish question-and-answer article on the derivative in training and its answers "
    "in Indonesian (a forward difference with h = 1e-13, gradient descent on "
    "y = x² − 4x + 6 from x = 8 with η = 0.1, one sigmoid neuron by the chain rule, and a "
    "neuron's derivative as its ability to learn)",
    "the Italian article on the vanishing gradient (σ′ ≤ 0.25 multiplied layer after layer "
    "in deep sigmoid networks, dead ReLU units, and the fixes: ReLU, leaky ReLU, weight "
    "initialisation)",
)
_NUMBER = re.compile(r"^[−+-]?(\d[\d.,]*(e[−+-]?\d+)?|nan|inf|—)(, [−+-]?\d[\d.]*(e[−+-]?\d+)?)*$")


def cell_class(text: object) -> Markup:
    """`` class="num"`` for a cell that is a number (right-aligned), else nothing."""
    return Markup(' class="num"') if _NUMBER.match(str(text).strip()) else Markup("")


def inline_markup(text: str) -> Markup:
    """Escape ``text``; a span between backticks becomes ``<code>``."""
    escaped = str(escape(text))
    return Markup(_CODE_SPAN.sub(r"<code>\1</code>", escaped))


def png_data_uri(path: Path) -> tuple[str, int, int]:
    """The PNG at ``path`` as a ``data:`` URI, with its width and height in pixels."""
    data = path.read_bytes()
    width, height = struct.unpack(">II", data[16:24])
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii"), width, height


# Nothing but the page itself: images only as data: URIs, inline style and script.
_POLICY = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
           "script-src 'unsafe-inline'")

_STYLE = """
:root { --ink:#1d2430; --muted:#5b6577; --line:#d9dee7; --accent:#2f6fdd; --soft:#f4f6fa; }
* { box-sizing: border-box; }
body { margin:0; font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--ink); background: #fff; }
main { max-width: 1000px; margin: 0 auto; padding: 1.5rem 1.25rem 4rem; }
header h1 { margin: .2rem 0 .3rem; font-size: 2rem; }
header p { color: var(--muted); margin: .3rem 0; }
nav ol { columns: 2; padding-left: 1.4rem; }
nav a, a { color: var(--accent); }
.notice { background: #fff6d6; border: 1px solid #ecd48a; padding: .6rem .9rem;
          border-radius: 6px; }
section { border-top: 1px solid var(--line); margin-top: 2.2rem; padding-top: .6rem; }
section h2 { font-size: 1.45rem; margin: .6rem 0 .2rem; }
.headline { font-weight: 600; background: var(--soft); padding: .45rem .8rem;
            border-left: 4px solid var(--accent); border-radius: 3px; }
figure { margin: 1.2rem 0; text-align: center; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: var(--muted); font-size: .92rem; margin-top: .3rem; }
.table-wrap { overflow-x: auto; margin: 1rem 0; }
table { border-collapse: collapse; font-size: .9rem; min-width: 40%; }
caption { text-align: left; font-weight: 600; padding: .2rem 0 .4rem; }
th, td { border: 1px solid var(--line); padding: .25rem .6rem; text-align: left;
         font-variant-numeric: tabular-nums; vertical-align: top; }
th { background: var(--soft); }
td.num { text-align: right; white-space: nowrap; }
.note { color: var(--muted); font-size: .88rem; margin: .2rem 0 0; }
pre { background: #1e2430; color: #e8edf6; padding: .7rem .9rem; border-radius: 6px;
      overflow-x: auto; font-size: .88rem; white-space: pre-wrap; overflow-wrap: anywhere; }
code { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; }
p code { background: var(--soft); padding: 0 .25rem; border-radius: 3px; }
.files { color: var(--muted); font-size: .9rem; }
footer { margin-top: 3rem; color: var(--muted); font-size: .9rem; }
"""

# Runs first, so it sees every error of the page; reports into #selfcheck after `load`.
_SELFCHECK = """
(function () {
  var errors = [];
  window.addEventListener("error", function (e) {
    var t = e.target;
    if (t && t !== window && t.tagName) { errors.push("failed to load <" + t.tagName + ">"); }
    else { errors.push(String(e.message || "error")); }
  }, true);
  document.addEventListener("securitypolicyviolation", function (e) {
    errors.push("blocked by the page's security policy: " + e.blockedURI);
  });
  var consoleError = console.error;
  console.error = function () {
    errors.push(Array.prototype.join.call(arguments, " "));
    return consoleError.apply(console, arguments);
  };
  window.addEventListener("load", function () {
    var images = Array.prototype.slice.call(document.images);
    var broken = images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
    var ids = Array.prototype.map.call(document.querySelectorAll("main > section[id]"),
                                       function (s) { return s.id; });
    var report = {images: images.length, loaded: images.length - broken.length,
                  broken: broken.map(function (i) { return i.getAttribute("data-file"); }),
                  sections: ids, errors: errors};
    var out = document.getElementById("selfcheck");
    out.textContent = JSON.stringify(report);
    out.setAttribute("data-status", broken.length === 0 && errors.length === 0 ? "ok" : "fail");
  });
})();
"""

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{{ policy }}">
<title>gradsight tour — how gradients flow, from σ′ to the doctor</title>
<link rel="icon" href="data:,">
<style>{{ style }}</style>
<script>{{ selfcheck }}</script>
</head>
<body>
<main>
<header>
<h1>The gradsight tour</h1>
<p>The story of the articles, run and explained: the sigmoid and its derivative, numeric
derivatives, gradient descent, one neuron's chain rule, the vanishing gradient, and the states
of a network's neurons — every number below computed by gradsight's tested functions in this run,
every figure drawn from those numbers, every step reproducible with the command under it.</p>
<p id="articles">gradsight retells five short articles and runs what they describe:
{{ articles }}. Below, "the article on …" names one of them by its subject.</p>
<p>Generated by gradsight {{ version }} in {{ "%.1f"|format(seconds) }} s
({{ "quick" if quick else "full" }} mode). Reproduce the whole page:
<code>{{ tour_command }}</code></p>
{% if quick %}<p class="notice"><strong>Quick mode:</strong> this page was made with
<code>--quick</code> — smaller sample counts, fewer epochs and random seeds — so its training
numbers are rougher than a full run's. Run <code>gradsight tour</code> without
<code>--quick</code> for the full-size figures.</p>{% endif %}
<nav><ol>{% for s in sections %}<li><a href="#{{ s.id }}">{{ s.title }}</a></li>
{% endfor %}</ol></nav>
</header>
{% for s in sections %}
<section id="{{ s.id }}">
<h2>{{ loop.index }}. {{ s.title }}</h2>
{% if s.headline %}<p class="headline">{{ s.headline }}</p>{% endif %}
{% for p in s.paragraphs %}<p>{{ p|markup }}</p>
{% endfor %}
{% for f in s.figures %}<figure>
<img src="{{ images[f.path].uri }}" width="{{ images[f.path].width }}"
     height="{{ images[f.path].height }}" alt="{{ f.caption }}" data-file="{{ f.path }}">
<figcaption>{{ f.caption }}</figcaption>
</figure>
{% endfor %}
{% for t in s.tables %}<div class="table-wrap"><table>
<caption>{{ t.caption }}</caption>
<thead><tr>{% for c in t.columns %}<th>{{ c }}</th>{% endfor %}</tr></thead>
<tbody>{% for row in t.rows %}<tr>
{% for cell in row %}<td{{ cell|cell_class }}>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</tbody>
</table>{% if t.note %}<p class="note">{{ t.note }}</p>{% endif %}</div>
{% endfor %}
<h3>Reproduce this step</h3>
<pre><code>{% for line in s.command_lines %}$ {{ line }}
{% endfor %}</code></pre>
<p class="files">The numbers of this step: <a href="{{ s.json_path }}">{{ s.json_path }}</a>
{%- if s.figures %} · figures: {% for f in s.figures -%}
<a href="{{ f.path }}">{{ f.path }}</a>{{ ", " if not loop.last }}{% endfor %}{% endif %}
· computed in {{ "%.1f"|format(s.seconds) }} s</p>
</section>
{% endfor %}
<footer>
<p>Made with gradsight {{ version }} — derive, check, see and fix how gradients flow through a
neural network. Reference values that are not computed here (Nielsen's MNIST figures) are
labelled as published figures.</p>
</footer>
<pre id="selfcheck" hidden data-status="pending"></pre>
</main>
</body>
</html>
"""


def render_page(
    sections: Sequence[Section],
    out_dir: Path,
    *,
    quick: bool,
    seconds: float,
    tour_command: str,
) -> str:
    """The HTML text of the tour page; figures are read from ``out_dir`` and embedded."""
    from jinja2 import Environment

    env = Environment(autoescape=True, trim_blocks=False, lstrip_blocks=False)
    env.filters["markup"] = inline_markup
    env.filters["cell_class"] = cell_class
    images: dict[str, dict[str, Any]] = {}
    for section in sections:
        for figure in section.figures:
            uri, width, height = png_data_uri(out_dir / figure.path)
            images[figure.path] = {"uri": uri, "width": width, "height": height}
    template = env.from_string(_TEMPLATE)
    return template.render(
        sections=sections, images=images, quick=quick, seconds=seconds, version=__version__,
        tour_command=tour_command, style=Markup(_STYLE), selfcheck=Markup(_SELFCHECK),
        articles="; ".join(ARTICLES[:-1]) + "; and " + ARTICLES[-1],
        policy=_POLICY,
    )
