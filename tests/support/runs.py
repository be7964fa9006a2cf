"""Runs made directly as rows (queued, never sent to a broker), for the tests of run execution."""

from __future__ import annotations

from ml.models import Run


def queued_run(admin_user, kind="generate") -> Run:
    return Run.objects.create(kind=kind, params={}, created_by=admin_user)
