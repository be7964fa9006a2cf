"""GPU benchmark of the local LMM judge: ``LocalBackend`` (ours, batched) against a plain transformers
``generate`` loop (one request at a time, as the research code's pairwise evaluation does), in one run.

Model: Qwen2-VL-7B-Instruct's architecture (its config typed in below), random bf16 weights built on the
device with the public ``from_config``; nothing is downloaded. The processor is Qwen2-VL's image processor
(14 px patches, 2x2 merge) with the offline tokenizer of this project's tiny judges (Qwen2's split rules and
special tokens, a small vocabulary; its ids all fall inside the model's): prompts come out somewhat longer in
tokens than with Qwen's own tokenizer, the same for both sides. Random weights rarely emit a stop token, so
both sides generate ``max_new_tokens`` for every request: the comparison is like for like.

Workload: ``--items`` pairwise items (the ``pairwise-v1`` prompt, two ``--image-size`` px images), each asked in
both image orders: ``2 × items`` requests. Reported per side: items/s, requests/s, prompt and generated
tokens/s, peak GPU memory, and ours ÷ plain. ``--tiny``: the tiny judge's sizes on the CPU (a dry run in
seconds; its numbers mean nothing).

    python bench/judge_bench.py --out judge.json               # on a GPU worker
    python bench/judge_bench.py --tiny                          # CPU dry run
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ml.core.judges.local import LocalBackend
from ml.core.judges.protocol import pairwise_request

QWEN2_VL_7B_TEXT = {  # Qwen/Qwen2-VL-7B-Instruct config.json (text part)
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
}
QWEN2_VL_7B_VISION = {"depth": 32, "embed_dim": 1280, "hidden_size": 3584, "num_heads": 16, "mlp_ratio": 4}
QWEN2_VL_7B_VOCAB = 152064
PROMPTS = ("An apple left out for weeks.", "An iron nail left in the rain for a month.", "Ice cubes on a hot stove.")


def build(tiny: bool):
    """The model (random weights, on the device) and its processor."""
    from transformers import (
        AutoModelForImageTextToText,
        Qwen2VLConfig,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    from ml.core.judges.tiny import QWEN2_VL_CHAT_TEMPLATE, QWEN2_VL_SPECIALS, build_qwen2_tokenizer

    tokenizer = build_qwen2_tokenizer(QWEN2_VL_SPECIALS)
    ids = dict(zip(QWEN2_VL_SPECIALS, tokenizer.convert_tokens_to_ids(list(QWEN2_VL_SPECIALS)), strict=True))
    patch = 8 if tiny else 14
    pixels = (
        {"shortest_edge": 16 * 16, "longest_edge": 32 * 32}
        if tiny
        else {"shortest_edge": 56 * 56, "longest_edge": 448 * 448}
    )
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=pixels, patch_size=patch, temporal_patch_size=2, merge_size=2),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(size=pixels, patch_size=patch, temporal_patch_size=2, merge_size=2),
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )
    endoftext, im_end = tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>"])
    if tiny:
        text = {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
        }
        vision = {"depth": 1, "embed_dim": 32, "hidden_size": 64, "num_heads": 2, "mlp_ratio": 2}
        vocab = len(tokenizer)
    else:
        text, vision, vocab = dict(QWEN2_VL_7B_TEXT), dict(QWEN2_VL_7B_VISION), QWEN2_VL_7B_VOCAB
    config = Qwen2VLConfig(
        text_config={
            **text,
            "vocab_size": vocab,
            "bos_token_id": endoftext,
            "eos_token_id": im_end,
            "pad_token_id": endoftext,
        },
        vision_config={**vision, "patch_size": patch, "temporal_patch_size": 2, "spatial_merge_size": 2},
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    device = "cpu" if tiny or not torch.cuda.is_available() else "cuda"
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
    model.generation_config.pad_token_id = endoftext
    model.generation_config.eos_token_id = [im_end, endoftext]
    return model.eval(), processor


def requests(items: int, size: int):
    """Both orders of ``items`` pairwise items with two distinct random-looking images each."""
    out = []
    for n in range(items):
        first = Image.effect_noise((size, size), 40 + n % 50).convert("RGB")
        second = Image.linear_gradient("L").resize((size, size)).convert("RGB")
        prompt = PROMPTS[n % len(PROMPTS)]
        out += [pairwise_request(prompt, first, second), pairwise_request(prompt, second, first)]
    return out


def plain_loop(model, processor, reqs) -> dict:
    """The baseline: one request at a time through the processor and ``model.generate``."""
    prompt_tokens = generated = 0
    for request in reqs:
        messages = [{"role": "system", "content": [{"type": "text", "text": request.system}]}] if request.system else []
        messages.append(
            {
                "role": "user",
                "content": [*({"type": "image"} for _ in request.images), {"type": "text", "text": request.text}],
            }
        )
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = processor(text=[text], images=list(request.images), return_tensors="pt").to(model.device)
        with torch.inference_mode():
            output = model.generate(**inputs, max_new_tokens=request.max_new_tokens, do_sample=False)
        prompt_tokens += inputs["input_ids"].shape[1]
        generated += output.shape[1] - inputs["input_ids"].shape[1]
        processor.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    return {"prompt_tokens": prompt_tokens, "generated_tokens": generated}


def ours(backend: LocalBackend, reqs) -> dict:
    replies = backend.complete(reqs)
    failed = [r.error for r in replies if r.text is None]
    if failed:
        raise RuntimeError(f"{len(failed)} requests failed: {failed[0]}")
    return {
        "prompt_tokens": sum(r.prompt_tokens for r in replies),
        "generated_tokens": sum(r.completion_tokens for r in replies),
    }


def timed(device: str, run) -> dict:
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    counts = run()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    return {**counts, "seconds": round(seconds, 3), "peak_gib": None if peak is None else round(peak, 2)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="the tiny judge's sizes on the CPU: a dry run")
    parser.add_argument("--items", type=int, default=None, help="pairwise items (default 64; tiny 4)")
    parser.add_argument("--batch-size", type=int, default=None, help="LocalBackend batch (default 16; tiny 4)")
    parser.add_argument("--image-size", type=int, default=None, help="image side in px (default 448; tiny 32)")
    parser.add_argument("--out", type=Path, help="also write the result JSON here")
    args = parser.parse_args(argv)
    items = args.items or (4 if args.tiny else 64)
    batch = args.batch_size or (4 if args.tiny else 16)
    size = args.image_size or (32 if args.tiny else 448)
    model, processor = build(args.tiny)
    device = model.device.type
    reqs = requests(items, size)
    backend = LocalBackend.from_loaded(model, processor, batch_size=batch, name="qwen2-vl-7b-random")
    ours(backend, reqs[: min(len(reqs), batch)])  # warm-up: kernels, allocator
    result = {
        "card": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "model": "tiny Qwen2-VL" if args.tiny else "Qwen2-VL-7B architecture, random bf16 weights",
        "parameters_b": round(sum(p.numel() for p in model.parameters()) / 1e9, 3),
        "items": items,
        "requests": len(reqs),
        "batch_size": batch,
        "image_size": size,
        "ours": timed(device, lambda: ours(backend, reqs)),
        "plain": timed(device, lambda: plain_loop(model, processor, reqs)),
    }
    for side in ("ours", "plain"):
        r = result[side]
        r["items_per_s"] = round(items / r["seconds"], 3)
        r["generated_tokens_per_s"] = round(r["generated_tokens"] / r["seconds"], 1)
        r["prompt_tokens_per_s"] = round(r["prompt_tokens"] / r["seconds"], 1)
    result["speedup_items"] = round(result["ours"]["items_per_s"] / result["plain"]["items_per_s"], 2)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
