"""tools/check_book.py, the browser check of the built book, finds what it claims to find.

A small site of hand-written pages, each with known faults, is opened in headless Chromium with
the network blocked (as ``.ci/run`` does to the real build). Skipped where Debian's chromium or
the playwright package is missing; ``.ci/run`` installs both.
"""

import base64
import shutil
from pathlib import Path

import check_book
import pytest

pytestmark = [
    pytest.mark.skipif(
        not Path(check_book.CHROMIUM).exists() and shutil.which("chromium") is None,
        reason="no chromium (apt-get install chromium)",
    ),
]

WIDGET_STATE = (
    "<script type='application/vnd.jupyter.widget-state+json'>"
    '{"version_major": 2, "version_minor": 0, "state": {"m": {}}}</script>'
)
# myst-nb's default, before tools/sphinx_widget_js.py served the bundle from _static.
CDN_EMBED = "https://cdn.jsdelivr.net/npm/@jupyter-widgets/html-manager@1.0.6/dist/embed-amd.js"

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+"
    "M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def page(body: str, head: str = "") -> str:
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'>{head}"
        "<style>body{margin:0} main{width:800px} article{width:700px}</style></head>"
        f"<body><main><article>{body}</article></main></body></html>"
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    pytest.importorskip("playwright.sync_api")
    site = tmp_path_factory.mktemp("site")
    (site / "_images").mkdir()
    (site / "_images" / "dot.png").write_bytes(PNG)
    (site / "index.html").write_text('<meta http-equiv="refresh" content="0; url=clean.html" />')
    pages = {
        "clean.html": page(
            '<h1 id="top">Clean</h1><p>Prose with a <a href="other.html#there">link</a>, a'
            ' <a href="#top">self link</a> and an <a href="https://example.org">outside'
            " link</a> (not followed). Money: $5 and $10.</p>"
            '<img src="_images/dot.png" alt="dot">'
            '<div class="highlight" style="overflow-x:auto"><pre style="width:3000px">'
            r"code may hold $$x$$ and \frac{a}{b}, and be wide: it scrolls</pre></div>"
        ),
        "other.html": page('<h2 id="there">There</h2><p>Nothing wrong here.</p>'),
        "tex.html": page(r"<p>Raw maths: $$p(x) = \prod_i p(x_i)$$</p><p>x</p>"),
        "inline.html": page(r"<p>MathJax never ran on \(x_{&lt;i}\) here.</p>"),
        # a glue role wrapped in backticks: MyST prints the role as inline code
        "role.html": page(
            "<p>profile <code class='docutils literal'><span class='pre'>{glue:text}</span>"
            "</code>ch05_profile``</p><pre>glue roles shown on purpose: {glue:text}`key`</pre>"
        ),
        "merror.html": page("<p><mjx-container><mjx-merror>Undefined</mjx-merror>"),
        "image.html": page('<img src="_images/missing.png" alt="gone">'),
        "table.html": page("<p>| model | nats |<br>|---|---|<br>| a | 1.0 |</p>"),
        "wide.html": page('<div style="width:2000px">too wide</div>'),
        # a code cell as myst-nb renders one, its line too long for the box: it scrolls
        "code.html": page(
            '<div class="cell_input"><div class="highlight" style="overflow-x:auto">'
            f"<pre>x = {'1 + ' * 60}1</pre></div></div>"
        ),
        "links.html": page(
            '<a href="nowhere.html">a</a> <a href="other.html#not-there">b</a>'
            ' <a href="#missing">c</a>'
        ),
        "network.html": page("<p>x</p>", '<script src="https://example.org/lib.js"></script>'),
        "missing.html": page("<p>x</p>", '<link rel="stylesheet" href="_static/gone.css">'),
        "error.html": page("<p>x</p><script>noSuchFunction()</script>"),
        # As the HTML manager leaves a rendered view: its widget in a .widget-subarea before it.
        "widgets.html": page(
            "<div class='cell_output'><div class='widget-subarea'><div class='jupyter-widgets"
            " widget-hprogress'></div></div><script type='application/vnd.jupyter.widget-view"
            '+json\'>{"model_id": "m"}</script></div>' + WIDGET_STATE
        ),
        "widgets_not_rendered.html": page(
            "<div class='cell_output'><script type='application/vnd.jupyter.widget-view+json'>"
            '{"model_id": "m"}</script></div>' + WIDGET_STATE
        ),
        "widgets_from_a_cdn.html": page(
            "<p>x</p>", f'<script src="{CDN_EMBED}"></script>' + WIDGET_STATE
        ),
    }
    for name, html in pages.items():
        (site / name).write_text(html)
    shots = tmp_path_factory.mktemp("shots")
    result = check_book.check_site(site, shots, log=lambda *a: None)
    result.shots = shots
    return result


def found(report, name):
    return [f for page, f in report.findings if page == name]


def test_a_clean_page_has_no_findings_and_every_page_a_screenshot(report):
    assert report.pages == 17
    assert found(report, "clean.html") == [] and found(report, "other.html") == []
    assert len(list(report.shots.glob("*.png"))) == 17


@pytest.mark.parametrize(
    "name, what",
    [
        ("tex.html", "raw TeX"),
        ("inline.html", "raw TeX"),
        ("role.html", "MyST roles left as text (1)"),
        ("merror.html", "MathJax errors"),
        ("image.html", "images not loaded"),
        ("table.html", "Markdown tables left as text"),
        ("wide.html", "wider than the column"),
        ("code.html", "scroll sideways at 1280 px: 1 (longest lines: [245]"),
        ("network.html", "requests needed the network"),
        ("missing.html", "missing local files"),
        ("error.html", "JavaScript errors"),
        ("widgets_from_a_cdn.html", "requests needed the network"),
        ("widgets_not_rendered.html", "1 of 1 saved widget views did not render"),
    ],
)
def test_each_fault_is_found(report, name, what):
    assert any(what in f for f in found(report, name)), found(report, name)


def test_broken_links_and_anchors_are_found(report):
    (finding,) = [f for f in found(report, "links.html") if "broken internal links" in f]
    for href in ("nowhere.html", "other.html#not-there", "#missing"):
        assert href in finding


def test_a_page_whose_widgets_rendered_has_no_findings(report):
    assert found(report, "widgets.html") == []
    notes = [n for page, n in report.notes if page == "widgets.html"]
    assert any("1 widgets rendered (1 progress bars)" in n for n in notes), report.notes
    assert any("1 of 1 widget outputs have no text after them" in n for n in notes)
