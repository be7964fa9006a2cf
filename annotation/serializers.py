"""Serializers of the catalogue API (see annotation/api.py).

Two kinds live here. *Output* serializers render rows and are read-only. *Input* serializers only
validate a request; the views hand their ``validated_data`` to :mod:`annotation.services`, so no
serializer here writes a row (the taxonomy ones excepted: disciplines and tasks have no invariants
beyond their unique columns, which the serializer validates, and no service of their own). A task's
``queue_order`` is read-only here: changing it recomputes the pairs' priorities from the active
scorer, which is ml's business (annotation never imports ml), so ml serves ``/api/tasks/`` with a
subclass of :class:`TaskSerializer` that also accepts it (``ml/api_tasks.py``).

Judgements have two shapes because annotators judge blind: their own view never says which image
they chose or whether it was the expected one; reviewers see both.
"""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers
from rest_framework.validators import UniqueValidator

from annotation import roles
from annotation.models import PROMPT_MAX_CHARS, Discipline, Image, Judgement, Pair, PromptTuple, Task

BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1
SMALLINT_MAX = 32767


class TaskCodeField(serializers.RegexField):
    """A task code: letters and digits (it appears in URLs), stored upper-case."""

    def __init__(self, **kwargs):
        super().__init__(r"^[A-Za-z0-9]{1,8}$", max_length=8, **kwargs)

    def to_internal_value(self, data):
        return super().to_internal_value(data).upper()


class TaskByCodeField(serializers.SlugRelatedField):
    """A task named by its code, case-insensitively (``bu`` is ``BU``)."""

    def __init__(self, **kwargs):
        super().__init__(slug_field="code", **kwargs)

    def to_internal_value(self, data):
        return super().to_internal_value(data.upper() if isinstance(data, str) else data)


# --- Taxonomy -------------------------------------------------------------------------------


class DisciplineSerializer(serializers.ModelSerializer):
    class Meta:
        model = Discipline
        fields = ["id", "slug", "name"]


class TaskSerializer(serializers.ModelSerializer):
    code = TaskCodeField(
        validators=[UniqueValidator(queryset=Task.objects.all())],
        help_text="Short code of letters and digits, stored upper-case, e.g. BU.",
    )
    discipline = serializers.SlugRelatedField(slug_field="slug", queryset=Discipline.objects.all())
    queue_order = serializers.ChoiceField(
        choices=Task.QueueOrder.choices,
        read_only=True,
        help_text="How the queue orders this task's pairs: created, uncertainty or disagreement (active learning).",
    )

    class Meta:
        model = Task
        fields = ["id", "code", "name", "discipline", "kind", "description", "queue_order"]


# --- Prompt tuples --------------------------------------------------------------------------


