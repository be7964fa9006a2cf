"""Masked online fine-tuning (OFT) of FLUX with SciScore rewards (Science-T2I, GUIDE §1).

One **pair step** per prompt:

1. sample two images from the current policy with the stochastic Euler sampler of
   :mod:`ml.core.sampler` (30 steps, churn 0.1), keeping both trajectories;
2. reward each with SciScore against the (implicit) prompt; the higher reward is the winner ``w``,
   the other the loser ``l`` (a tie carries no preference and contributes no gradient);
3. box the prompt's subject in each image with Grounding DINO (box 0.35, text 0.25, boxes grown by
   10 %, whole image when nothing is found, :mod:`ml.core.detector`) and map that pixel mask onto the
   packed latent tokens with ``flow.pixel_mask_to_tokens``, at whatever resolution is trained;
4. for every sampler step ``i``, re-score the recorded transition ``x_i → x_{i+1}`` of both samples
   under the policy (with grad) and under the reference (no grad) and take the per-step loss

       r_i    = Σ_{t ∈ mask} (log π_i[t] − log π_ref,i[t]) / (C · |mask|)
       r̃_i    = clamp(r_i, log(1 − ε), log(1 + ε))            ε = 0.1
       loss_i = −log σ(β · (r̃_i,w − r̃_i,l))                    β = 10

   averaged over the steps (each step is back-propagated on its own, so memory stays one step deep).

Decisions, and why:

* **"Log-ratio clamped to ±10 %"** (GUIDE §1) is read as the probability-ratio clipping of D3PO-style
  preference fine-tuning: the ratio ``π/π_ref`` of a step is clipped to ``[1 − ε, 1 + ε]`` with
  ε = 0.1, i.e. its log to ``[log 0.9, log 1.1] ≈ [−0.105, +0.095]``, per sample and per step. ``torch.clamp`` passes no gradient outside that range,
  so a step whose policy has already moved more than 10 % from the reference stops pushing: a trust
  region around the reference.
* **Mean, not sum, over the masked latent elements.** ``log π_i[t]`` (from the sampler) is a token's
  log-density summed over its ``C`` channels; ``r_i`` divides the masked sum by ``C · |mask|``. A sum
  would grow with the box area and the resolution (a 10 % clamp on a sum over 65k elements at 512 px
  is hit after a tiny update and then blocks every gradient), so β and ε would mean different things
  for a small subject and a full-frame one, or at 256 and 1024 px. The mean keeps them comparable
  and matches the DDPO/D3PO code, whose per-step log-prob is a mean over latent elements. Tokens outside the
  mask get exactly zero weight: they change neither the loss nor its gradient.
* **The reference is the policy with its LoRA adapter disabled**, not a second copy of FLUX. A LoRA
  from SFT is first *fused* into the base weights (in memory, once) and a fresh LoRA (B = 0, so the
  policy starts equal to the reference) is trained on top. The reference is therefore the SFT model,
  the model OFT starts from; training the SFT adapter on with the bare base as reference would spend
  part or all of the ±10 % trust region on the SFT update before OFT has begun, and clamped steps
  give no gradient.
* **Export.** ``out_dir/lora`` holds one LoRA in diffusers' format that equals SFT + OFT exactly:
  both adapters' factors are stacked (rank r_sft + r_oft, each B pre-multiplied by its α/r, α = rank so
  the stored scale is 1), so ``pipe.load_lora_weights(out_dir / "lora")`` (and
  ``generate.load_pipeline(..., lora=...)``) gives the fine-tuned model on the plain base pipeline.
* **Explicit accumulation.** ``prompts_per_step`` pairs are accumulated per optimiser step (each
  loss divided by ``prompts_per_step · steps``); metrics log ``prompts_seen`` and ``optimizer_steps``
  apart.
* **Exact resume.** Prompt order is a seeded permutation per epoch and every random draw of a pair
  comes from a generator seeded by (``seed``, position in the prompt stream), so the LoRA weights,
  optimiser state and counters (one checkpoint file, written atomically) are all that a resume
  needs; a resumed run equals an uninterrupted one.
* **Precision.** As in SFT: on CUDA bf16 frozen weights, fp32 LoRA, bf16 autocast; fp32 on CPU.
  Log-probs are always computed in fp32.
* **No cuDNN attention on CUDA.** On an H200 (torch 2.11, the tiny model) the first backward pass
  returned NaN gradients; anomaly mode traced them to ``ScaledDotProductCudnnAttentionBackward0``.
  Transformer calls and the backward passes (which re-run the forward under gradient
  checkpointing) therefore run inside :func:`ml.core.flow.training_attention`, as in SFT.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ml.core.flow import (
    decode_latents,
    encode_text,
    inference_sigmas,
    latent_image_ids,
    packed_noise,
    pixel_mask_to_tokens,
    predict_velocity,
    to_pil,
    training_attention,
    token_grid,
    vae_scale_factor,
)
from ml.core.sampler import DEFAULT_CHURN, DEFAULT_STEPS, Trajectory, sample_trajectory, transition_log_prob
from ml.core.sft import LORA_TARGETS

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
LORA_DIR = "lora"
ADAPTER = "default"  # the trained OFT adapter
SFT_ADAPTER = "sft"  # the LoRA OFT starts from, fused into the base weights
RESUMABLE_CHANGES = {"max_steps", "checkpoint_every", "device"}


@dataclass
class OFTConfig:
    resolution: int = 512  # square images, pixels
    num_steps: int = DEFAULT_STEPS  # sampler steps per image
    churn: float = DEFAULT_CHURN  # sampler noise, see ml.core.sampler
    guidance: float = 3.5  # guidance-embedding value for sampling (FLUX.1-dev's default)
    beta: float = 10.0
    clip_eps: float = 0.1  # per-step probability ratio clipped to [1 - eps, 1 + eps]
    lr: float = 3e-4
    weight_decay: float = 1e-4
    max_grad_norm: float = 1.0
    rank: int = 16
    lora_alpha: int = 16
    prompts_per_step: int = 4  # pairs accumulated per optimiser step
    max_steps: int = 100  # optimiser steps in total, counting those before a resume
    use_mask: bool = True  # False: whole image (the paper's ablation, which collapses)
    box_threshold: float = 0.35
    text_threshold: float = 0.25
    box_grow: float = 0.10
    max_sequence_length: int = 512  # T5 prompt length (schnell: at most 256)
    gradient_checkpointing: bool = True
    checkpoint_every: int = 10
    seed: int = 0
    device: str | None = None  # default: cuda if available

    @classmethod
    def from_dict(cls, data: dict) -> OFTConfig:
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown OFT config fields: {sorted(unknown)}")
        return cls(**data)


@dataclass
class OFTResult:
    lora_dir: Path
    optimizer_steps: int
    prompts_seen: int
    last_loss: float | None  # mean pair loss of the last optimiser step run in this call


# --- the loss ------------------------------------------------------------------------------


class PairLoss(NamedTuple):
    loss: torch.Tensor  # scalar
    log_ratios: torch.Tensor  # (2,) clamped r̃ of both samples
    clamped: torch.Tensor  # (2,) bool: r hit the clamp (no gradient through it)


def masked_log_ratio(log_pi: torch.Tensor, log_ref: torch.Tensor, token_mask: torch.Tensor,
                     channels: int) -> torch.Tensor:
    """``Σ_{t ∈ mask} (log π[t] − log π_ref[t]) / (C · |mask|)`` per sample: (B, L) -> (B,)."""
    weights = token_mask.to(log_pi.dtype)
    counts = weights.sum(-1).clamp_min(1) * channels
    return ((log_pi - log_ref) * weights).sum(-1) / counts


def clip_bounds(clip_eps: float) -> tuple[float, float]:
    """``(log(1 − ε), log(1 + ε))``: the probability-ratio clip of D3PO, in log space."""
    return math.log(1 - clip_eps), math.log(1 + clip_eps)


def pair_loss(log_pi: torch.Tensor, log_ref: torch.Tensor, token_mask: torch.Tensor, winner: int, *,
              channels: int, beta: float = 10.0, clip_eps: float = 0.1) -> PairLoss:
    """One step's DPO-style loss for a pair; rows of the (2, L) inputs are the two samples."""
    low, high = clip_bounds(clip_eps)
    ratios = masked_log_ratio(log_pi, log_ref, token_mask, channels)
    clamped = ratios.clamp(low, high)
    loss = -F.logsigmoid(beta * (clamped[winner] - clamped[1 - winner]))
    return PairLoss(loss, clamped.detach(), ((ratios < low) | (ratios > high)).detach())


