"""LMM judges in runs, on tiny Qwen2-VL judges built from configs (ml/core/judges/tiny.py):

* ``eval_judge``: the fitted judge always answers image-1, so asking in both orders gives 0.5 on every item
  (its position bias shows as a first-image share of 1); the random-weight judge's answers never parse, so
  every item is unscored and counted, never taken as right or wrong; both appear on the leaderboard;
* ``judge_pairs``: opinions of pending pairs, which the ``judge_disagreement`` queue order and the
  adjudication page's advisory opinions read.
"""

from __future__ import annotations

from unittest import mock

import pytest

from annotation.models import Pair, Task
from curation.models import VersionMember
from ml.core.judges.tiny import TINY_JUDGE_ANSWER, make_tiny_qwen2_vl
from ml.models import JudgedItem, PairScore, Run
from ml.services import active_learning, registry, runs
from ml.tasks import execute_run
from tests.support.scoring_data import synthetic_pairs, synthetic_version, tiny_scorer

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module")
def judge_dirs(tmp_path_factory):
    out = tmp_path_factory.mktemp("judges")
    return {
        "fitted": str(make_tiny_qwen2_vl(out / "fitted", answer=TINY_JUDGE_ANSWER)),
        "random": str(make_tiny_qwen2_vl(out / "random")),
    }


@pytest.fixture
def judges(admin_user, judge_dirs):
    return {
        name: registry.register_model(
            admin_user, "judge", f"tiny-{name}", path, config={"backend": "local", "batch_size": 4}
        )
        for name, path in judge_dirs.items()
    }


def _run(admin_user, kind: str, **params) -> Run:
    with mock.patch("ml.tasks.execute_run.apply_async"):
        run = runs.start_run(admin_user, kind, params, celery_task=execute_run)
    return runs.execute_run(run.pk)


def test_a_judge_that_always_picks_the_first_image_scores_one_half_in_both_orders(admin_user, judges):
    version = synthetic_version(admin_user, {"test_S": 3, "test_C": 2})
    run = _run(admin_user, "eval_judge", model=judges["fitted"].pk, dataset_version=version.pk, batch_size=2)

    assert run.status == Run.Status.SUCCEEDED, run.error
    assert run.artifacts["protocol"] == "pairwise-v1"
    summary = run.artifacts["summary"]
    assert summary["test_S"]["overall"]["accuracy"] == 0.5 and summary["test_S"]["overall"]["n"] == 3
    assert summary["test_S"]["overall"]["low"] == summary["test_S"]["overall"]["high"] == 0.5
    assert summary["test_S"]["parse"] == {
        "unscored_items": 0,
        "unreadable_images": 0,
        "answers": 6,
        "unparsed_answers": 0,
        "request_errors": 0,
        "first_image_share": 1.0,
    }
    for item in JudgedItem.objects.filter(run=run):
        assert item.score == 0.5 and item.prefers_expected == 0.5
        assert sorted(o["correct_first"] for o in item.detail["orders"]) == [False, True]
        assert all(o["choice"] == 1 and o["text"] == TINY_JUDGE_ANSWER for o in item.detail["orders"])


def test_unreadable_answers_leave_items_unscored_never_right_or_wrong(admin_user, judges, client):
    version = synthetic_version(admin_user, {"test_S": 2})
    run = _run(admin_user, "eval_judge", model=judges["random"].pk, dataset_version=version.pk)

    assert run.status == Run.Status.SUCCEEDED, run.error
    result = run.artifacts["summary"]["test_S"]
    assert result["overall"] == {"accuracy": None, "n": 0, "low": None, "high": None}
    assert result["unscored"] == 2 and result["parse"]["unparsed_answers"] == 4
    assert "2 items unscored (4 answers unreadable)" in run.log_tail
    assert set(JudgedItem.objects.filter(run=run).values_list("score", flat=True)) == {None}
    client.force_login(admin_user)
    unscored = client.get(f"/ml/leaderboard/items/?run={run.pk}&outcome=unscored").content.decode()
    assert unscored.count("data-pair=") == 2 and "unreadable" in unscored


