"""Serializers of the runs and registry API (ml/api.py): runs, run kinds, models, lineage, comparisons.

Kinds and statuses are plain strings here: the choice sets of other models' ``kind`` and
``status`` fields would collide with them as schema enums.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from curation.models import DatasetVersion
from ml import queries
from ml.models import ModelVersion, Run
from ml.services import judges, registry


class ModelBriefSerializer(serializers.ModelSerializer):
    kind = serializers.CharField(read_only=True, help_text="scorer, generator_base or generator_lora.")
    url = serializers.SerializerMethodField(help_text="The model's page.")

    class Meta:
        model = ModelVersion
        fields = ["id", "kind", "name", "is_active", "url"]
        read_only_fields = fields

    def get_url(self, model) -> str:
        return reverse("ml:model-detail", args=[model.pk])


class RunBriefSerializer(serializers.ModelSerializer):
    kind = serializers.CharField(read_only=True)
    status = serializers.CharField(read_only=True, help_text="queued, running, succeeded, failed or cancelled.")
    url = serializers.SerializerMethodField(help_text="The run's page.")

    class Meta:
        model = Run
        fields = ["id", "kind", "status", "created_at", "finished_at", "url"]
        read_only_fields = fields

    def get_url(self, run) -> str:
        return reverse("ml:run-detail", args=[run.pk])


class DatasetVersionBriefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    url = serializers.SerializerMethodField(help_text="The version's curation page.")

    def get_url(self, version) -> str:
        return reverse("curation:version-detail", args=[version.pk])


class RunSerializer(RunBriefSerializer):
    created_by = serializers.CharField(source="created_by.username", read_only=True)
    input_model = ModelBriefSerializer(read_only=True, allow_null=True)
    output_model = ModelBriefSerializer(read_only=True, allow_null=True)

    class Meta(RunBriefSerializer.Meta):
        fields = [
            "id",
            "kind",
            "status",
            "progress",
            "phase",
            "worker",
            "schedule",
            "input_model",
            "output_model",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
            "heartbeat_at",
            "url",
        ]
        read_only_fields = fields


class SeriesSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="The metric, or the entry of a dict-valued metric (a task code...).")
    points = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField()), help_text="[x, y] pairs."
    )


class PlotSerializer(serializers.Serializer):
    name = serializers.CharField()
    x = serializers.CharField(help_text="step, or record (the position in the series).")
    series = SeriesSerializer(many=True)


class RunDetailSerializer(RunSerializer):
    plots = serializers.SerializerMethodField(help_text="The metrics as plot series (see ml.queries.metric_plots).")

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "params", "log_tail", "metrics", "artifacts", "error", "plots"]
        read_only_fields = fields

    @extend_schema_field(PlotSerializer(many=True))
    def get_plots(self, run) -> list:
        return queries.metric_plots(run.metrics)


class RunStartSerializer(serializers.Serializer):
    kind = serializers.CharField(help_text="One of the kinds GET run-kinds/ lists.")
    params = serializers.DictField(
        required=False, default=dict, help_text="The kind's parameters; defaults are filled in."
    )


class ModelRegisterSerializer(serializers.Serializer):
    """What ``POST models/`` reads; :func:`ml.services.registry.register_model` does the rest (kinds and
    parents that go together, unique names per kind).

    ``location`` must be an absolute path but need not exist here: it is resolved on the GPU workers'
    filesystem, which the web host may not mount (``manage.py register_model`` checks it where it runs).
    """

    kind = serializers.CharField(help_text="scorer, generator_base, generator_lora or judge.")
    name = serializers.CharField(max_length=200, help_text="Unique per kind.")
    location = serializers.CharField(
        max_length=1000,
        help_text="Absolute path of the checkpoint (directory, or a scorer's bare checkpoint file) on the GPU "
        "workers' filesystem. Not checked for existence: the web host may not mount it. An endpoint judge's "
        "location is its OpenAI-compatible server's base URL (http://host:port/v1).",
    )
    config = serializers.DictField(
        required=False,
        default=dict,
        help_text="Settings the runs read (a bare scorer file's arch...). A judge's: backend (local or endpoint), "
        "for an endpoint model, api_key_env (the name of the workers' environment variable holding the key; "
        "keys are never stored), max_concurrency, timeout, max_retries, request_budget; for a local judge "
        "batch_size and dtype.",
    )
    parent = serializers.PrimaryKeyRelatedField(
        queryset=ModelVersion.objects.all(),
        required=False,
        allow_null=True,
        default=None,
        help_text="The model this one derives from; a generator_lora needs a generator.",
    )
    dataset_version = serializers.PrimaryKeyRelatedField(
        queryset=DatasetVersion.objects.all(),
        required=False,
        allow_null=True,
        default=None,
        help_text="The dataset version it was trained on.",
    )
    activate = serializers.BooleanField(
        required=False, default=False, help_text="Make it the active scorer once registered (scorers only)."
    )

    def validate_kind(self, value: str) -> str:
        if value not in ModelVersion.Kind.values:
            raise serializers.ValidationError(f"kind must be one of {', '.join(ModelVersion.Kind.values)}.")
        return value

    def validate(self, attrs: dict) -> dict:
        # An endpoint judge's location is its server's URL (checked with its config by the registry).
        is_judge = attrs.get("kind") == ModelVersion.Kind.JUDGE
        if not (is_judge and judges.is_url(attrs["location"])) and not PurePosixPath(attrs["location"]).is_absolute():
            message = "location must be an absolute path on the GPU workers' filesystem (starting with /)"
            if is_judge:
                message += ", or an endpoint judge's server base URL (http://host:8000/v1)"
            raise serializers.ValidationError({"location": message + "."})
        if attrs.get("activate") and attrs.get("kind") != ModelVersion.Kind.SCORER:
            raise serializers.ValidationError({"activate": "Only a scorer can be the active scorer."})
        return attrs


class RunKindFieldSerializer(serializers.Serializer):
    name = serializers.CharField()
    ref = serializers.CharField(
        required=False, help_text="References only: model, dataset_version, tuples, tasks or path."
    )
    required = serializers.BooleanField(required=False)
    model_kinds = serializers.ListField(child=serializers.CharField(), required=False)
    help = serializers.CharField(required=False)
    type = serializers.CharField(required=False, help_text="Typed fields only: int, float, bool, choice...")
    default = serializers.JSONField(required=False)
    minimum = serializers.JSONField(required=False, help_text="A number (exact: seeds reach 2**62).")
    maximum = serializers.JSONField(required=False, help_text="A number.")
    choices = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="A choice takes one; a field whose default is a list takes several.",
    )


class RunKindSerializer(serializers.Serializer):
    kind = serializers.CharField()
    label = serializers.CharField()
    fields = RunKindFieldSerializer(many=True)


class ModelVersionSerializer(ModelBriefSerializer):
    parent = ModelBriefSerializer(read_only=True, allow_null=True)
    dataset_version = DatasetVersionBriefSerializer(read_only=True, allow_null=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True, allow_null=True)

    class Meta(ModelBriefSerializer.Meta):
        fields = [
            "id",
            "kind",
            "name",
            "location",
            "config",
            "metrics",
            "parent",
            "dataset_version",
            "is_active",
            "created_by",
            "created_at",
            "url",
        ]
        read_only_fields = fields


class LineageSerializer(serializers.Serializer):
    ancestors = ModelBriefSerializer(many=True, help_text="Parent first, root last.")
    dataset_version = DatasetVersionBriefSerializer(
        allow_null=True, help_text="The model's own, else its nearest ancestor's."
    )
    produced_by = RunBriefSerializer(many=True, help_text="The runs that produced it.")
    used_by = RunBriefSerializer(many=True, help_text="The runs that took it as input, latest first.")
    children = ModelBriefSerializer(many=True)


class ModelDetailSerializer(ModelVersionSerializer):
    lineage = serializers.SerializerMethodField()

    class Meta(ModelVersionSerializer.Meta):
        fields = [*ModelVersionSerializer.Meta.fields, "lineage"]
        read_only_fields = fields

    @extend_schema_field(LineageSerializer)
    def get_lineage(self, model) -> dict:
        found = registry.lineage(model)
        return LineageSerializer(
            {
                "ancestors": found.ancestors,
                "dataset_version": found.dataset_version,
                "produced_by": found.produced_by,
                "used_by": queries.runs_using(model),
                "children": found.children,
            }
        ).data


class CellSerializer(serializers.Serializer):
    a = serializers.FloatField(allow_null=True)
    b = serializers.FloatField(allow_null=True)
    diff = serializers.FloatField(allow_null=True, help_text="b - a; null when either is missing.")


class TaskCellSerializer(CellSerializer):
    task = serializers.CharField()


class SplitComparisonSerializer(serializers.Serializer):
    split = serializers.CharField(help_text="validation, test_S, test_C, or another evaluation the models hold.")
    overall = CellSerializer()
    tasks = TaskCellSerializer(many=True)


class ComparisonSerializer(serializers.Serializer):
    a = ModelBriefSerializer()
    b = ModelBriefSerializer()
    splits = SplitComparisonSerializer(many=True)


class ImageOriginSerializer(serializers.Serializer):
    image = serializers.IntegerField(source="image.pk")
    generator = serializers.CharField(source="image.generator", help_text="run:<run id>:<model name> when generated.")
    seed = serializers.IntegerField(source="image.seed", allow_null=True)
    tuple = serializers.IntegerField(source="image.tuple_id", allow_null=True)
    run = RunBriefSerializer(allow_null=True, help_text="The run that generated it; null when unknown.")
    model = ModelBriefSerializer(allow_null=True, help_text="The registered generator the run used.")
