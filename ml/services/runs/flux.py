"""What the FLUX kinds (``sft``, ``oft``, ``eval_generator``) share: where a registered generator's
pipeline and adapter are, the tuples of a dataset version's split, and trainer options.

A ``generator_lora`` is a complete adapter for the generator base model among its parents (an OFT
LoRA stacks its SFT LoRA, see :mod:`ml.core.oft`), so loading the base with that one adapter gives
the fine-tuned model whatever the length of the chain.
"""

from __future__ import annotations

from annotation.models import PromptTuple
from curation.models import Label, VersionMember
from ml.models import ModelVersion

GENERATORS = (ModelVersion.Kind.GENERATOR_BASE, ModelVersion.Kind.GENERATOR_LORA)


def generator_base(model: ModelVersion) -> ModelVersion | None:
    """The model itself if it is a base model, else the nearest base model among its parents."""
    found: ModelVersion | None = model
    while found is not None and found.kind != ModelVersion.Kind.GENERATOR_BASE:
        found = found.parent
    return found


def pipeline_paths(model: ModelVersion) -> tuple[str, str | None]:
    """``(pipeline directory, LoRA directory or None)`` of a registered generator."""
    base = generator_base(model)
    if base is None:
        raise ValueError(f"LoRA {model.name} has no generator base model among its parents")
    return base.location, (model.location if model.kind == ModelVersion.Kind.GENERATOR_LORA else None)


def decided_members(version, split: str, tasks: list[str] | None = None):
    """The version's members in ``split`` (optionally of ``tasks``) that have a correct image.

    Those are the pairs labelled expected or other: what a Science-T2I export of the version holds.
    """
    members = VersionMember.objects.filter(version=version, split=split, label__in=(Label.EXPECTED, Label.OTHER))
    return members.filter(pair__tuple__task__code__in=tasks) if tasks else members


def split_tuples(version, split: str, tasks: list[str] | None = None) -> list[PromptTuple]:
    """The distinct tuples of :func:`decided_members`, by id."""
    ids = decided_members(version, split, tasks).values_list("pair__tuple_id", flat=True)
    return list(PromptTuple.objects.filter(pk__in=ids).select_related("task").order_by("id"))


def trainer_options(params: dict, schema: dict) -> list[str]:
    """The ``python -m ml`` options of the config fields in ``schema`` (``--lr 2e-05``, ``--no-use-mask``)."""
    options = []
    for name in schema:
        flag = name.replace("_", "-")
        value = params[name]
        if isinstance(value, bool):
            options.append(f"--{flag}" if value else f"--no-{flag}")
        else:
            options += [f"--{flag}", str(value)]
    return options
