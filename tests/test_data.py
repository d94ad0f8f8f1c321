"""Data loaders on the real offline files, plus corrupt, truncated, read-only and missing cases."""

import gzip
import hashlib
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from arnb import data
from arnb.data import files
from arnb.data.files import ChecksumError, DataNotFoundError, RemoteFile

needs_data = pytest.mark.skipif(
    files.data_dir() is None or not (files.data_dir() / "MNIST").is_dir(),
    reason="set ARNB_DATA_DIR to the offline data folder (../shared/data)",
)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ARNB_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _remote(tmp_path, content: bytes, name="thing.bin", gz=False) -> tuple[RemoteFile, Path]:
    """A file served from a local 'mirror' through a file:// URL."""
    mirror = tmp_path / "mirror"
    mirror.mkdir(exist_ok=True)
    src = mirror / name
    src.write_bytes(gzip.compress(content) if gz else content)
    sha = hashlib.sha256(content).hexdigest()
    return RemoteFile(f"set/{name}", sha, (src.as_uri(),), gzip=gz), src


@needs_data
def test_mnist_real_files():
    x, y = data.load_mnist("test")
    assert x.shape == (10000, 1, 28, 28) and x.dtype == torch.long
    assert int(x.min()) == 0 and int(x.max()) == 255
    assert y.shape == (10000,) and sorted(y.unique().tolist()) == list(range(10))
    assert y[:5].tolist() == [7, 2, 1, 0, 4]  # the well-known first test labels


@needs_data
def test_mnist_is_parsed_once_and_callers_get_their_own_copy(monkeypatch):
    from arnb.data import mnist

    data.load_mnist("test")
    monkeypatch.setattr(mnist, "load_bytes", lambda f: pytest.fail("read the files again"))
    x, y = data.load_mnist("test")
    x[0] = 0
    y[0] = 9
    x2, y2 = data.load_mnist("test")
    assert int(x2[0].max()) == 255 and y2[0] == 7


@needs_data
def test_binarization_is_fixed_and_follows_intensity():
    xb1, _ = data.load_binary_mnist("test")
    xb2, _ = data.load_binary_mnist("test")
    assert torch.equal(xb1, xb2)
    assert set(xb1.unique().tolist()) == {0, 1}
    x, _ = data.load_mnist("test")
    assert xb1[x == 0].sum() == 0 and xb1[x == 255].all()  # p = 0 and p = 1 pixels are exact
    mid = (x > 100) & (x < 155)  # p near 1/2
    assert 0.4 < xb1[mid].float().mean() < 0.6


@needs_data
def test_shakespeare_split():
    train, val = data.load_shakespeare_split()
    assert (len(train), len(val)) == (1_003_854, 111_540)
    assert len(set(train + val)) == 65
    assert train.startswith("First Citizen:")


@needs_data
def test_sketch_strokes_are_plain_arrays():
    seqs = data.load_sketch_strokes("omniglot", "valid")
    assert len(seqs) == 1000
    assert all(s.dtype == np.float32 and s.ndim == 2 and s.shape[1] == 3 for s in seqs)
    assert set(np.unique(np.concatenate([s[:, 2] for s in seqs]))) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="unknown stroke data set"):
        data.load_sketch_strokes("quickdraw")
    with pytest.raises(ValueError, match="split must be one of"):
        data.load_sketch_strokes("omniglot", "dev")


@needs_data
def test_gpt2_files_verified():
    bpe, enc = data.gpt2_bpe_files()
    assert bpe.read_text(encoding="utf-8").startswith("#version: 0.2")
    assert enc.name == "encoder.json"


def test_download_is_verified_and_cached(tmp_path, cache, monkeypatch):
    monkeypatch.delenv("ARNB_OFFLINE", raising=False)
    monkeypatch.delenv("ARNB_DATA_DIR", raising=False)
    f, src = _remote(tmp_path, b"hello idx" * 1000, gz=True, name="a.gz")
    assert data.load_bytes(f) == b"hello idx" * 1000
    assert (cache / "set" / "a.gz").exists()
    src.unlink()  # second time from the cache, no download
    assert data.load_bytes(f) == b"hello idx" * 1000


def test_corrupt_download_leaves_nothing(tmp_path, cache, monkeypatch):
    monkeypatch.delenv("ARNB_OFFLINE", raising=False)
    monkeypatch.delenv("ARNB_DATA_DIR", raising=False)
    f, src = _remote(tmp_path, b"x" * 5000)
    src.write_bytes(b"x" * 4000)  # the mirror serves a truncated file
    with pytest.raises(DataNotFoundError, match="(?s)could not download.*sha256"):
        data.fetch(f)
    assert [p for p in cache.rglob("*") if p.is_file()] == []


