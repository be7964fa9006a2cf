"""Pairwise accuracy: grouping on hand-made margins, batching and ties with a stub scorer, the tiny scorer."""

import pytest
import torch
from PIL import Image

from ml.core.evaluate import accuracy_by_group, pairwise_accuracy
from ml.core.tiny import tiny_scorer
from science_t2i.format import TupleRecord


def record(task="", correct=0, wrong=0, **fields):
    """A tuple whose images are flat grey levels (the stub scorer's score)."""
    return TupleRecord(
        f"prompt {task}",
        "",
        "",
        Image.new("L", (4, 4), correct),
        lambda: Image.new("L", (4, 4), wrong),
        task=task,
        **fields,
    )


class GreyLevelScorer:
    """Scores an image by its grey level; records every batch it is asked for."""

    def __init__(self):
        self.calls = []

    def score(self, prompts, images, *, batch_size=64):
        assert len(prompts) == len(images)
        self.calls.append(len(images))
        return torch.tensor([float(image.getpixel((0, 0))) for image in images])


def test_it_groups_hand_made_margins_by_task_discipline_and_kind():
    records = [record("RU"), record("RU"), record("BU"), record("SC"), record("SC"), record("")]
    margins = [1.5, -0.2, 0.0, 3.0, float("nan"), 2.0]

    result = accuracy_by_group(margins, records)
    assert (result["accuracy"], result["n"]) == (pytest.approx(3 / 6), 6)
    assert result["by_task"] == {
        "BU": {"accuracy": 0.0, "n": 1},
        "RU": {"accuracy": 0.5, "n": 2},
        "SC": {"accuracy": 0.5, "n": 2},
    }
    assert result["by_discipline"] == {
        "biology": {"accuracy": 0.5, "n": 2},
        "chemistry": {"accuracy": 0.5, "n": 2},
        "physics": {"accuracy": 0.0, "n": 1},
    }
    assert result["by_kind"] == {"CT": {"accuracy": 0.5, "n": 2}, "ST": {"accuracy": pytest.approx(1 / 3), "n": 3}}


def test_it_groups_tasks_it_does_not_know_by_the_fields_given():
    records = [record("XY", discipline="geology", kind="CT"), record("XY", discipline="geology", kind="CT")]

    result = accuracy_by_group([1.0, 1.0], records)
    assert result["by_task"] == {"XY": {"accuracy": 1.0, "n": 2}}
    assert result["by_discipline"] == {"geology": {"accuracy": 1.0, "n": 2}}


def test_it_refuses_mismatched_or_empty_input():
    with pytest.raises(ValueError, match="2 margins but 1 records"):
        accuracy_by_group([1.0, 2.0], [record()])
    with pytest.raises(ValueError, match="No records"):
        accuracy_by_group([], [])


def test_pairwise_accuracy_scores_in_chunks_and_counts_ties_as_wrong():
    records = [
        record("RU", 200, 100),
        record("RU", 100, 200),
        record("IM", 50, 50),
        record("BU", 30, 10),
        record("BU", 90, 80),
    ]
    scorer = GreyLevelScorer()

    result = pairwise_accuracy(scorer, iter(records), batch_size=2)
    assert scorer.calls == [2, 2, 2, 2, 1, 1]  # per chunk: correct images, then wrong images
    assert (result["accuracy"], result["n"]) == (pytest.approx(3 / 5), 5)
    assert result["by_task"]["IM"] == {"accuracy": 0.0, "n": 1}
    assert result["by_kind"] == {"CT": {"accuracy": 0.5, "n": 2}, "ST": {"accuracy": pytest.approx(2 / 3), "n": 3}}
    assert result["mean_score_correct"] == pytest.approx(94.0)
    assert result["mean_score_wrong"] == pytest.approx(88.0)
    assert result["mean_margin"] == pytest.approx(6.0)


def test_pairwise_accuracy_agrees_with_direct_scores_of_the_tiny_scorer():
    scorer = tiny_scorer(seed=0)
    records = [
        TupleRecord(
            f"A mango, {i} days old.",
            "",
            "",
            Image.new("RGB", (40, 32), (20 * i, 90, 200 - 9 * i)),
            Image.new("RGB", (32, 40), (200 - 20 * i, 30, 9 * i)),
            task="RI",
        )
        for i in range(7)
    ]
    prompts = [r.implicit_prompt for r in records]
    correct = scorer.score(prompts, [r.correct_image for r in records])
    wrong = scorer.score(prompts, [r.wrong_image for r in records])

    result = pairwise_accuracy(scorer, records, batch_size=3)
    assert result["accuracy"] == pytest.approx((correct > wrong).float().mean().item())
    assert result["mean_score_correct"] == pytest.approx(correct.mean().item(), abs=1e-5)
    assert result["by_discipline"]["biology"]["n"] == 7


def test_it_warns_when_a_breakdown_is_empty_and_says_what_the_columns_held():
    # Published-layout rows whose category holds a discipline and law something unknown: per-discipline
    # figures exist, per-task ones cannot, and the result says so instead of an empty table.
    records = [
        record(
            discipline="physics",
            extra={
                "grouping": {"category": "discipline", "law": "unrecognised"},
                "category": "Physics",
                "law": "Archimedes",
            },
        )
        for _ in range(2)
    ]
    result = accuracy_by_group([1.0, -1.0], records)
    assert result["by_task"] == {} and result["by_discipline"] == {"physics": {"accuracy": 0.5, "n": 2}}
    assert result["grouping"] == {"category": {"discipline": 2}, "law": {"unrecognised": 2}}
    (warning,) = result["warnings"]
    assert warning.startswith("no per-task figures") and "'Archimedes'" in warning and "discipline ×2" in warning
    complete = accuracy_by_group([1.0], [record(task="BU", extra={"grouping": {"category": "task"}})])
    assert complete["warnings"] == []
