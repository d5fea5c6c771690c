"""Choosing the next token: greedy at temperature 0, else temperature and nucleus (top-p) sampling, with
OpenAI's presence and frequency penalties and, for `response_format`, a grammar's mask.

A request's `seed` gives it its own `torch.Generator`, so a seeded sampled completion is the same
whatever else shares its batch. Everything here works on one row of logits of one sequence; the
engine takes the batched argmax itself when every row is plain greedy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0

    @property
    def longest_stop(self) -> int:
        return max((len(s) for s in self.stop), default=0)


def greedy_rows(params: SamplingParams) -> bool:
    """Whether a plain argmax picks this sequence's tokens (no sampling, no penalties)."""
    return params.temperature == 0 and not params.presence_penalty and not params.frequency_penalty


def choose(logits: torch.Tensor, params: SamplingParams, *, generated: list[int], generator: torch.Generator | None,
           matcher: Any = None, counts: torch.Tensor | None = None) -> int:
    """The next token of one sequence from its row of logits (float32, [vocab]); `logits` may be changed."""
    if counts is not None:
        logits -= params.frequency_penalty * counts + params.presence_penalty * (counts > 0).float()
    if matcher is not None:
        matcher.mask_(logits)
    if params.temperature == 0:
        return int(logits.argmax())
    logits = logits / params.temperature
    probs = torch.softmax(logits, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        cumulative = sorted_probs.cumsum(-1)
        keep = cumulative - sorted_probs < params.top_p      # always keeps the most likely token
        sorted_probs = sorted_probs * keep
        token = order[torch.multinomial(sorted_probs, 1, generator=generator)]
        return int(token)
    return int(torch.multinomial(probs, 1, generator=generator))
