"""Optional float8 matrix products for FLUX generation (Hopper GPUs), with their quality trade-off.

:func:`to_fp8` swaps the per-token linear layers of a FLUX transformer's blocks for :class:`Fp8Linear`:
the weight is stored in ``float8_e4m3fn`` with one scale per output channel, each input row (token) is
quantised at run time with its own scale, and ``torch.nn.functional.scaled_mm`` multiplies the two with fp32
accumulation and a bf16 result. On an H100/H200 the float8 tensor cores run at twice the bf16 rate, and
the weights take half the memory.

**The trade-off.** e4m3 keeps 3 mantissa bits: each weight and activation is rounded to about 6 % of
its value (relative step 2⁻³; bf16 keeps 7 bits, 0.4 %). Per-channel and per-token scales keep the
range, but a layer's output still moves by about 3.7 % (relative RMS, measured on random Gaussian
weights and inputs at FLUX's widths, 3,072 to 15,360; bf16 alone: 0.3 %), and 57 blocks and 30 sampler
steps compound it: the same seed gives a different image in its details (``bench/gpu_bench.py
--flux-fp8`` measures the whole transformer's error and the pixel difference on the full-size model).
Whether the scientific content (what SciScore rewards) survives must be checked on the real
checkpoint with the ``eval-generator`` scores (ND, RI) before fp8 is used for anything but previews;
it is never on by default. Layers outside the blocks (embedders, the adaptive-norm modulations, the
output projection) and the text encoders and VAE stay bf16.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0  # the largest finite e4m3 value


def _rowwise_scales(x: torch.Tensor) -> torch.Tensor:
    """One fp32 scale per row so that the row's largest magnitude maps to ``FP8_MAX``."""
    return x.abs().amax(dim=-1, keepdim=True).float().clamp(min=1e-12) / FP8_MAX


class Fp8Linear(nn.Module):
    """``nn.Linear`` with a float8 weight (per-output-channel scales) and per-token float8 inputs."""

    weight_fp8: torch.Tensor  # buffers, registered in __init__
    weight_scale: torch.Tensor

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight = linear.weight.detach()
        scale = _rowwise_scales(weight)  # (out, 1)
        self.register_buffer("weight_fp8", (weight.float() / scale).to(FP8))
        self.register_buffer("weight_scale", scale.reshape(1, -1).contiguous())  # (1, out), as scaled_mm wants
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.out_dtype = (
            weight.dtype if weight.dtype in (torch.bfloat16, torch.float16, torch.float32) else torch.bfloat16
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        scale = _rowwise_scales(rows)
        quantised = (rows.float() / scale).to(FP8).contiguous()  # row-major, as scaled_mm wants
        out = F.scaled_mm(
            quantised,
            self.weight_fp8.t(),
            scale_a=scale,
            scale_recipe_a=F.ScalingType.RowWise,
            scale_b=self.weight_scale,
            scale_recipe_b=F.ScalingType.RowWise,
            output_dtype=self.out_dtype,
        )
        if self.bias is not None:
            out = out + self.bias.to(out.dtype)
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, fp8=e4m3 (row-wise scales)"


def to_fp8(transformer, min_features: int = 16) -> int:
    """Replace the per-token ``nn.Linear`` layers inside the transformer's repeated blocks (attention
    projections, fused or not, feed-forward and single-block MLP layers; not the ``norm*`` modulation
    layers, which act on one vector per image) with :class:`Fp8Linear`, in place. Returns how many.

    ``scaled_mm`` needs both sides of a weight to be multiples of 16; other layers are kept. Call it
    after ``fuse_qkv_projections`` (the fused projections are what runs) and before compiling.
    """
    blocks = [block for attribute in REPEATED_BLOCKS for block in getattr(transformer, attribute, ())]
    replaced = 0
    for block in blocks:
        for name, module in list(block.named_modules()):
            if not isinstance(module, nn.Linear) or name.split(".")[0].startswith("norm"):
                continue
            if module.in_features % min_features or module.out_features % min_features:
                continue
            parent_name, _, child = name.rpartition(".")
            parent = block.get_submodule(parent_name) if parent_name else block
            if getattr(parent, "fused_projections", False) and child in UNFUSED:
                continue  # kept by diffusers beside the fused projection, but never run
            setattr(parent, child, Fp8Linear(module))
            replaced += 1
    return replaced


REPEATED_BLOCKS = ("transformer_blocks", "single_transformer_blocks")  # FLUX's double- and single-stream blocks
UNFUSED = {"to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj"}
