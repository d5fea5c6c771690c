"""Judging a generative version on question–answer data, beside its base model, so a card can say
whether fine-tuning paid (as the tfidf baseline keeps a classifier honest).

    perplexity    exp of the mean negative log-likelihood per token of the reference answers, read after
                  their prompts (teacher-forced, answer tokens only): how likely the model finds the
                  right answer. Lower is better; it needs no generation, so it covers every row.
    token_f1      SQuAD's measure: the overlap of the words of the greedy answer and of the reference
                  (lower-cased, punctuation dropped, each CJK character a word), averaged over rows
    exact_match   the share of greedy answers equal to the reference after that normalisation

Greedy answers are generated in batches of left-padded prompts sorted by length, with the tokenizer's
chat template as the server applies it. `evaluate_version` is `modelshop llm eval`: the version and the
base it was fine-tuned from (its parent in the registry, else the base model it names) in one run.
"""

from __future__ import annotations

import math
import re
import string
import time
import unicodedata
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch

from modelshop.errors import ValidationError
from modelshop.llm.sft_data import (
    IGNORE,
    Encoded,
    SFTData,
    encode,
    ensure_chat_template,
    fit_length,
    load_sft,
    prompt_ids,
)
from modelshop.registry import Registry
from modelshop.settings import Settings, get_settings

EVAL_MAX_LENGTH = 2048       # tokens per example scored; longer ones are left out (and counted)
MAX_NEW_TOKENS = 256         # the most tokens a greedy answer may take
ANSWER_BATCH = 16            # prompts per generate call: batching is the lever on CPU (DESIGN's figures)
PAID_MARGIN = 0.01           # token-F1 must rise by a point (or perplexity fall 5%) to call fine-tuning paid
_WORD = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]|[^\W_]+", re.UNICODE)
_PUNCT = str.maketrans("", "", string.punctuation)


# --- the measures --------------------------------------------------------------------------------

def words(text: str) -> list[str]:
    """The normalised words of an answer: NFKC, lower case, no punctuation, each CJK character a word."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).lower().translate(_PUNCT))


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = words(prediction), words(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if not common:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, reference: str) -> float:
    return float(words(prediction) == words(reference))


def _batches(enc: Encoded, batch_size: int, pad_id: int, device) -> list[tuple[torch.Tensor, ...]]:
    order = sorted(range(len(enc)), key=lambda i: len(enc.input_ids[i]))
    out = []
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        width = max(len(enc.input_ids[i]) for i in idx)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        labels = torch.full((len(idx), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for r, i in enumerate(idx):
            n = len(enc.input_ids[i])
            ids[r, :n] = torch.tensor(enc.input_ids[i])
            labels[r, :n] = torch.tensor(enc.labels[i])
            mask[r, :n] = 1
        out.append((ids.to(device), mask.to(device), labels.to(device)))
    return out


@torch.inference_mode()
def answer_nll(model, enc: Encoded, *, pad_id: int, batch_size: int = 8) -> tuple[float, int]:
    """(summed negative log-likelihood of the answer tokens, their number) under `model`."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for ids, mask, labels in _batches(enc, batch_size, pad_id, device):
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1].float()
        target = labels[:, 1:]
        total += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                                   ignore_index=IGNORE, reduction="sum").item()
        count += int((target != IGNORE).sum())
    model.train(was_training)
    return total, count


def perplexity(nll: float, tokens: int) -> float:
    return math.exp(nll / tokens) if tokens else float("nan")


@torch.inference_mode()
def greedy_answers(model, tokenizer, prompts: list[list[int]], *, eos_token_ids: list[int], max_new_tokens: int,
                   batch_size: int = ANSWER_BATCH) -> tuple[list[str], int, float]:
    """(the greedy answer to each prompt, tokens generated, seconds): left-padded batches of similar length."""
    from transformers import GenerationConfig

    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_token_ids[0]
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=list(eos_token_ids),
                              pad_token_id=pad)
    was_training = model.training
    model.eval()
    answers: list[str] = [""] * len(prompts)
    generated, started = 0, time.perf_counter()
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        width = max(len(prompts[i]) for i in idx)
        ids = torch.tensor([[pad] * (width - len(prompts[i])) + prompts[i] for i in idx], device=device)
        mask = torch.tensor([[0] * (width - len(prompts[i])) + [1] * len(prompts[i]) for i in idx], device=device)
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)[:, width:].tolist()
        for i, row in zip(idx, out):
            row = _until_eos(row, eos_token_ids, pad)
            generated += len(row)
            answers[i] = tokenizer.decode(row, skip_special_tokens=True).strip()
    model.train(was_training)
    return answers, generated, time.perf_counter() - started


