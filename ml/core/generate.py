"""Batched, reproducible FLUX generation with full metadata per image.

Reproducibility is per image: each image gets its own CPU ``torch.Generator`` seeded with its seed,
and the pipeline draws each image's starting noise from its own generator. So an image depends on
(model, prompt, seed, steps, guidance, size) only, not on what else was in its batch or on which
device ran it (up to the device's float arithmetic).
"""

from __future__ import annotations

from collections.abc import Sequence
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


def load_pipeline(path: str | Path, device=None, dtype: torch.dtype | None = None, compile: bool = False,
                  lora: str | Path | None = None):
    """Load a FLUX pipeline directory (tiny, FLUX.1-dev or -schnell) offline.

    Defaults: CUDA with bf16 weights when available, else CPU in fp32 (bf16 on CPU is slow and
    lossy). ``lora`` loads a LoRA directory written by :func:`ml.core.sft.train_sft`.
    ``compile=True`` compiles the transformer in place (``nn.Module.compile``), which keeps its
    ``config`` and LoRA hooks reachable; the first call pays the compile time.
    """
    from diffusers import FluxPipeline

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    pipe = FluxPipeline.from_pretrained(str(path), dtype=dtype, local_files_only=True)
    if lora is not None:
        pipe.load_lora_weights(str(lora))
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    if compile:
        pipe.transformer.compile()
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
) -> list[GeneratedImage]:
    """One image per (prompt, seed) pair, ``batch_size`` images per pipeline call, in input order.

    ``guidance`` is the embedded guidance scale of FLUX.1-dev (3.5 is its default); models without
    a guidance embedding (schnell) ignore it. ``model_name`` defaults to the pipeline's directory
    name (pass one that also names a loaded LoRA). ``max_sequence_length`` is the T5 prompt length
    (dev: 512, schnell: at most 256).
    """
    prompts = list(prompts)
    seeds = [int(s) for s in seeds]
    if len(seeds) != len(prompts):
        raise ValueError(f"need one seed per prompt: {len(prompts)} prompts, {len(seeds)} seeds")
    if steps < 1 or batch_size < 1:
        raise ValueError("steps and batch_size must be at least 1")
    check_resolution(height, width, pipe.vae_scale_factor)
    model_name = model_name or Path(pipe.name_or_path or "flux").name

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
        ).images
        results += [
            GeneratedImage(image, model_name, prompt, prompt_kind, seed, steps, guidance, width, height)
            for image, prompt, seed in zip(images, batch_prompts, batch_seeds, strict=True)
        ]
    return results
