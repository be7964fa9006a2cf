"""The answers a permission-matrix row may declare, shared by tests/support/permission_matrix.py and the
per-area row modules (tests/support/permission_rows/*.py); see permission_matrix.py for what they mean."""

from __future__ import annotations

# Answers: anonymous annotator other_field reviewer admin
EVERYONE, SIGNED_IN = "200 200 200 200 200", "A 200 200 200 200"
REVIEWERS, ADMINS = "A 403 403 200 200", "A 403 403 403 200"
ANNOTATOR_ONLY = "A 200 404 403 403"  # the lease holder; another annotator's lease is not found
PAGE_SIGNED_IN, PAGE_REVIEWERS, PAGE_ADMINS = "L 200 200 200 200", "L 403 403 200 200", "L 403 403 403 200"


def body(**fields):
    """A body whose string values may name world objects: ``pair="{pair}"``."""

    def body(world):
        return {
            k: (int(v.format(**world)) if isinstance(v, str) and v.startswith("{") else v) for k, v in fields.items()
        }

    return body
