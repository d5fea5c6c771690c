"""The generative engine: continuous batching over a Hugging Face causal LM's own forward and cache.

Iteration-level scheduling, as vLLM, TGI and llama.cpp's server do it: `step()` is one iteration.
New sequences join the running batch between decoding steps and finished ones leave it, so a short
answer never waits for the longest one in its batch, and a request arriving mid-generation starts
within one step instead of after the whole batch.

    waiting ──prefill (≤ prefill_budget prompt tokens per step; long prompts in chunks)──▶ running
    running ──one decoding step per iteration, all sequences in one forward──▶ finished (leaves)

The running batch shares one key/value cache, left-padded: row i holds `pads[i]` empty positions
then its own tokens, the attention mask hides the padding, and each row's position ids count only
its own tokens, so a row computes what it would compute alone (the exactness test holds greedy
output in a busy batch to the output generated alone, token for token). A sequence's prompt is
prefilled on its own (or with other short prompts, left-padded the same way), then its cache is
padded to the batch's length and joins it. Positions every row has as padding are trimmed when a
long sequence leaves. A prompt longer than the per-step budget is prefilled in chunks over several
iterations, each followed by a decoding step of the running batch: a long prompt delays the others
by one chunk, never by the whole prompt.

The engine is single-threaded and knows nothing of HTTP or processes: `modelshop.serve.generation`
drives it in a model worker process (its own GIL) and streams the `Event`s back.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch

from modelshop.errors import ModelError, ModelshopError, UpstreamFailed, ValidationError
from modelshop.llm.sampling import SamplingParams, choose, greedy_rows

FINISH_STOP, FINISH_LENGTH, FINISH_CANCELLED, FINISH_ERROR = "stop", "length", "cancelled", "error"
# an Event's `error` is "ErrorType: message" when it carries one of ours across a process boundary
_CARRIED = {"ValidationError": ValidationError, "UpstreamFailed": UpstreamFailed}


@dataclass
class Event:
    """What one sequence produced in one step: text to send, and why it ended when it did."""

    request_id: str
    text: str                       # new text since the last event (may be "")
    tokens: int                     # new tokens since the last event
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0      # all tokens generated so far
    error: str | None = None
    first: bool = False             # the first event of this sequence (its first token)
    token_ids: tuple[int, ...] = ()  # the new tokens themselves
    answered_by: str | None = None  # NAME:VERSION of the model that produced it (set by the gateway)
    estimated: bool = False         # token counts counted here, not reported by the model's provider


def failure(event: Event) -> ModelshopError:
    """The error a failed event stands for: ours when its message names one (a bad schema is a
    ValidationError, a relay that broke off an UpstreamFailed), else a ModelError."""
    message = event.error or "generation failed"
    kind, _, rest = message.partition(": ")
    if kind in _CARRIED and rest:
        return _CARRIED[kind](rest)
    return ModelError(f"generation failed: {message}")


@dataclass
class _Seq:
    rid: str
    prompt: list[int]
    params: SamplingParams
    matcher: Any = None                       # a modelshop.llm.constrain.Matcher, for response_format
    generated: list[int] = field(default_factory=list)
    prefilled: int = 0                        # prompt tokens already in `partial` (a chunked prefill)
    partial: Any = None                       # the cache of a prompt being prefilled in chunks
    generator: torch.Generator | None = None
    emitted: int = 0                          # characters of the decoded text already sent
    text: str = ""
    counts: torch.Tensor | None = None        # token counts, for presence/frequency penalties
    arrived: float = field(default_factory=time.perf_counter)


class Engine:
    """Continuous batching for one model. Not thread-safe: one driver calls `add`, `cancel` and `step`."""

    def __init__(self, model, tokenizer, *, eos_token_ids: list[int], context_length: int,
                 max_batch: int = 16, prefill_budget: int = 256) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.eos = set(eos_token_ids)
        self.context_length = context_length
        self.max_batch, self.prefill_budget = max_batch, max(16, prefill_budget)
        self.vocab_size = model.get_output_embeddings().weight.shape[0]
        self.waiting: deque[_Seq] = deque()
        self.rows: list[_Seq] = []            # the running batch, in cache row order
        self.pads: list[int] = []             # left padding of each row of the cache
        self.cache = None                     # the running batch's cache (None when empty)
        self._cancelled: set[str] = set()
        self.steps = 0

    # --- the driver's side ------------------------------------------------------------------------

    def add(self, rid: str, prompt: list[int], params: SamplingParams, matcher: Any = None) -> None:
        if not prompt:
            raise ValueError("an empty prompt")
        seq = _Seq(rid, list(prompt), params, matcher)
        if params.seed is not None:
            seq.generator = torch.Generator().manual_seed(params.seed)
        self.waiting.append(seq)

    def cancel(self, rid: str) -> None:
        self._cancelled.add(rid)

    @property
    def busy(self) -> bool:
        return bool(self.waiting or self.rows)

    @property
    def running(self) -> int:
        return len(self.rows)

    @property
    def queued(self) -> int:
        return len(self.waiting)

    @torch.inference_mode()
    def step(self) -> list[Event]:
        """One iteration: drop cancelled sequences, prefill what the budget allows, one decoding step."""
        events: list[Event] = []
        self._drop_cancelled(events)
        if self.waiting and len(self.rows) < self.max_batch:
            events += self._prefill()
        if self.rows:
            events += self._decode()
        self.steps += 1
        return events

    # --- prefill ---------------------------------------------------------------------------------

    def _prefill(self) -> list[Event]:
        head = self.waiting[0]
        if head.partial is not None or len(head.prompt) > self.prefill_budget:
            return self._prefill_chunk(head)
        group, total = [], 0
        while (self.waiting and len(self.rows) + len(group) < self.max_batch
               and self.waiting[0].partial is None and total + len(self.waiting[0].prompt) <= self.prefill_budget):
            seq = self.waiting.popleft()
            group.append(seq)
            total += len(seq.prompt)
        longest = max(len(s.prompt) for s in group)
        pads = [longest - len(s.prompt) for s in group]
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.tensor([[pad_id] * p + s.prompt for s, p in zip(group, pads)])
        mask = torch.tensor([[0] * p + [1] * len(s.prompt) for s, p in zip(group, pads)])
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                         logits_to_keep=1)
        return self._join(group, out.cache, pads, out.logits[:, -1, :])

    def _prefill_chunk(self, seq: _Seq) -> list[Event]:
        """The next `prefill_budget` tokens of a long prompt, on its own cache; it joins when done."""
        start = seq.prefilled
        chunk = seq.prompt[start:start + self.prefill_budget]
        n = start + len(chunk)
        out = self.model(input_ids=torch.tensor([chunk]), attention_mask=torch.ones(1, n, dtype=torch.long),
                         position_ids=torch.arange(start, n).unsqueeze(0), cache=seq.partial, use_cache=True,
                         logits_to_keep=1)
        seq.partial, seq.prefilled = out.cache, n
        if n < len(seq.prompt):
            return []
        self.waiting.popleft()
        cache, seq.partial = seq.partial, None
        return self._join([seq], cache, [0], out.logits[:, -1, :])

    def _join(self, group: list[_Seq], cache, pads: list[int], logits: torch.Tensor) -> list[Event]:
        """Sample each new sequence's first token and merge its cache into the running batch."""
        events = []
        tokens = self._choose(group, logits)
        if self.cache is None:
            self.cache, self.pads, self.rows = cache, list(pads), list(group)
        else:
            self.cache, self.pads = _merge_into(self.cache, self.pads, cache, pads)
            self.rows += group
        for seq, token in zip(group, tokens):
            events.append(self._advance(seq, token, first=True))
        self._retire([e for e in events if e.finish_reason])
        return events

    # --- decode ----------------------------------------------------------------------------------

    def _decode(self) -> list[Event]:
        length = _layer_len(self.cache, 0)
        last = torch.tensor([[s.generated[-1]] for s in self.rows])
        mask = torch.ones(len(self.rows), length + 1, dtype=torch.long)
        for i, pad in enumerate(self.pads):
            if pad:
                mask[i, :pad] = 0
        positions = torch.tensor([[length - pad] for pad in self.pads])
        out = self.model(input_ids=last, attention_mask=mask, position_ids=positions, cache=self.cache,
                         use_cache=True)
        self.cache = out.cache
        tokens = self._choose(self.rows, out.logits[:, -1, :])
        events = [self._advance(seq, token) for seq, token in zip(self.rows, tokens)]
        self._retire([e for e in events if e.finish_reason])
        return events

    def _choose(self, seqs: list[_Seq], logits: torch.Tensor) -> list[int]:
        logits = logits.float()
        if all(greedy_rows(s.params) and s.matcher is None for s in seqs):
            return logits.argmax(-1).tolist()
        return [choose(logits[i], s.params, generated=s.generated, generator=s.generator, matcher=s.matcher,
                       counts=self._counts(s)) for i, s in enumerate(seqs)]

    def _counts(self, seq: _Seq) -> torch.Tensor | None:
        if not (seq.params.presence_penalty or seq.params.frequency_penalty):
            return None
        if seq.counts is None:
            seq.counts = torch.zeros(self.vocab_size)
        return seq.counts

    def _advance(self, seq: _Seq, token: int, *, first: bool = False) -> Event:
        """Take `token` into `seq`; the text it adds (held back while it may begin a stop string)."""
        seq.generated.append(token)
        if seq.counts is not None:
            seq.counts[token] += 1
        if seq.matcher is not None and token not in self.eos:
            seq.matcher.accept(token)
        finish = None
        if token in self.eos or seq.matcher is not None and seq.matcher.is_terminated():
            finish = FINISH_STOP
        elif len(seq.generated) >= seq.params.max_tokens or len(seq.prompt) + len(seq.generated) >= \
                self.context_length:
            finish = FINISH_LENGTH
        body = seq.generated[:-1] if token in self.eos else seq.generated
        text = self.tokenizer.decode(body, skip_special_tokens=True)
        cut = _find_stop(text, seq.params.stop, max(0, seq.emitted - seq.params.longest_stop))
        if cut is not None:
            text, finish = text[:cut], FINISH_STOP
        if finish is None:
            send_upto = len(text) - _held_back(text, seq.params.stop)
        else:
            send_upto = len(text)
        delta = text[seq.emitted:send_upto] if send_upto > seq.emitted else ""
        seq.emitted = max(seq.emitted, send_upto)
        seq.text = text
        return Event(seq.rid, delta, 1, finish, prompt_tokens=len(seq.prompt),
                     completion_tokens=len(seq.generated), first=first, token_ids=(token,))

    # --- leaving the batch -----------------------------------------------------------------------

    def _retire(self, finished: list[Event]) -> None:
        gone = {e.request_id for e in finished}
        if gone:
            self._remove(gone)

    def _drop_cancelled(self, events: list[Event]) -> None:
        if not self._cancelled:
            return
        gone, self._cancelled = self._cancelled, set()
        for seq in [s for s in self.waiting if s.rid in gone]:
            self.waiting.remove(seq)
            events.append(Event(seq.rid, "", 0, FINISH_CANCELLED, prompt_tokens=len(seq.prompt),
                                completion_tokens=len(seq.generated)))
        running = [s for s in self.rows if s.rid in gone]
        for seq in running:
            events.append(Event(seq.rid, "", 0, FINISH_CANCELLED, prompt_tokens=len(seq.prompt),
                                completion_tokens=len(seq.generated)))
        if running:
            self._remove({s.rid for s in running})

    def _remove(self, gone: set[str]) -> None:
        keep = [i for i, s in enumerate(self.rows) if s.rid not in gone]
        if not keep:
            self.cache, self.rows, self.pads = None, [], []
            return
        if len(keep) < len(self.rows):
            self.cache.batch_select_indices(torch.tensor(keep))
            self.rows = [self.rows[i] for i in keep]
            self.pads = [self.pads[i] for i in keep]
        trim = min(self.pads)
        if trim:
            for layer in self.cache.layers:
                layer.keys = layer.keys[:, :, trim:, :]
                layer.values = layer.values[:, :, trim:, :]
            self.pads = [p - trim for p in self.pads]

    def fail_all(self, message: str) -> list[Event]:
        """Every sequence ends with `message` (the step raised: the model is in an unknown state)."""
        events = [Event(s.rid, "", 0, FINISH_ERROR, prompt_tokens=len(s.prompt), completion_tokens=len(s.generated),
                        error=message) for s in [*self.waiting, *self.rows]]
        self.waiting.clear()
        self.cache, self.rows, self.pads = None, [], []
        return events


