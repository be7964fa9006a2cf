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

``sampler="churn"`` is the research OFT's step (``flowmatching_with_logprob``, the ``paper`` recipe): with
``γ = min(churn / steps, √2 − 1)`` (``steps`` = the number of sampler steps, 0.1/30 at its defaults)

    s_i = σ_i · sqrt((1 + γ)² − 1)
    μ_i = x_i + (σ_{i+1} − σ_i) · [v + s_i² / (2 σ_i) · (−x_i + (1 − σ_i) · v)]

(the bracket's second term, as written there, is its "drift correction"). Its noise scales with σ, not with
the step size: the injected variance ``Σ s_i²`` depends on the noise schedule, where Euler–Maruyama's is
``churn² · Σ Δσ = churn²``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

DEFAULT_STEPS = 30
DEFAULT_CHURN = 0.1
SAMPLERS = ("euler_maruyama", "churn")

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


def churn_gamma(churn: float, steps: int) -> float:
    """The research sampler's ``γ = min(churn / steps, √2 − 1)``."""
    return min(churn / steps, math.sqrt(2) - 1)


def transition_std(
    sigma: float, sigma_next: float, churn: float, sampler: str = "euler_maruyama", steps: int | None = None
) -> float:
    """``churn · sqrt(σ_i − σ_{i+1})`` (Euler–Maruyama), or ``σ_i · sqrt((1 + γ)² − 1)`` (``"churn"``,
    which needs the number of sampler ``steps``)."""
    if sigma_next > sigma:
        raise ValueError(f"sigmas must not increase (got {sigma} -> {sigma_next}).")
    if sampler == "euler_maruyama":
        return churn * math.sqrt(sigma - sigma_next)
    if sampler == "churn":
        if not steps:
            raise ValueError("the churn sampler's noise depends on the number of steps")
        return sigma * math.sqrt((1 + churn_gamma(churn, steps)) ** 2 - 1)
    raise ValueError(f"unknown sampler {sampler!r}: use {' or '.join(SAMPLERS)}")


def euler_mean(latents: torch.Tensor, velocity: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    """``μ_i = x_i + (σ_{i+1} − σ_i) · v``, in float32."""
    return latents.float() + (sigma_next - sigma) * velocity.float()


def transition_mean(
    latents: torch.Tensor,
    velocity: torch.Tensor,
    sigma: float,
    sigma_next: float,
    std: float,
    sampler: str = "euler_maruyama",
) -> torch.Tensor:
    """The step's mean in float32: :func:`euler_mean`, or the churn sampler's drift-corrected one."""
    if sampler == "euler_maruyama":
        return euler_mean(latents, velocity, sigma, sigma_next)
    x, v = latents.float(), velocity.float()
    return x + (sigma_next - sigma) * (v + std**2 / (2 * sigma) * (-x + (1 - sigma) * v))


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: float) -> torch.Tensor:
    """Element-wise log N(x; mean, std²), same shape as ``x``."""
    if std <= 0:
        raise ValueError("A zero-std transition is a Dirac: it has no log-density (use churn > 0).")
    z = (x.float() - mean.float()) / std
    return -0.5 * z.pow(2) - math.log(std) - 0.5 * math.log(2 * math.pi)


def gaussian_log_prob_per_token(x: torch.Tensor, mean: torch.Tensor, std: float) -> torch.Tensor:
    """Σ over the channel (last) dimension of log N(x; mean, std²): shape ``x.shape[:-1]``."""
    return gaussian_log_prob(x, mean, std).sum(-1)


def transition_log_prob(
    next_latents: torch.Tensor,
    latents: torch.Tensor,
    velocity: torch.Tensor,
    sigma: float,
    sigma_next: float,
    churn: float = DEFAULT_CHURN,
    *,
    sampler: str = "euler_maruyama",
    steps: int | None = None,
    per_element: bool = False,
) -> torch.Tensor:
    """Per-token log π(next_latents | latents) when the model predicts ``velocity`` at ``latents``.

    Differentiable in ``velocity``: this is how the policy (with grad) and the reference model
    (adapter disabled) re-score a recorded transition. Returns ``(B, L)``, or the element-wise
    ``(B, L, C)`` with ``per_element=True``.
    """
    std = transition_std(sigma, sigma_next, churn, sampler, steps)
    mean = transition_mean(latents, velocity, sigma, sigma_next, std, sampler)
    elements = gaussian_log_prob(next_latents, mean, std)
    return elements if per_element else elements.sum(-1)


@torch.no_grad()
def sample_trajectory(
    velocity_fn: VelocityFn,
    noise: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    churn: float = DEFAULT_CHURN,
    generator: torch.Generator | None = None,
    sampler: str = "euler_maruyama",
) -> Trajectory:
    """Run the stochastic sampler from ``noise`` (``x_0`` at ``sigmas[0]``) along ``sigmas``.

    ``generator`` draws the per-step noise ``z`` (on its own device), so a (noise, generator seed)
    pair reproduces a trajectory exactly. With ``churn > 0`` the sigmas must strictly decrease.
    ``sampler`` picks the step (see the module docstring); the churn sampler's ``steps`` is
    ``len(sigmas) - 1``.
    """
    sigmas = sigmas.detach().float().cpu()
    steps = len(sigmas) - 1
    x = noise.float()
    latents, log_probs = [x], []
    for i in range(steps):
        sigma, sigma_next = sigmas[i].item(), sigmas[i + 1].item()
        velocity = velocity_fn(x, sigma)
        std = transition_std(sigma, sigma_next, churn, sampler, steps)
        mean = transition_mean(x, velocity, sigma, sigma_next, std, sampler)
        if churn > 0:
            z = torch.randn(
                x.shape,
                generator=generator,
                dtype=torch.float32,
                device=generator.device if generator is not None else x.device,
            ).to(x.device)
            x = mean + std * z
            log_probs.append(gaussian_log_prob_per_token(x, mean, std))
        else:
            x = mean
        latents.append(x)
    return Trajectory(
        sigmas=sigmas, latents=torch.stack(latents), log_probs=torch.stack(log_probs) if churn > 0 else None
    )
