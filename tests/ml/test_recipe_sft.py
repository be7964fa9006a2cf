"""SFT's two recipes: resize, VAE latents, noise levels, epochs and variants of the paper's, by hand."""

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from ml.core import flow
from ml.core.sft import EpochOrder, SFTConfig, micro_batch
from ml.core.tiny_flux import make_tiny_flux
from science_t2i.format import TupleRecord


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    from ml.core.generate import load_pipeline

    return load_pipeline(make_tiny_flux(tmp_path_factory.mktemp("flux")), device="cpu")


def gradient(width: int, height: int) -> Image.Image:
    x = np.linspace(0, 255, width)[None, :, None] * np.ones((height, 1, 3))
    y = np.linspace(0, 255, height)[:, None, None] * np.ones((1, width, 3))
    return Image.fromarray(((x + y) / 2).astype("uint8"))


def test_shorter_side_is_torchvisions_bilinear_resize_without_a_crop():
    image = gradient(40, 40)
    research = transforms.Compose(
        [
            transforms.Resize(16, interpolation=transforms.InterpolationMode.BILINEAR),
            transforms.ToTensor(),
            transforms.Normalize([0.5], [0.5]),
        ]
    )(image)
    ours = flow.images_to_tensor([image], 16, 16, resize="shorter_side")[0]
    torch.testing.assert_close(ours, research, rtol=0, atol=1e-6)
    platform = flow.images_to_tensor([image], 16, 16)[0]  # bicubic cover + centre crop
    assert (platform - research).abs().max() > 1e-3
    wide = gradient(48, 32)  # 24 x 16 after the research resize: a batch of it cannot be trained at 16 x 16
    assert flow.images_to_tensor([wide], 16, 16).shape == (1, 3, 16, 16)
    with pytest.raises(ValueError, match="24x16 after resizing its shorter side"):
        flow.images_to_tensor([wide], 16, 16, resize="shorter_side")


def test_the_paper_samples_the_vae_posterior_where_the_platform_takes_its_mode(pipe):
    pixels = flow.images_to_tensor([gradient(16, 16)], 16, 16)
    dist = pipe.vae.encode(pixels).latent_dist
    noise = torch.randn(dist.mean.shape, generator=torch.Generator().manual_seed(4))
    by_hand = (dist.mean + dist.std * noise - pipe.vae.config.shift_factor) * pipe.vae.config.scaling_factor
    sampled = flow.encode_images(pipe.vae, pixels, posterior="sample", generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(sampled, flow.pack_latents(by_hand))
    mode = flow.encode_images(pipe.vae, pixels)
    expected_mode = (dist.mode() - pipe.vae.config.shift_factor) * pipe.vae.config.scaling_factor
    torch.testing.assert_close(mode, flow.pack_latents(expected_mode))
    assert (sampled - mode).abs().max() > 1e-4


def test_the_paper_draws_noise_levels_from_the_schedulers_1000_level_grid(pipe):
    grid = flow.training_sigma_grid(pipe.scheduler.config)
    assert len(grid) == 1000 and grid[0] == 1.0 and grid[-1] == pytest.approx(0.001)
    u = torch.rand(500, generator=torch.Generator().manual_seed(9))
    expected = [(1000 - math.floor(v * 1000)) / 1000 for v in u.tolist()]  # timesteps[floor(u N)] / 1000
    drawn = flow.sample_sigmas(500, generator=torch.Generator().manual_seed(9), scheme="grid", grid=grid)
    assert drawn.tolist() == pytest.approx(expected, abs=1e-6)
    uniform = flow.sample_sigmas(500, generator=torch.Generator().manual_seed(9))
    assert torch.equal(uniform, u)  # the platform's: u itself


def test_the_recipe_sets_the_defaults_and_epochs_set_the_steps():
    paper = SFTConfig(recipe="paper").resolved(n_records=10)
    assert (paper.variants, paper.image_resize, paper.vae_latents, paper.sigma_scheme) == (
        "random",
        "shorter_side",
        "sample",
        "grid",
    )
    assert (paper.epochs, paper.max_steps) == (60, math.ceil(60 * 10 / (4 * 8)))  # 19 steps of 32 tuples
    platform = SFTConfig().resolved(n_records=10)
    assert (platform.variants, platform.image_resize, platform.vae_latents, platform.sigma_scheme) == (
        "first",
        "cover_crop",
        "mode",
        "uniform",
    )
    assert (platform.epochs, platform.max_steps) == (0, 500)
    assert SFTConfig(recipe="paper", max_steps=7).resolved(10).max_steps == 7  # explicit wins, epochs off
    assert SFTConfig(epochs=2).resolved(10).max_steps == 1  # ceil(20 / 32)
    with pytest.raises(ValueError, match="not both"):
        SFTConfig(max_steps=5, epochs=2).resolved(10)
    with pytest.raises(ValueError, match="image_resize 'crop'"):
        SFTConfig(image_resize="crop")


def test_random_variants_draw_the_paraphrase_and_the_correct_image_per_example():
    images = [Image.new("RGB", (4, 4), (i * 60, 0, 0)) for i in range(3)]
    records = [
        TupleRecord("ip0", "e", "s", images[0], images[2], implicit_prompts=["ip0", "ip1"], correct_images=images[:2])
        for _ in range(2)
    ]
    order = EpochOrder(len(records), seed=0)
    paper = SFTConfig(recipe="paper", batch_size=2).resolved(2)
    batches = [micro_batch(records, order, seen, paper) for seen in range(0, 80, 2)]
    assert {r.implicit_prompt for b in batches for r in b} == {"ip0", "ip1"}
    assert {id(r.correct_image) for b in batches for r in b} == {id(images[0]), id(images[1])}
    again = [micro_batch(records, order, seen, paper) for seen in range(0, 80, 2)]
    assert [[r.implicit_prompt for r in b] for b in again] == [[r.implicit_prompt for r in b] for b in batches]
    platform = SFTConfig(batch_size=2).resolved(2)
    assert {r.implicit_prompt for s in range(0, 80, 2) for r in micro_batch(records, order, s, platform)} == {"ip0"}


def test_lora_weights_stay_fp32_on_a_bf16_model(tmp_path):
    """The research code trains its LoRA in bf16 (cast_training_params only runs for fp16): kept out."""
    from diffusers import FluxPipeline

    from ml.core.sft import add_lora

    bf16 = FluxPipeline.from_pretrained(
        str(make_tiny_flux(tmp_path / "flux")), dtype=torch.bfloat16, local_files_only=True
    )
    transformer = add_lora(bf16, SFTConfig(recipe="paper", gradient_checkpointing=False))
    trainable = [p for p in transformer.parameters() if p.requires_grad]
    assert trainable and all(p.dtype == torch.float32 for p in trainable)
    assert transformer.transformer_blocks[0].attn.to_q.base_layer.weight.dtype == torch.bfloat16
