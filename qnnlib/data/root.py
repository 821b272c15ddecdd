"""Where files live: the data root, the repository, and how a path is shown to a reader.

``$QNNLIB_DATA`` (default ``~/.cache/qnnlib``) holds one sub-directory per dataset (``mnist/``,
``fashion-mnist/``, ...) plus the checkpoints and saved models of the experiments. Printed paths and the
paths stored in metrics files are :func:`display_path`: relative to the repository, or written as
``$QNNLIB_DATA/...``, so executed notebooks and JSON files do not carry one machine's absolute paths.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_ENV", "DEFAULT_DATA_ROOT", "REPO_ROOT", "data_root", "display_path"]

DATA_ENV = "QNNLIB_DATA"
DEFAULT_DATA_ROOT = Path("~/.cache/qnnlib")
REPO_ROOT = Path(__file__).resolve().parents[2]
"""The repository (checkout) the package is imported from."""


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root`` if given, else ``$QNNLIB_DATA``, else ``~/.cache/qnnlib``."""
    if root is None:
        root = os.environ.get(DATA_ENV) or DEFAULT_DATA_ROOT
    return Path(root).expanduser()


def display_path(path: str | os.PathLike) -> str:
    """``path`` as a reader should see it: ``$QNNLIB_DATA/<rest>`` under the data root, ``<rest>`` relative
    to the repository under the checkout, else the absolute path (e.g. a system data directory)."""
    p = Path(path).expanduser().resolve()
    for base, prefix in ((data_root().resolve(), f"${DATA_ENV}/"), (REPO_ROOT, "")):
        try:
            rest = p.relative_to(base)
        except ValueError:
            continue
        if rest == Path("."):
            return prefix.rstrip("/") or "."
        return prefix + rest.as_posix()
    return str(p)
