"""The dataset card (``README.md``) of a parquet export, and the agreement summary it shows."""

from __future__ import annotations

import datetime as dt
import json

from curation.models import DatasetVersion
from curation.services.exporting.base import SPLITS


def agreement_add(agreements: dict, split: str, value) -> None:
    # Running sums only: memory stays flat in the number of rows.
    for key in (split, "all"):
        stats = agreements.setdefault(key, [0, 0.0, None, None, 0])  # n, sum, min, max, unanimous
        if value is None:
            continue
        stats[0] += 1
        stats[1] += value
        stats[2] = value if stats[2] is None else min(stats[2], value)
        stats[3] = value if stats[3] is None else max(stats[3], value)
        stats[4] += value >= 1.0


def agreement_summary(agreements: dict) -> dict:
    return {
        key: {"n": n, "mean": round(total / n, 4) if n else None, "min": low, "max": high, "unanimous": unanimous}
        for key, (n, total, low, high, unanimous) in agreements.items()
    }


def dataset_card(version: DatasetVersion, counts: dict) -> str:
    """The README.md of a parquet export: YAML ``configs`` per split, counts, agreement, licence, provenance."""
    splits = [s for s in SPLITS if counts["files"].get(s)]
    yaml = [
        "---",
        "license: apache-2.0",
        "task_categories:",
        "- text-to-image",
        f"pretty_name: {json.dumps(f'Science-T2I ({version.name})')}",
        "configs:",
        "- config_name: default",
        "  data_files:",
    ]
    for split in splits:
        yaml += [f"  - split: {split}", f'    path: "data/{split}-*.parquet"']
    yaml.append("---")
    created = version.created_at.isoformat(timespec="seconds") if version.created_at else ""
    exported = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    lines = [
        f"# Science-T2I — version `{version.name}`",
        "",
        (
            "Expert-curated adversarial image pairs for scientifically faithful text-to-image generation, exported "
            "from the Science-T2I curation platform."
        ),
        "",
        "## Provenance",
        "",
        f"- version: `{version.name}` (id {version.pk})",
        f"- content hash: `{version.content_hash}`",
        f"- frozen: {created}",
        f"- exported: {exported}",
        f"- filters: `{json.dumps(version.filters, sort_keys=True)}`",
        f"- split ratios: `{json.dumps(version.split_ratios, sort_keys=True)}`",
        "- integrity: `MANIFEST.sha256` (`sha256sum -c MANIFEST.sha256`)",
        "",
        "## Loading",
        "",
        (
            "One row per judged pair, four splits in `data/<split>-*.parquet`. Each of these gives the four splits "
            '`train`, `validation`, `test_S`, `test_C` apart: `datasets.load_dataset("<folder>")` (this card\'s '
            '`configs`), `datasets.load_dataset("parquet", data_dir="<folder>")` (the `data/<split>-NNNNN-of-'
            'NNNNN` names) and `datasets.load_dataset("parquet", data_files={"test_S": '
            '"<folder>/data/test_S-*.parquet", ...})`. The published layout (Science-T2I-Trainset with one row '
            "per tuple and list columns, Science-T2I-S and Science-T2I-C as datasets of their own) is the export "
            "format `published`."
        ),
        "",
        "## Columns",
        "",
        (
            "The published Science-T2I columns, in the published order: `implicit_prompt`, `explicit_prompt`, "
            "`superficial_prompt` (strings); `explicit_image` (the image the experts judged scientifically correct) "
            "and `superficial_image` (the wrong one), each a list of one `datasets.Image` with embedded bytes; "
            "`scene_scoring` and `real_scoring` (the tuple's grading rubrics: the scene gate, then the 0-3 reality "
            "grade); `category` and `law`. **Our convention: `category` holds the task name (e.g. `Buoyancy`) and "
            "`law` the task code (e.g. `BU`)**; what the published columns hold is not documented, so our importer "
            "and evaluator recognise task names, task codes and disciplines in either column by value. Extra "
            "columns: `implicit_prompts`, `explicit_prompts`, `superficial_prompts` (every wording of each prompt: "
            "the prompt, then its paraphrases), `tuple_id`, `pair_id`, `task`, `discipline`, `scene` (simple or "
            "complex), `subject` (what a detector should box), `label`, `consensus` (the frozen outcome), "
            "`agreement` (share of judgements with the majority label), `n_judgements`. Importing this folder "
            "into another platform reproduces tuples, scenes, labels and decisions."
        ),
        "",
        (
            "`label` is relative to the image the catalogue *expected* to be correct: `expected` means the experts "
            "agreed; `other` means they chose the other image, so for those rows the images are **swapped** "
            "relative to the catalogue (`explicit_image` is always the image the experts judged correct). Pairs "
            "labelled `both` or `neither` have no correct image and are not in this export."
        ),
        "",
        "## Counts",
        "",
        "| task | " + " | ".join(SPLITS) + " | total |",
        "|---|" + "---|" * (len(SPLITS) + 1),
    ]
    for task in sorted(counts["tasks"]):
        per = counts["tasks"][task]
        lines.append(
            f"| {task or '(none)'} | " + " | ".join(str(per.get(s, 0)) for s in SPLITS) + f" | {sum(per.values())} |"
        )
    lines.append(
        "| **all** | " + " | ".join(str(counts["splits"].get(s, 0)) for s in SPLITS) + f" | {counts['rows']} |"
    )
    lines.append("")
    if counts["excluded"]:
        lines += ["Left out (label both/neither): " + ", ".join(f"{s} {n}" for s, n in counts["excluded"].items()), ""]
    lines += ["## Agreement", "", "| split | rows with agreement | mean | min | unanimous |", "|---|---|---|---|---|"]
    for key, stats in counts["agreement"].items():
        lines.append(f"| {key} | {stats['n']} | {stats['mean']} | {stats['min']} | {stats['unanimous']} |")
    lines += [
        "",
        "## Licence",
        "",
        (
            "Apache-2.0. Prompts derived from the published Science-T2I dataset are used under its Apache-2.0 "
            "licence; keep this notice and cite Science-T2I when redistributing."
        ),
        "",
    ]
    return "\n".join(yaml) + "\n" + "\n".join(lines)
