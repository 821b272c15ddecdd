"""Benchmarks: each times its baseline in the same run and prints ratios and the hardware (never a timed test).

``timing`` (the shared protocol: warm-up, interleaved rounds, medians) ← ``gemm`` (binary GEMM sweeps,
CPU and GPU), ``mlp`` (MNIST-MLP inference, float vs packed BNN), ``qat`` (training-step overhead).
Run them with ``python -m qnnlib bench {qat,cpu,gpu}``.
"""
