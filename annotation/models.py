"""The Science-T2I data model: taxonomy, prompt tuples, images, pairs, leases and judgements.

State changes go through :mod:`annotation.services` (the queue in :mod:`annotation.services.queue`);
nothing else writes these rows. Locking policy: see the docstring of ``annotation/services/queue.py``.
"""

from __future__ import annotations

import re
import unicodedata

from django.conf import settings
from django.db import models
from django.db.models import Q


class Discipline(models.Model):
    slug = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=80, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Task(models.Model):
    class Kind(models.TextChoices):
        SUBJECT = "ST", "subject-oriented"
        CONDITION = "CT", "condition-oriented"

    code = models.CharField(max_length=8, unique=True, help_text="Short upper-case code, e.g. BU for buoyancy.")
    name = models.CharField(max_length=80, unique=True)
    discipline = models.ForeignKey(Discipline, on_delete=models.PROTECT, related_name="tasks")
    kind = models.CharField(max_length=2, choices=Kind.choices)
    description = models.TextField(blank=True)

    class QueueOrder(models.TextChoices):
        CREATED = "created", "creation order"
        UNCERTAINTY = "uncertainty", "scorer uncertainty first"
        DISAGREEMENT = "disagreement", "scorer-vs-expected disagreement first"
        JUDGE_DISAGREEMENT = "judge_disagreement", "scorer-vs-LMM-judge disagreement first"

    queue_order = models.CharField(
        max_length=20,
        choices=QueueOrder.choices,
        default=QueueOrder.CREATED,
        help_text="How the queue orders this task's pairs (active learning uses the active scorer's scores).",
    )

    class Meta:
        ordering = ["discipline__name", "code"]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"


# The longest prompt (implicit, explicit, superficial, and each paraphrase) the platform accepts, from the API
# and every importer alike: the normalised implicit prompt is indexed, and an index row has a size limit.
PROMPT_MAX_CHARS = 2000


