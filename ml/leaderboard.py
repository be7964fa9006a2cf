"""The live "Table 1": two-choice accuracy of humans and judges on a frozen dataset version (read-only).

Rows, top to bottom:

* the Science-T2I paper's published figures (:data:`PAPER_ROWS`, typed in from its Table 1 and labelled as
  such; only the overall S and C figures, the per-discipline ones are not typed in);
* humans: every annotator's judgements pooled, scored leave-one-out against the version's labels
  (:func:`ml.services.humans.human_accuracy`), computed live on each request; and one row per annotator;
* every judge evaluated on this version: the latest succeeded ``eval_judge`` run of each (model, chain of
  thought) pair, from its artifacts (:mod:`ml.services.runs.eval_judge`).

Columns: per split (S = ``test_S``, C = ``test_C``, V = ``validation``), each discipline the split holds
(Physics, Chemistry, Biology first, as the paper orders them, then others by name), then ``Avg``: the accuracy
over all the split's items (each item weighs the same, so bigger disciplines weigh more). The per-task view
has one column per task of one split. Every cell carries n and a 95 % bootstrap interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from curation.models import DatasetVersion, VersionMember
from ml.models import Run

SPLIT_ORDER = ("test_S", "test_C", "validation")
SPLIT_SHORT = {"test_S": "S", "test_C": "C", "validation": "V"}
DISCIPLINE_ORDER = ("Physics", "Chemistry", "Biology")
DISCIPLINE_SHORT = {"Physics": "Phys", "Chemistry": "Chem", "Biology": "Bio"}
VIEWS = ("discipline", "task")
PAPER_SOURCE = "Science-T2I (CVPR 2025), Table 1: published figures typed in; overall S and C only"
# (label, S accuracy %, C accuracy %)
PAPER_ROWS = (
    ("Humans (paper)", 87.0, 86.0),
    ("CLIP-H (paper)", 54.7, 59.5),
    ("SigLIP (paper)", 57.2, 61.7),
    ("Qwen2-VL-7B (paper)", 63.8, 69.8),
    ("LLaVA-OneVision-7B (paper)", 65.1, 70.3),
    ("InternVL2.5-8B (paper)", 70.8, 75.3),
    ("GPT-4o mini (paper)", 70.8, 74.8),
    ("GPT-4o mini + CoT (paper)", 75.0, 77.2),
    ("SciScore (paper)", 93.1, 91.2),
)


@dataclass(frozen=True)
class Column:
    split: str
    group: str  # a discipline name or task code; "" for the whole split
    label: str


@dataclass
class Row:
    label: str
    kind: str  # reference, humans, annotator, scorer, judge
    cells: list = field(default_factory=list)  # one cell dict (or None) per column
    run: Run | None = None
    note: str = ""


def versions():
    """Versions that can be laid out, newest first."""
    return DatasetVersion.objects.order_by("-created_at", "-id")


def _short(discipline: str) -> str:
    return DISCIPLINE_SHORT.get(discipline, discipline[:4])


def columns(version: DatasetVersion, view: str = "discipline", split: str | None = None) -> list[Column]:
    """The table's columns: what the version's two-choice members hold, per split."""
    from ml.services.runs.eval_judge import TWO_CHOICE

    members = VersionMember.objects.filter(version=version, label__in=TWO_CHOICE)
    held = set(
        members.values_list("split", "pair__tuple__task__discipline__name", "pair__tuple__task__code").distinct()
    )
    splits = [s for s in SPLIT_ORDER if any(h[0] == s for h in held)]
    result = []
    if view == "task":
        split = split if split in splits else (splits[0] if splits else None)
        if split is None:
            return []
        tasks = sorted(
            {(d or "", c or "") for s, d, c in held if s == split},
            key=lambda dc: (_discipline_rank(dc[0]), dc[0], dc[1]),
        )
        result = [Column(split, code, code) for _, code in tasks if code]
        return [*result, Column(split, "", f"{SPLIT_SHORT[split]}-Avg")]
    for s in splits:
        names = sorted({d for sp, d, _ in held if sp == s and d}, key=lambda d: (_discipline_rank(d), d))
        result += [Column(s, name, f"{SPLIT_SHORT[s]}-{_short(name)}") for name in names]
        result.append(Column(s, "", f"{SPLIT_SHORT[s]}-Avg"))
    return result


def _discipline_rank(name: str) -> int:
    return DISCIPLINE_ORDER.index(name) if name in DISCIPLINE_ORDER else len(DISCIPLINE_ORDER)


def cell_of(result: dict | None, column: Column, view: str) -> dict | None:
    """The cell of a split's breakdown (:func:`ml.core.stats.breakdown`) under ``column``, with its figures
    as shown (``pct``, ``ci``: percent with one decimal)."""
    if not result:
        return None
    if not column.group:
        cell = result.get("overall")
    else:
        cell = result.get("by_task" if view == "task" else "by_discipline", {}).get(column.group)
    return shown(cell)


def shown(cell: dict | None) -> dict | None:
    """``cell`` plus its accuracy and interval in percent, as text."""
    if not cell:
        return None
    extra = {}
    if cell.get("accuracy") is not None:
        extra["pct"] = f"{cell['accuracy'] * 100:.1f}"
    if cell.get("low") is not None and cell.get("high") is not None:
        extra["ci"] = f"{cell['low'] * 100:.1f}–{cell['high'] * 100:.1f}"
    return {**cell, **extra}


def judge_runs(version: DatasetVersion) -> list[Run]:
    """The latest succeeded ``eval_judge`` run of each (model, chain of thought) on ``version``."""
    runs = (
        Run.objects.filter(kind=Run.Kind.EVAL_JUDGE, status=Run.Status.SUCCEEDED, params__dataset_version=version.pk)
        .select_related("input_model")
        .order_by("-finished_at", "-id")
    )
    latest: dict[tuple, Run] = {}
    for run in runs:
        latest.setdefault((run.input_model_id, bool(run.params.get("cot"))), run)
    return sorted(latest.values(), key=lambda r: (r.input_model.name if r.input_model else "", r.pk))


def paper_rows(cols: list[Column]) -> list[Row]:
    rows = []
    for label, s, c in PAPER_ROWS:
        figures = {"test_S": s, "test_C": c}
        cells = [
            shown({"accuracy": round(figures[col.split] / 100, 4), "reference": True})
            if not col.group and col.split in figures
            else None
            for col in cols
        ]
        rows.append(Row(label=label, kind="reference", cells=cells, note=PAPER_SOURCE))
    return rows


def table(version: DatasetVersion, view: str = "discipline", split: str | None = None) -> dict:
    """``{"columns", "reference", "humans", "annotators", "judges", "human_counts"}`` for ``version``."""
    from ml.services.humans import human_accuracy

    view = view if view in VIEWS else "discipline"
    cols = columns(version, view, split)
    splits = list(dict.fromkeys(col.split for col in cols))
    humans = human_accuracy(version, splits=tuple(splits)) if splits else {}
    pooled = Row(label="Humans (pooled, leave-one-out)", kind="humans")
    annotators: dict[int, Row] = {}
    for col in cols:
        result = humans.get(col.split) or {}
        pooled.cells.append(cell_of(result.get("pooled"), col, view))
        for entry in result.get("rows", []):
            row = annotators.setdefault(entry["id"], Row(label=entry["username"], kind="annotator"))
            row.cells.append((col, cell_of(entry["breakdown"], col, view)))
    for row in annotators.values():  # align: an annotator may have no items in some split
        found = dict(row.cells)
        row.cells = [found.get(col) for col in cols]
    judges = []
    for run in judge_runs(version):
        model = run.input_model
        name = model.name if model else f"run {run.pk}"
        cot = bool(run.params.get("cot")) and model is not None and model.kind == "judge"
        summary = run.artifacts.get("summary", {})
        judges.append(
            Row(
                label=f"{name}{' + CoT' if cot else ''}",
                kind=model.kind if model else "judge",
                run=run,
                cells=[cell_of(summary.get(col.split), col, view) for col in cols],
                note=run.artifacts.get("protocol", ""),
            )
        )
    return {
        "columns": cols,
        "view": view,
        "reference": paper_rows(cols) if view == "discipline" else [],
        "humans": pooled if any(cell and cell.get("n") for cell in pooled.cells) else None,
        "annotators": sorted(annotators.values(), key=lambda r: r.label),
        "judges": judges,
        "human_counts": {
            s: {k: v for k, v in humans.get(s, {}).items() if k not in ("pooled", "rows")} for s in splits
        },
    }
