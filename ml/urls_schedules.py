"""Schedule pages under /ml/schedules/ (see config/urls.py and ml/views_schedules.py)."""

from django.urls import path

from ml import views_schedules as views

app_name = "ml-schedules"

urlpatterns = [
    path("", views.schedule_list, name="list"),
    path("new/", views.schedule_new, name="new"),
    path("<int:schedule_id>/edit/", views.schedule_edit, name="edit"),
    path("<int:schedule_id>/delete/", views.schedule_delete, name="delete"),
    path("<int:schedule_id>/pause/", views.schedule_enable, {"enabled": False}, name="pause"),
    path("<int:schedule_id>/resume/", views.schedule_enable, {"enabled": True}, name="resume"),
    path("<int:schedule_id>/fire/", views.schedule_fire, name="fire"),
]
