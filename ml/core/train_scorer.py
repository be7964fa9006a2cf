"""Fine-tune SciScore (both CLIP towers) with the paper's loss, resumably, on one or many devices.

Decisions, each against a defect of the reference code or a silent library behaviour:

* **Explicit gradient accumulation.** One optimiser step = ``grad_accum`` micro-batches of
  ``batch_size`` tuples per process; each micro-batch loss is divided by ``grad_accum`` and the
  gradient all-reduce runs only on the last micro-batch. ``tuples_seen`` (= steps x grad_accum x
  batch_size x processes) and ``optimizer_steps`` are logged separately on every line.
* **The schedule counts optimiser steps.** The ``LambdaLR`` of :mod:`ml.core.schedules` steps once per
  optimiser step. It is *not* passed to ``accelerator.prepare`` (accelerate would step it once per
  process per call) but registered for checkpointing.
* **Data order is a pure function of (seed, micro-batch index)**: epoch k is a seeded permutation
  of the training records, and process r takes its slice of each global micro-batch. Resuming
  needs only the step counter, and a resumed run takes exactly the steps an uninterrupted one would.
* **Checkpoints** (``out_dir/checkpoints/step-NNNNNN``) hold accelerate's state (model, optimiser,
  scheduler, RNG states of every process) plus ``trainer_state.json`` (counters, data position,
  best so far); they are written under a temporary name and renamed, so a crash never leaves a
  half checkpoint that resume would pick.
* **Model selection on validation only.** The caller passes training and validation records;
  there is no test split here to be tempted by. The best model by validation pairwise accuracy is
  kept in ``out_dir/best`` (ties keep the earlier step), the last one in ``out_dir/final``.
* The forward pass goes through the (possibly DDP-wrapped) model's ``forward(image, text)``, so
  DDP's gradient hooks see it; bf16 autocast on CUDA comes from accelerate's mixed precision, fp32
  elsewhere. The loss itself is computed in fp32 (:mod:`ml.core.loss`).
* Speed (see ``docs/benchmarks/gpu.md``): images are resized on the device and prompts trimmed after
  their end-of-text token (:mod:`ml.core.scorer`), the step syncs with the host once (for its log
  line), ``compile=True`` compiles the image tower's blocks, and gradient checkpointing (which re-runs
  every block's forward pass) is off unless asked for.
* AdamW (fused on CUDA); 1-D parameters (biases, norms, ``logit_scale``) get no weight decay, and
  ``logit_scale`` is clamped to [0, ln 100] after each step, as in open_clip's own training.
* Hyper-parameter defaults are the paper's for fine-tuning a pretrained CLIP-H (lr 2e-6, weight
  decay 0.3, warmup 150, 600 steps, clip 1.0). From-scratch training wants a far larger lr.
* **Recipes** (:mod:`ml.core.recipes`): ``recipe="paper"`` reproduces the research trainer where ours
  differs (schedule, random variants, 1,024-tuple steps, summed loss, decay on every parameter, no
  ``logit_scale`` clamp, validation every 10 steps); each point is its own field, ``None`` = the recipe's.

Multi-GPU: ``accelerate launch -m ml train-scorer ...``; with one process it runs as is (CPU too).
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from PIL import Image, ImageOps

from ml.core import recipes, schedules
from ml.core.evaluate import pairwise_accuracy
from ml.core.loss import LossParts, sciscore_loss
from ml.core.scorer import Scorer
from science_t2i.format import TupleRecord

TRAINER_STATE = "trainer_state.json"
METRICS = "metrics.jsonl"
MAX_LOGIT_SCALE = math.log(100)


@dataclass
class TrainConfig:
    """Fields left at ``None`` take the value of ``recipe`` (:data:`ml.core.recipes.SCORER`)."""

    model: str  # anything Scorer.load reads: open_clip local-dir, transformers CLIPModel dir, checkpoint file
    arch: str | None = None  # open_clip architecture, only when ``model`` is a bare checkpoint file
    recipe: str = recipes.DEFAULT  # "platform" or "paper": the defaults of the fields left at None
    lr: float = 2e-6
    weight_decay: float = 0.3
    weight_decay_scope: str | None = None  # "matrices" (no decay on biases, norms, logit_scale) or "all"
    lr_schedule: str | None = None  # "linear" or "deepspeed_log" (ml.core.schedules)
    warmup_steps: int = 150
    total_steps: int = 600  # optimiser steps
    lr_decay_steps: int = 0  # where the rate reaches 0 (0: total_steps)
    batch_size: int | None = None  # tuples per micro-batch, per process
    grad_accum: int | None = None  # micro-batches per optimiser step (0: from effective_batch)
    effective_batch: int | None = None  # tuples per optimiser step over all processes (0: from grad_accum)
    loss_reduction: str | None = None  # "mean" over the tuples, or "sum" over each global micro-batch
    variants: str | None = None  # "first" paraphrase, i-th image with i-th; or "random" draws per example
    clamp_logit_scale: bool | None = None  # clamp logit_scale to [0, ln 100] after each step
    grad_clip: float = 1.0
    seed: int = 0
    mixed_precision: str = "auto"  # "auto": bf16 on CUDA, fp32 elsewhere; or "no" / "bf16"
    gradient_checkpointing: bool = False  # only where memory needs it: it re-runs every block's forward
    compile: bool = False  # regional torch.compile of the image tower's blocks (Scorer.compile)
    augment: bool = False  # random horizontal flip and a crop of up to 10 %
    eval_every: int | None = None  # optimiser steps between validations (0: only at the end)
    eval_batch_size: int = 64
    checkpoint_every: int = 100  # optimiser steps between resumable checkpoints (0: none)
    keep_checkpoints: int = 2  # most recent resumable checkpoints kept on disk
    resume: bool = True  # continue from the latest checkpoint in out_dir, if any; False deletes them
    max_seconds: float | None = None  # stop cleanly after this much training time (None: no limit)
    save_format: str = "both"  # how best/ and final/ are saved: "open_clip", "hf" or "both"
    progress: bool = False  # tqdm bar on the main process

    @property
    def tuples_per_step(self) -> int:
        """Per process; multiply by the number of processes for the effective batch."""
        assert self.batch_size is not None and self.grad_accum is not None  # a resolved config (recipe filled in)
        return self.batch_size * self.grad_accum

    def resolved(self, processes: int = 1) -> TrainConfig:
        """Every ``None`` filled in from the recipe and ``grad_accum`` derived from ``effective_batch``
        for ``processes`` processes; raises ``ValueError`` when they do not fit together."""
        config = recipes.resolve(self, recipes.SCORER)
        recipes.check_choices(config)
        per_step = config.batch_size * processes
        if config.grad_accum == 0:
            if config.effective_batch <= 0:
                raise ValueError("give grad_accum or effective_batch")
            if config.effective_batch % per_step:
                raise ValueError(
                    f"effective_batch {config.effective_batch} is not a multiple of batch_size x processes = {per_step}"
                )
            config = replace(config, grad_accum=config.effective_batch // per_step)
        elif config.effective_batch and config.effective_batch != config.grad_accum * per_step:
            raise ValueError(
                f"effective_batch {config.effective_batch} != grad_accum x batch_size x processes "
                f"= {config.grad_accum * per_step}; give one of them"
            )
        return config

    @property
    def horizon(self) -> int:
        return self.lr_decay_steps or self.total_steps


@dataclass
class TrainerState:
    optimizer_steps: int = 0
    micro_batches: int = 0  # the data position: global micro-batches consumed
    tuples_seen: int = 0
    best_step: int | None = None
    best_val_accuracy: float | None = None
    seconds: float = 0.0


class DataOrder:
    """Which records each micro-batch holds: a pure function of the seed and the micro-batch index."""

    def __init__(self, n: int, seed: int):
        if n == 0:
            raise ValueError("No training records.")
        self.n, self.seed = n, seed
        self._epoch = -1
        self._perm: list[int] = []

    def _permutation(self, epoch: int) -> list[int]:
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=generator).tolist()
        return self._perm

    def positions(self, micro_batch: int, batch_size: int, rank: int = 0, world: int = 1) -> range:
        """Where in the example stream (all processes, all epochs) a process's micro-batch lies."""
        start = (micro_batch * world + rank) * batch_size
        return range(start, start + batch_size)

    def indices(self, micro_batch: int, batch_size: int, rank: int = 0, world: int = 1) -> list[int]:
        positions = self.positions(micro_batch, batch_size, rank, world)
        return [self._permutation(p // self.n)[p % self.n] for p in positions]


def train_scorer(
    config: TrainConfig, train_records: Iterable[TupleRecord], val_records: Iterable[TupleRecord], out_dir: str | Path
) -> dict:
    """Train, validating on ``val_records``; return a summary (best step and accuracy, model paths).

    Records are held in lists (their images stay lazy), since the data order needs random access.
    """
    from accelerate import Accelerator
    from accelerate.utils import broadcast, set_seed

    train_records, val_records = list(train_records), list(val_records)

    out_dir = Path(out_dir)
    mixed = config.mixed_precision
    if mixed == "auto":
        mixed = "bf16" if torch.cuda.is_available() else "no"
    accelerator = Accelerator(mixed_precision=mixed)
    config = config.resolved(accelerator.num_processes)
    assert config.lr_schedule is not None and config.grad_accum is not None  # a resolved config (recipe filled in)
    set_seed(config.seed)
    main = accelerator.is_main_process
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(asdict(config), indent=2))

    scorer = Scorer.load(config.model, arch=config.arch, device=accelerator.device)
    if config.gradient_checkpointing:
        scorer.model.set_grad_checkpointing(True)
    if config.compile:
        scorer.compile()
    optimizer = adamw_optimizer(scorer.model, config, fused=accelerator.device.type == "cuda")
    scheduler = schedules.scheduler(optimizer, config.lr_schedule, config.warmup_steps, config.horizon)
    model, optimizer = accelerator.prepare(scorer.model, optimizer)
    accelerator.register_for_checkpointing(scheduler)

    state = TrainerState()
    if not config.resume and main:  # starting over: old checkpoints would be mistaken for this run's
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    accelerator.wait_for_everyone()
    latest = _latest_checkpoint(out_dir) if config.resume else None
    if latest is not None:
        accelerator.load_state(str(latest))
        state = TrainerState(**json.loads((latest / TRAINER_STATE).read_text()))
    if main:
        _truncate_metrics(out_dir / METRICS, state.optimizer_steps)

    order = DataOrder(len(train_records), config.seed)
    world = accelerator.num_processes
    bar = _progress(config, state, main)
    started = time.monotonic()  # the time budget is per invocation; "seconds" in the log is cumulative
    trained_before = state.seconds
    stopped_early = False
    evaluated_at = None

    while state.optimizer_steps < config.total_steps:
        line = optimizer_step(accelerator, model, scorer, optimizer, scheduler, train_records, order, config, state)
        state.optimizer_steps += 1
        state.micro_batches += config.grad_accum
        state.tuples_seen += config.tuples_per_step * world
        state.seconds = trained_before + time.monotonic() - started
        line = {
            "step": state.optimizer_steps,
            "optimizer_steps": state.optimizer_steps,
            "micro_batches": state.micro_batches,
            "tuples_seen": state.tuples_seen,
            **line,
            "seconds": round(state.seconds, 3),
        }

        if config.max_seconds is not None:
            over = torch.tensor([time.monotonic() - started > config.max_seconds], device=accelerator.device)
            stopped_early = bool(broadcast(over).item()) and state.optimizer_steps < config.total_steps
        last = state.optimizer_steps == config.total_steps or stopped_early
        if val_records and (last or (config.eval_every and state.optimizer_steps % config.eval_every == 0)):
            line.update(_validate(accelerator, scorer, val_records, state, config, out_dir))
            evaluated_at = state.optimizer_steps
        if main:
            with open(out_dir / METRICS, "a") as fh:
                fh.write(json.dumps(line) + "\n")
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{line['loss']:.4f}")
        if config.checkpoint_every and (last or state.optimizer_steps % config.checkpoint_every == 0):
            _save_checkpoint(accelerator, state, config, out_dir)
        if stopped_early:
            break

    if bar is not None:
        bar.close()
    final_dir = out_dir / "final"
    if main:
        _save_model(scorer, final_dir, config.save_format)
        if state.best_step is None:  # nothing was validated: the final model is all there is
            _save_model(scorer, out_dir / "best", config.save_format)
    accelerator.wait_for_everyone()
    summary = {
        "best_step": state.best_step,
        "best_val_accuracy": state.best_val_accuracy,
        "best_path": str(out_dir / "best"),
        "final_path": str(final_dir),
        "optimizer_steps": state.optimizer_steps,
        "tuples_seen": state.tuples_seen,
        "last_validated_step": evaluated_at,
        "stopped_early": stopped_early,
        "seconds": round(state.seconds, 3),
        "metrics_path": str(out_dir / METRICS),
        "num_processes": world,
    }
    if main:
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


# --- one optimiser step ----------------------------------------------------------------------------


def optimizer_step(
    accelerator,
    model,
    scorer: Scorer,
    optimizer,
    scheduler,
    train_records: list[TupleRecord],
    order: DataOrder,
    config: TrainConfig,
    state: TrainerState,
) -> dict:
    """``grad_accum`` micro-batches, one clipped AdamW step; returns the step's log fields (losses are the
    mean over the step's tuples on all processes, lr the one this step used)."""
    assert config.grad_accum is not None and config.loss_reduction is not None  # a resolved config (recipe filled in)
    model.train()
    world, rank = accelerator.num_processes, accelerator.process_index
    lr = optimizer.param_groups[0]["lr"]
    sums = torch.zeros(4, device=accelerator.device)
    for k in range(config.grad_accum):
        micro = state.micro_batches + k
        batch = micro_batch_records(train_records, order, micro, config, rank, world)
        rng = random.Random(f"{config.seed}:{micro}:{rank}") if config.augment else None
        sync = k == config.grad_accum - 1  # all-reduce the gradients once, on the last micro-batch
        with nullcontext() if sync else accelerator.no_sync(model):
            parts = _batch_loss(model, scorer, batch, rng)  # one value per tuple
            accelerator.backward(reduce_loss(parts.total, config.loss_reduction, world) / config.grad_accum)
        sums += torch.stack([p.detach().float().mean() for p in parts]) / config.grad_accum
    grad_norm = accelerator.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], config.grad_clip)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    if config.clamp_logit_scale:
        with torch.no_grad():
            accelerator.unwrap_model(model).logit_scale.clamp_(0, MAX_LOGIT_SCALE)
    loss, text, image_pos, image_neg = accelerator.reduce(sums, reduction="mean").tolist()
    return {
        "lr": lr,
        "loss": loss,
        "loss_text": text,
        "loss_image_pos": image_pos,
        "loss_image_neg": image_neg,
        "grad_norm": float(grad_norm),
        "logit_scale": scorer.logit_scale().item(),
    }


