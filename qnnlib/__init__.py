"""qnnlib — a reproduction library for Hubara et al., *Quantized Neural Networks* (JMLR 2018).

Layers (lower never imports higher): quantize → layers/norm/optim/gradquant/losses → models/datasets
→ train/bitpack/binary_gemm/inference/energy → config/results/reproduce.  Import submodules directly,
e.g. ``from qnnlib.quantize import binarize``.
"""

__version__ = "0.1.0"
