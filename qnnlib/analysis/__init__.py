"""Analyses of trained or untrained models that need no training loop.

``horowitz`` (the 45 nm energy tables as data) ← ``energy`` (energy and memory account per layer) ;
``filters`` (repetition of binary 3×3 filters).
"""
