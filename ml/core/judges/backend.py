"""What every LMM judge backend offers: a batch of chat requests (text and images) in, replies out.

Two backends implement :class:`Backend`: :class:`ml.core.judges.local.LocalBackend` (a vision-language
model loaded with transformers from a local directory) and
:class:`ml.core.judges.endpoint.EndpointBackend` (any OpenAI-compatible chat-completions server). The
protocols in :mod:`ml.core.judges.protocol` build the requests and read the replies; they never see
which backend answered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from PIL import Image


@dataclass(frozen=True)
class Request:
    """One chat turn: ``text`` after ``images`` (in order), with an optional system message."""

    text: str
    images: tuple[Image.Image, ...] = ()
    system: str = ""
    max_new_tokens: int = 64


@dataclass
class Reply:
    """The model's answer to one request; ``text`` is None when the request failed (``error`` says why)."""

    text: str | None
    error: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    extra: dict = field(default_factory=dict)


class Backend(Protocol):
    """Answers requests in order; a failed request gives a Reply with ``text=None``, never an exception,
    except :class:`BudgetExhausted`, which stops the whole evaluation."""

    name: str

    def complete(self, requests: Sequence[Request]) -> list[Reply]: ...


class BudgetExhausted(RuntimeError):
    """The run's request budget is spent: no further request is sent."""
