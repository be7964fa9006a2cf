"""Every URL under /api/ (see config/urls.py)."""

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from annotation import api, api_queue
from annotation.api_token import ObtainTokenView

router = DefaultRouter()
router.register("disciplines", api.DisciplineViewSet, basename="discipline")
router.register("tuples", api.TupleViewSet, basename="tuple")
router.register("images", api.ImageViewSet, basename="image")
router.register("judgements", api.JudgementViewSet, basename="judgement")

urlpatterns = [
    path("auth/token/", ObtainTokenView.as_view(), name="api-token"),
    path("queue/next/", api_queue.QueueNextView.as_view(), name="queue-next"),
    path("leases/<int:lease_id>/heartbeat/", api_queue.LeaseHeartbeatView.as_view(), name="lease-heartbeat"),
    path("leases/<int:lease_id>/release/", api_queue.LeaseReleaseView.as_view(), name="lease-release"),
    path("leases/<int:lease_id>/image/<str:side>/", api_queue.LeaseImageView.as_view(), name="lease-image"),
    path("me/", api.MeView.as_view(), name="me"),
    path("me/progress/", api_queue.MyProgressView.as_view(), name="my-progress"),
    path(
        "guides/<str:code>/examples/<int:example_id>/<str:which>/",
        api_queue.GuideExampleImageView.as_view(),
        name="guide-example-image",
    ),
    # judgements/undo/ (curation/api_judging_urls.py) comes before this in config/urls.py, so that it is
    # never read as a judgement id.
    path("", include(router.urls)),
]
