"""Open every page of the built book in headless Chromium with the network blocked, and report
what a reader without internet would see wrong.

    jupyter-book build . && python tools/check_book.py [--screenshots DIR] [--strict]

Needs Debian's ``chromium`` (``apt-get install chromium``) and ``pip install playwright`` (its
own browser download is not used). Per page it checks:

- raw TeX left in the text outside code (``$$``, ``\\begin{``, ``\\frac``): MathJax did not run;
- MathJax error nodes;
- images that did not load;
- Markdown tables left as text (a paragraph of ``| ... |`` lines with a ``|---`` rule);
- anything wider than the text column that is not inside a scrollable box;
- internal links to a page or anchor that does not exist;
- requests that needed the network (blocked here).

Prints one line per finding and a summary; ``--strict`` exits 1 when there is any finding.
Screenshots of every page go to ``--screenshots`` (default ``_build/screenshots``, ignored).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

CHECKS_JS = r"""
async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const main = document.querySelector('main') || document.body;
  const skip = 'pre, code, mjx-container, script, style, .highlight, .cell_output, .output';
  const raw = [];
  const walker = document.createTreeWalker(main, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (!node.parentElement || node.parentElement.closest(skip)) continue;
    const t = node.textContent;
    if (/\$\$|\\begin\{|\\frac|\\mathbb|\\sum_/.test(t)) raw.push(t.trim().slice(0, 70));
  }
  const images = [...document.images]
    .filter(i => !(i.complete && i.naturalWidth > 0))
    .map(i => (i.getAttribute('src') || '').slice(0, 90));
  const pipeTables = [...main.querySelectorAll('p')]
    .filter(p => /\|\s*-{3,}/.test(p.textContent) && /^\s*\|/.test(p.textContent)).length;
  const column = main.querySelector('article') || main;
  const right = column.getBoundingClientRect().right + 1;
  const wide = [];
  for (const el of column.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.right <= right) continue;
    let scrolls = false;
    for (let a = el.parentElement; a && a !== column; a = a.parentElement) {
      const style = getComputedStyle(a);
      if (/(auto|scroll|hidden)/.test(style.overflowX) && a.getBoundingClientRect().right <= right) {
        scrolls = true;
        break;
      }
    }
    if (!scrolls) {
      const parentWide = el.parentElement && el.parentElement.getBoundingClientRect().right > right
        && wide.includes(el.parentElement);
      if (!parentWide) wide.push(el);
    }
  }
  const links = [...main.querySelectorAll('a[href]')].map(a => a.getAttribute('href'));
  return {
    raw,
    mathErrors: document.querySelectorAll('mjx-merror').length,
    images,
    pipeTables,
    wide: wide.map(e => e.tagName.toLowerCase() + (e.className ? '.' + String(e.className)
      .split(' ')[0] : '')).slice(0, 10),
    wideCount: wide.length,
    links,
  };
}
"""


def _anchor_ids(path: Path, cache: dict) -> set[str]:
    if path not in cache:
        import re

        text = path.read_text(errors="replace")
        cache[path] = set(re.findall(r'\sid="([^"]+)"', text))
    return cache[path]


def broken_links(page: Path, root: Path, links: list[str], cache: dict) -> list[str]:
    """Internal links whose file or anchor is missing."""
    bad = []
    for href in links:
        url = urlparse(href)
        if url.scheme or href.startswith("//") or href.startswith("mailto:"):
            continue
        target = page if not url.path else (page.parent / unquote(url.path)).resolve()
        if target.is_dir():
            target = target / "index.html"
        if not target.exists() or root not in target.parents:
            bad.append(href)
        elif url.fragment and url.fragment not in _anchor_ids(target, cache):
            bad.append(href)
    return bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--html", type=Path, default=Path("_build/html"))
    parser.add_argument("--screenshots", type=Path, default=Path("_build/screenshots"))
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--strict", action="store_true", help="exit 1 on any finding")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    root = args.html.resolve()
    pages = sorted(
        p
        for p in root.rglob("*.html")
        if not {"_static", "_sources", "_images"} & set(p.relative_to(root).parts)
        and p.name not in {"genindex.html", "search.html"}
        and p != root / "index.html"  # a redirect to the first page
    )
    if not pages:
        print(f"no pages under {root}: build the book first", file=sys.stderr)
        return 2
    args.screenshots.mkdir(parents=True, exist_ok=True)
    findings, cache = 0, {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=args.chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        for page_path in pages:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            blocked: list[str] = []

            def route(r, request, blocked=blocked):
                if request.url.startswith("file:"):
                    r.continue_()
                else:
                    blocked.append(request.url)
                    r.abort()

            page.route("**/*", route)
            page.goto(page_path.as_uri(), wait_until="load")
            result = page.evaluate(CHECKS_JS)
            name = str(page_path.relative_to(root))
            problems = []
            if result["raw"]:
                problems.append(f"raw TeX ({len(result['raw'])}): {result['raw'][:2]}")
            if result["mathErrors"]:
                problems.append(f"{result['mathErrors']} MathJax errors")
            if result["images"]:
                problems.append(f"images not loaded: {result['images'][:3]}")
            if result["pipeTables"]:
                problems.append(f"{result['pipeTables']} Markdown tables left as text")
            if result["wideCount"]:
                problems.append(
                    f"{result['wideCount']} wider than the column: {result['wide'][:4]}"
                )
            bad = broken_links(page_path, root, result["links"], cache)
            if bad:
                problems.append(f"broken internal links: {bad[:4]}")
            if blocked:
                hosts = sorted({urlparse(u).netloc for u in blocked})
                problems.append(f"{len(blocked)} requests needed the network: {hosts[:4]}")
            for p in problems:
                print(f"{name}: {p}")
            findings += len(problems)
            shot = args.screenshots / (name.replace("/", "__").removesuffix(".html") + ".png")
            page.screenshot(path=str(shot), full_page=True)
            page.close()
        browser.close()
    print(f"{len(pages)} pages, {findings} findings; screenshots in {args.screenshots}")
    return 1 if (args.strict and findings) else 0


if __name__ == "__main__":
    sys.exit(main())
