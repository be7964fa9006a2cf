"""Rectified-flow helpers for FLUX latents, shared by generation, SFT and online fine-tuning.

Conventions (those of ``diffusers.FluxPipeline`` and ``FlowMatchEulerDiscreteScheduler``):

* **Noise level.** ``sigma`` runs from 1 (pure noise) to 0 (clean latents) and
  ``x_sigma = (1 - sigma) * x0 + sigma * noise`` (:func:`noisy_latents`).
* **Model output.** The transformer predicts the velocity ``v = noise - x0``
  (:func:`velocity_target`); an Euler step from ``sigma`` to ``sigma_next`` is
  ``x + (sigma_next - sigma) * v``, so sampling walks from noise towards the data.
* **Timestep input.** The transformer is called with ``timestep = sigma`` (a value in [0, 1]); it
  multiplies by 1000 itself. The guidance embedding (FLUX.1-dev only) gets the raw guidance scale.
* **Latents.** The VAE latents ``z`` (``C`` channels at ``1/vae_scale_factor`` of the image size)
  are normalised as ``(z - shift_factor) * scaling_factor`` and packed: each 2x2 latent patch is one
  token of ``4 * C`` values, ordered ``(channel, dy, dx)``; tokens run row-major over the
  ``(H / (2 * vae_scale_factor), W / (2 * vae_scale_factor))`` token grid. Image sides must be
  multiples of ``2 * vae_scale_factor`` (16 for FLUX.1, 4 for the tiny model).
* **Positions.** Image token ids are ``(0, row, col)`` on the token grid; text token ids are zeros.

Nothing here assumes a model size: every size is read from the components or passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

# --- sizes ---------------------------------------------------------------------------------


def vae_scale_factor(vae) -> int:
    """Pixels per latent cell along each side: ``2 ** (number of VAE blocks - 1)`` (8 for FLUX.1)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def check_resolution(height: int, width: int, vae_scale_factor: int) -> None:
    """Raise ``ValueError`` unless both sides are positive multiples of ``2 * vae_scale_factor``.

    The pipeline itself only warns and silently rounds down; callers here want the clear error.
    """
    multiple = 2 * vae_scale_factor
    if height <= 0 or width <= 0 or height % multiple or width % multiple:
        raise ValueError(
            f"width and height must be positive multiples of {multiple} for this model "
            f"(2 x VAE scale factor {vae_scale_factor}); got {width}x{height}"
        )


def token_grid(height: int, width: int, vae_scale_factor: int) -> tuple[int, int]:
    """(rows, cols) of packed tokens for an image of ``height`` x ``width`` pixels."""
    check_resolution(height, width, vae_scale_factor)
    return height // (2 * vae_scale_factor), width // (2 * vae_scale_factor)


# --- packing -------------------------------------------------------------------------------


