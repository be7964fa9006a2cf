"""Synthetic Science-T2I pairs in the catalogue, frozen versions of them, and tiny registered scorers,
for the scorer run and active-learning tests."""

from __future__ import annotations

import hashlib
import io
import itertools

from annotation.models import Image, Pair, Task
from annotation.services import catalog
from curation.models import DatasetVersion, VersionMember
from ml.core.synthetic import make_synthetic_split
from ml.core.tiny import make_tiny_scorer
from ml.models import ModelVersion
from ml.services import registry

_names = itertools.count(1)


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def synthetic_pairs(n: int, pool: str = "train", *, seed: int = 0, tasks=None, k: int = 3) -> list[Pair]:
    """``n`` rendered tuples (32 px) stored through the catalogue services, one pair each."""
    options = {"tasks": tuple(tasks)} if tasks else {}
    pairs = []
    for record in make_synthetic_split(seed, n, pool, size=32, **options):
        t, _ = catalog.upsert_tuple(
            implicit_prompt=record.implicit_prompt,
            explicit_prompt=record.explicit_prompt,
            superficial_prompt=record.superficial_prompt,
            subject=record.subject,
            task=Task.objects.get(code=record.task),
        )
        correct, wrong = record.images()
        image_correct, _ = catalog.store_image(_png(correct), kind=Image.Kind.EXPLICIT, tuple=t)
        image_wrong, _ = catalog.store_image(_png(wrong), kind=Image.Kind.SUPERFICIAL, tuple=t)
        pairs.append(catalog.create_pair(t, image_correct, image_wrong, k=k)[0])
    return pairs


def synthetic_version(admin, sizes: dict[str, int], *, seed: int = 0) -> DatasetVersion:
    """A frozen version with ``sizes[split]`` confirmed synthetic pairs per split (members made directly,
    as :mod:`tests.curation.test_export` does, so the splits are exactly these). Train tuples come from the
    synthetic train pool, the others from the validation and test pools."""
    pools = {"train": "train", "validation": "val", "test_S": "test", "test_C": "test"}
    n = next(_names)
    version = DatasetVersion.objects.create(
        name=f"synthetic-{n}",
        content_hash=hashlib.sha256(f"synthetic-{n}".encode()).hexdigest(),
        counts={},
        filters={},
        split_ratios={"seed": seed},
        created_by=admin,
    )
    for offset, (split, size) in enumerate(sizes.items()):
        for pair in synthetic_pairs(size, pools[split], seed=seed + offset):
            VersionMember.objects.create(
                version=version,
                pair=pair,
                label="expected",
                outcome="confirmed",
                agreement=1.0,
                n_judgements=3,
                split=split,
                group_key="0" * 64,
            )
    return version


def tiny_scorer(admin, folder, *, name: str = "tiny", seed: int = 0, active: bool = False) -> ModelVersion:
    """A tiny open_clip scorer written to ``folder`` and registered (and activated if asked)."""
    model = registry.register_model(admin, ModelVersion.Kind.SCORER, name, str(make_tiny_scorer(folder, seed=seed)))
    return registry.activate_scorer(admin, model) if active else model
