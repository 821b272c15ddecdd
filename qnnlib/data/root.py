"""Where datasets live: the data root.

``$QNNLIB_DATA`` (default ``~/.cache/qnnlib``) holds one sub-directory per dataset (``mnist/``,
``fashion-mnist/``, ...) plus the checkpoints and saved models of the experiments.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_ENV", "DEFAULT_DATA_ROOT", "data_root"]

DATA_ENV = "QNNLIB_DATA"
DEFAULT_DATA_ROOT = Path("~/.cache/qnnlib")


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root`` if given, else ``$QNNLIB_DATA``, else ``~/.cache/qnnlib``."""
    if root is None:
        root = os.environ.get(DATA_ENV) or DEFAULT_DATA_ROOT
    return Path(root).expanduser()
