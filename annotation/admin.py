"""Django admin for the annotation models.

Rules kept here:

* Leases and judgements are read-only: they change only through the queue
  (:mod:`annotation.services.queue`), which keeps ``Pair.judgement_count`` equal to the rows.
* Pairs are created with :func:`catalog.create_pair` and retired with ``set_pair_retired``; their
  images are fixed once created and they are retired, not deleted (deleting would cascade to their
  judgements). Their k is read-only here: a change of k recomputes the pair's consensus (curation),
  so curation/admin.py registers a subclass of :class:`PairAdmin` in its place that sets it.
* Images come in through :func:`catalog.store_image` (API upload, import commands); here only
  their metadata is edited. Previews load from the reviewer-only ``/api/images/<id>/file/``.
* Expertise is edited inline on the user.
* A task's queue order is shown, never edited here: setting it recomputes pair priorities (ml), so
  ml/admin.py registers a subclass of :class:`TaskAdmin` with the actions that set it. annotation
  never imports ml or curation; the apps above extend these admins instead.
"""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import Count
from django.forms.models import model_to_dict
from django.urls import reverse
from django.utils.html import format_html

from annotation import roles
from annotation.models import Discipline, Expertise, Image, Judgement, Lease, Pair, PromptTuple, Task, normalise_prompt
from annotation.services import audit, catalog


def _preview(image: Image | None, size: int = 320):
    if image is None or image.pk is None:
        return "-"
    return format_html(
        '<a href="{0}" target="_blank"><img src="{0}" alt="image {1}" loading="lazy" '
        'style="max-width:{2}px;max-height:{2}px;border:1px solid #ccc"></a>',
        reverse("image-file", args=[image.pk]),
        image.pk,
        size,
    )


def _fields(obj) -> dict:
    """The object's fields as JSON, never a password hash."""
    return json.loads(json.dumps(model_to_dict(obj, exclude=["password"]), default=str))


class _AuditedAdmin(admin.ModelAdmin):
    """Admins who save a model directly here (taxonomy, tuples, expertise, users) are audited too:
    Django's own admin log hooks also write an :class:`~annotation.models.AuditEvent`."""

    def log_addition(self, request, obj, message):
        audit.record(request.user, f"{type(obj).__name__.lower()}.created", obj, after=_fields(obj))
        return super().log_addition(request, obj, message)

    def log_change(self, request, obj, message):
        audit.record(
            request.user,
            f"{type(obj).__name__.lower()}.changed",
            obj,
            after={**_fields(obj), "admin_message": str(message)},
        )
        return super().log_change(request, obj, message)

    def log_deletions(self, request, queryset):
        for obj in queryset:  # called before the rows go
            audit.record(request.user, f"{type(obj).__name__.lower()}.deleted", obj, before=_fields(obj))
        return super().log_deletions(request, queryset)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewable, never changed here."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Discipline)
class DisciplineAdmin(_AuditedAdmin):
    list_display = ("name", "slug", "task_count")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(task_count=Count("tasks"))

    @admin.display(ordering="task_count", description="tasks")
    def task_count(self, obj):
        return obj.task_count


@admin.register(Task)
class TaskAdmin(_AuditedAdmin):
    list_display = ("code", "name", "discipline", "kind", "queue_order", "tuple_count")
    list_filter = ("discipline", "kind", "queue_order")
    # Changing the order recomputes pair priorities from the active scorer, which is ml's business
    # (annotation never imports ml): ml/admin.py registers a subclass with the actions that do it.
    readonly_fields = ("queue_order",)
    search_fields = ("code", "name", "description")
    list_select_related = ("discipline",)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(tuple_count=Count("tuples"))

    @admin.display(ordering="tuple_count", description="tuples")
    def tuple_count(self, obj):
        return obj.tuple_count


