"""The stored form of the project's notebooks: the metadata and the bytes that JupyterLab writes.

Opening a notebook in JupyterLab replaces its ``kernelspec`` by the running kernel's and its ``language_info``
by the kernel's ``kernel_info`` reply (which holds the Python patch version, different from one machine to the
next), and autosave writes the result. Every notebook of the project is therefore stored in one canonical form:
``kernelspec`` is the project's kernel (``python -m ipykernel install --sys-prefix --name qnnlib``, which
``make lab`` registers), ``language_info`` is what ipykernel reports less the interpreter's ``version``, and the
bytes are nbformat's own serialisation with a final newline, exactly what Jupyter Server's contents manager
writes. ``pre_save_hook`` applies the same form to every notebook that Jupyter Server saves (``make lab`` wires
it in), so opening and saving an unchanged notebook leaves it byte for byte the same on disk.

Command line: ``python -m qnnlib.experiments.notebook_format [--check] NOTEBOOK...`` rewrites the notebooks that
are not canonical (``--check``: only lists them, exit status 1 if any).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import nbformat

from qnnlib.files import atomic_write

KERNEL_NAME = "qnnlib"
KERNELSPEC: dict[str, str] = {"display_name": "Python 3 (qnnlib)", "language": "python", "name": KERNEL_NAME}
# ipykernel 7.4.0's kernel_info reply, less "version" (the interpreter's patch version, e.g. "3.11.7").
LANGUAGE_INFO: dict[str, Any] = {
    "codemirror_mode": {"name": "ipython", "version": 3},
    "file_extension": ".py",
    "mimetype": "text/x-python",
    "name": "python",
    "nbconvert_exporter": "python",
    "pygments_lexer": "ipython3",
}


def normalise(nb: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Set ``nb``'s ``metadata.kernelspec`` and ``metadata.language_info`` to the canonical ones, in place.

    Cells (their ids included) and every other metadata key are kept as they are. Works on a
    ``NotebookNode`` and on the plain dict of a contents model; returns ``nb``.
    """
    metadata = nb.setdefault("metadata", {})
    metadata["kernelspec"] = copy.deepcopy(KERNELSPEC)
    metadata["language_info"] = copy.deepcopy(LANGUAGE_INFO)
    return nb


def dumps(nb: Mapping[str, Any]) -> str:
    """The text that Jupyter Server writes for ``nb``: ``nbformat.write(nb, f, version=NO_CONVERT)``, i.e.
    nbformat's serialisation followed by a final newline."""
    text = nbformat.writes(nbformat.from_dict(nb), version=nbformat.NO_CONVERT)
    return text if text.endswith("\n") else text + "\n"


def write(nb: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write ``nb`` to ``path`` as Jupyter Server does (UTF-8, see ``dumps``), atomically (temp file + rename)."""
    _write_text(dumps(nb), Path(path))


def _write_text(text: str, path: Path) -> None:
    with atomic_write(path, "w") as f:  # keeps the mode of the file it replaces (qnnlib.files)
        f.write(text)


def canonical_text(path: str | os.PathLike[str]) -> str:
    """The canonical text of the notebook at ``path`` (read as nbformat 4, normalised, serialised)."""
    nb = nbformat.read(Path(path), as_version=4)
    return dumps(normalise(nb))


def is_canonical(path: str | os.PathLike[str]) -> bool:
    """True if the file at ``path`` already holds exactly its canonical text."""
    return Path(path).read_text(encoding="utf-8") == canonical_text(path)


def normalise_file(path: str | os.PathLike[str]) -> bool:
    """Rewrite the notebook at ``path`` in its canonical form; True if that changed the file."""
    text = canonical_text(path)
    if Path(path).read_text(encoding="utf-8") == text:
        return False
    _write_text(text, Path(path))
    return True


def pre_save_hook(model: MutableMapping[str, Any], path: str, contents_manager: Any = None, **kwargs: Any) -> None:
    """Jupyter Server ``ContentsManager.pre_save_hook``: normalise the content of a notebook model being saved.

    Models of other types (files, directories) and models without content are left alone. Configure it with
    ``--ContentsManager.pre_save_hook=qnnlib.experiments.notebook_format.pre_save_hook``.
    """
    if model.get("type") != "notebook" or not isinstance(model.get("content"), MutableMapping):
        return
    normalise(model["content"])


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: normalise the notebooks given (``--check``: only report them); prints each one changed."""
    parser = argparse.ArgumentParser(prog="python -m qnnlib.experiments.notebook_format",
                                     description="Store notebooks in the project's canonical form.")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook is not canonical")
    parser.add_argument("paths", nargs="+", type=Path, metavar="NOTEBOOK")
    args = parser.parse_args(argv)
    changed = []
    for path in args.paths:
        if args.check:
            if not is_canonical(path):
                changed.append(path)
        elif normalise_file(path):
            changed.append(path)
    for path in changed:
        print(f"{'not canonical' if args.check else 'normalised'}: {path}")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
