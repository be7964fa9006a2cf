"""OFT's two recipes: the paper's sampler, masked mean, subject box, preference loss, reference and prompt
draws, each against a hand computation; the paper's reference on the tiny pipeline."""

import math

import pytest
import torch

from ml.core.flow import box_to_grid, cells_to_elements
from ml.core.oft import (
    OFTConfig,
    OFTRun,
    enclosing_box,
    export_lora,
    masked_log_ratio,
    pair_loss,
    pair_step,
    prompt_index,
    reference_model,
    train_oft,
)
from ml.core.sampler import churn_gamma, sample_trajectory, transition_log_prob, transition_mean, transition_std
from tests.support.oft import PROMPTS, assets, probe, read_metrics, tiny_config  # noqa: F401 (assets: a fixture)

X = torch.tensor([[[1.0, -2.0]]])  # one sample, one token, two channels
V = torch.tensor([[[0.5, 0.25]]])


# --- the sampler ---------------------------------------------------------------------------


def test_the_paper_samplers_noise_and_drift_corrected_mean_for_one_step():
    sigma, sigma_next, churn, steps = 0.8, 0.7, 0.1, 30
    gamma = 0.1 / 30
    std = sigma * math.sqrt((1 + gamma) ** 2 - 1)  # σ √((1+γ)² − 1)
    assert std == pytest.approx(0.0653741, abs=1e-7)
    mean = [
        x + (sigma_next - sigma) * (v + std**2 / (2 * sigma) * (-x + (1 - sigma) * v))
        for x, v in zip(X.flatten().tolist(), V.flatten().tolist(), strict=True)
    ]
    assert mean == pytest.approx([0.9502404, -2.0255476], abs=1e-6)  # vs the plain Euler 0.95, -2.025

    assert transition_std(sigma, sigma_next, churn, "churn", steps) == pytest.approx(std, rel=1e-12)
    ours = transition_mean(X, V, sigma, sigma_next, std, "churn")
    assert ours.flatten().tolist() == pytest.approx(mean, rel=1e-6)
    x_next = torch.tensor([[[0.97, -1.9]]])
    by_hand = [
        -((n - m) ** 2) / (2 * std**2) - math.log(std) - 0.5 * math.log(2 * math.pi)
        for n, m in zip(x_next.flatten().tolist(), mean, strict=True)
    ]
    elements = transition_log_prob(
        x_next, X, V, sigma, sigma_next, churn, sampler="churn", steps=steps, per_element=True
    )
    assert elements.flatten().tolist() == pytest.approx(by_hand, abs=1e-5)  # float32
    assert churn_gamma(100.0, 30) == pytest.approx(math.sqrt(2) - 1)  # γ is capped


def test_the_platform_samplers_noise_and_mean_for_one_step():
    std = 0.1 * math.sqrt(0.8 - 0.7)  # churn √Δσ
    assert transition_std(0.8, 0.7, 0.1) == pytest.approx(std) == pytest.approx(0.0316228, abs=1e-7)
    assert transition_mean(X, V, 0.8, 0.7, std).flatten().tolist() == pytest.approx([0.95, -2.025])


