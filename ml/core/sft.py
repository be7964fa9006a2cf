"""Supervised fine-tuning (SFT) of FLUX on (implicit prompt, correct image) pairs, with LoRA.

The Science-T2I recipe: LoRA r=16, alpha=16, Gaussian init on ``to_q, to_k, to_v, to_out.0`` of the
FLUX transformer; rectified-flow loss (see :mod:`ml.core.flow`); AdamW lr 2e-5; 4 tuples per
micro-batch x 8 micro-batches per optimiser step; guidance embedding 0 on FLUX.1-dev.

Decisions:

* **Explicit accumulation.** Each micro-batch loss is divided by ``grad_accum`` and back-propagated;
  the optimiser steps after exactly ``grad_accum`` micro-batches, so one optimiser step always means
  ``batch_size * grad_accum`` tuples. Each metrics line carries ``optimizer_step`` and
  ``tuples_seen`` apart.
* **One data stream.** Tuples are read in a fresh permutation per epoch (seeded by ``seed`` and the
  epoch number) and the stream runs on across epoch ends, so every micro-batch is full and the
  position in the stream is just ``tuples_seen``.
* **Exact resume.** All randomness of a step (noise and noise levels) comes from one CPU generator
  whose state is checkpointed with the LoRA weights, the optimiser state and the counters, in one
  file written atomically. Running ``train_sft`` again on the same ``out_dir`` continues from the
  checkpoint; the result equals an uninterrupted run. Changing anything but ``max_steps``
  (or ``epochs``), ``checkpoint_every`` or ``device`` between the two is refused.
* **Precision.** On CUDA the frozen weights are bf16, the LoRA weights fp32, the forward pass runs
  under bf16 autocast; on CPU everything is fp32. Training runs without cuDNN attention, whose
  backward pass broke on Hopper (see :func:`ml.core.flow.training_attention`).
* **Output.** ``out_dir/lora`` holds the LoRA in diffusers' format (``FluxPipeline.save_lora_weights``),
  loadable with ``pipe.load_lora_weights(out_dir / "lora")``; rewritten at every checkpoint.
* **Recipes** (:mod:`ml.core.recipes`): ``recipe="paper"`` reproduces the research SFT where ours differs
  (random paraphrase and correct image per draw, bilinear shorter-side resize without crop, a sample of
  the VAE posterior, noise levels from the scheduler's 1000-level grid, 60 epochs); each point is its own
  field, ``None`` = the recipe's. Unlike the research code (bf16 LoRA weights under bf16 mixed
  precision), the LoRA weights stay fp32 in both.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F

from ml.core import recipes
from ml.core.flow import (
    check_resolution,
    encode_images,
    encode_text,
    images_to_tensor,
    latent_image_ids,
    noisy_latents,
    predict_velocity,
    sample_sigmas,
    training_attention,
    training_sigma_grid,
    vae_scale_factor,
    velocity_target,
)
from science_t2i.format import TupleRecord

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
LORA_DIR = "lora"
# Config fields that may differ between a run and its resumption.
RESUMABLE_CHANGES = {"max_steps", "epochs", "checkpoint_every", "device"}


@dataclass
class SFTConfig:
    """Fields left at ``None`` take the value of ``recipe`` (:data:`ml.core.recipes.SFT`)."""

    recipe: str = recipes.DEFAULT  # "platform" or "paper": the defaults of the fields left at None
    resolution: int = 512  # square training images, pixels (paper: 512)
    max_steps: int | None = None  # optimiser steps in total, counting those before a resume (0: from epochs)
    epochs: int | None = None  # passes over the records, as optimiser steps (0: max_steps)
    batch_size: int = 4  # tuples per micro-batch
    grad_accum: int = 8  # micro-batches per optimiser step
    lr: float = 2e-5
    weight_decay: float = 1e-4  # the reference implementation's AdamW setting
    max_grad_norm: float = 1.0
    rank: int = 16
    lora_alpha: int = 16
    guidance: float = 0.0  # guidance-embedding value for models that have one (FLUX.1-dev)
    sigma_scheme: str | None = None  # "uniform", "grid" or "logit_normal" (ml.core.flow.sample_sigmas)
    variants: str | None = None  # "first" paraphrase and image; or "random" draws per example
    image_resize: str | None = None  # "cover_crop" or "shorter_side" (ml.core.flow.images_to_tensor)
    vae_latents: str | None = None  # "mode" or "sample" of the VAE posterior (ml.core.flow.encode_images)
    max_sequence_length: int = 512  # T5 prompt length (schnell: at most 256)
    # FLUX.1 size, 512 px, micro-batch 4, H200: 0.82 s and 25.5 GiB per micro-batch with it,
    # 0.57 s and 54 GiB without (transformer only; the text encoders and VAE come on top).
    gradient_checkpointing: bool = True
    checkpoint_every: int = 50  # optimiser steps between checkpoints
    seed: int = 0
    device: str | None = None  # default: cuda if available

    def __post_init__(self):
        counts = ("resolution", "batch_size", "grad_accum", "rank", "checkpoint_every", "max_sequence_length")
        bad = [name for name in counts if getattr(self, name) < 1]
        bad += [name for name in ("max_steps", "epochs") if getattr(self, name) is not None and getattr(self, name) < 0]
        if bad:
            raise ValueError(f"SFT config fields must be positive: {bad}")
        recipes.check_recipe(self.recipe)
        recipes.check_choices(self)

    @classmethod
    def from_dict(cls, data: dict) -> SFTConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown SFT config fields: {sorted(unknown)}")
        return cls(**data)

    def resolved(self, n_records: int) -> SFTConfig:
        """Every ``None`` filled in from the recipe, and ``max_steps`` from ``epochs`` over ``n_records``."""
        config = recipes.resolve(self, recipes.SFT)
        if config.epochs and config.max_steps:
            raise ValueError("give max_steps or epochs, not both")
        if config.epochs:
            config = replace(
                config,
                max_steps=recipes.steps_for_epochs(config.epochs, n_records, config.batch_size, config.grad_accum),
            )
        return config


@dataclass
class SFTResult:
    lora_dir: Path
    optimizer_steps: int
    tuples_seen: int
    last_loss: float | None  # mean loss of the last optimiser step run in this call


def train_sft(
    pipeline_path: str | Path,
    records: Sequence[TupleRecord],
    out_dir: str | Path,
    config: SFTConfig | None = None,
    *,
    on_step: Callable[[dict], None] | None = None,
) -> SFTResult:
    """Train (or resume) a LoRA on ``records``; return where it is and how far training got.

    ``on_step`` receives each optimiser step's metrics (the dict also appended to
    ``out_dir/metrics.jsonl``), e.g. to report progress from a worker.
    """
    from diffusers import FluxPipeline

    records = list(records)
    if not records:
        raise ValueError("no records to train on")
    config = (config or SFTConfig()).resolved(len(records))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    weight_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32

    pipe = FluxPipeline.from_pretrained(str(pipeline_path), dtype=weight_dtype, local_files_only=True).to(device)
    vsf = vae_scale_factor(pipe.vae)
    check_resolution(config.resolution, config.resolution, vsf)
    transformer = add_lora(pipe, config)
    trainable = [p for p in transformer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    generator = torch.Generator("cpu").manual_seed(config.seed)
    fingerprint = _fingerprint(records)

    step, seen = 0, 0
    checkpoint_path = out_dir / CHECKPOINT
    if checkpoint_path.exists():
        step, seen = _restore(checkpoint_path, transformer, optimizer, generator, config, fingerprint)
    _truncate_metrics(out_dir / METRICS, step)

    img_ids = latent_image_ids(config.resolution, config.resolution, vsf, device=device, dtype=weight_dtype)
    order = EpochOrder(len(records), config.seed)
    grid = training_sigma_grid(pipe.scheduler.config) if config.sigma_scheme == "grid" else None
    transformer.train()
    last_loss = None
    assert config.max_steps is not None  # a resolved config (recipe filled in)
    with training_attention():
        while step < config.max_steps:
            metrics = optimizer_step(
                pipe,
                transformer,
                optimizer,
                trainable,
                records,
                order,
                img_ids,
                generator,
                config,
                device,
                step,
                seen,
                grid,
            )
            step, seen, last_loss = metrics["optimizer_step"], metrics["tuples_seen"], metrics["loss"]
            with open(out_dir / METRICS, "a") as f:
                f.write(json.dumps(metrics) + "\n")
            if on_step is not None:
                on_step(metrics)
            if step % config.checkpoint_every == 0 or step == config.max_steps:
                _save_checkpoint(checkpoint_path, transformer, optimizer, generator, config, fingerprint, step, seen)
                save_lora(transformer, out_dir / LORA_DIR)

    if not (out_dir / LORA_DIR).exists():  # resumed a finished run whose export was lost
        save_lora(transformer, out_dir / LORA_DIR)
    return SFTResult(out_dir / LORA_DIR, step, seen, last_loss)


def save_lora(transformer, directory: Path) -> None:
    """Write the transformer's LoRA (adapter ``default``) where ``pipe.load_lora_weights`` finds it."""
    from diffusers import FluxPipeline
    from peft import get_peft_model_state_dict

    FluxPipeline.save_lora_weights(
        directory,
        transformer_lora_layers=get_peft_model_state_dict(transformer),
        transformer_lora_adapter_metadata=transformer.peft_config["default"].to_dict(),
    )


