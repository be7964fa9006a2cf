"""Generator runs: ``sft``, ``oft`` and ``eval_generator``.

``KINDS`` maps each kind to its module (``validate``, ``handle``, ``SCHEMA``, ``REFS``).
"""

KINDS: dict = {}