def pack_latents(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) latents -> (B, h/2 * w/2, 4C) tokens, FLUX layout (see the module docstring)."""
    b, c, h, w = latents.shape
    patches = latents.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return patches.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_latents(packed: torch.Tensor, height: int, width: int, vae_scale_factor: int) -> torch.Tensor:
    """Inverse of :func:`pack_latents` for an image of ``height`` x ``width`` pixels."""
    rows, cols = token_grid(height, width, vae_scale_factor)
    b, seq, d = packed.shape
    if seq != rows * cols:
        raise ValueError(f"{seq} tokens do not fit a {width}x{height} image ({rows}x{cols} tokens)")
    patches = packed.reshape(b, rows, cols, d // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return patches.reshape(b, d // 4, rows * 2, cols * 2)


def latent_image_ids(height: int, width: int, vae_scale_factor: int, *, device=None, dtype=None) -> torch.Tensor:
    """(seq, 3) position ids ``(0, row, col)`` of the image tokens, as the pipeline builds them."""
    rows, cols = token_grid(height, width, vae_scale_factor)
    ids = torch.zeros(rows, cols, 3)
    ids[..., 1] = torch.arange(rows)[:, None]
    ids[..., 2] = torch.arange(cols)[None, :]
    return ids.reshape(rows * cols, 3).to(device=device, dtype=dtype)


def packed_noise(
    batch: int,
    channels: int,
    height: int,
    width: int,
    vae_scale_factor: int,
    *,
    generator: torch.Generator | list[torch.Generator] | None = None,
    device=None,
    dtype=None,
) -> torch.Tensor:
    """Standard normal noise in packed layout, drawn exactly as ``FluxPipeline.prepare_latents`` does.

    ``channels`` is the latent channel count (``transformer.config.in_channels // 4``). With one
    generator per image, image ``i`` gets the same starting noise as the pipeline called with the
    same generators, whatever else is in the batch. CPU generators draw on the CPU and the result
    moves to ``device``, so a seed means the same noise on every device.
    """
    from diffusers.utils.torch_utils import randn_tensor

    rows, cols = token_grid(height, width, vae_scale_factor)
    shape = (batch, channels, rows * 2, cols * 2)
    return pack_latents(randn_tensor(shape, generator=generator, device=torch.device(device or "cpu"), dtype=dtype))


# --- images <-> latents --------------------------------------------------------------------


def images_to_tensor(
    images: Sequence[Image.Image], height: int, width: int, resize: str = "cover_crop"
) -> torch.Tensor:
    """PIL images -> (B, 3, height, width) floats in [-1, 1].

    ``resize="cover_crop"`` (platform): bicubic, scaled to cover, then centre-cropped, any aspect ratio.
    ``"shorter_side"`` (the research SFT's ``transforms.Resize(resolution)``, bilinear): the shorter side
    to ``min(height, width)``, the longer one to ``int(size * long / short)``, no crop; an image that does
    not come out ``height`` x ``width`` (not the same shape) is refused, as the research code's batch
    stacking would fail on it.
    """
    if resize not in ("cover_crop", "shorter_side"):
        raise ValueError(f"unknown resize {resize!r}: use cover_crop or shorter_side")
    arrays = []
    for image in images:
        image = image.convert("RGB")
        if resize == "shorter_side":
            image = _resize_shorter_side(image, min(height, width))
            if image.size != (width, height):
                raise ValueError(
                    f"an image of {image.width}x{image.height} after resizing its shorter side: "
                    f"shorter_side needs images of the training shape ({width}x{height})"
                )
        else:
            scale = max(width / image.width, height / image.height)
            size = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
            image = image.resize(size, Image.Resampling.BICUBIC)
            left, top = (size[0] - width) // 2, (size[1] - height) // 2
            image = image.crop((left, top, left + width, top + height))
        arrays.append(np.asarray(image, dtype=np.float32))
    pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    return pixels / 127.5 - 1.0


def _resize_shorter_side(image: Image.Image, size: int) -> Image.Image:
    """torchvision's ``Resize(size)`` on a PIL image: bilinear, shorter side to ``size``, long side truncated."""
    short, long = sorted(image.size)
    other = int(size * long / short)
    width, height = (size, other) if image.width <= image.height else (other, size)
    if (width, height) == image.size:
        return image
    return image.resize((width, height), Image.Resampling.BILINEAR)


@torch.no_grad()
def encode_images(
    vae, pixels: torch.Tensor, *, posterior: str = "mode", generator: torch.Generator | None = None
) -> torch.Tensor:
    """(B, 3, H, W) pixels in [-1, 1] -> normalised, packed latents (B, seq, 4C).

    ``posterior="mode"`` (platform): the mean of the VAE posterior: deterministic, and for FLUX's VAE the
    posterior spread is negligible. ``"sample"`` (the research SFT's ``latent_dist.sample()``): mean + std x
    noise, the noise drawn on the CPU from ``generator`` (so a checkpointed generator resumes exactly).
    """
    dist = vae.encode(pixels.to(device=vae.device, dtype=vae.dtype)).latent_dist
    if posterior == "mode":
        z = dist.mode()
    elif posterior == "sample":
        noise = torch.randn(dist.mean.shape, generator=generator, dtype=torch.float32)
        z = dist.mean + dist.std * noise.to(device=dist.mean.device, dtype=dist.mean.dtype)
    else:
        raise ValueError(f"unknown posterior {posterior!r}: use mode or sample")
    return pack_latents((z - vae.config.shift_factor) * vae.config.scaling_factor)


@torch.no_grad()
def decode_latents(vae, packed: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Packed latents -> (B, 3, height, width) float32 images in [0, 1]."""
    z = unpack_latents(packed, height, width, vae_scale_factor(vae))
    z = z / vae.config.scaling_factor + vae.config.shift_factor
    pixels = vae.decode(z.to(device=vae.device, dtype=vae.dtype), return_dict=False)[0]
    return (pixels.float() / 2 + 0.5).clamp(0, 1)


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """(B, 3, H, W) floats in [0, 1] -> PIL images (rounded the way ``VaeImageProcessor`` rounds)."""
    arrays = (images.detach().cpu().permute(0, 2, 3, 1).numpy() * 255).round().astype("uint8")
    return [Image.fromarray(a) for a in arrays]


# --- text ----------------------------------------------------------------------------------


@dataclass
class TextEmbeddings:
    """What the FLUX transformer needs from the text encoders for a batch of prompts.

    ``prompt_embeds``: (B, L, joint_attention_dim) T5 states; ``pooled``: (B,
    pooled_projection_dim) CLIP pooled output; ``text_ids``: (L, 3) zeros.
    """

    prompt_embeds: torch.Tensor
    pooled: torch.Tensor
    text_ids: torch.Tensor


@torch.no_grad()
def encode_text(pipe, prompts: Sequence[str], *, max_sequence_length: int = 512, device=None) -> TextEmbeddings:
    """Encode prompts with the pipeline's own ``encode_prompt`` (CLIP pooled + T5 sequence).

    ``max_sequence_length`` is the T5 length the prompts are padded/truncated to: 512 is FLUX.1-dev's
    default, schnell was trained with 256. Text encoders are frozen everywhere here, hence no grad.
    """
    prompt_embeds, pooled, text_ids = pipe.encode_prompt(
        prompt=list(prompts), prompt_2=None, device=device, max_sequence_length=max_sequence_length
    )
    return TextEmbeddings(prompt_embeds, pooled, text_ids)


# --- rectified flow ------------------------------------------------------------------------


def noisy_latents(latents: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """``x_sigma = (1 - sigma) * x0 + sigma * noise``; ``sigmas`` has one value per batch item."""
    s = sigmas.reshape(-1, *([1] * (latents.dim() - 1))).to(latents.dtype)
    return (1 - s) * latents + s * noise


def velocity_target(latents: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The rectified-flow regression target, ``d x_sigma / d sigma = noise - x0``."""
    return noise - latents


def sample_sigmas(
    n: int,
    *,
    generator: torch.Generator | None = None,
    scheme: str = "uniform",
    logit_mean: float = 0.0,
    logit_std: float = 1.0,
    grid: torch.Tensor | None = None,
) -> torch.Tensor:
    """``n`` training noise levels in (0, 1], on the CPU (so a seeded generator is device-independent).

    ``"uniform"``: continuous uniform. ``"grid"`` (the research SFT): ``grid[floor(u * len(grid))]`` with
    ``u`` uniform, ``grid`` being the scheduler's training noise levels (:func:`training_sigma_grid`;
    1000 levels k/1000 for FLUX.1). ``"logit_normal"`` (SD3's sampler, ``sigmoid(N(logit_mean,
    logit_std))``) concentrates on mid-range noise.
    """
    if scheme == "uniform":
        return torch.rand(n, generator=generator)
    if scheme == "grid":
        if grid is None:
            raise ValueError("the grid scheme needs the scheduler's training sigmas (grid=...)")
        index = (torch.rand(n, generator=generator) * len(grid)).long().clamp_max(len(grid) - 1)
        return grid.float().cpu()[index]
    if scheme == "logit_normal":
        return torch.sigmoid(torch.randn(n, generator=generator) * logit_std + logit_mean)
    raise ValueError(f"unknown sigma sampling scheme {scheme!r} (uniform, grid, logit_normal)")


def training_sigma_grid(scheduler_config) -> torch.Tensor:
    """The noise levels of a fresh ``FlowMatchEulerDiscreteScheduler`` (before any ``set_timesteps``), the
    table the research SFT indexes: ``num_train_timesteps`` levels from 1 down, static shift applied."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler.from_config(scheduler_config).sigmas.float().cpu()


def inference_sigmas(scheduler_config, num_steps: int, image_seq_len: int, *, device=None) -> torch.Tensor:
    """The ``num_steps + 1`` noise levels (ending at 0) that ``FluxPipeline`` samples with.

    Same start grid (``linspace(1, 1/num_steps)``) and resolution-dependent shift as the pipeline,
    computed on a fresh scheduler so the caller's scheduler state is untouched. ``image_seq_len`` is
    the number of image tokens (rows x cols of :func:`token_grid`).
    """
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    scheduler = FlowMatchEulerDiscreteScheduler.from_config(scheduler_config)
    mu = calculate_shift(
        image_seq_len,
        scheduler.config.get("base_image_seq_len", 256),
        scheduler.config.get("max_image_seq_len", 4096),
        scheduler.config.get("base_shift", 0.5),
        scheduler.config.get("max_shift", 1.15),
    )
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / num_steps, num_steps), mu=mu, device=device)
    return scheduler.sigmas


def predict_velocity(
    transformer,
    latents: torch.Tensor,
    sigmas: torch.Tensor,
    text: TextEmbeddings,
    img_ids: torch.Tensor,
    *,
    guidance: float,
) -> torch.Tensor:
    """One transformer call: packed ``x_sigma`` at per-item ``sigmas`` -> predicted velocity.

    ``guidance`` feeds the guidance embedding of guidance-distilled models (FLUX.1-dev; the
    Science-T2I SFT recipe uses 0) and is ignored by models without one (FLUX.1-schnell).
    """
    batch = latents.shape[0]
    guidance_vec = None
    if transformer.config.guidance_embeds:
        guidance_vec = torch.full((batch,), float(guidance), device=latents.device, dtype=torch.float32)
    return transformer(
        hidden_states=latents,
        timestep=sigmas.to(device=latents.device, dtype=latents.dtype),
        guidance=guidance_vec,
        pooled_projections=text.pooled,
        encoder_hidden_states=text.prompt_embeds,
        txt_ids=text.text_ids,
        img_ids=img_ids,
        return_dict=False,
    )[0]


def training_attention():
    """Context manager for training steps: scaled-dot-product attention without the cuDNN backend.

    Measured on an H200 (torch 2.11 + CUDA 13): with cuDNN attention, which PyTorch prefers on
    Hopper, the backward pass through the FLUX transformer gave infinite gradients on the tiny
    model and an illegal memory access at FLUX.1 size; flash / memory-efficient / math attention
    gave finite, exactly resumable training. Wrap the forward *and* the backward pass: gradient
    checkpointing re-runs the forward inside the backward. Harmless on the CPU.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


# --- regions -------------------------------------------------------------------------------


def boxes_to_pixel_mask(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, 4) pixel boxes ``(x0, y0, x1, y1)`` -> (B, height, width) bool masks.

    A pixel is inside when its centre is; coordinates may be fractional and are clipped to the image.
    """
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    ys = torch.arange(height, dtype=torch.float32) + 0.5
    xs = torch.arange(width, dtype=torch.float32) + 0.5
    x0, y0, x1, y1 = (boxes[:, i, None] for i in range(4))
    inside_y = (ys[None] >= y0) & (ys[None] < y1)
    inside_x = (xs[None] >= x0) & (xs[None] < x1)
    return inside_y[:, :, None] & inside_x[:, None, :]


def pixel_mask_to_grid(mask_hw: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Pixel-space mask (H', W') or (B, H', W'), bool or float in [0, 1], covering the whole image, at any
    resolution -> (B, rows, cols) bool: a cell is in when any part of it is (area resampling, then ``> 0``),
    so a box never loses its border cells."""
    mask = torch.as_tensor(mask_hw).float()
    if mask.dim() == 2:
        mask = mask[None]
    if mask.dim() != 3:
        raise ValueError(f"mask must be (H, W) or (B, H, W); got shape {tuple(mask.shape)}")
    return F.interpolate(mask[:, None], size=(rows, cols), mode="area")[:, 0] > 0


def pixel_mask_to_tokens(mask_hw: torch.Tensor, height: int, width: int, vae_scale_factor: int) -> torch.Tensor:
    """Pixel-space mask -> (B, seq) bool mask over the packed image tokens of a ``height`` x ``width`` image.

    ``mask_hw`` is (H', W') or (B, H', W'), bool or float in [0, 1], at any resolution: it is
    taken to cover the whole image, so a detector's mask at 512 px maps onto a 1024 px generation.
    Each token covers a ``2 * vae_scale_factor`` pixel square; it is in the mask when any part of
    its square is (:func:`pixel_mask_to_grid`). Token order is the packing order of :func:`pack_latents`.
    """
    rows, cols = token_grid(height, width, vae_scale_factor)
    cells = pixel_mask_to_grid(mask_hw, rows, cols)
    return cells.reshape(cells.shape[0], rows * cols)


def box_to_grid(box: Sequence[float], rows: int, cols: int) -> torch.Tensor:
    """A box ``(x0, y0, x1, y1)`` in fractions of the image -> (rows, cols) bool grid mask.

    Cells ``floor(x0 * cols)`` up to (not including) ``floor(x1 * cols)``, and likewise in y: the research
    OFT's ``int(...)`` rasterisation of its box on the latent grid, with the box first clipped to the image
    (the research code's negative indices at an image edge wrap around and empty the mask).
    """
    x0, y0, x1, y1 = (min(1.0, max(0.0, float(v))) for v in box)
    mask = torch.zeros(rows, cols, dtype=torch.bool)
    mask[int(y0 * rows) : int(y1 * rows), int(x0 * cols) : int(x1 * cols)] = True
    return mask


def cells_to_elements(cells: torch.Tensor, channels: int) -> torch.Tensor:
    """A (B, h, w) mask over the latent cells (one per ``vae_scale_factor`` pixels) -> (B, seq, 4 x channels)
    bool over the elements of the packed latents, every channel of a cell taking the cell's value."""
    b, h, w = cells.shape
    return pack_latents(cells[:, None].expand(b, channels, h, w).float()) > 0.5
