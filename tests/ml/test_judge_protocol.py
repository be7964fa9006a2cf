"""The judging protocols against small deterministic backends that answer by looking at the images.

The backends here are real implementations of the :class:`~ml.core.judges.backend.Backend` interface (a
judge that always says image 1, one that picks the brighter image, one that reads a rubric grade off the
image's colour), not stand-ins for the protocol code under test.
"""

from __future__ import annotations

import json

import pytest
from PIL import Image, ImageStat

from ml.core.judges.backend import Reply, Request
from ml.core.judges.protocol import (
    COT_MAX_NEW_TOKENS,
    PAIRWISE_TEMPLATE,
    PLAIN_MAX_NEW_TOKENS,
    RUBRIC_TEMPLATE,
    PairItem,
    PairVerdict,
    RubricItem,
    RubricVerdict,
    grade_images,
    judge_pairs,
    pairwise_request,
    parse_choice,
    parse_reality,
    parse_scene,
    reality_summary,
    record_groups,
    summarize_verdicts,
)
from science_t2i.format import TupleRecord


def grey(level: int) -> Image.Image:
    """A small flat grey image of ``level`` (0 black, 255 white)."""
    return Image.new("RGB", (8, 8), (level, level, level))


def brightness(image: Image.Image) -> float:
    """Mean brightness over the channels."""
    return sum(ImageStat.Stat(image).mean) / 3


class ScriptedJudge:
    """Answers every request with ``answer(request)``; keeps every request it received."""

    def __init__(self, answer, name: str = "scripted"):
        self.answer, self.name, self.received, self.calls = answer, name, [], 0

    def complete(self, requests):
        """One reply per request, in order."""
        self.calls += 1
        self.received += list(requests)
        return [self.answer(request) for request in requests]


def always_first(request: Request) -> Reply:
    """A judge with pure position bias."""
    return Reply(text='{"choice": "image-1"}')


def brighter(request: Request) -> Reply:
    """Picks the brighter of the two images."""
    first, second = request.images
    return Reply(text=f'{{"choice": "image-{1 if brightness(first) > brightness(second) else 2}"}}')


def items(n: int, correct_brighter: bool = True) -> list[PairItem]:
    """``n`` pairs; the correct image is the brighter one (or the darker one), loaded lazily."""
    bright, dark = (lambda: grey(200)), (lambda: grey(50))
    correct, wrong = (bright, dark) if correct_brighter else (dark, bright)
    return [PairItem(f"t{i}", f"prompt {i}", correct, wrong) for i in range(n)]


def test_the_request_shows_both_images_in_order_with_the_prompt_and_the_versioned_template():
    first, second = grey(10), grey(20)
    plain = pairwise_request("An unripe mango, simple and realistic.", first, second)
    cot = pairwise_request("An unripe mango, simple and realistic.", first, second, cot=True)
    assert plain.images == (first, second)
    assert "An unripe mango, simple and realistic." in plain.text and '{"choice": "image-1"}' in plain.text
    assert plain.max_new_tokens == PLAIN_MAX_NEW_TOKENS < COT_MAX_NEW_TOKENS == cot.max_new_tokens
    assert "step by step" in cot.text and "step by step" not in plain.text
    assert (PAIRWISE_TEMPLATE, RUBRIC_TEMPLATE) == ("pairwise-v1", "rubric-v1")


