"""How one family of model turns inputs into a batch and a batch into rows, for the batcher.

A runner has two halves that run on two different threads of its model:
    prepare(seqs, truncate, direction)  the tokeniser thread: token ids and lengths per input, 413 when
                                        an input is too long and truncation was not asked for
    run(prepared)                       the model thread: pad, forward, one output row per input

Runners: `TransformerRunner` (BERT family, the embedding model), `TfidfRunner`, and `EnsembleRunner`
(a transformer and tfidf served as one version: the transformer's runner, then the mix of the two).

Every call to a model's tokenizer happens on its one tokeniser thread: a fast tokenizer changes its
truncation state per call and must not be used from two threads at once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelshop.errors import PayloadTooLarge, ValidationError

Seq = tuple[str, str | None]          # a text, or a pair of texts (TEI's "pair of strings")
# Until a model is calibrated: a forward call costs about as much as this many padded tokens,
# whatever its size. It decides whether splitting a batch by length (less padding, more calls) pays.
CALL_OVERHEAD_TOKENS = 64


@dataclass
class Encoded:
    ids: list[int] | None         # token ids with special tokens (transformers); None for tfidf
    type_ids: list[int] | None
    text: str | None              # the text itself (tfidf)
    tokens: int                   # tokens after any truncation: what is computed and metered
    truncated: bool = False


log = logging.getLogger("modelshop.serve")


def ready(runner: Any, label: str, *, calibrate: bool = True) -> None:
    """Make a runner ready to serve: a first batch (first calls allocate) and, for a model run padded,
    its measured cost per forward call (packed models are never split, so they need none)."""
    runner.run(runner.prepare([("warm up the first batch", None)], True))
    if calibrate and hasattr(runner, "calibrate") and not getattr(runner.model, "packable", False):
        log.info("%s: a forward call costs about %d padded tokens", label, runner.calibrate())


def too_long(index: int, n_tokens: int, limit: int, what: str) -> PayloadTooLarge:
    return PayloadTooLarge(f"input {index} has {n_tokens} tokens but {what} takes at most {limit}; "
                           'shorten it or send "truncate": true')


class TransformerRunner:
    """BERT-family models (PyTorch fp32 or int8, ONNX Runtime) and the embedding model."""

    def __init__(self, model: Any, *, label: str, as_torch: bool) -> None:
        self.model = model
        self.label = label
        self.tokenizer = model.tokenizer
        # the model's own limit, not the (shorter) length it was trained at: that was a speed choice
        self.max_length = int(getattr(model, "input_limit", model.max_length))
        self.as_torch = as_torch
        names = getattr(model, "input_names", None) or self.tokenizer.model_input_names
        self.input_names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in names]
        self.pad_id = self.tokenizer.pad_token_id or 0
        self.call_overhead_tokens = CALL_OVERHEAD_TOKENS

    def calibrate(self, repeats: int = 3) -> int:
        """Measure this model's fixed cost per forward call, in padded tokens (at load, off the loop)."""
        def seconds(rows: int, width: int) -> float:
            fake = [Encoded([self.pad_id] * width, None, None, width)] * rows
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                self.model.forward(self.pad(fake))
                times.append(time.perf_counter() - started)
            return sorted(times)[len(times) // 2]

        width = min(64, self.max_length)
        small, large = seconds(1, 8), seconds(16, width)
        per_token = max((large - small) / (16 * width - 8), 1e-9)
        overhead = max(small - 8 * per_token, 0.0)
        self.call_overhead_tokens = int(min(max(overhead / per_token, 8), 4096))
        return self.call_overhead_tokens

    def prepare(self, seqs: list[Seq], truncate: bool, direction: str = "right") -> list[Encoded]:
        want_types = "token_type_ids" in self.input_names
        out: list[Encoded | None] = [None] * len(seqs)
        singles = [i for i, (_, b) in enumerate(seqs) if b is None]
        pairs = [i for i, (_, b) in enumerate(seqs) if b is not None]
        for group in (singles, pairs):
            if not group:
                continue
            firsts = [seqs[i][0] for i in group]
            seconds = [seqs[i][1] for i in group] if group is pairs else None
            enc = self.tokenizer(firsts, text_pair=seconds, add_special_tokens=True, truncation=False,
                                 return_attention_mask=False, return_token_type_ids=want_types)
            long_rows = []
            for row, i in enumerate(group):
                ids = enc["input_ids"][row]
                types = enc["token_type_ids"][row] if want_types else None
                if len(ids) > self.max_length:
                    if not truncate:
                        raise too_long(i, len(ids), self.max_length, self.label)
                    long_rows.append(row)
                out[i] = Encoded(ids, types, None, len(ids))
            if long_rows:
                self._truncate(seqs, [group[r] for r in long_rows], out, direction, want_types, group is pairs)
        return out  # type: ignore[return-value]

    def _truncate(self, seqs, indices, out, direction, want_types, pairs) -> None:
        tok = self.tokenizer
        side = tok.truncation_side
        tok.truncation_side = direction  # safe: this tokenizer is only ever used on this thread
        try:
            enc = tok([seqs[i][0] for i in indices], text_pair=[seqs[i][1] for i in indices] if pairs else None,
                      add_special_tokens=True, truncation="longest_first" if pairs else True,
                      max_length=self.max_length, return_attention_mask=False, return_token_type_ids=want_types)
        finally:
            tok.truncation_side = side
        for row, i in enumerate(indices):
            ids = enc["input_ids"][row]
            out[i] = Encoded(ids, enc["token_type_ids"][row] if want_types else None, None, len(ids), True)

    def run(self, batch: list[Encoded]) -> list[np.ndarray]:
        if getattr(self.model, "packable", False):  # no padding to split around
            return list(self.model.forward_packed([(e.ids, e.type_ids) for e in batch]))
        rows: list[np.ndarray | None] = [None] * len(batch)
        for part in split_by_padding([e.tokens for e in batch], self.call_overhead_tokens):
            outputs = self.model.forward(self.pad([batch[i] for i in part]))
            for i, row in zip(part, outputs, strict=True):
                rows[i] = row
        return rows  # type: ignore[return-value]

    def pad(self, encoded: list[Encoded]) -> dict:
        width = max(e.tokens for e in encoded)
        ids = np.full((len(encoded), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encoded), width), dtype=np.int64)
        types = np.zeros((len(encoded), width), dtype=np.int64)
        for r, e in enumerate(encoded):
            ids[r, :e.tokens] = e.ids
            mask[r, :e.tokens] = 1
            if e.type_ids is not None:
                types[r, :e.tokens] = e.type_ids
        arrays = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        batch = {n: arrays[n] for n in self.input_names}
        if self.as_torch:
            import torch

            batch = {k: torch.from_numpy(v) for k, v in batch.items()}
        return batch


