"""The support bot's generated replies: retrieval-augmented, from the top FAQ answers, with citations.

    prompt     the customer's message and the retrieved answers, each under its id ("[faq:returns]"),
               with the instructions: answer from them only, cite the ids used, write in the customer's
               language. It is one user message, so its tokens are counted exactly before the model is
               asked (`Models.count_tokens(..., task="generate")`); answers are dropped from the end
               (the least relevant) until it fits the bot's prompt budget
    reply      the model's text. A citation it wrote stays only when it names an answer it was given (an
               invented id is taken out of the text); a reply that cites none ends with the ids of the
               answers it was given. Either way `citations` names only answers the model read
    language   of the message, by `modelshop.data.languages` (lingua); the answers are detected with it, so
               a short, ambiguous message leans to the knowledge base's language rather than a neighbour's
    none       (the bot answers with the FAQ answer verbatim) when even the best answer does not fit the
               budget or the model cannot answer now (busy, its upstreams down); a model that wrote
               nothing usable (`reply` None) also leaves the FAQ answer, and its usage is still metered

The bot asks for a reply only when its hand-off rules let it answer and the knowledge base is
confident (`support.handle_message`): a person, or the rules' replies, still win everywhere else.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from modelshop.errors import ModelError, RateLimited, ServiceUnavailable, UpstreamFailed, ValidationError
from modelshop.inference.models import Generated, Models

log = logging.getLogger("modelshop.apps")

TOP_K = 3                  # answers given to the model: the confident first and two more for context
MAX_TOKENS = 256           # a reply's length, at most; a quarter of a small model's context
PROMPT_TOKENS = 1536       # the prompt's budget, at most (instructions, answers, message)
INSTRUCTIONS = ("You are a customer-service assistant. Answer the customer's message using only the answers "
                "from our knowledge base below. Cite each answer you use by its id in square brackets, like "
                "[faq:{example}]. {language}")
CITATION = re.compile(r"(\s*)\[\s*faq:\s*([^\]\n]+?)\s*\]", re.IGNORECASE)
# failures of the model at answering now: the customer still gets the FAQ's answer; bad configuration
# (an unknown model, a prompt it refuses) is raised instead, for the operator to fix
UNAVAILABLE = (ModelError, RateLimited, ServiceUnavailable, UpstreamFailed)


@dataclass(frozen=True)
class Composed:
    reply: str | None          # None: the model wrote nothing but (invented) citations
    citations: list[str]       # ids of the answers the reply cites, each one the model was given
    given: list[str]           # ids of the answers in the prompt, best first
    generated: Generated       # the model's own text and usage


def budgets(context_length: int | None, max_tokens: int | None = None) -> tuple[int, int]:
    """(prompt tokens, reply tokens) for a model with `context_length` (None: an upstream that did not say)."""
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
                                   or max_tokens < 1):
        raise ValidationError(f"llm_max_tokens must be a whole number of at least 1, got {max_tokens!r}")
    if not context_length:
        return PROMPT_TOKENS, max_tokens or MAX_TOKENS
    reply = max_tokens or min(MAX_TOKENS, context_length // 4)
    if reply >= context_length // 2:
        raise ValidationError(f"llm_max_tokens {reply} leaves too little of the model's context of "
                              f"{context_length} tokens for the answers; use at most {context_length // 2 - 1}")
    return min(PROMPT_TOKENS, context_length - reply), reply


def reply_language(text: str, answers: list[dict]) -> str:
    """The message's ISO 639-1 code ("und" when nothing can tell)."""
    from modelshop.data.languages import detect_languages

    return detect_languages([text, *(a["answer"] for a in answers)])[0]


def build_prompt(text: str, answers: list[dict], language: str = "und") -> list[dict]:
    """The chat the model is given: one user message with the instructions, each answer under its id, and
    the customer's message."""
    from modelshop.data.languages import UNDETERMINED, language_name

    if not answers:
        raise ValueError("a generated reply needs at least one retrieved answer")
    said = ("Write your reply in the language of the customer's message." if language == UNDETERMINED
            else f"Write your reply in {language_name(language)}.")
    parts = [INSTRUCTIONS.format(example=answers[0]["id"], language=said), ""]
    for a in answers:
        parts += [f"[faq:{a['id']}] {a['question']}", a["answer"], ""]
    parts.append(f"Customer: {text}")
    return [{"role": "user", "content": "\n".join(parts)}]


def cite(text: str, given: list[str]) -> tuple[str, list[str]]:
    """(reply, citations): the model's citations of answers it was given kept (in the order first cited),
    others taken out; when none is left, the ids of every answer given are added at the end."""
    known = set(given)
    cited: list[str] = []

    def check(m: re.Match) -> str:
        lead, cid = m.group(1), m.group(2)
        if cid not in known:
            return ""
        if cid not in cited:
            cited.append(cid)
        return f"{lead}[faq:{cid}]"

    reply = CITATION.sub(check, text).strip()
    if reply and not cited:
        cited = list(given)
        reply = f"{reply} " + " ".join(f"[faq:{cid}]" for cid in cited)
    return reply, cited


def compose(models: Models, llm: str, text: str, answers: list[dict], *, prompt_tokens: int, max_tokens: int,
            temperature: float = 0.0) -> Composed | None:
    """A reply by `llm` from the retrieved `answers` (best first), or None: the bot then answers with the
    first answer verbatim (see the module docstring)."""
    language = reply_language(text, answers)
    for n in range(len(answers), 0, -1):
        messages = build_prompt(text, answers[:n], language)
        if models.count_tokens([messages[0]["content"]], llm, task="generate") <= prompt_tokens:
            break
    else:
        log.info("bot prompt over its budget of %d tokens even with one answer: the FAQ answer is sent", prompt_tokens)
        return None
    given = [a["id"] for a in answers[:n]]
    try:
        generated = models.generate(llm, messages, max_tokens=max_tokens, temperature=temperature)
    except UNAVAILABLE as e:
        log.warning("%s could not compose a reply (%s): the FAQ answer is sent", llm, e)
        return None
    reply, citations = cite(generated.text, given)
    return Composed(reply or None, citations if reply else [], given, generated)
