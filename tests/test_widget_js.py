"""tools/sphinx_widget_js.py: npm tarballs verified before use, unpacked safely, cached.

No network: fake tarballs are built in tmp_path, the pinned table is replaced by theirs, and
the urlopen of arnb.data.files (where every download happens) is replaced by a function that
serves them (or fails).
"""

import hashlib
import io
import tarfile
from types import SimpleNamespace

import pytest
import sphinx_widget_js as widget_js

from arnb.data import files
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


def package(data: bytes, members=("dist/embed.js",), name="@scope/fake") -> object:
    return widget_js.NpmPackage(name, "1.2.3", hashlib.sha256(data).hexdigest(), tuple(members))


class Response(io.BytesIO):
    headers: dict = {}


class Registry:
    """Stands in for urlopen: serves ``data`` for each URL, or fails once ``down`` is set."""

    def __init__(self, data: dict[str, bytes]):
        self.data, self.calls, self.down = data, [], False

    def __call__(self, url, timeout=None):
        self.calls.append(url)
        if self.down:
            raise OSError("network is unreachable")
        return Response(self.data[url])


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """An empty cache, no offline folder, downloads allowed: the reader's first build."""
    monkeypatch.setenv("ARNB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ARNB_DATA_DIR", raising=False)
    monkeypatch.delenv("ARNB_OFFLINE", raising=False)
    return tmp_path / "cache"


def serve(monkeypatch, data: dict[str, bytes]) -> Registry:
    registry = Registry(data)
    monkeypatch.setattr(files.urllib.request, "urlopen", registry)
    return registry


@pytest.fixture
def good():
    data = make_tgz({"package/dist/embed.js": b"define('x', [], {});", "package/README": b"hi"})
    return data, package(data)


def test_install_fetches_once_then_reuses_the_cache_offline(tmp_path, monkeypatch, cache, good):
    data, pkg = good
    registry = serve(monkeypatch, {pkg.url: data})
    written = widget_js.install(tmp_path / "a", packages=(pkg,))
    assert registry.calls == ["https://registry.npmjs.org/@scope/fake/-/fake-1.2.3.tgz"]
    assert (cache / "npm" / "@scope+fake-1.2.3.tgz").read_bytes() == data
    assert {p.name for p in written} == {"config.js", "embed.js"}
    assert (tmp_path / "a/widgets/embed.js").read_bytes() == b"define('x', [], {});"
    assert not (tmp_path / "a/widgets/README").exists()  # only the pinned member
    registry.down = True
    monkeypatch.setenv("ARNB_OFFLINE", "1")
    widget_js.install(tmp_path / "b", packages=(pkg,))
    assert len(registry.calls) == 1  # the second build never asked the network
    assert (tmp_path / "b/widgets/embed.js").read_bytes() == b"define('x', [], {});"


def test_an_offline_folder_copy_is_used_without_the_network(tmp_path, monkeypatch, cache, good):
    data, pkg = good
    offline = tmp_path / "shared" / "npm" / "@scope+fake-1.2.3.tgz"
    offline.parent.mkdir(parents=True)
    offline.write_bytes(data)
    monkeypatch.setenv("ARNB_DATA_DIR", str(tmp_path / "shared"))
    monkeypatch.setenv("ARNB_OFFLINE", "1")
    registry = serve(monkeypatch, {})
    widget_js.install(tmp_path / "static", packages=(pkg,))
    assert registry.calls == [] and not cache.exists()
    assert (tmp_path / "static/widgets/embed.js").read_bytes() == b"define('x', [], {});"


def test_a_corrupted_download_is_rejected_before_extraction(tmp_path, monkeypatch, good):
    data, pkg = good
    corrupted = data[:-10] + bytes(10)
    serve(monkeypatch, {pkg.url: corrupted})

    def no_extraction(*args, **kwargs):
        raise AssertionError("tarfile.open called on unverified bytes")

    monkeypatch.setattr(widget_js.tarfile, "open", no_extraction)
    with pytest.raises(DataNotFoundError, match="sha256"):  # the only mirror gave bad bytes
        widget_js.install(tmp_path / "static", packages=(pkg,))
    assert not (tmp_path / "cache/npm/@scope+fake-1.2.3.tgz").exists()
    assert not list(tmp_path.rglob("*.tgz*"))  # not even a partial file
    assert not (tmp_path / "static").exists()


