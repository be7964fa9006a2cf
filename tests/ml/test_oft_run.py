"""``oft`` runs: prompts and subjects from the version's train tuples, defaults, parameter validation.

An OFT run through the supervised ``python -m ml oft`` on the tiny FLUX, scorer and Grounding DINO, and
its registered LoRA, are tested in the closed loop (tests/ml/test_closed_loop.py): its imports cost ~15 s."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import pytest

from curation.models import VersionMember
from ml.models import ModelVersion, Run
from ml.services import registry, runs
from ml.services.runs import oft
from tests.support.generator_runs import OFT_TINY, execute, start, tiny, tiny_paths, train_version  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def models(admin_user):
    """Registered models; their files are not needed to validate parameters or to write prompts."""
    base = registry.register_model(admin_user, "generator_base", "flux", "/models/flux")
    scorer = registry.activate_scorer(
        admin_user, registry.register_model(admin_user, "scorer", "sciscore", "/models/sciscore")
    )
    return SimpleNamespace(base=base, scorer=scorer, detector="/models/grounding-dino")


def test_the_prompts_are_the_train_tuples_with_their_subjects(admin_user, models, tmp_path):
    version = train_version(admin_user)
    tuples = sorted(
        {
            m.pair.tuple
            for m in VersionMember.objects.filter(version=version, split="train", label__in=("expected", "other"))
        },
        key=lambda t: t.pk,
    )
    tuples[1].subject = ""  # as in the published data: no subject phrase
    tuples[1].save()
    run = start(
        admin_user, "oft", {"model": models.base.pk, "dataset_version": version.pk, "detector": models.detector}
    )
    ctx = runs.RunContext(run)
    oft.write_prompts(version, tmp_path / "prompts.json", ctx)
    assert json.loads((tmp_path / "prompts.json").read_text()) == [
        {"prompt": tuples[0].implicit_prompt, "object": "nail"},
        {"prompt": tuples[1].implicit_prompt, "object": tuples[1].implicit_prompt},
    ]
    assert "2 prompts from the train split" in ctx.run.log_tail and "1 without a subject" in ctx.run.log_tail


def test_the_defaults_are_the_papers_as_in_the_trainer(admin_user, models):
    from ml.core.oft import OFTConfig

    config = OFTConfig()
    assert {name: spec.default for name, spec in oft.SCHEMA.items()} == {
        f.name: getattr(config, f.name) for f in dataclasses.fields(OFTConfig) if f.name != "device"
    }
    version = train_version(admin_user)
    run = start(admin_user, "oft", {"model": models.base.pk, "dataset_version": version.pk, "use_mask": False})
    assert run.input_model == models.base
    platform = {
        "sampler": "euler_maruyama",
        "guidance": 3.5,
        "preference_loss": "pair",
        "mask_mean": "inside",
        "mask_grid": "token",
        "subject_region": "union",
        "reference": "fused_sft",
        "prompts_per_step": 4,
        "max_steps": 100,
        "prompt_sampling": "permutation",
    }  # today's behaviour
    assert run.params == {
        "model": models.base.pk,
        "dataset_version": version.pk,
        "scorer": models.scorer.pk,
        "detector": None,
        **{name: spec.default for name, spec in oft.SCHEMA.items()},
        "use_mask": False,
        **platform,
    }


def test_without_an_active_scorer_one_must_be_named(admin_user, models):
    ModelVersion.objects.filter(pk=models.scorer.pk).update(is_active=False)
    params = {"model": models.base.pk, "dataset_version": train_version(admin_user).pk, "detector": "/models/gdino"}
    with pytest.raises(runs.RunParamsError, match="no scorer is active"):
        start(admin_user, "oft", params)
    assert start(admin_user, "oft", {**params, "scorer": models.scorer.pk}).params["scorer"] == models.scorer.pk


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"detector": None}, "detector", "required unless use_mask is false"),
        ({"detector": ""}, "detector", "required unless use_mask is false"),
        ({"detector": 5}, "detector", "must be a directory path"),
        ({"scorer": "<base>"}, "scorer", "not a scorer"),
        ({"scorer": 999999}, "scorer", "no registered model"),
        ({"model": "<scorer>"}, "model", "not a generator_base or generator_lora"),
        ({"model": None}, "model", "required"),
        ({"dataset_version": "<test only>"}, "dataset_version", "no decided pairs in its train split"),
        ({"clip_eps": 1.5}, "clip_eps", "between"),
        ({"use_mask": "no"}, "use_mask", "true or false"),
        ({"prompts": "/tmp/p.json"}, "params", "unknown parameters: prompts"),
        ({"recipe": "paper", "sampler": "ddim"}, "sampler", "one of euler_maruyama, churn"),
        ({"recipe": "ddpo"}, "recipe", "one of platform, paper"),
    ],
)
def test_parameters_are_validated(admin_user, models, change, field, message):
    named = {
        "<base>": models.base.pk,
        "<scorer>": models.scorer.pk,
        "<test only>": train_version(admin_user, [("test_S", "expected")]).pk,
    }
    change = {key: named.get(value, value) if isinstance(value, str) else value for key, value in change.items()}
    params = {
        "model": models.base.pk,
        "dataset_version": train_version(admin_user).pk,
        "detector": "/models/gdino",
        **change,
    }
    with pytest.raises(runs.RunParamsError) as caught:
        start(admin_user, "oft", params)
    assert message in caught.value.errors[field]
    assert not Run.objects.exists()


PAPER = {
    "recipe": "paper",
    "sampler": "churn",
    "guidance": 0.0,
    "preference_loss": "matrix",
    "mask_mean": "all",
    "mask_grid": "latent",
    "subject_region": "enclosing",
    "reference": "sft_adapter",
    "prompts_per_step": 2,
    "max_steps": 156,
    "prompt_sampling": "replacement",
}


def test_the_paper_recipe_fills_in_the_research_codes_values_and_explicit_ones_win(admin_user, models):
    params = {
        "model": models.base.pk,
        "dataset_version": train_version(admin_user).pk,
        "detector": models.detector,
        "recipe": "paper",
    }
    assert {name: start(admin_user, "oft", params).params[name] for name in PAPER} == PAPER
    changed = start(admin_user, "oft", {**params, "guidance": 3.5, "mask_mean": "inside"}).params
    assert (changed["guidance"], changed["mask_mean"], changed["sampler"]) == (3.5, "inside", "churn")


def test_a_paper_run_trains_the_sft_adapter_on_and_registers_it(admin_user, tiny, tmp_path):
    """OFT from an SFT LoRA with the paper's recipe, through the supervised ``python -m ml oft``."""
    from PIL import Image

    from ml.core.sft import SFTConfig, train_sft
    from science_t2i.format import TupleRecord

    record = TupleRecord("A rusty nail.", "", "", Image.new("RGB", (16, 16), (150, 70, 30)), Image.new("RGB", (16, 16)))
    sft_lora = train_sft(
        tiny.paths.flux,
        [record],
        tmp_path / "sft",
        SFTConfig(
            resolution=16, max_sequence_length=16, batch_size=1, grad_accum=1, max_steps=1, gradient_checkpointing=False
        ),
    ).lora_dir
    lora = registry.register_model(admin_user, "generator_lora", "sft", str(sft_lora), parent=tiny.base)
    run = execute(
        start(
            admin_user,
            "oft",
            {
                "model": lora.pk,
                "dataset_version": train_version(admin_user).pk,
                "detector": tiny.detector,
                "recipe": "paper",
                **OFT_TINY,
            },
        )
    )
    command = next(line for line in run.log_tail.splitlines() if " $ " in line)
    for option in (
        "--recipe paper",
        "--sampler churn",
        "--reference sft_adapter",
        "--mask-grid latent",
        "--subject-region enclosing",
        "--preference-loss matrix",
        "--mask-mean all",
    ):
        assert option in command
    assert run.metrics[-1]["optimizer_step"] == 1 and run.output_model.parent == lora
    assert run.output_model.config["reference"] == "sft_adapter"
