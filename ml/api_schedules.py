"""The schedules API under /api/ml/schedules/ (admins only: 403 for everyone else, 401 anonymous).

Thin views: an input serializer checks the shape, :mod:`ml.services.schedules` decides (bad
fields or run parameters → 400 with an error per field, ``params`` holding one per parameter),
the output serializer renders each schedule with the runs it made, latest first.

=============================  =====================================================================
endpoint                       what
=============================  =====================================================================
GET /                          every schedule, by name, paginated
POST /                         ``{name, kind, params, trigger, cron | min_new_pairs,
                               check_every_minutes, enabled}``: 201
GET <id>/                      one schedule
PATCH <id>/                    change any of those fields: 200
DELETE <id>/                   204; the runs it made stay
POST <id>/pause/, resume/      200 with the schedule (a no-op when already so)
POST <id>/fire/                "run now" (whatever the trigger or pause says): 202 with the run; 409
                               while a run of it is queued or running
=============================  =====================================================================
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from annotation.api import Conflict
from annotation.permissions import IsAdminRole
from ml.models import Schedule
from ml.serializers import RunBriefSerializer
from ml.services import schedules
from ml.services.runs import RunParamsError, kinds
from ml.tasks import execute_run

RUNS_SHOWN = 20  # the latest runs listed per schedule; run_count has them all


class ScheduleSerializer(serializers.ModelSerializer):
    kind = serializers.CharField(read_only=True)
    trigger_description = serializers.SerializerMethodField(help_text="The trigger in words.")
    created_by = serializers.CharField(source="created_by.username", read_only=True)
    run_count = serializers.IntegerField(read_only=True)
    runs = RunBriefSerializer(
        source="recent_runs",
        many=True,
        read_only=True,
        help_text=f"The latest {RUNS_SHOWN} runs it made, latest first.",
    )

    class Meta:
        model = Schedule
        fields = [
            "id",
            "name",
            "kind",
            "params",
            "trigger",
            "cron",
            "min_new_pairs",
            "check_every_minutes",
            "trigger_description",
            "enabled",
            "last_checked_at",
            "created_by",
            "created_at",
            "updated_at",
            "run_count",
            "runs",
        ]
        read_only_fields = fields

    def get_trigger_description(self, schedule) -> str:
        return schedules.describe_trigger(schedule)


# Named "Schedule" so that the request component is "ScheduleRequest" (PATCH: "PatchedScheduleRequest").
@extend_schema_serializer(component_name="Schedule")
class ScheduleInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    kind = serializers.CharField(help_text="The run kind: " + ", ".join(kinds.available()) + ".")
    params = serializers.DictField(
        help_text="The run's parameters (see the kind's description); defaults are filled in and stored."
    )
    trigger = serializers.ChoiceField(choices=Schedule.Trigger.choices)
    cron = serializers.CharField(
        required=False,
        allow_blank=True,
        allow_null=True,
        max_length=100,
        help_text="For trigger cron: minute hour day-of-month month day-of-week (UTC).",
    )
    min_new_pairs = serializers.IntegerField(
        required=False,
        allow_null=True,
        help_text="For trigger data: start a run once at least this many "
        "pairs were confirmed since the last successful run of "
        "the kind.",
    )
    check_every_minutes = serializers.IntegerField(
        required=False, default=10, help_text="How often a data trigger is checked."
    )
    enabled = serializers.BooleanField(required=False, default=True)


def _schedules():
    return schedules.overview(RUNS_SHOWN)


_NOT_ADMIN = OpenApiResponse(description="Not an admin.")


@extend_schema_view(
    list=extend_schema(summary="Every schedule, by name"),
    retrieve=extend_schema(summary="One schedule with the runs it made"),
    create=extend_schema(
        request=ScheduleInputSerializer,
        responses={201: ScheduleSerializer, 400: OpenApiResponse(description="Bad fields."), 403: _NOT_ADMIN},
        summary="Create a schedule and its beat entry",
    ),
    partial_update=extend_schema(
        request=ScheduleInputSerializer,
        responses={200: ScheduleSerializer, 400: OpenApiResponse(description="Bad fields."), 403: _NOT_ADMIN},
        summary="Change a schedule (its beat entry follows)",
    ),
    destroy=extend_schema(responses={204: None, 403: _NOT_ADMIN}, summary="Delete a schedule and its beat entry"),
)
class ScheduleViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Run templates fired by the beat on a cron schedule or when enough new pairs were confirmed."""

    serializer_class = ScheduleSerializer
    permission_classes = [IsAdminRole]

    def get_queryset(self):
        return _schedules()

    def _render(self, schedule, code=status.HTTP_200_OK) -> Response:
        return Response(ScheduleSerializer(_schedules().get(pk=schedule.pk)).data, status=code)

    def create(self, request):
        serializer = ScheduleInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            schedule = schedules.create_schedule(request.user, **serializer.validated_data)
        except schedules.ScheduleError as exc:
            raise ValidationError(exc.errors) from None
        return self._render(schedule, status.HTTP_201_CREATED)

    def partial_update(self, request, pk=None):
        schedule = self.get_object()
        serializer = ScheduleInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        try:
            schedule = schedules.update_schedule(request.user, schedule, **serializer.validated_data)
        except schedules.ScheduleError as exc:
            raise ValidationError(exc.errors) from None
        return self._render(schedule)

    def destroy(self, request, pk=None):
        schedules.delete_schedule(request.user, self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={200: ScheduleSerializer}, summary="Pause a schedule")
    def pause(self, request, pk=None):
        return self._render(schedules.set_enabled(request.user, self.get_object(), False))

    @extend_schema(request=None, responses={200: ScheduleSerializer}, summary="Resume a schedule")
    def resume(self, request, pk=None):
        return self._render(schedules.set_enabled(request.user, self.get_object(), True))

    @extend_schema(
        request=None,
        responses={
            202: OpenApiResponse(RunBriefSerializer, description="The run, queued."),
            400: OpenApiResponse(description="The template's params no longer hold."),
            409: OpenApiResponse(description="A run of it is still queued or running."),
        },
        summary="Run now: start the schedule's run at once",
    )
    def fire(self, request, pk=None):
        try:
            run = schedules.run_now(request.user, self.get_object(), celery_task=execute_run)
        except schedules.ScheduleBusy as exc:
            raise Conflict(str(exc)) from None
        except RunParamsError as exc:  # the template no longer holds (a referenced model is gone...)
            raise ValidationError({"params": exc.errors}) from None
        return Response(RunBriefSerializer(run).data, status=status.HTTP_202_ACCEPTED)
