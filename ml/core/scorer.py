"""SciScore: s(t, x) = exp(logit_scale) * cos(text(t), image(x)), batched.

One in-memory representation, an open_clip ``CLIP`` module, loaded from any of:

* an open_clip ``local-dir`` (``open_clip_config.json`` + weights), e.g. what ``make-tiny`` writes;
* an open_clip architecture name plus a local checkpoint file (``arch="ViT-H-14"``);
* a transformers ``CLIPModel`` directory (the released SciScore format), converted on load by
  :mod:`ml.core.convert`.

Scoring runs under bf16 autocast on CUDA and in fp32 on CPU; the final cosine and scale are always
fp32 (a bf16 dot product rounds scores near 30 to steps of 0.125, enough to tie a pair).

Speed decisions (figures in ``docs/benchmarks/gpu.md``):

* **Images** may be PIL images, ``(H, W, 3)`` uint8 arrays or ``(3, H, W)`` tensors (uint8, or floats in
  [0, 1]; a ``(B, 3, H, W)`` batch too), on the CPU or already on the device. Two resize paths:
  ``"pil"`` resizes each image in PIL exactly like ``open_clip.image_transform(is_train=False)``;
  ``"device"`` uploads the uint8 pixels (pinned memory, a side copy stream) and resizes the batch on
  the device with antialiased bicubic interpolation, then rounds to whole levels like the uint8 path
  (on smooth images at most one level from PIL's result, under 0.1 level on average; on pure noise
  a few levels, more when upsampling). ``"auto"`` (default): PIL on the CPU for PIL input
  (bit-exact, what the tests pin), the device otherwise — CPU-side PIL resizing cannot feed a GPU at
  ViT-H speed.
* **Text is trimmed.** The text tower is causal and pools at the end-of-text token, so the columns
  after the last end-of-text token of a batch cannot change any pooled feature: :meth:`Scorer.tokenize`
  drops them (to a multiple of 8) and the model's ``encode_text`` accepts any length
  (:func:`allow_short_text`). Prompts of 10-20 tokens cost a fifth to a third of the 77-token tower.
* **Each distinct prompt is encoded once per batch** (:meth:`Scorer.score` deduplicates,
  :meth:`Scorer.score_pairs` scores a tuple's two images against one text feature).
* **No host sync per batch**: scores stay on the device until the end, so the CPU prepares batch
  i + 1 while the GPU runs batch i.
* :meth:`Scorer.compile` compiles each transformer block (regional ``torch.compile``: one block
  compiles once and serves every layer), for scoring and for training alike.
"""

from __future__ import annotations

import json
import os
import types
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image

from ml.core.preprocessing import PreprocessConfig, preprocess_config

# What Scorer.pixels/score take as one image.
ImageInput = Image.Image | np.ndarray | torch.Tensor
RESIZE_MODES = ("auto", "pil", "device")
TEXT_LENGTH_MULTIPLE = 8

OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = "open_clip_model.safetensors"


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast_for(device: torch.device):
    """bf16 autocast on CUDA, nothing (fp32) elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


class Scorer:
    def __init__(
        self, model, preprocess: PreprocessConfig, tokenizer, model_cfg: dict, device=None, resize: str = "auto"
    ):
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize {resize!r}: use one of {RESIZE_MODES}")
        self.device = torch.device(device) if device is not None else default_device()
        self.model = model.to(self.device)
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.model_cfg = model_cfg
        self.resize = resize
        self.short_text = allow_short_text(self.model)
        self._mean = torch.tensor(preprocess.mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(preprocess.std, device=self.device).view(1, 3, 1, 1)
        self._copy_stream: torch.cuda.Stream | None = None

    # --- loading and saving -----------------------------------------------------------------

    @classmethod
    def from_model(
        cls, model, model_cfg: dict, *, preprocess_cfg: dict | None = None, device=None, resize: str = "auto"
    ) -> Scorer:
        """A scorer of an open_clip ``CLIP`` built in memory from ``model_cfg`` (its open_clip model config),
        with open_clip's tokenizer for that config and the preprocessing of
        :func:`~ml.core.preprocessing.preprocess_config` (``preprocess_cfg``: open_clip's ``size``, ``mean``,
        ``std``, each optional)."""
        return cls(
            model,
            preprocess_config(model_cfg, preprocess_cfg or {}),
            _clip_tokenizer(model_cfg),
            model_cfg,
            device,
            resize,
        )

    @classmethod
    def load(cls, path: str | Path, *, arch: str | None = None, device=None, resize: str = "auto") -> Scorer:
        path = Path(path)
        if path.is_dir() and (path / "open_clip" / OPEN_CLIP_CONFIG).is_file():
            path = path / "open_clip"  # a folder written by save(format="both")
        if path.is_dir() and (path / OPEN_CLIP_CONFIG).is_file():
            config = json.loads((path / OPEN_CLIP_CONFIG).read_text())
            model = open_clip.create_model(f"local-dir:{path}", device="cpu")
            return cls(
                model,
                preprocess_config(config["model_cfg"], config.get("preprocess_cfg", {})),
                open_clip.get_tokenizer(f"local-dir:{path}"),
                config["model_cfg"],
                device,
                resize,
            )
        if path.is_dir() and (path / "config.json").is_file():
            from ml.core.convert import load_hf_clip_as_open_clip

            model, model_cfg, preprocess_cfg = load_hf_clip_as_open_clip(path)
            return cls.from_model(model, model_cfg, preprocess_cfg=preprocess_cfg, device=device, resize=resize)
        if path.is_file():
            if not arch:
                raise ValueError(f"{path} is a checkpoint file: give its open_clip architecture (e.g. ViT-H-14).")
            model = open_clip.create_model(arch, pretrained=str(path), device="cpu")
            model_cfg = open_clip.get_model_config(arch)
            return cls(
                model, preprocess_config(model_cfg, {}), open_clip.get_tokenizer(arch), model_cfg, device, resize
            )
        raise FileNotFoundError(
            f"{path}: not an open_clip local dir ({OPEN_CLIP_CONFIG}), a transformers CLIPModel dir (config.json), "
            "a folder with both (open_clip/ and hf/) or a checkpoint file."
        )

    def save_open_clip(self, directory: str | Path) -> Path:
        """Save as an open_clip ``local-dir`` that ``Scorer.load`` and ``open_clip`` read back."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        preprocess_cfg = {
            "size": self.preprocess.size,
            "mean": list(self.preprocess.mean),
            "std": list(self.preprocess.std),
            "interpolation": "bicubic",
            "resize_mode": "shortest",
        }
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

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Token ids on the device; trimmed after the batch's last end-of-text token when that is exact."""
        tokens = self.tokenizer(list(texts))
        if self.short_text:
            tokens = trim_tokens(tokens, self.model.text_pool_type, getattr(self.model, "text_eos_id", None))
        return tokens.to(self.device, non_blocking=True)

    def pixels(self, images: Sequence[ImageInput] | torch.Tensor) -> torch.Tensor:
        """Normalised ``(B, 3, size, size)`` float32 pixels on the device: shortest side resized to the
        model's size (bicubic), centre crop, the model's mean/std. See the module docstring for the inputs
        and the two resize paths."""
        if self._resize_in_pil(images):
            size = self.preprocess.size
            arrays = np.stack([_resize_crop(_as_pil(img), size) for img in images])
            batch = torch.from_numpy(arrays).to(self.device, non_blocking=True).permute(0, 3, 1, 2)
            return (batch.float().div_(255) - self._mean) / self._std
        return self._pixels_on_device(images)

    def _resize_in_pil(self, images) -> bool:
        if self.resize == "pil":
            if isinstance(images, torch.Tensor):
                raise ValueError("resize='pil' takes a list of images, not a batch tensor")
            return True
        if self.resize == "device" or isinstance(images, torch.Tensor):
            return False
        return self.device.type == "cpu" and all(isinstance(img, Image.Image) for img in images)

    def _pixels_on_device(self, images) -> torch.Tensor:
        size = self.preprocess.size
        if isinstance(images, torch.Tensor):
            if images.dim() != 4 or images.shape[1] != 3:
                raise ValueError(f"a batch tensor must be (B, 3, H, W); got {tuple(images.shape)}")
            images = list(images.unbind(0))
        groups: dict[tuple, list[int]] = {}  # images of one shape and layout are resized as one batch
        with warnings.catch_warnings():  # PIL's arrays are read-only; they are only ever copied from
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            tensors = [_as_tensor(img) for img in images]
        for i, (tensor, channels_last) in enumerate(tensors):
            groups.setdefault((channels_last, tuple(tensor.shape), tensor.dtype, tensor.device), []).append(i)
        parts = []
        for (channels_last, _, _, _), index in groups.items():
            batch = self._upload([tensors[i][0] for i in index])
            if channels_last:
                batch = batch.permute(0, 3, 1, 2)  # a view: (B, H, W, 3) memory read as NCHW
            parts.append(_resize_crop_tensor(batch, size).mul_(1 / 255).sub_(self._mean).div_(self._std))
        if len(parts) == 1:
            return parts[0]
        out = torch.empty(len(images), 3, size, size, device=self.device)
        for part, index in zip(parts, groups.values(), strict=True):
            out[torch.tensor(index, device=self.device)] = part
        return out

    def _upload(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """Stack same-shape tensors on the device. From the CPU to CUDA: through pinned memory on a side
        stream, so the copy overlaps the previous batch's compute; the pinned block is PyTorch's caching
        host allocator's, which keeps it until the copy has finished."""
        source = tensors[0].device
        if source == self.device or self.device.type != "cuda" or source.type != "cpu":
            return torch.stack([t.to(self.device, non_blocking=True) for t in tensors])
        host = torch.empty((len(tensors), *tensors[0].shape), dtype=tensors[0].dtype, pin_memory=True)
        _fill(host, tensors)
        main = torch.cuda.current_stream(self.device)
        if self._copy_stream is None:
            self._copy_stream = torch.cuda.Stream(self.device)
        with torch.cuda.stream(self._copy_stream):
            batch = host.to(self.device, non_blocking=True)
        main.wait_stream(self._copy_stream)
        batch.record_stream(main)
        return batch

    # --- scoring ------------------------------------------------------------------------------

    def features(self, tokens: torch.Tensor, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """L2-normalised text and image features (differentiable; used by training too)."""
        text = self.model.encode_text(tokens, normalize=True)
        image = self.model.encode_image(pixels, normalize=True)
        return text, image

    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.exp()

    @torch.no_grad()
    def score(self, prompts: Sequence[str], images: Sequence[ImageInput], *, batch_size: int = 64) -> torch.Tensor:
        """One score per (prompt, image) pair, as a float32 CPU tensor. Each distinct prompt of a batch is
        encoded once."""
        if len(prompts) != len(images):
            raise ValueError(f"{len(prompts)} prompts but {len(images)} images.")
        self.model.eval()
        out = []
        for start in range(0, len(prompts), batch_size):
            out.append(self._score_batch(prompts[start : start + batch_size], [images[start : start + batch_size]])[0])
        return torch.cat(out).float().cpu() if out else torch.empty(0)

    @torch.no_grad()
    def score_pairs(
        self,
        prompts: Sequence[str],
        images_a: Sequence[ImageInput],
        images_b: Sequence[ImageInput],
        *,
        batch_size: int = 64,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(s(prompt_i, a_i), s(prompt_i, b_i))`` for tuples of a prompt and two images (an evaluation
        tuple's correct and wrong image), as float32 CPU tensors. ``batch_size`` tuples (twice as many
        images) go through the model at once; each prompt is encoded once for both of its images."""
        if not len(prompts) == len(images_a) == len(images_b):
            raise ValueError(f"{len(prompts)} prompts but {len(images_a)} and {len(images_b)} images.")
        self.model.eval()
        out_a, out_b = [], []
        for start in range(0, len(prompts), batch_size):
            chunk = slice(start, start + batch_size)
            a, b = self._score_batch(prompts[chunk], [images_a[chunk], images_b[chunk]])
            out_a.append(a)
            out_b.append(b)
        if not out_a:
            return torch.empty(0), torch.empty(0)
        return torch.cat(out_a).float().cpu(), torch.cat(out_b).float().cpu()

    def _score_batch(self, prompts: Sequence[str], image_sets: list[Sequence[ImageInput]]) -> list[torch.Tensor]:
        """Scores (on the device) of ``prompts[i]`` against ``images[i]`` for each image set."""
        position = {prompt: i for i, prompt in enumerate(dict.fromkeys(prompts))}
        tokens = self.tokenize(list(position))
        pixels = self.pixels([img for images in image_sets for img in images])
        with autocast_for(self.device):
            text, image = self.features(tokens, pixels)
        text = text.float()
        if len(position) < len(prompts):
            text = text[torch.tensor([position[p] for p in prompts], device=self.device)]
        scaled = self.logit_scale().float() * text
        return [(scaled * part.float()).sum(-1) for part in image.split(len(prompts))]

    def pairwise(self, prompt: str, image_a: ImageInput, image_b: ImageInput) -> tuple[int, float]:
        """(0 if image_a scores higher else 1, probability that image_a is the right one)."""
        a, b = (scores.item() for scores in self.score_pairs([prompt], [image_a], [image_b]))
        prob_a = torch.sigmoid(torch.tensor(a - b)).item()
        return (0 if a >= b else 1), prob_a

    # --- speed ----------------------------------------------------------------------------------

    def compile(self, *, text: bool = False, **options) -> Scorer:
        """Compile every transformer block of the image tower (and of the text tower with ``text=True``) in
        place with ``torch.compile(**options)``: regional compilation, so one block's graph is compiled once
        and reused by every layer of the tower, instead of compiling the whole model's graph. The
        text tower stays eager by default: trimmed prompts are a few percent of the work and their length
        varies from batch to batch. Works for scoring and for training (forward and backward)."""
        towers = [getattr(getattr(self.model, "visual", None), "transformer", None)]
        if text:
            towers.append(getattr(self.model, "transformer", None))
        blocks = [block for tower in towers if tower is not None for block in getattr(tower, "resblocks", [])]
        if not blocks:
            raise ValueError("no transformer blocks to compile in this model")
        for block in blocks:
            block.compile(**options)
        return self


def allow_short_text(model) -> bool:
    """Let an open_clip ``CLIP``'s ``encode_text`` take token sequences shorter than its context length.

    open_clip adds the full positional embedding and causal mask, so it needs all 77 columns. For a causal
    text tower pooled at the end-of-text token (``argmax`` or ``eos`` pooling, every CLIP/SciScore), the
    columns after the last end-of-text token cannot change the pooled feature; this replaces the model's
    ``encode_text`` (on this instance only, so ``model(image, text)`` and DDP use it too) with the same
    computation on the first ``n`` positions. Returns whether it did: other text towers are left as they are.
    """
    if not isinstance(model, open_clip.model.CLIP) or getattr(model, "attn_mask", None) is None:
        return False
    if getattr(model, "text_pool_type", None) not in ("argmax", "eos"):
        return False
    model.encode_text = types.MethodType(_encode_text_any_length, model)
    return True


def _encode_text_any_length(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    """open_clip 3.3 ``CLIP.encode_text`` with the positional embedding and causal mask cut to the input length."""
    from open_clip.transformer import text_global_pool

    length = text.shape[1]
    cast_dtype = self.transformer.get_cast_dtype()
    x = self.token_embedding(text).to(cast_dtype)
    x = x + self.positional_embedding[:length].to(cast_dtype)
    x = self.transformer(x, attn_mask=self.attn_mask[:length, :length])
    x = self.ln_final(x)
    x = text_global_pool(x, text, self.text_pool_type, eos_token_id=getattr(self, "text_eos_id", None))
    if self.text_projection is not None:
        x = self.text_projection(x) if isinstance(self.text_projection, torch.nn.Linear) else x @ self.text_projection
    return F.normalize(x, dim=-1) if normalize else x


def trim_tokens(
    tokens: torch.Tensor, pool_type: str, eos_id: int | None = None, multiple: int = TEXT_LENGTH_MULTIPLE
) -> torch.Tensor:
    """Drop the columns after the batch's last pooled (end-of-text) position, keeping a multiple of
    ``multiple`` columns (steady shapes for the kernels). ``pool_type`` is the model's text pooling."""
    if tokens.numel() == 0:
        return tokens
    if pool_type == "eos" and eos_id is not None:
        last = int((tokens == eos_id).int().argmax(-1).max())
    elif pool_type == "argmax":
        last = int(tokens.argmax(-1).max())
    else:
        return tokens
    keep = min(tokens.shape[1], -(-(last + 1) // multiple) * multiple)
    return tokens[:, :keep].contiguous()


_STAGING_POOL: ThreadPoolExecutor | None = None
STAGING_THREADS = 8
PARALLEL_STAGING_BYTES = 32 * 2**20


def _fill(host: torch.Tensor, tensors: list[torch.Tensor]) -> None:
    """Copy same-shape CPU tensors into ``host`` (pinned), in parallel once the batch is large: one thread
    copies ~6 GB/s, a few hundred megabytes of 1024 px images per batch would hold the GPU back. numpy's
    copies release the GIL and stay single-threaded each (no nested thread pools)."""
    workers = min(STAGING_THREADS, os.cpu_count() or 1, len(tensors))
    if host.numel() * host.element_size() < PARALLEL_STAGING_BYTES or workers < 2 or host.dtype == torch.bfloat16:
        torch.stack(tensors, out=host)
        return
    global _STAGING_POOL
    if _STAGING_POOL is None:
        _STAGING_POOL = ThreadPoolExecutor(STAGING_THREADS, thread_name_prefix="scorer-staging")
    target = host.numpy()

    def copy(chunk: range) -> None:
        for i in chunk:
            np.copyto(target[i], tensors[i].numpy())

    step = -(-len(tensors) // workers)
    list(_STAGING_POOL.map(copy, [range(i, min(i + step, len(tensors))) for i in range(0, len(tensors), step)]))


def _as_tensor(image: ImageInput) -> tuple[torch.Tensor, bool]:
    """``(tensor, channels_last)``: PIL images and arrays as ``(H, W, 3)`` uint8 (no copy for arrays),
    tensors as given (``(3, H, W)``)."""
    if isinstance(image, Image.Image):
        return torch.from_numpy(np.asarray(image if image.mode == "RGB" else image.convert("RGB"))), True
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"an image array must be (H, W, 3) uint8; got {image.shape} {image.dtype}")
        return torch.from_numpy(np.ascontiguousarray(image)), True
    if isinstance(image, torch.Tensor):
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"an image tensor must be (3, H, W); got {tuple(image.shape)}")
        if image.dtype != torch.uint8 and not image.is_floating_point():
            raise ValueError(f"an image tensor must be uint8 or float in [0, 1]; got {image.dtype}")
        return image, False
    raise TypeError(f"cannot score an image of type {type(image).__name__}")


def _as_pil(image: ImageInput) -> Image.Image:
    if isinstance(image, Image.Image):
        return image
    tensor, channels_last = _as_tensor(image)
    if tensor.is_floating_point():
        tensor = (tensor.float() * 255).round().clamp(0, 255).to(torch.uint8)
    array = tensor.cpu() if channels_last else tensor.cpu().permute(1, 2, 0)
    return Image.fromarray(np.ascontiguousarray(array.numpy()))


def _resize_crop_tensor(batch: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, 3, H, W)`` uint8 (or float in [0, 1]) -> ``(B, 3, size, size)`` float32 in [0, 255], whole levels:
    the geometry of :func:`_resize_crop` with antialiased bicubic interpolation on the batch's device."""
    x = batch.float() if batch.dtype == torch.uint8 else batch.float() * 255
    x = x.contiguous()  # NCHW: the CUDA antialiased kernel copies channels-last input to this layout anyway
    h, w = x.shape[-2:]
    new_w, new_h = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
    if (new_h, new_w) != (h, w):
        x = F.interpolate(x, size=(new_h, new_w), mode="bicubic", antialias=True, align_corners=False)
    top, left = int(round((new_h - size) / 2)), int(round((new_w - size) / 2))
    x = x[..., top : top + size, left : left + size]
    return x.round().clamp_(0, 255).contiguous()


def _resize_crop(image: Image.Image, size: int) -> np.ndarray:
    """open_clip's eval transform (torchvision ``Resize`` + ``CenterCrop`` on a PIL image), pixel for pixel:
    the long side is floored and the crop offset rounded as torchvision does."""
    image = image.convert("RGB")
    w, h = image.size
    new_w, new_h = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
    image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left, top = int(round((new_w - size) / 2)), int(round((new_h - size) / 2))
    return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)


def _clip_tokenizer(model_cfg: dict):
    context_length = model_cfg.get("text_cfg", {}).get("context_length", 77)
    return open_clip.tokenizer.SimpleTokenizer(context_length=context_length)
