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
  ε = 0.1, i.e. its log to ``[log 0.9, log 1.1] ≈ [−0.105, +0.095]``, per sample and per step.
  ``torch.clamp`` passes no gradient outside that range,
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
* **Recipes** (:mod:`ml.core.recipes`). Everything above is the ``platform`` recipe. ``recipe="paper"``
  reproduces the research OFT where ours differs, each point its own field (``None`` = the recipe's):
  its churn sampler (``sampler``), log-ratios averaged over *all* latent elements with zeros outside the
  mask (``mask_mean``) on the latent-cell grid (``mask_grid``), one enclosing box grown by 10 % of the image
  (``subject_region``), guidance 0, the 2x2 preference matrix averaged (``preference_loss``), training the
  SFT adapter on against a frozen copy of that adapter (``reference``), prompts drawn with replacement
  (``prompt_sampling``), 2 prompts per step and 156 steps. Its reference is a second copy of the SFT
  *adapter* only; the research code deep-copies the whole transformer.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Literal, NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import nn

from ml.core import recipes
from ml.core.flow import (
    box_to_grid,
    cells_to_elements,
    decode_latents,
    encode_text,
    inference_sigmas,
    latent_image_ids,
    packed_noise,
    pixel_mask_to_grid,
    predict_velocity,
    to_pil,
    token_grid,
    training_attention,
    vae_scale_factor,
)
from ml.core.sampler import DEFAULT_CHURN, DEFAULT_STEPS, Trajectory, sample_trajectory, transition_log_prob
from ml.core.sft import LORA_TARGETS

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
LORA_DIR = "lora"
ADAPTER = "default"  # the trained OFT adapter
SFT_ADAPTER = "sft"  # the LoRA OFT starts from, fused into the base weights
REFERENCE_ADAPTER = "reference"  # reference="sft_adapter": a frozen copy of the starting LoRA
RESUMABLE_CHANGES = {"max_steps", "checkpoint_every", "device"}


@dataclass
class OFTConfig:
    """Fields left at ``None`` take the value of ``recipe`` (:data:`ml.core.recipes.OFT`)."""

    recipe: str = recipes.DEFAULT  # "platform" or "paper": the defaults of the fields left at None
    resolution: int = 512  # square images, pixels
    num_steps: int = DEFAULT_STEPS  # sampler steps per image
    churn: float = DEFAULT_CHURN  # sampler noise, see ml.core.sampler
    sampler: str | None = None  # "euler_maruyama" or "churn" (ml.core.sampler)
    guidance: float | None = None  # guidance-embedding value for sampling (FLUX.1-dev's default: 3.5)
    beta: float = 10.0
    clip_eps: float = 0.1  # per-step probability ratio clipped to [1 - eps, 1 + eps]
    preference_loss: str | None = None  # "pair": -log σ(β Δ); "matrix": the 2x2 preference matrix averaged
    mask_mean: str | None = None  # log-ratio averaged "inside" the mask, or over "all" elements
    mask_grid: str | None = None  # mask on the packed "token" grid or the VAE "latent" cell grid
    subject_region: str | None = None  # "union" of grown boxes, or one "enclosing" box grown by the image
    reference: str | None = None  # "fused_sft" (fresh LoRA on the fused SFT) or "sft_adapter" (train it on)
    lr: float = 3e-4
    weight_decay: float = 1e-4
    max_grad_norm: float = 1.0
    rank: int = 16
    lora_alpha: int = 16
    prompts_per_step: int | None = None  # pairs accumulated per optimiser step
    max_steps: int | None = None  # optimiser steps in total, counting those before a resume
    prompt_sampling: str | None = None  # "permutation" per epoch, or "replacement" (independent draws)
    use_mask: bool = True  # False: whole image (the paper's ablation, which collapses)
    box_threshold: float = 0.35
    text_threshold: float = 0.25
    box_grow: float = 0.10  # union: of each box's size per side; enclosing: of the image, added to w and h
    max_sequence_length: int = 512  # T5 prompt length (schnell: at most 256)
    gradient_checkpointing: bool = True
    checkpoint_every: int = 10
    seed: int = 0
    device: str | None = None  # default: cuda if available

    def __post_init__(self):
        recipes.check_recipe(self.recipe)
        recipes.check_choices(self)

    @classmethod
    def from_dict(cls, data: dict) -> OFTConfig:
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown OFT config fields: {sorted(unknown)}")
        return cls(**data)

    def resolved(self) -> OFTConfig:
        """Every ``None`` filled in from the recipe."""
        return recipes.resolve(self, recipes.OFT)


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


def masked_log_ratio(
    log_pi: torch.Tensor, log_ref: torch.Tensor, mask: torch.Tensor, channels: int, mean_over: str = "inside"
) -> torch.Tensor:
    """The masked mean log-ratio per sample: (B, ...) -> (B,).

    ``log_pi``, ``log_ref`` and ``mask`` have one entry per token (each the sum of ``channels`` element
    log-densities) or per element (``channels=1``). ``mean_over="inside"`` (platform):
    ``Σ_mask (log π − log π_ref) / (channels · |mask|)``; ``"all"`` (the research code): the same sum over
    *every* element, ``/ (channels · entries)``, the elements outside the mask counting as zeros.
    """
    weights = mask.to(log_pi.dtype)
    dims = tuple(range(1, log_pi.dim()))
    masked = ((log_pi - log_ref) * weights).sum(dims)
    if mean_over == "inside":
        return masked / (weights.sum(dims).clamp_min(1) * channels)
    if mean_over == "all":
        return masked / (weights[0].numel() * channels)
    raise ValueError(f"unknown mask mean {mean_over!r}: use inside or all")


def clip_bounds(clip_eps: float) -> tuple[float, float]:
    """``(log(1 − ε), log(1 + ε))``: the probability-ratio clip of D3PO, in log space."""
    return math.log(1 - clip_eps), math.log(1 + clip_eps)


def pair_loss(
    log_pi: torch.Tensor,
    log_ref: torch.Tensor,
    mask: torch.Tensor,
    winner: int,
    *,
    channels: int,
    beta: float = 10.0,
    clip_eps: float = 0.1,
    mask_mean: str = "inside",
    preference: str = "pair",
) -> PairLoss:
    """One step's DPO-style loss for a pair; the first dimension of the inputs is the two samples.

    ``preference="pair"`` (platform): ``−log σ(β (r̃_w − r̃_l))``. ``"matrix"`` (the research code): the mean
    over the 2x2 matrix ``−log σ(β (r̃_i − r̃_j) · [reward_i > reward_j])``, whose three entries without a
    preference are log 2 each: ``(3 log 2 − log σ(β (r̃_w − r̃_l))) / 4``, a quarter of the gradient.
    """
    low, high = clip_bounds(clip_eps)
    ratios = masked_log_ratio(log_pi, log_ref, mask, channels, mask_mean)
    clamped = ratios.clamp(low, high)
    if preference == "pair":
        loss = -F.logsigmoid(beta * (clamped[winner] - clamped[1 - winner]))
    elif preference == "matrix":
        prefers = torch.zeros(2, 2, dtype=clamped.dtype, device=clamped.device)
        prefers[winner, 1 - winner] = 1.0
        loss = -F.logsigmoid(beta * (clamped[:, None] - clamped[None, :]) * prefers).mean()
    else:
        raise ValueError(f"unknown preference loss {preference!r}: use pair or matrix")
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
        name: (
            cast(nn.Linear, module.lora_A[adapter]).weight.detach().float().cpu(),
            cast(nn.Linear, module.lora_B[adapter]).weight.detach().float().cpu(),
            float(module.scaling[adapter]),
        )
        for name, module in transformer.named_modules()
        if isinstance(module, LoraLayer) and adapter in module.lora_A
    }


