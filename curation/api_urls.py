"""URLs under /api/curation/ (see config/urls.py and curation/api.py)."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from curation import api, api_agreement, api_audit, api_gold

router = SimpleRouter()
router.register("consensus", api.ConsensusViewSet, basename="curation-consensus")
router.register("adjudications", api.AdjudicationViewSet, basename="curation-adjudication")

urlpatterns = router.urls
urlpatterns += [
    path("agreement/", api_agreement.AgreementView.as_view(), name="curation-agreement"),
    path("audit/", api_audit.AuditEventListView.as_view(), name="curation-audit"),
]
urlpatterns += [
    path("gold/", api_gold.GoldListView.as_view(), name="curation-gold"),
    path("gold/<int:pair_id>/", api_gold.GoldDetailView.as_view(), name="curation-gold-detail"),
    path("quality/", api_gold.QualityListView.as_view(), name="curation-quality"),
    path("quality/<int:user_id>/restore/", api_gold.QualityRestoreView.as_view(), name="curation-quality-restore"),
]

from curation import api_exports, views_downloads  # noqa: E402

urlpatterns += [
    path(
        "versions/<int:version_id>/exports/", api_exports.VersionExportsView.as_view(), name="curation-version-exports"
    ),
    path(
        "versions/<int:version_id>/exports/<str:export_format>/",
        api_exports.VersionExportDetailView.as_view(),
        name="curation-version-export",
    ),
    path(
        "versions/<int:version_id>/exports/<str:export_format>/<path:path>",
        views_downloads.ExportDownloadView.as_view(),
        name="curation-export-download",
    ),
    path("jobs/<int:job_id>/", api_exports.JobDetailView.as_view(), name="curation-job"),
]

from curation import api_imports  # noqa: E402

urlpatterns += [
    path("imports/", api_imports.ImportsView.as_view(), name="curation-imports"),
]

from curation import api_versions  # noqa: E402

urlpatterns += [
    path("versions/", api_versions.VersionListView.as_view(), name="curation-versions"),
    path("versions/<int:pk>/", api_versions.VersionDetailView.as_view(), name="curation-version-detail"),
    path("versions/<int:pk>/members/", api_versions.VersionMemberListView.as_view(), name="curation-version-members"),
    path("versions/<int:a>/diff/<int:b>/", api_versions.VersionDiffView.as_view(), name="curation-version-diff"),
]
