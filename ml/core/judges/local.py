"""A judge backend that runs a vision-language model from a local directory with transformers.

:class:`LocalBackend` loads any directory that ``AutoProcessor`` and ``AutoModelForImageTextToText``
read (Qwen2-VL, Qwen2.5-VL, LLaVA-OneVision, ..., the tiny ones of :mod:`ml.core.judges.tiny` included)
with ``local_files_only=True``: nothing is downloaded. Requests go through the processor's own chat
template (:func:`chat_messages`: an optional system turn, then a user turn of the images in order and
the text), ``batch_size`` at a time, left-padded, and are answered by greedy generation. Each answer is
cut to its own request's ``max_new_tokens``, so batching never changes an answer.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from ml.core.judges.backend import Reply, Request


def model_family(directory: str | Path) -> str:
    """The ``model_type`` in the directory's ``config.json`` (``"qwen2_vl"``, ``"llava_onevision"``, ...)."""
    return json.loads((Path(directory) / "config.json").read_text())["model_type"]


def chat_messages(text: str, images: int, system: str = "") -> list[dict]:
    """Chat-template messages: an optional system turn, then a user turn of ``images`` pictures and ``text``.

    Every content is a list of typed parts, the form every vision-language chat template reads.
    """
    messages: list[dict] = []
    if system:
        messages.append({"role": "system", "content": [{"type": "text", "text": system}]})
    content: list[dict] = [{"type": "image"} for _ in range(images)]
    content.append({"type": "text", "text": text})
    messages.append({"role": "user", "content": content})
    return messages


def failed(error: BaseException) -> Reply:
    """The Reply of a request that failed with ``error``."""
    return Reply(text=None, error=f"{type(error).__name__}: {error}")


class LocalBackend:
    """A :class:`~ml.core.judges.backend.Backend` on a local transformers vision-language model.

    ``device`` defaults to CUDA when available, else the CPU; ``dtype`` to bfloat16 on CUDA and float32
    on the CPU. ``name`` defaults to the directory's name. A request that fails (an unreadable image, a
    prompt the processor or the model refuses, running out of memory alone) gets ``Reply(text=None,
    error=...)``; the rest of its batch is answered one by one. :meth:`close` frees the model.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        batch_size: int = 8,
        name: str | None = None,
    ):
        from transformers import AutoModelForImageTextToText, AutoProcessor

        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.directory = Path(directory)
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
        processor = AutoProcessor.from_pretrained(self.directory, local_files_only=True)
        model = AutoModelForImageTextToText.from_pretrained(
            self.directory, local_files_only=True, dtype=dtype, device_map=device
        )
        self._attach(model, processor, batch_size=batch_size, name=name or self.directory.name)
        self.family = model_family(self.directory)

    @classmethod
    def from_loaded(cls, model, processor, *, batch_size: int = 8, name: str = "in-memory") -> LocalBackend:
        """A backend on a model and processor already in memory, on the model's device and dtype (the judge
        benchmark builds a random full-size model this way, with no checkpoint on disk)."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        backend = cls.__new__(cls)
        backend.directory = Path(".")
        backend._attach(model, processor, batch_size=batch_size, name=name)
        backend.family = model.config.model_type
        return backend

    def _attach(self, model, processor, *, batch_size: int, name: str) -> None:
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.processor = processor
        self.processor.tokenizer.padding_side = "left"
        self.batch_size = batch_size
        self.name = name
        self.stop_ids = set(self._stop_ids())
        self.closed = False

    def _stop_ids(self) -> list[int]:
        eos = self.model.generation_config.eos_token_id
        ids = eos if isinstance(eos, list) else [eos]
        return [i for i in ids if i is not None] + [self.processor.tokenizer.eos_token_id]

    def complete(self, requests: Sequence[Request]) -> list[Reply]:
        """Answer ``requests`` in order, ``batch_size`` at a time."""
        if self.closed:
            raise RuntimeError(f"the local backend {self.name} is closed")
        replies: list[Reply] = []
        for start in range(0, len(requests), self.batch_size):
            replies.extend(self._complete_batch(requests[start : start + self.batch_size]))
        return replies

    def _complete_batch(self, requests: Sequence[Request]) -> list[Reply]:
        prepared: list[tuple[str, list] | Reply] = [self._prepare(request) for request in requests]
        ready = [(i, item) for i, item in enumerate(prepared) if not isinstance(item, Reply)]
        replies: list[Reply | None] = [item if isinstance(item, Reply) else None for item in prepared]
        try:
            answers = self._generate([item for _, item in ready], [requests[i] for i, _ in ready])
        except Exception as error:  # one bad request (or too big a batch): answer each alone to find it
            self._release_cache()
            if len(ready) == 1:
                answers = [failed(error)]
            else:
                answers = [self._generate_alone(item, requests[i]) for i, item in ready]
        for (i, _), reply in zip(ready, answers, strict=True):
            replies[i] = reply
        return [reply for reply in replies if reply is not None]

    def _generate_alone(self, item: tuple[str, list], request: Request) -> Reply:
        try:
            return self._generate([item], [request])[0]
        except Exception as error:  # whatever fails, only this request fails
            self._release_cache()
            return failed(error)

    def _prepare(self, request: Request) -> tuple[str, list] | Reply:
        """The request's templated text and RGB images, or a failed Reply."""
        try:
            images = [image.convert("RGB") for image in request.images]  # loads lazy images: errors show here
            messages = chat_messages(request.text, len(images), request.system)
            text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except Exception as error:  # a bad request fails alone
            return failed(error)
        return text, images

    def _generate(self, items: list[tuple[str, list]], requests: Sequence[Request]) -> list[Reply]:
        if not items:
            return []
        images = [item_images for _, item_images in items]
        inputs = self.processor(
            text=[text for text, _ in items],
            images=images if any(images) else None,
            padding=True,
            padding_side="left",
            return_tensors="pt",
        ).to(self.device, dtype=self.dtype)
        with torch.inference_mode():
            output = self.model.generate(
                **inputs,
                max_new_tokens=max(request.max_new_tokens for request in requests),
                do_sample=False,
                num_beams=1,
            )
        new_tokens = output[:, inputs["input_ids"].shape[1] :].tolist()
        prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        return [
            self._reply(tokens[: request.max_new_tokens], prompt)
            for tokens, request, prompt in zip(new_tokens, requests, prompt_tokens, strict=True)
        ]

    def _reply(self, tokens: list[int], prompt_tokens: int) -> Reply:
        """Decode one row's new tokens up to and including the first stop token."""
        stop = next((i for i, token in enumerate(tokens) if token in self.stop_ids), None)
        kept = tokens if stop is None else tokens[: stop + 1]
        text = self.processor.tokenizer.decode(kept, skip_special_tokens=True).strip()
        return Reply(
            text=text,
            prompt_tokens=int(prompt_tokens),
            completion_tokens=len(kept),
            extra={"finish_reason": "length" if stop is None else "stop"},
        )

    def _release_cache(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def close(self) -> None:
        """Free the model (and its GPU memory); the backend answers nothing after this."""
        if not self.closed:
            del self.model
            self.closed = True
        gc.collect()
        self._release_cache()

    def __enter__(self) -> LocalBackend:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
