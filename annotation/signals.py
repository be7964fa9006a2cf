"""Signals the annotation services send, so curation can react without annotation importing it.

``judgements_changed`` is sent inside the transaction that added or removed a judgement (or changed
the pair's k), while the pair's row lock is held (``pair_id``, ``actor``); receivers may read and
write under that lock. The queue also passes ``pair``: the locked Pair as it now stands (after
its count and status were written), so receivers need not read it again; other senders omit it.
"""

from django.dispatch import Signal

judgements_changed = Signal()
