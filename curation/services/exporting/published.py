"""The published layout (format ``published``): the three datasets Science-T2I is published as, each its own
folder with exactly the published columns and feature types, and a top-level card that keeps them apart.

* ``Science-T2I-Trainset/`` — split ``train`` (and ``validation``, same shape: the published set has no
  validation split, we keep ours beside it rather than drop it) in the train set's shape: **one row per
  tuple**, ``implicit_prompt``/``explicit_prompt``/``superficial_prompt`` are lists of every wording (the
  prompt, then its paraphrases), ``explicit_image`` every image the experts judged correct in the tuple's
  pairs and ``superficial_image`` every image judged wrong (each image once, in pair order), so a trainer
  drawing one of each at random (the paper's) sees every decided image;
* ``Science-T2I-S/`` and ``Science-T2I-C/`` — one split ``test`` each (our ``test_S`` / ``test_C``), one row
  per pair: string prompts, one image per side.

Every dataset folder holds ``README.md`` (a card whose YAML maps its splits to ``data/<split>-*.parquet`` and
declares the published features) and ``data/<split>-<i:05d>-of-<n:05d>.parquet``. The export's own
``README.md`` declares one config per dataset, so ``datasets.load_dataset(<export>)`` cannot merge the two
test sets either: it asks for a config name. The nine columns, in the published order:
:data:`science_t2i.format.PUBLISHED_COLUMNS`; ``category`` = task name and ``law`` = task code (our convention; the
published values are not documented).

Pairs labelled both/neither have no correct image and are left out, as in the combined parquet export.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from curation.services.exporting.base import DECIDED
from curation.services.exporting.card import agreement_add, agreement_summary
from curation.services.exporting.parquet import ShardedParquet, image_structs, published_values
from curation.services.exporting.source import Row, Source, count_excluded, count_row, counts_skeleton
from science_t2i.format import published_features_yaml, schema_with_features, science_t2i_fields

# (folder, [(our split, published split)], train shape)
DATASETS = (
    ("Science-T2I-Trainset", (("train", "train"), ("validation", "validation")), True),
    ("Science-T2I-S", (("test_S", "test"),), False),
    ("Science-T2I-C", (("test_C", "test"),), False),
)


def _schema(train_shape: bool):
    return schema_with_features(science_t2i_fields(prompt_lists=train_shape))


def tuple_rows(batches: Iterator[list[Row]]) -> Iterator[tuple[dict, int, list[Row]]]:
    """Members in tuple order grouped into one train-shaped row per tuple: ``(values, size, members)``.
    At most one tuple's members are held beyond the current batch."""
    group: list[Row] = []
    for batch in batches:
        for row in batch:
            if group and row.values["tuple_id"] != group[0].values["tuple_id"]:
                yield _grouped(group)
                group = []
            group.append(row)
    if group:
        yield _grouped(group)


def _grouped(rows: list[Row]) -> tuple[dict, int, list[Row]]:
    correct: dict[str, tuple] = {}
    wrong: dict[str, tuple] = {}
    for row in rows:
        for side, images in (("correct", correct), ("wrong", wrong)):
            data, sha, ext = row.image(side)
            images.setdefault(sha, (data, sha, ext))
    first = published_values(rows[0])
    values = {
        **first,
        "implicit_prompt": rows[0].prompts("implicit"),
        "explicit_prompt": rows[0].prompts("explicit"),
        "superficial_prompt": rows[0].prompts("superficial"),
        "explicit_image": image_structs(list(correct.values())),
        "superficial_image": image_structs(list(wrong.values())),
    }
    size = sum(len(data) for data, _, _ in (*correct.values(), *wrong.values())) + rows[0].size
    return values, size, rows


def write_published_export(source: Source, folder: Path, shard_bytes: int) -> dict:
    counts = counts_skeleton()
    counts["datasets"] = {}
    agreements: dict[str, list] = {}
    for name, splits, train_shape in DATASETS:
        schema, written = _schema(train_shape), {}
        for split, published in splits:
            shards = ShardedParquet(folder / name / "data", published, shard_bytes, schema, source.hasher, root=folder)
            n = 0
            try:
                batches = source.batches(split, DECIDED, by_tuple=train_shape)
                for values, size, members in _rows(batches, train_shape):
                    shards.add_values(values, size)
                    n += 1
                    for row in members:
                        count_row(counts, row)
                        agreement_add(agreements, split, row.values["agreement"])
                files = shards.close()
            except BaseException:
                shards.abandon()
                raise
            if files:
                written[published] = {"files": [f"data/{f}" for f in files], "rows": n}
                counts["files"][split] = [f"{name}/data/{f}" for f in files]
            count_excluded(source, counts, split)
        if written:
            (folder / name).mkdir(parents=True, exist_ok=True)
            (folder / name / "README.md").write_text(
                dataset_card(name, source.version, written, train_shape), encoding="utf-8"
            )
            counts["datasets"][name] = {split: info["rows"] for split, info in written.items()}
    counts["agreement"] = agreement_summary(agreements)
    (folder / "README.md").write_text(layout_card(source.version, counts["datasets"]), encoding="utf-8")
    return counts


