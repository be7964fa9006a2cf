"""Tuples, images and pairs: creation is idempotent, keyed by content."""

from __future__ import annotations

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction

from annotation.imaging import check_image
from annotation.models import Image, Pair, PromptTuple, Task, normalise_prompt
from annotation.services import audit, guides


def storage_key(sha256: str, extension: str) -> str:
    """Content-addressed key: says nothing about which prompt made the image."""
    return f"images/{sha256[:2]}/{sha256}.{extension}"


def store_image(
    data: bytes,
    *,
    kind: str = Image.Kind.UPLOADED,
    tuple: PromptTuple | None = None,
    generator: str = "",
    seed: int | None = None,
    actor=None,
) -> tuple[Image, bool]:
    """Validate, store and register image bytes; the same bytes twice give the same row.

    The bytes stored (and hashed) are :func:`~annotation.imaging.check_image`'s: as given, or trimmed or
    normalised by its rules (listed under ``normalised`` in the audit event). Raises
    :class:`annotation.imaging.ImageRejected` before anything is written. The file is written before the
    row; a crash between the two leaves only a content-addressed file that the next store of the same
    bytes reuses. The key derives from the sha256 alone: an upload's file name never reaches storage.
    """
    checked = check_image(data)
    existing = Image.objects.filter(sha256=checked.sha256).first()
    if existing is not None:
        return existing, False
    key = storage_key(checked.sha256, checked.extension)
    if not default_storage.exists(key):
        saved = default_storage.save(key, ContentFile(checked.data))
        if saved != key:  # a concurrent writer won the race for the same bytes
            default_storage.delete(saved)
    try:
        with transaction.atomic():
            image = Image.objects.create(
                file=key,
                sha256=checked.sha256,
                width=checked.width,
                height=checked.height,
                format=checked.format,
                size_bytes=len(checked.data),
                kind=kind,
                tuple=tuple,
                generator=generator,
                seed=seed,
            )
    except IntegrityError:
        return Image.objects.get(sha256=checked.sha256), False
    after: dict[str, object] = {
        "sha256": image.sha256,
        "kind": image.kind,
        "tuple": image.tuple_id,
        "generator": generator,
        "seed": seed,
    }
    if checked.changes:  # trimmed or normalised: what the stored bytes differ from the given ones by
        after["normalised"] = list(checked.changes)
    audit.record(actor, "image.created", image, after=after)
    return image, True


@transaction.atomic  # the row lock below holds until the tuple is written
def upsert_tuple(
    *,
    implicit_prompt: str,
    task: Task | None,
    explicit_prompt: str = "",
    superficial_prompt: str = "",
    subject: str = "",
    scene: str | None = None,
    source: str = "",
    provenance: dict | None = None,
    implicit_paraphrases: list[str] | None = None,
    explicit_paraphrases: list[str] | None = None,
    superficial_paraphrases: list[str] | None = None,
    scene_scoring: str = "",
    real_scoring: str = "",
    actor=None,
) -> tuple[PromptTuple, str]:
    """Create the tuple, or fill in a matching one (same normalised implicit prompt and task).

    A task-less tuple with the same prompt is taken over when a task is given, so assigning the
    task later (by re-importing with ``--task``) does not make a second tuple. Returns the tuple
    and what happened: ``"created"``, ``"updated"`` or ``"skipped"`` (nothing new). Non-empty
    fields given here overwrite; empty ones (an empty paraphrase list included) and ``scene=None``
    never erase what is stored. Paraphrases are the *other* wordings of each prompt
    (:func:`clean_paraphrases`).
    """
    implicit_prompt = implicit_prompt.strip()
    if not implicit_prompt:
        raise ValueError("The implicit prompt is empty.")
    if scene is not None and scene not in PromptTuple.Scene.values:
        raise ValueError(f"scene must be one of {', '.join(PromptTuple.Scene.values)}, not {scene!r}.")
    key = normalise_prompt(implicit_prompt)
    matches = PromptTuple.objects.select_for_update().filter(implicit_normalised=key)
    existing = matches.filter(task=task).first()
    if existing is None and task is not None:
        existing = matches.filter(task__isnull=True).first()
    fields = {
        "explicit_prompt": explicit_prompt.strip(),
        "superficial_prompt": superficial_prompt.strip(),
        "subject": subject.strip(),
        "source": source,
        "scene": scene,
        "task": task,
        "implicit_paraphrases": clean_paraphrases(implicit_prompt, implicit_paraphrases),
        "explicit_paraphrases": clean_paraphrases(explicit_prompt.strip(), explicit_paraphrases),
        "superficial_paraphrases": clean_paraphrases(superficial_prompt.strip(), superficial_paraphrases),
        "scene_scoring": (scene_scoring or "").strip(),
        "real_scoring": (real_scoring or "").strip(),
    }
    if existing is None:
        fields["scene"] = scene or PromptTuple.Scene.SIMPLE
        created = PromptTuple.objects.create(implicit_prompt=implicit_prompt, provenance=provenance or {}, **fields)
        audit.record(actor, "tuple.created", created, after=tuple_state(created))
        return created, "created"
    changed = {name: value for name, value in fields.items() if value and getattr(existing, name) != value}
    if not changed:
        return existing, "skipped"
    before = tuple_state(existing)
    for name, value in changed.items():
        setattr(existing, name, value)
    existing.save()
    audit.record(actor, "tuple.updated", existing, before=before, after=tuple_state(existing))
    return existing, "updated"