def split_by_padding(lengths: list[int], call_overhead: int = CALL_OVERHEAD_TOKENS) -> list[list[int]]:
    """Indices grouped into length-sorted sub-batches when the padding saved outweighs the extra calls
    (each call costs `call_overhead` tokens' worth on top of its padded size)."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    n = len(order)
    if n <= 1:
        return [order]
    sorted_len = [lengths[i] for i in order]
    # cost[j]: cheapest way to run the j shortest inputs; a sub-batch (i, j] costs its padded size + a call.
    cost = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j):
            c = cost[i] + (j - i) * sorted_len[j - 1] + call_overhead
            if c < cost[j]:
                cost[j], cut[j] = c, i
    parts, j = [], n
    while j > 0:
        parts.append(order[cut[j]:j])
        j = cut[j]
    return parts[::-1]


class TfidfRunner:
    """The tfidf + linear model: no padding, the whole batch in one `decision_function` call."""

    def __init__(self, predictor: Any, *, label: str) -> None:
        self.predictor = predictor
        self.label = label
        self.max_length = predictor.max_length

    def prepare(self, seqs: list[Seq], truncate: bool, direction: str = "right") -> list[Encoded]:
        for i, (_, second) in enumerate(seqs):
            if second is not None:
                raise ValidationError(f"input {i} is a pair of texts, but {self.label} is a tfidf model that "
                                      "classifies single texts; send strings, not pairs")
        texts = [a for a, _ in seqs]
        counts = self.predictor.count_tokens(texts)
        return [Encoded(None, None, t, n) for t, n in zip(texts, counts, strict=True)]

    def run(self, batch: list[Encoded]) -> list[np.ndarray]:
        return list(self.predictor.logits([e.text for e in batch]))


class EnsembleRunner:
    """A transformer and the tfidf model as one version (`modelshop.inference.ensemble`): the transformer part
    is prepared and run as a transformer alone (packed or padded, metered in its tokens); its logits, the
    tfidf part's and each text's language then make the ensemble's row."""

    def __init__(self, predictor: Any, *, label: str) -> None:
        self.predictor = predictor
        self.label = label
        self.part = TransformerRunner(predictor.transformer, label=label, as_torch=True)
        self.model = predictor.transformer     # what `ready` and the explainer read of a runner's model
        self.tokenizer = self.part.tokenizer
        self.max_length = self.part.max_length

    def calibrate(self, repeats: int = 3) -> int:
        return self.part.calibrate(repeats)

    def prepare(self, seqs: list[Seq], truncate: bool, direction: str = "right") -> list[Encoded]:
        for i, (_, second) in enumerate(seqs):
            if second is not None:
                raise ValidationError(f"input {i} is a pair of texts, but {self.label} is an ensemble with a tfidf "
                                      "part that classifies single texts; send strings, not pairs")
        encoded = self.part.prepare(seqs, truncate, direction)
        for e, (text, _) in zip(encoded, seqs, strict=True):
            e.text = text  # the tfidf part and the language detector read the text itself
        return encoded

    def run(self, batch: list[Encoded]) -> list[np.ndarray]:
        logits = np.stack(self.part.run(batch))
        return list(self.predictor.combine(logits, [e.text for e in batch]))

    def pad(self, encoded: list[Encoded]) -> dict:
        # the explainer pads one input for the transformer's own forward, which is not what an ensemble answers
        raise ValidationError(f"{self.label} is an ensemble of a transformer and tfidf; /explain does not explain "
                              "a combination: explain a transformer or tfidf version instead")
