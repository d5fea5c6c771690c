"""Data for supervised fine-tuning: conversations read from a file, checked, redacted, profiled and
tokenised with the model's own chat template so that the loss falls on the answers only.

A file is one of three shapes, told apart by its columns:

    messages              JSONL, each row {"messages": [{"role", "content"}, ...]} ending in the
                          assistant's answer (the shape of OpenAI's and trl's chat data)
    prompt / completion   JSONL or CSV, one question and its answer per row
    question / answer     any table (CSV, JSONL, Parquet) with --question-col / --answer-col, or
                          columns named like QUESTION_NAMES / ANSWER_NAMES (an FAQ file is a dataset)

Every shape becomes the same thing, a list of conversations. Bad data is refused with one line that
names the rows: no answer column, an empty answer or question, a conversation that does not end in
the assistant's answer, an answer longer than max_length. An example longer than max_length as a
whole (a long question before an answer that fits) is left out and counted, not cut: a cut prompt
teaches an answer to a question nobody asked.

Tokenising renders the chat template turn by turn and checks that each rendering starts with the
previous one; the text an assistant turn adds (its content and end-of-turn marker) is what the loss
sees. The prompt part is tokenised exactly as the server tokenises a chat request, so the model learns
to answer the prompts it will be served.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from modelshop.data import Dataset
from modelshop.data import duplicates as dup
from modelshop.data.pii import redact_with_counts
from modelshop.data.readers import read_table
from modelshop.data.tokens import percentile
from modelshop.errors import ValidationError, did_you_mean

QUESTION_NAMES = ("question", "q", "prompt", "instruction", "input", "query", "问题")
ANSWER_NAMES = ("answer", "a", "completion", "response", "output", "reply", "回答", "答案")
ROLES = ("system", "user", "assistant")
IGNORE = -100  # the label torch's cross-entropy skips: prompt tokens and padding
# For a tokenizer without a chat template (a base GPT-2): plain-text turns, the answer ending in eos so
# the model learns to stop. The fine-tuned version keeps this template, so it serves chat requests.
FALLBACK_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}### Question:\n{{ m['content'] }}\n\n"
    "{% else %}### Answer:\n{{ m['content'] }}{{ eos_token }}\n\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}### Answer:\n{% endif %}")
SHOWN_ROWS = 5


@dataclass
class SFTData:
    """Conversations, each ending in the assistant's answer, with the file rows they came from."""

    conversations: list[list[dict]]
    rows: list[int]                 # 1-based row of the file, for messages
    source: str = ""
    shape: str = "question_answer"  # messages | prompt_completion | question_answer
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.conversations)

    def fingerprint(self) -> str:
        """SHA-256 of the conversations in order: the lineage key of a fine-tuned version."""
        digest = hashlib.sha256()
        for conv in self.conversations:
            digest.update(json.dumps(conv, ensure_ascii=False, sort_keys=True).encode("utf-8") + b"\n")
        return digest.hexdigest()

    def subset(self, indices) -> SFTData:
        idx = list(indices)
        return SFTData([self.conversations[i] for i in idx], [self.rows[i] for i in idx], self.source, self.shape)

    def split(self, fraction: float, seed: int) -> tuple[SFTData, SFTData]:
        """(rest, held out): a seeded random `fraction` of the conversations held out (`split_indices`)."""
        rest, held = split_indices(len(self), fraction, seed)
        return self.subset(rest), self.subset(held)

    def prompts(self) -> list[list[dict]]:
        """Each conversation without its last answer: what the model is asked."""
        return [conv[:-1] for conv in self.conversations]

    def questions(self) -> list[str]:
        """The last user message of each conversation (for duplicates, leakage and the card)."""
        return [next((m["content"] for m in reversed(conv) if m["role"] == "user"), "") for conv in self.conversations]

    def answers(self) -> list[str]:
        return [conv[-1]["content"] for conv in self.conversations]


