"""The rubric protocol in ``eval_generator`` runs and the generator leaderboard: two generators (the tiny FLUX
base and a LoRA on it) graded by a tiny LMM judge with each tuple's rubrics, beside the SciScore protocol; a
tuple with no reality rubric is counted as unscored, never as 0; a judge whose scene gate fails scores 0; the
board compares only evaluations with the same settings, and the kept images can be browsed."""

from __future__ import annotations

import pytest

from annotation.models import PromptTuple
from ml.core.judges.tiny import make_tiny_qwen2_vl
from ml.services import registry
from tests.support.generator_runs import EVAL_TINY, execute, start, tiny, tiny_paths, train_version  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GRADES_TWO = '{"score": 2}'  # the fitted judge's answer to every question: reality 2 (the gate is not asked)
NO_SCENE = '{"scene": false}'  # this one's answer: the scene is not shown


@pytest.fixture(scope="module")
def judge_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("rubric-judges")
    return {
        "grades-two": make_tiny_qwen2_vl(root / "two", answer=GRADES_TWO),
        "no-scene": make_tiny_qwen2_vl(root / "none", answer=NO_SCENE),
    }


@pytest.fixture
def world(admin_user, request, tmp_path, judge_dirs):
    from tests.support.oft import make_sft_lora

    models = request.getfixturevalue("tiny")  # generator_runs' registered tiny models

    version = train_version(admin_user)  # test_S: two tuples
    tuples = list(
        PromptTuple.objects.filter(
            pairs__version_memberships__version=version, pairs__version_memberships__split="test_S"
        ).order_by("pk")
    )
    # No scene rubric: the gate is skipped and the reality question asked at once; the last tuple has no
    # reality rubric and cannot be graded.
    PromptTuple.objects.filter(pk__in=[t.pk for t in tuples]).update(
        scene_scoring="", real_scoring="3: rusty brown all over; 0: shiny grey."
    )
    PromptTuple.objects.filter(pk=tuples[-1].pk).update(real_scoring="")
    lora = registry.register_model(
        admin_user,
        "generator_lora",
        "tuned",
        str(make_sft_lora(models.paths.flux, tmp_path / "lora")),
        parent=models.base,
    )
    judges = {
        name: registry.register_model(admin_user, "judge", name, str(path), config={"backend": "local"})
        for name, path in judge_dirs.items()
    }
    return {"version": version, "lora": lora, "judges": judges, "base": models.base}


def test_two_generators_are_graded_with_the_rubrics_beside_sciscore(admin_user, world, client):
    params = {
        "model": world["lora"].pk,
        "base_model": world["base"].pk,
        "dataset_version": world["version"].pk,
        "judge": world["judges"]["grades-two"].pk,
        **EVAL_TINY,
    }
    run = execute(start(admin_user, "eval_generator", params))

    for evaluation in (run.artifacts["evaluation"], run.artifacts["base_evaluation"]):
        overall = evaluation["groups"]["overall"]
        assert overall["reality"] == pytest.approx(2 / 3 * 100)  # every graded image: 2 of 3
        assert overall["reality_n"] == 1 and overall["reality_unscored"] == 1  # one tuple has no rubric
        assert isinstance(overall["ND"], float)
    assert run.artifacts["evaluation"]["disciplines"]  # per discipline too
    assert "reality 66.667" in run.log_tail
    world["lora"].refresh_from_db()
    key = f"eval:{world['version'].name}:test_S"
    assert world["lora"].metrics[key]["groups"]["overall"]["reality"] == pytest.approx(66.667, abs=1e-3)

    client.force_login(admin_user)
    board = client.get("/ml/generators/", {"version": world["version"].pk}).content.decode()
    assert board.count(f'data-run="{run.pk}"') == 2  # the LoRA and the base it evaluated
    assert "tuned" in board and "tiny-flux" in board and "66.7" in board and "1 unread" in board
    images = client.get(f"/ml/runs/{run.pk}/generations/").content.decode()
    assert "reality 2/3" in images and "no_rubric" in images
    png = client.get(f"/ml/runs/{run.pk}/generations/model/0/IP/0.png")
    assert png.status_code == 200 and png["Content-Type"] == "image/png"
    assert b"".join(png.streaming_content).startswith(b"\x89PNG")
    assert png["X-Content-Type-Options"] == "nosniff"
    assert client.get(f"/ml/runs/{run.pk}/generations/model/0/EP/0.png").status_code == 404  # only IP kept
    assert client.get(f"/ml/runs/{run.pk}/generations/../0/IP/0.png").status_code == 404


def test_a_failed_scene_gate_scores_zero_and_other_settings_get_their_own_table(admin_user, world, client):
    PromptTuple.objects.update(scene_scoring="A nail is shown.")  # the gate is asked first now
    common = {"model": world["base"].pk, "dataset_version": world["version"].pk, **EVAL_TINY}
    gated = execute(start(admin_user, "eval_generator", {**common, "judge": world["judges"]["no-scene"].pk}))
    plain = execute(start(admin_user, "eval_generator", {**common, "keep_images": "none"}))

    overall = gated.artifacts["evaluation"]["groups"]["overall"]
    assert overall["reality"] == 0.0 and overall["reality_n"] == 1
    assert "reality" not in plain.artifacts["evaluation"]["groups"]["overall"]  # no judge: no rubric figures
    client.force_login(admin_user)
    board = client.get("/ml/generators/").content.decode()
    assert board.count('class="card generator-group"') == 2  # the judge is a setting: two tables
    empty = client.get(f"/ml/runs/{plain.pk}/generations/").content.decode()
    assert "not kept" in empty
