"""The one road from an application to a model: the `Models` interface the apps are written against.

    classify(model, texts)            → Classified: the served NAME:VERSION, its labels, probabilities
    embed(texts, model=None)          → Embedded: the embedding model's name, one unit vector per text
    count_tokens(texts, model, task)  → tokens that model reads for `texts` (after truncation): the
                                        metered units of a call, equal to what the model is given
    generate(model, messages, ...)    → Generated: a generative model's reply to a chat, its input and
                                        output tokens and the NAME:VERSION that answered

The support bot, FAQ answering and recommendation take a `Models` and never load a model
themselves, so the same app code runs in two places with two backings:

    the server   `modelshop.serve.pooled_models.PooledModels`: the server's own pool, so an app's call
                 takes a slot, the model's tokeniser thread, its batcher and its worker processes,
                 batched with /predict and /v1/embeddings, on the one copy of each model it serves
    elsewhere    `modelshop.serve.direct_models.DirectModels`: the CLI, scripts and library calls;
                 each model loaded once per process

The interface is synchronous: app functions are plain functions (they also read and write the
database), run on a thread inside the server; `PooledModels` hands each call to the event loop
and waits for its batch. For a generative model, `count_tokens(..., task="generate")` counts each
text as the prompt of a one-message chat (a user message, the model's chat template applied), so an
app can fit a prompt to a budget before it asks for the reply.
May import: numpy (nothing of modelshop: this module sits below every part that uses it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

Task = Literal["classify", "embed", "generate"]
TASKS = ("classify", "embed", "generate")


@dataclass(frozen=True)
class Classified:
    """What a classifier made of some texts."""

    ref: str                    # NAME:VERSION that answered
    labels: list[str]
    probabilities: np.ndarray   # (texts, labels): softmax, or sigmoid for a multi-label model
    multi_label: bool
    tokens: int                 # tokens the model read, over all texts

    def best(self, row: int = 0) -> tuple[str, float]:
        """The likeliest label of text `row` and its probability."""
        j = int(np.argmax(self.probabilities[row]))
        return self.labels[j], float(self.probabilities[row][j])


@dataclass(frozen=True)
class Embedded:
    """Sentence embeddings of some texts."""

    ref: str                    # the embedding model's name
    vectors: np.ndarray         # (texts, dimensions) float32, unit length: cosine similarity is a dot product
    tokens: int


@dataclass(frozen=True)
class Generated:
    """A generative model's reply to one chat."""

    text: str
    prompt_tokens: int          # what the model read (its chat template applied), by its own tokenizer
    completion_tokens: int      # what it wrote
    model_ref: str              # NAME:VERSION that answered (a fallback, when the asked one failed)
    finish_reason: str          # "stop" | "length"
    estimated: bool = False     # counted here: an upstream that reported no usage


def check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")


class Models(Protocol):
    def classify(self, model: str, texts: Sequence[str]) -> Classified:
        """Probabilities of every label of classifier `model` (NAME or NAME:VERSION) for each text."""
        ...

    def embed(self, texts: Sequence[str], model: str | None = None) -> Embedded:
        """Unit vectors of `texts` from embedding model `model` (default: the configured one)."""
        ...

    def count_tokens(self, texts: Sequence[str], model: str | None = None, *, task: Task = "classify") -> int:
        """Tokens `model` reads for `texts` when asked to `task` them (None: the configured embedding model)."""
        ...

    def generate(self, model: str, messages: Sequence[dict], *, max_tokens: int,
                 temperature: float = 0.0) -> Generated:
        """The reply of generative model `model` (local or upstream, with its fallbacks) to chat `messages`
        ([{"role", "content"}]): at most `max_tokens` new tokens, greedy at temperature 0."""
        ...
