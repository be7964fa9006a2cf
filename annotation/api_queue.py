"""The annotator's queue API: next, judgement, heartbeat, release (skip), undo, and lease images.

Thin views: parse, call :mod:`annotation.services.queue`, serialise. A lease's payload carries
only what the annotator may see: the implicit prompt, task, discipline and two image URLs that
name the lease and a side, never an image id or which image is expected.
"""

import functools

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.authentication import TokenAuthentication, get_authorization_header
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import media, roles
from annotation.models import Judgement, Lease
from annotation.openapi import ErrorSerializer
from annotation.permissions import IsAnnotator
from annotation.services import queue, rows


class LeaseSerializer(serializers.Serializer):
    lease_id = serializers.IntegerField(source="id")
    pair_id = serializers.IntegerField(source="pair.id")
    implicit_prompt = serializers.CharField(source="pair.tuple.implicit_prompt")
    task = serializers.SerializerMethodField()
    discipline = serializers.SerializerMethodField()
    left_image_url = serializers.SerializerMethodField()
    right_image_url = serializers.SerializerMethodField()
    expires_at = serializers.DateTimeField()
    state = serializers.CharField()

    def get_task(self, lease) -> dict:
        task = lease.pair.tuple.task
        return {"code": task.code, "name": task.name, "kind": task.kind}

    def get_discipline(self, lease) -> dict:
        discipline = lease.pair.tuple.task.discipline
        return {"slug": discipline.slug, "name": discipline.name}

    def _url(self, lease, side):
        url = reverse("lease-image", args=[lease.id, side])
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request else url

    def get_left_image_url(self, lease) -> str:
        return self._url(lease, "left")

    def get_right_image_url(self, lease) -> str:
        return self._url(lease, "right")


class JudgementInputSerializer(serializers.Serializer):
    choice = serializers.ChoiceField(choices=Judgement.Choice.choices)
    flag_prompt_unclear = serializers.BooleanField(default=False)
    flag_image_broken = serializers.BooleanField(default=False)
    flag_off_topic = serializers.BooleanField(default=False)
    comment = serializers.CharField(default="", allow_blank=True, max_length=2000)
    time_spent_ms = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=86_400_000)


_MAX_TIME_SPENT_MS = JudgementInputSerializer().fields["time_spent_ms"].max_value


class JudgementReceiptSerializer(serializers.Serializer):
    """What the annotator gets back: their own choice, never whether it matched the expected image."""

    judgement_id = serializers.IntegerField(source="id")
    pair_id = serializers.IntegerField(source="pair.id")
    choice = serializers.CharField()
    created_at = serializers.DateTimeField()


# The queue's answers are built directly (they are on the hot path; a DRF serializer costs more
# than the rest of the view): LeaseSerializer and JudgementReceiptSerializer above describe them
# for the OpenAPI schema, and tests/test_bench_queue_fast_paths.py checks both give the same data.
_DATETIME = serializers.DateTimeField()


def _lease_payload(lease: Lease, request) -> dict:
    pair = lease.pair
    task = pair.tuple.task
    discipline = task.discipline

    def url(side):
        return request.build_absolute_uri(reverse("lease-image", args=[lease.id, side]))

    return {
        "lease_id": lease.id,
        "pair_id": pair.id,
        "implicit_prompt": str(pair.tuple.implicit_prompt),
        "task": {"code": task.code, "name": task.name, "kind": task.kind},
        "discipline": {"slug": discipline.slug, "name": discipline.name},
        "left_image_url": url("left"),
        "right_image_url": url("right"),
        "expires_at": _DATETIME.to_representation(lease.expires_at),
        "state": str(lease.state),
    }


def _receipt(judgement: Judgement) -> dict:
    return {
        "judgement_id": judgement.id,
        "pair_id": judgement.pair_id,
        "choice": str(judgement.choice),
        "created_at": _DATETIME.to_representation(judgement.created_at),
    }


_FLAGS = ("flag_prompt_unclear", "flag_image_broken", "flag_off_topic")
_PLAIN_KEYS = frozenset({"choice", "time_spent_ms", *_FLAGS})
_CHOICES = frozenset(Judgement.Choice.values)


def _judgement_input(data) -> queue.JudgementInput:
    """The judgement's fields from the request body. The usual body (a JSON object with a valid
    choice, boolean flags and an integer time spent, no comment) is read directly: validating it
    with JudgementInputSerializer costs more than the rest of the view. Anything else goes through
    the serializer, which gives its answer or its 400 (tests/test_bench_queue_fast_paths.py
    checks both readings agree)."""
    if type(data) is dict and data.keys() <= _PLAIN_KEYS and type(choice := data.get("choice")) is str \
            and choice in _CHOICES:
        spent = data.get("time_spent_ms")
        if all(type(data.get(flag, False)) is bool for flag in _FLAGS) and (
                spent is None or (type(spent) is int and 0 <= spent <= _MAX_TIME_SPENT_MS)):
            return queue.JudgementInput(**data)
    serializer = JudgementInputSerializer(data=data)
    serializer.is_valid(raise_exception=True)
    return queue.JudgementInput(**serializer.validated_data)


def _refusal(exc: queue.QueueError) -> Response:
    return Response({"detail": exc.message, "code": exc.code}, status=exc.status)


# --- Authentication of the hot endpoints -----------------------------------------------------
# Every annotator request authenticates and then checks the annotator role: with DRF's token
# authentication and IsAnnotator that is two statements and a good share of the request's CPU
# (bench/queue_load.py, docs/benchmarks/queue.md). On the queue endpoints a request that DRF would
# authenticate by token (the first authentication class is TokenAuthentication and the header
# names a token) gets the token, its user and whether the user is in the annotator group (roles are
# Django groups, annotation/roles.py) from one statement. Anything else — no header, a session
# (the annotate page), a malformed header, an unknown token, an inactive user — goes through DRF's
# own authentication, so every refusal is exactly DRF's.


