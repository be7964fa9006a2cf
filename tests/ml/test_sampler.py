"""The stochastic Euler sampler: Gaussian log-probs per token, and the churn-0 deterministic limit."""

import math

import pytest
import torch
from torch.distributions import Normal

from ml.core.sampler import sample_trajectory, transition_log_prob, transition_std

SIGMAS = torch.tensor([1.0, 0.8, 0.55, 0.3, 0.1, 0.0])
SHAPE = (2, 6, 4)  # (batch, tokens, channels), FLUX-packed


def linear_velocity(weight):
    """A stand-in model: v = tanh(W x) + σ."""
    return lambda x, sigma: torch.tanh(x @ weight) + sigma


@pytest.fixture
def weight():
    return torch.randn(4, 4, generator=torch.Generator().manual_seed(1))


def noise():
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))


def test_it_records_the_gaussian_log_density_per_token(weight):
    velocity = linear_velocity(weight)
    churn = 0.1
    traj = sample_trajectory(velocity, noise(), SIGMAS, churn=churn, generator=torch.Generator().manual_seed(3))

    assert traj.latents.shape == (len(SIGMAS), *SHAPE)
    assert traj.log_probs.shape == (len(SIGMAS) - 1, 2, 6)
    for i in range(traj.steps):
        sigma, sigma_next = SIGMAS[i].item(), SIGMAS[i + 1].item()
        x = traj.latents[i]
        mean = x + (sigma_next - sigma) * velocity(x, sigma)
        std = churn * math.sqrt(sigma - sigma_next)
        expected = Normal(mean, std).log_prob(traj.latents[i + 1]).sum(-1)
        torch.testing.assert_close(traj.log_probs[i], expected, rtol=1e-5, atol=1e-4)
        # Re-scoring the recorded transition under the same model gives the recorded log-prob.
        rescored = transition_log_prob(traj.latents[i + 1], x, velocity(x, sigma), sigma, sigma_next, churn)
        torch.testing.assert_close(rescored, traj.log_probs[i])


def test_it_rescoring_under_another_model_follows_the_formula_and_is_differentiable(weight):
    traj = sample_trajectory(linear_velocity(weight), noise(), SIGMAS, generator=torch.Generator().manual_seed(3))
    other = torch.randn(SHAPE, requires_grad=True)
    sigma, sigma_next = SIGMAS[1].item(), SIGMAS[2].item()
    x, x_next = traj.latents[1], traj.latents[2]

    log_prob = transition_log_prob(x_next, x, other, sigma, sigma_next, churn=0.1)
    expected = Normal(x + (sigma_next - sigma) * other, 0.1 * math.sqrt(sigma - sigma_next)).log_prob(x_next).sum(-1)
    torch.testing.assert_close(log_prob, expected, rtol=1e-5, atol=1e-4)
    log_prob.sum().backward()
    assert other.grad is not None and other.grad.abs().sum() > 0


def test_it_reduces_to_the_deterministic_euler_sampler_at_churn_zero(weight):
    velocity = linear_velocity(weight)
    traj = sample_trajectory(velocity, noise(), SIGMAS, churn=0.0)

    x = noise()
    for i in range(len(SIGMAS) - 1):
        x = x + (SIGMAS[i + 1] - SIGMAS[i]) * velocity(x, SIGMAS[i].item())
    torch.testing.assert_close(traj.sample, x)
    assert traj.log_probs is None


def test_it_is_reproducible_from_its_seeds_and_noise_scales_with_churn(weight):
    velocity = linear_velocity(weight)
    runs = [
        sample_trajectory(velocity, noise(), SIGMAS, churn=c, generator=torch.Generator().manual_seed(7))
        for c in (0.1, 0.1, 0.2, 0.0)
    ]
    torch.testing.assert_close(runs[0].latents, runs[1].latents)
    gap = (runs[0].sample - runs[3].sample).abs().mean()
    assert gap > 0 and (runs[2].sample - runs[3].sample).abs().mean() > gap


def test_it_uses_brownian_step_noise():
    assert transition_std(1.0, 0.75, 0.1) == pytest.approx(0.05)
    with pytest.raises(ValueError):
        transition_std(0.5, 0.6, 0.1)
