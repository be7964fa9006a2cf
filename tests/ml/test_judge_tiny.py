"""The tiny vision-language judges: real transformers directories that load offline, template and answer."""

import json
import random

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText, AutoProcessor

from ml.core.judges.tiny import make_tiny_llava_onevision, make_tiny_qwen2_vl
from ml.core.judges.tiny_fit import FIT_INSTRUCTIONS, chat_messages

BUILDERS = {"qwen2_vl": make_tiny_qwen2_vl, "llava_onevision": make_tiny_llava_onevision}
# Each family is fitted to a different answer, so neither can be a constant of the code.
ANSWERS = {"qwen2_vl": '{"choice": "image-1"}', "llava_onevision": '{"choice": "image-2"}'}
IMAGE_TOKENS = {"qwen2_vl": "<|image_pad|>", "llava_onevision": "<image>"}

# Phrasings and prompts that the fitting never saw (it draws from FIT_INSTRUCTIONS and the FLUX corpus).
UNSEEN_INSTRUCTIONS = [
    "Here are two pictures. Which one correctly depicts the following? {prompt} Reply with JSON.",
    "{prompt} Choose the better image, the first or the second.",
    "Question for a physicist: is the scene right? {prompt}",
]
UNSEEN_PROMPTS = [
    "A glass of orange juice left in the sun for a day.",
    "A magnet attracting iron filings on a sheet of paper.",
    "Snow melting on a warm roof in March.",
    "Bread dough rising in a warm kitchen.",
]


@pytest.fixture(scope="module")
def judges(tmp_path_factory) -> dict:
    """Both families fitted to their answers, and a random Qwen2-VL."""
    root = tmp_path_factory.mktemp("judges")
    built = {family: build(root / family, answer=ANSWERS[family]) for family, build in BUILDERS.items()}
    built["random"] = make_tiny_qwen2_vl(root / "random")
    return built


def load(directory):
    return (
        AutoProcessor.from_pretrained(directory, local_files_only=True),
        AutoModelForImageTextToText.from_pretrained(directory, local_files_only=True),
    )


def gradient(size: tuple[int, int], seed: int) -> Image.Image:
    """A smooth colour gradient with noise: a picture unlike the fitting's flat ones."""
    rng = np.random.default_rng(seed)
    width, height = size
    ramp = np.linspace(0, 255, width)[None, :, None] * rng.uniform(0.2, 1.0, size=3)
    pixels = np.broadcast_to(ramp, (height, width, 3)) + rng.normal(0, 20, size=(height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def unseen_requests(count: int) -> list[tuple[list[dict], list[Image.Image]]]:
    rng = random.Random(7)
    requests = []
    for index in range(count):
        images = [gradient((rng.choice((24, 100, 256)), rng.choice((32, 80, 256))), index * 2 + k) for k in range(2)]
        text = UNSEEN_INSTRUCTIONS[index % 3].format(prompt=UNSEEN_PROMPTS[index % 4])
        assert text not in FIT_INSTRUCTIONS
        images = images[: 1 + index % 2]
        requests.append((chat_messages(text, len(images), "Be brief." if index % 3 == 0 else ""), images))
    return requests


def generate(processor, model, requests) -> list[str]:
    """Greedy answers, special tokens kept, for chat requests batched with left padding."""
    texts = [processor.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m, _ in requests]
    inputs = processor(
        text=texts, images=[images for _, images in requests], padding=True, padding_side="left", return_tensors="pt"
    )
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=24, do_sample=False)
    return processor.tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=False)


@pytest.mark.parametrize("family", BUILDERS)
def test_each_tiny_judge_loads_offline_with_the_auto_classes(judges, family, offline_hf):
    processor, model = load(judges[family])
    assert model.config.model_type == family
    assert (
        type(model).__name__
        == {
            "qwen2_vl": "Qwen2VLForConditionalGeneration",
            "llava_onevision": "LlavaOnevisionForConditionalGeneration",
        }[family]
    )
    tokenizer = processor.tokenizer
    assert model.config.image_token_id == tokenizer.convert_tokens_to_ids(IMAGE_TOKENS[family])
    assert model.config.get_text_config().vocab_size == len(tokenizer)
    assert model.generation_config.eos_token_id == tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    text = 'An apple left for weeks; answer {"choice": "image-1"} ünïcode ✓'
    ids = tokenizer(text).input_ids
    assert tokenizer.decode(ids) == text  # byte-level: any text round-trips
    assert "Ġapple" in tokenizer.convert_ids_to_tokens(ids)  # a word of the corpus is one token
    assert tokenizer.tokenize("<|im_start|>user")[0] == "<|im_start|>"  # special tokens stay whole


@pytest.mark.parametrize("family", BUILDERS)
def test_the_chat_template_puts_the_image_tokens_before_the_text(judges, family):
    processor, model = load(judges[family])
    messages = chat_messages("Which image is right?", 2, "You judge science.")
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    token = IMAGE_TOKENS[family]
    assert text.startswith("<|im_start|>system\nYou judge science.<|im_end|>\n<|im_start|>user\n")
    assert text.count(token) == 2 and text.rindex(token) < text.index("Which image is right?")
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\n")
    if family == "qwen2_vl":  # Qwen2-VL's default system turn when none is given
        alone = processor.apply_chat_template(chat_messages("Hi", 1), add_generation_prompt=True, tokenize=False)
        assert alone.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")

    images = [gradient((256, 256), 0), gradient((40, 90), 1)]
    inputs = processor(text=[text], images=[images], return_tensors="pt")
    placeholders = int((inputs["input_ids"] == model.config.image_token_id).sum())
    assert 2 <= placeholders <= 24  # a handful of tokens a picture
    with torch.no_grad():  # the model checks that the placeholders match its image features
        logits = model(**inputs).logits
    assert logits.shape[:2] == inputs["input_ids"].shape


@pytest.mark.parametrize("family", BUILDERS)
def test_the_fitted_judge_answers_exactly_its_text_for_prompts_it_never_saw(judges, family):
    processor, model = load(judges[family])
    requests = unseen_requests(8)
    expected = ANSWERS[family] + "<|im_end|>"
    assert generate(processor, model, requests) == [expected] * len(requests)  # batched, left-padded
    assert [generate(processor, model, [request])[0] for request in requests[:3]] == [expected] * 3  # alone


def test_the_random_judge_answers_no_choice(judges):
    answers = generate(*load(judges["random"]), unseen_requests(4))
    assert all("image-1" not in answer and "image-2" not in answer and '{"' not in answer for answer in answers)
    assert len(set(answers)) > 1  # its answers depend on the prompt


def test_two_builds_with_one_seed_are_identical(judges, tmp_path):
    again = make_tiny_qwen2_vl(tmp_path / "again", answer=ANSWERS["qwen2_vl"])
    other = make_tiny_qwen2_vl(tmp_path / "other", seed=1, answer=ANSWERS["qwen2_vl"])
    first = load_file(judges["qwen2_vl"] / "model.safetensors")
    second = load_file(again / "model.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)
    for name in ("tokenizer.json", "config.json", "processor_config.json", "chat_template.jinja"):
        assert (judges["qwen2_vl"] / name).read_bytes() == (again / name).read_bytes(), name
    third = load_file(other / "model.safetensors")
    assert not torch.equal(first["lm_head.weight"], third["lm_head.weight"])
    assert json.loads((other / "tokenizer.json").read_text()) == json.loads((again / "tokenizer.json").read_text())
