"""The baseline of the queue benchmark: the simplest correct queue, mounted only by the bench server.

``next``: in one transaction, lock the annotator's *whole* candidate set with one
``SELECT ... FOR UPDATE`` (no window, no ``SKIP LOCKED``; every ``next`` locks in the same order, so
there are no deadlocks), then count the live leases of those pairs in a new statement (which, under
READ COMMITTED and with every candidate locked, sees everything committed before) and lease the first
pair with room. ``judgement``: lock the pair, then the lease, check, write. Same rules as the product
for what the benchmark exercises (k, never twice to one annotator, expertise, one live lease per
annotator, skipped pairs last); gold pairs are not served (the benchmark seeds none). Same side
effects on a judgement (audit event, then ``curation.services.judging``'s consequences: consensus,
gold), same response payloads.

It exists so that ``bench/queue_load.py`` can report every figure as a ratio measured in the same
run; nothing in the product imports it.
"""

from __future__ import annotations

import random

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q
from django.utils import timezone
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.api_queue import JudgementInputSerializer, JudgementReceiptSerializer, LeaseSerializer
from annotation.models import Expertise, Judgement, Lease, Pair, Task
from annotation.permissions import IsAnnotator
from annotation.services import audit
from curation.services import judging


class Refused(Exception):
    def __init__(self, status_code: int, code: str, message: str):
        super().__init__(message)
        self.status_code, self.code, self.message = status_code, code, message


def _live_lease(user):
    return (
        Lease.objects.select_related("pair__tuple__task__discipline")
        .filter(annotator=user, state=Lease.State.ACTIVE)
        .first()
    )


def next_lease(user) -> Lease | None:
    now = timezone.now()
    with transaction.atomic():
        if Expertise.objects.filter(user=user, paused=True).exists():
            raise Refused(403, "paused", "Your account is paused.")
        Lease.objects.filter(annotator=user, state=Lease.State.ACTIVE, expires_at__lte=now).update(
            state=Lease.State.EXPIRED, ended_at=now
        )
        lease = _live_lease(user)
        if lease is not None:
            return lease
        tasks = Task.objects.filter(Q(experts__user=user) | Q(discipline__experts__user=user)).values("id")
        candidates = Pair.objects.filter(
            is_gold=False,
            status=Pair.Status.OPEN,
            judgement_count__lt=F("k"),
            tuple__task_id__in=tasks,
        ).exclude(id__in=Judgement.objects.filter(annotator=user).values("pair_id"))
        # One statement locks every candidate (fresh judgement_count and k come back for each).
        locked = list(
            candidates.select_for_update(of=("self",))
            .order_by("-priority", "id")
            .values_list("id", "judgement_count", "k", "image_correct_id", "image_wrong_id")
        )
        if not locked:
            return None
        live = dict(
            Lease.objects.filter(pair_id__in=candidates.values("id"), state=Lease.State.ACTIVE, expires_at__gt=now)
            .order_by()
            .values("pair_id")
            .annotate(n=Count("id"))
            .values_list("pair_id", "n")
        )
        skipped = set(
            Lease.objects.filter(annotator=user, state=Lease.State.RELEASED).values_list("pair_id", flat=True)
        )
        with_room = [row for row in locked if row[1] + live.get(row[0], 0) < row[2]]
        if not with_room:
            return None
        with_room.sort(key=lambda row: row[0] in skipped)  # stable: skipped pairs last, order kept
        pair_id, _, _, correct, wrong = with_room[0]
        order = (correct, wrong) if random.random() < 0.5 else (wrong, correct)
        try:
            with transaction.atomic():
                lease = Lease.objects.create(
                    pair_id=pair_id,
                    annotator=user,
                    left_image_id=order[0],
                    right_image_id=order[1],
                    expires_at=now + settings.LEASE_TTL,
                )
        except IntegrityError:  # a parallel request of the same annotator won
            return _live_lease(user)
        return Lease.objects.select_related("pair__tuple__task__discipline").get(pk=lease.pk)


def submit_judgement(user, lease_id: int, data: dict) -> tuple[Judgement, bool]:
    with transaction.atomic():
        own = Lease.objects.filter(pk=lease_id, annotator=user).values_list("pair_id", flat=True).first()
        if own is None:
            raise Refused(404, "lease_not_found", "No such lease for this user.")
        pair = Pair.objects.select_for_update().get(pk=own)
        lease = Lease.objects.select_for_update().get(pk=lease_id)
        now = timezone.now()
        if lease.state == Lease.State.JUDGED:
            existing = Judgement.objects.get(lease=lease)
            if existing.choice == data["choice"]:
                return existing, False
            raise Refused(409, "lease_not_active", "Already judged with another choice.")
        if lease.state != Lease.State.ACTIVE or lease.expires_at <= now:
            raise Refused(409, "lease_not_active", "This lease is no longer active.")
        if pair.is_gold or pair.status != Pair.Status.OPEN or pair.judgement_count >= pair.k:
            raise Refused(409, "pair_unavailable", "This pair no longer takes judgements.")
        chosen = {"left": lease.left_image_id, "right": lease.right_image_id}.get(data["choice"])
        judgement = Judgement.objects.create(pair=pair, annotator=user, lease=lease, chosen_image_id=chosen, **data)
        pair.judgement_count += 1
        if pair.judgement_count >= pair.k:
            pair.status = Pair.Status.COMPLETE
        pair.save(update_fields=["judgement_count", "status"])
        lease.state, lease.ended_at = Lease.State.JUDGED, now
        lease.save(update_fields=["state", "ended_at"])
        audit.record(
            user,
            "judgement.created",
            judgement,
            after={"pair": pair.id, "annotator": user.id, "choice": judgement.choice, "chosen_image": chosen},
        )
        judging.after_judgements_changed(pair, user)
        return judgement, True


def _refusal(exc: Refused) -> Response:
    return Response({"detail": exc.message, "code": exc.code}, status=exc.status_code)


class NextView(APIView):
    permission_classes = [IsAnnotator]

    def post(self, request):
        try:
            lease = next_lease(request.user)
        except Refused as exc:
            return _refusal(exc)
        if lease is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(LeaseSerializer(lease, context={"request": request}).data)


class JudgementView(APIView):
    permission_classes = [IsAnnotator]

    def post(self, request, lease_id: int):
        data = JudgementInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            judgement, created = submit_judgement(request.user, lease_id, dict(data.validated_data))
        except Refused as exc:
            return _refusal(exc)
        return Response(
            JudgementReceiptSerializer(judgement).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )
