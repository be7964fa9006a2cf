"""The machine-learning core: SciScore, FLUX generation and fine-tuning.

Importable and testable without Django (nothing under ``ml/core`` imports Django), so a bare GPU
box can run it: ``python -m ml --help``.
"""
