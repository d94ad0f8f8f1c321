"""MNIST from the standard idx files, as 8-bit or binarized images.

Binarization protocol (fixed, stated once): each pixel is an independent Bernoulli draw with
probability ``intensity / 255``, drawn **once** with a fixed seed per split (train: 0,
test: 1), so every run, every model and every reader sees the same binary images. This follows
the dynamically-sampled-then-fixed binarization behind the usual binarized-MNIST benchmark
(Larochelle & Murray 2011) in spirit; it is not the identical file.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import torch
from torchvision.datasets.mnist import read_sn3_pascalvincent_tensor

from .files import RemoteFile, load_bytes

_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

# sha256 of the *decompressed* idx files (their md5s match the figures MNIST published).
_FILES = {
    ("train", "images"): (
        "train-images-idx3-ubyte.gz",
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ),
    ("train", "labels"): (
        "train-labels-idx1-ubyte.gz",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ),
    ("test", "images"): (
        "t10k-images-idx3-ubyte.gz",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    ("test", "labels"): (
        "t10k-labels-idx1-ubyte.gz",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
}

BINARIZE_SEEDS = {"train": 0, "test": 1}


def mnist_file(split: str, what: str) -> RemoteFile:
    name, sha = _FILES[(split, what)]
    return RemoteFile(f"MNIST/raw/{name}", sha, tuple(m + name for m in _MIRRORS), gzip=True)


def parse_idx(data: bytes) -> torch.Tensor:
    """An idx file's content (already verified and decompressed) as a tensor, by torchvision.

    torchvision's reader takes a file, so the bytes go through a temporary one; its asserts
    become a ValueError that says the bytes are no idx file.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.idx"
        path.write_bytes(data)
        try:
            return read_sn3_pascalvincent_tensor(str(path), strict=True)
        except (AssertionError, KeyError, IndexError, RuntimeError, ValueError):
            raise ValueError(
                f"not an idx file, or its body does not match its header ({len(data)} bytes)"
            ) from None


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


@functools.lru_cache(maxsize=2)
def _parsed(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The split's uint8 images ``(N, 28, 28)`` and labels ``(N,)``, parsed once per process."""
    images = parse_idx(load_bytes(mnist_file(split, "images")))
    labels = parse_idx(load_bytes(mnist_file(split, "labels")))
    return images, labels


def load_mnist(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """8-bit MNIST: images ``(N, 1, 28, 28)`` long in [0, 255] and labels ``(N,)`` long.

    The files are parsed once per process; every call returns fresh tensors.
    """
    _check_split(split)
    images, labels = _parsed(split)
    return images.unsqueeze(1).long(), labels.long()


def binarize(images: torch.Tensor, seed: int) -> torch.Tensor:
    """Bernoulli(intensity/255) draw per pixel with a fixed seed. ``(N, ...)`` long -> long
    {0,1}."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(images.shape, generator=g) < images.float() / 255.0).long()


def load_binary_mnist(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """Binarized MNIST (see the module docstring): images ``(N, 1, 28, 28)`` long in {0, 1}."""
    x, y = load_mnist(split)
    return binarize(x, BINARIZE_SEEDS[split]), y