@functools.lru_cache(maxsize=4)
def _token_user_sql(vendor: str, User, token_model) -> tuple[str, tuple[str, ...]]:
    """The user of a token key with whether they hold the annotator role (parameters: role, key)."""
    del vendor  # part of the cache key only
    memberships, col, table = User.groups.through, rows.col, rows.table
    fields = tuple(f.attname for f in User._meta.concrete_fields)
    sql = (f"SELECT {', '.join(col('u', User, f) for f in fields)}, EXISTS (SELECT 1 FROM {table(memberships)} m "
           f"INNER JOIN {table(Group)} g ON {col('g', Group, 'id')} = {col('m', memberships, 'group')} "
           f"WHERE {col('m', memberships, 'user')} = {col('u', User, User._meta.pk.name)} "
           f"AND {col('g', Group, 'name')} = %s) FROM {table(User)} u INNER JOIN {table(token_model)} t "
           f"ON {col('t', token_model, 'user')} = {col('u', User, User._meta.pk.name)} "
           f"WHERE {col('t', token_model, 'key')} = %s")
    return sql, fields


def _token_user(request):
    """``(user, token)`` for a request DRF would authenticate by a valid token, or None."""
    if not request.authenticators or type(request.authenticators[0]) is not TokenAuthentication:
        return None
    authenticator = request.authenticators[0]
    header = get_authorization_header(request).split()
    if len(header) != 2 or header[0].lower() != authenticator.keyword.lower().encode():
        return None
    try:
        key = header[1].decode()
    except UnicodeError:
        return None
    User, token_model = get_user_model(), authenticator.get_model()
    sql, fields = _token_user_sql(connection.vendor, User, token_model)
    with rows.cursor() as cursor:
        cursor.execute(sql, [roles.ANNOTATOR, key])
        row = cursor.fetchone()
    if row is None:
        return None
    user = rows.load(User, fields, row[:-1])
    if not user.is_active:
        return None
    user.queue_annotator_role = bool(row[-1])
    token = token_model.from_db(connection.alias, ["key", "user_id"], [key, user.pk])
    token.user = user
    return user, token


class _QueueView(APIView):
    """The queue endpoints: annotators only, with the one-statement token path above."""

    permission_classes = [IsAnnotator]

    def perform_authentication(self, request):
        found = _token_user(request)
        if found is None:
            return super().perform_authentication(request)
        request._authenticator = request.authenticators[0]
        request.user, request.auth = found

    def check_permissions(self, request):
        loaded = getattr(request.user, "queue_annotator_role", None)  # IsAnnotator's answer, if loaded
        if loaded is None:
            return super().check_permissions(request)
        if not loaded:
            self.permission_denied(request, message=IsAnnotator.message)


class QueueNextView(_QueueView):
    @extend_schema(
        request=None,
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
        # The body is parsed only when there is one (the usual next is an empty POST).
        body = request.data if int(request.META.get("CONTENT_LENGTH") or 0) else {}
        task = request.query_params.get("task") or body.get("task")
        discipline = request.query_params.get("discipline") or body.get("discipline")
        try:
            lease = queue.next_lease(request.user, task=task, discipline=discipline)
        except queue.QueueError as exc:
            return _refusal(exc)
        if lease is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(_lease_payload(lease, request))


class LeaseJudgementView(_QueueView):
    @extend_schema(
        request=JudgementInputSerializer,
        responses={201: JudgementReceiptSerializer, 200: JudgementReceiptSerializer,
                   409: OpenApiResponse(ErrorSerializer, description="The lease is no longer active "
                                        "(lease_not_active), the pair takes no more judgements (pair_unavailable), "
                                        "or you judged it already (already_judged).")},
        summary="Judge the leased pair and end the lease (a repeat of the same choice is a no-op)",
    )
    def post(self, request, lease_id: int):
        data = _judgement_input(request.data)
        try:
            judgement, created = queue.submit_judgement(request.user, lease_id, data)
        except queue.QueueError as exc:
            return _refusal(exc)
        return Response(
            _receipt(judgement), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


_NOT_ACTIVE = OpenApiResponse(ErrorSerializer, description="The lease is no longer active (lease_not_active).")


class LeaseHeartbeatView(_QueueView):
    @extend_schema(request=None, responses={200: LeaseSerializer, 409: _NOT_ACTIVE}, summary="Keep the lease alive")
    def post(self, request, lease_id: int):
        try:
            lease = queue.heartbeat(request.user, lease_id)
        except queue.QueueError as exc:
            return _refusal(exc)
        return Response(_lease_payload(lease, request))


class LeaseReleaseView(_QueueView):
    @extend_schema(request=None, responses={200: OpenApiResponse(description="Skipped."), 409: _NOT_ACTIVE},
                   summary="Skip the pair")
    def post(self, request, lease_id: int):
        try:
            lease = queue.release(request.user, lease_id)
        except queue.QueueError as exc:
            return _refusal(exc)
        return Response({"lease_id": lease.id, "state": lease.state})


class UndoView(_QueueView):
    @extend_schema(
        request=None,
        responses={200: LeaseSerializer, 404: OpenApiResponse(ErrorSerializer, description="Nothing recent "
                                                               "enough to undo (nothing_to_undo).")},
        summary="Undo your latest judgement (within the undo window) and lease its pair to you again",
    )
    def post(self, request):
        try:
            lease = queue.undo_last_judgement(request.user)
        except queue.QueueError as exc:
            return _refusal(exc)
        return Response(_lease_payload(lease, request))


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
