"""The SciScore trainer's two recipes: each point of the paper's recipe against a hand computation."""

import math
from itertools import product

import pytest
import torch
from PIL import Image

from ml.core import recipes
from ml.core.loss import sciscore_loss
from ml.core.scorer import Scorer
from ml.core.synthetic import make_synthetic_split
from ml.core.tiny import make_tiny_scorer
from ml.core.train_scorer import MAX_LOGIT_SCALE, TrainConfig, adamw_optimizer, reduce_loss, train_scorer
from science_t2i.format import TupleRecord


def unit(*values):
    v = torch.tensor(values, dtype=torch.float32)
    return v / v.norm()


def test_the_paper_sums_the_loss_where_the_platform_averages_it():
    # Two tuples, 2-D features: t = implicit, e = explicit, s = superficial, xp / xn = correct / wrong image.
    t, e = torch.stack([unit(1, 0), unit(0, 1)]), torch.stack([unit(1, 1), unit(1, 0)])
    s = torch.stack([unit(0, 1)] * 2)
    xp, xn = torch.stack([unit(1, 0), unit(1, 2)]), torch.stack([unit(0, 1), unit(2, 1)])
    scale = 10.0

    def ce(right, other):  # 2-way cross-entropy, target first
        return math.log(1 + math.exp(other - right))

    def dot(a, b):
        return scale * float(a @ b)

    per_tuple = [
        ce(dot(t[i], xp[i]), dot(t[i], xn[i]))
        + 0.25 * (ce(dot(e[i], xp[i]), dot(s[i], xp[i])) + ce(dot(s[i], xn[i]), dot(e[i], xn[i])))
        for i in range(2)
    ]
    parts = sciscore_loss(t, e, s, xp, xn, scale, reduction="none")
    assert parts.total.tolist() == pytest.approx(per_tuple, rel=1e-5)
    assert reduce_loss(parts.total, "mean").item() == pytest.approx(sum(per_tuple) / 2, rel=1e-5)
    assert reduce_loss(parts.total, "sum").item() == pytest.approx(sum(per_tuple), rel=1e-5)
    # On 4 processes the research code sums the features it gathers from all of them; DDP then averages
    # the 4 processes' gradients, so each process back-propagates its local sum x 4.
    assert reduce_loss(parts.total, "sum", world=4).item() == pytest.approx(4 * sum(per_tuple), rel=1e-5)
    assert sciscore_loss(t, e, s, xp, xn, scale).total.item() == pytest.approx(sum(per_tuple) / 2, rel=1e-5)


@pytest.fixture(scope="module")
def init_dir(tmp_path_factory):
    return str(make_tiny_scorer(tmp_path_factory.mktemp("tiny") / "init", seed=0))


def test_the_paper_decays_every_parameter_where_the_platform_spares_biases_norms_and_logit_scale(init_dir):
    model = Scorer.load(init_dir, device="cpu").model
    params = [p for p in model.parameters() if p.requires_grad]
    paper = adamw_optimizer(model, TrainConfig(model=init_dir, recipe="paper").resolved(), fused=False)
    assert [(len(g["params"]), g["weight_decay"]) for g in paper.param_groups] == [(len(params), 0.3)]
    platform = adamw_optimizer(model, TrainConfig(model=init_dir).resolved(), fused=False)
    decayed, spared = platform.param_groups
    assert decayed["weight_decay"] == 0.3 and spared["weight_decay"] == 0.0
    assert {id(p) for p in spared["params"]} == {id(p) for p in params if p.ndim < 2}
    assert any(p is model.logit_scale for p in spared["params"])


def test_only_the_platform_clamps_logit_scale_to_ln_100(init_dir, tmp_path):
    scorer = Scorer.load(init_dir, device="cpu")
    with torch.no_grad():
        scorer.model.logit_scale.fill_(5.0)  # above ln 100 = 4.605
    start = scorer.save(tmp_path / "hot", format="open_clip")
    train = make_synthetic_split(0, 4, "train", size=32)
    common = {
        "model": str(start),
        "lr": 1e-9,
        "total_steps": 1,
        "warmup_steps": 0,
        "batch_size": 2,
        "grad_accum": 1,
        "eval_every": 0,
        "checkpoint_every": 0,
        "save_format": "open_clip",
    }
    for recipe, expected in (("platform", MAX_LOGIT_SCALE), ("paper", 5.0)):
        summary = train_scorer(TrainConfig(recipe=recipe, lr_schedule="linear", **common), train, [], tmp_path / recipe)
        logit_scale = Scorer.load(summary["final_path"], device="cpu").model.logit_scale.item()
        assert logit_scale == pytest.approx(expected, abs=1e-6), recipe


