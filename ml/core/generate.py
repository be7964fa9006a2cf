"""Batched, reproducible FLUX generation with full metadata per image.

Reproducibility is per image: each image gets its own CPU ``torch.Generator`` seeded with its seed,
and the pipeline draws each image's starting noise from its own generator. So an image depends on
(model, prompt, seed, steps, guidance, size) only, not on what else was in its batch or on which
device ran it (up to the device's float arithmetic).

Speed (:func:`optimize_pipeline`, figures in ``docs/benchmarks/gpu.md``): a loaded LoRA is fused into
the weights, each attention's q/k/v projections become one matrix product, and the transformer's
repeated blocks are compiled (regional ``torch.compile``: one double-stream and one single-stream block
graph serve all 57 blocks, instead of a whole-model compile, which took 130 s on an H200);
:func:`generate` batches ``batch_size`` images per pipeline call. All of it is bf16 and changes no
result beyond float rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from PIL import Image
from tqdm.auto import tqdm

from ml.core.flow import check_resolution


@dataclass
class GeneratedImage:
    image: Image.Image = field(repr=False)
    model: str
    prompt: str
    prompt_kind: str | None
    seed: int
    steps: int
    guidance: float
    width: int
    height: int

    def metadata(self) -> dict:
        """Everything but the pixels, JSON-ready."""
        data = asdict(self)
        del data["image"]
        return data


def load_pipeline(
    path: str | Path,
    device=None,
    dtype: torch.dtype | None = None,
    compile: bool | None = None,
    lora: str | Path | None = None,
):
    """Load a FLUX pipeline directory (tiny, FLUX.1-dev or -schnell) offline.

    Defaults: CUDA with bf16 weights when available, else CPU in fp32 (bf16 on CPU is slow and
    lossy). ``lora`` loads a LoRA directory written by :func:`ml.core.sft.train_sft`.
    ``compile=True`` applies :func:`optimize_pipeline` (LoRA fused, fused QKV, the repeated blocks
    compiled); the first call at each new batch size and resolution pays the compile time (seconds
    with regional compilation). ``None`` (default): on CUDA only. Such a pipeline is for generation
    only: training needs the separate, unfused projections.
    """
    from diffusers import FluxPipeline

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    pipe = FluxPipeline.from_pretrained(str(path), dtype=dtype, local_files_only=True)
    if lora is not None:
        pipe.load_lora_weights(str(lora))
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    if compile or (compile is None and device.type == "cuda"):
        optimize_pipeline(pipe)
    return pipe


def optimize_pipeline(
    pipe,
    *,
    compile: str | None = "regional",
    fuse_qkv: bool = True,
    mode: str | None = None,
    backend: str = "inductor",
    dynamic: bool | None = None,
    fp8: bool = False,
):
    """Make a FLUX pipeline faster for generation, in place; returns it.

    * A loaded LoRA is fused into the transformer's weights and its modules dropped (a LoRA costs two
      extra small matrix products per projection and per step otherwise).
    * ``fuse_qkv``: each attention's q, k and v projections (and the text stream's) become one
      matrix product (diffusers' ``fuse_qkv_projections``).
    * ``compile``: ``"regional"`` compiles every repeated transformer block in place (diffusers'
      ``compile_repeated_blocks``, ``fullgraph=True``); ``"full"`` compiles the whole transformer;
      ``None`` leaves it eager. ``dynamic`` is ``torch.compile``'s: ``None`` (its default) compiles
      the first batch size and resolution with static shapes and, at the first change, once more with
      dynamic ones, which then serve every later size. ``mode`` is ``torch.compile``'s too
      (``"reduce-overhead"`` adds CUDA graphs), and ``backend`` (the tests use ``"eager"``: the graph
      capture without code generation).
    * ``fp8`` (off by default): the blocks' per-token matrix products in float8 (:mod:`ml.core.fp8`,
      which states the quality trade-off); Hopper GPUs run them at twice the bf16 rate.
    """
    transformer = pipe.transformer
    if getattr(transformer, "peft_config", None):
        pipe.fuse_lora(components=["transformer"])
        pipe.unload_lora_weights()
    if fuse_qkv:
        transformer.fuse_qkv_projections()
    if fp8:
        from ml.core.fp8 import to_fp8

        to_fp8(transformer)
    options = {"fullgraph": True, "dynamic": dynamic, "backend": backend, **({"mode": mode} if mode else {})}
    if compile == "regional":
        transformer.compile_repeated_blocks(**options)
    elif compile == "full":
        transformer.compile(**options)
    elif compile is not None:
        raise ValueError(f"compile {compile!r}: use 'regional', 'full' or None")
    return pipe


def generate(
    pipe,
    prompts: Sequence[str],
    *,
    seeds: Sequence[int],
    steps: int,
    guidance: float,
    width: int,
    height: int,
    batch_size: int,
    prompt_kind: str | None = None,
    model_name: str | None = None,
    max_sequence_length: int = 512,
    progress: bool = False,
    on_step: Callable[[int], None] | None = None,
) -> list[GeneratedImage]:
    """One image per (prompt, seed) pair, ``batch_size`` images per pipeline call, in input order.

    ``guidance`` is the embedded guidance scale of FLUX.1-dev (3.5 is its default); models without
    a guidance embedding (schnell) ignore it. ``model_name`` defaults to the pipeline's directory
    name (pass one that also names a loaded LoRA). ``max_sequence_length`` is the T5 prompt length
    (dev: 512, schnell: at most 256). ``on_step(i)`` is called after each denoising step of each batch
    (from the pipeline's step callback, without synchronising the device).
    """
    prompts = list(prompts)
    seeds = [int(s) for s in seeds]
    if len(seeds) != len(prompts):
        raise ValueError(f"need one seed per prompt: {len(prompts)} prompts, {len(seeds)} seeds")
    if steps < 1 or batch_size < 1:
        raise ValueError("steps and batch_size must be at least 1")
    check_resolution(height, width, pipe.vae_scale_factor)
    model_name = model_name or Path(pipe.name_or_path or "flux").name

    def step_end(_pipe, i, _t, callback_kwargs):
        if on_step is not None:
            on_step(i)
        return callback_kwargs

    results: list[GeneratedImage] = []
    starts = range(0, len(prompts), batch_size)
    for start in tqdm(starts, desc="generate", unit="batch", disable=not progress):
        batch_prompts = prompts[start : start + batch_size]
        batch_seeds = seeds[start : start + batch_size]
        images = pipe(
            prompt=batch_prompts,
            generator=[torch.Generator("cpu").manual_seed(s) for s in batch_seeds],
            num_inference_steps=steps,
            guidance_scale=guidance,
            width=width,
            height=height,
            max_sequence_length=max_sequence_length,
            output_type="pil",
            callback_on_step_end=step_end if on_step is not None else None,
        ).images
        results += [
            GeneratedImage(image, model_name, prompt, prompt_kind, seed, steps, guidance, width, height)
            for image, prompt, seed in zip(images, batch_prompts, batch_seeds, strict=True)
        ]
    return results
