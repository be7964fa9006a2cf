"""URLs under /api/ml/schedules/ (see config/urls.py and ml/api_schedules.py)."""

from django.urls import path

from ml.api_schedules import ScheduleViewSet

urlpatterns = [
    path("", ScheduleViewSet.as_view({"get": "list", "post": "create"}), name="ml-schedules"),
    path(
        "<int:pk>/",
        ScheduleViewSet.as_view({"get": "retrieve", "patch": "partial_update", "delete": "destroy"}),
        name="ml-schedule",
    ),
    path("<int:pk>/pause/", ScheduleViewSet.as_view({"post": "pause"}), name="ml-schedule-pause"),
    path("<int:pk>/resume/", ScheduleViewSet.as_view({"post": "resume"}), name="ml-schedule-resume"),
    path("<int:pk>/fire/", ScheduleViewSet.as_view({"post": "fire"}), name="ml-schedule-fire"),
]
