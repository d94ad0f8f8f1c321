"""Encoding speed of arnb's GPT-2 tokenizer against tiktoken, side by side in one run.

    python tools/bench_tokenizer.py [--repeats 3]

Both encode the whole of Tiny Shakespeare (about 1.1 million characters) with GPT-2's merges,
tiktoken built offline from the same local files. Each is timed cold (the first call, with empty
caches; for arnb that includes filling its per-word cache) and warm (the best of ``--repeats``
further calls); the ratio is arnb's time over tiktoken's. The ids must agree.
"""

from __future__ import annotations

import argparse
import time

from arnb.data import load_shakespeare
from arnb.tokenizers import BPETokenizer, gpt2_tiktoken


def seconds(fn, text: str) -> tuple[float, list[int]]:
    t0 = time.perf_counter()
    ids = fn(text)
    return time.perf_counter() - t0, ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    text = load_shakespeare()
    ours, theirs = BPETokenizer.from_gpt2(), gpt2_tiktoken()
    ours_cold, ids = seconds(ours.encode_ordinary, text)
    theirs_cold, ref = seconds(theirs.encode_ordinary, text)
    if ids.tolist() != ref:
        raise SystemExit("the ids differ from tiktoken's: fix the tokenizer before timing it")
    ours_warm = min(seconds(ours.encode_ordinary, text)[0] for _ in range(args.repeats))
    theirs_warm = min(seconds(theirs.encode_ordinary, text)[0] for _ in range(args.repeats))

    print(f"{len(text):,} characters -> {len(ref):,} tokens (ids equal tiktoken's)")
    print(f"{'':6} {'arnb':>9} {'tiktoken':>9} {'ratio':>7}")
    for name, a, b in [("cold", ours_cold, theirs_cold), ("warm", ours_warm, theirs_warm)]:
        print(f"{name:6} {a:8.3f}s {b:8.3f}s {a / b:6.1f}x")


if __name__ == "__main__":
    main()
