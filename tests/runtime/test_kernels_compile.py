"""Every CUDA source in kernels/ compiles with nvcc for sm_80 (A100) and sm_90 (H100), no GPU needed.

Skipped cleanly when nvcc is absent. The GPU tests in test_binary_gemm.py check the kernels' results.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from qnnlib.runtime.gemm_cuda import KERNEL_DIR, KERNELS

SOURCES = sorted(KERNEL_DIR.glob("*.cu"))
ARCHS = ("80", "90")


def _nvcc() -> str | None:
    for candidate in (
        shutil.which("nvcc"),
        os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "nvcc"),
        "/usr/local/bin/nvcc",
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


NVCC = _nvcc()
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not found (set CUDA_HOME or PATH)")


def test_every_kernel_file_is_known_and_self_contained():
    assert {p.name for p in SOURCES} == set(KERNELS)
    for path in SOURCES:
        # CuPy compiles these with NVRTC, which has no system headers.
        assert not re.search(r"^\s*#\s*include", path.read_text(), re.M), f"{path.name} has an #include"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """Compile every source for every arch, all nvcc processes in parallel; results by file name."""
    out = tmp_path_factory.mktemp("cubin")
    gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in ARCHS]
    procs = {
        path.name: subprocess.Popen(
            [NVCC, "--fatbin", *gencode, "-Werror", "all-warnings", "-Xptxas", "-warn-spills",
             "-o", str(out / f"{path.stem}.fatbin"), str(path)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for path in SOURCES
    }
    results = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        results[name] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    return results


@needs_nvcc
@pytest.mark.parametrize("source", [p.name for p in SOURCES])
def test_compiles_for_sm80_and_sm90(compiled, source):
    result = compiled[source]
    assert result.returncode == 0, f"nvcc failed on {source}:\n{result.stderr}"
    assert "spill" not in result.stderr.lower(), result.stderr


@needs_nvcc
def test_tensor_core_kernel_emits_the_1bit_and_popc_mma(tmp_path):
    ptx = tmp_path / "b1.ptx"
    done = subprocess.run(
        [NVCC, "-arch=sm_90", "-ptx", "-o", str(ptx), str(KERNEL_DIR / "b1_tensorcore.cu")],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    text = ptx.read_text()
    assert "mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc" in text
    # The host code's arithmetic, C = K - 2 (popA + popB) + 4 popc(A AND B), assumes AND-popc. (XOR-popc is a
    # choice, not a gap: ptxas 13.0 assembles mma...b1.b1.s32.xor.popc for sm_90 too; a kernel switched to it
    # would need C = K - 2 popc(A XOR B) and no row popcounts.)
    assert "xor.popc" not in text
