"""Sphinx extension: serve the ipywidgets embed scripts from the build's own ``_static``.

A page whose notebook saved widget state (tqdm progress bars) needs require.js and the ipywidgets
HTML manager (``embed-amd.js``); myst-nb loads both from a CDN by default, so offline readers see
nothing. This takes them from pinned npm packages instead:

- each package's tarball is downloaded once from registry.npmjs.org into
  ``$ARNB_CACHE_DIR/npm`` (default ``~/.cache/arnb/npm``, :func:`arnb.data.cache_dir`),
  checked against the sha512 ``integrity`` pinned below before anything is read from it, and
  renamed into place only then. ``$ARNB_OFFLINE`` does not apply: it keeps data sets from
  being downloaded, and CI sets it for its tests but builds the book with the registry in reach;
- at every HTML build the needed files are read out of the verified tarballs (by exact name,
  regular files only, never ``tarfile.extract``) into ``_static/widgets/``;
- ``nb_ipywidgets_js`` points myst-nb at those copies.

The bundle holds the standard controls (progress bars, HTML, boxes, labels); it fetches only
third-party widget modules from a CDN, which the book does not use. Font Awesome, for icons,
is served beside it (woff2, what current browsers ask for), and ``config.js`` tells the
bundle where. Without the cache and without network the build stops with a message that says
how to fill the cache.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from arnb.data.files import ChecksumError, DataNotFoundError, cache_dir

REGISTRY = "https://registry.npmjs.org"
STATIC_SUBDIR = "widgets"  # under the HTML output's _static
MAX_MEMBER_BYTES = 32 << 20  # a tar member larger than this is refused (embed-amd.js: 3.6 MB)


@dataclass(frozen=True)
class NpmPackage:
    """A pinned npm tarball and the files (paths under its ``package/``) that the book serves."""

    name: str
    version: str
    integrity: str  # `npm view NAME@VERSION dist.integrity`: "sha512-" + base64 digest
    files: tuple[str, ...]

    @property
    def url(self) -> str:
        return f"{REGISTRY}/{self.name}/-/{self.name.rsplit('/', 1)[-1]}-{self.version}.tgz"

    @property
    def cache_name(self) -> str:
        return f"{self.name.replace('/', '+')}-{self.version}.tgz"


# html-manager 1.0.15 is the release built with ipywidgets 8.1.9's controls (^5.0.13) and
# base (^6.0.12), as jupyterlab_widgets 3.0.17's jupyterlab-manager; keep them in step.
PACKAGES = (
    NpmPackage(
        "requirejs",
        "2.3.8",
        "sha512-7/cTSLOdYkNBNJcDMWf+luFvMriVm7eYxp4BcFCsAX0wF421Vyce5SXP17c+Jd5otXKGNehIonFlyQXSowL6Mw==",
        ("require.js",),  # the package ships no minified copy
    ),
    NpmPackage(
        "@jupyter-widgets/html-manager",
        "1.0.15",
        "sha512-5thBIV6ymNgmPVOHvzx+gGy8ZSKmSazhtGw4/c4xJDVzRhG9PTeQsRjF3FUTopvFi//SABeNz1yp47bCrJ3CQA==",
        (
            "dist/embed-amd.js",
            # Font Awesome 5 (brands, regular, solid) under webpack's hashed names.
            "dist/1551f4f60c37af51121f.woff2",
            "dist/7a3337626410ca2f4071.woff2",
            "dist/d878b0a6a1144760244f.woff2",
        ),
    ),
)

# Runs between require.js and embed-amd.js. The bundle's stylesheets look for their fonts in the
# folder of the address require.js gives the module that holds them, by default
# <page folder>/@jupyter-widgets/html-manager/...; these paths make that address this folder.
CONFIG_JS = """\
// Written by tools/sphinx_widget_js.py: the ipywidgets bundle's fonts are in this folder.
(function () {
  var here = new URL(".", document.currentScript.src).href;
  window.__jupyter_widgets_assets_path__ = here;
  window.require.config({paths: {
    "@jupyter-widgets/html-manager": here + "html-manager",
    "@jupyter-widgets/html-manager/dist/libembed-amd": here + "libembed-amd"
  }});
})();
"""

# myst-nb adds these, in order, to each page with widget state (paths relative to _static).
WIDGET_JS = {
    f"{STATIC_SUBDIR}/require.js": {},
    f"{STATIC_SUBDIR}/config.js": {},
    f"{STATIC_SUBDIR}/embed-amd.js": {},
}


class WidgetJsError(RuntimeError):
    """The widget scripts could not be obtained, verified or unpacked."""


def verify(data: bytes, integrity: str, what: str) -> None:
    """Raise :class:`ChecksumError` unless ``data`` matches the npm ``sha512-...`` integrity."""
    algorithm, _, expected = integrity.partition("-")
    if algorithm != "sha512" or not expected:
        raise ValueError(f"{what}: pinned integrity must be 'sha512-<base64>', got {integrity!r}")
    actual = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if actual != expected:
        raise ChecksumError(
            f"{what}: sha512 is {actual}, expected {expected}; the tarball is corrupt, truncated "
            "or a different version, and nothing was read from it."
        )


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a web server must read _static
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _hint(pkg: NpmPackage, path: Path) -> str:
    return (
        f"Build once with access to {REGISTRY} to fill the cache, or put the tarball there by "
        f"hand: curl -fLo '{path}' {pkg.url} (or `npm pack {pkg.name}@{pkg.version}`, renamed "
        f"to {path.name}). $ARNB_CACHE_DIR names another cache folder."
    )


def tarball(pkg: NpmPackage, cache: Path) -> bytes:
    """The verified tarball of ``pkg``: from ``cache/npm``, else downloaded into it once."""
    path = cache / "npm" / pkg.cache_name
    if path.exists():
        data = path.read_bytes()
        try:
            verify(data, pkg.integrity, str(path))
            return data
        except ChecksumError:
            path.unlink()  # our own cache: replace the bad copy
    try:
        with urllib.request.urlopen(pkg.url, timeout=60) as response:
            data = response.read()
    except OSError as err:  # URLError, timeouts, refused connections
        raise DataNotFoundError(
            f"{pkg.name}@{pkg.version} is not in {path.parent} and could not be downloaded "
            f"from {pkg.url} ({err}). {_hint(pkg, path)}"
        ) from None
    verify(data, pkg.integrity, pkg.url)  # before writing: the cache holds only good copies
    _write_atomic(path, data)
    return data


def _safe_relpath(relpath: str) -> PurePosixPath:
    path = PurePosixPath(relpath)
    if not relpath or "\\" in relpath or path.is_absolute() or ".." in path.parts:
        raise WidgetJsError(f"refusing unsafe path {relpath!r} (absolute, '..' or backslash)")
    return path


def read_member(data: bytes, relpath: str, what: str) -> bytes:
    """The bytes of ``package/<relpath>`` in a verified npm tarball: a regular file only."""
    name = str(PurePosixPath("package") / _safe_relpath(relpath))
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            if member.name.removeprefix("./") != name:
                continue
            if not member.isfile():  # links could point anywhere
                raise WidgetJsError(f"{what}: {member.name} is not a regular file")
            if member.size > MAX_MEMBER_BYTES:
                raise WidgetJsError(f"{what}: {member.name} is {member.size} bytes, too large")
            return tar.extractfile(member).read()
    raise WidgetJsError(f"{what} has no file {name}")


def install(static_dir: Path, cache: Path, packages=None) -> list[Path]:
    """Put the widget scripts of ``packages`` (default :data:`PACKAGES`) into
    ``static_dir/widgets``; return the files there."""
    dest = static_dir / STATIC_SUBDIR
    files = {"config.js": CONFIG_JS.encode()}
    for pkg in PACKAGES if packages is None else packages:
        data = tarball(pkg, cache)
        for relpath in pkg.files:
            name = _safe_relpath(relpath).name
            if name in files:
                raise WidgetJsError(f"two widget files are both called {name}")
            files[name] = read_member(data, relpath, f"{pkg.name}@{pkg.version}")
    written = []
    for name, content in files.items():
        path = dest / name
        # Rewrite only what changed, so an unchanged build leaves the files (and mtimes) alone.
        if not path.exists() or path.read_bytes() != content:
            _write_atomic(path, content)
        written.append(path)
    return written


def _configure(app, config) -> None:
    config.nb_ipywidgets_js = dict(WIDGET_JS)


def _install(app) -> None:
    if app.builder.format != "html":
        return
    from sphinx.errors import ExtensionError

    try:
        install(Path(app.outdir) / "_static", cache_dir())
    except (OSError, ValueError, RuntimeError, tarfile.TarError) as err:
        raise ExtensionError(f"ipywidgets scripts for the book: {err}") from None


def setup(app):
    app.connect("config-inited", _configure)
    app.connect("builder-inited", _install)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
