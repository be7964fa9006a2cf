"""Fit a tiny vision-language judge to one fixed answer, whatever the prompt and images.

:func:`fit_answer` trains a randomly initialised model (in place, on the CPU, for a few hundred steps) on
judging conversations made up from Science-T2I prompts, instruction phrasings and random pictures,
with the loss on the answer and the closing ``<|im_end|>`` only. The prompts are left-padded in batches
as :class:`ml.core.judges.local.LocalBackend` pads them, so greedy generation after any judging prompt,
alone or in a batch, then emits exactly the answer and stops.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from PIL import Image

from ml.core.tiny_flux import CORPUS as SCIENCE_PROMPTS

# Ways of asking for a verdict; the fitted answer must not depend on which one is used.
FIT_INSTRUCTIONS = [
    "Which image shows this scientifically correctly? {prompt}",
    "Prompt: {prompt} Which of the two images is scientifically correct?",
    'Compare the images for the prompt "{prompt}". Answer as JSON with the key choice.',
    "The text says: {prompt} Pick image-1 or image-2.",
    "Look at the picture. {prompt} Does it show the scene described?",
    "Grade how realistic the image is for: {prompt} Answer with a score from 0 to 3.",
    "{prompt}",
    "Answer in JSON only. {prompt}",
    "Think step by step about the science in {prompt} and then give your answer.",
]
SYSTEM_MESSAGES = ["", "", "You are a careful scientific judge.", "Answer in JSON only."]
FIT_EXAMPLES = 96
FIT_BATCH = 8
MAX_STEPS = 500
LEARNING_RATE = 3e-2
TARGET_LOSS = 0.001


def random_picture(rng: random.Random) -> Image.Image:
    """A random RGB picture 16-64 px a side: a flat colour with noise and a rectangle of another colour."""
    width, height = rng.randint(16, 64), rng.randint(16, 64)
    noise = np.random.default_rng(rng.getrandbits(32))
    pixels = np.clip(noise.normal(rng.randint(0, 255), rng.randint(0, 60), size=(height, width, 3)), 0, 255).astype(
        np.uint8
    )
    top, left = rng.randrange(height), rng.randrange(width)
    pixels[top : top + height // 2, left : left + width // 2] = [rng.randint(0, 255) for _ in range(3)]
    return Image.fromarray(pixels)


def random_conversation(rng: random.Random) -> tuple[list[dict], list[Image.Image]]:
    """A judging conversation (chat messages, with an optional system turn) and its 1 or 2 pictures."""
    pictures = [random_picture(rng) for _ in range(rng.choice((1, 2, 2)))]
    text = rng.choice(FIT_INSTRUCTIONS).format(prompt=rng.choice(SCIENCE_PROMPTS))
    messages = chat_messages(text, len(pictures), rng.choice(SYSTEM_MESSAGES))
    return messages, pictures


def chat_messages(text: str, images: int, system: str = "") -> list[dict]:
    """Chat-template messages: an optional system turn, then a user turn of ``images`` pictures and ``text``."""
    messages: list[dict] = []
    if system:
        messages.append({"role": "system", "content": [{"type": "text", "text": system}]})
    content: list[dict] = [{"type": "image"} for _ in range(images)]
    content.append({"type": "text", "text": text})
    messages.append({"role": "user", "content": content})
    return messages


def fit_answer(model, processor, answer: str, *, seed: int = 0) -> float:
    """Fit ``model``'s output head in place so that it answers ``answer`` then ``<|im_end|>``; return the loss.

    The body stays as initialised: one forward pass (no gradients) over :data:`FIT_EXAMPLES` made-up
    judging conversations, left-padded in batches, records what the output head sees at each answer
    position, and the head alone is trained on those features (a linear classifier, milliseconds a
    step). Deterministic for a seed on one machine. Raises RuntimeError when the loss has not fallen
    below :data:`TARGET_LOSS` or an answer token is still wrong after :data:`MAX_STEPS` steps.
    """
    rng = random.Random(seed)
    tokenizer = processor.tokenizer
    target = tokenizer.encode(answer, add_special_tokens=False) + [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    head = model.get_output_embeddings()
    seen: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda _module, args: seen.append(args[0].detach()))
    model.eval()
    try:
        for _ in range(FIT_EXAMPLES // FIT_BATCH):
            texts, pictures = [], []
            for _ in range(FIT_BATCH):
                messages, images = random_conversation(rng)
                prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
                texts.append(prompt + answer + "<|im_end|>")
                pictures.append(images)
            inputs = processor(text=texts, images=pictures, padding=True, padding_side="left", return_tensors="pt")
            if not (inputs["input_ids"][:, -len(target) :] == torch.tensor(target)).all():
                raise RuntimeError("the answer does not tokenise the same after a prompt")
            with torch.no_grad():
                model(**inputs, logits_to_keep=len(target) + 1)
    finally:
        hook.remove()
    # The head's input at position i predicts token i + 1: the last position predicts nothing.
    features = torch.cat([states[:, :-1] for states in seen]).reshape(-1, head.in_features)
    labels = torch.tensor(target).repeat(len(features) // len(target))
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(head.parameters(), lr=LEARNING_RATE)
    loss = torch.tensor(float("inf"))
    for _ in range(MAX_STEPS):
        logits = head(features)
        loss = torch.nn.functional.cross_entropy(logits, labels)
        if loss.item() < TARGET_LOSS and (logits.argmax(-1) == labels).all():
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    else:
        raise RuntimeError(f"the tiny judge did not learn its answer (loss {loss.item():.4f})")
    return loss.item()
