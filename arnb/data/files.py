"""Find, download, verify and cache data files: the one place where bytes enter the book.

Every file is described by a :class:`RemoteFile`: where it lives inside a data folder, the
sha256 of its content and the addresses it can be downloaded from. :func:`load_bytes` returns
the content only after its checksum matched, so a caller that parses it (``np.load`` with
pickles, say) never sees unverified bytes.

Search order:

1. ``$ARNB_DATA_DIR``: an offline, possibly read-only folder laid out like the cache
   (the course's ``shared/data``). Never written to.
2. ``$ARNB_CACHE_DIR`` (default ``~/.cache/arnb``): files downloaded earlier.
3. A download into the cache, unless ``$ARNB_OFFLINE`` is set. Downloads go to a temporary
   file that is renamed into place only after the checksum matched, so an interrupted
   download never leaves a half file that looks valid.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

DATA_DIR_ENV = "ARNB_DATA_DIR"
CACHE_DIR_ENV = "ARNB_CACHE_DIR"
OFFLINE_ENV = "ARNB_OFFLINE"


class DataNotFoundError(FileNotFoundError):
    """A data file is neither in the offline folder nor in the cache, and cannot be downloaded."""


class ChecksumError(ValueError):
    """A data file's content does not match its pinned sha256."""


@dataclass(frozen=True)
class RemoteFile:
    """A data file: its path inside a data folder, pinned sha256, and download addresses.

    With ``gzip=True`` the checksum is of the *decompressed* bytes, since mirrors recompress.
    """

    relpath: str
    sha256: str
    urls: tuple[str, ...] = ()
    gzip: bool = False


def data_dir() -> Path | None:
    """The offline data folder named by ``$ARNB_DATA_DIR``, or None."""
    value = os.environ.get(DATA_DIR_ENV)
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """The writable cache, ``$ARNB_CACHE_DIR`` or ``~/.cache/arnb``."""
    value = os.environ.get(CACHE_DIR_ENV)
    return Path(value).expanduser() if value else Path.home() / ".cache" / "arnb"


def offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _content(path: Path, is_gzip: bool) -> bytes:
    raw = path.read_bytes()
    if not is_gzip:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError) as err:  # truncated or not gzip at all
        raise ChecksumError(f"{path} is not a valid gzip file ({err})") from err


def _verified(path: Path, f: RemoteFile) -> bytes:
    data = _content(path, f.gzip)
    digest = hashlib.sha256(data).hexdigest()
    if digest != f.sha256:
        what = "decompressed content" if f.gzip else "content"
        raise ChecksumError(
            f"{path}: sha256 of its {what} is {digest}, expected {f.sha256}. "
            "The file is corrupt, truncated or a different version; it was not used."
        )
    return data


def _download(f: RemoteFile, dest: Path) -> None:
    """Download to a temporary file beside ``dest``; rename only after verification."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in f.urls:
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
                total = int(resp.headers.get("Content-Length") or 0) or None
                with tqdm(
                    total=total, unit="B", unit_scale=True, desc=dest.name, leave=False
                ) as bar:
                    while chunk := resp.read(1 << 20):
                        out.write(chunk)
                        bar.update(len(chunk))
            _verified(tmp, f)
            os.replace(tmp, dest)  # atomic on POSIX and Windows
            return
        except Exception as err:  # try the next mirror
            errors.append(f"{url}: {err}")
        finally:
            tmp.unlink(missing_ok=True)
    raise DataNotFoundError(
        f"could not download {f.relpath}:\n  " + "\n  ".join(errors or ["no download address"])
    )


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it, renamed into place: a
    write cut off part-way leaves the old file (or none), never half a new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; others (a web server) must read it
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


FILES_READ: dict[str, str] = {}
"""Every data file verified in this process, ``relpath -> sha256``: what a run's record lists."""


def fetch(f: RemoteFile) -> Path:
    """Path of a verified copy of ``f`` (offline folder, cache, or a fresh download)."""
    FILES_READ[f.relpath] = f.sha256  # only returned after verification below
    offline_dir = data_dir()
    if offline_dir is not None:
        candidate = offline_dir / f.relpath
        if candidate.exists():
            _verified(candidate, f)  # a corrupt offline file is an error, not a fallback
            return candidate
    cached = cache_dir() / f.relpath
    if cached.exists():
        try:
            _verified(cached, f)
            return cached
        except ChecksumError:
            if offline():
                raise
            cached.unlink()  # our own cache: replace the bad copy
    looked = [f"{offline_dir} (${DATA_DIR_ENV})"] if offline_dir else []
    looked.append(f"{cache_dir()} (${CACHE_DIR_ENV})")
    hint = (
        f"Put the file at <folder>/{f.relpath} and set {DATA_DIR_ENV}=<folder> "
        f"(in the course repository: {DATA_DIR_ENV}=../shared/data)"
    )
    if offline():
        raise DataNotFoundError(
            f"{f.relpath} not found; looked in {' and '.join(looked)}, and downloads are off "
            f"(${OFFLINE_ENV} is set). {hint}."
        )
    try:
        _download(f, cached)
    except DataNotFoundError as err:
        raise DataNotFoundError(
            f"{f.relpath} not found; looked in {' and '.join(looked)}, then {err}\n{hint}, "
            "or connect to the internet."
        ) from None
    return cached


def load_bytes(f: RemoteFile) -> bytes:
    """The verified content of ``f`` (decompressed when ``f.gzip``)."""
    return _verified(fetch(f), f)
