"""How a CLIP scorer's images are prepared: the crop size and the normalisation (:class:`PreprocessConfig`).

Its own module because both :mod:`ml.core.scorer` (which scores with it) and :mod:`ml.core.convert` (which
writes it as a transformers image processor) need it, and the scorer imports the converter: neither may
import the other back.
"""

from __future__ import annotations

from dataclasses import dataclass

import open_clip


@dataclass(frozen=True)
class PreprocessConfig:
    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def preprocess_config(model_cfg: dict, preprocess_cfg: dict) -> PreprocessConfig:
    """The preprocessing of an open_clip model: ``preprocess_cfg`` (open_clip's ``size``, ``mean``, ``std``,
    each optional) over the model's image size and OpenAI's mean and std."""
    size = preprocess_cfg.get("size") or model_cfg["vision_cfg"]["image_size"]
    if isinstance(size, (list, tuple)):
        size = size[0]
    return PreprocessConfig(
        size=int(size),
        mean=tuple(preprocess_cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)),
        std=tuple(preprocess_cfg.get("std", open_clip.OPENAI_DATASET_STD)),
    )
