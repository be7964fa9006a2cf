"""Reviewer pages under /curation/ (see config/urls.py)."""

from django.urls import path

from curation import views, views_agreement, views_audit

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

from curation import views_jobs  # noqa: E402

urlpatterns += [
    path("versions/<int:version_id>/exports/", views_jobs.version_export, name="version-export"),
    path("jobs/<int:job_id>/", views_jobs.job_detail, name="job-detail"),
    path("imports/new/", views_jobs.import_new, name="import-new"),
]

from curation import views_dashboard  # noqa: E402

urlpatterns += [
    path("dashboard/", views_dashboard.dashboard_page, name="dashboard"),
]

from curation import api as curation_api  # noqa: E402
from curation import views_gallery  # noqa: E402

# The adjudication page's script reads the next pair here (curation/api.py ReviewItemView); the pair gallery.
urlpatterns += [
    path("adjudication/<int:pair_id>/data/", curation_api.ReviewItemView.as_view(), name="adjudication-data"),
    path("pairs/", views_gallery.gallery, name="gallery"),
]

from curation import views_guides  # noqa: E402

urlpatterns += [
    path("guides/", views_guides.guide_list, name="guide-list"),
    path("guides/<str:code>/", views_guides.guide_edit, name="guide-edit"),
    path("guides/<str:code>/examples/", views_guides.example_add, name="guide-example-add"),
    path(
        "guides/<str:code>/examples/<int:example_id>/remove/", views_guides.example_remove, name="guide-example-remove"
    ),
    path("guides/<str:code>/qualification/", views_guides.qualification_pair, name="guide-qualification-pair"),
    path(
        "guides/<str:code>/qualification/<int:user_id>/",
        views_guides.qualification_decide,
        name="guide-qualification-decide",
    ),
]

from curation import views_downloads, views_users  # noqa: E402

# User management (admins) and the raw judgements download (admins); see curation/views_users.py.
urlpatterns += [
    path("users/", views_users.user_list, name="user-list"),
    path("users/new/", views_users.user_new, name="user-new"),
    path("users/<int:user_id>/", views_users.user_detail, name="user-detail"),
    path("users/<int:user_id>/edit/", views_users.user_edit, name="user-edit"),
    path("users/<int:user_id>/pause/", views_users.user_pause, name="user-pause"),
    path("users/<int:user_id>/restore/", views_users.user_restore, name="user-restore"),
    path("users/<int:user_id>/invite/", views_users.user_invite, name="user-invite"),
    path("users/by-name/<str:username>/", views_users.user_by_name, name="user-by-name"),
    path("users/set-password/<uidb64>/<token>/", views_users.set_password, name="user-set-password"),
    path("judgements/export/", views_downloads.raw_judgements_all, name="judgements-export"),
    path(
        "versions/<int:version_id>/judgements/",
        views_downloads.raw_judgements_version,
        name="version-judgements-export",
    ),
]

urlpatterns += [
    path("sessions/", views_guides.session_reports, name="session-reports"),
    path("sessions/end/", views_guides.session_end, name="session-end"),
]
