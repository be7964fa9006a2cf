"""Masked online fine-tuning: the masked, clamped pair loss; reference = adapter disabled; LoRA-only
updates; the stacked export; two resolutions; exact resume."""

import math

import pytest
import torch

from ml.core.detector import region_mask
from ml.core.flow import pixel_mask_to_tokens
from ml.core.oft import (
    ADAPTER,
    OFTRun,
    adapter_disabled,
    export_lora,
    masked_log_ratio,
    pair_loss,
    pair_step,
    train_oft,
)
from tests.support.oft import (
    PROMPTS,
    assets,  # noqa: F401 (a fixture)
    probe,
    read_metrics,
    tiny_config,
)

# --- the loss, on hand-made log-probs ------------------------------------------------------


def test_it_ignores_tokens_outside_the_mask():
    torch.manual_seed(0)
    log_pi = (torch.randn(2, 6) * 0.01).requires_grad_()
    log_ref = torch.zeros(2, 6)
    mask = torch.tensor([[1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 1, 0]], dtype=torch.bool)

    loss = pair_loss(log_pi, log_ref, mask, winner=0, channels=4).loss
    loss.backward()
    assert (log_pi.grad[~mask] == 0).all() and (log_pi.grad[mask] != 0).all()

    perturbed = log_pi.detach().clone()
    perturbed[~mask] += torch.randn(int((~mask).sum())) * 100
    assert torch.equal(pair_loss(perturbed, log_ref, mask, winner=0, channels=4).loss, loss.detach())


def test_it_averages_the_log_ratio_over_masked_latent_elements_and_applies_beta():
    log_pi = torch.tensor([[0.4, 0.8, 9.0], [-0.2, 0.0, 9.0]])
    log_ref = torch.zeros(2, 3)
    mask = torch.tensor([[True, True, False], [True, True, False]])
    # per-token log-probs sum 4 channels: mean per element = (0.4 + 0.8) / (2 * 4) = 0.15 -> clamped
    ratios = masked_log_ratio(log_pi, log_ref, mask, channels=4)
    torch.testing.assert_close(ratios, torch.tensor([0.15, -0.025]))

    small = pair_loss(log_pi / 10, log_ref, mask, winner=0, channels=4)  # 0.015 and -0.0025
    assert small.loss.item() == pytest.approx(-math.log(1 / (1 + math.exp(-10 * 0.0175))), rel=1e-5)
    swapped = pair_loss(log_pi / 10, log_ref, mask, winner=1, channels=4)
    assert swapped.loss.item() == pytest.approx(-math.log(1 / (1 + math.exp(10 * 0.0175))), rel=1e-5)


def test_it_clips_each_steps_probability_ratio_to_ten_percent():
    log_pi = torch.tensor([[0.5], [-0.5]], requires_grad=True)  # far outside [log 0.9, log 1.1]
    result = pair_loss(log_pi, torch.zeros(2, 1), torch.ones(2, 1, dtype=torch.bool), winner=0, channels=1)
    torch.testing.assert_close(result.log_ratios, torch.tensor([math.log(1.1), math.log(0.9)]))
    assert result.clamped.all()
    result.loss.backward()
    assert (log_pi.grad == 0).all()  # outside the trust region: no push

    inside = torch.tensor([[0.05], [-0.05]], requires_grad=True)
    result = pair_loss(inside, torch.zeros(2, 1), torch.ones(2, 1, dtype=torch.bool), winner=0, channels=1)
    result.loss.backward()
    assert not result.clamped.any() and inside.grad[0] < 0 < inside.grad[1]


def test_it_maps_the_same_relative_box_to_the_token_grid_at_any_resolution():
    box = torch.tensor([[0.30, 0.10, 0.55, 0.70]])  # relative x0, y0, x1, y1
    for size in (32, 64, 128):
        tokens = pixel_mask_to_tokens(region_mask(box * size, size, size), size, size, vae_scale_factor=2)
        side = size // 4
        grown = (0.30 - 0.025, 0.10 - 0.06, 0.55 + 0.025, 0.70 + 0.06)
        expected = torch.zeros(side, side, dtype=torch.bool)
        for row in range(side):
            for col in range(side):  # a token is in when its square overlaps the grown box
                expected[row, col] = (
                    (col + 1) / side > grown[0]
                    and col / side < grown[2]
                    and (row + 1) / side > grown[1]
                    and row / side < grown[3]
                )
        assert torch.equal(tokens.reshape(side, side), expected), size


# --- the policy on the tiny pipeline -------------------------------------------------------


@pytest.fixture
def run(assets):
    return OFTRun.load(assets.flux, assets.sft, assets.scorer, assets.detector, tiny_config())


