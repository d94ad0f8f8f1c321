"""Data sets of the book: real public files, verified, cached, usable offline."""

from .batches import Minibatches, random_windows
from .files import (
    ChecksumError,
    DataNotFoundError,
    RemoteFile,
    cache_dir,
    data_dir,
    fetch,
    load_bytes,
)
from .handwriting import load_handwriting
from .mnist import binarize, load_binary_mnist, load_mnist
from .strokes import load_sketch_strokes, simplify_strokes
from .text import (
    StreamBatches,
    gpt2_bpe_files,
    load_shakespeare,
    load_shakespeare_split,
    split_text,
)

__all__ = [
    "ChecksumError",
    "Minibatches",
    "DataNotFoundError",
    "RemoteFile",
    "StreamBatches",
    "binarize",
    "cache_dir",
    "data_dir",
    "fetch",
    "gpt2_bpe_files",
    "load_binary_mnist",
    "load_bytes",
    "load_handwriting",
    "load_mnist",
    "load_shakespeare",
    "load_shakespeare_split",
    "load_sketch_strokes",
    "simplify_strokes",
    "random_windows",
    "split_text",
]
