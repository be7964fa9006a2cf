"""Tokenizers built offline, with no model hub.

* :func:`save_clip_tokenizer` rebuilds the full CLIP BPE vocabulary and merges from the
  ``bpe_simple_vocab_16e6.txt.gz`` file that open_clip ships, and saves a transformers
  ``CLIPTokenizer`` whose ids equal open_clip's (``<|startoftext|>`` 49406, ``<|endoftext|>`` 49407).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from open_clip.tokenizer import bytes_to_unicode, default_bpe

CLIP_MERGES = 49152 - 256 - 2  # the merges open_clip's SimpleTokenizer reads
CLIP_CONTEXT_LENGTH = 77


def clip_vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    with gzip.open(default_bpe()) as bpe:
        lines = bpe.read().decode("utf-8").split("\n")
    merges = lines[1 : CLIP_MERGES + 1]
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(vocab)}, merges


def save_clip_tokenizer(directory: str | Path):
    """Write vocab.json + merges.txt and the tokenizer config into ``directory``; return the tokenizer."""
    from transformers import CLIPTokenizer

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab, merges = clip_vocab_and_merges()
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tokenizer = CLIPTokenizer(
        vocab=vocab,
        merges=[tuple(m.split()) for m in merges],  # type: ignore[misc]  # pairs, as tokenizers' BPE takes them
        model_max_length=CLIP_CONTEXT_LENGTH,
    )
    tokenizer.save_pretrained(directory)
    return tokenizer