def clean_paraphrases(prompt: str, paraphrases) -> list[str]:
    """The other wordings of ``prompt``: stripped, non-empty, in order, without repeats or the prompt itself.
    ``ValueError`` unless a list of strings."""
    if not paraphrases:
        return []
    if not isinstance(paraphrases, list | tuple) or not all(isinstance(p, str) for p in paraphrases):
        raise ValueError("Paraphrases must be a list of strings.")
    seen, kept = {prompt}, []
    for text in (p.strip() for p in paraphrases):
        if text and text not in seen:
            seen.add(text)
            kept.append(text)
    return kept


def tuple_state(t: PromptTuple) -> dict:
    """A tuple as its audit events record it (also used by the bulk import's events)."""
    return {
        "implicit_prompt": t.implicit_prompt,
        "explicit_prompt": t.explicit_prompt,
        "superficial_prompt": t.superficial_prompt,
        "task": t.task_id,
        "subject": t.subject,
        "scene": t.scene,
        "source": t.source,
        "implicit_paraphrases": t.implicit_paraphrases,
        "explicit_paraphrases": t.explicit_paraphrases,
        "superficial_paraphrases": t.superficial_paraphrases,
        "scene_scoring": t.scene_scoring,
        "real_scoring": t.real_scoring,
    }


def create_pair(
    tuple: PromptTuple, image_correct: Image, image_wrong: Image, *, k: int | None = None, actor=None
) -> tuple[Pair, bool]:
    if image_correct.pk == image_wrong.pk:
        raise ValueError("A pair needs two different images.")
    k = k or settings.DEFAULT_OVERLAP_K
    if k < 1:
        raise ValueError("k must be at least 1.")
    with transaction.atomic():
        pair, created = Pair.objects.get_or_create(
            tuple=tuple, image_correct=image_correct, image_wrong=image_wrong, defaults={"k": k}
        )
        if created:
            audit.record(actor, "pair.created", pair, after=pair_state(pair))
        return pair, created


def pair_state(pair: Pair) -> dict:
    """A pair as its audit events record it (also used by the bulk import's events)."""
    return {
        "tuple": pair.tuple_id,
        "image_correct": pair.image_correct_id,
        "image_wrong": pair.image_wrong_id,
        "k": pair.k,
        "status": pair.status,
    }


def set_pair_k(pair_id: int, k: int, *, actor=None, consequences=None) -> Pair:
    """Change a pair's overlap target, keeping its status consistent with its judgements; then, in the
    same transaction and under the pair's lock, ``consequences(pair, actor)`` (the pair's consensus
    depends on k: :func:`curation.services.judging.set_pair_k` passes it).

    Gold pairs are served outside k (see annotation/services/queue.py): their k may be anything and
    they stay open.
    """
    if k < 1:
        raise ValueError("k must be at least 1.")
    with transaction.atomic():
        pair = Pair.objects.select_for_update().get(pk=pair_id)
        if k < pair.judgement_count and not pair.is_gold:
            raise ValueError(f"This pair already has {pair.judgement_count} judgements; k cannot go below that.")
        before = pair_state(pair)
        pair.k = k
        if pair.status != Pair.Status.RETIRED:
            pair.status = _open_or_complete(pair)
            _refuse_reopening_an_example(pair)
        pair.save(update_fields=["k", "status"])
        audit.record(actor, "pair.k_changed", pair, before=before, after=pair_state(pair))
        if consequences is not None:
            consequences(pair, actor)
        return pair


def _open_or_complete(pair: Pair) -> str:
    if pair.is_gold or pair.judgement_count < pair.k:
        return Pair.Status.OPEN
    return Pair.Status.COMPLETE


def _refuse_reopening_an_example(pair: Pair) -> None:
    """A worked example shows its answer: it must never take judgements again (annotation.services.guides)."""
    if pair.status == Pair.Status.OPEN and guides.is_example(pair.pk):
        raise ValueError("This pair is a worked example in its task's guide; remove it from the guide first.")


