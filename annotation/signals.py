"""Signals the annotation services send, so curation can react without annotation importing it.

``judgements_changed`` is sent inside the transaction that added or removed a judgement (or changed
the pair's k), while the pair's row lock is held (``pair_id``, ``actor``); receivers may read and
write under that lock.
"""

from django.dispatch import Signal

judgements_changed = Signal()
