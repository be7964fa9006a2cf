"""The curation API under /api/curation/: consensus per pair and reviewer adjudications.

Reviewers and admins only (annotators 403, anonymous 401). Thin views: an input serializer
validates, :mod:`curation.services.adjudication` decides, an output serializer renders.

=============================  ==========================================================
endpoint                       what
=============================  ==========================================================
GET consensus/                 every consensus row; ``?outcome=``, ``?task=``
GET consensus/<pair_id>/       one pair's consensus (404 before its first judgement)
GET adjudications/             every adjudication, newest first; ``?pair=``
POST adjudications/            ``{pair, label, comment}``: 201; 400 bad label; 404 unknown pair
=============================  ==========================================================

The adjudication page's script also reads one pair with the id of the next one in its review list
(:class:`ReviewItemView`, under /curation/adjudication/<pair_id>/data/, see curation/urls.py).
"""

from __future__ import annotations

import re

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.models import Pair
from annotation.permissions import IsReviewer
from annotation.query_params import choice_param as _choice_param
from annotation.query_params import int_param as _int_param
from annotation.query_params import openapi_param as _param
from curation import serializers as s
from curation.models import Adjudication, Consensus
from curation.services import adjudication as service


@extend_schema_view(
    list=extend_schema(
        parameters=[
            _param("outcome", f"One of {', '.join(Consensus.Outcome.values)}."),
            _param("task", "Only pairs of this task code."),
        ],
        summary="Consensus of every pair that has been judged",
    ),
    retrieve=extend_schema(
        parameters=[OpenApiParameter("pair_id", int, OpenApiParameter.PATH, description="The pair id.")],
        summary="One pair's consensus",
    ),
)
class ConsensusViewSet(viewsets.ReadOnlyModelViewSet):
    """What each pair's judgements say, or the reviewer's decision (outcome ``adjudicated``)."""

    serializer_class = s.ConsensusSerializer
    permission_classes = [IsReviewer]
    lookup_field = "pair_id"
    lookup_value_regex = r"\d+"

    def get_queryset(self):
        items = Consensus.objects.select_related("pair__tuple__task").order_by("pair_id")
        if outcome := _choice_param(self.request, "outcome", Consensus.Outcome.values):
            items = items.filter(outcome=outcome)
        if task := self.request.query_params.get("task"):
            items = items.filter(pair__tuple__task__code__iexact=task)
        return items


@extend_schema_view(
    list=extend_schema(
        parameters=[_param("pair", "Only adjudications of this pair id.", int)], summary="Adjudications, newest first"
    ),
)
class AdjudicationViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Reviewers' decisions; the latest one per pair is the pair's label."""

    serializer_class = s.AdjudicationSerializer
    permission_classes = [IsReviewer]

    def get_queryset(self):
        items = Adjudication.objects.select_related("reviewer").order_by("-created_at", "-id")
        if (pair_id := _int_param(self.request, "pair")) is not None:
            items = items.filter(pair_id=pair_id)
        return items

    @extend_schema(
        request=s.AdjudicationInputSerializer,
        responses={
            201: s.AdjudicationSerializer,
            400: OpenApiResponse(description="Invalid label or comment, or a gold pair."),
            404: OpenApiResponse(description="No such pair."),
        },
        summary="Decide a pair's label",
    )
    def create(self, request):
        serializer = s.AdjudicationInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = serializer.validated_data
        try:
            decision = service.adjudicate(request.user, fields["pair"], fields["label"], fields["comment"])
        except Pair.DoesNotExist:
            raise NotFound(f"No pair {fields['pair']}.") from None
        except service.InvalidAdjudication as exc:
            raise ValidationError({"detail": str(exc)}) from None
        return Response(self.get_serializer(decision).data, status=status.HTTP_201_CREATED)


def _timestamp(value) -> str | None:
    return value.isoformat() if value else None


def review_item_data(item: dict, following: int | None) -> dict:
    """One pair as the adjudication page's script renders it (static/js/adjudicate.js): the same facts as the
    server-rendered page, labels relative to the expected image."""
    pair, consensus = item["pair"], item["consensus"]
    tuple_ = pair.tuple
    flag_names = (
        ("flag_prompt_unclear", "prompt unclear"),
        ("flag_image_broken", "image broken"),
        ("flag_off_topic", "off-topic"),
    )
    return {
        "pair": pair.pk,
        "is_gold": pair.is_gold,
        "k": pair.k,
        "task": {"code": tuple_.task.code, "name": tuple_.task.name},
        "discipline": tuple_.task.discipline.name,
        "prompts": {
            "implicit": tuple_.implicit_prompt,
            "explicit": tuple_.explicit_prompt,
            "superficial": tuple_.superficial_prompt,
        },
        "paraphrases": [
            f"{which}: {text}"
            for which in ("implicit", "explicit", "superficial")
            for text in getattr(tuple_, f"{which}_paraphrases") or []
        ],
        "scene": tuple_.get_scene_display(),
        "scene_scoring": tuple_.scene_scoring,
        "real_scoring": tuple_.real_scoring,
        "images": {
            "expected": reverse("image-file", args=[pair.image_correct_id]),
            "other": reverse("image-file", args=[pair.image_wrong_id]),
        },
        "consensus": consensus
        and {
            "outcome": consensus.outcome,
            "outcome_display": consensus.get_outcome_display(),
            "label": consensus.label,
            "label_display": consensus.get_label_display() if consensus.label else "",
            "n_judgements": consensus.n_judgements,
            "agreement": consensus.agreement,
        },
        "judgements": [
            {
                "annotator": row.judgement.annotator.get_username(),
                "label": row.label,
                "flags": [text for name, text in flag_names if getattr(row.judgement, name)],
                "comment": row.judgement.comment,
                "created_at": _timestamp(row.judgement.created_at),
                "seconds": round(row.judgement.time_spent_ms / 1000) if row.judgement.time_spent_ms else None,
            }
            for row in item["judgements"]
        ],
        "adjudications": [
            {
                "label": a.label,
                "label_display": a.get_label_display(),
                "reviewer": a.reviewer.get_username(),
                "comment": a.comment,
                "created_at": _timestamp(a.created_at),
            }
            for a in item["adjudications"]
        ],
        "next": following,
    }


TASK_CODE = re.compile(r"[A-Za-z0-9_-]{1,32}")


def queue_filters(request) -> dict:
    """The review list's filters from the query string (``task``, ``outcome``, ``flagged``); 400 when invalid."""
    task = request.query_params.get("task", "")
    if task and not TASK_CODE.fullmatch(task):
        raise ValidationError({"task": "A task code is 1 to 32 letters, digits, - or _."})
    outcome = _choice_param(request, "outcome", [o.value for o in service.REVIEW_OUTCOMES])
    flagged = _choice_param(request, "flagged", ["on", "true", "1", "off", "false", "0"])
    return {"task": task or None, "outcome": outcome, "flagged": flagged in ("on", "true", "1")}


class ReviewItemView(APIView):
    """One pair of the review list for the adjudication page's script, with the id of the pair after it."""

    permission_classes = [IsReviewer]

    @extend_schema(
        parameters=[
            OpenApiParameter("pair_id", int, OpenApiParameter.PATH, description="The pair id."),
            _param("task", "The review list's task filter (a task code)."),
            _param("outcome", "The review list's outcome filter: disputed or reversed."),
            _param("flagged", "on: the review list of flagged pairs."),
        ],
        responses={200: OpenApiTypes.OBJECT, 400: OpenApiResponse(description="Invalid filter."), 404: None},
        summary="One pair of the review list, and the next one",
    )
    def get(self, request, pair_id: int):
        filters = queue_filters(request)
        try:
            item = service.review_item(pair_id)
        except Pair.DoesNotExist:
            raise NotFound(f"No pair {pair_id}.") from None
        following = service.next_in_queue(service.review_queue(**filters), pair_id)
        return Response(review_item_data(item, following.pair_id if following else None))