class PromptTupleForm(forms.ModelForm):
    """Refuses a second tuple with the same normalised implicit prompt and task.

    The database enforces this too, but on ``implicit_normalised``, which the form does not edit,
    so Django's constraint validation skips it and a clash would surface as a server error.
    """

    class Meta:
        model = PromptTuple
        fields = "__all__"  # noqa: DJ007 - an admin form: the ModelAdmin decides which fields it shows

    def clean(self):
        data = super().clean()
        prompt = data.get("implicit_prompt")
        if prompt:
            clash = (
                PromptTuple.objects.filter(implicit_normalised=normalise_prompt(prompt), task=data.get("task"))
                .exclude(pk=self.instance.pk)
                .first()
            )
            if clash is not None:
                raise forms.ValidationError(f"Tuple {clash.pk} already has this implicit prompt and task.")
        return data


class ImageOfTupleInline(admin.TabularInline):
    model = Image
    fields = ("preview", "kind", "generator", "seed", "format", "width", "height")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="preview")
    def preview(self, obj):
        return _preview(obj, size=128)


@admin.register(PromptTuple)
class PromptTupleAdmin(_AuditedAdmin):
    form = PromptTupleForm
    list_display = ("id", "implicit_prompt", "task", "scene", "subject", "source", "created_at")
    list_filter = ("task__discipline", "task", "scene")
    search_fields = ("implicit_prompt", "explicit_prompt", "superficial_prompt", "subject", "source")
    list_select_related = ("task",)
    readonly_fields = ("implicit_normalised", "created_at", "updated_at")
    inlines = [ImageOfTupleInline]


@admin.register(Image)
class ImageAdmin(_AuditedAdmin):
    list_display = ("id", "kind", "format", "dimensions", "size_bytes", "tuple", "generator", "seed", "created_at")
    list_filter = ("kind", "format")
    search_fields = ("sha256", "generator", "tuple__implicit_prompt")
    list_select_related = ("tuple",)
    raw_id_fields = ("tuple",)
    fields = (
        "preview",
        "file",
        "sha256",
        "format",
        "width",
        "height",
        "size_bytes",
        "kind",
        "tuple",
        "generator",
        "seed",
        "created_at",
    )
    readonly_fields = ("preview", "file", "sha256", "format", "width", "height", "size_bytes", "created_at")

    def has_add_permission(self, request):
        return False  # uploads go through catalog.store_image (the API or the import commands)

    def has_delete_permission(self, request, obj=None):
        return False  # no service deletes images and their content-addressed files together

    @admin.display(description="size")
    def dimensions(self, obj):
        return f"{obj.width}x{obj.height}"

    @admin.display(description="preview")
    def preview(self, obj):
        return _preview(obj)


class PairForm(forms.ModelForm):
    class Meta:
        model = Pair
        fields = "__all__"  # noqa: DJ007 - an admin form: the ModelAdmin decides which fields it shows
        help_texts = {
            "status": "Choose retired to take the pair out of the queue. Open or complete un-retires it; "
            "which of the two follows from its judgements and k.",
        }

    def clean_k(self):
        k = self.cleaned_data["k"]
        if self.instance.pk and k < self.instance.judgement_count and not self.instance.is_gold:
            raise forms.ValidationError(
                f"This pair already has {self.instance.judgement_count} judgements; k cannot go below that."
            )
        return k


