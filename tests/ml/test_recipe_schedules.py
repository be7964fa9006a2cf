"""The SciScore learning-rate schedules of both recipes, against values computed by hand from their formulas.

Paper (DeepSpeed WarmupDecayLR, log warmup over W = 150, horizon T = 600, stepped after each optimiser
step): the step after ``s`` completed ones runs at ``ln(s) / ln(150)`` during warmup (``s - 1 + 1``), then
``(600 - (s - 1)) / 450``. Platform (linear): ``s / 150``, then ``(600 - s) / 450``.
"""

import math

import pytest
import torch

from ml.core import schedules

PEAK = 2e-6


def lr(kind: str, step: int, horizon: int = 600) -> float:
    return PEAK * schedules.factor(kind, 150, horizon)(step)


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (0, 0.0),  # before the scheduler has stepped: warmup_min_lr
        (1, 0.0),  # iteration 0: ln(1) / ln(150)
        (75, PEAK * math.log(75) / math.log(150)),  # 0.8617 of the peak
        (149, PEAK * math.log(149) / math.log(150)),  # 0.99867
        (150, PEAK),  # iteration 149: ln(150) / ln(150)
        (151, PEAK * (600 - 150) / 450),  # iteration 150: the decay starts at the peak
        (600, PEAK * 1 / 450),  # iteration 599
        (601, 0.0),  # iteration 600: the horizon
    ],
)
def test_the_paper_schedule_warms_up_logarithmically_and_reaches_zero_after_600_steps(step, expected):
    assert lr("deepspeed_log", step) == pytest.approx(expected, rel=1e-12, abs=1e-18)


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (0, 0.0),
        (1, PEAK / 150),
        (75, PEAK / 2),
        (149, PEAK * 149 / 150),
        (150, PEAK),
        (600, 0.0),
        (601, 0.0),
    ],
)
def test_the_platform_schedule_warms_up_linearly_and_reaches_zero_at_step_600(step, expected):
    assert lr("linear", step) == pytest.approx(expected, rel=1e-12, abs=1e-18)


def test_a_horizon_of_600_times_four_gpus_would_keep_80_percent_at_step_600():
    """The reading where accelerate does not divide the research code's 600 x GPUs again (lr_decay_steps)."""
    assert lr("deepspeed_log", 600, horizon=2400) == pytest.approx(PEAK * (2400 - 599) / 2250)  # 0.8004
    assert lr("deepspeed_log", 2401, horizon=2400) == 0.0
    assert lr("linear", 600, horizon=2400) == pytest.approx(PEAK * 1800 / 2250)


def test_the_scheduler_steps_once_per_optimiser_step_and_resumes_from_its_state():
    def lrs(kind, steps, state=None):
        parameter = torch.nn.Parameter(torch.zeros(1))
        optimizer = torch.optim.AdamW([parameter], lr=PEAK)
        scheduler = schedules.scheduler(optimizer, kind, 150, 600)
        if state is not None:
            scheduler.load_state_dict(state)
        seen = []
        for _ in range(steps):
            seen.append(scheduler.get_last_lr()[0])  # what the optimiser's lr is set to (restored with it)
            optimizer.step()
            scheduler.step()
        return seen, scheduler.state_dict()

    seen, _ = lrs("deepspeed_log", 152)
    assert seen == pytest.approx([lr("deepspeed_log", s) for s in range(152)], rel=1e-12, abs=1e-18)
    _, state = lrs("linear", 80)
    rest, _ = lrs("linear", 2, state)
    assert rest == pytest.approx([lr("linear", 80), lr("linear", 81)])
    with pytest.raises(ValueError, match="unknown lr schedule"):
        schedules.factor("cosine", 150, 600)
