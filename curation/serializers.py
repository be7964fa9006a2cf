"""Serializers of the curation API (see curation/api.py): read-only output shapes, and the
adjudication input, which only validates; :mod:`curation.services.adjudication` writes."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from curation.models import Adjudication, Consensus, Label
from curation.services.adjudication import COMMENT_MAX_LENGTH


class LabelCountsSerializer(serializers.Serializer):
    """Judgements per label (a dict in the row; a fixed shape here so the schema names the keys)."""

    expected = serializers.IntegerField()
    other = serializers.IntegerField()
    both = serializers.IntegerField()
    neither = serializers.IntegerField()


class ConsensusSerializer(serializers.ModelSerializer):
    task = serializers.CharField(source="pair.tuple.task.code", read_only=True, allow_null=True)
    counts = LabelCountsSerializer(read_only=True)

    class Meta:
        model = Consensus
        fields = ["pair", "task", "outcome", "label", "agreement", "n_judgements", "counts", "updated_at"]
        read_only_fields = fields


class AdjudicationSerializer(serializers.ModelSerializer):
    reviewer = serializers.CharField(source="reviewer.username", read_only=True)

    class Meta:
        model = Adjudication
        fields = ["id", "pair", "reviewer", "label", "comment", "created_at"]
        read_only_fields = fields


# Named "Adjudication" so that the request component is "AdjudicationRequest".
@extend_schema_serializer(component_name="Adjudication")
class AdjudicationInputSerializer(serializers.Serializer):
    # A plain id, not a related field: an unknown pair is a 404, not a 400.
    pair = serializers.IntegerField(min_value=1, help_text="The pair id.")
    label = serializers.ChoiceField(choices=Label.choices, help_text="Relative to the pair's expected image.")
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=COMMENT_MAX_LENGTH)