# --- one micro-batch ------------------------------------------------------------------------------


def reduce_loss(per_tuple: torch.Tensor, reduction: str, world: int = 1) -> torch.Tensor:
    """The loss a process back-propagates for its micro-batch (before the division by ``grad_accum``).

    ``"mean"``: the mean over the process's tuples; the gradient all-reduce then averages the processes,
    so an optimiser step follows the mean gradient of its tuples. ``"sum"``: the research code's
    ``loss.sum()`` over the micro-batch features it gathers from every process, i.e. the sum over the
    *global* micro-batch: the local sum times ``world`` (the all-reduce divides by ``world`` again). An
    optimiser step then follows ``batch_size x world`` times the mean gradient (64 x with the paper's
    16 tuples on each of 4 GPUs), which is what a gradient clip of 1.0 is measured against.
    """
    if reduction == "mean":
        return per_tuple.mean()
    if reduction == "sum":
        return per_tuple.sum() * world
    raise ValueError(f"unknown loss reduction {reduction!r}: use mean or sum")


def micro_batch_records(
    records: list[TupleRecord], order: DataOrder, micro: int, config: TrainConfig, rank: int, world: int
) -> list[TupleRecord]:
    """The process's tuples of micro-batch ``micro``; with ``variants="random"`` each one a fresh draw of its
    record's paraphrases and images (:func:`ml.core.recipes.draw_variant`)."""
    assert config.batch_size is not None  # a resolved config (recipe filled in)
    indices = order.indices(micro, config.batch_size, rank, world)
    if config.variants == "first":
        return [records[i] for i in indices]
    positions = order.positions(micro, config.batch_size, rank, world)
    return [recipes.draw_variant(records[i], config.seed, p) for i, p in zip(indices, positions, strict=True)]


