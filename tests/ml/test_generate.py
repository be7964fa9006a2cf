"""Batched generation: metadata, per-image reproducibility, size checks."""

from pathlib import Path

import numpy as np
import pytest
import torch

from ml.core.generate import generate, load_pipeline
from ml.core.tiny_flux import make_tiny_flux

# a short T5 length keeps the tiny model fast; the default (512) is FLUX.1-dev's
SETTINGS = {"steps": 2, "guidance": 3.5, "width": 32, "height": 32, "max_sequence_length": 32}


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return load_pipeline(make_tiny_flux(tmp_path_factory.mktemp("tiny-flux")))


def pixels(generated):
    return np.asarray(generated.image, dtype=np.int16)


def test_it_loads_in_fp32_on_the_cpu(pipe):
    assert pipe.device.type == "cpu" and pipe.transformer.dtype == torch.float32


def test_it_returns_images_with_complete_metadata(pipe):
    images = generate(pipe, ["An unripe mango.", "A hard, green mango.", "A ripe mango."], seeds=[7, 8, 9],
                      batch_size=2, prompt_kind="IP", **SETTINGS)
    assert [g.prompt for g in images] == ["An unripe mango.", "A hard, green mango.", "A ripe mango."]
    assert [g.seed for g in images] == [7, 8, 9]
    assert all(g.image.size == (32, 32) for g in images)
    model = Path(pipe.name_or_path).name  # the pipeline folder's name (tmp folders are numbered)
    assert images[0].metadata() == {"model": model, "prompt": "An unripe mango.", "prompt_kind": "IP",
                                    "seed": 7, "steps": 2, "guidance": 3.5, "width": 32, "height": 32}


def test_it_names_the_model_when_asked(pipe):
    (image,) = generate(pipe, ["rust"], seeds=[1], batch_size=1, model_name="flux-dev+sft", **SETTINGS)
    assert image.model == "flux-dev+sft" and image.prompt_kind is None


def test_the_same_seed_gives_the_same_image_whatever_the_batch(pipe):
    prompts, seeds = ["an apple", "rust", "an apple"], [1, 2, 3]
    together = generate(pipe, prompts, seeds=seeds, batch_size=3, **SETTINGS)
    alone = generate(pipe, ["an apple"], seeds=[3], batch_size=1, **SETTINGS)
    reordered = generate(pipe, ["an apple", "ice"], seeds=[3, 4], batch_size=2, **SETTINGS)
    assert np.abs(pixels(together[2]) - pixels(alone[0])).max() <= 1
    assert np.abs(pixels(reordered[0]) - pixels(alone[0])).max() <= 1
    assert np.abs(pixels(together[0]) - pixels(together[2])).max() > 10  # seeds matter


def test_it_refuses_sizes_the_model_cannot_make(pipe):
    with pytest.raises(ValueError, match="multiples of 4"):
        generate(pipe, ["rust"], seeds=[1], batch_size=1, **{**SETTINGS, "width": 30})


def test_it_wants_one_seed_per_prompt(pipe):
    with pytest.raises(ValueError, match="one seed per prompt"):
        generate(pipe, ["rust", "ice"], seeds=[1], batch_size=2, **SETTINGS)


def test_it_can_compile_the_transformer(tmp_path):
    pipe = load_pipeline(make_tiny_flux(tmp_path), compile=True)
    assert pipe.transformer._compiled_call_impl is not None  # compiled in place; runs compiled on first call
    assert pipe.transformer.config.in_channels == 4
