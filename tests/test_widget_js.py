"""tools/sphinx_widget_js.py: npm tarballs verified before use, unpacked safely, cached.

No network: fake tarballs are built in tmp_path, the pinned table is replaced by theirs, and
urllib's urlopen is replaced by a function that serves them (or fails).
"""

import base64
import hashlib
import io
import tarfile
from types import SimpleNamespace

import pytest
import sphinx_widget_js as widget_js

from arnb.data.files import ChecksumError, DataNotFoundError


def make_tgz(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buffer.getvalue()


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def package(data: bytes, files=("dist/embed.js",), name="@scope/fake") -> object:
    return widget_js.NpmPackage(name, "1.2.3", integrity(data), tuple(files))


class Registry:
    """Stands in for urlopen: serves ``data`` for each URL, or fails once ``down`` is set."""

    def __init__(self, data: dict[str, bytes]):
        self.data, self.calls, self.down = data, [], False

    def __call__(self, url, timeout=None):
        self.calls.append(url)
        if self.down:
            raise OSError("network is unreachable")
        return io.BytesIO(self.data[url])


@pytest.fixture
def good():
    data = make_tgz({"package/dist/embed.js": b"define('x', [], {});", "package/README": b"hi"})
    return data, package(data)


def test_install_fetches_once_then_reuses_the_cache_offline(tmp_path, monkeypatch, good):
    data, pkg = good
    registry = Registry({pkg.url: data})
    monkeypatch.setattr(widget_js.urllib.request, "urlopen", registry)
    monkeypatch.setenv("ARNB_OFFLINE", "1")  # for data sets only; CI sets it for the build too
    cache = tmp_path / "cache"
    written = widget_js.install(tmp_path / "a", cache, packages=(pkg,))
    assert registry.calls == ["https://registry.npmjs.org/@scope/fake/-/fake-1.2.3.tgz"]
    assert (cache / "npm" / "@scope+fake-1.2.3.tgz").read_bytes() == data
    assert {p.name for p in written} == {"config.js", "embed.js"}
    assert (tmp_path / "a/widgets/embed.js").read_bytes() == b"define('x', [], {});"
    assert not (tmp_path / "a/widgets/README").exists()  # only the pinned member
    registry.down = True
    widget_js.install(tmp_path / "b", cache, packages=(pkg,))
    assert len(registry.calls) == 1  # the second build never asked the network
    assert (tmp_path / "b/widgets/embed.js").read_bytes() == b"define('x', [], {});"


def test_a_corrupted_download_is_rejected_before_extraction(tmp_path, monkeypatch, good):
    data, pkg = good
    corrupted = data[:-10] + bytes(10)
    monkeypatch.setattr(widget_js.urllib.request, "urlopen", Registry({pkg.url: corrupted}))

    def no_extraction(*args, **kwargs):
        raise AssertionError("tarfile.open called on unverified bytes")

    monkeypatch.setattr(widget_js.tarfile, "open", no_extraction)
    with pytest.raises(ChecksumError, match="sha512"):
        widget_js.install(tmp_path / "static", tmp_path / "cache", packages=(pkg,))
    assert not (tmp_path / "cache/npm/@scope+fake-1.2.3.tgz").exists()
    assert not list(tmp_path.rglob("*.tgz*"))  # not even a partial file
    assert not (tmp_path / "static").exists()


def test_a_corrupted_cache_file_is_replaced(tmp_path, monkeypatch, good):
    data, pkg = good
    cached = tmp_path / "cache/npm/@scope+fake-1.2.3.tgz"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not a tarball")
    registry = Registry({pkg.url: data})
    monkeypatch.setattr(widget_js.urllib.request, "urlopen", registry)
    assert widget_js.tarball(pkg, tmp_path / "cache") == data
    assert len(registry.calls) == 1
    assert cached.read_bytes() == data


def test_a_path_traversal_member_is_refused(tmp_path, monkeypatch):
    data = make_tgz({"package/../evil.js": b"alert(1)", "package/dist/embed.js": b"ok"})
    for bad in ("../evil.js", "/etc/passwd", "dist/../../evil.js", "dist\\..\\evil.js"):
        pkg = package(data, files=(bad,))
        monkeypatch.setattr(widget_js.urllib.request, "urlopen", Registry({pkg.url: data}))
        with pytest.raises(widget_js.WidgetJsError, match="unsafe path"):
            widget_js.install(tmp_path / "static", tmp_path / "cache", packages=(pkg,))
    assert not (tmp_path / "evil.js").exists()
    assert not (tmp_path / "static").exists()


def test_a_link_member_is_refused(tmp_path, monkeypatch):
    data = make_tgz({}, links={"package/dist/embed.js": "/etc/passwd"})
    pkg = package(data)
    monkeypatch.setattr(widget_js.urllib.request, "urlopen", Registry({pkg.url: data}))
    with pytest.raises(widget_js.WidgetJsError, match="not a regular file"):
        widget_js.install(tmp_path / "static", tmp_path / "cache", packages=(pkg,))


def test_without_cache_and_network_the_build_stops_with_a_hint(tmp_path, monkeypatch, good):
    data, pkg = good
    registry = Registry({pkg.url: data})
    registry.down = True
    monkeypatch.setattr(widget_js.urllib.request, "urlopen", registry)
    monkeypatch.setattr(widget_js, "PACKAGES", (pkg,))
    monkeypatch.setenv("ARNB_CACHE_DIR", str(tmp_path / "cache"))
    app = SimpleNamespace(builder=SimpleNamespace(format="html"), outdir=str(tmp_path / "html"))
    from sphinx.errors import ExtensionError

    with pytest.raises(ExtensionError) as err:
        widget_js._install(app)
    message = str(err.value)
    assert "could not be downloaded" in message and "network is unreachable" in message
    assert str(tmp_path / "cache" / "npm") in message and "curl -fLo" in message
    assert not (tmp_path / "html").exists()
    with pytest.raises(DataNotFoundError):  # what the hook turned into an ExtensionError
        widget_js.tarball(pkg, tmp_path / "cache")


def test_the_pinned_table_matches_ipywidgets_8_and_points_myst_nb_at_static():
    import ipywidgets

    assert ipywidgets.__version__.startswith("8.")
    pinned = {p.name: p for p in widget_js.PACKAGES}
    assert pinned["@jupyter-widgets/html-manager"].version.startswith("1.0.")
    for pkg in widget_js.PACKAGES:
        assert pkg.integrity.startswith("sha512-") and pkg.url.startswith(widget_js.REGISTRY)
    config = SimpleNamespace()
    widget_js._configure(None, config)
    assert list(config.nb_ipywidgets_js) == [
        "widgets/require.js",
        "widgets/config.js",
        "widgets/embed-amd.js",
    ]