def _batch_loss(model, scorer: Scorer, batch: list[TupleRecord], rng: random.Random | None) -> LossParts:
    """Texts [IP; EP; SP] and images [x+; x-] through the model in one forward pass, then the loss."""
    texts = (
        [r.implicit_prompt for r in batch] + [r.explicit_prompt for r in batch] + [r.superficial_prompt for r in batch]
    )
    pairs = [r.images() for r in batch]
    images = [c for c, _ in pairs] + [w for _, w in pairs]
    if rng is not None:
        images = [_augment(image, rng) for image in images]
    out = model(scorer.pixels(images), scorer.tokenize(texts))
    if isinstance(out, dict):
        image, text, scale = out["image_features"], out["text_features"], out["logit_scale"]
    else:
        image, text, scale = out[0], out[1], out[2]
    t, e, s = text.chunk(3)
    correct, wrong = image.chunk(2)
    return sciscore_loss(t, e, s, correct, wrong, scale, reduction="none")


def _augment(image: Image.Image, rng: random.Random) -> Image.Image:
    """Light, label-preserving: a horizontal flip half the time and a random crop of 90-100 % of each side."""
    if rng.random() < 0.5:
        image = ImageOps.mirror(image)
    w, h = image.size
    cw, ch = round(w * rng.uniform(0.9, 1.0)), round(h * rng.uniform(0.9, 1.0))
    left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return image.crop((left, top, left + cw, top + ch))


