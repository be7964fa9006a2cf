"""The catalogue API: taxonomy, prompt tuples, images, pairs, judgements (read-only) and ``me``.

Views are thin: an input serializer validates, a service of :mod:`annotation.services.catalog`
writes, an output serializer renders (see annotation/serializers.py). Who may do what:

==================  ==============================  =======================================
endpoint            read                            write
==================  ==============================  =======================================
disciplines, tasks  anyone signed in                admins (delete of one in use: 409)
tuples              reviewers, admins               admins: POST upserts, PATCH
images              reviewers, admins (+ /file/)    admins: multipart POST
pairs               reviewers, admins               admins: POST, PATCH k / status
judgements          own (annotators), all (rev.)    none: judgements come from the queue
me                  anyone signed in                none
==================  ==============================  =======================================

Creation is idempotent wherever the service is: POSTing a tuple, image or pair that already
exists answers 200 with the stored row (201 when it was created). For tuples the POST is the
upsert of :func:`catalog.upsert_tuple`: non-empty fields given overwrite, empty ones never erase.
"""

from __future__ import annotations

from collections import Counter

from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import media, roles
from annotation import serializers as s
from annotation.imaging import ImageRejected
from annotation.models import Discipline, Expertise, Image, Judgement, Pair, PromptTuple, Task
from annotation.openapi import ErrorSerializer, OverlappingShapesSerializer
from annotation.permissions import AuthenticatedReadAdminWrite, IsReviewer, ReviewerReadAdminWrite
from annotation.query_params import choice_param, int_param, openapi_param
from annotation.services import audit, catalog


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"


def _created_or_found(description: str, serializer) -> dict:
    return {
        201: OpenApiResponse(serializer, description="Created."),
        200: OpenApiResponse(serializer, description=description),
    }


class _CatalogViewSet(viewsets.GenericViewSet):
    """Reviewers read, admins write."""

    permission_classes = [ReviewerReadAdminWrite]

    def validated(self, serializer_class) -> dict:
        serializer = serializer_class(data=self.request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def rendered(self, obj, *, created: bool = False) -> Response:
        return Response(
            self.get_serializer(obj).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


# --- Taxonomy -------------------------------------------------------------------------------


class _ProtectedDeleteMixin:
    """Taxonomy writes, audited; disciplines and tasks in use are PROTECTed: deleting one is a 409
    that says what uses it."""

    def perform_create(self, serializer):
        obj = serializer.save()
        audit.record(self.request.user, f"{type(obj).__name__.lower()}.created", obj, after=serializer.data)

    def perform_update(self, serializer):
        before = type(serializer)(serializer.instance).data
        obj = serializer.save()
        audit.record(
            self.request.user, f"{type(obj).__name__.lower()}.changed", obj, before=before, after=serializer.data
        )

    @extend_schema(
        responses={
            204: OpenApiResponse(description="Deleted."),
            409: OpenApiResponse(
                ErrorSerializer, description="Still in use (the message says by what); nothing deleted."
            ),
        }
    )
    def destroy(self, request, *args, **kwargs):
        return super().destroy(request, *args, **kwargs)

    def perform_destroy(self, instance):
        before = self.get_serializer(instance).data
        try:
            with transaction.atomic():
                audit.record(self.request.user, f"{type(instance).__name__.lower()}.deleted", instance, before=before)
                instance.delete()
        except ProtectedError as exc:
            users = Counter(str(obj._meta.verbose_name_plural) for obj in exc.protected_objects)
            what = ", ".join(f"{n} {name}" for name, n in sorted(users.items()))
            raise Conflict(f"{instance} is still used by {what}; it cannot be deleted.") from None


class DisciplineViewSet(_ProtectedDeleteMixin, viewsets.ModelViewSet):
    """Disciplines, addressed by slug."""

    queryset = Discipline.objects.all()
    serializer_class = s.DisciplineSerializer
    permission_classes = [AuthenticatedReadAdminWrite]
    lookup_field = "slug"


@extend_schema_view(
    list=extend_schema(
        parameters=[
            openapi_param("discipline", "Only tasks of this discipline slug."),
            openapi_param("kind", "ST (subject-oriented) or CT (condition-oriented)."),
        ]
    )
)
class TaskViewSet(_ProtectedDeleteMixin, viewsets.ModelViewSet):
    """Tasks, addressed by code."""

    serializer_class = s.TaskSerializer
    permission_classes = [AuthenticatedReadAdminWrite]
    lookup_field = "code"

    def get_queryset(self):
        tasks = Task.objects.select_related("discipline")
        if discipline := self.request.query_params.get("discipline"):
            tasks = tasks.filter(discipline__slug=discipline)
        if kind := choice_param(self.request, "kind", Task.Kind.values):
            tasks = tasks.filter(kind=kind)
        return tasks


# --- Tuples ---------------------------------------------------------------------------------


def _upsert_tuple(fields: dict, actor):
    try:
        with transaction.atomic():
            return catalog.upsert_tuple(**fields, actor=actor)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None
    except IntegrityError:
        raise Conflict("The same tuple was being created concurrently; retry.") from None


@extend_schema_view(
    list=extend_schema(
        parameters=[
            openapi_param("task", "Only tuples of this task code."),
            openapi_param("discipline", "Only tuples of this discipline slug."),
            openapi_param("scene", "simple or complex."),
        ]
    )
)
class TupleViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, _CatalogViewSet):
    """Prompt tuples with all three prompts: never shown to annotators."""

    serializer_class = s.TupleSerializer

    def get_queryset(self):
        tuples = PromptTuple.objects.select_related("task__discipline")
        params = self.request.query_params
        if task := params.get("task"):
            tuples = tuples.filter(task__code__iexact=task)
        if discipline := params.get("discipline"):
            tuples = tuples.filter(task__discipline__slug=discipline)
        if scene := choice_param(self.request, "scene", PromptTuple.Scene.values):
            tuples = tuples.filter(scene=scene)
        return tuples

    @extend_schema(
        request=s.TupleCreateSerializer,
        responses=_created_or_found(
            "A tuple with the same normalised implicit prompt and task existed; non-empty fields given "
            "were merged into it.",
            s.TupleSerializer,
        ),
        summary="Create a tuple, or merge into the one with the same implicit prompt and task",
    )
    def create(self, request, **kwargs):  # kwargs: the router's format suffix (.json)
        tuple_, outcome = _upsert_tuple(self.validated(s.TupleCreateSerializer), request.user)
        return self.rendered(tuple_, created=outcome == "created")

    @extend_schema(request=s.TupleUpdateSerializer, summary="Change prompts, subject, scene or source")
    def partial_update(self, request, pk=None, **kwargs):
        current = self.get_object()
        changes = self.validated(s.TupleUpdateSerializer)
        identity = {"implicit_prompt": current.implicit_prompt, "task": current.task, "scene": current.scene}
        tuple_, _ = _upsert_tuple({**identity, **changes}, request.user)
        return self.rendered(tuple_)


# --- Images ---------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        parameters=[
            openapi_param("tuple", "Only images of this tuple id.", int),
            openapi_param("kind", "Only images of this kind."),
        ]
    )
)
class ImageViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, _CatalogViewSet):
    """Image metadata and bytes, for reviewers and admins. Annotators see images only through leases."""

    serializer_class = s.ImageSerializer
    parser_classes = [MultiPartParser]

    def get_queryset(self):
        images = Image.objects.all()
        if (tuple_id := int_param(self.request, "tuple")) is not None:
            images = images.filter(tuple_id=tuple_id)
        if kind := choice_param(self.request, "kind", Image.Kind.values):
            images = images.filter(kind=kind)
        return images

    @extend_schema(
        request=s.ImageUploadSerializer,
        responses={
            **_created_or_found("The same bytes were stored already; the stored image, unchanged.", s.ImageSerializer),
            400: OpenApiResponse(description="Not an acceptable image (the message says why); nothing stored."),
        },
        summary="Upload an image (deduplicated by content)",
    )
    def create(self, request, **kwargs):
        fields = dict(self.validated(s.ImageUploadSerializer))
        upload = fields.pop("file")
        try:
            image, created = catalog.store_image(upload.read(), **fields, actor=request.user)
        except ImageRejected as exc:
            raise ValidationError({"file": [str(exc)]}) from None
        return self.rendered(image, created=created)

    @extend_schema(responses={(200, "image/*"): OpenApiResponse(OpenApiTypes.BINARY, description="Image bytes.")})
    @action(detail=True, methods=["get"], url_path="file", permission_classes=[IsReviewer])
    def file(self, request, pk=None, **kwargs):
        return media.image_response(self.get_object())  # inert: nosniff, sandbox CSP, validated type


