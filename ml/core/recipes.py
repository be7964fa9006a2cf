"""Two recipes for each trainer: ``paper`` (the Science-T2I research code's behaviour) and ``platform`` (ours).

A recipe is only a set of defaults. Every point where the two differ is its own config field; a field left
at ``None`` takes the value of the config's ``recipe``, a value given explicitly always wins, so
``--recipe paper --loss-reduction mean`` is the paper's recipe with one point changed. The tables below
are the single source of those defaults for the library, the CLI and the run services; ``docs/ml.md``
explains each point (what the research code does, why ours differs, what it changes).

Two pairs of fields describe one quantity in two ways and are *linked*: the scorer's ``grad_accum`` and
``effective_batch`` (tuples per optimiser step over all processes), SFT's ``max_steps`` and ``epochs``. A
value of 0 switches one off (it is then derived from the other). Giving one of a pair explicitly switches
the other off unless it is given too, so ``--recipe paper --grad-accum 1`` trains with one micro-batch per
step rather than failing to reach the paper's 1,024 tuples.

Nothing here imports torch or Django: the run services read these tables to fill in a run's parameters.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import NamedTuple

RECIPES = ("platform", "paper")
DEFAULT = "platform"


class Point(NamedTuple):
    """One point of difference: its value under each recipe."""

    platform: object
    paper: object


# ml.core.train_scorer.TrainConfig
SCORER: dict[str, Point] = {
    "lr_schedule": Point("linear", "deepspeed_log"),
    "variants": Point("first", "random"),
    "batch_size": Point(8, 16),
    "effective_batch": Point(0, 1024),
    "grad_accum": Point(1, 0),
    "loss_reduction": Point("mean", "sum"),
    "weight_decay_scope": Point("matrices", "all"),
    "clamp_logit_scale": Point(True, False),
    "eval_every": Point(50, 10),
}

# ml.core.sft.SFTConfig
SFT: dict[str, Point] = {
    "variants": Point("first", "random"),
    "image_resize": Point("cover_crop", "shorter_side"),
    "vae_latents": Point("mode", "sample"),
    "sigma_scheme": Point("uniform", "grid"),
    "max_steps": Point(500, 0),
    "epochs": Point(0, 60),
}

# ml.core.oft.OFTConfig
OFT: dict[str, Point] = {
    "sampler": Point("euler_maruyama", "churn"),
    "mask_mean": Point("inside", "all"),
    "mask_grid": Point("token", "latent"),
    "subject_region": Point("union", "enclosing"),
    "guidance": Point(3.5, 0.0),
    "preference_loss": Point("pair", "matrix"),
    "reference": Point("fused_sft", "sft_adapter"),
    "prompt_sampling": Point("permutation", "replacement"),
    "prompts_per_step": Point(4, 2),
    "max_steps": Point(100, 156),
}

# The allowed values of the fields that take a name (the CLI's and the run forms' choices).
CHOICES: dict[str, tuple[str, ...]] = {
    "recipe": RECIPES,
    "lr_schedule": ("linear", "deepspeed_log"),
    "variants": ("first", "random"),
    "loss_reduction": ("mean", "sum"),
    "weight_decay_scope": ("matrices", "all"),
    "image_resize": ("cover_crop", "shorter_side"),
    "vae_latents": ("mode", "sample"),
    "sigma_scheme": ("uniform", "logit_normal", "grid"),
    "sampler": ("euler_maruyama", "churn"),
    "mask_mean": ("inside", "all"),
    "mask_grid": ("token", "latent"),
    "subject_region": ("union", "enclosing"),
    "preference_loss": ("pair", "matrix"),
    "reference": ("fused_sft", "sft_adapter"),
    "prompt_sampling": ("permutation", "replacement"),
}

# Fields that describe one quantity two ways: giving one explicitly switches the other off (0).
LINKED = {
    "grad_accum": "effective_batch",
    "effective_batch": "grad_accum",
    "max_steps": "epochs",
    "epochs": "max_steps",
}


def check_recipe(recipe: str) -> str:
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}: use {' or '.join(RECIPES)}")
    return recipe


def defaults(table: Mapping[str, Point], recipe: str, given: Mapping[str, object]) -> dict:
    """The value of every field of ``table``: ``given`` (when not None) wins, then a linked field's 0,
    then the recipe's value."""
    check_recipe(recipe)
    values = {}
    for name, point in table.items():
        partner = LINKED.get(name)
        if given.get(name) is not None:
            values[name] = given[name]
        elif partner is not None and partner in table and given.get(partner) is not None:
            values[name] = 0
        else:
            values[name] = getattr(point, recipe)
    return values


def with_defaults(params: Mapping[str, object], table: Mapping[str, Point]) -> dict:
    """Run parameters with ``recipe`` and every field of ``table`` filled in (``None`` or missing = the
    recipe's value); an unknown recipe is left for the caller's validation and fills in the platform's."""
    recipe = params.get("recipe") or DEFAULT
    filled = defaults(table, recipe if recipe in RECIPES else DEFAULT, params)
    return {**params, "recipe": recipe, **filled}


def steps_for_epochs(epochs: int, n_records: int, batch_size: int, grad_accum: int) -> int:
    """Optimiser steps that see every record ``epochs`` times: ``ceil(epochs x n / (batch_size x grad_accum))``."""
    return math.ceil(epochs * n_records / (batch_size * grad_accum))


def resolve(config, table: Mapping[str, Point]):
    """``config`` (a dataclass with a ``recipe`` field) with every ``None`` point filled in from its recipe."""
    given = {name: getattr(config, name) for name in table}
    return dataclasses.replace(config, **defaults(table, config.recipe, given))


def check_choices(config) -> None:
    """Raise ``ValueError`` for a named field whose value is not one of its choices."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.name in CHOICES and value is not None and value not in CHOICES[field.name]:
            raise ValueError(f"{field.name} {value!r}: use one of {', '.join(CHOICES[field.name])}")


# --- the paper's random variants ------------------------------------------------------------------

VARIANT_FIELDS = ("implicit_prompt", "explicit_prompt", "superficial_prompt", "correct_image", "wrong_image")


def variants_of(record, name: str) -> list:
    """Every value a record holds for ``name`` (its ``<name>s`` list; the single field when that is empty)."""
    return list(getattr(record, f"{name}s", None) or []) or [getattr(record, name)]


def draw_variant(record, seed: int, position: int):
    """One example of ``record`` as the research code draws it: a paraphrase of each prompt and an image of
    each side, each picked uniformly and independently. A pure function of (``seed``, ``position`` in the
    example stream), so a resumed run draws what an uninterrupted one would."""
    import torch

    generator = torch.Generator().manual_seed((seed * 1_000_003 + position) * 4 + 1)
    chosen = {}
    for name in VARIANT_FIELDS:
        values = variants_of(record, name)
        chosen[name] = values[int(torch.randint(len(values), (1,), generator=generator))]
    lists = {f"{name}s": [value] for name, value in chosen.items() if hasattr(record, f"{name}s")}
    return dataclasses.replace(record, **chosen, **lists)