def test_interrupted_download_leaves_no_half_file(tmp_path, cache, monkeypatch):
    monkeypatch.delenv("ARNB_OFFLINE", raising=False)
    monkeypatch.delenv("ARNB_DATA_DIR", raising=False)
    f, _ = _remote(tmp_path, b"y" * (3 << 20))

    class Broken:
        headers = {"Content-Length": str(3 << 20)}

        def __init__(self):
            self.calls = 0

        def read(self, n):
            self.calls += 1
            if self.calls > 1:
                raise ConnectionResetError("connection dropped")
            return b"y" * n

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    monkeypatch.setattr(files.urllib.request, "urlopen", lambda url, timeout: Broken())
    with pytest.raises(DataNotFoundError, match="connection dropped"):
        data.fetch(f)
    leftovers = [p for p in cache.rglob("*") if p.is_file()]
    assert leftovers == []


def test_corrupt_offline_file_is_refused(tmp_path, cache, monkeypatch):
    offline = tmp_path / "offline"
    (offline / "set").mkdir(parents=True)
    f, _ = _remote(tmp_path, b"good bytes")
    (offline / "set" / "thing.bin").write_bytes(b"bad bytes!")
    monkeypatch.setenv("ARNB_DATA_DIR", str(offline))
    with pytest.raises(ChecksumError, match="sha256.*expected.*not used"):
        data.load_bytes(f)


def test_truncated_gzip_is_a_checksum_error(tmp_path, cache, monkeypatch):
    offline = tmp_path / "offline"
    (offline / "set").mkdir(parents=True)
    f, src = _remote(tmp_path, b"z" * 10000, gz=True, name="t.gz")
    (offline / "set" / "t.gz").write_bytes(src.read_bytes()[:-20])
    monkeypatch.setenv("ARNB_DATA_DIR", str(offline))
    with pytest.raises(ChecksumError, match="not a valid gzip"):
        data.load_bytes(f)


def test_read_only_offline_folder_is_never_written(tmp_path, cache, monkeypatch):
    offline = tmp_path / "offline"
    (offline / "set").mkdir(parents=True)
    f, src = _remote(tmp_path, b"content", gz=True, name="r.gz")
    (offline / "set" / "r.gz").write_bytes(src.read_bytes())
    for p in [offline / "set" / "r.gz", offline / "set", offline]:
        p.chmod(stat.S_IREAD | stat.S_IEXEC | (0 if p.is_file() else stat.S_IXUSR))
    before = sorted(p.name for p in offline.rglob("*"))
    monkeypatch.setenv("ARNB_DATA_DIR", str(offline))
    try:
        assert data.load_bytes(f) == b"content"
        assert data.fetch(f) == offline / "set" / "r.gz"  # used in place, not copied or extracted
        assert sorted(p.name for p in offline.rglob("*")) == before
        assert not cache.exists()
    finally:
        for p in [offline, offline / "set", offline / "set" / "r.gz"]:
            p.chmod(0o755)


def test_missing_file_offline_says_what_to_do(tmp_path, cache, monkeypatch):
    monkeypatch.setenv("ARNB_OFFLINE", "1")
    monkeypatch.setenv("ARNB_DATA_DIR", str(tmp_path / "empty"))
    f = RemoteFile("MNIST/raw/nothing.gz", "0" * 64, ("http://example.invalid/x",))
    with pytest.raises(DataNotFoundError) as err:
        data.fetch(f)
    msg = str(err.value)
    assert "MNIST/raw/nothing.gz" in msg and str(tmp_path / "empty") in msg
    assert "ARNB_DATA_DIR" in msg and "ARNB_OFFLINE" in msg


def test_bad_split_and_idx():
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        data.load_mnist("valid")
    from arnb.data.mnist import parse_idx

    with pytest.raises(ValueError, match="does not match its header"):
        parse_idx(bytes([0, 0, 8, 1, 0, 0, 0, 9]) + b"\x00" * 5)  # 9 bytes said, 5 there
    with pytest.raises(ValueError, match="not an idx file"):
        parse_idx(b"PK\x03\x04")
    ok = parse_idx(bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6)))
    assert ok.dtype == torch.uint8 and ok.tolist() == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(ValueError, match="empty text"):
        data.split_text("")
