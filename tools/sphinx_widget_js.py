"""Sphinx extension: serve the ipywidgets embed scripts from the build's own ``_static``.

A page whose notebook saved widget state (tqdm progress bars) needs require.js and the ipywidgets
HTML manager (``embed-amd.js``); myst-nb loads both from a CDN by default, so offline readers see
nothing. This takes them from pinned npm packages instead:

- each package's tarball is a pinned file of :mod:`arnb.data.files`, like the data sets:
  looked for under ``npm/`` in ``$ARNB_DATA_DIR`` and the cache (``~/.cache/arnb``), else
  downloaded once from registry.npmjs.org (unless ``$ARNB_OFFLINE`` is set), checked against
  its sha256 before anything is read from it, and renamed into place only then;
- at every HTML build the needed files are read out of the verified tarballs (by exact name,
  regular files only, never ``tarfile.extract``) into ``_static/widgets/``;
- ``nb_ipywidgets_js`` points myst-nb at those copies.

The bundle holds the standard controls (progress bars, HTML, boxes, labels); it fetches only
third-party widget modules from a CDN, which the book does not use. Font Awesome, for icons,
is served beside it (woff2, what current browsers ask for), and ``config.js`` tells the
bundle where. Without a copy and without network (or with ``$ARNB_OFFLINE`` set) the build stops
with :mod:`arnb.data.files`' message, which says where to put the tarball.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from arnb.data.files import RemoteFile, load_bytes, write_atomic

REGISTRY = "https://registry.npmjs.org"
STATIC_SUBDIR = "widgets"  # under the HTML output's _static
MAX_MEMBER_BYTES = 32 << 20  # a tar member larger than this is refused (embed-amd.js: 3.6 MB)


@dataclass(frozen=True)
class NpmPackage:
    """A pinned npm tarball and the files (paths under its ``package/``) that the book serves."""

    name: str
    version: str
    # of the tarball, taken once it had matched the registry's own `npm view NAME@VERSION
    # dist.integrity` (sha512): one kind of checksum for every file the book downloads
    sha256: str
    files: tuple[str, ...]

    @property
    def url(self) -> str:
        return f"{REGISTRY}/{self.name}/-/{self.name.rsplit('/', 1)[-1]}-{self.version}.tgz"

    @property
    def remote(self) -> RemoteFile:
        relpath = f"npm/{self.name.replace('/', '+')}-{self.version}.tgz"
        return RemoteFile(relpath, self.sha256, (self.url,))


# html-manager 1.0.15 is the release built with ipywidgets 8.1.9's controls (^5.0.13) and
# base (^6.0.12), as jupyterlab_widgets 3.0.17's jupyterlab-manager; keep them in step.
PACKAGES = (
    NpmPackage(
        "requirejs",
        "2.3.8",
        "777158e89275e16bd51aec3ef714fbcb5dc45789e7078659933bc814916d7dec",
        ("require.js",),  # the package ships no minified copy
    ),
    NpmPackage(
        "@jupyter-widgets/html-manager",
        "1.0.15",
        "2b9d65cb7913e1c7d671757a10008b32c9c2448d4429513371e55c07d6107638",
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


def install(static_dir: Path, packages=None) -> list[Path]:
    """Put the widget scripts of ``packages`` (default :data:`PACKAGES`) into
    ``static_dir/widgets``; return the files there."""
    dest = static_dir / STATIC_SUBDIR
    files = {"config.js": CONFIG_JS.encode()}
    for pkg in PACKAGES if packages is None else packages:
        data = load_bytes(pkg.remote)  # verified before tarfile sees a byte
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
            write_atomic(path, content)
        written.append(path)
    return written


def _configure(app, config) -> None:
    config.nb_ipywidgets_js = dict(WIDGET_JS)


def _install(app) -> None:
    if app.builder.format != "html":
        return
    from sphinx.errors import ExtensionError

    try:
        install(Path(app.outdir) / "_static")
    except (OSError, ValueError, RuntimeError, tarfile.TarError) as err:
        raise ExtensionError(f"ipywidgets scripts for the book: {err}") from None


def setup(app):
    app.connect("config-inited", _configure)
    app.connect("builder-inited", _install)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