def test_the_paper_sampler_draws_its_step_and_records_its_log_prob():
    sigmas = torch.tensor([1.0, 0.6, 0.0])
    noise = torch.randn(1, 3, 2, generator=torch.Generator().manual_seed(1))

    def velocity(x, sigma):
        return 0.3 * x + sigma

    trajectory = sample_trajectory(
        velocity, noise, sigmas, churn=0.1, generator=torch.Generator().manual_seed(2), sampler="churn"
    )
    std = 1.0 * math.sqrt((1 + 0.1 / 2) ** 2 - 1)  # 2 steps: γ = 0.05
    mean = transition_mean(noise, velocity(noise, 1.0), 1.0, 0.6, std, "churn")
    z = torch.randn(1, 3, 2, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(trajectory.latents[1], mean + std * z)
    rescored = transition_log_prob(
        trajectory.latents[1], noise, velocity(noise, 1.0), 1.0, 0.6, 0.1, sampler="churn", steps=2
    )
    torch.testing.assert_close(trajectory.log_probs[0], rescored)


# --- the loss ------------------------------------------------------------------------------


def test_the_paper_averages_masked_log_ratios_over_all_elements_the_platform_inside_the_mask():
    log_pi = torch.tensor([[0.4, 0.8, 5.0, 7.0], [0.2, -0.2, 0.6, 3.0]])  # per element (channels = 1)
    mask = torch.tensor([[True, True, False, False], [True, True, True, False]])
    torch.testing.assert_close(
        masked_log_ratio(log_pi, torch.zeros(2, 4), mask, 1, "inside"),
        torch.tensor([(0.4 + 0.8) / 2, (0.2 - 0.2 + 0.6) / 3]),
    )
    torch.testing.assert_close(
        masked_log_ratio(log_pi, torch.zeros(2, 4), mask, 1, "all"),
        torch.tensor([(0.4 + 0.8) / 4, (0.2 - 0.2 + 0.6) / 4]),
    )
    tokens = torch.tensor([[0.4, 0.8, 9.0]])  # per token, each the sum of 4 channels
    torch.testing.assert_close(
        masked_log_ratio(tokens, torch.zeros(1, 3), torch.tensor([[True, True, False]]), 4, "all"),
        torch.tensor([1.2 / 12]),
    )


def test_the_paper_preference_loss_averages_the_two_by_two_matrix():
    log_pi = torch.tensor([[0.05], [-0.02]], requires_grad=True)
    ones = torch.ones(2, 1, dtype=torch.bool)

    def softplus(z):
        return math.log(1 + math.exp(z))

    # matrix[i][j] = -log σ(10 (r_i - r_j) [reward_i > reward_j]); sample 0 won: only [0][1] has a preference
    matrix = [[math.log(2), softplus(-10 * (0.05 + 0.02))], [math.log(2), math.log(2)]]
    paper = pair_loss(log_pi, torch.zeros(2, 1), ones, winner=0, channels=1, preference="matrix")
    assert paper.loss.item() == pytest.approx(sum(map(sum, matrix)) / 4, rel=1e-6)
    paper.loss.backward()
    paper_grad = log_pi.grad.clone()
    log_pi.grad = None
    platform = pair_loss(log_pi, torch.zeros(2, 1), ones, winner=0, channels=1)
    assert platform.loss.item() == pytest.approx(matrix[0][1], rel=1e-6)
    platform.loss.backward()
    torch.testing.assert_close(paper_grad, log_pi.grad / 4)  # a quarter of the gradient
    swapped = pair_loss(log_pi, torch.zeros(2, 1), ones, winner=1, channels=1, preference="matrix")
    assert swapped.loss.item() == pytest.approx((3 * math.log(2) + softplus(10 * 0.07)) / 4, rel=1e-6)


# --- the subject region --------------------------------------------------------------------


def test_the_paper_encloses_every_box_and_grows_it_by_a_tenth_of_the_image():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 40.0], [50.0, 30.0, 60.0, 50.0]])  # pixels of a 100 x 100 image
    # enclosing: x 0.1..0.6, y 0.2..0.5; w 0.5 -> 0.6, h 0.3 -> 0.4 about the centre (0.35, 0.35)
    assert enclosing_box(boxes, 100, 100, 0.1) == pytest.approx((0.05, 0.15, 0.65, 0.55))
    assert enclosing_box(torch.tensor([[0.0, 0.0, 95.0, 50.0]]), 100, 100, 0.1) == pytest.approx(
        (-0.025, -0.05, 0.975, 0.55)
    )  # w 0.95 > 0.9: the whole width
    assert enclosing_box(torch.zeros(0, 4), 100, 100, 0.1) == (0.0, 0.0, 1.0, 1.0)  # nothing found


def test_a_box_grown_past_the_image_edge_keeps_its_cells():
    box = enclosing_box(torch.tensor([[0.0, 10.0, 60.0, 50.0]]), 100, 100, 0.1)  # x0 = 0.3 - 0.35 = -0.05
    cells = box_to_grid(box, 64, 64)
    rows, cols = cells.any(1).nonzero().flatten(), cells.any(0).nonzero().flatten()
    assert (rows.min().item(), rows.max().item()) == (int(0.05 * 64), int(0.55 * 64) - 1)
    assert (cols.min().item(), cols.max().item()) == (0, int(0.65 * 64) - 1)
    research = torch.zeros(64, 64)  # the research code's int() slicing: a negative start wraps around
    research[int(box[1] * 64) : int(box[3] * 64), int(box[0] * 64) : int(box[2] * 64)] = 1
    assert research.sum() == 0


def test_the_latent_grid_mask_covers_every_channel_of_its_cells_in_packed_order():
    cells = torch.zeros(1, 4, 4, dtype=torch.bool)
    cells[0, 1, 2] = True  # row 1, column 2 -> token (0, 1), position dy = 1, dx = 0 in its 2 x 2 patch
    elements = cells_to_elements(cells, channels=2)
    assert elements.shape == (1, 4, 8)
    assert elements.nonzero().tolist() == [[0, 1, 2], [0, 1, 6]]  # element = channel * 4 + dy * 2 + dx


# --- the reference, prompts and recipe -----------------------------------------------------