@admin.register(Pair)
class PairAdmin(admin.ModelAdmin):  # writes go through the catalog services, which audit
    form = PairForm
    list_display = ("id", "tuple", "task", "status", "k", "judgement_count", "created_at")
    list_filter = ("status", "tuple__task__discipline", "tuple__task")
    search_fields = ("=id", "tuple__implicit_prompt")
    list_select_related = ("tuple__task",)
    raw_id_fields = ("tuple", "image_correct", "image_wrong")
    actions = ["retire", "unretire"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ("status", "judgement_count")
        return (
            "tuple",
            "image_correct",
            "correct_preview",
            "image_wrong",
            "wrong_preview",
            "judgement_count",
            "created_at",
            *self.readonly_once_created,
        )

    readonly_once_created: tuple[str, ...] = ("k",)  # k: see the module docstring

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("tuple", "image_correct", "image_wrong", "k")
        return (
            "tuple",
            "image_correct",
            "correct_preview",
            "image_wrong",
            "wrong_preview",
            "status",
            "k",
            "judgement_count",
            "created_at",
        )

    def has_delete_permission(self, request, obj=None):
        return False  # retire instead: deleting would cascade to the pair's judgements

    @admin.display(ordering="tuple__task__code")
    def task(self, obj):
        return obj.tuple.task

    @admin.display(description="expected correct")
    def correct_preview(self, obj):
        return _preview(obj.image_correct)

    @admin.display(description="expected wrong")
    def wrong_preview(self, obj):
        return _preview(obj.image_wrong)

    def save_model(self, request, obj, form, change):
        """Every write goes through the catalog services; ``obj`` is reloaded from the result."""
        if not change:
            pair, _ = catalog.create_pair(obj.tuple, obj.image_correct, obj.image_wrong, k=obj.k, actor=request.user)
            obj.pk = pair.pk
        elif "status" in form.changed_data:
            catalog.set_pair_retired(obj.pk, obj.status == Pair.Status.RETIRED, actor=request.user)
        obj.refresh_from_db()

    @admin.action(description="Retire the selected pairs")
    def retire(self, request, queryset):
        self._set_retired(request, queryset, True)

    @admin.action(description="Un-retire the selected pairs")
    def unretire(self, request, queryset):
        self._set_retired(request, queryset, False)

    def _set_retired(self, request, queryset, retired: bool):
        pair_ids = list(queryset.values_list("pk", flat=True))
        for pair_id in pair_ids:
            catalog.set_pair_retired(pair_id, retired, actor=request.user)
        self.message_user(request, f"{len(pair_ids)} pairs {'retired' if retired else 'un-retired'}.")


@admin.register(Lease)
class LeaseAdmin(ReadOnlyAdmin):
    list_display = ("id", "pair", "annotator", "state", "created_at", "expires_at", "heartbeat_at", "ended_at")
    list_filter = ("state",)
    search_fields = ("=id", "=pair__id", "annotator__username")
    list_select_related = ("pair", "annotator")
    date_hierarchy = "created_at"


@admin.register(Judgement)
class JudgementAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "pair",
        "annotator",
        "choice",
        "agrees",
        "flag_prompt_unclear",
        "flag_image_broken",
        "flag_off_topic",
        "time_spent_ms",
        "created_at",
    )
    list_filter = ("choice", "flag_prompt_unclear", "flag_image_broken", "flag_off_topic", "pair__tuple__task")
    search_fields = ("=id", "=pair__id", "annotator__username", "comment")
    list_select_related = ("pair", "annotator")
    date_hierarchy = "created_at"

    @admin.display(boolean=True, description="agrees with expected")
    def agrees(self, obj):
        return obj.agrees_with_expected


class _ExpertiseFields:
    filter_horizontal = ("disciplines", "tasks")


@admin.register(Expertise)
class ExpertiseAdmin(_ExpertiseFields, _AuditedAdmin):
    list_display = ("user", "discipline_list", "task_list")
    search_fields = ("user__username",)
    list_select_related = ("user",)
    raw_id_fields = ("user",)

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("disciplines", "tasks")

    @admin.display(description="disciplines")
    def discipline_list(self, obj):
        return ", ".join(d.slug for d in obj.disciplines.all())

    @admin.display(description="tasks")
    def task_list(self, obj):
        return ", ".join(t.code for t in obj.tasks.all())


class ExpertiseInline(_ExpertiseFields, admin.StackedInline):
    model = Expertise
    can_delete = False
    max_num = 1


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class UserWithExpertiseAdmin(_AuditedAdmin, UserAdmin):
    """Django's user admin, plus the roles column and the expertise inline."""

    inlines = [ExpertiseInline]
    list_display = ("username", "email", "role_list", "is_active", "last_login")
    list_filter = ("groups", "is_active", "is_staff", "is_superuser")

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("groups")

    @admin.display(description="roles")
    def role_list(self, obj):
        names = {group.name for group in obj.groups.all() if group.name in roles.ROLES}
        if obj.is_superuser:
            names.add(roles.ADMIN)
        return ", ".join(sorted(names))
