"""Zero-shot subject boxes (Grounding DINO) and the pixel masks that online fine-tuning trains inside.

Settings follow the Science-T2I recipe (GUIDE §1): box threshold 0.35, text threshold 0.25, each box
grown by 10 % of its size on every side, and the whole image when nothing is found.

Thresholds behave as in Grounding DINO's own ``predict``: a query is kept when its best token
probability exceeds ``box_threshold``; ``text_threshold`` only decides which prompt tokens name the
box (its label). The mask is in pixels of the image it was detected on, with relative geometry, so it
maps to the latent token grid at any resolution (``ml.core.flow.pixel_mask_to_tokens``).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from PIL import Image

BOX_THRESHOLD = 0.35
TEXT_THRESHOLD = 0.25
BOX_GROW = 0.10


def load_detector(path: str | Path, device: str | torch.device | None = None):
    """(model, processor) from a Grounding DINO directory (released or ``make_tiny_grounding_dino``)."""
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

    model = AutoModelForZeroShotObjectDetection.from_pretrained(path).eval()
    if device is not None:
        model.to(device)
    return model, AutoProcessor.from_pretrained(path)


def grounding_text(phrase: str) -> str:
    """Grounding DINO's caption convention: lower case, ending with a period."""
    return phrase.strip().lower().rstrip(".").strip() + "."


@torch.no_grad()
def detect_boxes(
    model,
    processor,
    images: list[Image.Image],
    subject_phrases: list[str],
    box_threshold: float = BOX_THRESHOLD,
    text_threshold: float = TEXT_THRESHOLD,
) -> list[torch.Tensor]:
    """Boxes ``(n_i, 4)`` as pixel ``(x0, y0, x1, y1)`` floats on CPU, one tensor per image."""
    if len(images) != len(subject_phrases):
        raise ValueError(f"{len(images)} images but {len(subject_phrases)} phrases.")
    if not images:
        return []
    images = [image.convert("RGB") for image in images]
    inputs = processor(
        images=images,
        text=[grounding_text(p) for p in subject_phrases],
        return_tensors="pt",
        padding=True,
        truncation=True,
        max_length=model.config.max_text_len,
    ).to(model.device)
    outputs = model(**inputs)
    results = processor.post_process_grounded_object_detection(
        outputs,
        inputs["input_ids"],
        threshold=box_threshold,
        text_threshold=text_threshold,
        target_sizes=[(image.height, image.width) for image in images],
    )
    return [result["boxes"].float().cpu().reshape(-1, 4) for result in results]


def region_mask(boxes: torch.Tensor, width: int, height: int, grow: float = BOX_GROW) -> torch.Tensor:
    """Boolean ``(height, width)`` mask: the union of the boxes, each grown by ``grow`` × its width
    (left and right) and × its height (top and bottom), clipped to the image. A pixel is in when the
    grown box touches it (``floor`` of the low edge, ``ceil`` of the high edge), so the mask errs on
    covering the subject. No boxes → the whole image.
    """
    mask = torch.zeros(height, width, dtype=torch.bool)
    boxes = torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return mask.fill_(True)
    for x0, y0, x1, y1 in boxes.tolist():
        dx, dy = grow * (x1 - x0), grow * (y1 - y0)
        left, right = max(0, math.floor(x0 - dx)), min(width, math.ceil(x1 + dx))
        top, bottom = max(0, math.floor(y0 - dy)), min(height, math.ceil(y1 + dy))
        mask[top:bottom, left:right] = True
    return mask


def subject_masks(
    model,
    processor,
    images: list[Image.Image],
    subject_phrases: list[str],
    *,
    box_threshold: float = BOX_THRESHOLD,
    text_threshold: float = TEXT_THRESHOLD,
    grow: float = BOX_GROW,
) -> list[torch.Tensor]:
    """One pixel mask per image: its subject's grown boxes, or the whole image when none is found."""
    boxes = detect_boxes(model, processor, images, subject_phrases, box_threshold, text_threshold)
    return [region_mask(b, image.width, image.height, grow) for b, image in zip(boxes, images, strict=True)]
