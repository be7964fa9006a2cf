"""Reviewer pages under /curation/ (see config/urls.py)."""

from django.urls import path

from curation import views
from curation import views_agreement, views_audit

app_name = "curation"

urlpatterns = [
    path("adjudication/", views.adjudication_list, name="adjudication-list"),
    path("adjudication/<int:pair_id>/", views.adjudication_detail, name="adjudication-detail"),
    path("agreement/", views_agreement.agreement, name="agreement"),
    path("audit/", views_audit.audit_log, name="audit"),
]

from curation import views_versions  # noqa: E402

urlpatterns += [
    path("versions/", views_versions.version_list, name="version-list"),
    path("versions/new/", views_versions.version_new, name="version-new"),
    path("versions/<int:version_id>/", views_versions.version_detail, name="version-detail"),
    path("versions/<int:a>/diff/<int:b>/", views_versions.version_diff, name="version-diff"),
]
