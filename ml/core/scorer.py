"""SciScore: s(t, x) = exp(logit_scale) * cos(text(t), image(x)), batched.

One in-memory representation, an open_clip ``CLIP`` module, loaded from any of:

* an open_clip ``local-dir`` (``open_clip_config.json`` + weights), e.g. what ``make-tiny`` writes;
* an open_clip architecture name plus a local checkpoint file (``arch="ViT-H-14"``);
* a transformers ``CLIPModel`` directory (the released SciScore format), converted on load by
  :mod:`ml.core.convert`.

Scoring runs under bf16 autocast on CUDA and in fp32 on CPU. Images are preprocessed as a batch:
resize + centre crop per image (PIL), then one tensor normalisation on the device.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image

OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = "open_clip_model.safetensors"


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast_for(device: torch.device):
    """bf16 autocast on CUDA, nothing (fp32) elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


@dataclass(frozen=True)
class PreprocessConfig:
    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class Scorer:
    def __init__(self, model, preprocess: PreprocessConfig, tokenizer, model_cfg: dict, device=None):
        self.device = torch.device(device) if device is not None else default_device()
        self.model = model.to(self.device)
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.model_cfg = model_cfg
        self._mean = torch.tensor(preprocess.mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(preprocess.std, device=self.device).view(1, 3, 1, 1)

    # --- loading and saving -----------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path, *, arch: str | None = None, device=None) -> Scorer:
        path = Path(path)
        if path.is_dir() and (path / "open_clip" / OPEN_CLIP_CONFIG).is_file():
            path = path / "open_clip"  # a folder written by save(format="both")
        if path.is_dir() and (path / OPEN_CLIP_CONFIG).is_file():
            config = json.loads((path / OPEN_CLIP_CONFIG).read_text())
            model = open_clip.create_model(f"local-dir:{path}", device="cpu")
            return cls(model, _preprocess_config(config["model_cfg"], config.get("preprocess_cfg", {})),
                       open_clip.get_tokenizer(f"local-dir:{path}"), config["model_cfg"], device)
        if path.is_dir() and (path / "config.json").is_file():
            from ml.core.convert import load_hf_clip_as_open_clip

            model, model_cfg, preprocess_cfg = load_hf_clip_as_open_clip(path)
            return cls(model, _preprocess_config(model_cfg, preprocess_cfg), _clip_tokenizer(model_cfg),
                       model_cfg, device)
        if path.is_file():
            if not arch:
                raise ValueError(f"{path} is a checkpoint file: give its open_clip architecture (e.g. ViT-H-14).")
            model = open_clip.create_model(arch, pretrained=str(path), device="cpu")
            model_cfg = open_clip.get_model_config(arch)
            return cls(model, _preprocess_config(model_cfg, {}), open_clip.get_tokenizer(arch), model_cfg, device)
        raise FileNotFoundError(
            f"{path}: not an open_clip local dir ({OPEN_CLIP_CONFIG}), a transformers CLIPModel dir (config.json), "
            "a folder with both (open_clip/ and hf/) or a checkpoint file."
        )

    def save_open_clip(self, directory: str | Path) -> Path:
        """Save as an open_clip ``local-dir`` that ``Scorer.load`` and ``open_clip`` read back."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        preprocess_cfg = {"size": self.preprocess.size, "mean": list(self.preprocess.mean),
                          "std": list(self.preprocess.std), "interpolation": "bicubic", "resize_mode": "shortest"}
        (directory / OPEN_CLIP_CONFIG).write_text(
            json.dumps({"model_cfg": self.model_cfg, "preprocess_cfg": preprocess_cfg}, indent=2)
        )
        state = {k: v.detach().contiguous().cpu() for k, v in self.model.state_dict().items()}
        save_file(state, directory / OPEN_CLIP_WEIGHTS)
        return directory

    def save(self, directory: str | Path, format: str = "open_clip") -> Path:
        """Save as ``open_clip`` (local-dir), ``hf`` (transformers ``CLIPModel`` + tokenizer + processor) or
        ``both`` (``directory/open_clip`` and ``directory/hf``); every form loads back with :meth:`load`."""
        from ml.core.convert import save_open_clip_as_hf

        directory = Path(directory)
        if format == "open_clip":
            return self.save_open_clip(directory)
        if format == "hf":
            return save_open_clip_as_hf(self, None, directory)
        if format == "both":
            self.save_open_clip(directory / "open_clip")
            save_open_clip_as_hf(self, None, directory / "hf")
            return directory
        raise ValueError(f"format {format!r}: use 'open_clip', 'hf' or 'both'.")

    # --- inputs -------------------------------------------------------------------------------

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(list(texts)).to(self.device)

    def pixels(self, images: list[Image.Image]) -> torch.Tensor:
        """Resize (shortest side, bicubic) and centre-crop each image, then normalise the batch at once."""
        size = self.preprocess.size
        arrays = np.stack([_resize_crop(img, size) for img in images])
        batch = torch.from_numpy(arrays).to(self.device, non_blocking=True).permute(0, 3, 1, 2)
        return (batch.float().div_(255) - self._mean) / self._std

    # --- scoring ------------------------------------------------------------------------------

    def features(self, tokens: torch.Tensor, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """L2-normalised text and image features (differentiable; used by training too)."""
        text = self.model.encode_text(tokens, normalize=True)
        image = self.model.encode_image(pixels, normalize=True)
        return text, image

    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.exp()

    @torch.no_grad()
    def score(self, prompts: list[str], images: list[Image.Image], *, batch_size: int = 64) -> torch.Tensor:
        """One score per (prompt, image) pair, as a float32 CPU tensor."""
        if len(prompts) != len(images):
            raise ValueError(f"{len(prompts)} prompts but {len(images)} images.")
        self.model.eval()
        out = []
        for start in range(0, len(prompts), batch_size):
            tokens = self.tokenize(prompts[start : start + batch_size])
            pixels = self.pixels(images[start : start + batch_size])
            with autocast_for(self.device):
                text, image = self.features(tokens, pixels)
                out.append((self.logit_scale() * (text * image).sum(-1)).float().cpu())
        return torch.cat(out) if out else torch.empty(0)

    def pairwise(self, prompt: str, image_a: Image.Image, image_b: Image.Image) -> tuple[int, float]:
        """(0 if image_a scores higher else 1, probability that image_a is the right one)."""
        a, b = self.score([prompt, prompt], [image_a, image_b]).tolist()
        prob_a = torch.sigmoid(torch.tensor(a - b)).item()
        return (0 if a >= b else 1), prob_a


def _resize_crop(image: Image.Image, size: int) -> np.ndarray:
    """open_clip's eval transform (torchvision ``Resize`` + ``CenterCrop`` on a PIL image), pixel for pixel:
    the long side is floored and the crop offset rounded as torchvision does."""
    image = image.convert("RGB")
    w, h = image.size
    new_w, new_h = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
    image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left, top = int(round((new_w - size) / 2)), int(round((new_h - size) / 2))
    return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)


def _preprocess_config(model_cfg: dict, preprocess_cfg: dict) -> PreprocessConfig:
    size = preprocess_cfg.get("size") or model_cfg["vision_cfg"]["image_size"]
    if isinstance(size, (list, tuple)):
        size = size[0]
    return PreprocessConfig(
        size=int(size),
        mean=tuple(preprocess_cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)),
        std=tuple(preprocess_cfg.get("std", open_clip.OPENAI_DATASET_STD)),
    )


def _clip_tokenizer(model_cfg: dict):
    context_length = model_cfg.get("text_cfg", {}).get("context_length", 77)
    return open_clip.tokenizer.SimpleTokenizer(context_length=context_length)
