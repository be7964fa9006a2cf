from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config import errors, home

urlpatterns = [
    path("favicon.ico", errors.favicon, name="favicon"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/curation/", include("curation.api_urls")),
    path("api/ml/schedules/", include("ml.api_schedules_urls")),
    path("api/ml/", include("ml.api_urls")),
    # The judgement and undo endpoints of the annotator's queue and the pairs' PATCH: curation's, since they have
    # consequences there (curation/services/judging.py). Before annotation's router (judgements/undo/).
    path("api/", include("curation.api_root_urls")),
    path("api/", include("ml.api_root_urls")),  # /api/tasks/: ml sets the queue order (ml/api_tasks.py)
    path("api/", include("annotation.api_urls")),
    path("curation/", include("curation.urls")),
    path("ml/schedules/", include("ml.urls_schedules")),
    path("ml/", include("ml.urls")),
    path("", home.home, name="home"),  # config/home.py: the annotator's home, or the reviewer's and admin's
    path("", include("annotation.urls")),
]

handler400 = "config.errors.bad_request"
handler404 = "config.errors.not_found"
handler500 = "config.errors.server_error"
