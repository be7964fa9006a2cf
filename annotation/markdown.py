"""Markdown for text that admins write and annotators read (task guides): CommonMark without raw HTML.

``html`` is off, so ``<script>`` or ``<img onerror=...>`` in the source come out as escaped text; markdown-it's
link check drops ``javascript:``, ``vbscript:``, ``file:`` and most ``data:`` URLs, leaving the text. The
result is marked safe for templates only because of those two rules (tests/annotation/test_guides.py).
"""

from __future__ import annotations

from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

_RENDERER = MarkdownIt("commonmark", {"html": False})


def render(source: str) -> SafeString:
    """The HTML of ``source`` (Markdown), with raw HTML shown as text and unsafe links dropped."""
    return mark_safe(_RENDERER.render(source or ""))  # html disabled: see the module docstring