def prepare_policy(pipe, lora_path: str | Path | None, config: OFTConfig):
    """Freeze the pipeline and set up the trained LoRA and the reference.

    ``reference="fused_sft"``: fuse the starting LoRA (if any) into the transformer and add a fresh LoRA
    (B = 0, so policy == reference at first); the reference is the adapter disabled. ``"sft_adapter"``
    (the research code): the starting LoRA itself is trained, and a second, frozen copy of it (adapter
    ``reference``) is the reference; without a starting LoRA a fresh Gaussian-initialised one is trained
    against the base (adapter disabled). Returns ``(transformer, start_factors)``: the fused LoRA's factors
    (empty when nothing was fused), kept for the export.
    """
    from peft import LoraConfig

    for module in (pipe.vae, pipe.text_encoder, pipe.text_encoder_2, pipe.transformer):
        module.requires_grad_(False)
    transformer = pipe.transformer
    start: LoraFactors = {}
    if config.reference == "sft_adapter" and lora_path is not None:
        _train_starting_lora(pipe, lora_path)
    else:
        if lora_path is not None:
            pipe.load_lora_weights(str(lora_path), adapter_name=SFT_ADAPTER)
            start = lora_factors(transformer, SFT_ADAPTER)
            if not start:
                raise ValueError(f"{lora_path}: no LoRA layers for the transformer")
            pipe.fuse_lora(components=["transformer"], adapter_names=[SFT_ADAPTER])
            pipe.unload_lora_weights()
        init: Literal["gaussian"] | bool = "gaussian" if config.reference == "sft_adapter" else True
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            transformer.add_adapter(
                LoraConfig(
                    r=config.rank, lora_alpha=config.lora_alpha, init_lora_weights=init, target_modules=LORA_TARGETS
                ),
                adapter_name=ADAPTER,
            )
    for name, p in transformer.named_parameters():
        if p.requires_grad or f".{REFERENCE_ADAPTER}." in name:
            p.data = p.data.float()  # both copies of a LoRA in fp32, so policy == reference at first
    if config.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    return transformer, start


