"""The package's shape: import layers, no private names across modules, no re-export facades, no pointers
outside the repository. Read from the source with ``ast``, so a violation names the file and the line."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "qnnlib"

# Layers, bottom up: a module may import modules of a lower layer, or of its own layer inside its own
# wing (the method's top-level modules count as one wing). docs/architecture.md shows the same table.
LAYERS: list[tuple[str, ...]] = [
    ("quantize", "files", "checks"),
    ("precision", "layers", "recurrent", "norm", "gradquant", "losses", "metrics", "progress"),
    ("optim",),
    ("models", "data"),
    ("evaluation",),
    ("train",),
    ("runtime", "analysis"),
    ("bench",),
    ("experiments",),
    ("cli", "__main__"),
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        out[".".join(["qnnlib", *parts])] = path
    return out


MODULES = _modules()


def _unit(module: str) -> str:
    """``qnnlib.runtime.bitpack`` -> ``runtime``; ``qnnlib.quantize`` -> ``quantize``; ``qnnlib`` -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _layer(module: str) -> int:
    unit = _unit(module)
    for i, names in enumerate(LAYERS):
        if unit in names:
            return i
    raise AssertionError(f"{module} is in no layer of tests/test_architecture.py: add its wing to LAYERS")


def _wing(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else "<method>"


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, imported qnnlib module, names) of every import of a qnnlib module in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names if a.name.split(".")[0] == "qnnlib"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                raise AssertionError(f"{path}:{node.lineno}: relative import; use absolute qnnlib.* imports")
            if node.module and node.module.split(".")[0] == "qnnlib":
                names = [a.name for a in node.names]
                submodules = [n for n in names if f"{node.module}.{n}" in MODULES]
                if submodules:  # from qnnlib.runtime import bitpack
                    out += [(node.lineno, f"{node.module}.{n}", []) for n in submodules]
                rest = [n for n in names if n not in submodules]
                if rest:
                    out.append((node.lineno, node.module, rest))
    return out


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_follow_the_layers(module: str) -> None:
    if module == "qnnlib":
        return
    mine, wing = _layer(module), _wing(module)
    for line, target, _ in _imports(MODULES[module]):
        if target == "qnnlib" or target == module:
            continue
        theirs = _layer(target)
        where = f"{MODULES[module].relative_to(ROOT)}:{line} imports {target}"
        assert theirs <= mine, f"{where}: layer {theirs} is above this module's layer {mine}"
        if theirs == mine and target.split(".")[:2] != module.split(".")[:2]:
            assert _wing(target) == wing, f"{where}: same layer, another wing"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_names_across_modules(module: str) -> None:
    for line, target, names in _imports(MODULES[module]):
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        assert not private, (f"{MODULES[module].relative_to(ROOT)}:{line} imports private {private} from {target}: "
                             "make the shared name public (in a small backend module if two modules share it)")


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_re_export_facades(module: str) -> None:
    """Every name a module lists in ``__all__`` is defined there, not imported from elsewhere."""
    tree = ast.parse(MODULES[module].read_text())
    defined: set[str] = set()
    exported: list[str] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name):
                    defined.add(t.id)
                    if t.id == "__all__":
                        exported = list(ast.literal_eval(node.value))
    imported = sorted(set(exported) - defined)
    assert not imported, f"{MODULES[module].relative_to(ROOT)} re-exports {imported}: import them from their module"


def _product_files() -> list[Path]:
    files = [*PACKAGE.rglob("*.py"), *(ROOT / "notebooks").glob("*.ipynb"), ROOT / "README.md"]
    files += [*(ROOT / "docs").rglob("*.md")] if (ROOT / "docs").is_dir() else []
    return sorted(files)


@pytest.mark.parametrize("path", _product_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_pointers_outside_the_repository(path: Path) -> None:
    text = path.read_text()
    hits = sorted(set(re.findall(r"\b(?:DESIGN|PAPER)\.md\b|\.\./shared\b", text)))
    assert not hits, f"{path.relative_to(ROOT)} points at {hits}, notes outside the repository: cite docs/ instead"
