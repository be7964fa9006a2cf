"""Tiny vision-language judges built from configs and saved to disk, so the real loading path runs offline.

:func:`make_tiny_qwen2_vl` writes a Qwen2-VL and :func:`make_tiny_llava_onevision` a LLaVA-OneVision
(SigLIP vision tower + Qwen2 text model) that ``AutoProcessor`` and ``AutoModelForImageTextToText`` load
from the directory with no hub. Both share one tokenizer design (:func:`build_qwen2_tokenizer`): a
byte-level BPE trained in memory, with Qwen2's pre-tokenisation, on :data:`CORPUS` (Science-T2I prompts,
judging instructions and JSON answers), followed by the family's special tokens; the configs' token ids
point at them. Every size is tiny (text: 2 layers, hidden 64; vision: 1 layer, 32 wide, 8 px patches; a
picture becomes a handful of tokens), so a build and a generation take a fraction of a second on a CPU.

Without ``answer`` the weights stay random and the judge's output does not parse. With ``answer`` the
model is fitted (:mod:`ml.core.judges.tiny_fit`) so that greedy generation after any judging prompt emits
exactly that text and then ``<|im_end|>``: a judge whose answers parse, for end-to-end tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ml.core.judges.tiny_fit import FIT_INSTRUCTIONS, fit_answer
from ml.core.tiny_flux import CORPUS as SCIENCE_PROMPTS

TEXT_HIDDEN = 64
TINY_JUDGE_ANSWER = '{"choice": "image-1"}'  # what ``make-tiny``'s fitted judges answer: always the first image
BPE_VOCAB_SIZE = 1024  # an upper bound: a corpus this small yields fewer tokens

# The tokenizer learns its merges from these, so prompts and answers split into real sub-words.
CORPUS = [
    *SCIENCE_PROMPTS,
    *FIT_INSTRUCTIONS,
    '{"choice": "image-1"}',
    '{"choice": "image-2"}',
    '{"scene": true}',
    '{"scene": false}',
    '{"score": 0}',
    '{"score": 3}',
    "You are a careful scientific judge. Reason step by step, then answer in JSON.",
    "system user assistant You are a helpful assistant.",
]

# Qwen2-VL's special tokens in Qwen2-VL's order (there, ``<|endoftext|>`` is 151643 and the rest follow).
QWEN2_VL_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# LLaVA-OneVision's (Qwen2's three, then ``<image>`` and ``<video>``, 151646 and 151647 there).
LLAVA_OV_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>")

# Qwen2-VL-Instruct's chat template: a default system turn, images (and videos) then text in order.
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# LLaVA-OneVision's chat template: ChatML turns, all images first, then videos, then the text.
LLAVA_OV_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>\n' }}{% endfor %}"
    "{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}{% endfor %}"
    "{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] }}{% endgeneration %}{% endfor %}{% endif %}"
    "{% endif %}{{ '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_qwen2_tokenizer(specials: tuple[str, ...]):
    """A ``Qwen2Tokenizer`` (byte-level BPE) trained in memory on :data:`CORPUS`, then ``specials``.

    The BPE uses Qwen2's own pre-tokenisation (its split regex, then byte-level), and every one of the
    256 byte symbols is in the vocabulary, so any text encodes without an unknown token. ``specials``
    get the ids right after the BPE vocabulary, in order; ``specials[0]`` must be ``<|endoftext|>``
    (Qwen2's unk, pad and eos). The tokenizers BPE trainer is deterministic: the same ids every call.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    if specials[0] != "<|endoftext|>":
        raise ValueError("the first special token must be <|endoftext|>")
    bpe = Tokenizer(BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    bpe.train_from_iterator(CORPUS, trainer=trainer)
    model = json.loads(bpe.to_str())["model"]
    vocab = dict(model["vocab"])
    for token in specials:
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=[tuple(pair) for pair in model["merges"]],  # type: ignore[misc]  # pairs, as tokenizers' BPE takes them
        model_max_length=4096,
        extra_special_tokens=list(specials[1:]),
    )
    tokenizer.add_tokens([AddedToken(token, special=True, normalized=False) for token in specials])
    for token in specials:
        if tokenizer.convert_tokens_to_ids(token) != vocab[token]:
            raise RuntimeError(f"special token {token} did not keep its id")
    return tokenizer


def _generation_config(tokenizer):
    from transformers import GenerationConfig

    endoftext, im_end = tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>"])
    return GenerationConfig(
        bos_token_id=endoftext, eos_token_id=[im_end, endoftext], pad_token_id=endoftext, do_sample=False
    )


def _text_sizes(tokenizer) -> dict:
    endoftext, im_end = tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>"])
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": TEXT_HIDDEN,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "bos_token_id": endoftext,
        "eos_token_id": im_end,
        "pad_token_id": endoftext,
    }


