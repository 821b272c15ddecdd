"""What the tests that run the CUDA kernels on the CPU emulator share: whether g++ is there, and the skip mark."""

from __future__ import annotations

import pytest

from qnnlib.runtime.cuda_host import gxx

try:
    gxx()
    HAVE_GXX = True
except RuntimeError:
    HAVE_GXX = False

#: Skips a test (or, as ``pytestmark``, a module) where no C++20 compiler can build the emulated kernels.
needs_gxx = pytest.mark.skipif(
    not HAVE_GXX, reason="g++ not found: install g++ (apt install g++) to run the CUDA kernels under the host emulator"
)
