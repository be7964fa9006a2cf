"""The generator loop end to end on tiny models: a base model generates candidate pairs, experts judge
them, a version is frozen, then ``sft`` → ``oft`` → ``eval_generator`` runs chained from that version.

Lineage at the end: OFT LoRA → SFT LoRA → base model, both trained on the version, whose pairs the base
model generated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from annotation.models import Pair, Task
from annotation.services import queue
from curation.services import judging
from curation.services.versions import build_version
from ml.services import registry
from tests.support.factories import TupleFactory, make_user
from tests.support.generator_runs import EVAL_TINY, OFT_TINY, SFT_TINY, execute, start, tiny, tiny_paths  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SUBJECTS = ["nail", "iron gate", "bicycle chain", "tin can", "steel spoon", "wrench", "padlock", "metal fence"]


def _judge_all(experts, reversed_pair: Pair) -> None:
    """Every expert judges every open pair: the expected image is right, except on ``reversed_pair``."""
    for expert in experts:
        while (lease := queue.next_lease(expert)) is not None:
            correct = lease.pair.image_wrong_id if lease.pair_id == reversed_pair.pk else lease.pair.image_correct_id
            judging.judge(expert, lease.pk, queue.JudgementInput("left" if lease.left_image_id == correct else "right"))


def test_generate_judge_freeze_then_sft_oft_and_evaluate(admin_user, tiny, settings):
    rust = Task.objects.get(code="RU")
    tuples = [
        TupleFactory(
            implicit_prompt=f"A {s} left outside in the rain for weeks.",
            subject=s,
            explicit_prompt=f"A rusty brown {s}.",
            superficial_prompt=f"A shiny grey {s}.",
            task=rust,
        )
        for s in SUBJECTS
    ]
    generated = execute(
        start(
            admin_user,
            "generate",
            {"model": tiny.base.pk, "tuples": [t.pk for t in tuples], "steps": 2, "width": 16, "height": 16},
        )
    )
    pairs = list(Pair.objects.filter(tuple__in=tuples).order_by("id"))
    assert len(pairs) == len(SUBJECTS)
    _judge_all([make_user(f"chemist-{i}", "annotator", disciplines=["chemistry"]) for i in range(3)], pairs[0])
    version = build_version(admin_user, "loop-v1", ratios={"train": 0.5, "validation": 0.0, "test": 0.5})
    assert set(version.members.values_list("split", flat=True)) == {"train", "test_S"}

    sft = execute(start(admin_user, "sft", {"model": tiny.base.pk, "dataset_version": version.pk, **SFT_TINY}))
    oft = execute(
        start(
            admin_user,
            "oft",
            {"model": sft.output_model.pk, "dataset_version": version.pk, "detector": tiny.detector, **OFT_TINY},
        )
    )
    evaluation = execute(
        start(
            admin_user,
            "eval_generator",
            {"model": oft.output_model.pk, "base_model": tiny.base.pk, "dataset_version": version.pk, **EVAL_TINY},
        )
    )

    sft_lora, oft_lora = sft.output_model, oft.output_model
    lineage = registry.lineage(oft_lora)
    assert lineage.ancestors == [sft_lora, tiny.base] and lineage.produced_by == [oft]
    assert sft_lora.dataset_version == oft_lora.dataset_version == lineage.dataset_version == version
    assert registry.image_origin(pairs[0].image_correct) == (generated, tiny.base)

    # The OFT run: the active scorer as reward, the SFT LoRA to start from, subjects boxed by the detector.
    assert oft.params["scorer"] == tiny.scorer.pk and oft_lora.config == oft.params
    assert f"--lora {sft_lora.location}" in oft.log_tail and f"--detector {tiny.detector}" in oft.log_tail
    prompts = json.loads((settings.ML_WORK_ROOT / f"run-{oft.pk}" / "oft-prompts.json").read_text())
    train = {m.pair.tuple for m in version.members.filter(split="train").select_related("pair__tuple")}
    assert prompts == [{"prompt": t.implicit_prompt, "object": t.subject} for t in sorted(train, key=lambda t: t.pk)]
    assert [m["optimizer_step"] for m in oft.metrics] == [1] and 0 < oft.metrics[0]["mask_fraction"] <= 1
    assert oft_lora.name == f"run-{oft.pk}" and oft_lora.metrics["prompts_seen"] == 1
    assert Path(oft_lora.location) == settings.ML_MODEL_ROOT / "generator_lora" / f"run-{oft.pk}"

    # The evaluation loads SFT + OFT as one adapter on the base; RI against the base, per task.
    groups = evaluation.artifacts["evaluation"]["groups"]
    assert set(groups) == {"RU", "overall"} and {"IP", "EP", "SP", "ND", "RI"} <= set(groups["RU"])
    oft_lora.refresh_from_db()
    assert oft_lora.metrics["eval:loop-v1:test_S"]["groups"]["RU"]["RI"] == groups["RU"]["RI"]