def _until_eos(row: list[int], eos: list[int], pad: int) -> list[int]:
    for j, t in enumerate(row):
        if t in eos:
            return row[:j]
    while row and row[-1] == pad:  # a finished row of the batch is filled with pad
        row = row[:-1]
    return row


@torch.inference_mode()
def decode_speed(model, prompts: list[list[int]], tokens: int) -> dict:
    """Greedy decoding of exactly `tokens` new tokens after each prompt, one prompt at a time (a chat
    turn as one user waits for it): tokens per second, and the tokens, to compare two models' outputs."""
    from transformers import GenerationConfig

    device = next(model.parameters()).device
    config = GenerationConfig(max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, eos_token_id=None,
                              pad_token_id=0)
    model.eval()
    out, seconds = [], 0.0
    for i, prompt in enumerate([prompts[0], *prompts]):   # the first call warms up and is not timed
        ids = torch.tensor([prompt], device=device)
        started = time.perf_counter()
        row = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config)
        if i:
            seconds += time.perf_counter() - started
            out.append(row[0, len(prompt):].tolist())
    generated = sum(len(r) for r in out)
    return {"tokens_per_s": round(generated / seconds, 2) if seconds else None, "seconds": round(seconds, 3),
            "tokens": out}


def default_max_new_tokens(enc: Encoded) -> int:
    """Room for the longest reference answer and a quarter more, within MAX_NEW_TOKENS."""
    return min(MAX_NEW_TOKENS, max(16, math.ceil(1.25 * max(enc.answer_tokens, default=16))))


def score(model, tokenizer, data: SFTData, *, eos_token_ids: list[int], context_length: int,
          answer_limit: int | None = None, max_new_tokens: int | None = None, batch_size: int = 8) -> dict:
    """The three measures of `model` on `data`: perplexity on every row that fits, greedy answers on the
    first `answer_limit` rows (all when None); `answers` holds each answered row's text for the card."""
    ensure_chat_template(tokenizer)
    enc, left_out = fit_length(encode(tokenizer, data), min(context_length, EVAL_MAX_LENGTH), data.source,
                               context_length)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_token_ids[0]
    nll, tokens = answer_nll(model, enc, pad_id=pad, batch_size=batch_size)
    position = {r: i for i, r in enumerate(data.rows)}
    kept = [position[r] for r in enc.rows]
    asked = kept[:answer_limit] if answer_limit is not None else kept
    new_tokens = max_new_tokens or default_max_new_tokens(enc)
    answers, generated, seconds = greedy_answers(
        model, tokenizer, [prompt_ids(tokenizer, data.conversations[i][:-1]) for i in asked],
        eos_token_ids=eos_token_ids, max_new_tokens=new_tokens)
    refs = [data.conversations[i][-1]["content"] for i in asked]
    questions = data.questions()
    f1 = [token_f1(a, r) for a, r in zip(answers, refs)]
    em = [exact_match(a, r) for a, r in zip(answers, refs)]
    return {"rows": len(enc), "left_out_too_long": left_out, "answer_tokens": tokens,
            "perplexity": round(perplexity(nll, tokens), 4),
            "nll_per_token": round(nll / tokens, 5) if tokens else None,
            "answered": len(asked), "max_new_tokens": new_tokens,
            "token_f1": round(sum(f1) / len(f1), 4) if f1 else None,
            "exact_match": round(sum(em) / len(em), 4) if em else None,
            "generated_tokens": generated, "generation_seconds": round(seconds, 2),
            "answers": [{"row": data.rows[i], "question": questions[i], "reference": r, "answer": a,
                         "token_f1": round(f, 4)} for i, r, a, f in zip(asked, refs, answers, f1)]}