def make_tiny_qwen2_vl(directory: str | Path, *, seed: int = 0, answer: str | None = None) -> Path:
    """Write a tiny Qwen2-VL judge (model, processor, generation config) into ``directory``; return it.

    Vision: 8 px patches, 2x2 merge, images resized to at most 32x32 px, so a picture is about 4 tokens.
    ``seed`` fixes every weight (and the fitting); ``answer`` fits the model to answer that text.
    """
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = build_qwen2_tokenizer(QWEN2_VL_SPECIALS)
    ids = dict(zip(QWEN2_VL_SPECIALS, tokenizer.convert_tokens_to_ids(list(QWEN2_VL_SPECIALS)), strict=True))
    patch, temporal, merge = 8, 2, 2
    pixels = {"shortest_edge": 16 * 16, "longest_edge": 32 * 32}
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(
            size=pixels, patch_size=patch, temporal_patch_size=temporal, merge_size=merge
        ),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(
            size=pixels, patch_size=patch, temporal_patch_size=temporal, merge_size=merge
        ),
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )
    config = Qwen2VLConfig(
        text_config={
            **_text_sizes(tokenizer),
            # head dim 16: the multimodal rope's (time, height, width) sections split its 8 frequencies
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
        },
        vision_config={
            "depth": 1,
            "embed_dim": 32,
            "hidden_size": TEXT_HIDDEN,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": patch,
            "temporal_patch_size": temporal,
            "spatial_merge_size": merge,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config)
    model.generation_config = _generation_config(tokenizer)
    if answer is not None:
        fit_answer(model, processor, answer, seed=seed)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def make_tiny_llava_onevision(directory: str | Path, *, seed: int = 0, answer: str | None = None) -> Path:
    """Write a tiny LLaVA-OneVision judge (model, processor, generation config) into ``directory``; return it.

    SigLIP tower at 16 px with 8 px patches (4 features a tile); ``image_grid_pinpoints`` up to 32x32 px,
    so one image alone is a base tile plus up to 2x2 tiles (about 24 tokens), and each image of several
    is its base tile plus a newline (5 tokens). ``seed`` and ``answer`` as in :func:`make_tiny_qwen2_vl`.
    """
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = build_qwen2_tokenizer(LLAVA_OV_SPECIALS)
    image_size, patch = 16, 8
    pinpoints = [[16, 16], [16, 32], [32, 16], [32, 32]]
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(
            size={"height": image_size, "width": image_size}, image_grid_pinpoints=pinpoints
        ),
        tokenizer=tokenizer,
        video_processor=LlavaOnevisionVideoProcessor(size={"height": image_size, "width": image_size}),
        num_image_tokens=(image_size // patch) ** 2,
        vision_feature_select_strategy="full",
        chat_template=LLAVA_OV_CHAT_TEMPLATE,
    )
    config = LlavaOnevisionConfig(
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": image_size,
            "patch_size": patch,
            "vision_use_head": False,
        },
        text_config={"model_type": "qwen2", **_text_sizes(tokenizer)},
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=pinpoints,
    )
    torch.manual_seed(seed)
    model = LlavaOnevisionForConditionalGeneration(config)
    model.generation_config = _generation_config(tokenizer)
    if answer is not None:
        fit_answer(model, processor, answer, seed=seed)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
