"""``eval_generator`` runs on the tiny FLUX and scorer: IP/EP/SP, ND and RI per task, the base model's
evaluation reused, resume after a killed worker, results in the registry, parameter validation."""

from __future__ import annotations

from unittest import mock

import pytest

from curation.models import VersionMember
from ml.core import eval_generator as core
from ml.models import Run
from ml.services import registry, runs
from ml.services.runs import eval_generator
from tests.support.factories import make_pair
from tests.support.generator_runs import EVAL_TINY, execute, start, tiny, tiny_paths, train_version, worker_died  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def version(admin_user):
    """test_S: two RU tuples (one reversed) and two BU tuples; test_C: one RU tuple."""
    version = train_version(
        admin_user, [("test_S", "expected"), ("test_S", "other"), ("test_C", "expected"), ("train", "expected")]
    )
    for _ in range(2):
        VersionMember.objects.create(
            version=version,
            pair=make_pair("BU"),
            label="expected",
            outcome="confirmed",
            agreement=1.0,
            n_judgements=3,
            split="test_S",
            group_key="0" * 64,
        )
    return version


@pytest.fixture
def lora(admin_user, tiny, tmp_path):
    from tests.support.oft import make_sft_lora

    location = make_sft_lora(tiny.paths.flux, tmp_path / "lora")
    return registry.register_model(admin_user, "generator_lora", "tuned", str(location), parent=tiny.base)


def test_it_reports_ri_and_nd_per_task_and_reuses_the_base_evaluation(admin_user, tiny, version, lora):
    params = {"model": lora.pk, "base_model": tiny.base.pk, "dataset_version": version.pk, **EVAL_TINY}
    run = execute(start(admin_user, "eval_generator", params))
    assert run.params["scorer"] == tiny.scorer.pk and run.params["split"] == "test_S"
    assert "4 tuples of" in run.log_tail
    evaluation = run.artifacts["evaluation"]
    assert list(evaluation["groups"]) == ["BU", "RU", "overall"]
    for metrics in evaluation["groups"].values():
        assert all(isinstance(metrics[k], float) for k in ("IP", "EP", "SP", "ND", "RI"))
    assert evaluation["groups"]["RU"]["n_images"] == {"IP": 2, "EP": 2, "SP": 2}
    base = run.artifacts["base_evaluation"]
    assert base["run"] == run.pk and base["model"] == tiny.base.pk and "RI" not in base["groups"]["RU"]
    ru = evaluation["groups"]["RU"]
    assert ru["RI"] == pytest.approx(
        core.relative_improvement(ru["IP"], base["groups"]["RU"]["IP"], base["groups"]["RU"]["EP"])
    )
    assert [m["group"] for m in run.metrics] == ["BU", "RU", "overall"]
    assert run.metrics[1]["RI"] == ru["RI"]

    key = f"eval:{version.name}:test_S"
    lora.refresh_from_db()
    tiny.base.refresh_from_db()
    assert lora.metrics[key]["run"] == run.pk and lora.metrics[key]["base_model"] == tiny.base.pk
    assert lora.metrics[key]["groups"]["RU"] == {k: ru[k] for k in ("IP", "EP", "SP", "ND", "RI")}
    assert tiny.base.metrics[key]["groups"]["overall"]["ND"] == base["groups"]["overall"]["ND"]

    # Again with the same settings (batch size aside): the base's scores are reused, the model's reproduced.
    second = execute(start(admin_user, "eval_generator", {**params, "batch_size": 1}))
    assert f"reusing the evaluation of run {run.pk}" in second.log_tail
    assert second.artifacts["base_evaluation"]["run"] == run.pk
    # Reproduced up to float rounding: another batch size runs other matmul shapes (seen: scores
    # differing in the 4th digit). ND divides by the tiny score spread of the tiny model, so it
    # magnifies that rounding (seen: 1.6 %); it gets a looser bound.
    again = second.artifacts["evaluation"]["groups"]
    assert again.keys() == evaluation["groups"].keys()
    for group, metrics in evaluation["groups"].items():
        assert again[group].keys() == metrics.keys()
        for name, value in metrics.items():
            rel = 0.05 if name == "ND" else 1e-3
            expected = pytest.approx(value, rel=rel, abs=1e-4) if isinstance(value, float) else value
            assert again[group][name] == expected, (group, name)
    lora.refresh_from_db()
    assert lora.metrics[key]["run"] == second.pk