def verdict(tuned: dict, base: dict | None) -> tuple[bool | None, str]:
    """(did fine-tuning pay, why in one sentence): token-F1 up by PAID_MARGIN, or perplexity down 5% at equal F1."""
    if base is None:
        return None, "No base model to compare with."
    f1, bf1 = tuned.get("token_f1") or 0.0, base.get("token_f1") or 0.0
    ppl, bppl = tuned["perplexity"], base["perplexity"]
    figures = f"token-F1 {f1:.3f} vs {bf1:.3f}, perplexity {ppl:.2f} vs {bppl:.2f} for the base"
    if f1 - bf1 >= PAID_MARGIN:
        return True, f"Fine-tuning paid: {figures}."
    if f1 - bf1 > -PAID_MARGIN and ppl < 0.95 * bppl:
        return True, f"Fine-tuning paid in perplexity, not in the greedy answers' words: {figures}."
    return False, f"Fine-tuning did not pay: {figures}; the base model answers as well."


# --- `modelshop llm eval` ------------------------------------------------------------------------

def evaluate_version(ref: str, data: str | Path, *, question_col: str | None = None, answer_col: str | None = None,
                     limit: int | None = None, answer_limit: int | None = None, with_base: bool = True,
                     redact_pii: bool = True, settings: Settings | None = None, registry: Registry | None = None,
                     say: Callable[[str], None] | None = None) -> dict:
    """The measures of version `ref` (NAME or NAME:VERSION) on `data`, and of its base model in the same run.
    Personal data in the references is redacted first, as `llm train` did to the data it learned from."""
    from modelshop.llm.registry import is_generative, load_causal_lm
    from modelshop.llm.sft_data import redact

    settings = settings or get_settings()
    registry = registry or Registry.from_settings(settings)
    say = say or (lambda _m: None)
    row = registry.get(ref)
    if not is_generative(row):
        raise ValidationError(f"{row.name}:{row.version} is a classifier; evaluate it with `modelshop eval`")
    examples = load_sft(data, question_col=question_col, answer_col=answer_col, limit=limit)
    data_sha256 = examples.fingerprint()
    if redact_pii:
        examples = redact(examples)[0]
    model, tokenizer, meta = load_causal_lm(registry.path(row))
    say(f"scoring {row.name}:{row.version} on {len(examples)} rows ...")
    figures = score(model, tokenizer, examples, eos_token_ids=meta["eos_token_ids"],
                    context_length=meta["context_length"], answer_limit=answer_limit)
    del model
    base, base_ref = None, None
    if with_base and meta.get("finetune"):
        base_model, base_tokenizer, base_meta, base_ref = load_base_of(row, meta, registry)
        say(f"scoring its base {base_ref} ...")
        base = score(base_model, base_tokenizer, examples, eos_token_ids=base_meta["eos_token_ids"],
                     context_length=base_meta["context_length"], answer_limit=answer_limit)
        base = {"model": base_ref, **base}
    paid, reason = verdict(figures, base)
    return {"name": row.name, "version": row.version, "data": str(data), "data_sha256": data_sha256,
            **figures, "base": base, "paid": paid, "reason": reason}


def load_base_of(row, meta: dict, registry: Registry):
    """(model, tokenizer, meta, reference) of the base a fine-tuned version was made from: its parent version
    in the registry when it has one, else the base model it names (converted again, in memory)."""
    from modelshop.llm.convert import describe, load_source, resolve
    from modelshop.llm.registry import load_causal_lm

    if row.parent_id is not None:
        parent = registry.get_by_id(row.parent_id)
        model, tokenizer, base_meta = load_causal_lm(registry.path(parent))
        return model, tokenizer, base_meta, f"{parent.name}:{parent.version}"
    given = meta["finetune"]["base_model"]
    model, tokenizer = load_source(resolve(given))
    return model, tokenizer, describe(model, tokenizer), given
