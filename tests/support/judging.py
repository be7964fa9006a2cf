"""Judgements through the real queue: new annotators (``chemist``, ``expert``), one judgement by label
(``judge``: what the annotator means relative to the expected image, mapped to left/right with the lease's
random display order), pairs judged once per label, and turns of several annotators (``judge_all`` with a
``plan``)."""

from __future__ import annotations

import itertools

from annotation.models import Judgement, Pair
from annotation.services import queue
from curation.models import Label
from curation.services import judging
from tests.support.factories import make_pair, make_user

_names = itertools.count(1)


def chemist():
    return make_user(f"chem-{next(_names)}", "annotator", disciplines=["chemistry"])


def judge(user, pair: Pair, label: str, **extra) -> Judgement:
    """``user`` judges ``pair`` (the only pair open to them) with a label: expected, other, both, neither."""
    lease = queue.next_lease(user)
    assert lease.pair_id == pair.id, "another pair is open to this annotator"
    choice = label
    if label in ("expected", "other"):
        expected_on_left = lease.left_image_id == pair.image_correct_id
        choice = "left" if (label == "expected") == expected_on_left else "right"
    return judging.judge(user, lease.id, queue.JudgementInput(choice, **extra))[0]


def judged_pair(*labels: str, task: str = "RU", k: int = 3) -> Pair:
    """A new pair judged once per label, each by a new chemist."""
    pair = make_pair(task, k=k)
    for label in labels:
        judge(chemist(), pair, label)
    return pair


_experts = itertools.count(1)


def expert():
    return make_user(f"expert-{next(_experts)}", "annotator", disciplines=["physics", "chemistry", "biology"])


def judged(*labels, task="RU", tuple=None, k=3):
    """A new pair (of ``tuple`` or a new tuple of ``task``) judged once per label by new experts."""
    pair = make_pair(task, k=k, tuple=tuple)
    for label in labels:
        judge(expert(), pair, label)
    return pair


# Labels handed out in turn, so every report has several labels and some disagreement.
PLAN = ["expected", "expected", "other", "expected", "both", "expected", "neither", "other", "expected"]


def choice_for(lease, label: str) -> str:
    """The key an annotator presses on this lease to give ``label`` (left/right follow the lease's order)."""
    if label in (Label.BOTH, Label.NEITHER):
        return label
    expected_on_left = lease.left_image_id == lease.pair.image_correct_id
    return "left" if (label == Label.EXPECTED) == expected_on_left else "right"


def judge_all(users, label_for) -> None:
    """The annotators take turns, one judgement each, until the queue has nothing left for any of
    them (so pairs end up with different subsets of annotators); ``label_for(pair, user)`` decides."""
    busy = list(users)
    while busy:
        for user in list(busy):
            lease = queue.next_lease(user)
            if lease is None:
                busy.remove(user)
                continue
            choice = choice_for(lease, label_for(lease.pair, user))
            judging.judge(user, lease.id, queue.JudgementInput(choice=choice))


def plan(pairs, users):
    """``label_for``: the PLAN entry at the pair's plus the user's position in these lists, so the
    labels never depend on row ids or on the order in which the queue hands out pairs."""
    pair_rank = {pair.id: index for index, pair in enumerate(pairs)}
    user_rank = {user.id: index for index, user in enumerate(users)}
    return lambda pair, user: PLAN[(pair_rank[pair.id] + user_rank[user.id]) % len(PLAN)]