# --- Pairs ----------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        parameters=[
            openapi_param("status", "open, complete or retired."),
            openapi_param("task", "Only pairs of this task code."),
            openapi_param("tuple", "Only pairs of this tuple id.", int),
        ]
    )
)
class PairViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, _CatalogViewSet):
    """Pairs to judge. Counters change only through the queue. Served with the admins' PATCH (set k,
    retire) by its curation subclass (curation/api_pairs.py): k decides consensus."""

    serializer_class = s.PairSerializer

    def get_queryset(self):
        pairs = Pair.objects.select_related("tuple__task")
        if pair_status := choice_param(self.request, "status", Pair.Status.values):
            pairs = pairs.filter(status=pair_status)
        if task := self.request.query_params.get("task"):
            pairs = pairs.filter(tuple__task__code__iexact=task)
        if (tuple_id := int_param(self.request, "tuple")) is not None:
            pairs = pairs.filter(tuple_id=tuple_id)
        return pairs

    @extend_schema(
        request=s.PairCreateSerializer,
        responses=_created_or_found("The pair existed already; returned unchanged (k included).", s.PairSerializer),
        summary="Create a pair (idempotent)",
    )
    def create(self, request, **kwargs):
        fields = self.validated(s.PairCreateSerializer)
        try:
            pair, created = catalog.create_pair(
                fields["tuple"], fields["image_correct"], fields["image_wrong"], k=fields.get("k"), actor=request.user
            )
        except ValueError as exc:
            raise ValidationError(str(exc)) from None
        return self.rendered(pair, created=created)


# --- Judgements -----------------------------------------------------------------------------

_JUDGEMENT_SHAPES = OverlappingShapesSerializer(  # a reviewer's shape extends an annotator's: anyOf
    component_name="JudgementForRole",
    serializers=[s.ReviewJudgementSerializer, s.OwnJudgementSerializer],
    resource_type_field_name=None,
)


@extend_schema_view(
    list=extend_schema(
        parameters=[
            openapi_param("pair", "Only judgements of this pair id.", int),
            openapi_param(
                "annotator", "Only judgements by this username (for reviewers: annotators see only their own)."
            ),
        ],
        responses=_JUDGEMENT_SHAPES,
    ),
    retrieve=extend_schema(responses=_JUDGEMENT_SHAPES),
)
class JudgementViewSet(viewsets.ReadOnlyModelViewSet):
    """Judgements: annotators see their own (blind shape), reviewers and admins see all (full shape)."""

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no real user
            return Judgement.objects.none()
        judgements = Judgement.objects.select_related("pair", "annotator")
        if not roles.is_reviewer(self.request.user):
            judgements = judgements.filter(annotator=self.request.user)
        if (pair_id := int_param(self.request, "pair")) is not None:
            judgements = judgements.filter(pair_id=pair_id)
        if annotator := self.request.query_params.get("annotator"):
            judgements = judgements.filter(annotator__username=annotator)
        return judgements

    def get_serializer_class(self):
        if roles.is_reviewer(self.request.user):
            return s.ReviewJudgementSerializer
        return s.OwnJudgementSerializer


# --- Me -------------------------------------------------------------------------------------


class MeView(APIView):
    @extend_schema(responses=s.MeSerializer, summary="Who am I: username, roles and expertise")
    def get(self, request):
        user = request.user
        expertise = Expertise.objects.filter(user=user).first()
        data = {
            "username": user.get_username(),
            "roles": sorted(roles.roles_of(user)),
            "expertise": {
                "disciplines": sorted(expertise.disciplines.values_list("slug", flat=True)) if expertise else [],
                "tasks": sorted(expertise.tasks.values_list("code", flat=True)) if expertise else [],
            },
        }
        return Response(s.MeSerializer(data).data)