# --- the policy ----------------------------------------------------------------------------


@contextmanager
def adapter_disabled(transformer) -> Iterator[None]:
    """Run the transformer without its LoRA (the reference model), then switch the LoRA back on.

    diffusers' ``disable_adapters``/``enable_adapters`` (peft's ``enable_adapters(False/True)`` on every
    LoRA layer); re-enabling also restores ``requires_grad`` on the adapter's weights.
    """
    transformer.disable_adapters()
    try:
        yield
    finally:
        transformer.enable_adapters()


LoraFactors = dict[str, tuple[torch.Tensor, torch.Tensor, float]]  # module -> (A (r, in), B (out, r), α/r)


def lora_factors(transformer, adapter: str) -> LoraFactors:
    """The factors of one adapter of the transformer's peft LoRA layers, as fp32 CPU copies."""
    from peft.tuners.lora import LoraLayer

    return {
        name: (module.lora_A[adapter].weight.detach().float().cpu(),
               module.lora_B[adapter].weight.detach().float().cpu(), float(module.scaling[adapter]))
        for name, module in transformer.named_modules()
        if isinstance(module, LoraLayer) and adapter in module.lora_A
    }


def prepare_policy(pipe, lora_path: str | Path | None, config: OFTConfig):
    """Freeze the pipeline, fuse the starting LoRA (if any) into the transformer, add a fresh LoRA.

    Returns ``(transformer, start_factors)``: ``start_factors`` are the fused LoRA's factors (empty
    without one), kept for the export. The new adapter's B is zero, so policy == reference at first.
    """
    from peft import LoraConfig

    for module in (pipe.vae, pipe.text_encoder, pipe.text_encoder_2, pipe.transformer):
        module.requires_grad_(False)
    transformer = pipe.transformer
    start: LoraFactors = {}
    if lora_path is not None:
        pipe.load_lora_weights(str(lora_path), adapter_name=SFT_ADAPTER)
        start = lora_factors(transformer, SFT_ADAPTER)
        if not start:
            raise ValueError(f"{lora_path}: no LoRA layers for the transformer")
        pipe.fuse_lora(components=["transformer"], adapter_names=[SFT_ADAPTER])
        pipe.unload_lora_weights()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        transformer.add_adapter(LoraConfig(r=config.rank, lora_alpha=config.lora_alpha, init_lora_weights=True,
                                           target_modules=LORA_TARGETS), adapter_name=ADAPTER)
    for p in transformer.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    if config.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    return transformer, start


