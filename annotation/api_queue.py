"""The annotator's queue API: next, heartbeat, release (skip) and lease images; the judgement and undo
views are curation's (curation/api_judging.py: a judgement has consequences there), on the same paths.

Thin views: parse, call :mod:`annotation.services.queue`, serialise. A lease's payload carries
only what the annotator may see: the implicit prompt, task, discipline and two image URLs that
name the lease and a side, never an image id or which image is expected.
"""

from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import media, roles
from annotation.models import GUIDE_MAX_REASONS, REASON_MAX_CHARS, GuideExample, Judgement, Lease
from annotation.openapi import ErrorSerializer
from annotation.permissions import IsAnnotator
from annotation.services import guides, queue
from annotation.stats import annotator_stats


class LeaseSerializer(serializers.Serializer):
    """A lease as the annotator sees it (next, heartbeat, undo): the one definition of the payload. The
    fields declare its schema; :meth:`to_representation` builds it straight from the loaded lease, because
    DRF's field-by-field rendering cost more than the rest of a ``next`` (docs/benchmarks/queue.md).
    tests/annotation/test_queue_sql.py checks the two agree."""

    lease_id = serializers.IntegerField(source="id")
    pair_id = serializers.IntegerField(source="pair.id")
    implicit_prompt = serializers.CharField(source="pair.tuple.implicit_prompt")
    task = serializers.DictField(help_text="code, name and kind")
    discipline = serializers.DictField(help_text="slug and name")
    left_image_url = serializers.URLField()
    right_image_url = serializers.URLField()
    expires_at = serializers.DateTimeField()
    state = serializers.CharField()

    def to_representation(self, lease) -> dict:
        pair = lease.pair
        task = pair.tuple.task
        request = self.context.get("request")
        left, right = (reverse("lease-image", args=[lease.id, side]) for side in ("left", "right"))
        if request is not None:
            left, right = request.build_absolute_uri(left), request.build_absolute_uri(right)
        return {
            "lease_id": lease.id,
            "pair_id": pair.id,
            "implicit_prompt": str(pair.tuple.implicit_prompt),
            "task": {"code": task.code, "name": task.name, "kind": task.kind},
            "discipline": {"slug": task.discipline.slug, "name": task.discipline.name},
            "left_image_url": left,
            "right_image_url": right,
            "expires_at": _DATETIME.to_representation(lease.expires_at),
            "state": str(lease.state),
        }


_DATETIME = serializers.DateTimeField()


class JudgementInputSerializer(serializers.Serializer):
    choice = serializers.ChoiceField(choices=Judgement.Choice.choices)
    flag_prompt_unclear = serializers.BooleanField(default=False)
    flag_image_broken = serializers.BooleanField(default=False)
    flag_off_topic = serializers.BooleanField(default=False)
    comment = serializers.CharField(default="", allow_blank=True, max_length=2000)
    time_spent_ms = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=86_400_000)
    confidence = serializers.ChoiceField(
        choices=Judgement.Confidence.choices, default="", allow_blank=True, help_text="Optional: sure or unsure."
    )
    reasons = serializers.ListField(
        child=serializers.CharField(max_length=REASON_MAX_CHARS),
        default=list,
        max_length=GUIDE_MAX_REASONS,
        help_text="Optional: labels from the task guide's reasons.",
    )

    def validate_reasons(self, value):
        return tuple(dict.fromkeys(value))  # repeats once, order kept


class JudgementReceiptSerializer(serializers.Serializer):
    """What the annotator gets back: their own choice, never whether it matched the expected image."""

    judgement_id = serializers.IntegerField(source="id")
    pair_id = serializers.IntegerField()
    choice = serializers.CharField()
    created_at = serializers.DateTimeField()


def lease_payload(lease: Lease, request) -> dict:
    """A lease as the annotator sees it (next, heartbeat, undo): the one definition, LeaseSerializer."""
    return LeaseSerializer(lease, context={"request": request}).data


def judgement_input(request) -> queue.JudgementInput:
    """The judgement's fields from the request body (400 with the serializer's errors otherwise)."""
    serializer = JudgementInputSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    return queue.JudgementInput(**serializer.validated_data)


def refusal(exc: queue.QueueError) -> Response:
    return Response({"detail": exc.message, "code": exc.code}, status=exc.status)


class QueueView(APIView):
    """The queue endpoints: annotators only."""

    permission_classes = [IsAnnotator]


