"""The model registry: register versions, pick the active scorer, walk lineage both ways.

Lineage: model → parent chain → dataset version (→ its judgements through curation), and
image → generator version → run through :func:`image_origin`.

Activating a scorer recomputes the queue's priorities (:mod:`ml.services.active_learning`, imported
here); active learning therefore never imports this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction

from annotation import roles
from annotation.services import audit
from ml.models import ModelVersion, Run
from ml.services import active_learning, judges

_GENERATOR_RE = re.compile(r"^run:(\d+):(.*)$")


def _require_admin(user) -> None:
    if not roles.is_admin(user):
        raise PermissionDenied("Only admins may change the model registry.")


def _state(model: ModelVersion) -> dict:
    return {
        "kind": model.kind,
        "name": model.name,
        "location": model.location,
        "parent": model.parent_id,
        "dataset_version": model.dataset_version_id,
        "is_active": model.is_active,
    }


def register_model(
    user,
    kind: str,
    name: str,
    location: str,
    *,
    config: dict | None = None,
    metrics: dict | None = None,
    parent: ModelVersion | None = None,
    dataset_version=None,
) -> ModelVersion:
    """Add a version to the registry (admins; a run registers what it produces with its starter)."""
    _require_admin(user)
    if kind not in ModelVersion.Kind.values:
        raise ValueError(f"kind must be one of {', '.join(ModelVersion.Kind.values)}, not {kind!r}.")
    name, location = (name or "").strip(), (location or "").strip()
    if not name:
        raise ValueError("The name is empty.")
    if not location:
        raise ValueError("The location is empty.")
    if kind == ModelVersion.Kind.GENERATOR_LORA and (
        parent is None or parent.kind not in (ModelVersion.Kind.GENERATOR_BASE, ModelVersion.Kind.GENERATOR_LORA)
    ):
        raise ValueError("A LoRA adapter needs a generator model as its parent.")
    if parent is not None and kind == ModelVersion.Kind.SCORER and parent.kind != ModelVersion.Kind.SCORER:
        raise ValueError("A scorer's parent must be a scorer.")
    if kind == ModelVersion.Kind.JUDGE:
        if parent is not None and parent.kind != ModelVersion.Kind.JUDGE:
            raise ValueError("A judge's parent must be a judge.")
        config = judges.clean_config(location, config or {})
    try:
        with transaction.atomic():
            model = ModelVersion.objects.create(
                kind=kind,
                name=name,
                location=location,
                config=config or {},
                metrics=metrics or {},
                parent=parent,
                dataset_version=dataset_version,
                created_by=user,
            )
            audit.record(user, "model.registered", model, after=_state(model))
    except IntegrityError:
        raise ValueError(f"A {kind} named {name!r} is already registered.") from None
    return model


def active_scorer() -> ModelVersion | None:
    return ModelVersion.objects.filter(kind=ModelVersion.Kind.SCORER, is_active=True).first()


def activate_scorer(user, model: ModelVersion) -> ModelVersion:
    """Make ``model`` the one active scorer (the previous one is deactivated in the same transaction)."""
    _require_admin(user)
    if model.kind != ModelVersion.Kind.SCORER:
        raise ValueError("Only a scorer can be the active scorer.")
    with transaction.atomic():
        # Lock every scorer row so two concurrent activations serialise instead of tripping the constraint.
        list(ModelVersion.objects.select_for_update().filter(kind=ModelVersion.Kind.SCORER).values_list("pk"))
        previous = active_scorer()
        if previous is not None and previous.pk == model.pk:
            return previous
        if previous is not None:
            ModelVersion.objects.filter(pk=previous.pk).update(is_active=False)
        ModelVersion.objects.filter(pk=model.pk).update(is_active=True)
        model.refresh_from_db()
        audit.record(
            user,
            "model.scorer_activated",
            model,
            before={"active": previous.pk if previous else None},
            after={"active": model.pk},
        )
    active_learning.recompute_priorities()  # the queue's priorities follow the active scorer
    return model


@dataclass
class Lineage:
    model: ModelVersion
    ancestors: list[ModelVersion] = field(default_factory=list)  # parent first, root last
    dataset_version: object | None = None  # the model's own, else the nearest ancestor's
    produced_by: list[Run] = field(default_factory=list)
    children: list[ModelVersion] = field(default_factory=list)


def lineage(model: ModelVersion) -> Lineage:
    """The parent chain, the dataset version trained on, the runs that produced it and its children."""
    ancestors: list[ModelVersion] = []
    seen = {model.pk}
    current = model.parent
    while current is not None and current.pk not in seen:
        ancestors.append(current)
        seen.add(current.pk)
        current = current.parent
    dataset_version = next((m.dataset_version for m in [model, *ancestors] if m.dataset_version_id), None)
    return Lineage(
        model=model,
        ancestors=ancestors,
        dataset_version=dataset_version,
        produced_by=list(model.produced_by_runs.order_by("created_at", "id")),
        children=list(model.children.order_by("created_at", "id")),
    )


def generator_label(run: Run, model_name: str) -> str:
    """What a run writes into ``Image.generator`` (200 characters at most)."""
    return f"run:{run.pk}:{model_name}"[:200]


def image_origin(image) -> tuple[Run | None, ModelVersion | None]:
    """The run that generated an image and the registered model it used (None where unknown)."""
    match = _GENERATOR_RE.match(image.generator or "")
    if not match:
        return None, None
    run = Run.objects.select_related("input_model").filter(pk=int(match.group(1))).first()
    return run, (run.input_model if run else None)