def _train_starting_lora(pipe, lora_path: str | Path) -> None:
    """Load the starting LoRA twice: as the trained adapter and as the frozen reference copy."""
    transformer = pipe.transformer
    with warnings.catch_warnings():  # peft warns that a second adapter joins the first: that is the point
        warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
        for adapter in (ADAPTER, REFERENCE_ADAPTER):
            pipe.load_lora_weights(str(lora_path), adapter_name=adapter)
    if not lora_factors(transformer, ADAPTER):
        raise ValueError(f"{lora_path}: no LoRA layers for the transformer")
    transformer.set_adapter(ADAPTER)
    for name, p in transformer.named_parameters():
        p.requires_grad_(f".{ADAPTER}." in name and "lora_" in name)


@contextmanager
def reference_model(transformer, config: OFTConfig) -> Iterator[None]:
    """Run the transformer as the reference: the frozen copy of the starting LoRA when there is one
    (``reference="sft_adapter"``), else without any LoRA (:func:`adapter_disabled`)."""
    has_copy = any(f".{REFERENCE_ADAPTER}." in name for name, _ in transformer.named_parameters())
    if config.reference != "sft_adapter" or not has_copy:
        with adapter_disabled(transformer):
            yield
        return
    transformer.set_adapter(REFERENCE_ADAPTER)
    try:
        yield
    finally:
        transformer.set_adapter(ADAPTER)


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
    FluxPipeline.save_lora_weights(
        directory, transformer_lora_layers=layers, transformer_lora_adapter_metadata=metadata
    )
    return Path(directory)


# --- one pair ------------------------------------------------------------------------------


@dataclass
class OFTRun:
    """The loaded models of a run (policy pipeline, scorer, detector) and what a pair step needs."""

    pipe: Any  # a diffusers FluxPipeline
    transformer: Any  # its transformer, with the trained LoRA
    scorer: Any  # an ml.core.scorer.Scorer
    detector: tuple | None  # (model, processor); None when training on the whole image
    img_ids: torch.Tensor
    sigmas: torch.Tensor
    device: torch.device
    weight_dtype: torch.dtype
    config: OFTConfig
    start: LoraFactors  # the fused starting LoRA, for the export

    @classmethod
    def load(
        cls,
        pipeline_path: str | Path,
        lora_path: str | Path | None,
        scorer_path: str | Path,
        detector_path: str | Path | None,
        config: OFTConfig,
    ) -> OFTRun:
        from diffusers import FluxPipeline

        from ml.core.detector import load_detector
        from ml.core.scorer import Scorer

        if config.use_mask and detector_path is None:
            raise ValueError("masked OFT needs a detector (or use_mask=False)")
        device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        weight_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        pipe = FluxPipeline.from_pretrained(str(pipeline_path), dtype=weight_dtype, local_files_only=True).to(device)
        return cls.from_pipeline(
            pipe,
            lora_path,
            Scorer.load(scorer_path, device=device),
            load_detector(detector_path, device) if config.use_mask and detector_path is not None else None,
            config,
        )

    @classmethod
    def from_pipeline(
        cls, pipe, lora_path: str | Path | None, scorer, detector: tuple | None, config: OFTConfig
    ) -> OFTRun:
        """A run on models already loaded: the pipeline (on its device, frozen weights in their training
        dtype), a :class:`~ml.core.scorer.Scorer` and a detector ``(model, processor)`` or ``None``."""
        config = config.resolved()
        if config.use_mask and detector is None:
            raise ValueError("masked OFT needs a detector (or use_mask=False)")
        device, weight_dtype = pipe.transformer.device, pipe.transformer.dtype
        pipe.set_progress_bar_config(disable=True)
        vsf = vae_scale_factor(pipe.vae)
        rows, cols = token_grid(config.resolution, config.resolution, vsf)
        transformer, start = prepare_policy(pipe, lora_path, config)
        return cls(
            pipe=pipe,
            transformer=transformer,
            scorer=scorer,
            detector=detector if config.use_mask else None,
            img_ids=latent_image_ids(config.resolution, config.resolution, vsf, device=device, dtype=weight_dtype),
            sigmas=inference_sigmas(pipe.scheduler.config, config.num_steps, rows * cols),
            device=device,
            weight_dtype=weight_dtype,
            config=config,
            start=start,
        )

    def velocity(self, text, latents: torch.Tensor, sigma: float) -> torch.Tensor:
        assert self.config.guidance is not None  # a resolved config (recipe filled in)
        with (
            torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"),
            training_attention(),
        ):
            return predict_velocity(
                self.transformer,
                latents.to(self.weight_dtype),
                torch.full((latents.shape[0],), sigma, device=self.device),
                text,
                self.img_ids,
                guidance=self.config.guidance,
            )


