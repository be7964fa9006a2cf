"""A tiny, randomly initialised Grounding DINO saved the way the released one is, so the real loading
path (``AutoModelForZeroShotObjectDetection`` + ``AutoProcessor``) runs offline.

* Backbone: a 3-stage ResNet (8/16/16 channels, one basic block each) through ``backbone_config``
  (transformers' own ``AutoBackbone``, random init, nothing downloaded).
* Text: a one-layer BERT with a WordPiece vocabulary written here. Grounding DINO hard-codes the
  bert-base-uncased ids of its phrase delimiters (``[CLS]`` 101, ``[SEP]`` 102, ``.`` 1012, ``?`` 1029,
  ``SPECIAL_TOKENS`` in its modeling file), so the vocabulary puts those tokens at exactly those ids;
  the rest holds single characters and their ``##`` continuations (any lowercase word tokenises
  without ``[UNK]``) plus whole words for the prompts the caller names.
* Transformer: d_model 32 (GroupNorm needs a multiple of 32), one encoder layer, two decoder layers
  (the box heads of decoder layers > 0 are tied to layer 0, so one layer is not a valid config),
  8 queries, 32 text positions; images resized to 64 px on the short side.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch

# bert-base-uncased ids that GroundingDinoModel treats as phrase delimiters.
_FIXED_IDS = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]", 1012: ".", 1029: "?"}
_DEFAULT_WORDS = (
    "a",
    "an",
    "the",
    "of",
    "in",
    "on",
    "with",
    "and",
    "apple",
    "mango",
    "ice",
    "water",
    "glass",
    "cup",
    "ball",
    "plant",
    "leaf",
    "tree",
    "flame",
    "iron",
    "nail",
    "oil",
    "candle",
    "stone",
)


def build_vocab(words: tuple[str, ...] | list[str] = ()) -> list[str]:
    """Tokens in id order: the fixed BERT ids above, then characters, ``##`` characters and words."""
    chars = list(string.ascii_lowercase + string.digits + ",!'-")
    pool = list(dict.fromkeys(chars + [f"##{c}" for c in chars] + [w.lower() for w in (*_DEFAULT_WORDS, *words)]))
    pool = [t for t in pool if t not in _FIXED_IDS.values()]
    vocab: list[str] = []
    while len(vocab) <= max(_FIXED_IDS) or pool:
        index = len(vocab)
        if index in _FIXED_IDS:
            vocab.append(_FIXED_IDS[index])
        elif index > 103 and pool:
            vocab.append(pool.pop(0))
        else:
            vocab.append(f"[unused{index}]")
    return vocab


def make_tiny_grounding_dino(directory: str | Path, *, seed: int = 0, words: tuple[str, ...] = ()) -> Path:
    """Write a tiny Grounding DINO (model + processor) into ``directory``; return it."""
    from transformers import (
        BertConfig,
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        ResNetConfig,
    )

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab_file = directory / "vocab.txt"
    vocab = build_vocab(words)
    vocab_file.write_text("\n".join(vocab) + "\n")

    max_text_len = 32
    config = GroundingDinoConfig(
        backbone_config=ResNetConfig(
            num_channels=3,
            embedding_size=8,
            hidden_sizes=[8, 16, 16],
            depths=[1, 1, 1],
            layer_type="basic",
            out_features=["stage1", "stage2", "stage3"],  # type: ignore[call-arg]  # taken by the backbone mixin
        ),
        text_config=BertConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=max_text_len,
        ),
        d_model=32,
        num_queries=8,
        num_feature_levels=3,
        encoder_layers=1,
        decoder_layers=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_n_points=2,
        decoder_n_points=2,
        max_text_len=max_text_len,
    )
    torch.manual_seed(seed)
    GroundingDinoForObjectDetection(config).save_pretrained(directory)

    tokenizer = BertTokenizer(vocab=str(vocab_file), model_max_length=max_text_len)
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 128})
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(directory)
    return directory
