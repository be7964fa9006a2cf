"""train_scorer: counters under accumulation, exact resume, validation-only model selection, options.

All runs train the tiny open_clip scorer on a few synthetic tuples on the CPU, one process.
"""

import json
import shutil

import pytest
import torch

from ml.core.evaluate import pairwise_accuracy
from ml.core.scorer import Scorer
from ml.core.synthetic import make_synthetic_split
from ml.core.tiny import make_tiny_scorer
from ml.core.train_scorer import TrainConfig, train_scorer


@pytest.fixture(scope="module")
def init_dir(tmp_path_factory):
    return str(make_tiny_scorer(tmp_path_factory.mktemp("tiny") / "init", seed=0))


@pytest.fixture(scope="module")
def records():
    return make_synthetic_split(0, 24, "train", size=32), make_synthetic_split(0, 24, "val", size=32)


def config(init_dir, **overrides) -> TrainConfig:
    base = {
        "model": init_dir,
        "lr": 1e-3,
        "warmup_steps": 0,
        "total_steps": 4,
        "batch_size": 2,
        "grad_accum": 1,
        "eval_every": 0,
        "checkpoint_every": 0,
        "save_format": "open_clip",
        "seed": 0,
    }
    return TrainConfig(**{**base, **overrides})


def metrics(out_dir) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


def weights(directory) -> dict[str, torch.Tensor]:
    return Scorer.load(directory, device="cpu").model.state_dict()


def assert_same_weights(a, b, atol=0.0):
    a, b = weights(a), weights(b)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=0, atol=atol), name


def test_it_logs_tuples_seen_and_optimizer_steps_separately_under_accumulation(init_dir, records, tmp_path):
    train, val = records
    summary = train_scorer(config(init_dir, batch_size=2, grad_accum=3, save_format="both"), train, val, tmp_path)

    lines = metrics(tmp_path)
    assert [line["optimizer_steps"] for line in lines] == [1, 2, 3, 4]
    assert [line["micro_batches"] for line in lines] == [3, 6, 9, 12]
    assert [line["tuples_seen"] for line in lines] == [6, 12, 18, 24]
    for line in lines:
        assert {"step", "lr", "loss", "loss_text", "loss_image_pos", "loss_image_neg"} <= line.keys()
        assert line["loss"] == pytest.approx(
            line["loss_text"] + 0.25 * (line["loss_image_pos"] + line["loss_image_neg"]), rel=1e-5
        )
    assert "val_accuracy" in lines[-1]  # the last step is always validated
    assert summary["tuples_seen"] == 24 and summary["optimizer_steps"] == 4
    for form in ("open_clip", "hf"):  # both saved forms load back as scorers
        Scorer.load(tmp_path / "final" / form, device="cpu")
        Scorer.load(tmp_path / "best" / form, device="cpu")


def test_it_divides_the_loss_by_the_accumulation_count(init_dir, records, tmp_path):
    """2 tuples x 3 micro-batches is the same optimiser step as 6 tuples x 1: same data, same gradient.

    (Compared through the logged pre-clip gradient norm: undivided, it would be 3x. Weights after one
    AdamW step are no good witness: Adam turns even round-off-sized gradients into +-lr steps.)"""
    train, _ = records
    train_scorer(config(init_dir, total_steps=1, batch_size=6, grad_accum=1), train, [], tmp_path / "one")
    train_scorer(config(init_dir, total_steps=1, batch_size=2, grad_accum=3), train, [], tmp_path / "acc")

    one, acc = metrics(tmp_path / "one")[0], metrics(tmp_path / "acc")[0]
    assert acc["loss"] == pytest.approx(one["loss"], rel=1e-5)
    assert acc["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-4)


def test_it_resumes_exactly_where_an_uninterrupted_run_would_be(init_dir, records, tmp_path):
    train, val = records
    cfg = config(init_dir, total_steps=6, batch_size=2, grad_accum=2, warmup_steps=2, checkpoint_every=3, eval_every=2)
    full = tmp_path / "full"
    train_scorer(cfg, train, val, full)

    # A run that crashed after logging step 5, with its last checkpoint at step 3.
    crashed = tmp_path / "crashed"
    (crashed / "checkpoints").mkdir(parents=True)
    shutil.copytree(full / "checkpoints" / "step-000003", crashed / "checkpoints" / "step-000003")
    (crashed / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in metrics(full)[:5]))
    summary = train_scorer(cfg, train, val, crashed)

    assert_same_weights(full / "final", crashed / "final")
    resumed, uninterrupted = metrics(crashed), metrics(full)
    assert [line["step"] for line in resumed] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(resumed, uninterrupted, strict=False):
        for key in ("loss", "lr", "tuples_seen", "grad_norm", "val_accuracy"):
            assert a.get(key) == b.get(key), (a["step"], key)
    assert summary["tuples_seen"] == 24