def enclosing_box(boxes: torch.Tensor, width: int, height: int, grow: float) -> tuple[float, ...]:
    """The research OFT's subject box, ``(x0, y0, x1, y1)`` in fractions of the image.

    One box enclosing every detection (pixel ``(x0, y0, x1, y1)`` rows of ``boxes``); its width and its
    height each grow by ``grow`` (a fraction of the image, half on each side) when at most ``1 − grow``,
    else become the whole side, about the same centre. No detection: the whole image. The result may
    reach past the image; :func:`ml.core.flow.box_to_grid` clips it.
    """
    boxes = torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return 0.0, 0.0, 1.0, 1.0
    x0, y0 = boxes[:, 0].min().item() / width, boxes[:, 1].min().item() / height
    x1, y1 = boxes[:, 2].max().item() / width, boxes[:, 3].max().item() / height
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    w, h = (side + grow if side <= 1 - grow else 1.0 for side in (x1 - x0, y1 - y0))
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def _region_cells(run: OFTRun, images, subject: str, rows: int, cols: int) -> torch.Tensor:
    """(2, rows, cols) bool: each image's subject region on a grid of the image (see ``subject_region``)."""
    from ml.core.detector import detect_boxes, subject_masks

    config = run.config
    if run.detector is None:
        return torch.ones(len(images), rows, cols, dtype=torch.bool)
    model, processor = run.detector
    phrases = [subject] * len(images)
    if config.subject_region == "union":
        masks = subject_masks(
            model,
            processor,
            images,
            phrases,
            box_threshold=config.box_threshold,
            text_threshold=config.text_threshold,
            grow=config.box_grow,
        )
        return pixel_mask_to_grid(torch.stack(masks), rows, cols)
    boxes = detect_boxes(model, processor, images, phrases, config.box_threshold, config.text_threshold)
    return torch.stack(
        [
            box_to_grid(enclosing_box(found, image.width, image.height, config.box_grow), rows, cols)
            for found, image in zip(boxes, images, strict=True)
        ]
    )


