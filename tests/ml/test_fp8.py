"""The optional float8 path: layers within their stated error, only the blocks' per-token layers swapped."""

import pytest
import torch
from torch import nn

from ml.core.fp8 import Fp8Linear, to_fp8
from ml.core.generate import generate, load_pipeline, optimize_pipeline
from ml.core.tiny_flux import make_tiny_flux


def relative_rms(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("shape", [(3072, 9216), (15360, 3072)])
def test_a_float8_layer_stays_within_its_stated_error(shape):
    torch.manual_seed(0)
    linear = nn.Linear(*shape)
    x = torch.randn(16, shape[0])

    error = relative_rms(Fp8Linear(linear)(x), linear(x))
    assert 0.01 < error < 0.05  # ml/core/fp8.py: "about 3.7 %"; e4m3 rounding, not zero
    assert Fp8Linear(linear).weight_fp8.dtype == torch.float8_e4m3fn


def test_it_swaps_the_blocks_per_token_layers_only(tmp_path):
    pipe = load_pipeline(make_tiny_flux(tmp_path), device="cpu")
    transformer = pipe.transformer
    transformer.fuse_qkv_projections()

    replaced = to_fp8(transformer)
    block = transformer.transformer_blocks[0]
    assert isinstance(block.attn.to_qkv, Fp8Linear) and isinstance(block.ff.net[2], Fp8Linear)
    assert isinstance(block.attn.to_q, nn.Linear) and not isinstance(block.attn.to_q, Fp8Linear)  # unfused: unused
    assert not isinstance(block.norm1.linear, Fp8Linear)  # a modulation: one vector per image
    assert not isinstance(transformer.proj_out, Fp8Linear)  # outside the blocks
    single = transformer.single_transformer_blocks[0]
    assert isinstance(single.proj_mlp, Fp8Linear) and isinstance(single.proj_out, Fp8Linear)
    assert replaced == sum(isinstance(m, Fp8Linear) for m in transformer.modules())


def test_an_fp8_pipeline_generates_images_close_to_the_bf16_ones(tmp_path):
    flux = make_tiny_flux(tmp_path, seed=1)
    settings = {"steps": 2, "guidance": 3.5, "width": 32, "height": 32, "max_sequence_length": 32}
    plain = generate(load_pipeline(flux, device="cpu"), ["rust"], seeds=[1], batch_size=1, **settings)[0]
    fast = optimize_pipeline(load_pipeline(flux, device="cpu"), compile=None, fp8=True)
    fp8 = generate(fast, ["rust"], seeds=[1], batch_size=1, **settings)[0]

    import numpy as np

    difference = np.abs(np.asarray(plain.image, dtype=np.int16) - np.asarray(fp8.image, dtype=np.int16))
    assert difference.mean() < 3
