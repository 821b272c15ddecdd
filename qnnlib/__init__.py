"""qnnlib — a reproduction library for Hubara et al., *Quantized Neural Networks* (JMLR 2018).

The paper's method sits at the top of the package; everything else lives in a wing with one concern.
Layers, bottom up — a module imports only lower layers, or its own layer inside its own wing
(``tests/test_architecture.py`` checks it; docs/architecture.md draws it):

1. ``quantize`` — sign/binarize with the STE (Eqs. 1–5), hard sigmoid, AP2, k-bit linear and log quantizers.
2. ``precision`` (per-layer bits), ``layers`` (latent-weight binary/k-bit layers), ``norm`` (shift-based BN,
   Alg. 3), ``gradquant`` (quantized gradients), ``losses``, ``metrics``.
3. ``optim`` — shift-based AdaMax (Alg. 2), Glorot LR scaling, latent-weight clipping.
4. ``models/`` — the paper's networks; ``data/`` — datasets, verified downloads, splits.
5. ``evaluation`` — eval mode, loss and metrics over a split, the process group.
6. ``train`` — the training loop of Alg. 1 (resumable, any loss/metrics, distributed hooks).
7. ``runtime/`` — bit-packing, binary GEMM (CPU Numba, GPU CuPy over ``kernels/*.cu``), bit-planes (Eq. 6),
   BN+sign folding, packed networks (Alg. 4), export, packed checkpoints; ``analysis/`` — energy and
   memory account (Horowitz tables), filter repetition.
8. ``bench/`` — benchmarks that time their baseline in the same run.
9. ``experiments/`` — configuration and profiles, runner, results, paper numbers, one module per
   experiment, reproduction with Papermill.
10. ``cli`` — ``python -m qnnlib reproduce|list|bench``.

Import modules directly, e.g. ``from qnnlib.quantize import binarize``; there are no re-exports.
"""

__version__ = "0.1.0"
