"""Benchmarks: ``python -m qnnlib.bench {qat,cpu,gpu}``.

Every benchmark measures its baseline in the same run and prints ratios; none is a timed test.

- ``qat``: training-step time of a binarized MLP against the same net in float (issue 2).
- ``cpu``: binary GEMM (Numba XOR-popcount) against ``torch.matmul`` float32 on this CPU.
- ``gpu``: compiles and verifies every CUDA kernel bit-exact, then prints the GPU GEMM table.
"""

from __future__ import annotations

import importlib
import sys

_COMMANDS = {
    "qat": "qnnlib.bench.qat",
    "cpu": "qnnlib.bench.gemm",
    "gpu": "qnnlib.bench.gemm",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in _COMMANDS:
        print(__doc__)
        print(f"usage: python -m qnnlib.bench {{{','.join(_COMMANDS)}}} [options]")
        return 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(_COMMANDS[name])
    return int(module.main([name, *rest]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
