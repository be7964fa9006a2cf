"""Scorer runs: ``train_scorer``, ``eval_scorer`` and ``score_pairs``.

``KINDS`` maps each kind to its module (``validate``, ``handle``, ``SCHEMA``, ``REFS``); what they
share lives in :mod:`.scoring`.
"""

from ml.models import Run
from ml.services.runs import eval_scorer, score_pairs, train_scorer

KINDS: dict = {
    Run.Kind.TRAIN_SCORER: train_scorer,
    Run.Kind.EVAL_SCORER: eval_scorer,
    Run.Kind.SCORE_PAIRS: score_pairs,
}