# --- steps ---------------------------------------------------------------------------------


def add_lora(pipe, config: SFTConfig):
    """Freeze the pipeline, add the LoRA to the transformer (seeded init, global RNG untouched)."""
    from peft import LoraConfig

    for module in (pipe.vae, pipe.text_encoder, pipe.text_encoder_2, pipe.transformer):
        module.requires_grad_(False)
    transformer = pipe.transformer
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        transformer.add_adapter(
            LoraConfig(
                r=config.rank, lora_alpha=config.lora_alpha, init_lora_weights="gaussian", target_modules=LORA_TARGETS
            )
        )
    for p in transformer.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    if config.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    return transformer


def optimizer_step(
    pipe,
    transformer,
    optimizer,
    trainable,
    records,
    order,
    img_ids,
    generator,
    config,
    device,
    step: int,
    seen: int,
    grid: torch.Tensor | None = None,
) -> dict:
    """``grad_accum`` micro-batches of ``batch_size`` tuples, then one optimiser step; return its metrics."""
    started = time.perf_counter()
    losses = []
    for _ in range(config.grad_accum):
        batch = micro_batch(records, order, seen, config)
        loss = _micro_batch_loss(pipe, transformer, batch, img_ids, generator, config, device, grid)
        (loss / config.grad_accum).backward()
        losses.append(loss.item())
        seen += len(batch)
    grad_norm = torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {
        "optimizer_step": step + 1,
        "tuples_seen": seen,
        "epoch": seen / len(records),
        "loss": sum(losses) / len(losses),
        "grad_norm": grad_norm.item(),
        "lr": config.lr,
        "seconds": time.perf_counter() - started,
    }


