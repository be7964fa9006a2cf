"""Tiny models built from configs and saved to disk, so real loading code runs with no hub.

The tiny scorer is an open_clip CLIP (embed 32, vision 64 wide x 2 layers at 32 px, text 64 wide
x 2 layers, the full CLIP BPE vocabulary) so its tokenizer is the real one.
"""

from __future__ import annotations

from pathlib import Path

import open_clip
import torch

TINY_CLIP_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def tiny_scorer(*, seed: int = 0):
    """A randomly initialised tiny open_clip :class:`~ml.core.scorer.Scorer`, in memory, on the CPU."""
    from ml.core.scorer import Scorer

    torch.manual_seed(seed)
    model = open_clip.model.CLIP(**TINY_CLIP_CFG)
    return Scorer.from_model(model, TINY_CLIP_CFG, device="cpu")


def make_tiny_scorer(directory: str | Path, *, seed: int = 0) -> Path:
    """Write a randomly initialised tiny open_clip scorer as a ``local-dir``; return the directory."""
    return tiny_scorer(seed=seed).save_open_clip(directory)


def make_tiny_hf_scorer(directory: str | Path, *, seed: int = 0) -> Path:
    """Write the tiny scorer as a transformers ``CLIPModel`` directory (the released SciScore format).

    It is the same network as :func:`make_tiny_scorer` with the same seed, converted, so both score alike.
    """
    from ml.core.convert import save_open_clip_as_hf

    return save_open_clip_as_hf(tiny_scorer(seed=seed), None, directory)
