"""Request input no view can use is refused with a clear 4xx before it reaches a parser's recursion or a query.

JSON bodies (:class:`JSONParser`, every API endpoint's parser) are bounded before they are parsed: at most
``DATA_UPLOAD_MAX_MEMORY_SIZE`` bytes (413 ``body_too_large``) and at most :data:`MAX_JSON_DEPTH` levels of
nested arrays and objects (400 ``too_deep``; Python's ``json`` recurses once per level, and a body of 1,000
nested ``[`` raised RecursionError, a 500). After parsing, every key and string must be text PostgreSQL can
store: no NUL (below) and no lone UTF-16 surrogate (``"\ud800"`` is valid JSON but not encodable as UTF-8;
it reached psycopg and answered 500): 400 ``nul_character`` / ``unencodable_text``.

NUL characters:

PostgreSQL text cannot hold NUL (``\\x00``): a lookup with one (``?discipline=%00``, a task code
``"\\u0000"`` in a JSON body, ``/api/disciplines/%00/``) raised ``DataError``, a 500, wherever a client's
string met the database (found by tests/system/test_api_fuzz.py). No valid input contains NUL, so it is refused
in two places that every request passes, instead of at each filter and lookup:

* :class:`RejectNulMiddleware` (``MIDDLEWARE``): the path and the query string of every request;
* :class:`JSONParser` (``REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]``): every key and string of a JSON body.

Form and multipart fields reach DRF's ``CharField``, which refuses NUL itself (file contents are bytes and
are not checked). The middleware answers ``{"detail", "code": "nul_character"}`` under /api/ and plain text
elsewhere; the parser's refusal is DRF's usual 400 ``{"detail"}`` with the same message.
"""

from __future__ import annotations

import io
import re

from django.conf import settings
from django.http import HttpResponseBadRequest, JsonResponse
from rest_framework import parsers, status
from rest_framework.exceptions import APIException, ParseError

MESSAGE = "NUL characters (\\u0000) are not accepted."
CODE = "nul_character"
MAX_JSON_DEPTH = 32
SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_STRUCTURE = re.compile(rb'["\\\[\]{}]')  # what changes nesting: quotes, escapes, brackets, braces


class BodyTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "body_too_large"


def json_depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON document, read without recursion (strings,
    and the brackets inside them, are skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for match in _JSON_STRUCTURE.finditer(raw):
        char = match.group()
        if in_string:
            if escaped:
                escaped = False
            elif char == b"\\":
                # an escaped quote or backslash is the next match: skip it (other escapes match nothing here)
                escaped = raw[match.end() : match.end() + 1] in (b'"', b"\\")
            elif char == b'"':
                in_string = False
        elif char == b'"':
            in_string = True
        elif char in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif char in (b"]", b"}"):
            depth -= 1
    return deepest


def contains_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(contains_nul(item) for item in value)
    return False


def contains_surrogate(value) -> bool:
    """Whether a parsed JSON value holds a lone surrogate (``"\\ud800"``), which no UTF-8 text can."""
    if isinstance(value, str):
        return SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(contains_surrogate(k) or contains_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(contains_surrogate(item) for item in value)
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
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1) if stream is not None else b""
        if limit is not None and len(raw) > limit:
            raise BodyTooLarge(f"The request body is too large (over {limit} bytes).")
        if json_depth(raw) > MAX_JSON_DEPTH:
            raise ParseError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels is not accepted.", code="too_deep")
        data = super().parse(io.BytesIO(raw), media_type, parser_context)
        if contains_nul(data):
            raise ParseError(MESSAGE, code=CODE)
        if contains_surrogate(data):
            raise ParseError(
                "Text with a lone UTF-16 surrogate (\\ud800-\\udfff) is not accepted.", code="unencodable_text"
            )
        return data
