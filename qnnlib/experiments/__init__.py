"""The experiments of the paper: configuration, runs, results and their reproduction with Papermill.

``config`` (profiles, the registry, ``resolve``) ; ``results`` (paper numbers, metrics JSON, comparison
tables) ; ``runner`` (data with fallback, checkpoints, seeds, rows) ; one module per experiment that needs
code of its own (``kernels``) ; ``reproduction`` (every notebook through Papermill, SUMMARY.md).
"""