def test_it_keeps_the_best_model_by_validation_accuracy_never_a_test_split(init_dir, records, tmp_path):
    """A decoy 'test' split whose labels are the validation labels swapped disagrees with validation on
    every step; the best model must be the validation argmax (and so the decoy's worst)."""
    train, val = records
    summary = train_scorer(config(init_dir, total_steps=8, batch_size=8, lr=2e-3, eval_every=1), train, val, tmp_path)

    accuracies = [line["val_accuracy"] for line in metrics(tmp_path)]
    assert len(set(accuracies)) > 1, "validation accuracy never moved; the test would prove nothing"
    assert summary["best_step"] == accuracies.index(max(accuracies)) + 1
    assert summary["best_val_accuracy"] == max(accuracies)

    best = Scorer.load(summary["best_path"], device="cpu")
    decoy = [type(r)(**{**r.__dict__, "correct_image": r.wrong_image, "wrong_image": r.correct_image}) for r in val]
    assert pairwise_accuracy(best, val)["accuracy"] == max(accuracies)
    assert pairwise_accuracy(best, decoy)["accuracy"] <= 1 - max(accuracies) + 1e-9  # ties count as wrong


def test_gradient_checkpointing_gives_the_same_training(init_dir, records, tmp_path):
    train, _ = records
    train_scorer(config(init_dir, total_steps=2), train, [], tmp_path / "plain")
    train_scorer(config(init_dir, total_steps=2, gradient_checkpointing=True), train, [], tmp_path / "ckpt")

    assert metrics(tmp_path / "ckpt")[-1]["loss"] == pytest.approx(metrics(tmp_path / "plain")[-1]["loss"], rel=1e-5)
    assert_same_weights(tmp_path / "plain" / "final", tmp_path / "ckpt" / "final", atol=1e-6)


def test_it_stops_cleanly_on_its_time_budget(init_dir, records, tmp_path):
    train, val = records
    summary = train_scorer(config(init_dir, total_steps=50, max_seconds=0), train, val, tmp_path)

    assert summary["stopped_early"] and summary["optimizer_steps"] == 1
    assert summary["best_step"] == 1  # the step it stopped on was validated
    Scorer.load(tmp_path / "final", device="cpu")


def test_starting_over_removes_old_checkpoints(init_dir, records, tmp_path):
    train, _ = records
    train_scorer(config(init_dir, total_steps=2, checkpoint_every=2), train, [], tmp_path)
    summary = train_scorer(config(init_dir, total_steps=1, resume=False), train, [], tmp_path)

    assert summary["optimizer_steps"] == 1
    assert not list((tmp_path / "checkpoints").glob("step-*"))
    assert [line["step"] for line in metrics(tmp_path)] == [1]


WORKER = """
import sys
from ml.core.synthetic import make_synthetic_split
from ml.core.train_scorer import TrainConfig, train_scorer

init, out, batch_size = sys.argv[1], sys.argv[2], int(sys.argv[3])
config = TrainConfig(model=init, lr=1e-3, warmup_steps=0, total_steps=3, batch_size=batch_size, grad_accum=2,
                     eval_every=0, checkpoint_every=3, save_format="open_clip")
train_scorer(config, make_synthetic_split(0, 24, "train", size=32), make_synthetic_split(0, 24, "val", size=32), out)
"""


def test_two_processes_train_like_one_with_twice_the_batch(init_dir, records, tmp_path):
    """DDP (gloo, CPU): each process takes its slice of every global micro-batch, gradients are averaged
    once per optimiser step, the schedule steps once per optimiser step, tuples are counted globally."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {
        **os.environ,
        "ACCELERATE_USE_CPU": "true",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            script,
            init_dir,
            tmp_path / "two",
            "2",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    train, val = records
    train_scorer(
        config(init_dir, total_steps=3, batch_size=4, grad_accum=2, checkpoint_every=3), train, val, tmp_path / "one"
    )

    two, one = metrics(tmp_path / "two"), metrics(tmp_path / "one")
    assert [line["tuples_seen"] for line in two] == [line["tuples_seen"] for line in one] == [8, 16, 24]
    assert [line["lr"] for line in two] == [line["lr"] for line in one]
    for a, b in zip(two, one, strict=False):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)
    assert sorted(p.name for p in (tmp_path / "two" / "checkpoints" / "step-000003").glob("random_states_*")) == [
        "random_states_0.pkl",
        "random_states_1.pkl",
    ]
