"""Rectified-flow helpers: FLUX layout, schedules, encoders and pixel-to-token masks."""

import numpy as np
import pytest
import torch
from diffusers import FluxPipeline
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from ml.core import flow
from ml.core.tiny_flux import make_tiny_flux


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    pipe = FluxPipeline.from_pretrained(make_tiny_flux(tmp_path_factory.mktemp("flux")), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def pipeline_latents(pipe, batch: int, channels: int, height: int, width: int):
    """``(noise, packed noise, position ids)`` as the pipeline's public ``prepare_latents`` makes them."""
    seed = 7
    packed, ids = pipe.prepare_latents(
        batch, channels, height, width, torch.float32, "cpu", torch.Generator().manual_seed(seed)
    )
    vsf = pipe.vae_scale_factor
    noise = randn_tensor((batch, channels, height // vsf, width // vsf), generator=torch.Generator().manual_seed(seed))
    return noise, packed, ids


@pytest.mark.parametrize(("channels", "h", "w"), [(1, 16, 16), (16, 8, 12)])
def test_it_packs_like_the_pipeline_and_unpacks_back(pipe, channels, h, w):
    vsf = pipe.vae_scale_factor
    latents, packed_by_pipeline, _ = pipeline_latents(pipe, 2, channels, h * vsf, w * vsf)
    packed = flow.pack_latents(latents)
    assert packed.shape == (2, h * w // 4, 4 * channels)
    assert torch.equal(packed, packed_by_pipeline)
    assert torch.equal(flow.unpack_latents(packed, h * vsf, w * vsf, vsf), latents)


def test_it_refuses_tokens_that_do_not_fit_the_size():
    with pytest.raises(ValueError, match="do not fit"):
        flow.unpack_latents(torch.zeros(1, 10, 4), 32, 32, 2)


def test_it_builds_the_pipelines_position_ids(pipe):
    vsf = pipe.vae_scale_factor
    ids = flow.latent_image_ids(8 * vsf, 6 * vsf, vsf)
    assert torch.equal(ids, pipeline_latents(pipe, 1, 1, 8 * vsf, 6 * vsf)[2])
    assert ids[5].tolist() == [0, 1, 2]  # row-major over a 4 x 3 token grid


def test_it_checks_resolutions_with_a_clear_error():
    flow.check_resolution(1024, 768, 8)
    for height, width in [(1000, 1024), (1024, 0)]:
        with pytest.raises(ValueError, match="multiples of 16"):
            flow.check_resolution(height, width, 8)


def test_it_draws_the_pipelines_starting_noise(pipe):
    generators = lambda: [torch.Generator().manual_seed(s) for s in (3, 4)]  # noqa: E731
    expected, _ = pipe.prepare_latents(2, 1, 32, 32, torch.float32, "cpu", generators())
    noise = flow.packed_noise(2, 1, 32, 32, pipe.vae_scale_factor, generator=generators())
    assert torch.equal(noise, expected)


def test_it_reproduces_the_pipelines_schedule(pipe):
    pipe("a mango", num_inference_steps=3, height=32, width=32, max_sequence_length=16)
    seq_len = 8 * 8  # 32 px, VAE scale 2, 2x2 patches
    sigmas = flow.inference_sigmas(pipe.scheduler.config, 3, seq_len)
    assert torch.allclose(sigmas, pipe.scheduler.sigmas)
    assert sigmas[0] == 1 and sigmas[-1] == 0 and len(sigmas) == 4


def test_it_encodes_images_and_decodes_latents(pipe):
    images = [Image.new("RGB", (48, 32), (200, 30, 30)), Image.new("RGB", (32, 32), (0, 0, 255))]
    pixels = flow.images_to_tensor(images, 32, 32)
    assert pixels.shape == (2, 3, 32, 32) and pixels.min() >= -1 and pixels.max() <= 1
    packed = flow.encode_images(pipe.vae, pixels)
    assert packed.shape == (2, 64, 4)
    assert torch.equal(packed, flow.encode_images(pipe.vae, pixels))  # posterior mean: deterministic
    decoded = flow.decode_latents(pipe.vae, packed, 32, 32)
    assert decoded.shape == (2, 3, 32, 32) and decoded.min() >= 0 and decoded.max() <= 1
    assert [im.size for im in flow.to_pil(decoded)] == [(32, 32), (32, 32)]


def test_it_crops_to_the_centre():
    image = np.zeros((32, 64, 3), dtype=np.uint8)
    image[:, 12:52] = 255  # white centre, black sides
    pixels = flow.images_to_tensor([Image.fromarray(image)], 16, 16)  # scaled to 32 x 16, then cropped
    assert torch.all(pixels > 0.99)


def test_it_encodes_text_with_the_pipeline(pipe):
    text = flow.encode_text(pipe, ["an unripe mango", "rust"], max_sequence_length=16)
    assert text.prompt_embeds.shape == (2, 16, 32)
    assert text.pooled.shape == (2, 32)
    assert text.text_ids.shape == (16, 3) and not text.text_ids.any()


def test_the_flow_runs_from_data_to_noise():
    x0, noise = torch.randn(3, 5, 4), torch.randn(3, 5, 4)
    sigmas = torch.tensor([0.0, 0.5, 1.0])
    xt = flow.noisy_latents(x0, noise, sigmas)
    assert torch.equal(xt[0], x0[0]) and torch.equal(xt[2], noise[2])
    step = flow.noisy_latents(x0, noise, torch.full((3,), 0.5 + 1e-3))
    velocity = (step - flow.noisy_latents(x0, noise, torch.full((3,), 0.5))) / 1e-3
    assert torch.allclose(velocity, flow.velocity_target(x0, noise), atol=1e-2)


@pytest.mark.parametrize("scheme", ["uniform", "logit_normal"])
def test_it_samples_sigmas_reproducibly(scheme):
    a = flow.sample_sigmas(256, generator=torch.Generator().manual_seed(0), scheme=scheme)
    b = flow.sample_sigmas(256, generator=torch.Generator().manual_seed(0), scheme=scheme)
    assert torch.equal(a, b) and a.shape == (256,)
    assert a.min() >= 0 and a.max() < 1 and a.std() > 0.1


def test_it_refuses_unknown_sigma_schemes():
    with pytest.raises(ValueError, match="unknown sigma"):
        flow.sample_sigmas(2, scheme="cosine")


def test_it_predicts_velocities_with_the_guidance_embedding(pipe):
    text = flow.encode_text(pipe, ["an apple"], max_sequence_length=16)
    latents = torch.randn(1, 64, 4, generator=torch.Generator().manual_seed(0))
    ids = flow.latent_image_ids(32, 32, pipe.vae_scale_factor)
    sigma = torch.tensor([0.7])
    with torch.no_grad():
        v0 = flow.predict_velocity(pipe.transformer, latents, sigma, text, ids, guidance=0.0)
        v3 = flow.predict_velocity(pipe.transformer, latents, sigma, text, ids, guidance=3.5)
        expected = pipe.transformer(
            hidden_states=latents,
            timestep=sigma,
            guidance=torch.tensor([3.5]),
            pooled_projections=text.pooled,
            encoder_hidden_states=text.prompt_embeds,
            txt_ids=text.text_ids,
            img_ids=ids,
            return_dict=False,
        )[0]
    assert v0.shape == latents.shape
    assert torch.equal(v3, expected) and not torch.equal(v0, v3)


def test_it_turns_boxes_into_pixel_masks():
    mask = flow.boxes_to_pixel_mask(torch.tensor([[2.0, 1.0, 5.0, 3.0], [-4.0, -4.0, 100.0, 100.0]]), 4, 6)
    assert mask.shape == (2, 4, 6)
    assert mask[0].nonzero().tolist() == [[r, c] for r in (1, 2) for c in (2, 3, 4)]
    assert mask[1].all()


@pytest.mark.parametrize(("height", "width", "vsf"), [(32, 32, 2), (1024, 768, 8)])
def test_it_maps_a_pixel_box_onto_the_token_grid(height, width, vsf):
    cell = 2 * vsf
    rows, cols = height // cell, width // cell
    # a box from the middle of token (1, 1) to the middle of token (2, 3): both end tokens count
    box = torch.tensor([[1.5 * cell, 1.5 * cell, 3.5 * cell, 2.5 * cell]])
    tokens = flow.pixel_mask_to_tokens(flow.boxes_to_pixel_mask(box, height, width), height, width, vsf)
    assert tokens.shape == (1, rows * cols) and tokens.dtype == torch.bool
    grid = tokens.reshape(rows, cols)
    assert grid.nonzero().tolist() == [[r, c] for r in (1, 2) for c in (1, 2, 3)]
    # the same box on a half-resolution mask (e.g. a detector's input) selects the same tokens
    half = flow.boxes_to_pixel_mask(box / 2, height // 2, width // 2)
    assert torch.equal(flow.pixel_mask_to_tokens(half[0], height, width, vsf), tokens)


def test_token_masks_follow_the_packing_order():
    height, width, vsf = 48, 32, 2
    pixel_mask = torch.zeros(height, width, dtype=torch.bool)
    pixel_mask[5:14, 20:27] = True
    tokens = flow.pixel_mask_to_tokens(pixel_mask, height, width, vsf)
    # mark the same region on the latent grid (max-pool by the VAE factor) and pack it
    latent_mask = torch.nn.functional.max_pool2d(pixel_mask[None, None].float(), vsf)
    packed = flow.pack_latents(latent_mask)
    assert torch.equal(tokens, packed.amax(dim=-1) > 0)


def test_it_refuses_masks_of_the_wrong_rank():
    with pytest.raises(ValueError, match="mask must be"):
        flow.pixel_mask_to_tokens(torch.zeros(1, 1, 8, 8), 8, 8, 2)


def test_training_attention_leaves_out_cudnn_and_restores_it():
    before = torch.backends.cuda.cudnn_sdp_enabled()
    with flow.training_attention():
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        assert torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.math_sdp_enabled()
    assert torch.backends.cuda.cudnn_sdp_enabled() == before
