"""The local judge backend: batched greedy answers equal one-by-one answers, failures stay alone.

Exact comparisons run on the CPU in float32: in bfloat16 on a GPU, padding may move a near tie.
"""

import io

import pytest
import torch
from PIL import Image

from ml.core.judges.backend import Request
from ml.core.judges.local import LocalBackend, chat_messages, model_family
from ml.core.judges.tiny import TINY_JUDGE_ANSWER, make_tiny_llava_onevision, make_tiny_qwen2_vl

BUILDERS = {"qwen2_vl": make_tiny_qwen2_vl, "llava_onevision": make_tiny_llava_onevision}


@pytest.fixture(scope="module")
def judges(tmp_path_factory) -> dict:
    """Each family random (answers vary with the prompt) and fitted to TINY_JUDGE_ANSWER."""
    root = tmp_path_factory.mktemp("judges")
    built = {}
    for family, build in BUILDERS.items():
        built[family] = build(root / family)
        built[f"{family}-fitted"] = build(root / f"{family}-fitted", answer=TINY_JUDGE_ANSWER)
    return built


def picture(colour: str, size: tuple[int, int] = (48, 48)) -> Image.Image:
    return Image.new("RGB", size, colour)


def truncated_png() -> Image.Image:
    """A PNG whose header opens but whose pixels are cut off: it fails when loaded."""
    data = io.BytesIO()
    Image.effect_noise((64, 64), 40).convert("RGB").save(data, format="PNG")
    return Image.open(io.BytesIO(data.getvalue()[: len(data.getvalue()) // 2]))


def mixed_requests() -> list[Request]:
    """1 and 2 images (and none), with and without a system message, different sizes and token limits."""
    return [
        Request("Which image shows rust?", (picture("orange"), picture("grey", (64, 32))), max_new_tokens=12),
        Request("Is this apple rotten?", (picture("brown", (32, 64)),), system="You judge science.", max_new_tokens=5),
        Request("An ice cube on a hot pan.", (picture("white"), picture("blue")), system="Answer in JSON."),
        Request("A candle after hours.", (picture("yellow", (100, 80)),), max_new_tokens=20),
        Request("Oil on water: which is right?", (picture("black"), picture("gold")), max_new_tokens=9),
        Request("No picture: what makes iron rust?", (), max_new_tokens=7),
    ]


@pytest.mark.parametrize("family", BUILDERS)
def test_a_mixed_batch_answers_in_order_like_one_by_one(judges, family):
    backend = LocalBackend(judges[family], device="cpu", batch_size=8)
    requests = mixed_requests()
    batched = backend.complete(requests)
    alone = [backend.complete([request])[0] for request in requests]
    assert [(r.text, r.prompt_tokens, r.completion_tokens) for r in batched] == [
        (r.text, r.prompt_tokens, r.completion_tokens) for r in alone
    ]
    assert len({reply.text for reply in batched}) == len(requests)  # the answers differ, so order shows
    partial = LocalBackend(judges[family], device="cpu", batch_size=5).complete(requests)  # 5, then 1 text only
    assert [r.text for r in partial] == [r.text for r in batched]


@pytest.mark.parametrize("family", BUILDERS)
def test_it_counts_prompt_and_completion_tokens(judges, family):
    backend = LocalBackend(judges[family], device="cpu")
    requests = mixed_requests()[:2]
    random_replies = backend.complete(requests)
    for request, reply in zip(requests, random_replies, strict=True):
        messages = chat_messages(request.text, len(request.images), request.system)
        text = backend.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = backend.processor(text=[text], images=[list(request.images)], return_tensors="pt")
        assert reply.prompt_tokens == inputs["input_ids"].shape[1]
        assert reply.completion_tokens == request.max_new_tokens  # random weights never stop early
        assert reply.extra["finish_reason"] == "length"

    fitted = LocalBackend(judges[f"{family}-fitted"]).complete(requests)
    answer_tokens = len(backend.processor.tokenizer.encode(TINY_JUDGE_ANSWER, add_special_tokens=False))
    assert fitted[0].text == TINY_JUDGE_ANSWER
    assert fitted[0].completion_tokens == answer_tokens + 1  # and <|im_end|>, which the text leaves out
    assert fitted[0].extra["finish_reason"] == "stop"
    assert fitted[1].text is not None and TINY_JUDGE_ANSWER.startswith(fitted[1].text)  # cut at 5 tokens
    assert fitted[1].completion_tokens == 5


@pytest.mark.parametrize("family", BUILDERS)
def test_a_bad_request_fails_alone(judges, family):
    backend = LocalBackend(judges[family], device="cpu", batch_size=8)
    good = mixed_requests()
    bad = [
        Request("A broken picture.", (truncated_png(),)),
        Request("Not a picture at all.", ("image.png",)),  # a path, not a loaded picture
    ]
    if family == "qwen2_vl":  # loads fine, but Qwen2-VL's resizing refuses an aspect ratio over 200
        bad.append(Request("Too thin.", (picture("red", (1000, 2)),)))
    requests = [good[0], bad[0], good[1], bad[1], *bad[2:], good[2]]
    replies = backend.complete(requests)
    expected = {id(r): reply for r, reply in zip(good, backend.complete(good), strict=True)}
    for request, reply in zip(requests, replies, strict=True):
        if request in bad:
            assert reply.text is None and reply.error, request.text
        else:
            assert reply.text == expected[id(request)].text and not reply.error
    assert "truncated" in replies[1].error
    if family == "qwen2_vl":
        assert "aspect ratio" in replies[4].error


@pytest.mark.parametrize("family", BUILDERS)
def test_the_fitted_judges_of_both_families_answer_every_pairwise_question(judges, family):
    backend = LocalBackend(judges[f"{family}-fitted"], batch_size=3)
    requests = [Request(r.text, r.images, r.system, max_new_tokens=32) for r in mixed_requests()]
    assert [reply.text for reply in backend.complete(requests)] == [TINY_JUDGE_ANSWER] * len(requests)
    assert model_family(judges[f"{family}-fitted"]) == family == backend.family


def test_it_defaults_to_the_cpu_in_float32_and_refuses_work_once_closed(judges):
    backend = LocalBackend(judges["qwen2_vl"])
    if not torch.cuda.is_available():
        assert backend.device == torch.device("cpu")
        assert next(backend.model.parameters()).dtype == torch.float32
    assert backend.name == "qwen2_vl"
    assert LocalBackend(judges["qwen2_vl"], name="tiny", dtype=torch.bfloat16).name == "tiny"
    with backend:
        assert backend.complete([]) == []
    assert backend.closed and not hasattr(backend, "model")
    with pytest.raises(RuntimeError, match="closed"):
        backend.complete(mixed_requests()[:1])