def split_indices(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(rest, held out) positions of `n` items: a seeded random `fraction` held out, at least one, in order."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    k = max(1, round(n * fraction))
    return sorted(order[k:]), sorted(order[:k])


# --- reading -------------------------------------------------------------------------------------

def load_sft(path: str | Path, *, question_col: str | None = None, answer_col: str | None = None,
             system_prompt: str | None = None, limit: int | None = None) -> SFTData:
    """Read `path` into conversations (see the module docstring for the shapes), or a one-line error."""
    path = Path(path)
    if not path.exists():
        raise ValidationError(f"{path} not found; check the path (relative paths start at {Path.cwd()})")
    if path.is_dir():
        raise ValidationError(f"{path} is a folder; fine-tuning data is one JSONL, CSV or Parquet file")
    table = read_table(path, limit)
    name, columns = path.name, table.columns
    if question_col is None and answer_col is None and "messages" in columns:
        convs = [_messages(v, row, name) for row, v in enumerate(table.load("messages"), start=1)]
        shape = "messages"
    else:
        q = _column(question_col, QUESTION_NAMES, "question", "--question-col", columns, name)
        a = _column(answer_col, ANSWER_NAMES, "answer", "--answer-col", columns, name)
        if q == a:
            raise ValidationError(f"{name}: question and answer are both column {q!r}; pass different columns")
        questions = [_text(v, row, q, name) for row, v in enumerate(table.load(q), start=1)]
        answers = [_text(v, row, a, name) for row, v in enumerate(table.load(a), start=1)]
        _refuse_empty(name, "question", q, questions)
        _refuse_empty(name, "answer", a, answers)
        convs = [[{"role": "user", "content": qq}, {"role": "assistant", "content": aa}]
                 for qq, aa in zip(questions, answers)]
        shape = "prompt_completion" if (q, a) == ("prompt", "completion") else "question_answer"
    if system_prompt:
        convs = [c if c[0]["role"] == "system" else [{"role": "system", "content": system_prompt}, *c] for c in convs]
    return SFTData(convs, list(range(1, len(convs) + 1)), str(path), shape, list(table.notes))


def _column(given: str | None, names: tuple[str, ...], what: str, option: str, columns: list[str],
            file: str) -> str:
    found = ", ".join(columns)
    if given is not None:
        if given not in columns:
            raise ValidationError(f"{file} has no column {given!r} (columns: {found}){did_you_mean(given, columns)}")
        return given
    lowered = {c.lower(): c for c in columns}
    for n in names:
        if n in lowered:
            return lowered[n]
    raise ValidationError(f"{file} has no {what} column (columns: {found}); name it with {option} COLUMN, "
                          'or give each row "messages" (a chat) or "prompt" and "completion"')


def _text(value, row: int, col: str, file: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValidationError(f"{file} row {row}: {col!r} is a {type(value).__name__}, not text")
    return str(value).strip()


def _refuse_empty(file: str, what: str, col: str, values: list[str]) -> None:
    empty = [i for i, v in enumerate(values, start=1) if not v]
    if empty:
        one = len(empty) == 1
        raise ValidationError(f"{file}: {_rows(empty)} {'has' if one else 'have'} an empty {what} (column {col!r}); "
                              f"fill {'it' if one else 'them'} in or remove {'the row' if one else 'those rows'}")


def _rows(rows: list[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:SHOWN_ROWS]) + (f" and {len(rows) - SHOWN_ROWS} more"
                                                            if len(rows) > SHOWN_ROWS else "")
    return f"row {shown}" if len(rows) == 1 else f"{len(rows)} rows ({shown})"


def _messages(value, row: int, file: str) -> list[dict]:
    where = f"{file} row {row}"
    shape = 'a list of {"role": "system"|"user"|"assistant", "content": TEXT}'
    if not isinstance(value, list) or not value:
        raise ValidationError(f"{where}: messages must be {shape}, got {type(value).__name__ if value else 'nothing'}")
    out = []
    for i, m in enumerate(value, start=1):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise ValidationError(f"{where}: message {i} must be an object with text content, as {shape}")
        role = m.get("role")
        if role not in ROLES:
            raise ValidationError(f"{where}: message {i} has role {role!r}; use system, user or assistant"
                                  + did_you_mean(str(role), ROLES))
        out.append({"role": role, "content": m["content"].strip()})
    if out[-1]["role"] != "assistant":
        raise ValidationError(f"{where}: the last message is the {out[-1]['role']}'s; a training conversation ends "
                              "in the assistant's answer")
    if not any(m["role"] == "user" for m in out):
        raise ValidationError(f"{where}: no user message; the model needs a question to learn the answer to")
    empty = [i for i, m in enumerate(out, start=1) if m["role"] == "assistant" and not m["content"]]
    if empty:
        raise ValidationError(f"{where}: assistant message {empty[0]} is empty; fill it in or remove the row")
    return out


# --- redaction -----------------------------------------------------------------------------------

def redact(data: SFTData) -> tuple[SFTData, dict[str, int], int]:
    """(the data with personal data replaced by [EMAIL], [PHONE] ..., counts by kind, rows that had any)."""
    counts: Counter[str] = Counter()
    rows = 0
    convs = []
    for conv in data.conversations:
        found_here = False
        new = []
        for m in conv:
            text, found = redact_with_counts(m["content"])
            counts.update(found)
            found_here |= bool(found)
            new.append({**m, "content": text})
        rows += found_here
        convs.append(new)
    clean = SFTData(convs, list(data.rows), data.source, data.shape, list(data.notes))
    return clean, dict(sorted(counts.items())), rows


# --- tokenising ----------------------------------------------------------------------------------

@dataclass
class Encoded:
    """Token ids and labels (IGNORE outside the answers) of each conversation, and its file row."""

    input_ids: list[list[int]]
    labels: list[list[int]]
    rows: list[int]
    answer_tokens: list[int]    # tokens of the longest answer of each conversation
    prompt_tokens: list[int]    # tokens before the (last) answer

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> list[int]:
        return [len(x) for x in self.input_ids]

    def subset(self, idx: list[int]) -> Encoded:
        return Encoded([self.input_ids[i] for i in idx], [self.labels[i] for i in idx], [self.rows[i] for i in idx],
                       [self.answer_tokens[i] for i in idx], [self.prompt_tokens[i] for i in idx])


def ensure_chat_template(tokenizer) -> bool:
    """Give a tokenizer without a chat template the plain-text FALLBACK_TEMPLATE; True when it had to."""
    if getattr(tokenizer, "chat_template", None):
        return False
    tokenizer.chat_template = FALLBACK_TEMPLATE
    return True


def render(tokenizer, messages: list[dict], *, generation: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)


def prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    """The token ids the server would read for a chat request of `messages`."""
    return tokenizer(render(tokenizer, messages, generation=True), add_special_tokens=False)["input_ids"]


def encode_conversation(tokenizer, conv: list[dict]) -> tuple[list[int], list[int], int, int]:
    """(input ids, labels, longest answer in tokens, tokens before the last answer) of one conversation."""
    ids: list[int] = []
    labels: list[int] = []
    done, longest, before = "", 0, 0
    for i, m in enumerate(conv):
        if m["role"] != "assistant":
            continue
        prompt = render(tokenizer, conv[:i], generation=True)
        full = render(tokenizer, conv[:i + 1])
        if not prompt.startswith(done) or not full.startswith(prompt):
            raise ValidationError("this model's chat template does not render a conversation as the start of its "
                                  "continuation, so the answers cannot be told from the prompts; use a model whose "
                                  "template does (ChatML, Llama 3, ...)")
        head = tokenizer(prompt[len(done):], add_special_tokens=False)["input_ids"]
        answer = tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"]
        ids += head + answer
        labels += [IGNORE] * len(head) + answer
        before = len(ids) - len(answer)
        longest = max(longest, len(answer))
        done = full
    return ids, labels, longest, before


def encode(tokenizer, data: SFTData) -> Encoded:
    """Every conversation of `data` tokenised, without any length limit (see `fit_length`)."""
    out = Encoded([], [], [], [], [])
    for conv, row in zip(data.conversations, data.rows):
        ids, labels, longest, before = encode_conversation(tokenizer, conv)
        out.input_ids.append(ids)
        out.labels.append(labels)
        out.rows.append(row)
        out.answer_tokens.append(longest)
        out.prompt_tokens.append(before)
    return out


def auto_max_length(lengths: list[int], context_length: int, cap: int = 2048) -> int:
    """The longest example rounded up to a multiple of 16, within the model's context (and `cap`)."""
    return min(max(16, -(-max(lengths) // 16) * 16), context_length, cap)


def fit_length(enc: Encoded, max_length: int, source: str, context_length: int) -> tuple[Encoded, list[int]]:
    """(the examples that fit in `max_length` tokens, file rows of those left out for being too long as a whole);
    an answer that alone is past `max_length` is refused: it cannot be learned in any window."""
    name = Path(source).name or "the data"
    over = [i for i, n in enumerate(enc.answer_tokens) if n > max_length]
    if over:
        worst = max(enc.answer_tokens[i] for i in over)
        rows = [enc.rows[i] for i in over]
        raise ValidationError(
            f"{name}: the answer of {_rows(rows)} is past max_length {max_length} tokens (longest {worst}); raise "
            f"max_length (this model reads up to {context_length}) or shorten the answer")
    keep = [i for i, n in enumerate(enc.lengths) if n <= max_length]
    if not keep:
        raise ValidationError(f"{name}: no example fits in max_length {max_length} tokens (shortest "
                              f"{min(enc.lengths)}); raise max_length")
    left_out = [enc.rows[i] for i in range(len(enc)) if enc.lengths[i] > max_length]
    return enc.subset(keep), left_out


# --- profile -------------------------------------------------------------------------------------

def profile_sft(data: SFTData, enc: Encoded, *, eval_data: SFTData | None = None, pii: dict[str, int] | None = None,
                pii_rows: int = 0, redacted: bool = True, max_length: int | None = None,
                left_out: list[int] | None = None, tokenizer_name: str = "") -> dict:
    """What the training conversations hold: token lengths, duplicates, the same question with different
    answers, overlap with the evaluation questions, personal data found; `warnings` says what to do."""
    questions = data.questions()
    keys = [json.dumps(c, ensure_ascii=False, sort_keys=True) for c in data.conversations]
    whole = dup.exact_groups(keys)
    groups = dup.exact_groups(questions)
    index = dup.KeyIndex.build(groups)
    asked = Dataset(texts=questions, labels=data.answers(), multi_label=False, source=data.source)
    profile: dict = {
        "source": data.source, "shape": data.shape, "rows": len(data), "fingerprint": data.fingerprint(),
        "tokenizer": tokenizer_name, "turns_mean": round(sum(len(c) for c in data.conversations) / len(data), 2),
        "tokens": {"prompt": _stats(enc.prompt_tokens), "answer": _stats(enc.answer_tokens),
                   "total": _stats(enc.lengths)},
        "max_length": max_length, "left_out_too_long": left_out or [],
        "exact_duplicates": dup.exact_duplicates(whole, questions),
        "near_duplicate_questions": dup.near_duplicates(index, questions),
        "conflicting_answers": dup.conflicting_labels(groups, asked),
        "pii": pii or {}, "pii_rows": pii_rows, "pii_redacted": bool(pii) and redacted,
    }
    if eval_data is not None:
        profile["leakage"] = dup.leakage(asked, Dataset(eval_data.questions(), [], False), groups, index)
    profile["warnings"] = list(data.notes) + _warnings(profile)
    return profile


def _stats(values: list[int]) -> dict:
    ordered = sorted(values)
    return {"min": ordered[0], "mean": round(sum(ordered) / len(ordered), 1), "p50": percentile(ordered, 50),
            "p95": percentile(ordered, 95), "max": ordered[-1]}


def _warnings(p: dict) -> list[str]:
    out = []
    if p["exact_duplicates"]["count"]:
        out.append(f"{p['exact_duplicates']['count']} conversation(s) repeat an earlier one; they weigh double "
                   "in training, drop the repeats")
    if p["conflicting_answers"]["count"]:
        out.append(f"{p['conflicting_answers']['count']} question(s) appear with different answers "
                   f"({p['conflicting_answers']['rows']} rows); the model learns a blend, keep one answer each")
    if p["pii"]:
        found = ", ".join(f"{kind}: {n}" for kind, n in p["pii"].items())
        out.append(f"personal data in {p['pii_rows']} row(s) ({found}); "
                   + ("replaced by tokens like [EMAIL] before training" if p["pii_redacted"]
                      else "kept as is (redact_pii is off): the model may repeat it to anyone"))
    if p["left_out_too_long"]:
        rows = p["left_out_too_long"]
        out.append(f"{len(rows)} example(s) longer than max_length {p['max_length']} tokens left out ({_rows(rows)}); "
                   "raise max_length to keep them")
    leak = p.get("leakage")
    if leak and leak["rows"]:
        out.append(f"{leak['rows']} of {leak['eval_rows']} evaluation question(s) also occur in training "
                   f"(exact {leak['exact']}, normalized {leak['normalized']}, near {leak['near']}); the figures "
                   "after fine-tuning will be optimistic")
    return out
