"""Generator runs: ``sft``, ``oft`` and ``eval_generator``.

``KINDS`` maps each kind to its module (``validate``, ``handle``, ``SCHEMA``, ``REFS``); what they
share is in :mod:`.flux` and :mod:`.artifacts`.
"""

from ml.models import Run
from ml.services.runs import eval_generator, oft, sft

KINDS: dict = {
    Run.Kind.SFT: sft,
    Run.Kind.OFT: oft,
    Run.Kind.EVAL_GENERATOR: eval_generator,
}
