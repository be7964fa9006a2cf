"""Page lists whose total would cost a scan of a large table (the audit log)."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.utils.functional import cached_property

COUNT_CAP = 10_000


class CappedPaginator(Paginator):
    """A :class:`~django.core.paginator.Paginator` that counts at most ``cap`` rows.

    ``count`` runs ``SELECT COUNT(*) FROM (... LIMIT cap + 1)``, so a page costs the same whatever the
    list's length; when more rows match, ``capped`` is true, ``count`` is ``cap`` and the pages stop there
    (the page says so and asks to narrow the filters).
    """

    def __init__(self, object_list, per_page, *, cap: int | None = None, **kwargs):
        super().__init__(object_list, per_page, **kwargs)
        self.cap = COUNT_CAP if cap is None else cap

    @cached_property
    def _capped_count(self) -> int:
        return self.object_list[: self.cap + 1].count()

    @cached_property
    def count(self) -> int:
        return min(self._capped_count, self.cap)

    @property
    def capped(self) -> bool:
        return self._capped_count > self.cap
