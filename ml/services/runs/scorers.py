"""Scorer runs: ``train_scorer``, ``eval_scorer`` and ``score_pairs``.

``KINDS`` maps each kind to its module (``validate``, ``handle``, ``SCHEMA``, ``REFS``).
"""

KINDS: dict = {}
