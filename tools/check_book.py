"""Open every page of the built book in headless Chromium with the network blocked, and report
what a reader without internet would see wrong.

    jupyter-book build . && python tools/check_book.py [--screenshots DIR] [--strict] [--mobile]

Needs Debian's ``chromium`` (``apt-get install chromium``) and ``pip install playwright`` (its
own browser download is not used: Playwright drives ``/usr/bin/chromium``). Per page it checks:

- raw TeX left in the text outside code (``$$``, ``\\(``, ``\\begin{``, ``\\frac`` ...): MathJax
  did not run;
- MyST roles left as text (``{glue:text}``, ``{cite}``, ``{ref}`` ...), in prose or inline code:
  a role wrapped in backticks, or misspelt, is printed instead of what it stands for;
- MathJax error nodes;
- images that did not load, and local files (scripts, styles, fonts) that are missing;
- Markdown tables left as text (a paragraph of ``| ... |`` lines with a ``|---`` rule);
- anything wider than the text column that is not inside a box that scrolls, and a page that
  scrolls sideways;
- at 1280 px, a code cell (input or printed output) whose text scrolls sideways in its box;
- links to a page or anchor of the book that does not exist;
- JavaScript errors;
- requests that needed the network (all blocked here, with no exception: the ipywidgets scripts
  are served from the build's ``_static/widgets``, see ``tools/sphinx_widget_js.py``);
- on a page with saved widget state, widget views that did not render (each view whose model was
  saved must become a widget, e.g. a tqdm progress bar).

A widget output with no text after it in its cell is printed as a note, not counted: readers
without JavaScript see nothing there.

Prints one line per finding and a summary; ``--strict`` exits 1 when there is any finding.
Screenshots of every page go to ``--screenshots`` (default ``_build/screenshots``, ignored by
git with the rest of ``_build/``).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

CHROMIUM = "/usr/bin/chromium"
# Headless, and nothing that phones home: the network is blocked, and these keep Chromium from
# trying (and from needing a sandbox or a GPU in a container).
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
# From this width up, a code cell's text must fit its box (book/_static/arnb.css sizes it to 88
# columns); on a phone it scrolls.
DESKTOP = 1280

CHECKS_JS = r"""
async () => {
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  // MathJax loads deferred: wait for it to exist, then for its first typesetting pass.
  if (document.querySelector('.math')) {
    for (let i = 0; i < 100 && !(window.MathJax && MathJax.startup && MathJax.startup.promise); i++)
      await sleep(100);
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  }
  await Promise.all([...document.images].map(i => i.complete ? null
    : new Promise(r => { i.addEventListener('load', r); i.addEventListener('error', r); })));
  const main = document.querySelector('main') || document.body;
  const skip = 'pre, code, kbd, samp, mjx-container, script, style, textarea, .highlight';
  const tex =
    /\$\$|\\\(|\\\[|\\begin\{|\\end\{|\\frac|\\mathbb|\\mathrm|\\sum_|\\prod_|\\left[(\[|]/;
  const dollar = /\$[^$\s][^$]*[\\_^][^$]*\$/;
  const role = /\{(glue|cite|ref|numref|doc|eq|term|download|math)(:[a-z]+)?\}/;
  const raw = [], roles = [];
  const walker = document.createTreeWalker(main, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (!node.parentElement) continue;
    const t = node.textContent;
    // code cells (pre) may show the syntax on purpose; inline code and prose never do
    if (role.test(t) && !node.parentElement.closest('pre, script, style, textarea'))
      roles.push(t.trim().slice(0, 70));
    if (node.parentElement.closest(skip)) continue;
    if (tex.test(t) || dollar.test(t)) raw.push(t.trim().slice(0, 70));
  }
  const images = [...document.images]
    .filter(i => !(i.complete && i.naturalWidth > 0))
    .map(i => (i.getAttribute('src') || '').slice(0, 90));
  const pipeTables = [...main.querySelectorAll('p, li')]
    .filter(p => /\|\s*:?-{3,}/.test(p.textContent) && /^\s*\|/.test(p.textContent)).length;
  const column = main.querySelector('article') || main;
  const right = column.getBoundingClientRect().right + 1;
  const wide = [];
  for (const el of column.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.right <= right) continue;
    if (getComputedStyle(el).visibility === 'hidden') continue;
    let scrolls = false;
    for (let a = el.parentElement; a && a !== column; a = a.parentElement) {
      const style = getComputedStyle(a);
      if (/(auto|scroll|hidden)/.test(style.overflowX) &&
          a.getBoundingClientRect().right <= right) {
        scrolls = true;
        break;
      }
    }
    if (!scrolls && !wide.includes(el.parentElement)) wide.push(el);
  }
  // Widget views: the HTML manager renders each one whose model was saved into a
  // .widget-subarea just before its script, after the page's load event; wait for it.
  const views = [...document.querySelectorAll(
    'script[type="application/vnd.jupyter.widget-view+json"]')];
  const saved = new Set();
  for (const s of document.querySelectorAll(
    'script[type="application/vnd.jupyter.widget-state+json"]')) {
    try { Object.keys(JSON.parse(s.textContent).state || {}).forEach(k => saved.add(k)); }
    catch (e) {}
  }
  const expected = views.filter(v => { try { return saved.has(JSON.parse(v.textContent).model_id); }
                                       catch (e) { return false; } });
  const isRendered = v => { const p = v.previousElementSibling;
    return !!(p && p.classList.contains('widget-subarea') &&
      p.querySelector('.jupyter-widgets')); };
  for (let i = 0; i < 150 && expected.some(v => !isRendered(v)); i++) await sleep(100);
  const scroller = document.scrollingElement || document.documentElement;
  // Code cells (input and output) whose text scrolls sideways inside their box.
  const codeScrolls = [...main.querySelectorAll('div.cell_input pre, div.cell_output pre')]
    .filter(p => p.clientWidth > 0 && p.scrollWidth > p.clientWidth + 1)
    .map(p => Math.max(...p.innerText.split('\n').map(l => l.length)));
  // Widget outputs: is there visible text after the widget in the same cell's outputs?
  const bareWidgets = views.filter(v => {
    const cell = v.closest('.cell_output') || v.parentElement;
    const after = [...cell.querySelectorAll('.output')].filter(o =>
      o.compareDocumentPosition(v) & Node.DOCUMENT_POSITION_PRECEDING);
    return !after.some(o => o.innerText.trim());
  }).length;
  return {
    raw,
    roles,
    mathErrors: document.querySelectorAll('mjx-merror, .MathJax_Error').length,
    images,
    pipeTables,
    wide: wide.map(e => e.tagName.toLowerCase() + (e.className && typeof e.className === 'string'
      ? '.' + e.className.split(' ')[0] : '')),
    sideways: scroller.scrollWidth - window.innerWidth,
    codeScrolls,
    links: [...new Set([...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href')))],
    widgets: views.length,
    widgetsSaved: expected.length,
    widgetsRendered: expected.filter(isRendered).length,
    progressBars: document.querySelectorAll(
      '.widget-subarea .widget-hprogress, .widget-subarea .widget-vprogress').length,
    bareWidgets,
  };
}
"""


@dataclass
class Report:
    """What the check found: ``findings`` fail ``--strict``, ``notes`` are printed only."""

    pages: int = 0
    findings: list[tuple[str, str]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)


def _anchor_ids(path: Path, cache: dict) -> set[str]:
    if path not in cache:
        text = path.read_text(errors="replace")
        cache[path] = set(re.findall(r'\s(?:id|name)="([^"]+)"', text))
    return cache[path]


def broken_links(page: Path, root: Path, links: list[str], cache: dict) -> list[str]:
    """Links to a file or anchor of the book that does not exist (other sites are not tried)."""
    bad = []
    for href in links:
        url = urlparse(href)
        if url.scheme or href.startswith("//"):
            continue
        target = page if not url.path else (page.parent / unquote(url.path)).resolve()
        if target.is_dir():
            target = target / "index.html"
        if not target.exists() or root not in target.parents:
            bad.append(href)
        elif url.fragment and target.suffix == ".html":
            if unquote(url.fragment) not in _anchor_ids(target, cache):
                bad.append(href)
    return bad


def book_pages(root: Path) -> list[Path]:
    """Every page of the build (not the index redirect, the search page or the general index)."""
    return sorted(
        p
        for p in root.rglob("*.html")
        if not {"_static", "_sources", "_images"} & set(p.relative_to(root).parts)
        and p.name not in {"genindex.html", "search.html"}
        and p != root / "index.html"
    )


def _redirect_target(root: Path) -> list[str]:
    index = root / "index.html"
    if not index.exists():
        return []
    match = re.search(r'http-equiv="refresh"[^>]*url=([^"]+)"', index.read_text(errors="replace"))
    return [match.group(1)] if match else []


def check_site(
    root: Path,
    screenshots: Path | None = None,
    chromium: str = CHROMIUM,
    widths: tuple[int, ...] = (1280,),
    log=print,
    only: list[str] | None = None,
) -> Report:
    """Open every page of the HTML build under ``root`` (or the ``only`` ones) at each width;
    return what was found."""
    from playwright.sync_api import sync_playwright

    root = root.resolve()
    report, cache = Report(), {}
    pages = book_pages(root)
    if only:
        pages = [p for p in pages if str(p.relative_to(root)) in only]
    report.pages = len(pages)
    for href in broken_links(root / "index.html", root, _redirect_target(root), cache):
        report.findings.append(("index.html", f"redirects to a missing page: {href}"))
    if screenshots is not None:
        screenshots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        for width in widths:
            context = browser.new_context(
                viewport={"width": width, "height": 900}, service_workers="block"
            )
            for page_path in pages:
                name = str(page_path.relative_to(root))
                if len(widths) > 1:
                    name += f" @{width}px"
                found, noted = _check_page(context, page_path, root, cache, screenshots, width)
                report.findings += [(name, f) for f in found]
                report.notes += [(name, n) for n in noted]
                for f in found:
                    log(f"{name}: {f}")
            context.close()
        browser.close()
    return report


def _check_page(context, page_path, root, cache, screenshots, width):
    page = context.new_page()
    page.set_default_timeout(60_000)
    blocked, missing, errors = [], [], []

    def route(r, request):
        if request.url.startswith(("file:", "data:", "blob:")):
            r.continue_()
        else:
            blocked.append(request.url)
            r.abort()

    page.route("**/*", route)
    page.on(
        "requestfailed",
        lambda req: missing.append(req.url) if req.url.startswith("file:") else None,
    )
    page.on("pageerror", lambda exc: errors.append(str(exc)[:120]))
    page.goto(page_path.as_uri(), wait_until="load")
    result = page.evaluate(CHECKS_JS)
    found, noted = [], []
    if result["raw"]:
        found.append(f"raw TeX ({len(result['raw'])}): {result['raw'][:2]}")
    if result["roles"]:
        found.append(f"MyST roles left as text ({len(result['roles'])}): {result['roles'][:2]}")
    if result["mathErrors"]:
        found.append(f"{result['mathErrors']} MathJax errors")
    if result["images"]:
        found.append(f"images not loaded: {result['images'][:3]}")
    if missing:
        found.append(f"missing local files: {[u.rsplit('/', 1)[-1] for u in missing[:4]]}")
    if result["pipeTables"]:
        found.append(f"{result['pipeTables']} Markdown tables left as text")
    if result["wide"]:
        found.append(f"{len(result['wide'])} wider than the column: {result['wide'][:4]}")
    if result["codeScrolls"] and width >= DESKTOP:
        found.append(
            f"code cells that scroll sideways at {width} px: {len(result['codeScrolls'])} "
            f"(longest lines: {sorted(result['codeScrolls'], reverse=True)[:4]} characters)"
        )
    if result["sideways"] > 1:
        found.append(f"the page scrolls sideways by {result['sideways']} px")
    bad = broken_links(page_path, root, result["links"], cache)
    if bad:
        found.append(f"broken internal links: {bad[:4]}")
    if errors:
        found.append(f"JavaScript errors: {errors[:2]}")
    if blocked:
        hosts = sorted({urlparse(u).netloc or u[:40] for u in blocked})
        found.append(f"{len(blocked)} requests needed the network: {hosts[:4]}")
    if result["widgets"] and WIDGET_STATE not in page_path.read_text(errors="replace"):
        found.append(f"{result['widgets']} widget views but no saved widget state")
    elif result["widgets"] and not result["widgetsSaved"]:
        found.append(f"none of the {result['widgets']} widget views has its model saved")
    elif result["widgetsRendered"] < result["widgetsSaved"]:
        found.append(
            f"{result['widgetsSaved'] - result['widgetsRendered']} of {result['widgetsSaved']} "
            "saved widget views did not render"
        )
    elif result["widgets"]:
        noted.append(
            f"{result['widgetsRendered']} widgets rendered ({result['progressBars']} progress "
            f"bars); {result['widgets'] - result['widgetsSaved']} views without a saved model"
        )
    if result["bareWidgets"]:
        noted.append(
            f"{result['bareWidgets']} of {result['widgets']} widget outputs have no text after "
            "them (readers without JavaScript see nothing there)"
        )
    if screenshots is not None:
        stem = str(page_path.relative_to(root)).replace("/", "__").removesuffix(".html")
        shot = screenshots / (stem + ("" if width == 1280 else f"@{width}") + ".png")
        page.screenshot(path=str(shot), full_page=True)
    page.close()
    return found, noted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--html", type=Path, default=Path("_build/html"))
    parser.add_argument("--screenshots", type=Path, default=Path("_build/screenshots"))
    parser.add_argument("--chromium", default=CHROMIUM)
    parser.add_argument("--strict", action="store_true", help="exit 1 on any finding")
    parser.add_argument(
        "--mobile", action="store_true", help="also check every page at a phone's width (390 px)"
    )
    parser.add_argument("--only", nargs="*", help="check only these pages (paths in the build)")
    args = parser.parse_args(argv)
    if not book_pages(args.html.resolve()):
        print(f"no pages under {args.html}: build the book first", file=sys.stderr)
        return 2
    t0 = time.time()
    widths = (1280, 390) if args.mobile else (1280,)
    report = check_site(args.html, args.screenshots, args.chromium, widths, only=args.only)
    for name, note in report.notes:
        print(f"{name}: note: {note}")
    print(
        f"{report.pages} pages at {', '.join(f'{w} px' for w in widths)}: "
        f"{len(report.findings)} findings, {len(report.notes)} notes "
        f"in {time.time() - t0:.0f} s; screenshots in {args.screenshots}"
    )
    return 1 if (args.strict and report.findings) else 0


if __name__ == "__main__":
    sys.exit(main())
