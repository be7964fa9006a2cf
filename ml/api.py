"""The runs and model-registry API under /api/ml/ (admins only: 403 for everyone else, 401 anonymous).

Thin views: :mod:`ml.services.runs` and :mod:`ml.services.registry` change things, :mod:`ml.queries`
reads, :mod:`ml.serializers` renders.

=================================  ======================================================================
endpoint                           what
=================================  ======================================================================
GET runs/                          runs, latest first, paginated; ``?kind=``, ``?status=``, ``?ids=1,2``
POST runs/                         ``{kind, params}``: 201 with the queued run; 400 with ``kind`` or
                                   ``params`` holding one message per parameter
GET runs/<id>/                     everything: params, log tail, metrics (and plot series), artifacts,
                                   error with traceback
POST runs/<id>/cancel/             200 with the run; 409 when it already finished
GET run-kinds/                     the kinds that can be started, each with its parameters
GET models/                        the registry, latest first; ``?kind=``
POST models/                       ``{kind, name, location, config?, parent?, dataset_version?, activate?}``:
                                   201 with the model; 400 with field errors. ``location`` must be an
                                   absolute path but is not checked for existence (the web host may not
                                   mount the workers' filesystem; ``manage.py register_model`` checks it)
GET models/<id>/                   one model with its lineage both ways
POST models/<id>/activate/         make a scorer the active scorer; 400 for other kinds
GET models/compare/?a=&b=          two scorers' accuracy per split and task, side by side
GET images/<id>/origin/            the run that generated an image and the model it used
GET leaderboard/?version=          humans and judges on a dataset version (ml/api_leaderboard.py)
GET pairs/<id>/opinions/           the models' advisory opinions of a pair, reviewers (ml/api_opinions.py)
=================================  ======================================================================
"""

from __future__ import annotations

from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.api import Conflict
from annotation.models import Image
from annotation.permissions import IsAdminRole
from annotation.query_params import choice_param as _choice_param
from annotation.query_params import openapi_param as _param
from ml import queries
from ml import serializers as s
from ml.models import ModelVersion, Run
from ml.services import judges, registry
from ml.services.runs import RunParamsError, cancel_run, kinds, start_run
from ml.tasks import execute_run

_NOT_ADMIN = OpenApiResponse(description="Not an admin.")


def _ids_param(request) -> list[int] | None:
    text = request.query_params.get("ids", "")
    if not text:
        return None
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not all(item.isdigit() for item in items):
        raise ValidationError({"ids": "ids is a comma-separated list of run ids."})
    return [int(item) for item in items]


def params_errors(exc: RunParamsError) -> dict:
    """A refusal of :func:`start_run` as request errors: ``kind``, else ``params`` per parameter."""
    if "kind" in exc.errors:
        return {"kind": [exc.errors["kind"]]}
    return {"params": {name: [message] for name, message in exc.errors.items()}}


