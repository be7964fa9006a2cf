import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny models: thread hand-offs cost more than the maths (several times slower on a busy 2-core box).

    Tests that measure speed on purpose (learnability) set their own thread count.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """Every tiny model ``python -m ml make-tiny`` writes, by name: their directories as strings."""
    from ml.cli import main

    out = tmp_path_factory.mktemp("tiny")
    assert main(["make-tiny", str(out), "--json"]) == 0
    return {
        name: str(out / sub)
        for name, sub in [
            ("scorer", "scorer"),
            ("scorer_hf", "scorer-hf"),
            ("flux", "flux"),
            ("detector", "detector"),
            ("judge_qwen2_vl", "judge-qwen2-vl"),
            ("judge_qwen2_vl_random", "judge-qwen2-vl-random"),
            ("judge_llava_ov", "judge-llava-ov"),
        ]
    }
