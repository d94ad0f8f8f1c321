"""Run profiles, device choice and seeding: one call at the top of every notebook and recipe.

A *profile* sizes every experiment in the book:

- ``smoke``: CI and nbval. Every code path runs in seconds; the numbers mean nothing.
- ``cpu``: a laptop with two cores. Each chapter in about ten minutes; results qualitatively right.
- ``gpu``: one modern CUDA GPU. Each chapter in about ten minutes; the book's headline figures.

Choose it with ``ARNB_PROFILE``; without it, ``gpu`` when CUDA is available and ``cpu`` otherwise.
Each chapter keeps all of its sizes in one dict ``{profile: dataclass}`` next to its code.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import random
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

PROFILES = ("smoke", "cpu", "gpu")
PROFILE_ENV = "ARNB_PROFILE"

T = TypeVar("T")


class ProfileError(ValueError):
    """An unknown run profile was requested."""


def get_profile(name: str | None = None) -> str:
    """The active profile: ``name``, else ``$ARNB_PROFILE``, else ``gpu``/``cpu`` by hardware."""
    if name is None:
        name = os.environ.get(PROFILE_ENV) or ("gpu" if torch.cuda.is_available() else "cpu")
    name = name.strip().lower()
    if name not in PROFILES:
        raise ProfileError(
            f"unknown profile {name!r}: choose one of {', '.join(PROFILES)} "
            f"(set it with the environment variable {PROFILE_ENV})"
        )
    return name


def get_device(name: str | None = None) -> torch.device:
    """CUDA if available, then Apple MPS, then CPU; ``name`` (or ``$ARNB_DEVICE``) overrides.

    Under ``torchrun`` the CUDA device is ``cuda:LOCAL_RANK``, one GPU per process.
    """
    name = name or os.environ.get("ARNB_DEVICE")
    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        # Under torchrun each process of a node takes its own GPU.
        index = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a CPU generator seeded the same."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def pick(sizes: dict[str, T], profile: str) -> T:
    """The entry of a ``{profile: sizes}`` dict for ``profile``, with a clear error if missing."""
    profile = get_profile(profile)
    if profile not in sizes:
        raise ProfileError(f"no sizes defined for profile {profile!r}; have {sorted(sizes)}")
    return sizes[profile]


def describe(sizes, width: int = 80) -> str:
    """A chapter's sizes, one line per field, wrapped at ``width`` columns (80: the book's
    output boxes show about 83).

    Model configs show every field. A training ``Schedule`` shows only the fields that differ
    from its defaults (steps, rate, batch and what a profile changed), so that a line stays
    short; a list of dataclasses gets one line each.
    """
    from .train import Schedule  # not at import time: train imports the whole training stack

    def short(value) -> str:
        if not dataclasses.is_dataclass(value) or isinstance(value, type):
            return repr(value)
        hide_defaults = isinstance(value, Schedule)
        parts = [
            f"{f.name}={short(getattr(value, f.name))}"
            for f in dataclasses.fields(value)
            if not (hide_defaults and getattr(value, f.name) == f.default)
        ]
        return f"{type(value).__name__}({', '.join(parts)})"

    def wrap(text: str, indent: str) -> list[str]:
        return textwrap.wrap(
            text,
            width,
            initial_indent=indent,
            subsequent_indent=indent + "    ",
            break_long_words=False,
            break_on_hyphens=False,
        )

    if not dataclasses.is_dataclass(sizes) or isinstance(sizes, type):
        raise TypeError(f"describe takes a sizes dataclass, got {type(sizes).__name__}")
    lines = [type(sizes).__name__ + ":"]
    for f in dataclasses.fields(sizes):
        value = getattr(sizes, f.name)
        if isinstance(value, (list, tuple)) and value and dataclasses.is_dataclass(value[0]):
            lines.append(f"  {f.name}:")
            for item in value:
                lines += wrap("- " + short(item), "    ")
        else:
            lines += wrap(f"{f.name}: {short(value)}", "  ")
    return "\n".join(lines)


@dataclass
class Setup:
    """What a notebook or recipe runs under: profile, device, seed, start time."""

    profile: str
    device: torch.device
    seed: int
    started: float = field(default_factory=time.time)

    def __str__(self) -> str:
        return f"profile={self.profile}  device={self.device}  seed={self.seed}"

    def record(self) -> dict:
        """What ran, where and on what (the last cell of a notebook, a recipe's metrics.json).

        Profile, device and its precision, the git commit of the code (and whether the tree had
        uncommitted changes), the UTC date, library versions, the sha256 of every data file read,
        and the wall time since setup.
        """
        import matplotlib

        from . import __version__
        from .data.files import FILES_READ
        from .train import autocast_dtype

        low = autocast_dtype(self.device)
        rec = {
            "profile": self.profile,
            "device": str(self.device),
            "device_name": device_name(self.device),
            "autocast": str(low).removeprefix("torch.") if low is not None else "none",
            **git_state(),
            "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
            "arnb": __version__,
            "seed": self.seed,
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "matplotlib": matplotlib.__version__,
            "cpu_threads": torch.get_num_threads(),
            "data_sha256": dict(sorted(FILES_READ.items())),
            "wall_time_s": round(time.time() - self.started, 1),
        }
        return rec


def git_state() -> dict:
    """``{"git_commit", "git_dirty"}`` of the checkout this package runs from (None outside one)."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "arnb"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": commit, "git_dirty": bool(status.strip())}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    return platform.processor() or platform.machine()


def setup(seed: int = 0, profile: str | None = None, verbose: bool = True) -> Setup:
    """Pick profile and device, seed everything; print one line saying which."""
    s = Setup(profile=get_profile(profile), device=get_device(), seed=seed)
    seed_everything(seed)
    if s.device.type == "cuda":
        # TF32 matmuls: a large speed-up on Ampere and later, harmless for these models.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if verbose:
        print(f"arnb: {s}  ({device_name(s.device)}, torch {torch.__version__})")
    return s


def print_record(s: Setup) -> None:
    """Print :meth:`Setup.record` as aligned lines."""
    for k, v in s.record().items():
        print(f"{k:>12}: {v}")