@extend_schema_view(
    list=extend_schema(
        parameters=[
            _param("kind", "Only runs of this kind."),
            _param("status", "queued, running, succeeded, failed or cancelled."),
            _param("ids", "Only these run ids, comma-separated (for polling)."),
        ],
        summary="Runs, latest first",
    ),
    retrieve=extend_schema(summary="One run with its log tail, metrics, artifacts and error"),
)
class RunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """ML jobs on the GPU workers."""

    permission_classes = [IsAdminRole]
    lookup_value_regex = r"\d+"

    def get_serializer_class(self):
        return s.RunSerializer if self.action == "list" else s.RunDetailSerializer

    def get_queryset(self):
        runs = Run.objects.select_related("created_by", "input_model", "output_model")
        if kind := _choice_param(self.request, "kind", Run.Kind.values):
            runs = runs.filter(kind=kind)
        if state := _choice_param(self.request, "status", Run.Status.values):
            runs = runs.filter(status=state)
        if (ids := _ids_param(self.request)) is not None:
            runs = runs.filter(pk__in=ids)
        return runs

    @extend_schema(
        request=s.RunStartSerializer,
        responses={
            201: s.RunDetailSerializer,
            400: OpenApiResponse(description="Bad kind or parameters, one message per field."),
            403: _NOT_ADMIN,
        },
        summary="Start a run (queued on the GPU queue)",
    )
    def create(self, request):
        serializer = s.RunStartSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            run = start_run(
                request.user,
                serializer.validated_data["kind"],
                serializer.validated_data["params"],
                celery_task=execute_run,
            )
        except RunParamsError as exc:
            raise ValidationError(params_errors(exc)) from None
        return Response(s.RunDetailSerializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=None,
        responses={200: s.RunDetailSerializer, 409: OpenApiResponse(description="The run already finished.")},
        summary="Cancel a queued or running run",
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        try:
            run = cancel_run(request.user, self.get_object())
        except ValueError as exc:
            raise Conflict(str(exc)) from None
        return Response(s.RunDetailSerializer(run).data)


class RunKindListView(APIView):
    permission_classes = [IsAdminRole]

    @extend_schema(responses={200: s.RunKindSerializer(many=True)}, summary="The run kinds that can be started")
    def get(self, request):
        labels = dict(Run.Kind.choices)
        return Response(
            s.RunKindSerializer(
                [{"kind": kind, "label": labels[kind], "fields": kinds.describe(kind)} for kind in kinds.available()],
                many=True,
            ).data
        )


def register_errors(message: str) -> dict:
    """A refusal of :func:`registry.register_model` as request errors, on the field it is about."""
    if message.endswith("is already registered."):
        field = "name"
    elif message.startswith("kind must be"):
        field = "kind"
    elif message.startswith("The name"):
        field = "name"
    elif message.startswith("The location"):
        field = "location"
    elif "parent" in message:
        field = "parent"
    else:
        field = "detail"
    return {field: [message]}


@extend_schema_view(
    list=extend_schema(
        parameters=[_param("kind", "scorer, generator_base or generator_lora.")],
        summary="The model registry, latest first",
    ),
    retrieve=extend_schema(summary="One model with its lineage (ancestors, dataset version, runs, children)"),
)
class ModelViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Registered scorers, generator base models and LoRA adapters."""

    permission_classes = [IsAdminRole]
    lookup_value_regex = r"\d+"

    def get_serializer_class(self):
        if self.action == "create":
            return s.ModelRegisterSerializer
        return s.ModelVersionSerializer if self.action == "list" else s.ModelDetailSerializer

    def get_queryset(self):
        models = ModelVersion.objects.select_related("parent", "dataset_version", "created_by")
        if kind := _choice_param(self.request, "kind", ModelVersion.Kind.values):
            models = models.filter(kind=kind)
        return models

    @extend_schema(
        request=s.ModelRegisterSerializer,
        responses={
            201: s.ModelDetailSerializer,
            400: OpenApiResponse(
                description="Field errors: an unknown kind, a relative location, "
                "a name already registered for the kind, a parent "
                "that does not fit the kind, activate on a "
                "non-scorer."
            ),
            403: _NOT_ADMIN,
        },
        summary="Register a checkpoint",
        description="``location`` must be an absolute path on the GPU workers' filesystem. It is not "
        "checked for existence here, since the web host may not mount that filesystem "
        "(``manage.py register_model`` checks it where it runs). ``activate`` makes a "
        "scorer the active one in the same transaction.",
    )
    def create(self, request):
        serializer = s.ModelRegisterSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            with transaction.atomic():  # registered and activated, or neither
                model = registry.register_model(
                    request.user,
                    data["kind"],
                    data["name"],
                    data["location"],
                    config=data["config"],
                    parent=data["parent"],
                    dataset_version=data["dataset_version"],
                )
                if data["activate"]:
                    model = registry.activate_scorer(request.user, model)
        except judges.JudgeConfigError as exc:
            raise ValidationError({exc.field: [str(exc)]}) from None
        except ValueError as exc:
            raise ValidationError(register_errors(str(exc))) from None
        return Response(s.ModelDetailSerializer(model).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=None,
        responses={200: s.ModelVersionSerializer, 400: OpenApiResponse(description="Not a scorer.")},
        summary="Make a scorer the active scorer",
    )
    @action(detail=True, methods=["post"])
    def activate(self, request, pk=None):
        try:
            model = registry.activate_scorer(request.user, self.get_object())
        except ValueError as exc:
            raise ValidationError({"detail": str(exc)}) from None
        return Response(s.ModelVersionSerializer(model).data)

    @extend_schema(
        parameters=[_param("a", "A scorer id.", int), _param("b", "Another scorer id.", int)],
        responses={200: s.ComparisonSerializer, 400: OpenApiResponse(description="a or b missing, or not a scorer.")},
        summary="Two scorers side by side: accuracy per split and task",
    )
    @action(detail=False, methods=["get"])
    def compare(self, request):
        pair = {}
        for name in ("a", "b"):
            pair[name] = queries.find_scorer(request.query_params.get(name))
            if pair[name] is None:
                raise ValidationError({name: f"{name} must be the id of a registered scorer."})
        splits = queries.compare_scorers(pair["a"], pair["b"])
        return Response(s.ComparisonSerializer({**pair, "splits": splits}).data)


class ImageOriginView(APIView):
    permission_classes = [IsAdminRole]

    @extend_schema(
        responses={200: s.ImageOriginSerializer, 404: OpenApiResponse(description="No such image.")},
        summary="Where an image came from: the run and the generator model",
    )
    def get(self, request, pk: int):
        image = get_object_or_404(Image, pk=pk)
        run, model = registry.image_origin(image)
        return Response(s.ImageOriginSerializer({"image": image, "run": run, "model": model}).data)
