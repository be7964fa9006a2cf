"""From scratch on synthetic tuples, the training code must teach the tiny CLIP the task.

Held-out subjects and colours only; about half a minute on two quiet CPU cores (budgeted at 90 s
of training, two minutes in all).
"""

from ml.core.learnability import run_learnability


def test_a_tiny_clip_learns_the_synthetic_tasks_from_scratch():
    result = run_learnability(seed=0)

    assert 0.3 <= result["accuracy_before"] <= 0.7, result
    assert result["accuracy_after"] >= 0.95, result
    assert result["test_n"] >= 200
