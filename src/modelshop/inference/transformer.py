"""The fine-tuned transformer family (PyTorch, safetensors); int8 is dynamic quantisation at load.

Besides the padded `forward`, BERT-style models run *packed* (`forward_packed`), as
text-embeddings-inference does: the linear layers see the batch's tokens end to end with no padding
at all, and attention sees them packed several inputs to a row, each with its own position ids and a
block-diagonal mask, so a batch of short texts of mixed lengths computes almost no padding.

Two lengths: `max_length` is the one the model was trained and evaluated at (offline scoring
truncates there, so `modelshop eval` repeats the figures `train` reported); `input_limit` is the
longest input the model itself takes (its position embeddings), which is what the server accepts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from modelshop.inference.base import Predictor, input_limit

# Packed rows are at least this many tokens wide (or as wide as the longest input): short rows waste
# little attention on masked-out pairs, and there are few of them.
PACK_WIDTH = 64


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class TransformerPredictor(Predictor):
    family = "transformer"

    def __init__(self, path: Path, meta: dict, *, device: str = "cpu", threads: int | None = None) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.meta = meta
        self.format = meta.get("format", "pytorch")
        self.labels = list(meta["labels"])
        self.multi_label = bool(meta.get("multi_label", False))
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.device = pick_device(device)
        model = AutoModelForSequenceClassification.from_pretrained(path)
        model.eval()
        self.input_limit = input_limit(model.config, self.tokenizer)
        self.trained_length = int(meta.get("max_length") or self.input_limit)
        self.max_length = min(self.trained_length, self.input_limit)
        if self.format == "int8":
            model = quantize_int8(model)
        self.model = model.to(self.device)
        self.packable = packable(model)

    def count_tokens(self, texts: list[str]) -> list[int]:
        enc = self.tokenizer(list(texts), add_special_tokens=True, truncation=False,
                             return_attention_mask=False, return_token_type_ids=False)
        return [len(ids) for ids in enc["input_ids"]]

    def encode(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                              return_tensors="pt")

    @torch.inference_mode()
    def forward(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        batch = {k: v.to(self.device) for k, v in batch.items()}
        return self.model(**batch).logits.float().cpu().numpy()

    def logits(self, texts: list[str], *, batch_size: int = 64) -> np.ndarray:
        """Batches of similar length (sorted), packed where the model allows, else padded (little waste
        either way); results in input order."""
        texts = list(texts)
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        if not texts:
            return out
        order = np.argsort([len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            chunk = [texts[i] for i in idx]
            if self.packable:
                enc = self.tokenizer(chunk, truncation=True, max_length=self.max_length,
                                     return_attention_mask=False, return_token_type_ids=False)
                out[idx] = self.forward_packed([(ids, None) for ids in enc["input_ids"]])
            else:
                out[idx] = self.forward(self.encode(chunk))
        return out

    @torch.inference_mode()
    def forward_packed(self, seqs: Sequence[tuple[Sequence[int], Sequence[int] | None]]) -> np.ndarray:
        """Logits for token-id sequences (with special tokens; optional token type ids), packed.

        Every layer's linear parts (embeddings, Q/K/V, output and feed-forward projections) run on the
        batch's tokens laid end to end, with no padding at all; only attention needs rows, so the
        tokens are scattered into packed rows for it (`attention_groups`), each token attending to
        its own input only, and gathered back."""
        lengths = [len(ids) for ids, _ in seqs]
        tokens = sum(lengths)
        ids = np.empty(tokens, dtype=np.int64)
        types = np.zeros(tokens, dtype=np.int64)
        positions = np.empty(tokens, dtype=np.int64)
        starts = np.empty(len(seqs), dtype=np.int64)    # each input's [CLS], in token order
        at = 0
        for i, (seq_ids, seq_types) in enumerate(seqs):
            end = at + lengths[i]
            ids[at:end] = seq_ids
            if seq_types is not None:
                types[at:end] = seq_types
            positions[at:end] = np.arange(lengths[i])
            starts[i] = at
            at = end
        device = self.device
        groups = [AttentionGroup(None if len(g.tokens) == tokens else g.tokens.to(device), g.slots.to(device),
                                 g.mask.to(device), g.rows, g.width)
                  for g in attention_groups(lengths)]
        hidden = self._encode_flat(torch.from_numpy(ids).to(device), torch.from_numpy(types).to(device),
                                   torch.from_numpy(positions).to(device), groups)
        base = self.model.base_model
        first = hidden[torch.from_numpy(starts).to(device)]
        return self.model.classifier(base.pooler.activation(base.pooler.dense(first))).float().cpu().numpy()

    def _encode_flat(self, ids, types, positions, groups: list[AttentionGroup]) -> torch.Tensor:
        """BERT's encoder on (tokens, hidden) states; attention per group on (rows, heads, width, head size)."""
        base = self.model.base_model
        emb = base.embeddings
        x = emb.LayerNorm(emb.word_embeddings(ids) + emb.token_type_embeddings(types)
                          + emb.position_embeddings(positions))
        for layer in base.encoder.layer:
            attention = layer.attention.self
            heads, size = attention.num_attention_heads, attention.attention_head_size
            qkv = torch.cat([attention.query(x), attention.key(x), attention.value(x)], dim=1)
            context = None
            for g in groups:
                part = qkv if g.tokens is None else qkv[g.tokens]
                packed = part.new_zeros(g.rows * g.width, part.shape[1])
                packed[g.slots] = part
                q, k, v = packed.view(g.rows, g.width, 3, heads, size).permute(2, 0, 3, 1, 4)
                out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=g.mask,
                                                                       scale=attention.scaling)
                out = out.transpose(1, 2).reshape(g.rows * g.width, heads * size)[g.slots]
                if g.tokens is None:
                    context = out
                else:
                    if context is None:
                        context = out.new_empty(x.shape[0], heads * size)
                    context[g.tokens] = out
            x = layer.attention.output.LayerNorm(layer.attention.output.dense(context) + x)
            x = layer.output.LayerNorm(layer.output.dense(layer.intermediate.intermediate_act_fn(
                layer.intermediate.dense(x))) + x)
        return x