def test_the_reference_is_the_sft_model_and_equals_the_policy_before_any_update(run, assets):
    from ml.core.generate import load_pipeline

    velocity = probe(run)
    policy = velocity()
    with adapter_disabled(run.transformer):
        reference = velocity()
    assert torch.equal(policy, reference)  # fresh LoRA: B = 0
    assert all(p.requires_grad for n, p in run.transformer.named_parameters() if "lora_" in n)  # re-enabled

    sft = velocity(load_pipeline(assets.flux, device="cpu", lora=assets.sft).transformer)
    base = velocity(load_pipeline(assets.flux, device="cpu").transformer)
    torch.testing.assert_close(reference, sft, rtol=0, atol=1e-5)  # the fused SFT LoRA
    assert (reference - base).abs().max() > 1e-3


def test_one_step_changes_only_the_lora_weights(run):
    modules = {
        "transformer": run.transformer,
        "vae": run.pipe.vae,
        "clip": run.pipe.text_encoder,
        "t5": run.pipe.text_encoder_2,
    }
    before = {(m, n): p.detach().clone() for m, module in modules.items() for n, p in module.named_parameters()}
    trainable = [p for p in run.transformer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=run.config.lr)

    stats = pair_step(run, *PROMPTS[0], torch.Generator().manual_seed(0), weight=1.0)
    assert stats["loss"] == pytest.approx(math.log(2))  # policy == reference at the start
    with_grad = {n for n, p in run.transformer.named_parameters() if p.grad is not None}
    assert with_grad and all(f".{ADAPTER}." in n and "lora_" in n for n in with_grad)
    optimizer.step()

    for (m, n), old in before.items():
        new = dict(modules[m].named_parameters())[n]
        if "lora_B" in n:
            assert not torch.equal(new, old), n  # B moved off zero
        elif "lora_A" not in n:
            assert torch.equal(new, old), n  # base weights bit-identical
    velocity = probe(run)
    policy = velocity()
    with adapter_disabled(run.transformer):
        assert not torch.equal(policy, velocity())


def test_the_export_is_sft_plus_oft_on_the_plain_base(run, assets, tmp_path):
    from peft.tuners.lora import LoraLayer

    from ml.core.generate import load_pipeline

    torch.manual_seed(2)
    for module in run.transformer.modules():
        if isinstance(module, LoraLayer):
            torch.nn.init.normal_(module.lora_B[ADAPTER].weight, std=0.2)
    velocity = probe(run)
    exported = export_lora(run.transformer, run.start, tmp_path / "lora")
    loaded = velocity(load_pipeline(assets.flux, device="cpu", lora=exported).transformer)
    torch.testing.assert_close(loaded, velocity(), rtol=0, atol=1e-5)
    with adapter_disabled(run.transformer):
        assert (loaded - velocity()).abs().max() > 1e-3  # the OFT part is in the export too


# --- the loop ------------------------------------------------------------------------------


def test_it_trains_at_two_resolutions_and_resumes_exactly(assets, tmp_path):
    args = (assets.flux, assets.sft, assets.scorer, assets.detector, PROMPTS)
    straight = train_oft(*args, tmp_path / "straight", tiny_config(prompts_per_step=2, max_steps=2))
    train_oft(*args, tmp_path / "resumed", tiny_config(prompts_per_step=2, max_steps=1))
    resumed = train_oft(*args, tmp_path / "resumed", tiny_config(prompts_per_step=2, max_steps=2))

    assert (straight.optimizer_steps, straight.prompts_seen) == (2, 4)
    assert (resumed.optimizer_steps, resumed.prompts_seen) == (2, 4)
    metrics = read_metrics(tmp_path / "straight")
    assert metrics == read_metrics(tmp_path / "resumed")
    assert [(m["optimizer_step"], m["prompts_seen"]) for m in metrics] == [(1, 2), (2, 4)]
    assert {p["prompt_index"] for p in metrics[0]["pairs"]} == {0, 1}  # one epoch = each prompt once
    states = [
        torch.load(d / "checkpoint.pt", weights_only=True)["trainable"]
        for d in (tmp_path / "straight", tmp_path / "resumed")
    ]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert (straight.lora_dir / "pytorch_lora_weights.safetensors").exists()

    large = train_oft(*args, tmp_path / "64px", tiny_config(resolution=64))
    (row,) = read_metrics(tmp_path / "64px")
    assert large.optimizer_steps == 1 and 0 < row["mask_fraction"] <= 1 and row["loss"] is not None

    with pytest.raises(ValueError, match="config changed"):
        train_oft(*args, tmp_path / "64px", tiny_config(resolution=32, max_steps=2))
