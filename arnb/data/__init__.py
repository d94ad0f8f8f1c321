"""Data sets of the book: real public files, verified, cached, usable offline."""

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
from .strokes import load_sketch_strokes
from .text import gpt2_bpe_files, load_shakespeare, load_shakespeare_split, split_text

__all__ = [
    "ChecksumError",
    "DataNotFoundError",
    "RemoteFile",
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
    "split_text",
]
