"""Runs: start a job on the ``gpu`` queue, execute it on a worker, record what happened.

``start_run(user, kind, params)`` validates the parameters against the kind's schema (defaults
filled in, unknown keys refused), stores a queued :class:`~ml.models.Run` and enqueues
``ml.tasks.execute_run`` on the ``gpu`` queue once the transaction commits. ``execute_run(run_id)``
(called by the task) marks it running with the worker's hostname, dispatches to the kind's handler
and marks it succeeded, or failed with the traceback. A redelivered run that already finished is
left alone; a redelivered *running* run (its worker died) resumes: the generate handler skips the
tuples it recorded as done, and everything it writes is idempotent anyway (images are deduplicated
by content hash, pairs by their images, and seeds are deterministic).

In this increment only ``generate`` runs; the other kinds are refused with "not available yet".
"""

from __future__ import annotations

import io
import socket
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from annotation import roles
from annotation.models import PromptTuple, Task
from annotation.services import audit, catalog
from ml.models import ModelVersion, Run
from ml.services.registry import generator_label

GPU_QUEUE = "gpu"


class RunParamsError(ValueError):
    """Invalid run parameters; ``errors`` maps each parameter to its message."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))


class RunCancelled(Exception):
    pass


# --- parameter schemas -------------------------------------------------------------------


@dataclass(frozen=True)
class _Int:
    default: int | None
    minimum: int
    maximum: int

    def clean(self, value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be an integer")
        if not self.minimum <= value <= self.maximum:
            raise ValueError(f"must be between {self.minimum} and {self.maximum}")
        return value


@dataclass(frozen=True)
class _Float:
    default: float | None
    minimum: float
    maximum: float

    def clean(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("must be a number")
        if not self.minimum <= value <= self.maximum:
            raise ValueError(f"must be between {self.minimum} and {self.maximum}")
        return float(value)


@dataclass(frozen=True)
class _Bool:
    default: bool

    def clean(self, value):
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value


_REQUIRED = object()

GENERATE_SCHEMA = {
    "images_per_prompt": _Int(1, 1, 64),
    "steps": _Int(28, 1, 200),
    "guidance": _Float(3.5, 0.0, 30.0),
    "width": _Int(512, 4, 2048),
    "height": _Int(512, 4, 2048),
    "seed": _Int(0, 0, 2**62),
    "batch_size": _Int(4, 1, 64),
    "include_implicit": _Bool(False),
}
MAX_TUPLES = 10_000


def _clean_fields(params: dict, schema: dict, errors: dict) -> dict:
    cleaned = {}
    for name, spec in schema.items():
        value = params.get(name, spec.default)
        try:
            cleaned[name] = spec.clean(value)
        except ValueError as exc:
            errors[name] = str(exc)
    return cleaned


def _validate_generate(params: dict) -> tuple[dict, ModelVersion | None]:
    errors: dict[str, str] = {}
    unknown = sorted(set(params) - set(GENERATE_SCHEMA) - {"model", "tuples"})
    if unknown:
        errors["params"] = f"unknown parameters: {', '.join(unknown)}"
    cleaned = _clean_fields(params, GENERATE_SCHEMA, errors)

    model = params.get("model", _REQUIRED)
    input_model = None
    if model is _REQUIRED:
        errors["model"] = "required: a generator model id from the registry, or a pipeline path"
    elif isinstance(model, int) and not isinstance(model, bool):
        input_model = ModelVersion.objects.filter(pk=model).first()
        if input_model is None:
            errors["model"] = f"no registered model {model}"
        elif input_model.kind not in (ModelVersion.Kind.GENERATOR_BASE, ModelVersion.Kind.GENERATOR_LORA):
            errors["model"] = f"model {model} is a {input_model.kind}, not a generator"
        cleaned["model"] = model
    elif isinstance(model, str) and model.strip():
        cleaned["model"] = model.strip()  # a pipeline directory on the GPU workers (admins only)
    else:
        errors["model"] = "must be a registered model id or a pipeline path"

    tuples = params.get("tuples", _REQUIRED)
    if tuples is _REQUIRED:
        errors["tuples"] = "required: a list of tuple ids, or {task: CODE, limit: N}"
    elif isinstance(tuples, list):
        if not tuples or not all(isinstance(t, int) and not isinstance(t, bool) for t in tuples):
            errors["tuples"] = "must be a non-empty list of tuple ids"
        elif len(tuples) > MAX_TUPLES:
            errors["tuples"] = f"at most {MAX_TUPLES} tuples per run"
        else:
            ids = list(dict.fromkeys(tuples))
            found = {t.pk: t for t in PromptTuple.objects.filter(pk__in=ids)}
            missing = [i for i in ids if i not in found]
            unusable = [i for i in ids if i in found and not (found[i].explicit_prompt and found[i].superficial_prompt)]
            if missing:
                errors["tuples"] = f"no tuples {missing}"
            elif unusable:
                errors["tuples"] = f"tuples {unusable} lack an explicit or superficial prompt"
            cleaned["tuples"] = ids
    elif isinstance(tuples, dict):
        extra = sorted(set(tuples) - {"task", "limit"})
        code, limit = tuples.get("task"), tuples.get("limit", 100)
        if extra:
            errors["tuples"] = f"unknown keys {extra}"
        elif not isinstance(code, str) or not Task.objects.filter(code=code).exists():
            errors["tuples"] = f"no task {code!r}"
        elif isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_TUPLES:
            errors["tuples"] = f"limit must be between 1 and {MAX_TUPLES}"
        cleaned["tuples"] = {"task": code, "limit": limit}
    else:
        errors["tuples"] = "must be a list of tuple ids or {task: CODE, limit: N}"

    if errors:
        raise RunParamsError(errors)
    return cleaned, input_model


_VALIDATORS: dict[str, Callable[[dict], tuple[dict, ModelVersion | None]]] = {
    Run.Kind.GENERATE: _validate_generate,
}


def validate_params(kind: str, params) -> tuple[dict, ModelVersion | None]:
    """Clean ``params`` for ``kind``: returns the params with defaults and the input model (if any)."""
    if kind not in Run.Kind.values:
        raise RunParamsError({"kind": f"must be one of {', '.join(Run.Kind.values)}, not {kind!r}"})
    if kind not in _VALIDATORS:
        raise RunParamsError({"kind": f"{kind} runs are not available yet"})
    if not isinstance(params, dict):
        raise RunParamsError({"params": "must be an object"})
    return _VALIDATORS[kind](params)


# --- starting and cancelling ---------------------------------------------------------------


def start_run(user, kind: str, params: dict) -> Run:
    """Create a queued run and enqueue it on the ``gpu`` queue when the transaction commits (admins)."""
    from ml.tasks import execute_run as execute_task

    if not roles.is_admin(user):
        raise PermissionDenied("Only admins may start runs.")
    cleaned, input_model = validate_params(kind, params)
    task_id = str(uuid.uuid4())
    with transaction.atomic():
        run = Run.objects.create(kind=kind, params=cleaned, input_model=input_model, created_by=user,
                                 celery_task_id=task_id)
        audit.record(user, "run.started", run, after={"kind": kind, "params": cleaned})
        transaction.on_commit(lambda: execute_task.apply_async(args=[run.pk], task_id=task_id, queue=GPU_QUEUE))
    return run


def cancel_run(user, run: Run) -> Run:
    """Cancel a queued or running run; a running one is also revoked with terminate."""
    if not roles.is_admin(user):
        raise PermissionDenied("Only admins may cancel runs.")
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run.pk)
        if run.is_finished:
            raise ValueError(f"This run already {run.status}.")
        was = run.status
        run.status = Run.Status.CANCELLED
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "finished_at"])
        audit.record(user, "run.cancelled", run, before={"status": was}, after={"status": run.status})
    if was == Run.Status.RUNNING and run.celery_task_id:
        from config.celery import app

        transaction.on_commit(lambda: app.control.revoke(run.celery_task_id, terminate=True))
    return run


# --- execution -----------------------------------------------------------------------------


class RunContext:
    """What a handler gets: log lines, progress, metrics and artifacts, each written straight to the row."""

    def __init__(self, run: Run):
        self.run = run
        self._log = deque((run.log_tail or "").splitlines(), maxlen=Run.LOG_LINES)

    def _update(self, **fields) -> None:
        Run.objects.filter(pk=self.run.pk).update(**fields)
        for name, value in fields.items():
            setattr(self.run, name, value)

    def log(self, line: str) -> None:
        stamp = timezone.now().strftime("%H:%M:%S")
        for part in str(line).splitlines() or [""]:
            self._log.append(f"{stamp} {part}")
        self._update(log_tail="\n".join(self._log))

    def progress(self, fraction: float) -> None:
        self._update(progress=max(0.0, min(1.0, float(fraction))))

    def metric(self, record: dict) -> None:
        self._update(metrics=[*self.run.metrics, record])

    def save_artifacts(self) -> None:
        self._update(artifacts=self.run.artifacts)

    def check_cancelled(self) -> None:
        if Run.objects.filter(pk=self.run.pk, status=Run.Status.CANCELLED).exists():
            raise RunCancelled()


def execute_run(run_id: int, *, worker: str | None = None, task_id: str | None = None) -> Run:
    """Run a run to the end on this worker (called by ``ml.tasks.execute_run``)."""
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run_id)
        if run.is_finished:
            return run  # redelivered after it finished (or cancelled while queued)
        resumed = run.status == Run.Status.RUNNING
        run.status = Run.Status.RUNNING
        run.worker = (worker or socket.gethostname())[:255]
        run.celery_task_id = task_id or run.celery_task_id
        run.started_at = run.started_at or timezone.now()
        run.save(update_fields=["status", "worker", "celery_task_id", "started_at"])
    ctx = RunContext(run)
    ctx.log(f"{'resumed' if resumed else 'started'} {run.kind} run {run.pk} on {run.worker}")
    try:
        handler = _HANDLERS.get(run.kind)
        if handler is None:
            raise ValueError(f"{run.kind} runs are not available yet")
        handler(run, ctx)
    except RunCancelled:
        ctx.log("cancelled")
    except Exception as exc:  # stored for the UI; the task itself succeeds so Celery does not retry blindly
        ctx.log(f"failed: {type(exc).__name__}: {exc}")
        Run.objects.filter(pk=run.pk, status=Run.Status.RUNNING).update(
            status=Run.Status.FAILED, finished_at=timezone.now(),
            error=f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}"[:50_000])
    else:
        ctx.log("succeeded")
        Run.objects.filter(pk=run.pk, status=Run.Status.RUNNING).update(
            status=Run.Status.SUCCEEDED, finished_at=timezone.now(), progress=1.0)
    run.refresh_from_db()
    if run.status != Run.Status.CANCELLED:  # cancel_run recorded the cancellation with its actor
        audit.record(None, f"run.{run.status}", run, after={"status": run.status, "worker": run.worker})
    return run


# --- generate ------------------------------------------------------------------------------

_PIPELINE_CACHE: dict[tuple[str, str | None], object] = {}


def _load_generator(run: Run):
    """(pipeline, model name) for the run's model; the last pipeline stays loaded for the next run."""
    from ml.core.generate import load_pipeline

    model = run.input_model
    if model is None:
        location, lora, name = run.params["model"], None, Path(run.params["model"]).name
    elif model.kind == ModelVersion.Kind.GENERATOR_LORA:
        base = model.parent
        while base is not None and base.kind != ModelVersion.Kind.GENERATOR_BASE:
            base = base.parent
        if base is None:
            raise ValueError(f"LoRA {model.name} has no generator base model among its parents")
        location, lora, name = base.location, model.location, model.name
    else:
        location, lora, name = model.location, None, model.name
    key = (location, lora)
    if key not in _PIPELINE_CACHE:
        _PIPELINE_CACHE.clear()
        _PIPELINE_CACHE[key] = load_pipeline(location, lora=lora)
    return _PIPELINE_CACHE[key], name


