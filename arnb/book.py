"""What the notebooks need for the rendered book: numbers glued into the prose.

A number the text quotes is recorded in the cell that computes it::

    glue("gpt_val_nll", val_nll)

and the Markdown after it writes ``{glue:text}`gpt_val_nll:.3f``` (myst-nb's role), so the page
always shows what the run printed. Nothing is displayed in the notebook itself.
"""

from __future__ import annotations

from typing import Any

GLUE_PREFIX = "application/papermill.record/"


def glue(name: str, value: Any) -> None:
    """Record ``value`` under ``name`` for myst-nb's ``{glue:text}`` role; display nothing.

    Writes the same output as ``myst_nb.glue(name, value, display=False)`` without importing
    myst-nb (Colab does not have it). Tensors and NumPy scalars are stored as Python numbers, so
    a format spec such as ``:.3f`` applies.
    """
    from IPython.core.formatters import format_display_data
    from IPython.display import display

    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    bundle, metadata = format_display_data(value)
    metadata["scrapbook"] = {"name": name, "mime_prefix": GLUE_PREFIX}
    display({GLUE_PREFIX + k: v for k, v in bundle.items()}, raw=True, metadata=metadata)
