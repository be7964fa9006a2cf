"""Learning-rate schedules of the SciScore trainer, as multipliers of the peak rate.

``step`` is the number of optimiser steps already taken: ``factor(step)`` is the multiplier of the step
that follows them (step 0 is the first). ``warmup`` and ``horizon`` count optimiser steps; ``horizon`` is
where the rate reaches 0.

* ``linear`` (platform; transformers' ``get_linear_schedule_with_warmup``)::

      step < warmup:  step / warmup
      otherwise:      max(0, (horizon - step) / (horizon - warmup))

* ``deepspeed_log`` (paper): DeepSpeed's ``WarmupDecayLR`` with its default logarithmic warmup, from
  ``warmup_min_lr`` = 0 to the peak, as the DeepSpeed engine steps it: once *after* each optimiser step,
  from ``last_batch_iteration`` = -1, so the step that follows ``step`` completed ones runs at the rate of
  iteration ``i = step - 1``, and the first step at ``warmup_min_lr``::

      step == 0:      0
      i < warmup:     ln(i + 1) / ln(warmup)
      otherwise:      max(0, (horizon - i) / (horizon - warmup))

  (``warmup`` below 2 counts as 2, as in DeepSpeed). The research code's horizon: its
  ``DummyScheduler`` asks for 600 × the number of processes, which accelerate divides by the number of
  processes again (``Accelerator._prepare_deepspeed``), so the rate reaches 0 at step 600, not 2,400.
  With DeepSpeed 0.14.5, which the research code pins, the very first step ran at the *peak* rate (the
  optimiser's own lr, before the scheduler had stepped; DeepSpeed issue 6569, fixed later by its pull
  request 6597): a defect, not reproduced.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

SCHEDULES = ("linear", "deepspeed_log")


def linear(step: int, warmup: int, horizon: int) -> float:
    if step < warmup:
        return step / max(1, warmup)
    return max(0.0, (horizon - step) / max(1, horizon - warmup))


def deepspeed_log(step: int, warmup: int, horizon: int) -> float:
    if step <= 0:
        return 0.0
    i, warmup = step - 1, max(2, warmup)
    if i < warmup:
        return math.log(i + 1) / math.log(warmup)
    return max(0.0, (horizon - i) / max(1, horizon - warmup))


def factor(kind: str, warmup: int, horizon: int) -> Callable[[int], float]:
    """The multiplier as a function of completed steps (for ``torch.optim.lr_scheduler.LambdaLR``)."""
    functions = {"linear": linear, "deepspeed_log": deepspeed_log}
    if kind not in functions:
        raise ValueError(f"unknown lr schedule {kind!r}: use {' or '.join(SCHEDULES)}")
    return partial(functions[kind], warmup=warmup, horizon=horizon)


def scheduler(optimizer, kind: str, warmup: int, horizon: int):
    """A ``LambdaLR`` stepped once per optimiser step (its state is the step count, so it checkpoints)."""
    from torch.optim.lr_scheduler import LambdaLR

    return LambdaLR(optimizer, factor(kind, warmup, horizon))