class NextFilterSerializer(serializers.Serializer):
    """``next``'s optional filters, in a JSON object body or the query string."""

    task = serializers.CharField(
        required=False, allow_blank=True, max_length=64, help_text="Only pairs of this task code (e.g. BU)."
    )
    discipline = serializers.CharField(
        required=False, allow_blank=True, max_length=64, help_text="Only pairs of this discipline slug (e.g. physics)."
    )


class QueueNextView(QueueView):
    @extend_schema(
        request=NextFilterSerializer,
        parameters=[
            OpenApiParameter("task", str, description="Only pairs of this task code (e.g. BU)."),
            OpenApiParameter("discipline", str, description="Only pairs of this discipline slug (e.g. physics)."),
        ],
        responses={
            200: LeaseSerializer,
            204: OpenApiResponse(description="Nothing left for you."),
            403: OpenApiResponse(description="Not an annotator, or paused (code `paused`) after low gold accuracy."),
        },
        summary="Lease the next pair (or get your live lease back)",
    )
    def post(self, request):
        filters = {}
        for given in (request.data, request.query_params):  # the query string's filters win
            if given or given is None:  # the usual next: an empty POST, no query string, nothing to check
                found = NextFilterSerializer(data=given)  # a body that is not an object: 400
                found.is_valid(raise_exception=True)
                filters.update({k: v for k, v in found.validated_data.items() if v})
        task, discipline = filters.get("task"), filters.get("discipline")
        try:
            lease = queue.next_lease(request.user, task=task, discipline=discipline)
        except queue.QueueError as exc:
            return refusal(exc)
        if lease is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(lease_payload(lease, request))


_NOT_ACTIVE = OpenApiResponse(ErrorSerializer, description="The lease is no longer active (lease_not_active).")


class LeaseHeartbeatView(QueueView):
    @extend_schema(request=None, responses={200: LeaseSerializer, 409: _NOT_ACTIVE}, summary="Keep the lease alive")
    def post(self, request, lease_id: int):
        try:
            lease = queue.heartbeat(request.user, lease_id)
        except queue.QueueError as exc:
            return refusal(exc)
        return Response(lease_payload(lease, request))


class LeaseReleaseView(QueueView):
    @extend_schema(
        request=None,
        responses={200: OpenApiResponse(description="Skipped."), 409: _NOT_ACTIVE},
        summary="Skip the pair",
    )
    def post(self, request, lease_id: int):
        try:
            lease = queue.release(request.user, lease_id)
        except queue.QueueError as exc:
            return refusal(exc)
        return Response({"lease_id": lease.id, "state": lease.state})


class LeaseImageView(APIView):
    """The image on one side of a lease, for the lease's annotator (or a reviewer)."""

    @extend_schema(responses={(200, "image/*"): OpenApiResponse(description="Image bytes.")})
    def get(self, request, lease_id: int, side: str):
        if side not in ("left", "right"):
            raise NotFound("side is left or right.")
        lease = get_object_or_404(Lease.objects.select_related("left_image", "right_image"), pk=lease_id)
        if lease.annotator_id != request.user.id and not roles.is_reviewer(request.user):
            raise NotFound("No such lease.")
        image = lease.left_image if side == "left" else lease.right_image
        return media.image_response(image)


class ProgressSerializer(serializers.Serializer):
    judged_today = serializers.IntegerField(help_text="Your judgements since midnight (settings.TIME_ZONE).")
    left = serializers.IntegerField(help_text="About how many pairs of your tasks still take a judgement of yours.")


class MyProgressView(QueueView):
    """The annotate page reads this on a timer (not per key press) and counts locally in between."""

    @extend_schema(responses=ProgressSerializer, summary="Your judgements today and about how many are left for you")
    def get(self, request):
        stats = annotator_stats(request.user)
        return Response(ProgressSerializer({"judged_today": stats.judged_today, "left": stats.pairs_left}).data)


class GuideExampleImageView(APIView):
    """One image of a task guide's worked example (``right`` or ``other``), for whoever may read the guide
    (:func:`annotation.services.guides.readable_task`: annotators of the task, reviewers, admins)."""

    @extend_schema(responses={(200, "image/*"): OpenApiResponse(description="Image bytes.")})
    def get(self, request, code: str, example_id: int, which: str):
        task = guides.readable_task(request.user, code)
        if task is None or which not in ("right", "other"):
            raise NotFound("right or other.")
        example = get_object_or_404(
            GuideExample.objects.select_related("pair__image_correct", "pair__image_wrong", "right_image"),
            pk=example_id,
            guide__task=task,
        )
        pair = example.pair
        other = pair.image_wrong if example.right_image_id == pair.image_correct_id else pair.image_correct
        return media.image_response(example.right_image if which == "right" else other)
