"""The scorer's fast paths give the same answers: trimmed prompts, device-side resizing of decoded images,
tensor and array inputs, de-duplicated prompts, pair scoring and regional compilation."""

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from ml.core.scorer import Scorer, trim_tokens
from ml.core.tiny import TINY_CLIP_CFG, tiny_scorer

PROMPTS = [
    "An unripe mango.",
    "A rusty nail left in the rain for a very long time, simple and realistic.",
    "Ice on a hot pan.",
    "A candle in a jar.",
    "Oil on water.",
]


def smooth(height, width, seed=0):
    """A smooth RGB gradient (resampling differences between libraries stay within a level on these)."""
    yy, xx = np.mgrid[0:height, 0:width]
    shift = 37 * seed
    rgb = np.stack(
        [
            (xx * 255 // max(width - 1, 1) + shift) % 256,
            yy * 255 // max(height - 1, 1),
            (xx + yy + shift) * 127 // (height + width),
        ],
        -1,
    )
    return rgb.astype(np.uint8)


@pytest.fixture(scope="module")
def scorer():
    return tiny_scorer(seed=0)


@pytest.fixture(scope="module")
def on_device(scorer):
    return Scorer(scorer.model, scorer.preprocess, scorer.tokenizer, scorer.model_cfg, device="cpu", resize="device")


def levels(scorer, pixels):
    """Normalised pixels back to 0-255 levels."""
    return (pixels * scorer._std + scorer._mean) * 255


def test_it_trims_prompts_after_the_last_end_of_text_token_without_changing_text_features(scorer):
    full = scorer.tokenizer(PROMPTS)
    trimmed = scorer.tokenize(PROMPTS)

    assert full.shape[1] == 77 and trimmed.shape[1] % 8 == 0 and trimmed.shape[1] < 77
    assert torch.equal(trimmed, full[:, : trimmed.shape[1]]) and not full[:, trimmed.shape[1] :].any()
    with torch.no_grad():
        expected = open_clip.model.CLIP.encode_text(scorer.model, full, normalize=True)  # open_clip's own, 77 tokens
        assert torch.allclose(scorer.model.encode_text(trimmed, normalize=True), expected, atol=1e-6)


def test_trimming_keeps_a_prompt_that_fills_the_context():
    tokens = torch.zeros(2, 77, dtype=torch.long)
    tokens[0, :5] = torch.tensor([49406, 1, 2, 3, 49407])
    tokens[1, :] = 7
    tokens[1, 76] = 49407  # truncated: the end-of-text token sits in the last column
    assert trim_tokens(tokens, "argmax").shape[1] == 77
    assert trim_tokens(tokens[:1], "argmax").shape[1] == 8
    assert trim_tokens(tokens[:1], "last").shape[1] == 77  # pooling we cannot trim for: left alone


def test_it_leaves_text_towers_it_cannot_trim_alone():
    cfg = {**TINY_CLIP_CFG, "text_cfg": {**TINY_CLIP_CFG["text_cfg"], "pool_type": "last"}}
    scorer = Scorer.from_model(open_clip.model.CLIP(**cfg), cfg, device="cpu")

    assert not scorer.short_text and scorer.tokenize(PROMPTS).shape[1] == 77
    assert torch.isfinite(scorer.score(PROMPTS[:2], [Image.fromarray(smooth(40, 40))] * 2)).all()


@pytest.mark.parametrize("size", [(32, 32), (96, 128), (128, 96), (45, 33), (512, 512), (300, 200)])
def test_device_resizing_stays_within_a_level_of_open_clips_pil_transform(scorer, on_device, size):
    image = Image.fromarray(smooth(*size, seed=1))

    pil = levels(scorer, scorer.pixels([image]))
    device = levels(scorer, on_device.pixels([image]))
    assert (device - pil).abs().max() <= 1.0 + 1e-3
    assert (device - pil).abs().mean() <= 0.25


def test_it_takes_pil_images_arrays_and_tensors_in_one_batch_in_order(on_device):
    arrays = [smooth(40, 48, seed=i) for i in range(4)] + [smooth(64, 40, seed=9)]
    mixed = [
        Image.fromarray(arrays[0]),
        arrays[1],
        torch.from_numpy(arrays[2]).permute(2, 0, 1),
        torch.from_numpy(arrays[3]).permute(2, 0, 1).float() / 255,
        Image.fromarray(arrays[4]),
    ]

    together = on_device.pixels(mixed)
    alone = torch.cat([on_device.pixels([Image.fromarray(a)]) for a in arrays])
    assert together.shape == (5, 3, 32, 32)
    assert torch.allclose(together, alone, atol=1e-5)
    batch = torch.stack([torch.from_numpy(a).permute(2, 0, 1) for a in arrays[:4]])
    assert torch.allclose(on_device.pixels(batch), alone[:4], atol=1e-5)


def test_it_rejects_images_it_cannot_read(on_device):
    for bad in (
        np.zeros((8, 8), np.uint8),
        torch.zeros(4, 8, 8, dtype=torch.uint8),
        torch.zeros(3, 8, 8, dtype=torch.int32),
        torch.zeros(2, 8, 8, 3, dtype=torch.uint8),
    ):
        with pytest.raises(ValueError):
            on_device.pixels(bad if isinstance(bad, torch.Tensor) and bad.dim() == 4 else [bad])
    with pytest.raises(TypeError):
        on_device.pixels(["not an image"])


def test_tensor_input_scores_like_the_same_pixels_as_pil_images(on_device):
    arrays = [smooth(48, 48, seed=i) for i in range(3)]
    from_pil = on_device.score(PROMPTS[:3], [Image.fromarray(a) for a in arrays])
    from_tensors = on_device.score(PROMPTS[:3], [torch.from_numpy(a).permute(2, 0, 1) for a in arrays])
    assert torch.allclose(from_pil, from_tensors, atol=1e-5)


def test_repeated_prompts_are_encoded_once_and_score_as_if_alone(scorer):
    images = [Image.fromarray(smooth(40, 40, seed=i)) for i in range(4)]
    prompts = [PROMPTS[0], PROMPTS[1], PROMPTS[0], PROMPTS[0]]

    together = scorer.score(prompts, images)
    alone = torch.cat([scorer.score([p], [img]) for p, img in zip(prompts, images, strict=True)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_score_pairs_scores_both_images_of_each_tuple(scorer):
    a = [Image.fromarray(smooth(40, 40, seed=i)) for i in range(5)]
    b = [Image.fromarray(smooth(36, 52, seed=i + 5)) for i in range(5)]

    first, second = scorer.score_pairs(PROMPTS, a, b, batch_size=2)
    assert torch.allclose(first, scorer.score(PROMPTS, a), atol=1e-5)
    assert torch.allclose(second, scorer.score(PROMPTS, b), atol=1e-5)
    assert [t.shape for t in scorer.score_pairs([], [], [])] == [(0,), (0,)]
    with pytest.raises(ValueError, match="2 prompts but 2 and 1 images"):
        scorer.score_pairs(PROMPTS[:2], a[:2], b[:1])


def test_regional_compilation_compiles_each_image_block_and_scores_the_same():
    scorer = tiny_scorer(seed=2)
    images = [Image.fromarray(smooth(40, 40, seed=i)) for i in range(3)]
    before = scorer.score(PROMPTS[:3], images)

    assert scorer.compile(backend="eager") is scorer  # graph capture only: no code generation on the CPU
    blocks = scorer.model.visual.transformer.resblocks
    assert all(block._compiled_call_impl is not None for block in blocks)
    assert all(block._compiled_call_impl is None for block in scorer.model.transformer.resblocks)
    assert torch.allclose(scorer.score(PROMPTS[:3], images), before, atol=1e-5)


def test_the_pil_path_takes_arrays_and_tensors_too(scorer):
    exact = Scorer(scorer.model, scorer.preprocess, scorer.tokenizer, scorer.model_cfg, device="cpu", resize="pil")
    array = smooth(40, 52, seed=3)

    expected = exact.pixels([Image.fromarray(array)])
    assert torch.equal(exact.pixels([array]), expected)
    assert torch.equal(exact.pixels([torch.from_numpy(array).permute(2, 0, 1)]), expected)
    with pytest.raises(ValueError, match="resize"):
        Scorer(scorer.model, scorer.preprocess, scorer.tokenizer, scorer.model_cfg, device="cpu", resize="gpu")
