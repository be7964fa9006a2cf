"""Error answers for requests no view handled (Django's ``handler400``, ``handler404``, ``handler500``), and
the favicon.

Under ``/api/`` they answer as the API's refusals do (JSON ``{"detail", "code"}``), so an API client never
has to parse an HTML page: an unmatched URL is 404 ``not_found``; a body over ``DATA_UPLOAD_MAX_MEMORY_SIZE``
that Django refused while reading it (``RequestDataTooBig``) is 413 ``body_too_large``, any other request
Django refuses as malformed 400 ``bad_request``; an unhandled error 500 ``server_error``. Every other path
gets Django's HTML pages.
"""

from pathlib import Path

from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponse, JsonResponse
from django.views import defaults
from django.views.decorators.http import require_safe

API_PREFIX = "/api/"
FAVICON = Path(__file__).resolve().parent.parent / "static" / "img" / "favicon.svg"


def not_found(request, exception):
    if request.path.startswith(API_PREFIX):
        return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)
    return defaults.page_not_found(request, exception)


def bad_request(request, exception):
    if not request.path.startswith(API_PREFIX):
        return defaults.bad_request(request, exception)
    if isinstance(exception, RequestDataTooBig):
        return JsonResponse({"detail": "The request body is too large.", "code": "body_too_large"}, status=413)
    return JsonResponse({"detail": "Bad request.", "code": "bad_request"}, status=400)


def server_error(request):
    if request.path.startswith(API_PREFIX):
        return JsonResponse({"detail": "Server error.", "code": "server_error"}, status=500)
    return defaults.server_error(request)


@require_safe
def favicon(request):
    """``/favicon.ico``: browsers ask for it on their first page whatever the page says; answer with the
    app's icon (the pages also name it with ``<link rel="icon">``) instead of a 404 in every log."""
    return HttpResponse(
        FAVICON.read_bytes(), content_type="image/svg+xml", headers={"Cache-Control": "public, max-age=86400"}
    )
