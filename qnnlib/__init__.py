"""qnnlib — a reproduction library for Hubara et al., *Quantized Neural Networks* (JMLR 2018).

Modules, lower layers first (a module never imports a higher layer):

1. ``quantize`` — sign/binarize (STE), hard sigmoid, AP2, k-bit linear and log quantizers.
2. ``layers``, ``norm`` (shift BN), ``optim`` (shift AdaMax, Glorot LR, clipping), ``gradquant``, ``losses``.
3. ``models`` (the paper's networks), ``idx`` + ``download`` → ``datasets`` (MNIST family), ``bitpack``,
   ``timing``, ``horowitz`` (45 nm energy tables).
4. ``train`` (resumable fit), ``binary_gemm`` (CPU/GPU XNOR-popcount GEMM), ``bitplanes`` (Eq. 6),
   ``folding`` (BN + sign → thresholds), ``packed_bnn``, ``inference``, ``packed_checkpoint``,
   ``energy``, ``filters``.
5. ``config`` (profiles), ``experiment``, ``results``, ``reproduce``, ``kernel_bench``, ``bench``.

Import submodules directly, e.g. ``from qnnlib.quantize import binarize``.
"""

__version__ = "0.1.0"
