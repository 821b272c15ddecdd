"""Progress bars a reader wants: widgets in a live JupyterLab, plain text on stdout everywhere else.

Under Papermill or nbval (headless runs: the reproduction CLI and ``make test`` set ``QNNLIB_HEADLESS=1``), in
a terminal or in a notebook kernel without ipywidgets, the bar is plain ``tqdm`` text written to **stdout**
(stderr would render as red blocks in an executed notebook). In a notebook kernel that a person drives and
that has ipywidgets, it is a ``tqdm.auto`` widget.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

__all__ = ["HEADLESS_ENV", "headless", "widgets_available", "progress"]

HEADLESS_ENV = "QNNLIB_HEADLESS"


def headless() -> bool:
    """Whether this process runs without a person at a front end (``$QNNLIB_HEADLESS`` is 1/true/yes)."""
    return os.environ.get(HEADLESS_ENV, "").strip().lower() in ("1", "true", "yes")


def widgets_available() -> bool:
    """Whether ipywidgets can be shown: inside a Jupyter kernel, ipywidgets importable, not :func:`headless`."""
    if headless() or "ipykernel" not in sys.modules:
        return False
    try:
        from IPython import get_ipython  # noqa: PLC0415

        shell = get_ipython()
        if shell is None or type(shell).__name__ != "ZMQInteractiveShell":
            return False
        import ipywidgets  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def progress(iterable: Iterable[Any] | None = None, **kwargs: Any) -> Any:
    """A ``tqdm`` progress bar over ``iterable`` (keywords as ``tqdm``'s): a widget or plain text, see above."""
    if widgets_available():
        from tqdm.auto import tqdm  # noqa: PLC0415

        return tqdm(iterable, **kwargs)
    from tqdm import tqdm  # noqa: PLC0415

    kwargs.setdefault("file", sys.stdout)
    return tqdm(iterable, **kwargs)