@dataclass
class AttentionGroup:
    """Packed rows that share one attention call: which of the flat tokens (None: all of them, in order)
    go to which place of the (rows × width) buffer, and the block-diagonal mask."""

    tokens: torch.Tensor | None
    slots: torch.Tensor
    mask: torch.Tensor           # (rows, 1, width, width), True where a token may attend
    rows: int
    width: int


def attention_groups(lengths: Sequence[int]) -> list[AttentionGroup]:
    """Inputs of up to `PACK_WIDTH` tokens packed into rows that wide; longer ones (up to the model's limit)
    in a second group packed into rows as wide as the longest of them, so one long input does not
    make every row of the batch (and its attention, which grows with the width squared) that wide."""
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    short = [i for i, n in enumerate(lengths) if n <= PACK_WIDTH]
    long = [i for i, n in enumerate(lengths) if n > PACK_WIDTH]
    groups = []
    for members in (short, long):
        if not members:
            continue
        sizes = [lengths[i] for i in members]
        rows = [[members[j] for j in row] for row in pack_rows(sizes, max(PACK_WIDTH, max(sizes)))]
        width = max(sum(lengths[i] for i in row) for row in rows)
        segment = np.full((len(rows), width), -1, dtype=np.int64)
        token_parts, slot_parts = [], []
        for r, row in enumerate(rows):
            offset = 0
            for k, i in enumerate(row):
                segment[r, offset:offset + lengths[i]] = k
                token_parts.append(np.arange(offsets[i], offsets[i] + lengths[i]))
                slot_parts.append(np.arange(r * width + offset, r * width + offset + lengths[i]))
                offset += lengths[i]
        tokens, slots = np.concatenate(token_parts), np.concatenate(slot_parts)
        order = np.argsort(tokens, kind="stable")  # in token order: a group of every token needs no gather
        seg = torch.from_numpy(segment)
        # each token attends to its own input only; padding attends to itself (a row of nothing is NaN)
        mask = (seg[:, :, None] == seg[:, None, :]) & ((seg[:, :, None] >= 0) | torch.eye(width, dtype=torch.bool))
        groups.append(AttentionGroup(torch.from_numpy(tokens[order]), torch.from_numpy(slots[order]), mask[:, None],
                                     len(rows), width))
    return groups


def quantize_int8(model):
    """Dynamic int8 quantisation of every Linear layer (weights int8 now, activations per batch)."""
    import warnings

    with warnings.catch_warnings():  # torch ≥ 2.10 marks its quantized tensors deprecated; they still work
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor", category=UserWarning)
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def packable(model) -> bool:
    """BERT encoders (absolute positions, post-layer-norm, not a decoder) with a [CLS] pooler and a linear
    head: the layers `forward_packed` runs itself."""
    base = getattr(model, "base_model", None)
    config = model.config
    if not (getattr(config, "model_type", None) == "bert" and type(model).__name__ == "BertForSequenceClassification"
            and getattr(base, "pooler", None) is not None and hasattr(model, "classifier")
            and not getattr(config, "is_decoder", False)
            and getattr(config, "position_embedding_type", "absolute") == "absolute"):
        return False
    layer = base.encoder.layer[0]
    return all(hasattr(obj, name) for obj, name in (
        (layer.attention.self, "query"), (layer.attention.self, "key"), (layer.attention.self, "value"),
        (layer.attention.self, "scaling"), (layer.attention.output, "dense"), (layer.attention.output, "LayerNorm"),
        (layer.intermediate, "intermediate_act_fn"), (layer.output, "dense"), (layer.output, "LayerNorm")))


def pack_rows(lengths: Sequence[int], width: int) -> list[list[int]]:
    """Indices into rows of at most `width` tokens: first-fit, longest first (inputs longer than `width`
    get a row of their own)."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(width - lengths[i])
    return rows