def export_lora(transformer, start: LoraFactors, directory: str | Path) -> Path:
    """Write start ⊕ OFT as one diffusers-format LoRA (see the module docstring); return the directory."""
    from diffusers import FluxPipeline
    from peft import LoraConfig

    trained = lora_factors(transformer, ADAPTER)
    if start and set(start) != set(trained):
        raise ValueError("the starting LoRA and the OFT LoRA adapt different modules; cannot stack them")
    layers = {}
    for name, (a_oft, b_oft, s_oft) in trained.items():
        parts = [start[name], (a_oft, b_oft, s_oft)] if start else [(a_oft, b_oft, s_oft)]
        layers[f"{name}.lora_A.weight"] = torch.cat([a for a, _, _ in parts], dim=0).contiguous()
        layers[f"{name}.lora_B.weight"] = torch.cat([b * s for _, b, s in parts], dim=1).contiguous()
    ranks = {w.shape[0] for k, w in layers.items() if k.endswith("lora_A.weight")}
    if len(ranks) != 1:
        raise ValueError(f"stacked LoRA ranks differ between modules: {sorted(ranks)}")
    (rank,) = ranks
    metadata = LoraConfig(r=rank, lora_alpha=rank, target_modules=LORA_TARGETS).to_dict()
    FluxPipeline.save_lora_weights(directory, transformer_lora_layers=layers,
                                   transformer_lora_adapter_metadata=metadata)
    return Path(directory)


# --- one pair ------------------------------------------------------------------------------


