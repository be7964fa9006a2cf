"""The tiny FLUX pipeline: a real diffusers directory that loads offline and generates."""

import numpy as np
import pytest
import torch
from diffusers import FluxPipeline
from safetensors.torch import load_file
from transformers import T5TokenizerFast

from ml.core.tiny_flux import build_t5_tokenizer, make_tiny_flux


@pytest.fixture(scope="module")
def flux_dir(tmp_path_factory):
    return make_tiny_flux(tmp_path_factory.mktemp("flux"))


def test_it_loads_offline_and_generates_32px_in_2_steps(flux_dir):
    pipe = FluxPipeline.from_pretrained(flux_dir, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    images = pipe(
        ["An unripe mango, simple and realistic.", "rust"],
        num_inference_steps=2,
        height=32,
        width=32,
        max_sequence_length=32,
        generator=torch.Generator().manual_seed(0),
    ).images
    assert [image.size for image in images] == [(32, 32), (32, 32)]
    assert np.asarray(images[0]).std() > 0


def test_its_components_fit_together(flux_dir):
    pipe = FluxPipeline.from_pretrained(flux_dir, local_files_only=True)
    transformer = pipe.transformer.config
    assert transformer.in_channels == 4 * pipe.vae.config.latent_channels  # 2x2 packing
    assert transformer.pooled_projection_dim == pipe.text_encoder.config.hidden_size
    assert transformer.joint_attention_dim == pipe.text_encoder_2.config.d_model
    assert transformer.guidance_embeds  # like FLUX.1-dev
    assert pipe.vae_scale_factor == 2
    assert pipe.vae.config.shift_factor is not None
    assert pipe.tokenizer.model_max_length == 77
    assert pipe.text_encoder_2.config.vocab_size == len(pipe.tokenizer_2)


def test_its_t5_tokenizer_has_t5s_special_tokens(flux_dir):
    tokenizer = FluxPipeline.from_pretrained(flux_dir, local_files_only=True).tokenizer_2
    assert isinstance(tokenizer, T5TokenizerFast)
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    ids = tokenizer("A ripe yellow-orange mango.").input_ids
    assert ids[-1] == 1 and 2 not in ids
    assert "▁mango" in tokenizer.tokenize("an unripe mango")  # a word of the corpus is one piece
    assert tokenizer("rust", padding="max_length", max_length=8).input_ids[-1] == 0
    assert tokenizer.model_max_length == 512


def test_the_same_seed_writes_the_same_model(flux_dir, tmp_path):
    again = make_tiny_flux(tmp_path / "again", seed=0)
    name = "transformer/diffusion_pytorch_model.safetensors"
    first, second = load_file(flux_dir / name), load_file(again / name)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert (
        build_t5_tokenizer().get_vocab()
        == FluxPipeline.from_pretrained(flux_dir, local_files_only=True).tokenizer_2.get_vocab()
    )


def test_it_can_mimic_schnell_without_a_guidance_embedding(tmp_path):
    pipe = FluxPipeline.from_pretrained(make_tiny_flux(tmp_path, guidance_embeds=False), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    assert not pipe.transformer.config.guidance_embeds
    assert pipe("ice", num_inference_steps=2, height=32, width=32, max_sequence_length=32).images[0].size == (32, 32)
