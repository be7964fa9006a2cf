"""Read functions of the staff home page (config/home.py): the ML runs that are not finished yet."""

from __future__ import annotations

from ml.models import Run

RUNS_SHOWN = 10


def runs_in_progress(limit: int = RUNS_SHOWN) -> list[Run]:
    """Queued and running runs, oldest first (the one waiting longest on top), with who started them."""
    return list(
        Run.objects.exclude(status__in=Run.FINISHED).select_related("created_by").order_by("created_at", "id")[:limit]
    )