@dataclass
class OFTRun:
    """The loaded models of a run (policy pipeline, scorer, detector) and what a pair step needs."""

    pipe: object
    transformer: object
    scorer: object
    detector: tuple | None  # (model, processor); None when training on the whole image
    img_ids: torch.Tensor
    sigmas: torch.Tensor
    device: torch.device
    weight_dtype: torch.dtype
    config: OFTConfig
    start: LoraFactors  # the fused starting LoRA, for the export

    @classmethod
    def load(cls, pipeline_path: str | Path, lora_path: str | Path | None, scorer_path: str | Path,
             detector_path: str | Path | None, config: OFTConfig) -> OFTRun:
        from diffusers import FluxPipeline

        from ml.core.detector import load_detector
        from ml.core.scorer import Scorer

        if config.use_mask and detector_path is None:
            raise ValueError("masked OFT needs a detector (or use_mask=False)")
        device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        weight_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        pipe = FluxPipeline.from_pretrained(str(pipeline_path), dtype=weight_dtype, local_files_only=True).to(device)
        return cls.from_pipeline(pipe, lora_path, Scorer.load(scorer_path, device=device),
                                 load_detector(detector_path, device) if config.use_mask else None, config)

    @classmethod
    def from_pipeline(cls, pipe, lora_path: str | Path | None, scorer, detector: tuple | None,
                      config: OFTConfig) -> OFTRun:
        """A run on models already loaded: the pipeline (on its device, frozen weights in their training
        dtype), a :class:`~ml.core.scorer.Scorer` and a detector ``(model, processor)`` or ``None``."""
        if config.use_mask and detector is None:
            raise ValueError("masked OFT needs a detector (or use_mask=False)")
        device, weight_dtype = pipe.transformer.device, pipe.transformer.dtype
        pipe.set_progress_bar_config(disable=True)
        vsf = vae_scale_factor(pipe.vae)
        rows, cols = token_grid(config.resolution, config.resolution, vsf)
        transformer, start = prepare_policy(pipe, lora_path, config)
        return cls(
            pipe=pipe, transformer=transformer, scorer=scorer, detector=detector if config.use_mask else None,
            img_ids=latent_image_ids(config.resolution, config.resolution, vsf, device=device, dtype=weight_dtype),
            sigmas=inference_sigmas(pipe.scheduler.config, config.num_steps, rows * cols),
            device=device, weight_dtype=weight_dtype, config=config, start=start,
        )

    def velocity(self, text, latents: torch.Tensor, sigma: float) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"), \
                training_attention():
            return predict_velocity(self.transformer, latents.to(self.weight_dtype),
                                    torch.full((latents.shape[0],), sigma, device=self.device), text, self.img_ids,
                                    guidance=self.config.guidance)


def _token_masks(run: OFTRun, images, subject: str) -> torch.Tensor:
    """(2, L) bool: the grown subject boxes of each image on the packed token grid."""
    from ml.core.detector import subject_masks

    size = run.config.resolution
    rows, cols = token_grid(size, size, vae_scale_factor(run.pipe.vae))
    if run.detector is None:
        return torch.ones(len(images), rows * cols, dtype=torch.bool, device=run.device)
    model, processor = run.detector
    masks = subject_masks(model, processor, images, [subject] * len(images), box_threshold=run.config.box_threshold,
                          text_threshold=run.config.text_threshold, grow=run.config.box_grow)
    return pixel_mask_to_tokens(torch.stack(masks), size, size, vae_scale_factor(run.pipe.vae)).to(run.device)


def pair_step(run: OFTRun, prompt: str, subject: str, generator: torch.Generator, weight: float) -> dict:
    """Sample two images, reward them, and back-propagate ``weight`` × the mean per-step pair loss."""
    config, size = run.config, run.config.resolution
    text = encode_text(run.pipe, [prompt, prompt], max_sequence_length=config.max_sequence_length, device=run.device)
    channels = run.transformer.config.in_channels // 4
    noise = packed_noise(2, channels, size, size, vae_scale_factor(run.pipe.vae), generator=generator,
                         device=run.device, dtype=torch.float32)
    trajectory = sample_trajectory(lambda x, sigma: run.velocity(text, x, sigma), noise, run.sigmas,
                                   churn=config.churn, generator=generator)
    images = to_pil(decode_latents(run.pipe.vae, trajectory.sample, size, size))
    rewards = run.scorer.score([prompt, prompt], images).tolist()
    stats = {"rewards": rewards, "loss": None, "mask_fraction": None, "clamped_fraction": None}
    if rewards[0] == rewards[1]:
        return stats
    winner = 0 if rewards[0] > rewards[1] else 1
    token_mask = _token_masks(run, images, subject)
    losses, clamped = [], 0
    for i in range(trajectory.steps):
        step = _step_loss(run, text, trajectory, i, token_mask, winner)
        with training_attention():
            (step.loss * weight).backward()
        losses.append(step.loss.item())
        clamped += int(step.clamped.sum())
    stats.update(loss=sum(losses) / len(losses), mask_fraction=token_mask.float().mean().item(),
                 clamped_fraction=clamped / (2 * trajectory.steps))
    return stats


