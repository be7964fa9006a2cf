"""The SciScore training loss (Science-T2I, CVPR 2025), per tuple.

For a tuple with implicit prompt t, explicit prompt e, superficial prompt s, correct image x+ and
wrong image x-, with s(a, b) = exp(logit_scale) * cos(a, b):

* text term: 2-way cross-entropy over [s(t, x+), s(t, x-)], target x+ — the implicit prompt must
  prefer the correct image;
* image terms: cross-entropy over [s(e, x+), s(s, x+)] with target e, and over [s(e, x-), s(s, x-)]
  with target s — each image must match the prompt that literally describes it;
* L = text + 0.25 * (image+ + image-), per tuple; ``reduction`` averages it over the batch
  (``"mean"``, the platform's), sums it (``"sum"``, the research code's ``loss.sum()``) or keeps one
  value per tuple (``"none"``).

Each tuple is compared only with itself: no in-batch negatives and no margin, as in the paper.
The function takes already L2-normalised features so it is independent of how they were computed
(one process or many, any autocast) and is easy to check by hand.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

IMAGE_TERM_WEIGHT = 0.25


class LossParts(NamedTuple):
    total: torch.Tensor
    text: torch.Tensor
    image_pos: torch.Tensor
    image_neg: torch.Tensor


def sciscore_loss(
    implicit: torch.Tensor,
    explicit: torch.Tensor,
    superficial: torch.Tensor,
    correct: torch.Tensor,
    wrong: torch.Tensor,
    scale: torch.Tensor | float,
    reduction: str = "mean",
) -> LossParts:
    """The paper's loss for a batch of B tuples.

    ``implicit``, ``explicit``, ``superficial`` are (B, D) normalised text features, ``correct`` and
    ``wrong`` (B, D) normalised image features, ``scale`` is exp(logit_scale). Computed in fp32
    whatever the features' dtype (bf16 logits are too coarse for a 2-way softmax at scale ~100).
    """
    t, e, s, xp, xn = (x.float() for x in (implicit, explicit, superficial, correct, wrong))
    scale = torch.as_tensor(scale, dtype=torch.float32, device=t.device)

    def sim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return scale * (a * b).sum(-1)

    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"unknown reduction {reduction!r}: use mean, sum or none")
    first = torch.zeros(t.shape[0], dtype=torch.long, device=t.device)
    text = F.cross_entropy(torch.stack([sim(t, xp), sim(t, xn)], dim=-1), first, reduction=reduction)
    image_pos = F.cross_entropy(torch.stack([sim(e, xp), sim(s, xp)], dim=-1), first, reduction=reduction)
    image_neg = F.cross_entropy(torch.stack([sim(e, xn), sim(s, xn)], dim=-1), first + 1, reduction=reduction)
    total = text + IMAGE_TERM_WEIGHT * (image_pos + image_neg)
    return LossParts(total, text, image_pos, image_neg)
