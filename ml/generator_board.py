"""The generator leaderboard (read-only): registered generators side by side on both protocols.

Every succeeded ``eval_generator`` run holds one evaluation of its model (``artifacts["evaluation"]``) and,
when it evaluated its base itself, one of the base (``artifacts["base_evaluation"]``). Evaluations are
comparable only with the same settings (dataset version, split, tasks, scorer, judge, generation settings:
``summary["settings"]``), so the board is a list of *settings groups*, each a table with one row per
model: its latest evaluation under those settings. Columns: the SciScore protocol (IP, EP, SP means, ND, RI
against the run's base) and the rubric protocol (the reality score 0–100, when a judge graded), overall,
then per discipline or per task.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from curation.models import DatasetVersion
from ml.models import ModelVersion, Run

OVERALL = "overall"


@dataclass
class Entry:
    model: ModelVersion | None
    run: Run
    label: str  # "model" or "base": which of the run's evaluations
    summary: dict
    cells: list = field(default_factory=list)  # per column of the page's view, filled by the view

    @property
    def overall(self) -> dict:
        return self.summary.get("groups", {}).get(OVERALL, {})


@dataclass
class Group:
    settings: dict
    entries: list[Entry] = field(default_factory=list)
    disciplines: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)  # the page's view: disciplines or tasks, filled by the view
    version_name: str = ""

    @property
    def graded(self) -> bool:
        return any(e.overall.get("reality") is not None or "reality_n" in e.overall for e in self.entries)


def _key(settings: dict) -> str:
    return json.dumps(settings, sort_keys=True)


def board(version_id: int | None = None, split: str | None = None, limit: int = 500) -> list[Group]:
    """Settings groups, the group with the newest evaluation first; in a group, models by overall reality
    score (then ND), best first, unscored last."""
    runs = Run.objects.filter(kind=Run.Kind.EVAL_GENERATOR, status=Run.Status.SUCCEEDED)
    if version_id is not None:
        runs = runs.filter(params__dataset_version=version_id)
    if split:
        runs = runs.filter(params__split=split)
    runs = list(runs.order_by("-finished_at", "-id")[:limit])
    models = ModelVersion.objects.in_bulk(
        {s["model"] for r in runs for s in _summaries(r) if isinstance(s.get("model"), int)}
    )
    groups: dict[str, Group] = {}
    seen: set[tuple[str, int]] = set()
    for run in runs:
        for label, summary in (
            ("model", run.artifacts.get("evaluation")),
            ("base", run.artifacts.get("base_evaluation")),
        ):
            if not summary or (label == "base" and summary.get("run") != run.pk):
                continue  # a reused base evaluation belongs to its own run
            settings = summary.get("settings", {})
            key = _key(settings)
            if (key, summary.get("model")) in seen:
                continue  # an older evaluation of the same model with the same settings
            seen.add((key, summary.get("model")))
            group = groups.setdefault(key, Group(settings=settings))
            group.entries.append(Entry(models.get(summary.get("model")), run, label, summary))
    names = dict(
        DatasetVersion.objects.filter(pk__in=[g.settings.get("dataset_version") for g in groups.values()]).values_list(
            "pk", "name"
        )
    )
    for group in groups.values():
        group.version_name = names.get(group.settings.get("dataset_version"), "")
        group.entries.sort(key=_rank)
        group.disciplines = sorted({d for e in group.entries for d in e.summary.get("disciplines", {})})
        group.tasks = sorted({t for e in group.entries for t in e.summary.get("groups", {}) if t != OVERALL})
    return list(groups.values())


def _summaries(run: Run) -> list[dict]:
    return [s for s in (run.artifacts.get("evaluation"), run.artifacts.get("base_evaluation")) if s]


def _rank(entry: Entry):
    o = entry.overall
    reality, nd = o.get("reality"), o.get("ND")
    return (reality is None, -(reality or 0.0), nd is None, -(nd or 0.0), entry.run.pk)


def cell(entry: Entry, view: str, name: str) -> dict:
    """The metrics of ``entry`` for a discipline (``view="discipline"``) or task (``"task"``) ``name``."""
    source = entry.summary.get("disciplines" if view == "discipline" else "groups", {})
    return source.get(name, {})
