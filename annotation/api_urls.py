"""Every URL under /api/ (see config/urls.py)."""

from django.urls import path
from rest_framework.authtoken.views import obtain_auth_token

from annotation import api_queue

urlpatterns = [
    path("auth/token/", obtain_auth_token, name="api-token"),
    path("queue/next/", api_queue.QueueNextView.as_view(), name="queue-next"),
    path("leases/<int:lease_id>/judgement/", api_queue.LeaseJudgementView.as_view(), name="lease-judgement"),
    path("leases/<int:lease_id>/heartbeat/", api_queue.LeaseHeartbeatView.as_view(), name="lease-heartbeat"),
    path("leases/<int:lease_id>/release/", api_queue.LeaseReleaseView.as_view(), name="lease-release"),
    path("leases/<int:lease_id>/image/<str:side>/", api_queue.LeaseImageView.as_view(), name="lease-image"),
    path("judgements/undo/", api_queue.UndoView.as_view(), name="judgement-undo"),
]
