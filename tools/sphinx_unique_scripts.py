"""Sphinx extension: each inline script once per page.

Sphinx 7 registers a body-only script added after the builder started (sphinx-thebe's and
sphinx-togglebutton's configuration lines) twice, once with the file name ``None`` and once with
``""``, so the page declares ``const THEBE_JS_URL`` twice and the browser reports a SyntaxError.
This drops the second copy of any script with the same file, attributes and body.
"""

from __future__ import annotations


def _unique(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for script in scripts:
        attributes = getattr(script, "attributes", {})
        name = getattr(script, "filename", script) or ""
        key = (str(name), tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    scripts[:] = kept


def setup(app):
    app.connect("html-page-context", _unique, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
