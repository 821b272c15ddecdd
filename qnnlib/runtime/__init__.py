"""The binary runtime: trained BNNs executed on bit-packed weights with XNOR/AND-popcount kernels.

``hardware`` (CPU flags, GPU) and ``arrays`` (NumPy/CuPy/torch) ← ``bitpack`` (±1 → words) ←
``binary_gemm`` (Eq. 7 on CPU and GPU; CUDA sources in ``kernels/``) ← ``bitplanes`` (Eq. 6) and
``folding`` (BN + sign → integer thresholds) ← ``packed_bnn`` (Alg. 4) ← ``export`` (a trained model →
``PackedBNN``) ; ``packed_checkpoint`` (the bit-packed file and its size on disk).
"""