def normalise_prompt(text: str) -> str:
    """The key under which two implicit prompts count as the same: case, accents of width,
    punctuation at the ends and runs of whitespace do not matter."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"\s+", " ", text).strip()
    return text.strip(" .!?;:,")


class PromptTuple(models.Model):
    class Scene(models.TextChoices):
        SIMPLE = "simple", "simple"
        COMPLEX = "complex", "complex"

    implicit_prompt = models.TextField()
    implicit_normalised = models.TextField(editable=False, db_index=True)
    explicit_prompt = models.TextField(blank=True)
    superficial_prompt = models.TextField(blank=True)
    task = models.ForeignKey(
        Task,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="tuples",
        help_text="Empty until an admin assigns one; tuples without a task are never queued.",
    )
    subject = models.CharField(max_length=200, blank=True, help_text="The phrase a detector should box.")
    scene = models.CharField(max_length=8, choices=Scene.choices, default=Scene.SIMPLE)
    source = models.CharField(max_length=200, blank=True, help_text="Where the tuple came from (file, run).")
    provenance = models.JSONField(default=dict, blank=True)
    # Other wordings of each prompt, in order, without the prompt itself: the published train rows carry
    # several paraphrases per prompt, and the paper's trainer draws one at random per example. Exported as
    # ``[prompt, *paraphrases]``. Written by annotation.services.catalog (lists of non-empty strings).
    implicit_paraphrases = models.JSONField(default=list, blank=True)
    explicit_paraphrases = models.JSONField(default=list, blank=True)
    superficial_paraphrases = models.JSONField(default=list, blank=True)
    # The tuple's grading rubrics (published columns): the scene gate an LMM judge checks first, then the
    # 0-3 reality grade. Shown to reviewers, exported unchanged.
    scene_scoring = models.TextField(blank=True, help_text="Scene gate: what the image must show.")
    real_scoring = models.TextField(blank=True, help_text="Reality grade 0-3: what makes the image correct.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["implicit_normalised", "task"], name="tuple_unique_prompt_task"),
            models.UniqueConstraint(
                fields=["implicit_normalised"], condition=Q(task__isnull=True), name="tuple_unique_prompt_no_task"
            ),
        ]

    def __str__(self) -> str:
        return self.implicit_prompt[:80]

    def save(self, *args, **kwargs):
        self.implicit_normalised = normalise_prompt(self.implicit_prompt)
        super().save(*args, **kwargs)

    def prompts(self, which: str) -> list[str]:
        """Every wording of the ``implicit``/``explicit``/``superficial`` prompt: the prompt, then its
        paraphrases (an empty prompt gives ``[]``)."""
        first = getattr(self, f"{which}_prompt")
        return ([first] if first else []) + [p for p in getattr(self, f"{which}_paraphrases") or [] if p != first]


class Image(models.Model):
    class Kind(models.TextChoices):
        EXPLICIT = "explicit", "explicit prompt"
        SUPERFICIAL = "superficial", "superficial prompt"
        IMPLICIT = "implicit", "implicit prompt"
        UPLOADED = "uploaded", "uploaded"

    # The storage key is derived from the content hash only, so neither the key nor the URL
    # says which prompt the image was made from.
    file = models.FileField(max_length=255)
    sha256 = models.CharField(max_length=64, unique=True)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    format = models.CharField(max_length=10)
    size_bytes = models.PositiveIntegerField()
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.UPLOADED)
    tuple = models.ForeignKey(PromptTuple, on_delete=models.SET_NULL, null=True, blank=True, related_name="images")
    generator = models.CharField(max_length=200, blank=True)
    seed = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"image {self.pk} ({self.width}x{self.height} {self.format})"


class Pair(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "open"
        COMPLETE = "complete", "complete"
        RETIRED = "retired", "retired"

    tuple = models.ForeignKey(PromptTuple, on_delete=models.PROTECT, related_name="pairs")
    image_correct = models.ForeignKey(Image, on_delete=models.PROTECT, related_name="+", help_text="Expected correct.")
    image_wrong = models.ForeignKey(Image, on_delete=models.PROTECT, related_name="+", help_text="Expected wrong.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    k = models.PositiveSmallIntegerField(default=3, help_text="Overlap target: judgements wanted for this pair.")
    # Set only by curation.services.gold: gold pairs are mixed into every queue, outside k and consensus.
    is_gold = models.BooleanField(default=False, db_index=True)
    # A gold pair in its task's qualification set (set only through catalog.set_pair_qualification, by
    # curation.services.gold): served first, and alone, to annotators of the task until they are assessed.
    is_qualification = models.BooleanField(default=False)
    # Kept equal to the number of Judgement rows by the services, under the pair's row lock.
    judgement_count = models.PositiveIntegerField(default=0)
    # Higher is served first; set from the active scorer's PairScore by ml.services.active_learning
    # according to the task's queue_order (0 everywhere = creation order).
    priority = models.FloatField(default=0.0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["tuple", "image_correct", "image_wrong"], name="pair_unique_images"),
            models.CheckConstraint(condition=~Q(image_correct=models.F("image_wrong")), name="pair_two_images"),
            # Gold pairs are shown to every qualified annotator once, so k does not bound them.
            models.CheckConstraint(
                condition=Q(is_gold=True) | Q(judgement_count__lte=models.F("k")), name="pair_not_over_k"
            ),
            models.CheckConstraint(condition=Q(k__gte=1), name="pair_k_positive"),
            models.CheckConstraint(
                condition=Q(is_qualification=False) | Q(is_gold=True), name="pair_qualification_gold"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "id"], name="pair_status_id"),
            models.Index(fields=["status", "-priority", "id"], name="pair_status_priority_id"),
            # The qualification sets are small: the queue and the stats find them through this partial index.
            models.Index(fields=["tuple"], condition=Q(is_qualification=True), name="pair_qualification"),
        ]

    def __str__(self) -> str:
        return f"pair {self.pk} of tuple {self.tuple_id}"


class Lease(models.Model):
    class State(models.TextChoices):
        ACTIVE = "active", "active"
        JUDGED = "judged", "judged"
        RELEASED = "released", "released (skipped)"
        EXPIRED = "expired", "expired"
        CANCELLED = "cancelled", "cancelled"

    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="leases")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="leases")
    left_image = models.ForeignKey(Image, on_delete=models.PROTECT, related_name="+")
    right_image = models.ForeignKey(Image, on_delete=models.PROTECT, related_name="+")
    state = models.CharField(max_length=10, choices=State.choices, default=State.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            # One live lease per annotator: asking again returns it instead of taking a second pair.
            models.UniqueConstraint(
                fields=["annotator"], condition=Q(state="active"), name="lease_one_active_per_annotator"
            ),
        ]
        indexes = [
            models.Index(fields=["pair", "state", "expires_at"], name="lease_pair_live"),
            models.Index(fields=["state", "expires_at"], name="lease_state_expiry"),
            models.Index(fields=["annotator", "state"], name="lease_annotator_state"),
        ]

    def __str__(self) -> str:
        return f"lease {self.pk} of pair {self.pair_id} to {self.annotator_id} ({self.state})"


class Judgement(models.Model):
    class Choice(models.TextChoices):
        LEFT = "left", "left image is correct"
        RIGHT = "right", "right image is correct"
        BOTH = "both", "both correct"
        NEITHER = "neither", "neither correct"

    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="judgements")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="judgements")
    lease = models.OneToOneField(Lease, on_delete=models.PROTECT, related_name="judgement")
    choice = models.CharField(max_length=8, choices=Choice.choices)
    # The image actually chosen, resolved from the lease's display order; empty for both/neither.
    chosen_image = models.ForeignKey(Image, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    flag_prompt_unclear = models.BooleanField(default=False)
    flag_image_broken = models.BooleanField(default=False)
    flag_off_topic = models.BooleanField(default=False)
    comment = models.TextField(blank=True, max_length=2000)
    time_spent_ms = models.PositiveIntegerField(null=True, blank=True)

    class Confidence(models.TextChoices):
        SURE = "sure", "sure"
        UNSURE = "unsure", "unsure"

    # Optional: how sure the annotator was, and why (labels from the task guide's reasons, TaskGuide.reasons).
    confidence = models.CharField(max_length=6, choices=Confidence.choices, blank=True, default="")
    reasons = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["pair", "annotator"], name="judgement_once_per_annotator"),
        ]
        indexes = [models.Index(fields=["annotator", "created_at"], name="judgement_annotator_time")]

    def __str__(self) -> str:
        return f"judgement {self.pk}: {self.annotator_id} chose {self.choice} on pair {self.pair_id}"

    @property
    def agrees_with_expected(self) -> bool | None:
        if self.chosen_image_id is None:
            return None
        return self.chosen_image_id == self.pair.image_correct_id


# Limits of a task guide, checked by the guide's service and its forms alike.
GUIDE_MAX_CHARS = 20_000
GUIDE_MAX_REASONS = 8
REASON_MAX_CHARS = 60
EXAMPLE_NOTE_MAX_CHARS = 1000
GUIDE_MAX_EXAMPLES = 12


class TaskGuide(models.Model):
    """What counts as correct in a task: Markdown (rendered without raw HTML, annotation/guides.py), the
    reasons an annotator may give with a judgement, and worked examples. Written by
    :mod:`annotation.services.guides`."""

    task = models.OneToOneField(Task, on_delete=models.CASCADE, related_name="guide")
    body = models.TextField(blank=True, max_length=GUIDE_MAX_CHARS, help_text="Markdown; raw HTML is shown as text.")
    reasons = models.JSONField(default=list, blank=True, help_text="Short labels an annotator may pick.")
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    def __str__(self) -> str:
        return f"guide of {self.task.code}"


class GuideExample(models.Model):
    """A decided pair shown in its task's guide with the image that is right. A pair that is an example is
    never judged again nor gold (:mod:`annotation.services.guides` explains how that is kept)."""

    guide = models.ForeignKey(TaskGuide, on_delete=models.CASCADE, related_name="examples")
    pair = models.OneToOneField(Pair, on_delete=models.PROTECT, related_name="guide_example")
    right_image = models.ForeignKey(Image, on_delete=models.PROTECT, related_name="+")
    note = models.TextField(blank=True, max_length=EXAMPLE_NOTE_MAX_CHARS)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"example pair {self.pair_id} in {self.guide}"

    @property
    def other_image_id(self) -> int:
        pair = self.pair
        return pair.image_wrong_id if self.right_image_id == pair.image_correct_id else pair.image_correct_id


class Expertise(models.Model):
    """What an annotator may be served: pairs whose task is listed, or whose task's discipline is."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="expertise")
    disciplines = models.ManyToManyField(Discipline, blank=True, related_name="experts")
    tasks = models.ManyToManyField(Task, blank=True, related_name="experts")
    # Set only by curation.services.gold when gold accuracy falls below the threshold; an admin restores.
    paused = models.BooleanField(default=False, help_text="Taken off the queue (low gold accuracy).")

    class Meta:
        verbose_name_plural = "expertise"

    def __str__(self) -> str:
        return f"expertise of {self.user}"