@pytest.mark.parametrize(
    ("text", "choice"),
    [
        ('{"choice": "image-1"}', 1),
        ('{"choice": "image-2"}', 2),
        ('```json\n{"choice": "image-2"}\n```', 2),
        ('Sure! Here is my answer: {"choice": "image-1"}. Hope it helps.', 1),
        ("{'choice': 'image-2'}", 2),
        ('{"Choice": "Image 1"}', 1),
        ('{ "choice" :  "IMAGE_2" }', 2),
        ('{"choice": 1}', 1),
        ("Image 2", 2),
        ("image-1 is scientifically correct.", 1),
        ("2", 2),
        (' "1". ', 1),
        ('{"choice": "both"}', None),
        ('{"choice": "neither"}', None),
        ('{"choice": "image-3"}', None),
        ("Image 1 shows a ripe mango and Image 2 an unripe one.", None),
        ("I cannot tell.", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_choice_reads_the_answer_in_its_many_shapes_and_refuses_ambiguity(text, choice):
    assert parse_choice(text) == choice


def test_with_chain_of_thought_the_last_json_object_counts():
    text = (
        'The format is {"choice": "image-1"} or {"choice": "image-2"}. An unripe mango is green; Image 1 is '
        'yellow, Image 2 is green.\n{"choice": "image-2"}'
    )
    assert parse_choice(text) == 2
    judge = ScriptedJudge(lambda request: Reply(text=text))
    verdict = judge_pairs(judge, items(1), cot=True)[0]
    assert [order.choice for order in verdict.orders] == [2, 2]
    assert judge.received[0].max_new_tokens == COT_MAX_NEW_TOKENS


def test_an_always_image_1_judge_scores_one_half_on_every_item():
    verdicts = judge_pairs(ScriptedJudge(always_first), items(5), chunk=2)
    assert [v.score for v in verdicts] == [0.5] * 5
    assert all(v.parsed == 2 and v.first_position_picks == 2 for v in verdicts)
    summary = summarize_verdicts(verdicts)
    assert summary["accuracy"] == 0.5 and summary["first_position_share"] == 1.0 and summary["n"] == 5


def test_a_brightness_judge_scores_one_where_the_correct_image_is_brighter_and_zero_where_not():
    judge = ScriptedJudge(brighter)
    right = judge_pairs(judge, items(3, correct_brighter=True))
    wrong = judge_pairs(judge, items(3, correct_brighter=False))
    assert [v.score for v in right] == [1.0] * 3 and [v.score for v in wrong] == [0.0] * 3
    assert summarize_verdicts(right)["first_position_share"] == 0.5


def test_both_orders_of_a_chunk_go_in_one_call_and_progress_and_stop_follow_the_chunks():
    judge, progress, chunks = ScriptedJudge(brighter), [], []
    judge_pairs(judge, items(5), chunk=2, on_progress=lambda done, total: progress.append((done, total)))
    assert judge.calls == 3 and len(judge.received) == 10
    assert progress == [(2, 5), (4, 5), (5, 5)]
    first = judge.received[0].images
    assert brightness(first[0]) > brightness(first[1])  # the correct (brighter) image first, then swapped
    assert brightness(judge.received[1].images[0]) < brightness(judge.received[1].images[1])

    stopper = ScriptedJudge(brighter)
    verdicts = judge_pairs(stopper, items(5), chunk=2, should_stop=lambda: stopper.calls >= 2, on_chunk=chunks.append)
    assert stopper.calls == 2 and len(verdicts) == 4 and [len(c) for c in chunks] == [2, 2]


def test_parse_failures_and_request_errors_are_counted_never_right_or_wrong():
    def flaky(request: Request) -> Reply:
        first, second = request.images
        if brightness(first) > brightness(second):  # the correct image first: a right answer
            return Reply(text='{"choice": "image-1"}')
        return Reply(text="I am not sure.")

    partial = judge_pairs(ScriptedJudge(flaky), items(2))
    assert [v.score for v in partial] == [1.0, 1.0] and [v.parsed for v in partial] == [1, 1]
    assert summarize_verdicts(partial)["parse_failures"] == {"correct_first": 0, "wrong_first": 2}

    nothing = judge_pairs(ScriptedJudge(lambda r: Reply(text="Both look fine.")), items(2))
    errors = judge_pairs(ScriptedJudge(lambda r: Reply(text=None, error="HTTP 500")), items(2))
    for verdicts in (nothing, errors):
        assert [v.score for v in verdicts] == [None, None]
        summary = summarize_verdicts(verdicts)
        assert summary["accuracy"] is None and summary["n"] == 0 and summary["unparsed"] == 2
    assert summarize_verdicts(nothing)["parse_failures"] == {"correct_first": 2, "wrong_first": 2}
    assert summarize_verdicts(errors)["request_errors"] == 4
    assert summarize_verdicts(errors)["parse_failures"] == {"correct_first": 0, "wrong_first": 0}
    assert errors[0].orders[0].error == "HTTP 500"


def test_a_backend_that_drops_replies_is_an_error_not_a_silent_shortfall():
    class Short:
        name = "short"

        def complete(self, requests):
            return [Reply(text='{"choice": "image-1"}')]

    with pytest.raises(RuntimeError, match="1 replies to 2 requests"):
        judge_pairs(Short(), items(1))


def test_accuracy_is_broken_down_per_group_of_keys():
    verdicts = judge_pairs(ScriptedJudge(brighter), items(2, True) + [PairItem("x", "p", grey(10), grey(90))])
    summary = summarize_verdicts(verdicts, {"by_task": {"t0": "RU", "t1": "RU", "x": "FR"}})
    assert summary["accuracy"] == pytest.approx(2 / 3)
    assert summary["by_task"]["RU"]["accuracy"] == 1.0 and summary["by_task"]["FR"]["accuracy"] == 0.0


@pytest.mark.parametrize(
    ("text", "scene"),
    [
        ('{"scene": true}', True),
        ("```json\n{'scene': false}\n```", False),
        ('{"Scene": "yes"}', True),
        ("Yes.", True),
        ("No, the beaker is missing.", False),
        ('{"scene": "maybe"}', None),
        ("Yes and no.", None),
        ("", None),
    ],
)
def test_parse_scene(text, scene):
    assert parse_scene(text) is scene


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ('{"score": 3}', 3),
        ('{"score": 0}', 0),
        ("Reasoning... {'score': '2'}", 2),
        ('{"score": 2.0}', 2),
        ("1", 1),
        ("Score: 2/3", 2),
        ('{"score": 4}', None),
        ('{"score": -1}', None),
        ('{"score": 2.5}', None),
        ("It is quite realistic.", None),
    ],
)
def test_parse_reality_keeps_0_to_3_and_refuses_the_rest(text, score):
    assert parse_reality(text) == score


def colour(r: int, g: int = 0, b: int = 0) -> Image.Image:
    """A flat colour image."""
    return Image.new("RGB", (4, 4), (r, g, b))


def rubric_judge(request: Request) -> Reply:
    """Scene shown iff the green channel is lit; the grade is the red channel // 50 (so 200+ is out of range)."""
    red, green, _ = (int(v) for v in ImageStat.Stat(request.images[0]).mean)
    if "Scene requirement" in request.text:
        return Reply(text=f'{{"scene": {"true" if green else "false"}}}')
    return Reply(text=f'{{"score": {red // 50}}}')


def rubric(key: str, image, scene: str = "a beaker", real: str = "3 if blue, 0 if red") -> RubricItem:
    """A rubric item for ``image``."""
    return RubricItem(key, f"prompt {key}", scene, real, image)


def test_a_failed_scene_gate_scores_zero_without_a_reality_request():
    judge = ScriptedJudge(rubric_judge)
    verdicts = grade_images(judge, [rubric("a", colour(150, 255)), rubric("b", lambda: colour(150, 0))])
    assert [(v.scene, v.reality, v.score, v.status) for v in verdicts] == [
        (True, 3, 3, "graded"),
        (False, None, 0, "scene_failed"),
    ]
    scenes = [r for r in judge.received if "Scene requirement" in r.text]
    realities = [r for r in judge.received if "Scene requirement" not in r.text]
    assert len(scenes) == 2 and len(realities) == 1 and judge.calls == 2
    assert "prompt a" in realities[0].text and "3 if blue, 0 if red" in realities[0].text


def test_an_out_of_range_grade_or_an_unreadable_gate_gives_none_and_is_counted():
    def mumbling_gate(request: Request) -> Reply:
        return Reply(text="hmm") if "Scene requirement" in request.text else rubric_judge(request)

    verdicts = grade_images(ScriptedJudge(rubric_judge), [rubric("hi", colour(250, 255))])
    assert (verdicts[0].reality, verdicts[0].score, verdicts[0].status) == (None, None, "unparsed")
    assert verdicts[0].reality_text == '{"score": 5}'
    judge = ScriptedJudge(mumbling_gate)
    verdicts += grade_images(judge, [rubric("m", colour(100, 255))])
    assert (verdicts[1].scene, verdicts[1].score, verdicts[1].status) == (None, None, "unparsed")
    assert len(judge.received) == 1  # no reality request after an unreadable gate
    summary = reality_summary(verdicts)
    assert summary["unparsed"] == 2 and summary["n"] == 0 and summary["reality"] is None


def test_an_empty_scene_rubric_skips_the_gate_and_an_empty_reality_rubric_cannot_be_graded():
    judge = ScriptedJudge(rubric_judge)
    verdicts = grade_images(judge, [rubric("noscene", colour(100, 0), scene=""), rubric("noreal", colour(0), real="")])
    assert (verdicts[0].scene, verdicts[0].score, verdicts[0].status) == (None, 2, "graded")
    assert (verdicts[1].score, verdicts[1].status) == (None, "no_rubric")
    assert len(judge.received) == 1 and "Scene requirement" not in judge.received[0].text
    assert reality_summary(verdicts)["no_rubric"] == 1


def test_reality_is_normalised_to_0_100_overall_and_per_group():
    judge = ScriptedJudge(rubric_judge)
    items_ = [
        rubric("a", colour(150, 255)),  # 3
        rubric("b", colour(50, 255)),  # 1
        rubric("c", colour(150, 0)),  # scene fails: 0
        rubric("d", colour(0, 255), real=""),  # no rubric
    ]
    verdicts = grade_images(judge, items_, chunk=3)
    tasks = {"a": "RU", "b": "RU", "c": "FR", "d": "FR"}
    summary = reality_summary(verdicts, {"by_task": tasks, "by_discipline": dict.fromkeys(tasks, "chemistry")})
    assert summary["reality"] == pytest.approx((3 + 1 + 0) / 3 / 3 * 100)
    assert (summary["n"], summary["n_items"], summary["scene_failed"], summary["no_rubric"]) == (3, 4, 1, 1)
    assert summary["by_task"]["RU"]["reality"] == pytest.approx(4 / 6 * 100)
    assert summary["by_task"]["FR"]["reality"] == 0.0 and summary["by_task"]["FR"]["no_rubric"] == 1
    assert summary["by_discipline"]["chemistry"]["reality"] == summary["reality"]


def test_record_groups_maps_keys_to_task_discipline_and_kind():
    records = [TupleRecord("ip", "ep", "sp", None, None, task="RU"), TupleRecord("ip", "ep", "sp", None, None)]
    groups = record_groups(records, ["k0", "k1"])
    assert groups["by_task"]["k0"] == "RU" and "k1" not in groups["by_task"]
    verdicts = judge_pairs(ScriptedJudge(brighter), items(2))
    verdicts[1].key = "k1"
    verdicts[0].key = "k0"
    assert list(summarize_verdicts(verdicts, groups)["by_task"]) == ["RU"]


def test_verdicts_survive_a_round_trip_through_json():
    pairs = judge_pairs(ScriptedJudge(lambda r: Reply(text=None, error="down")), items(1))
    pairs += judge_pairs(ScriptedJudge(brighter), items(1))
    graded = grade_images(ScriptedJudge(rubric_judge), [rubric("a", colour(150, 255)), rubric("c", colour(9))])
    for verdict in pairs:
        again = PairVerdict.from_dict(json.loads(json.dumps(verdict.as_dict())))
        assert again == verdict and again.score == verdict.score
    assert [RubricVerdict.from_dict(json.loads(json.dumps(v.as_dict()))) for v in graded] == graded
