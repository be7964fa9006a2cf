"""The annotator's judgement and undo endpoints (``/api/leases/<id>/judgement/``, ``/api/judgements/undo/``).

They belong to the annotator's queue API (annotation/api_queue.py: same permission, payloads and refusals)
but live here because a judgement has consequences in curation: the views call
:mod:`curation.services.judging`, which records the change and then its consequences.
"""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from annotation.api_queue import (
    JudgementInputSerializer,
    JudgementReceiptSerializer,
    LeaseSerializer,
    QueueView,
    judgement_input,
    lease_payload,
    refusal,
)
from annotation.openapi import ErrorSerializer
from annotation.services import queue
from curation.services import judging


class LeaseJudgementView(QueueView):
    @extend_schema(
        request=JudgementInputSerializer,
        responses={
            201: JudgementReceiptSerializer,
            200: JudgementReceiptSerializer,
            409: OpenApiResponse(
                ErrorSerializer,
                description="The lease is no longer active "
                "(lease_not_active), the pair takes no more judgements (pair_unavailable), "
                "or you judged it already (already_judged).",
            ),
        },
        summary="Judge the leased pair and end the lease (a repeat of the same choice is a no-op)",
    )
    def post(self, request, lease_id: int):
        data = judgement_input(request)
        try:
            judgement, created = judging.judge(request.user, lease_id, data)
        except queue.QueueError as exc:
            return refusal(exc)
        return Response(
            JudgementReceiptSerializer(judgement).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class UndoInputSerializer(serializers.Serializer):
    judgement_id = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=2**63 - 1,
        help_text="The judgement to take back (one of yours, inside the undo window); without it, your latest. "
        "Naming it makes a retried undo safe: the repeat answers with the same lease.",
    )


class UndoView(QueueView):
    @extend_schema(
        request=UndoInputSerializer,
        responses={
            200: LeaseSerializer,
            404: OpenApiResponse(ErrorSerializer, description="Nothing recent enough to undo (nothing_to_undo)."),
            409: OpenApiResponse(
                ErrorSerializer,
                description="The named judgement was undone already and its "
                "pair is no longer leased to you (already_undone).",
            ),
        },
        summary="Undo a judgement of yours (the latest, or the one named, within the undo window) and lease its "
        "pair to you again",
    )
    def post(self, request):
        body = UndoInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            lease = judging.undo(request.user, body.validated_data.get("judgement_id"))
        except queue.QueueError as exc:
            return refusal(exc)
        return Response(lease_payload(lease, request))
