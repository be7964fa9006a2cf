"""Error answers for requests no view handled (Django's ``handler404``).

An unmatched URL under ``/api/`` answers as the API's refusals do (JSON ``{"detail", "code"}``, code
``not_found``), so an API client never has to parse an HTML page; every other path gets Django's
HTML 404 page.
"""

from django.http import JsonResponse
from django.views import defaults

API_PREFIX = "/api/"


def not_found(request, exception):
    if request.path.startswith(API_PREFIX):
        return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)
    return defaults.page_not_found(request, exception)