# --- the shared cache ------------------------------------------------------------------------------

def _layer_len(cache, i: int) -> int:
    return cache.layers[i].keys.shape[-2]


def _length(cache) -> int:
    return _layer_len(cache, 0)


def _merge_into(a, pads_a: list[int], b, pads_b: list[int]) -> tuple[Any, list[int]]:
    """`a` with `b`'s rows below, both left-padded to the longer one's length; the new pads."""
    la, lb = _length(a), _length(b)
    n = max(la, lb)
    for layer_a, layer_b in zip(a.layers, b.layers):
        layer_a.keys = torch.cat([_left_pad(layer_a.keys, n - la), _left_pad(layer_b.keys, n - lb)], dim=0)
        layer_a.values = torch.cat([_left_pad(layer_a.values, n - la), _left_pad(layer_b.values, n - lb)], dim=0)
    return a, [p + n - la for p in pads_a] + [p + n - lb for p in pads_b]


def _left_pad(t: torch.Tensor, n: int) -> torch.Tensor:
    if n == 0:
        return t
    return torch.cat([t.new_zeros(t.shape[0], t.shape[1], n, t.shape[3]), t], dim=2)


def _find_stop(text: str, stops: tuple[str, ...], start: int) -> int | None:
    """Where the first stop string begins in `text` (searching from `start`), or None."""
    best = None
    for stop in stops:
        at = text.find(stop, start)
        if at != -1 and (best is None or at < best):
            best = at
    return best


def _held_back(text: str, stops: tuple[str, ...]) -> int:
    """Characters at the end of `text` not to send yet: a partial stop string, or an incomplete character."""
    hold = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:k]):
                hold = max(hold, k)
                break
    if text.endswith("\ufffd"):   # a multi-byte character whose bytes are still coming
        hold = max(hold, 1)
    return hold