def _rows(batches: Iterator[list[Row]], train_shape: bool) -> Iterator[tuple[dict, int, list[Row]]]:
    if train_shape:
        yield from tuple_rows(batches)
        return
    for batch in batches:
        for row in batch:
            yield published_values(row), row.size, [row]


def dataset_card(name: str, version, written: dict, train_shape: bool) -> str:
    """The README.md of one published dataset folder: its splits, features, and what it holds."""
    yaml = [
        "---",
        "license: apache-2.0",
        "task_categories:",
        "- text-to-image",
        "configs:",
        "- config_name: default",
        "  data_files:",
    ]
    for split in written:
        yaml += [f"  - split: {split}", f'    path: "data/{split}-*"']
    yaml += published_features_yaml(prompt_lists=train_shape)
    yaml += ["  splits:"] + [f"  - name: {split}\n    num_examples: {info['rows']}" for split, info in written.items()]
    yaml.append("---")
    shape = (
        (
            "One row per tuple: the three prompt columns are lists of every wording (the prompt, then its "
            "paraphrases); `explicit_image` holds every image the experts judged correct in the tuple's pairs, "
            "`superficial_image` every image they judged wrong (draw one of each per example, as the paper's "
            "trainer does)."
        )
        if train_shape
        else (
            "One row per judged pair: string prompts, `explicit_image` = [the image the experts judged "
            "correct], `superficial_image` = [the other one] (evaluation takes element 0 of each)."
        )
    )
    body = [
        f"# {name} — version `{version.name}`",
        "",
        (
            f"Exported from the Science-T2I curation platform (version id {version.pk}, content hash "
            f"`{version.content_hash}`), in the published layout of `{name}`."
        ),
        "",
        shape,
        "",
        (
            "`scene_scoring` and `real_scoring` are the tuple's grading rubrics (empty where none was recorded). "
            "`category` holds the task name and `law` the task code (our convention: the published values are not "
            "documented; our importer and evaluator read either column by value)."
        ),
        "",
        (
            'Load it with `datasets.load_dataset("<this folder>")` or '
            '`datasets.load_dataset("parquet", data_dir="<this folder>")`.'
        ),
        "",
        "Apache-2.0; cite Science-T2I when redistributing.",
        "",
    ]
    return "\n".join(yaml) + "\n" + "\n".join(body)


def layout_card(version, datasets: dict) -> str:
    """The export folder's README.md: one config per dataset (their schemas differ), no default, so
    ``load_dataset(<export>)`` without a config name refuses instead of merging the two test sets."""
    yaml = ["---", "license: apache-2.0", "configs:"]
    for name, _splits, _ in DATASETS:
        if name not in datasets:
            continue
        yaml += [f"- config_name: {name}", "  data_files:"]
        for split in datasets[name]:
            yaml += [f"  - split: {split}", f'    path: "{name}/data/{split}-*"']
    yaml.append("---")
    body = [
        f"# Science-T2I, published layout — version `{version.name}`",
        "",
        "Three datasets, as Science-T2I is published; each folder is a dataset of its own:",
        "",
    ]
    body += [
        f"- `{name}`: " + ", ".join(f"{split} {n} rows" for split, n in splits.items())
        for name, splits in datasets.items()
    ]
    body += [
        "",
        (
            'Load one with `datasets.load_dataset("<export>/Science-T2I-S")`, '
            '`datasets.load_dataset("parquet", data_dir="<export>/Science-T2I-S")` or '
            '`datasets.load_dataset("<export>", "Science-T2I-S")`. Counts: '
            f"`{json.dumps(datasets, sort_keys=True)}`."
        ),
        "",
    ]
    return "\n".join(yaml) + "\n" + "\n".join(body)
