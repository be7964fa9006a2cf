"""The batched SciScore scorer: loading each format, preprocessing, batching, pairwise choice."""

import json

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from ml.core.scorer import Scorer
from ml.core.tiny import TINY_CLIP_CFG, make_tiny_hf_scorer, make_tiny_scorer, tiny_scorer

PROMPTS = ["An unripe mango.", "A rusty nail.", "Ice on a hot pan.", "A candle in a jar.", "Oil on water."]


def images(n=5):
    rng = np.random.default_rng(1)
    return [Image.fromarray(rng.integers(0, 256, (36 + 5 * i, 48, 3), dtype=np.uint8)) for i in range(n)]


@pytest.fixture(scope="module")
def scorer():
    return tiny_scorer(seed=0)


def test_it_loads_the_open_clip_local_dir_that_make_tiny_scorer_writes(scorer, tmp_path):
    loaded = Scorer.load(make_tiny_scorer(tmp_path, seed=0), device="cpu")

    assert loaded.model_cfg == TINY_CLIP_CFG
    assert torch.equal(loaded.score(PROMPTS, images()), scorer.score(PROMPTS, images()))


def test_it_loads_a_transformers_directory_with_the_same_scores(scorer, tmp_path):
    loaded = Scorer.load(make_tiny_hf_scorer(tmp_path, seed=0), device="cpu")

    assert isinstance(loaded.model, open_clip.model.CLIP)
    assert (loaded.score(PROMPTS, images()) - scorer.score(PROMPTS, images())).abs().max() <= 1e-5


def test_it_loads_a_checkpoint_file_with_a_registered_architecture(scorer, tmp_path):
    (tmp_path / "cfgs").mkdir()
    (tmp_path / "cfgs" / "scit2i-test-tiny.json").write_text(json.dumps(TINY_CLIP_CFG))
    open_clip.add_model_config(tmp_path / "cfgs")
    save_file({k: v.contiguous() for k, v in scorer.model.state_dict().items()}, tmp_path / "w.safetensors")

    loaded = Scorer.load(tmp_path / "w.safetensors", arch="scit2i-test-tiny", device="cpu")
    assert torch.allclose(loaded.score(PROMPTS, images()), scorer.score(PROMPTS, images()), atol=1e-6)
    with pytest.raises(ValueError, match="give its open_clip architecture"):
        Scorer.load(tmp_path / "w.safetensors")


def test_it_says_what_a_loadable_path_looks_like(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an open_clip local dir"):
        Scorer.load(tmp_path / "nothing")


def test_it_scores_the_same_whatever_the_batch_size(scorer):
    whole = scorer.score(PROMPTS, images(), batch_size=64)

    assert whole.dtype == torch.float32 and whole.shape == (len(PROMPTS),)
    assert torch.allclose(scorer.score(PROMPTS, images(), batch_size=2), whole, atol=1e-6)
    assert scorer.score([], []).shape == (0,)


def test_it_is_exp_logit_scale_times_the_cosine(scorer):
    tokens, pixels = scorer.tokenize(PROMPTS[:2]), scorer.pixels(images(2))
    with torch.no_grad():
        text, image = scorer.features(tokens, pixels)
        expected = scorer.logit_scale() * (text * image).sum(-1)

    assert torch.allclose(text.norm(dim=-1), torch.ones(2)) and torch.allclose(image.norm(dim=-1), torch.ones(2))
    assert torch.allclose(scorer.score(PROMPTS[:2], images(2)), expected, atol=1e-6)


def test_it_rejects_prompts_and_images_of_different_lengths(scorer):
    with pytest.raises(ValueError, match="2 prompts but 1 images"):
        scorer.score(PROMPTS[:2], images(1))


@pytest.mark.parametrize("size", [(32, 32), (96, 128), (33, 45), (45, 33), (100, 37), (20, 16)])
def test_it_preprocesses_exactly_like_open_clips_eval_transform(scorer, size):
    yy, xx = np.mgrid[0 : size[1], 0 : size[0]]
    image = Image.fromarray(np.stack([xx * 2, yy * 2, (xx + yy)], -1).astype(np.uint8)).convert("L")
    transform = open_clip.image_transform(32, is_train=False)

    assert torch.equal(scorer.pixels([image])[0], transform(image))


def test_pairwise_picks_the_higher_scoring_image(scorer):
    first, second = images(2)
    a, b = scorer.score([PROMPTS[0]] * 2, [first, second]).tolist()

    choice, prob_first = scorer.pairwise(PROMPTS[0], first, second)
    assert choice == (0 if a >= b else 1)
    assert prob_first == pytest.approx(torch.sigmoid(torch.tensor(a - b)).item(), abs=1e-6)
    assert scorer.pairwise(PROMPTS[0], second, first)[0] == 1 - choice
