"""Curation's endpoints directly under /api/, beside annotation's (see config/urls.py, which includes this
first): the annotator's judgement and undo, and the pairs' admin PATCH — each has consequences in curation
(curation/services/judging.py)."""

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from curation import api_judging, api_pairs

router = SimpleRouter()
router.register("pairs", api_pairs.PairViewSet, basename="pair")

urlpatterns = [
    path("leases/<int:lease_id>/judgement/", api_judging.LeaseJudgementView.as_view(), name="lease-judgement"),
    path("judgements/undo/", api_judging.UndoView.as_view(), name="judgement-undo"),
    path("", include(router.urls)),
]