def close_pair(pair_id: int, *, actor=None) -> Pair:
    """Take an open pair off the queue (status ``complete``) below k: its decision was made elsewhere (an
    imported dataset's label, see curation.services.consensus.record_imported_decision). Changing its k
    or un-retiring it opens it again by its judgement count, like any pair."""
    with transaction.atomic():
        pair = Pair.objects.select_for_update().get(pk=pair_id)
        if pair.status != Pair.Status.OPEN or pair.is_gold:
            return pair
        before = pair_state(pair)
        pair.status = Pair.Status.COMPLETE
        pair.save(update_fields=["status"])
        audit.record(actor, "pair.closed", pair, before=before, after=pair_state(pair))
        return pair


def set_pair_retired(pair_id: int, retired: bool, *, actor=None) -> Pair:
    with transaction.atomic():
        pair = Pair.objects.select_for_update().get(pk=pair_id)
        before = pair_state(pair)
        if retired:
            pair.status = Pair.Status.RETIRED
        else:
            pair.status = _open_or_complete(pair)
            _refuse_reopening_an_example(pair)
        pair.save(update_fields=["status"])
        audit.record(
            actor, "pair.retired" if retired else "pair.unretired", pair, before=before, after=pair_state(pair)
        )
        return pair


# --- Setters for the apps above (curation's gold items, ml's active learning) ----------------
# Only annotation/services writes annotation tables: curation and ml change pairs and tasks through
# these functions, which do no permission checks and record no audit event of their own (the caller
# checks who may, and records the event that says why: ``gold.marked``, ``task.queue_order_changed``).


def set_pair_gold(pair: Pair, is_gold: bool) -> Pair:
    """Make ``pair`` a gold pair or a normal one again, keeping ``k`` and ``status`` consistent.

    The caller must hold the pair's row lock in the current transaction (``select_for_update``: the
    pair is always the first row locked, see annotation/services/queue.py) and pass that locked row;
    it is updated in place and saved. Marking reopens a complete pair (gold pairs are served outside
    k and are never complete); unmarking raises ``k`` to ``judgement_count`` where it is below (the
    ``pair_not_over_k`` constraint) and sets the status from the count. A retired pair stays retired.
    Used by :mod:`curation.services.gold`, which owns the answer, the audit events and the consensus.
    """
    if is_gold and guides.is_example(pair.pk):
        raise ValueError(
            "This pair is a worked example in its task's guide; its answer is shown, so it cannot be gold."
        )
    pair.is_gold = is_gold
    if not is_gold:
        pair.k = max(pair.k, pair.judgement_count)
        pair.is_qualification = False  # only a gold pair may be in a qualification set
    if pair.status != Pair.Status.RETIRED:
        pair.status = _open_or_complete(pair)
    pair.save(update_fields=["is_gold", "is_qualification", "k", "status"])
    return pair


def set_pair_qualification(pair: Pair, on: bool) -> Pair:
    """Put a gold pair in its task's qualification set, or take it out (``ValueError`` for a pair that is not
    gold). The caller holds the pair's row lock and passes that locked row, as for :func:`set_pair_gold`; it
    is updated in place. Used by :mod:`curation.services.gold`, which owns the audit event and the
    reassessment of the task's annotators (:mod:`annotation.services.qualification`)."""
    if on and not pair.is_gold:
        raise ValueError("Only a gold pair may be in a qualification set.")
    pair.is_qualification = on
    pair.save(update_fields=["is_qualification"])
    return pair


def set_task_queue_order(task_id: int, order: str) -> tuple[Task, str]:
    """Set how the queue orders a task's pairs; returns the task (locked until the transaction ends)
    and its previous order. ``ValueError`` for an unknown order.

    Not audited here and the pairs' priorities are not recomputed: call it through
    :func:`ml.services.active_learning.set_queue_order`, which does both (priorities follow the order).
    """
    if order not in Task.QueueOrder.values:
        raise ValueError(f"queue order must be one of {', '.join(Task.QueueOrder.values)}, not {order!r}.")
    with transaction.atomic():
        task = Task.objects.select_for_update().get(pk=task_id)
        previous = task.queue_order
        if previous != order:
            task.queue_order = order
            task.save(update_fields=["queue_order"])
        return task, previous


def set_pair_priorities(pairs, priority) -> int:
    """Set ``Pair.priority`` of every pair of the queryset ``pairs`` to ``priority`` in one ``UPDATE``,
    writing only the rows whose priority changes; returns how many changed.

    ``priority`` is a number or an expression evaluated per pair (e.g. a subquery on ``OuterRef("pk")``:
    :mod:`ml.services.active_learning` computes priorities from the active scorer's pair scores). One
    set-based statement, never a save per pair: active learning rewrites thousands at a time.
    """
    return pairs.exclude(priority=priority).update(priority=priority)
