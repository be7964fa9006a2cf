"""The home page ("/"): each person's work.

Annotators who are nothing else get the annotator's page (:func:`annotation.views.home`) unchanged. Reviewers
and admins get templates/home_staff.html: the pairs waiting for adjudication (disputed, reversed, flagged),
the agreement page, the latest decisions and, for admins, the dashboard's headline figures, ML runs in
progress and the latest exports and imports; reviewers and admins who also annotate keep their own figures
and the "Start annotating" link.

It lives in config, the project layer, because it reads all three apps; every figure comes from their read
functions, none from SQL here.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.http import require_safe

from annotation import roles
from annotation import views as annotation_views
from annotation.stats import annotator_stats
from curation.models import Job
from curation.services import adjudication, dashboard
from ml import home_queries


@require_safe
@login_required
def home(request):
    user = request.user
    if not roles.is_reviewer(user):
        return annotation_views.home(request)
    is_admin = roles.is_admin(user)
    context = {
        "is_annotator": roles.is_annotator(user),
        "is_admin": is_admin,
        "waiting": adjudication.queue_totals(),
        "flagged": adjudication.flagged_waiting(),
        "decisions": adjudication.recent_decisions(),
    }
    if context["is_annotator"]:
        context["stats"] = annotator_stats(user)
    if is_admin:
        context.update(
            figures=dashboard.home_figures(),
            runs=home_queries.runs_in_progress(),
            exports=dashboard.recent_jobs(Job.Kind.EXPORT),
            imports=dashboard.recent_jobs(Job.Kind.IMPORT),
        )
    return render(request, "home_staff.html", context)