class Qualification(models.Model):
    """An annotator's assessment on a task's qualification set: written once they have answered every
    qualification pair of the task (``correct`` of ``answered``), or by an admin's decision (``decided_by``).
    No row while they are still answering. Written only by :mod:`annotation.services.qualification`."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="qualifications")
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="qualifications")
    passed = models.BooleanField()
    correct = models.PositiveIntegerField(default=0)
    answered = models.PositiveIntegerField(default=0)
    decided_at = models.DateTimeField()
    # Set when an admin decided (let pass, or fail); an admin's decision is not reassessed by judgements.
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "task"], name="qualification_once_per_task")]

    def __str__(self) -> str:
        return f"qualification of {self.user_id} for task {self.task_id}: {'passed' if self.passed else 'failed'}"


class AuditEvent(models.Model):
    """One state change in annotation or curation: who, what, when, before and after. Append-only:
    rows are written by :func:`annotation.services.audit.record` and never updated or deleted."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    action = models.CharField(max_length=60, db_index=True, help_text="e.g. judgement.created, consensus.changed")
    target_type = models.CharField(max_length=60)
    target_id = models.CharField(max_length=64)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["target_type", "target_id"], name="audit_target")]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.action} {self.target_type}:{self.target_id}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("Audit events are never changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("Audit events are never deleted.")
