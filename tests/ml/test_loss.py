"""The SciScore loss: the paper's three terms, checked against hand arithmetic, and its gradients."""

import math

import pytest
import torch

from ml.core.loss import sciscore_loss


def unit(degrees: float) -> list[float]:
    return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees))]


def ce_first(a: float, b: float) -> float:
    """-log softmax([a, b])[0]."""
    return math.log(1 + math.exp(b - a))


def test_it_equals_the_hand_computed_value():
    # Two tuples of unit vectors in the plane, given by angle, so every cosine is cos(angle difference).
    angles = {  # t, e, s, x+, x-
        0: (10.0, 0.0, 90.0, 20.0, 70.0),
        1: (200.0, 180.0, 300.0, 150.0, 330.0),
    }
    scale = 3.0
    tensors = [torch.tensor([unit(angles[i][k]) for i in (0, 1)]) for k in range(5)]

    parts = sciscore_loss(*tensors, scale)

    def s(a: float, b: float) -> float:
        return scale * math.cos(math.radians(a - b))

    text = image_pos = image_neg = 0.0
    for t, e, sp, xp, xn in angles.values():
        text += ce_first(s(t, xp), s(t, xn)) / 2  # the implicit prompt prefers x+
        image_pos += ce_first(s(e, xp), s(sp, xp)) / 2  # x+ belongs to the explicit prompt
        image_neg += ce_first(s(sp, xn), s(e, xn)) / 2  # x- belongs to the superficial prompt
    assert parts.text.item() == pytest.approx(text, rel=1e-6)
    assert parts.image_pos.item() == pytest.approx(image_pos, rel=1e-6)
    assert parts.image_neg.item() == pytest.approx(image_neg, rel=1e-6)
    assert parts.total.item() == pytest.approx(text + 0.25 * (image_pos + image_neg), rel=1e-6)


def test_it_has_no_in_batch_negatives():
    """A tuple's loss does not depend on the other tuples in the batch."""
    torch.manual_seed(0)
    feats = [torch.nn.functional.normalize(torch.randn(4, 8), dim=-1) for _ in range(5)]
    together = sciscore_loss(*feats, 10.0).total
    alone = sum(sciscore_loss(*(f[i : i + 1] for f in feats), 10.0).total for i in range(4)) / 4
    assert together.item() == pytest.approx(alone.item(), rel=1e-6)


def test_it_computes_in_fp32_from_bf16_features():
    feats = [torch.nn.functional.normalize(torch.randn(3, 8), dim=-1).bfloat16() for _ in range(5)]
    assert sciscore_loss(*feats, torch.tensor(50.0)).total.dtype == torch.float32


def test_it_sends_gradients_to_both_towers_and_the_scale(tmp_path):
    from ml.core.scorer import Scorer
    from ml.core.synthetic import make_synthetic_split
    from ml.core.tiny import make_tiny_scorer

    scorer = Scorer.load(make_tiny_scorer(tmp_path / "tiny"), device="cpu")
    records = make_synthetic_split(0, 3, "train", size=32)
    texts = (
        [r.implicit_prompt for r in records]
        + [r.explicit_prompt for r in records]
        + [r.superficial_prompt for r in records]
    )
    images = [r.images()[0] for r in records] + [r.images()[1] for r in records]

    text, image = scorer.features(scorer.tokenize(texts), scorer.pixels(images))
    t, e, s = text.chunk(3)
    correct, wrong = image.chunk(2)
    sciscore_loss(t, e, s, correct, wrong, scorer.logit_scale()).total.backward()

    model = scorer.model
    for name, param in [
        ("visual.conv1.weight", model.visual.conv1.weight),
        ("token_embedding.weight", model.token_embedding.weight),
        ("text_projection", model.text_projection),
        ("logit_scale", model.logit_scale),
    ]:
        assert param.grad is not None and param.grad.abs().sum() > 0, name