class Killed(BaseException):
    """The worker process dying (not an error the run handler records)."""


def test_a_killed_evaluation_resumes_from_the_chunks_it_saved(admin_user, tiny, version, monkeypatch):
    monkeypatch.setattr(eval_generator, "CHUNK", 1)
    params = {"model": tiny.base.pk, "dataset_version": version.pk, **EVAL_TINY}
    straight = execute(start(admin_user, "eval_generator", params))

    real = core.evaluate_generator
    calls = []

    def dies_on_the_second_chunk(*args, **kwargs):
        calls.append(kwargs["seed"])
        if len(calls) == 2:
            raise Killed()
        return real(*args, **kwargs)

    run = start(admin_user, "eval_generator", params)
    with mock.patch.object(core, "evaluate_generator", dies_on_the_second_chunk), pytest.raises(Killed):
        runs.execute_run(run.pk)
    worker_died(run)
    with mock.patch.object(core, "evaluate_generator", side_effect=real) as spy:
        resumed = execute(run)
    assert spy.call_count == 3 and "1 of 4 chunks done before; resuming" in resumed.log_tail
    assert resumed.artifacts["evaluation"]["groups"] == straight.artifacts["evaluation"]["groups"]
    assert "RI" not in resumed.artifacts["evaluation"]["groups"]["overall"]


def test_a_task_filter_evaluates_those_tasks_and_names_the_registry_key(admin_user, tiny, version):
    run = execute(
        start(
            admin_user,
            "eval_generator",
            {"model": tiny.base.pk, "dataset_version": version.pk, "tasks": ["BU"], "split": "test_S", **EVAL_TINY},
        )
    )
    assert list(run.artifacts["evaluation"]["groups"]) == ["BU", "overall"]
    tiny.base.refresh_from_db()
    assert list(tiny.base.metrics) == [f"eval:{version.name}:test_S:BU"]


def test_the_defaults(admin_user, tiny, version):
    run = start(admin_user, "eval_generator", {"model": tiny.base.pk, "dataset_version": version.pk})
    assert run.input_model == tiny.base
    assert run.params == {
        "model": tiny.base.pk,
        "dataset_version": version.pk,
        "scorer": tiny.scorer.pk,
        "base_model": None,
        "tasks": [],
        "split": "test_S",
        "images_per_prompt": 4,
        "steps": 30,
        "guidance": 3.5,
        "width": 512,
        "height": 512,
        "seed": 0,
        "batch_size": 4,
        "max_sequence_length": 512,
        "judge": None,
        "keep_images": "ip",
    }


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"split": "dev"}, "split", "one of train, validation, test_S, test_C"),
        ({"tasks": "BU"}, "tasks", "list of task codes"),
        ({"tasks": ["BU", "XX"]}, "tasks", "no tasks XX"),
        ({"tasks": ["GR"]}, "dataset_version", "no decided pairs in test_S of tasks GR"),
        ({"split": "validation"}, "dataset_version", "no decided pairs in validation"),
        ({"base_model": "<model>"}, "base_model", "must differ from model"),
        ({"base_model": "<scorer>"}, "base_model", "not a generator_base or generator_lora"),
        ({"scorer": "<model>"}, "scorer", "not a scorer"),
        ({"model": None}, "model", "required"),
        ({"images_per_prompt": 0}, "images_per_prompt", "between"),
        ({"lora": 3}, "params", "unknown parameters: lora"),
    ],
)
def test_parameters_are_validated(admin_user, tiny, version, change, field, message):
    named = {"<model>": tiny.base.pk, "<scorer>": tiny.scorer.pk}
    change = {key: named.get(value, value) if isinstance(value, str) else value for key, value in change.items()}
    with pytest.raises(runs.RunParamsError) as caught:
        start(admin_user, "eval_generator", {"model": tiny.base.pk, "dataset_version": version.pk, **change})
    assert message in caught.value.errors[field]
    assert not Run.objects.exists()