def _resolve_tuples(selection) -> list[int]:
    if isinstance(selection, list):
        return list(selection)
    qs = (PromptTuple.objects.filter(task__code=selection["task"]).exclude(explicit_prompt="")
          .exclude(superficial_prompt="").order_by("id"))
    return list(qs.values_list("id", flat=True)[: selection["limit"]])


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def _run_generate(run: Run, ctx: RunContext) -> None:
    from ml.core.generate import generate

    p = run.params
    art = run.artifacts
    if "tuples" not in art:  # resolved once, so a redelivered run works on the same tuples
        art["tuples"] = _resolve_tuples(p["tuples"])
        art.update(done_tuples=[], images=[], pairs=[], images_created=0, pairs_created=0)
        ctx.save_artifacts()
    if not art["tuples"]:
        raise ValueError("no tuples with both explicit and superficial prompts were selected")
    pipe, model_name = _load_generator(run)
    label = generator_label(run, model_name)
    art["generation"] = {"model": model_name, "generator": label, "steps": p["steps"], "guidance": p["guidance"],
                         "width": p["width"], "height": p["height"], "seed_base": p["seed"]}
    n = p["images_per_prompt"]
    seeds = [p["seed"] + i for i in range(n)]
    tuples = PromptTuple.objects.in_bulk(art["tuples"])
    total = len(art["tuples"])
    ctx.log(f"{total} tuples x {n} images per prompt with {model_name}, seeds {seeds[0]}..{seeds[-1]}")
    for position, tuple_id in enumerate(art["tuples"]):
        ctx.check_cancelled()
        if tuple_id in art["done_tuples"]:
            continue
        t = tuples.get(tuple_id)
        if t is None:
            ctx.log(f"tuple {tuple_id} no longer exists; skipped")
            art["done_tuples"].append(tuple_id)
            continue
        started = time.monotonic()
        prompts = [("explicit", t.explicit_prompt), ("superficial", t.superficial_prompt)]
        if p["include_implicit"]:
            prompts.append(("implicit", t.implicit_prompt))
        generated = {
            kind: generate(pipe, [prompt] * n, seeds=seeds, steps=p["steps"], guidance=p["guidance"],
                           width=p["width"], height=p["height"], batch_size=p["batch_size"], prompt_kind=kind,
                           model_name=model_name)
            for kind, prompt in prompts
        }
        with transaction.atomic():
            stored: dict[str, list] = {}
            for kind, images in generated.items():
                stored[kind] = []
                for index, g in enumerate(images):
                    image, created = catalog.store_image(_png(g.image), kind=kind, tuple=t, generator=label,
                                                         seed=g.seed, actor=run.created_by)
                    stored[kind].append(image)
                    art["images"].append({"image": image.pk, "tuple": t.pk, "kind": kind, "seed": g.seed,
                                          "index": index, "new": created})
                    art["images_created"] += int(created)
            for index, (correct, wrong) in enumerate(zip(stored["explicit"], stored["superficial"], strict=True)):
                if correct.pk == wrong.pk:
                    ctx.log(f"tuple {t.pk} image {index}: explicit and superficial images are identical; no pair")
                    continue
                pair, created = catalog.create_pair(t, correct, wrong, actor=run.created_by)
                art["pairs"].append({"pair": pair.pk, "tuple": t.pk, "index": index, "new": created})
                art["pairs_created"] += int(created)
            art["done_tuples"].append(tuple_id)
            ctx.save_artifacts()
        seconds = round(time.monotonic() - started, 3)
        ctx.metric({"tuple": t.pk, "images": sum(len(v) for v in generated.values()), "seconds": seconds})
        ctx.progress((position + 1) / total)
        ctx.log(f"tuple {t.pk} ({position + 1}/{total}): {sum(len(v) for v in stored.values())} images, "
                f"{seconds}s")
    ctx.log(f"{art['images_created']} new images, {art['pairs_created']} new pairs")


_HANDLERS: dict[str, Callable[[Run, RunContext], None]] = {
    Run.Kind.GENERATE: _run_generate,
}
