"""Zero-shot subject boxes and masks: the tiny Grounding DINO end to end, mask geometry, fallback."""

import pytest
import torch
from PIL import Image, ImageDraw

from ml.core.detector import detect_boxes, grounding_text, load_detector, region_mask, subject_masks
from ml.core.tiny_detector import build_vocab, make_tiny_grounding_dino


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    return load_detector(make_tiny_grounding_dino(tmp_path_factory.mktemp("gdino"), seed=0, words=("mango",)))


def picture(width=96, height=64):
    image = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(image).ellipse((20, 10, 60, 50), fill="red")
    return image


def test_it_puts_the_delimiters_at_the_ids_grounding_dino_hard_codes():
    vocab = build_vocab(("mango",))
    assert [vocab[i] for i in (0, 100, 101, 102, 103, 1012, 1029)] == [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        ".",
        "?",
    ]
    assert "mango" in vocab and len(set(vocab)) == len(vocab)


def test_it_loads_through_the_auto_classes_and_detects_on_a_real_image(detector):
    model, processor = detector
    assert type(model).__name__ == "GroundingDinoForObjectDetection"
    assert processor.tokenizer.tokenize(grounding_text("An unripe Mango")) == [
        "an",
        "u",
        "##n",
        "##r",
        "##i",
        "##p",
        "##e",
        "mango",
        ".",
    ]

    images = [picture(), picture(64, 64)]
    boxes = detect_boxes(model, processor, images, ["unripe mango", "ice"], box_threshold=0.0)
    assert [b.shape for b in boxes] == [(8, 4), (8, 4)]  # every query kept at threshold 0
    for b, image in zip(boxes, images, strict=True):
        assert (b[:, 2] >= b[:, 0]).all() and (b[:, 3] >= b[:, 1]).all()
        assert b.min() >= -1 and b[:, 2].max() <= image.width + 1 and b[:, 3].max() <= image.height + 1

    masks = subject_masks(model, processor, images, ["unripe mango", "ice"], box_threshold=0.0)
    assert masks[0].shape == (64, 96) and masks[0].any()


def test_it_masks_the_whole_image_when_nothing_is_found(detector):
    model, processor = detector
    (boxes,) = detect_boxes(model, processor, [picture()], ["mango"], box_threshold=1.0)
    assert boxes.shape == (0, 4)
    (mask,) = subject_masks(model, processor, [picture()], ["mango"], box_threshold=1.0)
    assert mask.all() and mask.shape == (64, 96)
    assert region_mask(torch.empty(0, 4), 10, 8).all()


def test_it_grows_each_box_by_ten_percent_per_side():
    mask = region_mask(torch.tensor([[20.0, 30.0, 60.0, 50.0]]), 100, 100)
    # width 40 -> 4 px each side, height 20 -> 2 px each side
    rows, cols = mask.nonzero(as_tuple=True)
    assert (cols.min().item(), cols.max().item() + 1) == (16, 64)
    assert (rows.min().item(), rows.max().item() + 1) == (28, 52)
    assert mask.sum().item() == 48 * 24


def test_it_rounds_outwards_and_clips_at_the_border():
    mask = region_mask(torch.tensor([[0.0, 2.5, 10.0, 7.5]]), 10, 10, grow=0.1)
    rows, cols = mask.nonzero(as_tuple=True)
    assert (cols.min().item(), cols.max().item() + 1) == (0, 10)  # -1 .. 11 clipped
    assert (rows.min().item(), rows.max().item() + 1) == (2, 8)  # 2.0 .. 8.0


def test_it_takes_the_union_of_boxes():
    mask = region_mask(torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 15.0]]), 40, 40, grow=0.0)
    assert mask.sum().item() == 100 + 100 - 25


@pytest.mark.parametrize("box", [(0.25, 0.3, 0.5, 0.7), (0.1, 0.05, 0.9, 0.33), (0.0, 0.0, 1.0, 1.0)])
def test_it_covers_the_same_fraction_at_any_resolution(box):
    fractions = []
    for size in (256, 512):
        scaled = torch.tensor([box]) * size
        fractions.append(region_mask(scaled, size, size).float().mean().item())
    assert fractions[0] == pytest.approx(fractions[1], abs=4 / 256)  # at most one pixel per edge at 256 px
