"""URLs under /api/ml/ (see config/urls.py and ml/api.py); schedules live under /api/ml/schedules/."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from ml import api, api_leaderboard, api_opinions

router = SimpleRouter()
router.register("runs", api.RunViewSet, basename="ml-run")
router.register("models", api.ModelViewSet, basename="ml-model")

urlpatterns = [
    path("run-kinds/", api.RunKindListView.as_view(), name="ml-run-kinds"),
    path("images/<int:pk>/origin/", api.ImageOriginView.as_view(), name="ml-image-origin"),
    path("leaderboard/", api_leaderboard.LeaderboardView.as_view(), name="ml-leaderboard"),
    path("pairs/<int:pk>/opinions/", api_opinions.PairOpinionsView.as_view(), name="ml-pair-opinions"),
    *router.urls,
]