def _step_loss(run: OFTRun, text, trajectory: Trajectory, i: int, token_mask: torch.Tensor, winner: int) -> PairLoss:
    """Re-score transition ``i`` of both samples under the policy (grad) and the reference (no grad)."""
    sigma, sigma_next = trajectory.sigmas[i].item(), trajectory.sigmas[i + 1].item()
    x = trajectory.latents[i]
    x_next = trajectory.latents[i + 1]
    churn = run.config.churn
    log_pi = transition_log_prob(x_next, x, run.velocity(text, x, sigma), sigma, sigma_next, churn)
    with torch.no_grad(), adapter_disabled(run.transformer):
        log_ref = transition_log_prob(x_next, x, run.velocity(text, x, sigma), sigma, sigma_next, churn)
    return pair_loss(log_pi, log_ref, token_mask, winner, channels=x.shape[-1], beta=run.config.beta,
                     clip_eps=run.config.clip_eps)


# --- the loop ------------------------------------------------------------------------------


def load_prompts(path: str | Path) -> list[tuple[str, str]]:
    """A reference prompt file (JSON list of ``{"prompt": IP, "object": subject phrase}``) as pairs."""
    return normalise_prompts(json.loads(Path(path).read_text()))


def normalise_prompts(items: Sequence) -> list[tuple[str, str]]:
    """``(prompt, subject)`` pairs from pairs or from ``{"prompt", "object"}`` dicts."""
    pairs = [(item["prompt"], item["object"]) if isinstance(item, dict) else tuple(item) for item in items]
    if not pairs or any(len(p) != 2 or not all(isinstance(v, str) and v.strip() for v in p) for p in pairs):
        raise ValueError("need a non-empty list of (prompt, subject) pairs with non-empty strings")
    return pairs