def test_a_corrupted_cache_file_is_replaced(tmp_path, monkeypatch, cache, good):
    data, pkg = good
    cached = cache / "npm/@scope+fake-1.2.3.tgz"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not a tarball")
    registry = serve(monkeypatch, {pkg.url: data})
    widget_js.install(tmp_path / "static", packages=(pkg,))
    assert len(registry.calls) == 1
    assert cached.read_bytes() == data


def test_a_corrupted_offline_copy_is_an_error_not_a_fallback(tmp_path, monkeypatch, good):
    data, pkg = good
    offline = tmp_path / "shared" / "npm" / "@scope+fake-1.2.3.tgz"
    offline.parent.mkdir(parents=True)
    offline.write_bytes(data[:-1])
    monkeypatch.setenv("ARNB_DATA_DIR", str(tmp_path / "shared"))
    registry = serve(monkeypatch, {pkg.url: data})
    with pytest.raises(ChecksumError):
        widget_js.install(tmp_path / "static", packages=(pkg,))
    assert registry.calls == []


def test_a_path_traversal_member_is_refused(tmp_path, monkeypatch):
    data = make_tgz({"package/../evil.js": b"alert(1)", "package/dist/embed.js": b"ok"})
    for bad in ("../evil.js", "/etc/passwd", "dist/../../evil.js", "dist\\..\\evil.js"):
        pkg = package(data, members=(bad,))
        serve(monkeypatch, {pkg.url: data})
        with pytest.raises(widget_js.WidgetJsError, match="unsafe path"):
            widget_js.install(tmp_path / "static", packages=(pkg,))
    assert not (tmp_path / "evil.js").exists()
    assert not (tmp_path / "static").exists()


def test_a_link_member_is_refused(tmp_path, monkeypatch):
    data = make_tgz({}, links={"package/dist/embed.js": "/etc/passwd"})
    pkg = package(data)
    serve(monkeypatch, {pkg.url: data})
    with pytest.raises(widget_js.WidgetJsError, match="not a regular file"):
        widget_js.install(tmp_path / "static", packages=(pkg,))


@pytest.mark.parametrize("offline", [False, True])
def test_without_a_copy_or_network_the_build_stops_with_a_hint(
    tmp_path, monkeypatch, cache, good, offline
):
    data, pkg = good
    registry = serve(monkeypatch, {pkg.url: data})
    registry.down = True
    if offline:
        monkeypatch.setenv("ARNB_OFFLINE", "1")
    monkeypatch.setattr(widget_js, "PACKAGES", (pkg,))
    app = SimpleNamespace(builder=SimpleNamespace(format="html"), outdir=str(tmp_path / "html"))
    from sphinx.errors import ExtensionError

    with pytest.raises(ExtensionError) as err:
        widget_js._install(app)
    message = str(err.value)
    assert message.startswith("ipywidgets scripts for the book: npm/@scope+fake-1.2.3.tgz")
    assert str(cache) in message and "ARNB_DATA_DIR" in message
    if offline:
        assert "downloads are off" in message and registry.calls == []
    else:
        assert "network is unreachable" in message and registry.calls == [pkg.url]
    assert not (tmp_path / "html").exists()


def test_the_pinned_table_matches_ipywidgets_8_and_points_myst_nb_at_static():
    import ipywidgets

    assert ipywidgets.__version__.startswith("8.")
    pinned = {p.name: p for p in widget_js.PACKAGES}
    assert pinned["@jupyter-widgets/html-manager"].version.startswith("1.0.")
    for pkg in widget_js.PACKAGES:
        assert len(pkg.sha256) == 64 and pkg.url.startswith(widget_js.REGISTRY)
    config = SimpleNamespace()
    widget_js._configure(None, config)
    assert list(config.nb_ipywidgets_js) == [
        "widgets/require.js",
        "widgets/config.js",
        "widgets/embed-amd.js",
    ]
