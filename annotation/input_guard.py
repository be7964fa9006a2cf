"""Requests carrying NUL characters are refused with 400 before they reach a query.

PostgreSQL text cannot hold NUL (``\\x00``): a lookup with one (``?discipline=%00``, a task code
``"\\u0000"`` in a JSON body, ``/api/disciplines/%00/``) raised ``DataError``, a 500, wherever a client's
string met the database (found by tests/test_api_fuzz.py). No valid input contains NUL, so it is refused
in two places that every request passes, instead of at each filter and lookup:

* :class:`RejectNulMiddleware` (``MIDDLEWARE``): the path and the query string of every request;
* :class:`JSONParser` (``REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]``): every key and string of a JSON body.

Form and multipart fields reach DRF's ``CharField``, which refuses NUL itself (file contents are bytes and
are not checked). The middleware answers ``{"detail", "code": "nul_character"}`` under /api/ and plain text
elsewhere; the parser's refusal is DRF's usual 400 ``{"detail"}`` with the same message.
"""

from __future__ import annotations

from django.http import HttpResponseBadRequest, JsonResponse
from rest_framework import parsers
from rest_framework.exceptions import ParseError

MESSAGE = "NUL characters (\\u0000) are not accepted."
CODE = "nul_character"


def contains_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(contains_nul(item) for item in value)
    return False


class RejectNulMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if contains_nul(request.path) or contains_nul(dict(request.GET.lists())):
            if request.path.startswith("/api/"):
                return JsonResponse({"detail": MESSAGE, "code": CODE}, status=400)
            return HttpResponseBadRequest(MESSAGE, content_type="text/plain; charset=utf-8")
        return self.get_response(request)


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        if contains_nul(data):
            raise ParseError(MESSAGE, code=CODE)
        return data
