"""A judge behind any OpenAI-compatible chat-completions server (vLLM, ``transformers serve``, a hosted API).

Uses the pinned ``openai`` client: its own timeout, and its retries with exponential back-off and jitter
(on connection errors, timeouts, 408/409/429 and 5xx answers, honouring ``Retry-After``). Requests of a
batch run on a thread pool of ``max_concurrency``; a semaphore keeps the bound when several batches run at
once.

**The budget counts logical requests** (chat completions asked for), not HTTP attempts: a request that is
retried twice costs one. So ``request_budget`` caps the number of answers paid for, and the client's
``max_retries`` caps the attempts per request (at most ``budget × (max_retries + 1)`` HTTP requests). A
batch that does not fit the rest of the budget sends the requests that fit, waits for them, then raises
:class:`~.backend.BudgetExhausted`; no request past the budget is ever sent.
"""

from __future__ import annotations

import base64
import io
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import openai
from openai.types.chat import ChatCompletionContentPartParam, ChatCompletionMessageParam
from PIL import Image

from ml.core.judges.backend import BudgetExhausted, Reply, Request

# Sent as the bearer token when no key variable is named: local servers ignore it, and the client never
# falls back to OPENAI_API_KEY from the environment.
NO_KEY = "no-key"
ERROR_BODY_CHARS = 500  # how much of an HTTP error's body goes into Reply.error


def image_data_url(image: Image.Image) -> str:
    """``image`` as a ``data:image/png;base64,...`` URL (lossless, whatever the original format)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def chat_messages(request: Request) -> list[ChatCompletionMessageParam]:
    """The chat messages of one request: the system message when given, then one user turn with the images
    (as ``image_url`` parts, in order) before the text."""
    content: list[ChatCompletionContentPartParam] = [
        {"type": "image_url", "image_url": {"url": image_data_url(image)}} for image in request.images
    ]
    content.append({"type": "text", "text": request.text})
    messages: list[ChatCompletionMessageParam] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    messages.append({"role": "user", "content": content})
    return messages


def describe_error(exc: openai.OpenAIError) -> str:
    """What went wrong, for ``Reply.error``: the exception's class and message, and for an HTTP error the
    status and the start of the body the server sent (the client's message alone may not say why)."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, openai.APIStatusError):
        body = exc.response.text[:ERROR_BODY_CHARS]
        if body and body not in text:
            text += f" ({body})"
    return text


class EndpointBackend:
    """A :class:`~.backend.Backend` that sends each request to ``{base_url}/chat/completions`` as ``model``.

    The API key is read at construction from the environment variable named ``api_key_env`` (a name, never
    the key itself; it does not appear in ``repr``); naming a variable that is unset or empty is a
    ``ValueError``. Without ``api_key_env`` a placeholder is sent. ``timeout`` (seconds) bounds each HTTP
    attempt, ``max_retries`` the retries of a request; a request that still fails gives
    ``Reply(text=None, error=...)``. ``requests_sent`` counts the logical requests sent so far (see the
    module's note on the budget).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = None,
        max_concurrency: int = 4,
        timeout: float = 60.0,
        max_retries: int = 3,
        request_budget: int | None = None,
        temperature: float = 0.0,
        name: str | None = None,
    ):
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, not {max_concurrency}.")
        if request_budget is not None and request_budget < 0:
            raise ValueError(f"request_budget must not be negative, not {request_budget}.")
        key = NO_KEY
        if api_key_env:
            key = os.environ.get(api_key_env, "")
            if not key:
                raise ValueError(f"The API key variable {api_key_env} is not set (or empty) in the environment.")
        self.base_url, self.model, self.api_key_env = base_url, model, api_key_env
        self.max_concurrency, self.request_budget, self.temperature = max_concurrency, request_budget, temperature
        self.name = name or f"endpoint:{model}"
        self.requests_sent = 0
        self._client = openai.OpenAI(base_url=base_url, api_key=key, timeout=timeout, max_retries=max_retries)
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_concurrency)

    def __repr__(self) -> str:
        return (
            f"EndpointBackend(base_url={self.base_url!r}, model={self.model!r}, api_key_env={self.api_key_env!r}, "
            f"max_concurrency={self.max_concurrency}, request_budget={self.request_budget}, "
            f"requests_sent={self.requests_sent})"
        )

    def complete(self, requests: Sequence[Request]) -> list[Reply]:
        """Send the requests (at most ``max_concurrency`` at a time) and return the replies in order.

        Raises :class:`~.backend.BudgetExhausted` when the budget does not cover them all, after sending
        (and waiting for) those it covers.
        """
        with self._lock:
            allowed = len(requests)
            if self.request_budget is not None:
                allowed = max(0, min(allowed, self.request_budget - self.requests_sent))
            self.requests_sent += allowed
        replies: list[Reply] = []
        if allowed:
            with ThreadPoolExecutor(max_workers=min(self.max_concurrency, allowed)) as pool:
                replies = list(pool.map(self._send, requests[:allowed]))
        if allowed < len(requests):
            raise BudgetExhausted(
                f"{self.name}: the request budget of {self.request_budget} is spent "
                f"({allowed} of a batch of {len(requests)} sent, their replies dropped)."
            )
        return replies

    def _send(self, request: Request) -> Reply:
        with self._slots:
            try:
                response = self._client.chat.completions.create(
                    model=self.model,
                    messages=chat_messages(request),
                    max_tokens=request.max_new_tokens,
                    temperature=self.temperature,
                )
            except openai.OpenAIError as exc:
                return Reply(text=None, error=describe_error(exc))
        if not response.choices:
            return Reply(text=None, error="The server answered with no choices.")
        choice = response.choices[0]
        usage = response.usage
        reply = Reply(
            text=choice.message.content,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            extra={"finish_reason": choice.finish_reason, "model": response.model},
        )
        if reply.text is None:
            reply.error = f"No text in the reply (refusal: {choice.message.refusal!r})."
        return reply
