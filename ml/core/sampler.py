"""A stochastic Euler sampler for rectified-flow (FLUX) latents that records Gaussian log-probs.

Rectified flow interpolates ``x_σ = (1 − σ) x_data + σ ε`` and the transformer predicts the velocity
``v = ε − x_data``, so the deterministic Euler step from ``σ_i`` to ``σ_{i+1}`` (``σ`` falls from 1 to 0) is

    μ_i = x_i + (σ_{i+1} − σ_i) · v_θ(x_i, σ_i).

The stochastic sampler keeps that mean and adds Gaussian noise, which turns every step into a Gaussian
policy ``π(x_{i+1} | x_i) = N(μ_i, s_i² I)`` with a tractable log-density (what online fine-tuning needs):

    x_{i+1} = μ_i + s_i · z,   z ~ N(0, I),   s_i = churn · sqrt(σ_i − σ_{i+1}).

Why ``sqrt(Δσ)``: it is the Euler–Maruyama discretisation of ``dx = v dt + churn · dW``, so the total
injected variance is ``churn² · Σ Δσ = churn²`` (std 0.1 at churn 0.1) whatever the number of steps,
and every step, the last one included, stays stochastic (a proper density to differentiate).

Log-probs are kept **per latent token**: latents are FLUX-packed ``(batch, tokens, channels)`` and

    log π_i[b, t] = Σ_c [ −(x_{i+1} − μ_i)² / (2 s_i²) − log s_i − ½ log 2π ]

(the channel sum of the element-wise Gaussian log-density), so a token mask can select the tokens
that count. All of this is computed in float32 whatever the model's dtype.

With ``churn = 0`` the sampler is the deterministic Euler sampler; a step is then a Dirac, which has no
density, so no log-probs are recorded (``Trajectory.log_probs is None``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

DEFAULT_STEPS = 30
DEFAULT_CHURN = 0.1

# velocity_fn(latents (B, L, C), sigma: float) -> predicted velocity (B, L, C)
VelocityFn = Callable[[torch.Tensor, float], torch.Tensor]


@dataclass
class Trajectory:
    """One sampled chain. ``latents[i]`` is ``x_i`` at ``sigmas[i]``; ``latents[-1]`` is the sample."""

    sigmas: torch.Tensor  # (steps + 1,), from 1 down to 0
    latents: torch.Tensor  # (steps + 1, B, L, C), float32
    log_probs: torch.Tensor | None  # (steps, B, L): log π(x_{i+1} | x_i) per token; None when churn == 0

    @property
    def steps(self) -> int:
        return len(self.sigmas) - 1

    @property
    def sample(self) -> torch.Tensor:
        return self.latents[-1]


def transition_std(sigma: float, sigma_next: float, churn: float) -> float:
    """``s_i = churn · sqrt(σ_i − σ_{i+1})``."""
    if sigma_next > sigma:
        raise ValueError(f"sigmas must not increase (got {sigma} -> {sigma_next}).")
    return churn * math.sqrt(sigma - sigma_next)


def euler_mean(latents: torch.Tensor, velocity: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    """``μ_i = x_i + (σ_{i+1} − σ_i) · v``, in float32."""
    return latents.float() + (sigma_next - sigma) * velocity.float()


def gaussian_log_prob_per_token(x: torch.Tensor, mean: torch.Tensor, std: float) -> torch.Tensor:
    """Σ over the channel (last) dimension of log N(x; mean, std²): shape ``x.shape[:-1]``."""
    if std <= 0:
        raise ValueError("A zero-std transition is a Dirac: it has no log-density (use churn > 0).")
    z = (x.float() - mean.float()) / std
    return (-0.5 * z.pow(2) - math.log(std) - 0.5 * math.log(2 * math.pi)).sum(-1)


def transition_log_prob(
    next_latents: torch.Tensor,
    latents: torch.Tensor,
    velocity: torch.Tensor,
    sigma: float,
    sigma_next: float,
    churn: float = DEFAULT_CHURN,
) -> torch.Tensor:
    """Per-token log π(next_latents | latents) when the model predicts ``velocity`` at ``latents``.

    Differentiable in ``velocity``: this is how the policy (with grad) and the reference model
    (adapter disabled) re-score a recorded transition. Returns ``(B, L)``.
    """
    mean = euler_mean(latents, velocity, sigma, sigma_next)
    return gaussian_log_prob_per_token(next_latents, mean, transition_std(sigma, sigma_next, churn))


@torch.no_grad()
def sample_trajectory(
    velocity_fn: VelocityFn,
    noise: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    churn: float = DEFAULT_CHURN,
    generator: torch.Generator | None = None,
) -> Trajectory:
    """Run the stochastic Euler sampler from ``noise`` (``x_0`` at ``sigmas[0]``) along ``sigmas``.

    ``generator`` draws the per-step noise ``z`` (on its own device), so a (noise, generator seed)
    pair reproduces a trajectory exactly. With ``churn > 0`` the sigmas must strictly decrease.
    """
    sigmas = sigmas.detach().float().cpu()
    x = noise.float()
    latents, log_probs = [x], []
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i].item(), sigmas[i + 1].item()
        velocity = velocity_fn(x, sigma)
        mean = euler_mean(x, velocity, sigma, sigma_next)
        std = transition_std(sigma, sigma_next, churn)
        if churn > 0:
            z = torch.randn(x.shape, generator=generator, dtype=torch.float32,
                            device=generator.device if generator is not None else x.device).to(x.device)
            x = mean + std * z
            log_probs.append(gaussian_log_prob_per_token(x, mean, std))
        else:
            x = mean
        latents.append(x)
    return Trajectory(sigmas=sigmas, latents=torch.stack(latents),
                      log_probs=torch.stack(log_probs) if churn > 0 else None)
