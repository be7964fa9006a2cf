"""``generate`` runs: N images per explicit and superficial prompt of the selected tuples.

Images are stored through Django storage, pairs created and entered into the queue. A
redelivered run skips the tuples it recorded as done, and everything it writes is idempotent
anyway (images are deduplicated by content hash, pairs by their images, seeds are deterministic).
"""

from __future__ import annotations

import io
import time
from pathlib import Path

from django.db import transaction

from annotation.models import PromptTuple, Task
from annotation.services import catalog
from ml.models import ModelVersion, Run
from ml.services.registry import generator_label
from ml.services.runs.context import RunContext
from ml.services.runs.params import REQUIRED, Bool, Float, Int, Ref, RunParamsError, clean_fields, refuse_unknown

SCHEMA = {
    "images_per_prompt": Int(1, 1, 64),
    "steps": Int(28, 1, 200),
    "guidance": Float(3.5, 0.0, 30.0),
    "width": Int(512, 4, 2048),
    "height": Int(512, 4, 2048),
    "seed": Int(0, 0, 2**62),
    "batch_size": Int(4, 1, 64),
    "include_implicit": Bool(False),
}
MAX_TUPLES = 10_000
REFS = {
    "model": Ref(
        "model",
        model_kinds=("generator_base", "generator_lora"),
        help="the generator (admins may also give a pipeline directory on the workers)",
    ),
    "tuples": Ref("tuples", help="tuple ids, or {task: CODE, limit: N}"),
}


def validate(params: dict) -> tuple[dict, ModelVersion | None]:
    errors: dict[str, str] = {}
    refuse_unknown(params, [*SCHEMA, *REFS], errors)
    cleaned = clean_fields(params, SCHEMA, errors)

    model = params.get("model", REQUIRED)
    input_model = None
    if model is REQUIRED:
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

    tuples = params.get("tuples", REQUIRED)
    if tuples is REQUIRED:
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
    qs = (
        PromptTuple.objects.filter(task__code=selection["task"])
        .exclude(explicit_prompt="")
        .exclude(superficial_prompt="")
        .order_by("id")
    )
    return list(qs.values_list("id", flat=True)[: selection["limit"]])


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def handle(run: Run, ctx: RunContext) -> None:
    from ml.core.generate import generate

    p = run.params
    art = run.artifacts
    if "tuples" not in art:  # resolved once, so a redelivered run works on the same tuples
        art["tuples"] = _resolve_tuples(p["tuples"])
        art.update(done_tuples=[], images=[], pairs=[], images_created=0, pairs_created=0)
        ctx.save_artifacts()
    if not art["tuples"]:
        raise ValueError("no tuples with both explicit and superficial prompts were selected")
    ctx.progress(phase="loading the model")
    pipe, model_name = _load_generator(run)
    ctx.progress(phase="generating images")
    label = generator_label(run, model_name)
    art["generation"] = {
        "model": model_name,
        "generator": label,
        "steps": p["steps"],
        "guidance": p["guidance"],
        "width": p["width"],
        "height": p["height"],
        "seed_base": p["seed"],
    }
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
            kind: generate(
                pipe,
                [prompt] * n,
                seeds=seeds,
                steps=p["steps"],
                guidance=p["guidance"],
                width=p["width"],
                height=p["height"],
                batch_size=p["batch_size"],
                prompt_kind=kind,
                model_name=model_name,
            )
            for kind, prompt in prompts
        }
        with transaction.atomic():
            stored: dict[str, list] = {}
            for kind, images in generated.items():
                stored[kind] = []
                for index, g in enumerate(images):
                    image, created = catalog.store_image(
                        _png(g.image), kind=kind, tuple=t, generator=label, seed=g.seed, actor=run.created_by
                    )
                    stored[kind].append(image)
                    art["images"].append(
                        {"image": image.pk, "tuple": t.pk, "kind": kind, "seed": g.seed, "index": index, "new": created}
                    )
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
        ctx.log(f"tuple {t.pk} ({position + 1}/{total}): {sum(len(v) for v in stored.values())} images, {seconds}s")
    ctx.log(f"{art['images_created']} new images, {art['pairs_created']} new pairs")