def test_the_recipe_sets_the_defaults_and_explicit_options_win():
    paper = TrainConfig(model="m", recipe="paper").resolved(processes=4)
    assert (paper.lr_schedule, paper.loss_reduction, paper.variants, paper.weight_decay_scope) == (
        "deepspeed_log",
        "sum",
        "random",
        "all",
    )
    assert (paper.batch_size, paper.effective_batch, paper.grad_accum) == (16, 1024, 16)  # 16 x 16 x 4 GPUs
    assert paper.clamp_logit_scale is False and paper.eval_every == 10
    assert TrainConfig(model="m", recipe="paper").resolved(processes=1).grad_accum == 64
    platform = TrainConfig(model="m").resolved()
    assert (platform.lr_schedule, platform.loss_reduction, platform.variants, platform.weight_decay_scope) == (
        "linear",
        "mean",
        "first",
        "matrices",
    )
    assert (platform.batch_size, platform.grad_accum, platform.effective_batch) == (8, 1, 0)
    assert platform.clamp_logit_scale is True and platform.eval_every == 50
    mixed = TrainConfig(model="m", recipe="paper", loss_reduction="mean", grad_accum=1, batch_size=2).resolved(4)
    assert (mixed.loss_reduction, mixed.variants, mixed.grad_accum, mixed.effective_batch) == ("mean", "random", 1, 0)
    assert TrainConfig(model="m", effective_batch=64).resolved(2).grad_accum == 4  # platform, 8 x 2 processes
    with pytest.raises(ValueError, match="not a multiple of batch_size x processes = 48"):
        TrainConfig(model="m", recipe="paper").resolved(processes=3)
    with pytest.raises(ValueError, match="give one of them"):
        TrainConfig(model="m", grad_accum=2, effective_batch=24).resolved()
    with pytest.raises(ValueError, match="loss_reduction 'max'"):
        TrainConfig(model="m", loss_reduction="max").resolved()
    with pytest.raises(ValueError, match="unknown recipe"):
        TrainConfig(model="m", recipe="research").resolved()


def record_with_variants() -> TupleRecord:
    colours = [(i * 40, 0, 0) for i in range(5)]
    images = [Image.new("RGB", (4, 4), c) for c in colours]
    return TupleRecord(
        "ip0",
        "ep0",
        "sp0",
        images[0],
        images[3],
        implicit_prompts=["ip0", "ip1", "ip2"],
        explicit_prompts=["ep0", "ep1"],
        superficial_prompts=["sp0", "sp1", "sp2", "sp3"],
        correct_images=images[:3],
        wrong_images=images[3:],
    )


def draws(record, seed, positions):
    return [
        tuple(str(getattr(r, name)) if "prompt" in name else id(getattr(r, name)) for name in recipes.VARIANT_FIELDS)
        for r in (recipes.draw_variant(record, seed, p) for p in positions)
    ]


def test_random_variants_use_every_paraphrase_and_image_and_are_reproducible():
    record = record_with_variants()
    seen = draws(record, seed=0, positions=range(400))
    for k, name in enumerate(recipes.VARIANT_FIELDS):
        expected = {str(v) if "prompt" in name else id(v) for v in recipes.variants_of(record, name)}
        assert {draw[k] for draw in seen} == expected, name
    # The five picks are independent: every (paraphrase, paraphrase) combination of two lists turns up.
    assert {(d[0], d[1]) for d in seen} == set(product(["ip0", "ip1", "ip2"], ["ep0", "ep1"]))
    assert draws(record, 0, range(400)) == seen and draws(record, 1, range(400)) != seen
    one = recipes.draw_variant(record, 0, 7)
    assert one.implicit_prompts == [one.implicit_prompt] and one.correct_images == [one.correct_image]
    plain = TupleRecord("only", "e", "s", record.correct_image, record.wrong_image)
    assert recipes.draw_variant(plain, 0, 3).implicit_prompt == "only"


def test_the_trainer_draws_variants_per_example_only_under_random(init_dir):
    from ml.core.train_scorer import DataOrder, micro_batch_records

    records = [record_with_variants() for _ in range(3)]
    order = DataOrder(len(records), seed=0)
    config = TrainConfig(model=init_dir, batch_size=3, variants="random").resolved()
    prompts = {
        r.implicit_prompt for micro in range(40) for r in micro_batch_records(records, order, micro, config, 0, 1)
    }
    assert prompts == {"ip0", "ip1", "ip2"}
    first = TrainConfig(model=init_dir, batch_size=3).resolved()
    assert {
        r.implicit_prompt for micro in range(40) for r in micro_batch_records(records, order, micro, first, 0, 1)
    } == {"ip0"}
