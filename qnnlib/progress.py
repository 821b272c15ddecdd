"""Progress bars a reader wants: widgets in a live JupyterLab, plain text on stdout everywhere else.

Under Papermill or nbval (headless runs: the reproduction CLI and ``make test`` set ``QNNLIB_HEADLESS=1``), in
a terminal or in a notebook kernel without ipywidgets, the bar is plain ``tqdm`` text written to **stdout**
(stderr would render as red blocks in an executed notebook). In a notebook kernel that a person drives and
that has ipywidgets, it is a ``tqdm.auto`` widget. :func:`widgets_available` is the one rule for every widget
of the library (the tour's sliders too).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable
from typing import Any

__all__ = ["HEADLESS_ENV", "WIDGETS_ENV", "headless", "widgets_available", "progress"]

HEADLESS_ENV = "QNNLIB_HEADLESS"
WIDGETS_ENV = "QNNLIB_WIDGETS"


def headless() -> bool:
    """Whether this process runs without a person at a front end (``$QNNLIB_HEADLESS`` is 1/true/yes)."""
    return os.environ.get(HEADLESS_ENV, "").strip().lower() in ("1", "true", "yes")


def widgets_available() -> bool:
    """Whether ipywidgets can be shown (progress bars, the tour's sliders); first match wins:

    1. ``$QNNLIB_WIDGETS`` set to ``0/false/no/off`` → no; to ``1/true/yes/on`` → yes if ipywidgets imports;
    2. ipywidgets cannot be imported → no;
    3. :func:`headless` → no;
    4. not inside an IPython kernel (plain Python, terminal IPython) → no;
    5. the kernel was not started by a Jupyter server (no ``$JPY_SESSION_NAME``, which jupyter_server sets for
       JupyterLab / Notebook kernels, and no ``$VSCODE_PID``) → no: nbclient, Papermill and nbval start kernels
       with no front end that could show a widget;
    6. otherwise → yes.
    """
    forced = os.environ.get(WIDGETS_ENV, "").strip().lower()
    if forced in ("0", "false", "no", "off"):
        return False
    try:
        importlib.import_module("ipywidgets")
    except ImportError:
        return False
    if forced in ("1", "true", "yes", "on"):
        return True
    if headless() or "ipykernel" not in sys.modules:
        return False
    try:
        from IPython import get_ipython  # noqa: PLC0415
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return False
    return bool(os.environ.get("JPY_SESSION_NAME") or os.environ.get("VSCODE_PID"))


def progress(iterable: Iterable[Any] | None = None, **kwargs: Any) -> Any:
    """A ``tqdm`` progress bar over ``iterable`` (keywords as ``tqdm``'s): a widget or plain text, see above."""
    if widgets_available():
        from tqdm.auto import tqdm  # noqa: PLC0415

        return tqdm(iterable, **kwargs)
    from tqdm import tqdm  # noqa: PLC0415

    kwargs.setdefault("file", sys.stdout)
    return tqdm(iterable, **kwargs)
