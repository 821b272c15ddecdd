"""The notebooks' shape (their execution is tested by ``pytest --nbval notebooks``): registered, thin, stored
without outputs, one Papermill ``parameters`` cell that Papermill can read in full, a final sanity check."""

from __future__ import annotations

import ast
import json
import logging
from pathlib import Path

import pytest

from qnnlib.experiments.config import EXPERIMENTS

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _code(cell: dict) -> str:
    return "".join(cell["source"])


def test_every_notebook_is_registered_and_every_registered_notebook_exists() -> None:
    names = {p.name for p in NOTEBOOKS}
    assert names == {e.notebook for e in EXPERIMENTS.values()}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_cell_is_first_and_papermill_reads_all_of_it(path: Path, caplog) -> None:
    import papermill as pm

    code = [c for c in _cells(path) if c["cell_type"] == "code"]
    params = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1 and params[0] is code[0], "one parameters cell, the first code cell"
    src = _code(params[0])
    assert src.splitlines()[0] == 'profile = "quick"'
    assigned = [n.targets[0].id for n in ast.parse(src).body if isinstance(n, ast.Assign)]
    with caplog.at_level(logging.WARNING):
        found = list(pm.inspect_notebook(str(path)))
    assert found == assigned, f"Papermill reads {found}, the cell assigns {assigned} (no '=' or quotes in comments)"
    assert not [r for r in caplog.records if "Unable to parse" in r.getMessage()]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_thin_stored_without_outputs_and_ends_with_a_sanity_check(path: Path) -> None:
    cells = _cells(path)
    for c in cells:
        if c["cell_type"] != "code":
            continue
        assert not c.get("outputs") and c.get("execution_count") is None, "stored without outputs"
        tree = ast.parse(_code(c))
        defs = [n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
        assert not defs, f"library logic in a notebook: {defs} (move it into qnnlib and test it)"
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("qnnlib"):
                assert not any(a.name.startswith("_") for a in node.names), "private names imported"
    last = [c for c in cells if c["cell_type"] == "code"][-1]
    assert "check_sanity(" in _code(last), "the last cell checks the notebook's own results"