def region_mask(run: OFTRun, images, subject: str) -> torch.Tensor:
    """The mask the log-ratios are taken under, in the layout of the log-probs it weights:
    (2, L) over the packed tokens (``mask_grid="token"``), or (2, L, C) over the latent elements, one VAE
    latent cell's channels together (``"latent"``)."""
    size, vsf = run.config.resolution, vae_scale_factor(run.pipe.vae)
    if run.config.mask_grid == "token":
        rows, cols = token_grid(size, size, vsf)
        return _region_cells(run, images, subject, rows, cols).reshape(len(images), rows * cols).to(run.device)
    cells = _region_cells(run, images, subject, size // vsf, size // vsf)
    return cells_to_elements(cells, run.transformer.config.in_channels // 4).to(run.device)


def pair_step(run: OFTRun, prompt: str, subject: str, generator: torch.Generator, weight: float) -> dict:
    """Sample two images, reward them, and back-propagate ``weight`` × the mean per-step pair loss."""
    config, size = run.config, run.config.resolution
    assert config.sampler is not None  # a resolved config (recipe filled in)
    text = encode_text(run.pipe, [prompt, prompt], max_sequence_length=config.max_sequence_length, device=run.device)
    channels = run.transformer.config.in_channels // 4
    noise = packed_noise(
        2,
        channels,
        size,
        size,
        vae_scale_factor(run.pipe.vae),
        generator=generator,
        device=run.device,
        dtype=torch.float32,
    )
    trajectory = sample_trajectory(
        lambda x, sigma: run.velocity(text, x, sigma),
        noise,
        run.sigmas,
        churn=config.churn,
        generator=generator,
        sampler=config.sampler,
    )
    images = to_pil(decode_latents(run.pipe.vae, trajectory.sample, size, size))
    rewards = run.scorer.score([prompt, prompt], images).tolist()
    stats = {"rewards": rewards, "loss": None, "mask_fraction": None, "clamped_fraction": None}
    if rewards[0] == rewards[1]:
        return stats
    winner = 0 if rewards[0] > rewards[1] else 1
    mask = region_mask(run, images, subject)
    losses, clamped = [], 0
    for i in range(trajectory.steps):
        step = _step_loss(run, text, trajectory, i, mask, winner)
        with training_attention():
            (step.loss * weight).backward()
        losses.append(step.loss.item())
        clamped += int(step.clamped.sum())
    stats.update(
        loss=sum(losses) / len(losses),
        mask_fraction=mask.float().mean().item(),
        clamped_fraction=clamped / (2 * trajectory.steps),
    )
    return stats


def _step_loss(run: OFTRun, text, trajectory: Trajectory, i: int, mask: torch.Tensor, winner: int) -> PairLoss:
    """Re-score transition ``i`` of both samples under the policy (grad) and the reference (no grad)."""
    config = run.config
    assert config.sampler is not None and config.mask_mean is not None and config.preference_loss is not None
    sigma, sigma_next = trajectory.sigmas[i].item(), trajectory.sigmas[i + 1].item()
    x = trajectory.latents[i]
    x_next = trajectory.latents[i + 1]
    per_element = mask.dim() == 3
    step = partial(
        transition_log_prob,
        sigma=sigma,
        sigma_next=sigma_next,
        churn=config.churn,
        sampler=config.sampler,
        steps=trajectory.steps,
        per_element=per_element,
    )
    log_pi = step(x_next, x, run.velocity(text, x, sigma))
    with torch.no_grad(), reference_model(run.transformer, config):
        log_ref = step(x_next, x, run.velocity(text, x, sigma))
    return pair_loss(
        log_pi,
        log_ref,
        mask,
        winner,
        channels=1 if per_element else x.shape[-1],
        beta=config.beta,
        clip_eps=config.clip_eps,
        mask_mean=config.mask_mean,
        preference=config.preference_loss,
    )


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
    config = (config or OFTConfig()).resolved()
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
    assert config.max_steps is not None  # a resolved config (recipe filled in)
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


def optimizer_step(
    run: OFTRun, optimizer, trainable: list, prompts: list[tuple[str, str]], step: int, seen: int
) -> dict:
    """``prompts_per_step`` pair steps from stream position ``seen``, then one clipped optimiser step;
    returns the step's metrics (``optimizer_step`` and ``prompts_seen`` are the new counters)."""
    config = run.config
    assert config.prompts_per_step is not None and config.prompt_sampling is not None  # a resolved config
    started = time.perf_counter()
    weight = 1.0 / (config.prompts_per_step * config.num_steps)
    pairs = []
    for _ in range(config.prompts_per_step):
        index = prompt_index(len(prompts), config.seed, seen, config.prompt_sampling)
        pair_seed = _pair_seed(config.seed, seen)
        prompt, subject = prompts[index]
        stats = pair_step(run, prompt, subject, torch.Generator("cpu").manual_seed(pair_seed), weight)
        pairs.append({"prompt_index": index, "seed": pair_seed, **stats})
        seen += 1
    grad_norm = torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return _step_metrics(
        pairs, step + 1, seen, len(prompts), grad_norm.item(), config.lr, time.perf_counter() - started
    )


def _step_metrics(
    pairs: list[dict], step: int, seen: int, n_prompts: int, grad_norm: float, lr: float, seconds: float
) -> dict:
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


def prompt_index(n: int, seed: int, position: int, sampling: str = "permutation") -> int:
    """Position in the prompt stream -> prompt index: a fresh seeded permutation per epoch
    (``"permutation"``), or an independent uniform draw (``"replacement"``, the research code's
    ``random.choice``), seeded by (``seed``, ``position``)."""
    if sampling == "replacement":
        generator = torch.Generator().manual_seed((seed * 1_000_003 + position) * 4 + 3)
        return int(torch.randint(n, (1,), generator=generator))
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


def _save_checkpoint(
    path: Path, transformer, optimizer, config: OFTConfig, fingerprint: str, step: int, seen: int
) -> None:
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
    changed = sorted(k for k, v in asdict(config).items() if k not in RESUMABLE_CHANGES and state["config"].get(k) != v)
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