def train_oft(
    pipeline_path: str | Path,
    lora_path: str | Path | None,
    scorer_path: str | Path,
    detector_path: str | Path | None,
    prompts_with_subjects: Sequence,
    out_dir: str | Path,
    config: OFTConfig | None = None,
    *,
    on_step: Callable[[dict], None] | None = None,
) -> OFTResult:
    """Train (or resume) OFT from ``lora_path`` (an SFT LoRA; ``None`` starts from the base model).

    ``prompts_with_subjects``: ``(implicit prompt, subject phrase)`` pairs or reference-format dicts.
    ``detector_path`` may be ``None`` only with ``use_mask=False``. ``on_step`` receives each optimiser
    step's metrics (the dict appended to ``out_dir/metrics.jsonl``).
    """
    config = config or OFTConfig()
    prompts = normalise_prompts(prompts_with_subjects)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = OFTRun.load(pipeline_path, lora_path, scorer_path, detector_path, config)
    transformer = run.transformer
    trainable = [p for p in transformer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    fingerprint = _fingerprint(prompts, lora_path)
    step, seen = 0, 0
    checkpoint_path = out_dir / CHECKPOINT
    if checkpoint_path.exists():
        step, seen = _restore(checkpoint_path, transformer, optimizer, config, fingerprint)
    _truncate_metrics(out_dir / METRICS, step)

    transformer.train()
    last_loss = None
    while step < config.max_steps:
        metrics = optimizer_step(run, optimizer, trainable, prompts, step, seen)
        step, seen = metrics["optimizer_step"], metrics["prompts_seen"]
        last_loss = metrics["loss"]
        with open(out_dir / METRICS, "a") as f:
            f.write(json.dumps(metrics) + "\n")
        if on_step is not None:
            on_step(metrics)
        if step % config.checkpoint_every == 0 or step == config.max_steps:
            _save_checkpoint(checkpoint_path, transformer, optimizer, config, fingerprint, step, seen)
            export_lora(transformer, run.start, out_dir / LORA_DIR)

    if not (out_dir / LORA_DIR).exists():  # resumed a finished run whose export was lost
        export_lora(transformer, run.start, out_dir / LORA_DIR)
    return OFTResult(out_dir / LORA_DIR, step, seen, last_loss)


def optimizer_step(run: OFTRun, optimizer, trainable: list, prompts: list[tuple[str, str]], step: int,
                   seen: int) -> dict:
    """``prompts_per_step`` pair steps from stream position ``seen``, then one clipped optimiser step;
    returns the step's metrics (``optimizer_step`` and ``prompts_seen`` are the new counters)."""
    config = run.config
    started = time.perf_counter()
    weight = 1.0 / (config.prompts_per_step * config.num_steps)
    pairs = []
    for _ in range(config.prompts_per_step):
        index, pair_seed = _prompt_index(len(prompts), config.seed, seen), _pair_seed(config.seed, seen)
        prompt, subject = prompts[index]
        stats = pair_step(run, prompt, subject, torch.Generator("cpu").manual_seed(pair_seed), weight)
        pairs.append({"prompt_index": index, "seed": pair_seed, **stats})
        seen += 1
    grad_norm = torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return _step_metrics(pairs, step + 1, seen, len(prompts), grad_norm.item(), config.lr,
                         time.perf_counter() - started)


def _step_metrics(pairs: list[dict], step: int, seen: int, n_prompts: int, grad_norm: float, lr: float,
                  seconds: float) -> dict:
    trained = [p for p in pairs if p["loss"] is not None]

    def mean(values):
        values = list(values)
        return sum(values) / len(values) if values else None

    return {
        "optimizer_step": step,
        "prompts_seen": seen,
        "epoch": seen / n_prompts,
        "pairs_trained": len(trained),
        "ties": len(pairs) - len(trained),
        "loss": mean(p["loss"] for p in trained),
        "reward_mean": mean(r for p in pairs for r in p["rewards"]),
        "reward_gap": mean(abs(p["rewards"][0] - p["rewards"][1]) for p in pairs),
        "mask_fraction": mean(p["mask_fraction"] for p in trained),
        "clamped_fraction": mean(p["clamped_fraction"] for p in trained),
        "grad_norm": grad_norm,
        "lr": lr,
        "seconds": seconds,
        "pairs": pairs,
    }


def _prompt_index(n: int, seed: int, position: int) -> int:
    """Position in the prompt stream -> prompt index: a fresh seeded permutation per epoch."""
    epoch, offset = divmod(position, n)
    return _permutation(n, seed, epoch)[offset]


@lru_cache(maxsize=2)
def _permutation(n: int, seed: int, epoch: int) -> list[int]:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()


def _pair_seed(seed: int, position: int) -> int:
    """The seed of every random draw (starting noise, sampler noise) of the pair at ``position``."""
    return (seed * 1_000_003 + position) % 2**63


# --- checkpoints ---------------------------------------------------------------------------


def _fingerprint(prompts: list[tuple[str, str]], lora_path) -> str:
    """Identifies the prompt set (in order) and the starting LoRA, for resume checks."""
    digest = hashlib.sha256(str(lora_path).encode() + b"\0")
    for prompt, subject in prompts:
        digest.update(prompt.encode() + b"\0" + subject.encode() + b"\0")
    return f"{len(prompts)}:{digest.hexdigest()}"


def _save_checkpoint(path: Path, transformer, optimizer, config: OFTConfig, fingerprint: str, step: int,
                     seen: int) -> None:
    state = {
        "optimizer_steps": step,
        "prompts_seen": seen,
        "config": asdict(config),
        "fingerprint": fingerprint,
        "trainable": {n: p.detach().cpu() for n, p in transformer.named_parameters() if p.requires_grad},
        "optimizer": optimizer.state_dict(),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _restore(path: Path, transformer, optimizer, config: OFTConfig, fingerprint: str) -> tuple[int, int]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    changed = sorted(k for k, v in asdict(config).items()
                     if k not in RESUMABLE_CHANGES and state["config"].get(k) != v)
    if changed:
        raise ValueError(f"cannot resume {path}: config changed in {changed}; use a new output directory")
    if state["fingerprint"] != fingerprint:
        raise ValueError(f"cannot resume {path}: the prompts or the starting LoRA differ from the checkpoint's")
    params = dict(transformer.named_parameters())
    with torch.no_grad():
        for name, value in state["trainable"].items():
            params[name].copy_(value)
    optimizer.load_state_dict(state["optimizer"])
    return state["optimizer_steps"], state["prompts_seen"]


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines of steps after the checkpoint (they are about to be redone)."""
    if not path.exists():
        return
    lines = [line for line in path.read_text().splitlines() if line and json.loads(line)["optimizer_step"] <= step]
    path.write_text("".join(line + "\n" for line in lines))