def micro_batch(records: Sequence[TupleRecord], order, seen: int, config: SFTConfig) -> list[TupleRecord]:
    """The micro-batch at stream position ``seen``; with ``variants="random"`` each record's paraphrase and
    correct image drawn afresh (:func:`ml.core.recipes.draw_variant`, a function of seed and position)."""
    indices = order.take(seen, config.batch_size)
    if config.variants == "first":
        return [records[i] for i in indices]
    return [recipes.draw_variant(records[i], config.seed, seen + k) for k, i in enumerate(indices)]


def _micro_batch_loss(
    pipe, transformer, batch, img_ids, generator, config: SFTConfig, device, grid: torch.Tensor | None = None
) -> torch.Tensor:
    """Rectified-flow MSE on one micro-batch of (implicit prompt, correct image) pairs."""
    assert config.image_resize is not None and config.vae_latents is not None and config.sigma_scheme is not None
    pixels = images_to_tensor(
        [record.images()[0] for record in batch], config.resolution, config.resolution, resize=config.image_resize
    )
    latents = encode_images(pipe.vae, pixels, posterior=config.vae_latents, generator=generator)
    text = encode_text(
        pipe,
        [record.implicit_prompt for record in batch],
        max_sequence_length=config.max_sequence_length,
        device=device,
    )
    noise = torch.randn(latents.shape, generator=generator).to(device=device, dtype=latents.dtype)
    sigmas = sample_sigmas(len(batch), generator=generator, scheme=config.sigma_scheme, grid=grid).to(device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        prediction = predict_velocity(
            transformer, noisy_latents(latents, noise, sigmas), sigmas, text, img_ids, guidance=config.guidance
        )
    return F.mse_loss(prediction.float(), velocity_target(latents, noise).float())


class EpochOrder:
    """Position ``p`` in the tuple stream -> record index: a seeded permutation per epoch."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed = n, seed

    def take(self, start: int, count: int) -> list[int]:
        return [_permutation(self.n, self.seed, p // self.n)[p % self.n] for p in range(start, start + count)]


@lru_cache(maxsize=4)
def _permutation(n: int, seed: int, epoch: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator).tolist()


# --- checkpoints ---------------------------------------------------------------------------


def _fingerprint(records: Sequence[TupleRecord]) -> str:
    """Identifies the training set (its size and implicit prompts, in order) for resume checks."""
    digest = hashlib.sha256()
    for record in records:
        digest.update(record.implicit_prompt.encode() + b"\0")
    return f"{len(records)}:{digest.hexdigest()}"


def _save_checkpoint(path: Path, transformer, optimizer, generator, config, fingerprint, step, seen) -> None:
    state = {
        "optimizer_steps": step,
        "tuples_seen": seen,
        "config": asdict(config),
        "fingerprint": fingerprint,
        "trainable": {n: p.detach().cpu() for n, p in transformer.named_parameters() if p.requires_grad},
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _restore(path: Path, transformer, optimizer, generator, config, fingerprint) -> tuple[int, int]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    saved = state["config"]
    changed = sorted(k for k, v in asdict(config).items() if k not in RESUMABLE_CHANGES and saved.get(k) != v)
    if changed:
        raise ValueError(f"cannot resume {path}: config changed in {changed}; use a new output directory")
    if state["fingerprint"] != fingerprint:
        raise ValueError(f"cannot resume {path}: the training records differ from the checkpoint's")
    params = dict(transformer.named_parameters())
    with torch.no_grad():
        for name, value in state["trainable"].items():
            params[name].copy_(value)
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    return state["optimizer_steps"], state["tuples_seen"]


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines of steps after the checkpoint (they are about to be redone)."""
    if not path.exists():
        return
    lines = [line for line in path.read_text().splitlines() if line and json.loads(line)["optimizer_step"] <= step]
    path.write_text("".join(line + "\n" for line in lines))
