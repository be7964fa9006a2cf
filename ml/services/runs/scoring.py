"""What the scorer kinds (``train_scorer``, ``eval_scorer``, ``score_pairs``) share.

* the scorer parameter, which defaults to the active scorer when it is left out (the cleaned
  parameters record its id, so a later promotion does not change what a queued run uses);
* :class:`Splits`, a list-of-split-names field for a kind's schema;
* the dataset version's parquet export (made here, in the worker, or reused when it exists);
* loading a registered scorer in this process and evaluating it split by split.

Evaluation runs in the worker process rather than through ``python -m ml eval-scorer``: one load
of the model serves every split, and a subprocess would pay its imports (~10 s) per model.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path

from curation.models import DatasetVersion, VersionMember
from ml.models import ModelVersion
from ml.services import registry
from ml.services.runs.context import RunContext
from ml.services.runs.params import clean_model

SPLITS = tuple(VersionMember.Split.values)  # train, validation, test_S, test_C
EVAL_SPLITS = ("validation", "test_S", "test_C")


@dataclass(frozen=True)
class Splits:
    """A non-empty list of split names out of ``choices`` (duplicates dropped, order kept)."""

    default: tuple[str, ...]
    choices: tuple[str, ...] = SPLITS

    def clean(self, value):
        if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
            raise ValueError(f"must be a non-empty list of split names ({', '.join(self.choices)})")
        unknown = [v for v in value if v not in self.choices]
        if unknown:
            raise ValueError(f"unknown split(s) {unknown}: use {', '.join(self.choices)}")
        return list(dict.fromkeys(value))


def clean_scorer(params: dict, name: str, errors: dict) -> ModelVersion | None:
    """The registered scorer under ``params[name]``, or the active scorer when it is absent or null."""
    if params.get(name) is None:
        model = registry.active_scorer()
        if model is None:
            errors[name] = "no scorer is active: give a registered scorer id"
        return model
    return clean_model(params, name, (ModelVersion.Kind.SCORER,), errors)


def export_parquet(ctx: RunContext, version: DatasetVersion) -> tuple[Path, dict[str, int]]:
    """The version's Science-T2I parquet export and its rows per split (both/neither labels are left out)."""
    from curation.services import exporting

    result = exporting.export_version(version, "parquet")
    rows = result["counts"]["splits"]
    ctx.log(f"dataset version {version.name}: " + ", ".join(f"{s} {rows.get(s, 0)}" for s in SPLITS) + " rows")
    return Path(result["path"]), rows


def load_scorer(location: str, model: ModelVersion | None = None):
    """A :class:`~ml.core.scorer.Scorer` on this worker's device; ``config["arch"]`` names the open_clip
    architecture of a registered bare checkpoint file (e.g. ViT-H-14)."""
    from ml.core.scorer import Scorer

    arch = (model.config or {}).get("arch") if model is not None else None
    return Scorer.load(location, arch=arch)


def free_device_memory() -> None:
    """Give the GPU memory of a scorer that went out of scope back, for the next run's processes."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def read_split(path: Path, split: str) -> list:
    """The split's records; our export's ``task`` and ``discipline`` columns name admin-added tasks too."""
    from science_t2i.format import read_parquet_dir

    records = list(read_parquet_dir(path, split=split))
    for record in records:
        record.task = record.extra.get("task") or record.task
        record.discipline = record.extra.get("discipline") or record.discipline
    return records


def evaluate(
    ctx: RunContext,
    location: str,
    model: ModelVersion | None,
    path: Path,
    rows: dict[str, int],
    splits,
    *,
    batch_size: int,
) -> dict:
    """Pairwise accuracy of the scorer at ``location`` on each of ``splits`` that has rows:
    ``{split: {"accuracy", "n", "by_task", "by_discipline", "by_kind", "mean_margin", ...}}``."""
    from ml.core.evaluate import pairwise_accuracy

    scorer = load_scorer(location, model)
    results = {}
    for split in splits:
        ctx.check_cancelled()
        if not rows.get(split):
            ctx.log(f"{split}: no rows, not evaluated")
            continue
        results[split] = pairwise_accuracy(scorer, read_split(path, split), batch_size=batch_size)
    del scorer
    free_device_memory()
    return results


def summary_line(split: str, result: dict, weakest: int = 3) -> str:
    """``test_S accuracy 0.912 (n=227); weakest tasks BU 0.417, AB 0.600, IM 0.650``."""
    tasks = sorted(result["by_task"].items(), key=lambda item: (item[1]["accuracy"], item[0]))[:weakest]
    worst = ", ".join(f"{task} {r['accuracy']:.3f}" for task, r in tasks)
    line = f"{split} accuracy {result['accuracy']:.3f} (n={result['n']})"
    return f"{line}; weakest tasks {worst}" if worst else line


def metric_record(split: str, result: dict) -> dict:
    """One record of a run's metrics series: a split's accuracy, overall and per task."""
    return {
        "split": split,
        "accuracy": result["accuracy"],
        "n": result["n"],
        "by_task": {task: r["accuracy"] for task, r in result["by_task"].items()},
    }
