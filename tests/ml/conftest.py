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
