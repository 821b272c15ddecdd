"""The binary runtime: trained BNNs executed on bit-packed weights with XNOR/AND-popcount kernels.

``hardware`` (CPU flags, GPU) and ``arrays`` (NumPy/CuPy/torch) ← ``bitpack`` (±1 → words, the word size,
the Numba word packer) ← ``gemm_cpu`` (Numba kernels) and ``gemm_cuda`` (CuPy over ``kernels/*.cu``), and
``folding`` (BN + sign → integer thresholds) ← ``binary_gemm`` (Eq. 7: ``binary_matmul``, the fused
``binary_matmul_sign``, operand checks, NumPy reference) ← ``bitplanes`` (Eq. 6) ; ``packed_checkpoint`` (the one packed file format, sizes on
disk) ← ``packed_bnn`` (Alg. 4) ← ``export`` (a trained model → ``PackedBNN``).
"""
