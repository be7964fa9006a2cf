"""Django admin for the curation models.

* Consensus and adjudications are read-only: consensus follows from judgements and adjudications
  (:mod:`curation.services.consensus`), adjudications are made on the reviewer pages.
* Gold items are created and their answers changed through :func:`gold.mark_gold`; they are
  unmarked with an action (:func:`gold.unmark_gold`), never deleted here, because unmarking also
  changes the pair, recomputes quality and consensus, and is audited.
* Annotator quality is read-only; the action "Mark flagged annotators restored" calls
  :func:`gold.restore`.
* Pairs: annotation's :class:`~annotation.admin.PairAdmin`, with k editable, set through
  :func:`judging.set_pair_k` (a pair's k decides its consensus), registered in its place.
"""

from __future__ import annotations

from django.contrib import admin

from annotation import admin as annotation_admin
from annotation.admin import ReadOnlyAdmin
from annotation.models import Pair
from curation.models import Adjudication, AnnotatorQuality, Consensus, DatasetVersion, GoldItem, VersionMember
from curation.services import gold, judging

admin.site.unregister(Pair)


@admin.register(Pair)
class PairAdmin(annotation_admin.PairAdmin):
    readonly_once_created = ()

    def save_model(self, request, obj, form, change):
        if change and "k" in form.changed_data:
            judging.set_pair_k(obj.pk, obj.k, actor=request.user)
        super().save_model(request, obj, form, change)


@admin.register(Consensus)
class ConsensusAdmin(ReadOnlyAdmin):
    list_display = ("pair", "outcome", "label", "agreement", "n_judgements", "updated_at")
    list_filter = ("outcome", "label", "pair__tuple__task")
    search_fields = ("=pair__id", "pair__tuple__implicit_prompt")
    list_select_related = ("pair",)


@admin.register(Adjudication)
class AdjudicationAdmin(ReadOnlyAdmin):
    list_display = ("id", "pair", "reviewer", "label", "created_at")
    list_filter = ("label",)
    search_fields = ("=pair__id", "reviewer__username", "comment")
    list_select_related = ("pair", "reviewer")
    date_hierarchy = "created_at"


@admin.register(GoldItem)
class GoldItemAdmin(admin.ModelAdmin):
    list_display = ("pair", "answer", "created_by", "created_at")
    list_filter = ("answer", "pair__tuple__task")
    search_fields = ("=pair__id", "pair__tuple__implicit_prompt")
    list_select_related = ("pair", "created_by")
    raw_id_fields = ("pair",)
    actions = ["unmark"]

    def get_fields(self, request, obj=None):
        return ("pair", "answer") if obj is None else ("pair", "answer", "created_by", "created_at")

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else ("pair", "created_by", "created_at")

    def has_delete_permission(self, request, obj=None):
        return False  # unmark instead (the action): the pair, quality and consensus change with it

    def save_model(self, request, obj, form, change):
        """Marking and changing the answer go through the service; ``obj`` takes the saved row's id and is
        reloaded from it (the admin then links to and logs that row)."""
        item, _ = gold.mark_gold(request.user, obj.pair_id, obj.answer)
        obj.pk = item.pk
        obj.refresh_from_db()

    @admin.action(description="Unmark the selected gold pairs")
    def unmark(self, request, queryset):
        pair_ids = list(queryset.values_list("pair_id", flat=True))
        for pair_id in pair_ids:
            gold.unmark_gold(request.user, pair_id)
        self.message_user(request, f"{len(pair_ids)} pairs are normal pairs again.")


@admin.register(AnnotatorQuality)
class AnnotatorQualityAdmin(ReadOnlyAdmin):
    list_display = (
        "user",
        "gold_judged",
        "gold_correct",
        "accuracy",
        "flagged",
        "paused",
        "flagged_at",
        "restored_at",
        "restored_by",
    )
    list_filter = ("flagged",)
    search_fields = ("user__username",)
    list_select_related = ("user__expertise", "restored_by")
    actions = ["restore"]

    @admin.display(description="accuracy")
    def accuracy(self, obj):
        return "-" if obj.gold_accuracy is None else f"{obj.gold_accuracy:.0%}"

    @admin.display(boolean=True, description="paused")
    def paused(self, obj):
        expertise = getattr(obj.user, "expertise", None)
        return bool(expertise and expertise.paused)

    @admin.action(description="Mark flagged annotators restored")
    def restore(self, request, queryset):
        flagged = [quality.user for quality in queryset.filter(flagged=True).select_related("user")]
        for user in flagged:
            gold.restore(request.user, user)
        self.message_user(request, f"{len(flagged)} annotators restored.")


@admin.register(DatasetVersion)
class DatasetVersionAdmin(ReadOnlyAdmin):
    """Frozen by curation.services.versions.build_version; never changed here."""

    list_display = ("name", "pairs", "short_hash", "parent", "created_by", "created_at")
    search_fields = ("name", "content_hash")
    list_select_related = ("parent", "created_by")
    date_hierarchy = "created_at"

    @admin.display(description="pairs")
    def pairs(self, obj):
        return obj.counts.get("total", 0)

    @admin.display(description="content hash")
    def short_hash(self, obj):
        return obj.content_hash[:12]


@admin.register(VersionMember)
class VersionMemberAdmin(ReadOnlyAdmin):
    list_display = ("version", "pair", "label", "outcome", "agreement", "n_judgements", "split")
    list_filter = ("split", "label", "outcome", "version")
    search_fields = ("=pair__id", "=version__name", "=group_key")
    list_select_related = ("version", "pair")
    raw_id_fields = ("pair",)
