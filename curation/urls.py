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