# --- optimiser, validation, checkpoints -------------------------------------------------------------


def adamw_optimizer(model: torch.nn.Module, config: TrainConfig, *, fused: bool) -> torch.optim.AdamW:
    """AdamW with ``weight_decay`` on the matrices only (``"matrices"``: not on biases, norms and
    ``logit_scale``, as open_clip trains) or on every parameter (``"all"``: the research code's one group)."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 and config.weight_decay_scope == "matrices" else decay).append(param)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [group for group in groups if group["params"]]
    return torch.optim.AdamW(groups, lr=config.lr, fused=fused or None)


def _validate(
    accelerator, scorer: Scorer, val_records, state: TrainerState, config: TrainConfig, out_dir: Path
) -> dict:
    """Pairwise accuracy on the validation records (main process); keep the best model. Returns log fields."""
    fields = {}
    if accelerator.is_main_process:
        result = pairwise_accuracy(scorer, val_records, batch_size=config.eval_batch_size)
        accuracy = result["accuracy"]
        fields = {
            "val_accuracy": accuracy,
            "val_n": result["n"],
            "val_by_task": {task: r["accuracy"] for task, r in result["by_task"].items()},
        }
        if state.best_val_accuracy is None or accuracy > state.best_val_accuracy:
            state.best_val_accuracy, state.best_step = accuracy, state.optimizer_steps
            _save_model(scorer, out_dir / "best", config.save_format)
            fields["best"] = True
    best = [state.best_step, state.best_val_accuracy]
    accelerator.wait_for_everyone()
    if accelerator.num_processes > 1:  # every process keeps the same record of the best
        from accelerate.utils import broadcast_object_list

        best = broadcast_object_list(best)
        state.best_step, state.best_val_accuracy = best
    return fields


def _save_model(scorer: Scorer, directory: Path, save_format: str) -> None:
    """Replace ``directory`` with the current model, written aside first so it is never half-written."""
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    scorer.save(tmp, format=save_format)
    shutil.rmtree(directory, ignore_errors=True)
    tmp.rename(directory)


def _checkpoint_dirs(out_dir: Path) -> list[Path]:
    root = out_dir / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step-*") if (p / TRAINER_STATE).is_file() and not p.name.endswith(".tmp"))


def _latest_checkpoint(out_dir: Path) -> Path | None:
    dirs = _checkpoint_dirs(out_dir)
    return dirs[-1] if dirs else None


def _save_checkpoint(accelerator, state: TrainerState, config: TrainConfig, out_dir: Path) -> None:
    final = out_dir / "checkpoints" / f"step-{state.optimizer_steps:06d}"
    tmp = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        (tmp / TRAINER_STATE).write_text(json.dumps(asdict(state), indent=2))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in _checkpoint_dirs(out_dir)[: -max(1, config.keep_checkpoints)]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop lines logged after the checkpoint (the steps are about to be redone)."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines()
    path.write_text("".join(line + "\n" for line in lines if line.strip() and json.loads(line)["step"] <= step))


def _progress(config: TrainConfig, state: TrainerState, main: bool):
    if not (config.progress and main):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=config.total_steps, initial=state.optimizer_steps, desc="train-scorer", unit="step")