def test_chain_of_thought_is_a_separate_row_of_the_leaderboard(admin_user, judges, api):
    version = synthetic_version(admin_user, {"test_S": 2})
    plain = _run(admin_user, "eval_judge", model=judges["fitted"].pk, dataset_version=version.pk)
    reasoned = _run(admin_user, "eval_judge", model=judges["fitted"].pk, dataset_version=version.pk, cot=True)
    assert reasoned.artifacts["protocol"] == "pairwise-v1+cot"
    api.force_authenticate(admin_user)
    table = api.get("/api/ml/leaderboard/", {"version": version.pk}).json()
    assert {(row["label"], row["run"]) for row in table["judges"]} == {
        ("tiny-fitted", plain.pk),
        ("tiny-fitted + CoT", reasoned.pk),
    }


def test_judge_pairs_gives_opinions_that_order_the_queue_and_advise_reviewers(
    admin_user, judges, api, reviewer, tmp_path
):
    scorer = tiny_scorer(admin_user, tmp_path / "scorer", name="active", active=True)
    pending = synthetic_pairs(3, "test", seed=7, tasks=["RU"])
    _run(admin_user, "score_pairs", model=scorer.pk)
    run = _run(admin_user, "judge_pairs", model=judges["fitted"].pk, tasks=["RU"], batch_size=2)

    assert run.status == Run.Status.SUCCEEDED, run.error
    assert run.artifacts["asked"] == 3 and run.artifacts["unreadable"] == 0
    opinions = JudgedItem.objects.filter(run=run)
    assert {(o.pair_id, o.split, o.score, o.prefers_expected) for o in opinions} == {
        (p.pk, "", None, 0.5) for p in pending
    }
    again = _run(admin_user, "judge_pairs", model=judges["fitted"].pk, tasks=["RU"])
    assert again.artifacts["asked"] == 0  # pairs it already gave an opinion on are not asked again

    task = Task.objects.get(code="RU")
    active_learning.set_queue_order(admin_user, task, Task.QueueOrder.JUDGE_DISAGREEMENT)
    for pair in Pair.objects.filter(pk__in=[p.pk for p in pending]):
        probability = PairScore.objects.get(pair=pair, model=scorer).probability
        assert pair.priority == pytest.approx(abs(probability - 0.5))

    api.force_authenticate(reviewer)
    answer = api.get(f"/api/ml/pairs/{pending[0].pk}/opinions/").json()
    assert answer["scorer"]["name"] == "active"
    assert answer["scorer"]["prefers_expected"] == pytest.approx(
        PairScore.objects.get(pair=pending[0], model=scorer).probability
    )
    assert answer["judges"] == [
        {
            "model": judges["fitted"].pk,
            "name": "tiny-fitted",
            "prefers_expected": 0.5,
            "run": run.pk,
            "protocol": "pairwise-v1",
        }
    ]
    assert "judgements" not in answer and "consensus" not in answer


def test_a_version_member_judged_by_eval_judge_is_also_an_opinion(admin_user, judges, api):
    version = synthetic_version(admin_user, {"test_S": 1})
    member = VersionMember.objects.get(version=version)
    VersionMember.objects.filter(pk=member.pk).update(label="other")  # the experts chose the other image
    _run(admin_user, "eval_judge", model=judges["fitted"].pk, dataset_version=version.pk)
    api.force_authenticate(admin_user)
    (opinion,) = api.get(f"/api/ml/pairs/{member.pair_id}/opinions/").json()["judges"]
    assert opinion["prefers_expected"] == 0.5


def test_an_endpoint_judge_is_evaluated_through_a_real_openai_compatible_server(
    admin_user, judge_dirs, tmp_path, monkeypatch
):
    """``transformers serve`` on the fitted judge, on loopback: the run asks it over HTTP, with a key from the
    named environment variable and the judge's request budget."""
    from tests.support.judge_server import TransformersServe

    version = synthetic_version(admin_user, {"test_S": 2})
    monkeypatch.setenv("SCIT2I_SERVED_JUDGE_KEY", "sk-test")
    with TransformersServe(judge_dirs["fitted"], tmp_path) as server:
        judge = registry.register_model(
            admin_user,
            "judge",
            "served",
            server.base_url,
            config={
                "backend": "endpoint",
                "model": server.model,
                "api_key_env": "SCIT2I_SERVED_JUDGE_KEY",
                "max_concurrency": 2,
                "request_budget": 4,
            },
        )
        run = _run(admin_user, "eval_judge", model=judge.pk, dataset_version=version.pk)
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert run.artifacts["summary"]["test_S"]["overall"]["accuracy"] == 0.5
    assert run.artifacts["summary"]["test_S"]["parse"]["answers"] == 4
    assert "sk-test" not in str(judge.config) and "sk-test" not in run.log_tail
