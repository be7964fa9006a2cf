"""Batched generation: metadata, per-image reproducibility, size checks."""

from pathlib import Path

import numpy as np
import pytest
import torch

from ml.core.generate import generate, load_pipeline, optimize_pipeline
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
    images = generate(
        pipe,
        ["An unripe mango.", "A hard, green mango.", "A ripe mango."],
        seeds=[7, 8, 9],
        batch_size=2,
        prompt_kind="IP",
        **SETTINGS,
    )
    assert [g.prompt for g in images] == ["An unripe mango.", "A hard, green mango.", "A ripe mango."]
    assert [g.seed for g in images] == [7, 8, 9]
    assert all(g.image.size == (32, 32) for g in images)
    model = Path(pipe.name_or_path).name  # the pipeline folder's name (tmp folders are numbered)
    assert images[0].metadata() == {
        "model": model,
        "prompt": "An unripe mango.",
        "prompt_kind": "IP",
        "seed": 7,
        "steps": 2,
        "guidance": 3.5,
        "width": 32,
        "height": 32,
    }


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


def test_it_optimises_the_pipeline_when_asked_fusing_qkv_and_compiling_each_repeated_block(tmp_path):
    pipe = load_pipeline(make_tiny_flux(tmp_path), compile=True)
    transformer = pipe.transformer
    blocks = [*transformer.transformer_blocks, *transformer.single_transformer_blocks]

    assert all(block._compiled_call_impl is not None for block in blocks)  # compiled in place, run on first call
    assert transformer._compiled_call_impl is None  # regional: the blocks, not the whole model
    assert all(block.attn.fused_projections for block in blocks)
    assert transformer.config.in_channels == 4


def test_it_stays_eager_on_the_cpu_unless_asked(pipe):
    assert not any(getattr(m, "_compiled_call_impl", None) for m in pipe.transformer.modules())
    assert not pipe.transformer.transformer_blocks[0].attn.fused_projections


def lora_dir(flux_dir, directory, seed=5):
    """A LoRA on the tiny transformer whose B factors are random, so that it changes the images."""
    from peft import LoraConfig

    from ml.core.sft import LORA_TARGETS, save_lora

    transformer = load_pipeline(flux_dir, device="cpu").transformer
    transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=LORA_TARGETS))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in transformer.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    save_lora(transformer, directory)
    return directory


def test_an_optimised_pipeline_makes_the_same_images_lora_fused_included(tmp_path):
    flux_dir = make_tiny_flux(tmp_path / "flux", seed=3)
    lora = lora_dir(flux_dir, tmp_path / "lora")
    prompts, seeds = ["an apple", "rust", "ice"], [1, 2, 3]

    base = generate(load_pipeline(flux_dir, device="cpu"), prompts, seeds=seeds, batch_size=3, **SETTINGS)
    plain = generate(load_pipeline(flux_dir, device="cpu", lora=lora), prompts, seeds=seeds, batch_size=3, **SETTINGS)
    fast = optimize_pipeline(load_pipeline(flux_dir, device="cpu", lora=lora), backend="eager")
    assert not getattr(fast.transformer, "peft_config", None)  # the LoRA is in the weights now
    optimised = generate(fast, prompts, seeds=seeds, batch_size=2, **SETTINGS)

    for a, b, c in zip(plain, optimised, base, strict=True):
        assert np.abs(pixels(a) - pixels(b)).max() <= 1
        assert np.abs(pixels(a) - pixels(c)).max() > 10  # the LoRA mattered


def test_it_reports_each_denoising_step(pipe):
    steps = []
    generate(pipe, ["rust", "ice", "an apple"], seeds=[1, 2, 3], batch_size=2, on_step=steps.append, **SETTINGS)
    assert steps == [0, 1, 0, 1]  # two batches of two steps


def test_it_refuses_an_unknown_compile_mode(pipe):
    with pytest.raises(ValueError, match="regional"):
        optimize_pipeline(load_pipeline(Path(pipe.name_or_path), device="cpu"), compile="everything")
