"""Tiny OFT set-ups shared by the ML core's OFT tests: prompts, assets (a fixture: tiny FLUX, detector,
scorer), an OFT config, a probe of a run's state, its metrics, and an SFT LoRA to start from."""

import json
from types import SimpleNamespace

import pytest
import torch

from ml.core.flow import encode_text
from ml.core.oft import OFTConfig

PROMPTS = [("An unripe mango, simple and realistic.", "mango"), ("An iron nail left in the rain.", "nail")]


def make_sft_lora(flux_dir, directory):
    """An SFT-format LoRA whose B is non-zero, so the SFT model differs from the base."""
    from peft import LoraConfig
    from peft.tuners.lora import LoraLayer

    from ml.core.generate import load_pipeline
    from ml.core.sft import LORA_TARGETS, save_lora

    transformer = load_pipeline(flux_dir, device="cpu").transformer
    torch.manual_seed(1)
    transformer.add_adapter(LoraConfig(r=4, lora_alpha=8, init_lora_weights="gaussian", target_modules=LORA_TARGETS))
    for module in transformer.modules():
        if isinstance(module, LoraLayer):
            torch.nn.init.normal_(module.lora_B["default"].weight, std=0.2)
    save_lora(transformer, directory)
    return directory


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from ml.core.tiny import make_tiny_scorer
    from ml.core.tiny_detector import make_tiny_grounding_dino
    from ml.core.tiny_flux import make_tiny_flux

    root = tmp_path_factory.mktemp("oft")
    flux = make_tiny_flux(root / "flux", seed=0)
    return SimpleNamespace(
        flux=flux,
        sft=make_sft_lora(flux, root / "sft"),
        scorer=make_tiny_scorer(root / "scorer"),
        detector=make_tiny_grounding_dino(root / "gdino", words=("mango", "nail")),
    )


def tiny_config(**overrides):
    settings = {
        "resolution": 32,
        "num_steps": 2,
        "prompts_per_step": 1,
        "max_steps": 1,
        "max_sequence_length": 32,
        "gradient_checkpointing": False,
        "checkpoint_every": 1,
        "device": "cpu",
    }
    return OFTConfig(**{**settings, **overrides})


def probe(run):
    """``velocity(transformer=None)``: the run's policy (or another transformer) on one fixed input."""
    from ml.core.flow import predict_velocity

    text = encode_text(run.pipe, ["An unripe mango."], max_sequence_length=32)
    x = torch.randn(1, 64, 4, generator=torch.Generator().manual_seed(5))

    def velocity(transformer=None):
        with torch.no_grad():
            if transformer is None:
                return run.velocity(text, x, 0.6)
            return predict_velocity(
                transformer, x, torch.tensor([0.6]), text, run.img_ids, guidance=run.config.guidance
            )

    return velocity


def read_metrics(out_dir):
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        del row["seconds"]
    return rows