class TupleSerializer(serializers.ModelSerializer):
    task = serializers.SlugRelatedField(slug_field="code", read_only=True, allow_null=True)
    discipline = serializers.SlugRelatedField(
        source="task.discipline", slug_field="slug", read_only=True, allow_null=True
    )

    class Meta:
        model = PromptTuple
        fields = [
            "id",
            "implicit_prompt",
            "explicit_prompt",
            "superficial_prompt",
            "implicit_paraphrases",
            "explicit_paraphrases",
            "superficial_paraphrases",
            "scene_scoring",
            "real_scoring",
            "task",
            "discipline",
            "subject",
            "scene",
            "source",
            "provenance",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class TupleUpdateSerializer(serializers.Serializer):
    """What PATCH may change. The implicit prompt and the task identify a tuple and are fixed.

    As in :func:`annotation.services.catalog.upsert_tuple`, an empty value never erases a field.
    """

    # Prompts are bounded as the importers bound them (an unbounded one reached the database and failed on the
    # size of an index row).
    explicit_prompt = serializers.CharField(required=False, allow_blank=True, max_length=PROMPT_MAX_CHARS)
    superficial_prompt = serializers.CharField(required=False, allow_blank=True, max_length=PROMPT_MAX_CHARS)
    subject = serializers.CharField(required=False, allow_blank=True, max_length=200)
    scene = serializers.ChoiceField(choices=PromptTuple.Scene.choices, required=False)
    source = serializers.CharField(required=False, allow_blank=True, max_length=200)
    implicit_paraphrases = serializers.ListField(
        child=serializers.CharField(max_length=PROMPT_MAX_CHARS, allow_blank=True),
        required=False,
        max_length=50,
        help_text="Other wordings of the implicit prompt (a non-empty list replaces the stored one).",
    )
    explicit_paraphrases = serializers.ListField(
        child=serializers.CharField(max_length=PROMPT_MAX_CHARS, allow_blank=True), required=False, max_length=50
    )
    superficial_paraphrases = serializers.ListField(
        child=serializers.CharField(max_length=PROMPT_MAX_CHARS, allow_blank=True), required=False, max_length=50
    )
    scene_scoring = serializers.CharField(
        required=False, allow_blank=True, max_length=20000, help_text="Grading rubric: the scene gate."
    )
    real_scoring = serializers.CharField(
        required=False, allow_blank=True, max_length=20000, help_text="Grading rubric: the 0-3 reality grade."
    )


class TupleCreateSerializer(TupleUpdateSerializer):
    implicit_prompt = serializers.CharField(max_length=PROMPT_MAX_CHARS)
    task = TaskByCodeField(
        queryset=Task.objects.all(),
        required=False,
        allow_null=True,
        default=None,
        help_text="Task code (e.g. RU); a tuple without a task is never queued.",
    )
    provenance = serializers.JSONField(required=False, default=dict, help_text="A JSON object; kept from creation on.")

    def validate_provenance(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("provenance must be a JSON object.")
        return value


# --- Images ---------------------------------------------------------------------------------


class ImageSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField(help_text="Where reviewers and admins fetch the bytes.")
    tuple = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)  # an upload may have none

    class Meta:
        model = Image
        fields = [
            "id",
            "url",
            "sha256",
            "width",
            "height",
            "format",
            "size_bytes",
            "kind",
            "tuple",
            "generator",
            "seed",
            "created_at",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, image) -> str:
        url = reverse("image-file", args=[image.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request else url


# Named "Image" so that its request component is "ImageRequest": the `kind` enum then belongs to
# one component family and drf-spectacular names it without a collision warning.
@extend_schema_serializer(component_name="Image")
class ImageUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="PNG, JPEG or WebP bytes.")
    kind = serializers.ChoiceField(choices=Image.Kind.choices, default=Image.Kind.UPLOADED)
    tuple = serializers.PrimaryKeyRelatedField(
        queryset=PromptTuple.objects.all(), required=False, allow_null=True, default=None
    )
    generator = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    seed = serializers.IntegerField(
        required=False, allow_null=True, default=None, min_value=BIGINT_MIN, max_value=BIGINT_MAX
    )

    def validate_file(self, upload):
        """Refuse an oversized upload from its size alone, before reading it into memory."""
        if upload.size > settings.IMAGE_MAX_BYTES:
            raise serializers.ValidationError(
                f"The file is {upload.size} bytes; the limit is {settings.IMAGE_MAX_BYTES}."
            )
        return upload


# --- Pairs ----------------------------------------------------------------------------------


class PairSerializer(serializers.ModelSerializer):
    task = serializers.SlugRelatedField(source="tuple.task", slug_field="code", read_only=True, allow_null=True)

    class Meta:
        model = Pair
        fields = ["id", "tuple", "task", "image_correct", "image_wrong", "status", "k", "judgement_count", "created_at"]
        read_only_fields = fields


class PairCreateSerializer(serializers.Serializer):
    tuple = serializers.PrimaryKeyRelatedField(queryset=PromptTuple.objects.all())
    image_correct = serializers.PrimaryKeyRelatedField(queryset=Image.objects.all(), help_text="Expected correct.")
    image_wrong = serializers.PrimaryKeyRelatedField(queryset=Image.objects.all(), help_text="Expected wrong.")
    k = serializers.IntegerField(
        required=False, min_value=1, max_value=SMALLINT_MAX, help_text="Judgements wanted; default from the settings."
    )

    def validate(self, attrs):
        if attrs["image_correct"].pk == attrs["image_wrong"].pk:
            raise serializers.ValidationError({"image_wrong": "A pair needs two different images."})
        return attrs


class PairUpdateSerializer(serializers.Serializer):
    k = serializers.IntegerField(required=False, min_value=1, max_value=SMALLINT_MAX)
    status = serializers.ChoiceField(
        choices=Pair.Status.choices,
        required=False,
        help_text="'retired' takes the pair out of the queue. 'open' or 'complete' un-retire it; "
        "which of the two it then is follows from its judgements and k.",
    )

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError("Give k, status or both.")
        return attrs


# --- Judgements -----------------------------------------------------------------------------

OWN_JUDGEMENT_FIELDS = [
    "id",
    "pair",
    "choice",
    "flag_prompt_unclear",
    "flag_image_broken",
    "flag_off_topic",
    "comment",
    "time_spent_ms",
    "confidence",
    "reasons",
    "created_at",
]


class OwnJudgementSerializer(serializers.ModelSerializer):
    """An annotator's own judgement: what they answered, never which image that was."""

    # Declared: a read-only model field loses its blank choice in the schema ("" = not said).
    confidence = serializers.ChoiceField(
        choices=[("", "not said"), *Judgement.Confidence.choices],
        read_only=True,
        help_text="How sure the annotator said they were; empty when they did not say.",
    )
    reasons = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="Reasons ticked, from the task guide's list."
    )

    class Meta:
        model = Judgement
        fields = OWN_JUDGEMENT_FIELDS
        read_only_fields = fields


class ReviewJudgementSerializer(OwnJudgementSerializer):
    """Any judgement, for reviewers: who judged, the image chosen and whether it was the expected one."""

    annotator = serializers.CharField(source="annotator.username", read_only=True)
    agrees_with_expected = serializers.BooleanField(
        read_only=True, allow_null=True, help_text="Empty when the choice was both or neither."
    )

    class Meta(OwnJudgementSerializer.Meta):
        model = Judgement
        fields = [*OWN_JUDGEMENT_FIELDS, "annotator", "chosen_image", "agrees_with_expected"]
        read_only_fields = fields


# --- The signed-in user ---------------------------------------------------------------------


class ExpertiseSummarySerializer(serializers.Serializer):
    disciplines = serializers.ListField(child=serializers.CharField(), help_text="Discipline slugs.")
    tasks = serializers.ListField(child=serializers.CharField(), help_text="Task codes.")


class MeSerializer(serializers.Serializer):
    username = serializers.CharField()
    roles = serializers.ListField(child=serializers.ChoiceField(choices=roles.ROLES))
    expertise = ExpertiseSummarySerializer()
