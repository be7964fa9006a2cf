"""The OpenAI-compatible endpoint backend against real servers on loopback: ``transformers serve`` running a
tiny vision-language judge offline, and an HTTP server that misbehaves on purpose."""

from __future__ import annotations

import base64
import io
import time

import pytest
from PIL import Image

from ml.core.judges.backend import BudgetExhausted, Request
from ml.core.judges.endpoint import EndpointBackend
from ml.core.judges.protocol import PairItem, judge_pairs, summarize_verdicts
from ml.core.judges.tiny import make_tiny_qwen2_vl
from tests.support.judge_server import MisbehavingChatServer, TransformersServe

PROMPT = "An unripe mango, simple and realistic."


@pytest.fixture
def server():
    with MisbehavingChatServer() as running:
        yield running


def backend(server: MisbehavingChatServer, **options) -> EndpointBackend:
    """A backend on the test server that does not wait long between retries' attempts."""
    return EndpointBackend(server.base_url, "judge-under-test", **{"timeout": 5.0, **options})


def test_it_sends_the_system_message_then_the_images_as_png_data_urls_before_the_text(server):
    red, blue = Image.new("RGB", (3, 2), (255, 0, 0)), Image.new("RGB", (2, 2), (0, 0, 255))
    replies = backend(server).complete([Request("which one?", (red, blue), system="Be a scientist.", max_new_tokens=7)])
    assert replies[0].text == "echo: which one? (2 images)" and replies[0].error == ""
    assert (replies[0].prompt_tokens, replies[0].completion_tokens) == (202, 5)
    body = server.received[0]["body"]
    assert server.received[0]["path"] == "/v1/chat/completions"
    assert body["model"] == "judge-under-test" and body["max_tokens"] == 7 and body["temperature"] == 0.0
    system, user = body["messages"]
    assert system == {"role": "system", "content": "Be a scientist."}
    assert [part["type"] for part in user["content"]] == ["image_url", "image_url", "text"]
    url = user["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert decoded.format == "PNG" and decoded.size == (3, 2) and decoded.getpixel((0, 0)) == (255, 0, 0)


def test_replies_come_back_in_the_order_of_the_requests(server):
    texts = [f"question {i} [slow={0.05 * (8 - i)}]" for i in range(8)]
    replies = backend(server, max_concurrency=4).complete([Request(t) for t in texts])
    assert [r.text for r in replies] == [f"echo: {t} (0 images)" for t in texts]


def test_a_500_then_200_is_retried_and_answers(server):
    replies = backend(server, max_retries=3).complete([Request("[fail-once] a")])
    assert replies[0].text == "echo: [fail-once] a (0 images)"
    assert server.texts() == ["[fail-once] a", "[fail-once] a"]


def test_an_endpoint_that_always_fails_gives_an_error_reply_and_the_others_still_answer(server):
    judge = backend(server, max_retries=2)
    replies = judge.complete([Request("fine 1"), Request("[fail-always] x"), Request("fine 2")])
    assert replies[0].text == "echo: fine 1 (0 images)" and replies[2].text == "echo: fine 2 (0 images)"
    assert replies[1].text is None and "500" in replies[1].error and "always failing" in replies[1].error
    assert server.texts().count("[fail-always] x") == 3  # one attempt and two retries
    assert judge.requests_sent == 3  # logical requests, not attempts


def test_a_reply_slower_than_the_timeout_is_an_error_in_bounded_time(server):
    judge = backend(server, timeout=0.5, max_retries=1)
    start = time.monotonic()
    replies = judge.complete([Request("[slow=6] late"), Request("prompt")])
    elapsed = time.monotonic() - start
    assert replies[0].text is None and "Timeout" in replies[0].error
    assert replies[1].text == "echo: prompt (0 images)"
    assert elapsed < 4  # two attempts of 0.5 s and one back-off of at most 0.5 s, not the server's 6 s


def test_no_more_than_max_concurrency_requests_are_ever_in_flight(server):
    judge = backend(server, max_concurrency=3)
    replies = judge.complete([Request(f"q{i} [slow=0.2]") for i in range(10)])
    assert all(r.text for r in replies)
    assert server.max_in_flight == 3


def test_the_budget_stops_before_the_first_request_past_it(server):
    judge = backend(server, request_budget=5)
    assert len(judge.complete([Request("a"), Request("b")])) == 2
    with pytest.raises(BudgetExhausted, match="budget of 5"):
        judge.complete([Request(c) for c in "cdef"])
    assert len(server.received) == 5 and judge.requests_sent == 5
    with pytest.raises(BudgetExhausted):
        judge.complete([Request("g")])
    assert len(server.received) == 5
    assert judge.complete([]) == []


def test_the_key_comes_from_the_named_variable_as_the_bearer_token_and_is_never_shown(server, monkeypatch):
    secret = "sk-test-7c1d9e0f-never-shown"
    monkeypatch.setenv("JUDGE_TEST_KEY", secret)
    judge = backend(server, api_key_env="JUDGE_TEST_KEY", name="hosted")
    judge.complete([Request("hello")])
    assert server.received[0]["headers"]["authorization"] == f"Bearer {secret}"
    assert secret not in repr(judge) and secret not in str(judge) and "JUDGE_TEST_KEY" in repr(judge)

    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-default-variable")
    backend(server).complete([Request("no key")])
    assert server.received[1]["headers"]["authorization"] == "Bearer no-key"

    monkeypatch.delenv("JUDGE_TEST_KEY")
    with pytest.raises(ValueError, match="JUDGE_TEST_KEY is not set"):
        backend(server, api_key_env="JUDGE_TEST_KEY")


@pytest.fixture(scope="module")
def served_judge(tmp_path_factory):
    """``transformers serve`` on a tiny Qwen2-VL fitted to always answer ``{"choice": "image-1"}``."""
    root = tmp_path_factory.mktemp("served-judge")
    model = make_tiny_qwen2_vl(root / "qwen2-vl", answer='{"choice": "image-1"}')
    with TransformersServe(model, root) as server:
        yield server


def test_transformers_serve_judges_pairs_offline_and_every_answer_parses(served_judge):
    judge = EndpointBackend(served_judge.base_url, served_judge.model, max_concurrency=2, name="tiny-served")
    green, yellow = Image.new("RGB", (48, 40), (40, 160, 40)), Image.new("RGB", (40, 48), (230, 200, 40))
    items = [PairItem(f"t{i}", PROMPT, green, lambda: yellow) for i in range(3)]
    verdicts = judge_pairs(judge, items, chunk=2)
    assert [(v.score, v.parsed, v.first_position_picks) for v in verdicts] == [(0.5, 2, 2)] * 3
    assert all(order.text == '{"choice": "image-1"}' for v in verdicts for order in v.orders)
    summary = summarize_verdicts(verdicts)
    assert (summary["accuracy"], summary["first_position_share"], summary["unparsed"]) == (0.5, 1.0, 0)
    assert judge.requests_sent == 6

    with_images, without = judge.complete([Request(PROMPT, (green, yellow)), Request(PROMPT)])
    assert with_images.prompt_tokens > without.prompt_tokens > 0  # the server's processor saw the images
    assert with_images.completion_tokens > 0 and with_images.extra["finish_reason"] == "stop"

    wrong_model = EndpointBackend(served_judge.base_url, "another-model", max_retries=0).complete([Request("hi")])
    assert wrong_model[0].text is None and "400" in wrong_model[0].error and "pinned" in wrong_model[0].error