def test_the_paper_reference_is_a_frozen_copy_of_the_sft_adapter_not_of_the_transformer(assets, tmp_path):
    from ml.core.generate import load_pipeline

    run = OFTRun.load(assets.flux, assets.sft, assets.scorer, assets.detector, tiny_config(recipe="paper"))
    velocity = probe(run)
    policy = velocity()
    with reference_model(run.transformer, run.config):
        reference = velocity()
    assert torch.equal(policy, reference)
    sft = load_pipeline(assets.flux, device="cpu", lora=assets.sft).transformer
    torch.testing.assert_close(policy, velocity(sft), rtol=0, atol=1e-5)  # the policy starts as the SFT model
    base = load_pipeline(assets.flux, device="cpu").transformer
    assert sum(p.numel() for n, p in run.transformer.named_parameters() if "lora_" not in n) == sum(
        p.numel() for p in base.parameters()
    )  # one transformer: no second copy of FLUX
    trainable = [n for n, p in run.transformer.named_parameters() if p.requires_grad]
    assert trainable and all(".default." in n for n in trainable)

    optimizer = torch.optim.AdamW([p for p in run.transformer.parameters() if p.requires_grad], lr=1e-2)
    stats = pair_step(run, *PROMPTS[0], torch.Generator().manual_seed(0), weight=1.0)
    assert stats["loss"] == pytest.approx(math.log(2))  # (3 log 2 + log 2) / 4 while policy == reference
    optimizer.step()
    assert not torch.equal(velocity(), policy)
    with reference_model(run.transformer, run.config):
        assert torch.equal(velocity(), reference)  # frozen
    assert [n for n, p in run.transformer.named_parameters() if p.requires_grad] == trainable  # still only the policy
    assert run.start == {}  # nothing fused: the export is the trained adapter itself
    exported = export_lora(run.transformer, run.start, tmp_path / "lora")
    loaded = load_pipeline(assets.flux, device="cpu", lora=exported).transformer
    torch.testing.assert_close(velocity(loaded), velocity(), rtol=0, atol=1e-5)


def test_the_paper_recipe_trains_and_resumes_exactly(assets, tmp_path):
    args = (assets.flux, assets.sft, assets.scorer, assets.detector, PROMPTS)
    paper = {"recipe": "paper", "prompts_per_step": 1}
    train_oft(*args, tmp_path / "straight", tiny_config(**paper, max_steps=2))
    train_oft(*args, tmp_path / "resumed", tiny_config(**paper, max_steps=1))
    train_oft(*args, tmp_path / "resumed", tiny_config(**paper, max_steps=2))
    metrics = read_metrics(tmp_path / "straight")
    assert metrics == read_metrics(tmp_path / "resumed")
    assert all(0 < m["mask_fraction"] <= 1 and m["loss"] is not None for m in metrics)


def test_the_paper_draws_prompts_with_replacement_the_platform_in_permutations():
    draws = [prompt_index(5, 0, p, "replacement") for p in range(200)]
    assert set(draws) == set(range(5)) and draws == [prompt_index(5, 0, p, "replacement") for p in range(200)]
    assert any(len(set(draws[i : i + 5])) < 5 for i in range(0, 200, 5))  # an epoch may repeat a prompt
    assert draws != [prompt_index(5, 1, p, "replacement") for p in range(200)]
    permuted = [prompt_index(5, 0, p) for p in range(200)]
    assert all(sorted(permuted[i : i + 5]) == list(range(5)) for i in range(0, 200, 5))


def test_the_recipe_sets_the_defaults_and_explicit_options_win():
    paper = OFTConfig(recipe="paper").resolved()
    assert (
        paper.sampler,
        paper.mask_mean,
        paper.mask_grid,
        paper.subject_region,
        paper.preference_loss,
        paper.reference,
        paper.prompt_sampling,
    ) == ("churn", "all", "latent", "enclosing", "matrix", "sft_adapter", "replacement")
    assert (paper.guidance, paper.prompts_per_step, paper.max_steps) == (0.0, 2, 156)
    platform = OFTConfig().resolved()
    assert (
        platform.sampler,
        platform.mask_mean,
        platform.mask_grid,
        platform.subject_region,
        platform.preference_loss,
        platform.reference,
        platform.prompt_sampling,
    ) == ("euler_maruyama", "inside", "token", "union", "pair", "fused_sft", "permutation")
    assert (platform.guidance, platform.prompts_per_step, platform.max_steps) == (3.5, 4, 100)
    assert OFTConfig(recipe="paper", guidance=3.5).resolved().guidance == 3.5
    with pytest.raises(ValueError, match="sampler 'ddim'"):
        OFTConfig(sampler="ddim")
