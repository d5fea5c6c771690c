"""Fine-tuning data (llm.sft_data): the three file shapes become the same conversations, the loss falls on the
answers only and the prompt is tokenised as the server tokenises a chat request, the profile, and one clear
line for each kind of bad data or bad option (through `modelshop llm train`, exit status 2)."""

from __future__ import annotations

import json

import pytest

from modelshop.cli import main
from modelshop.errors import ValidationError
from modelshop.llm.finetune import FinetuneConfig
from modelshop.llm.sft_data import (
    FALLBACK_TEMPLATE,
    IGNORE,
    encode,
    encode_conversation,
    ensure_chat_template,
    fit_length,
    load_sft,
    profile_sft,
    prompt_ids,
    redact,
)
from tests.llm.finetune_support import PAIRS, write_chats, write_pairs

CHAT = [{"role": "system", "content": "You answer for our shop."},
        {"role": "user", "content": "Hello!"}, {"role": "assistant", "content": "Hello! How can I help you today?"},
        {"role": "user", "content": "How long do refunds take?"},
        {"role": "assistant", "content": "Refunds take five business days."}]


@pytest.fixture(scope="module")
def tokenizer(tiny_llama):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llama)


def cli_error(capsys, *args: str) -> str:
    """The one line a user sees for bad input (exit status 2, no traceback)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert exit_.value.code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_every_file_shape_becomes_the_same_conversations(tmp_path):
    expected = [[{"role": "user", "content": q}, {"role": "assistant", "content": a}] for q, a in PAIRS]
    chats = write_chats(tmp_path / "chat.jsonl", expected)
    pairs = write_pairs(tmp_path / "pc.jsonl", keys=("prompt", "completion"))
    faq = write_pairs(tmp_path / "faq.csv", keys=("q", "a"))            # faq_en's column names, found alone
    named = write_pairs(tmp_path / "named.csv", keys=("Frage", "Antwort"))
    loaded = {"messages": load_sft(chats), "prompt_completion": load_sft(pairs), "question_answer": load_sft(faq)}
    for shape, data in loaded.items():
        assert data.shape == shape and data.conversations == expected and data.rows == list(range(1, 9))
    assert load_sft(named, question_col="Frage", answer_col="Antwort").conversations == expected
    assert len({d.fingerprint() for d in loaded.values()}) == 1
    with_system = load_sft(faq, system_prompt="Be brief.")
    assert with_system.conversations[0][0] == {"role": "system", "content": "Be brief."}
    assert load_sft(faq, limit=3).rows == [1, 2, 3]


def test_the_loss_falls_on_the_answers_only_and_the_prompt_is_what_the_server_reads(tokenizer):
    ids, labels, longest, before = encode_conversation(tokenizer, CHAT)
    assert len(ids) == len(labels)
    learned = [t for t, lab in zip(ids, labels) if lab != IGNORE]
    answers = "Hello! How can I help you today?<|im_end|>\nRefunds take five business days.<|im_end|>\n"
    assert tokenizer.decode(learned) == answers                      # both assistant turns, ending in end-of-turn
    assert [lab for lab in labels if lab != IGNORE] == learned
    assert tokenizer.decode(ids) == tokenizer.apply_chat_template(CHAT, tokenize=False)
    # the tokens before the last answer are the server's tokens for the chat request of the turns before it
    served = tokenizer.apply_chat_template(CHAT[:-1], add_generation_prompt=True, tokenize=True)
    served = served["input_ids"] if hasattr(served, "keys") else served
    assert ids[:before] == served == prompt_ids(tokenizer, CHAT[:-1])
    turns = ("Hello! How can I help you today?<|im_end|>\n", "Refunds take five business days.<|im_end|>\n")
    assert longest == max(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in turns)


def test_a_tokenizer_without_a_chat_template_gets_the_plain_one_ending_answers_in_eos(tiny_llama):
    from transformers import AutoTokenizer

    bare = AutoTokenizer.from_pretrained(tiny_llama)
    bare.chat_template = None
    assert ensure_chat_template(bare) is True and bare.chat_template == FALLBACK_TEMPLATE
    assert ensure_chat_template(bare) is False
    ids, labels, _, _ = encode_conversation(bare, CHAT[1:3])
    learned = bare.decode([t for t, lab in zip(ids, labels) if lab != IGNORE])
    assert learned == f"Hello! How can I help you today?{bare.eos_token}\n\n"
    assert bare.decode(ids).startswith("### Question:\nHello!\n\n### Answer:\n")


def test_personal_data_is_redacted_and_counted(tmp_path):
    data = load_sft(write_pairs(tmp_path / "faq.jsonl", [("Mail?", "Write to ada@example.com or call 13812345678."),
                                                         ("Hi", "Hello!")]))
    clean, counts, rows = redact(data)
    assert clean.answers()[0] == "Write to [EMAIL] or call [PHONE]." and clean.answers()[1] == "Hello!"
    assert counts == {"email": 1, "phone": 1} and rows == 1
    assert data.answers()[0].startswith("Write to ada@")          # the loaded data is left as it was


def test_the_profile_finds_lengths_repeats_conflicts_and_leakage(tmp_path, tokenizer):
    pairs = [*PAIRS, PAIRS[0], ("Hello!", "Hi there.")]
    data = load_sft(write_pairs(tmp_path / "faq.jsonl", pairs))
    held = load_sft(write_pairs(tmp_path / "eval.jsonl", [PAIRS[2], ("Something new entirely?", "Yes.")]))
    enc = encode(tokenizer, data)
    p = profile_sft(data, enc, eval_data=held, pii={"email": 1}, pii_rows=1, max_length=64, left_out=[3])
    assert p["rows"] == 10 and p["tokens"]["total"]["max"] == max(enc.lengths)
    assert p["tokens"]["answer"]["max"] == max(enc.answer_tokens) and p["shape"] == "question_answer"
    assert p["exact_duplicates"]["count"] == 1 and p["conflicting_answers"]["count"] == 1   # row 1 twice; Hello! twice
    assert p["leakage"]["rows"] == 1 and p["leakage"]["exact"] == 1
    text = " ".join(p["warnings"])
    for part in ("repeat an earlier one", "different answers", "[EMAIL] before training", "left out (row 3)",
                 "1 of 2 evaluation question(s) also occur in training"):
        assert part in text, part


def test_an_example_too_long_as_a_whole_is_left_out_but_a_too_long_answer_is_refused(tmp_path, tokenizer):
    long_question = "Hello! " * 30 + "How do I reset my password?"
    data = load_sft(write_pairs(tmp_path / "faq.jsonl", [(long_question, "Open Settings."), *PAIRS[1:3]]))
    enc = encode(tokenizer, data)
    limit = max(enc.lengths[1:]) + 1
    kept, left_out = fit_length(enc, limit, data.source, 512)
    assert left_out == [1] and kept.rows == [2, 3]
    with pytest.raises(ValidationError, match=r"faq.jsonl: the answer of row 3 is past max_length 8 tokens "
                                              r"\(longest \d+\); raise max_length \(this model reads up to 512\)"):
        fit_length(enc.subset([2]), 8, data.source, 512)


# --- one clear line each -------------------------------------------------------------------------

def train_error(capsys, tiny_llama, data, *extra: str) -> str:
    return cli_error(capsys, "llm", "train", "--data", str(data), "--base-model", str(tiny_llama), "--name", "t",
                     *extra)


def test_no_answer_column(capsys, settings, tiny_llama, tmp_path):
    data = write_pairs(tmp_path / "faq.csv", keys=("question", "reply_text"))
    line = train_error(capsys, tiny_llama, data)
    assert line == ("error: faq.csv has no answer column (columns: question, reply_text); name it with "
                    '--answer-col COLUMN, or give each row "messages" (a chat) or "prompt" and "completion"')
    line = train_error(capsys, tiny_llama, data, "--answer-col", "reply")
    assert line == "error: faq.csv has no column 'reply' (columns: question, reply_text) (did you mean \"reply_text\"?)"


def test_empty_answers(capsys, settings, tiny_llama, tmp_path):
    rows = [*PAIRS[:2], ("How long do refunds take?", "  "), PAIRS[3], ("Hello!", "")]
    line = train_error(capsys, tiny_llama, write_pairs(tmp_path / "faq.jsonl", rows))
    assert line == ("error: faq.jsonl: 2 rows (3, 5) have an empty answer (column 'answer'); "
                    "fill them in or remove those rows")


def test_an_answer_past_max_length(capsys, settings, tiny_llama, tmp_path):
    data = write_pairs(tmp_path / "faq.jsonl")
    line = train_error(capsys, tiny_llama, data, "--eval", str(data), "--max-length", "16")
    assert line.startswith("error: faq.jsonl: the answer of ") and "past max_length 16 tokens" in line
    assert line.endswith("raise max_length (this model reads up to 512) or shorten the answer")


def test_conversations_that_do_not_end_in_an_answer_or_have_unknown_roles(capsys, settings, tiny_llama, tmp_path):
    ends_in_user = write_chats(tmp_path / "a.jsonl", [CHAT, CHAT[:2]])
    assert train_error(capsys, tiny_llama, ends_in_user) == (
        "error: a.jsonl row 2: the last message is the user's; a training conversation ends in the assistant's answer")
    bad_role = write_chats(tmp_path / "b.jsonl", [[{"role": "user", "content": "Hi"}, {"role": "asistant",
                                                                                         "content": "Hello"}]])
    assert train_error(capsys, tiny_llama, bad_role) == (
        "error: b.jsonl row 1: message 2 has role 'asistant'; use system, user or assistant "
        '(did you mean "assistant"?)')
    not_a_list = tmp_path / "c.jsonl"
    not_a_list.write_text(json.dumps({"messages": "Hello"}) + "\n")
    assert "c.jsonl row 1: messages must be a list of" in train_error(capsys, tiny_llama, not_a_list)


def test_bad_options_and_bases(capsys, settings, tiny_llama, tmp_path):
    data = write_pairs(tmp_path / "faq.jsonl")
    config = tmp_path / "c.yaml"
    config.write_text("lora_rnak: 8\n")
    assert train_error(capsys, tiny_llama, data, "--config", str(config)) == (
        'error: unknown fine-tuning option "lora_rnak" (did you mean "lora_rank"?)')
    assert train_error(capsys, tiny_llama, data, "--lora-rank", "0") == (
        "error: lora_rank: must be a whole number ≥ 1, got 0")
    line = cli_error(capsys, "llm", "train", "--data", str(data), "--base-model", str(tmp_path / "nowhere"),
                     "--name", "t")
    assert line.startswith("error: no such file or folder: ") and "nowhere" in line
    with pytest.raises(ValidationError, match="target_modules: must be all-linear or a non-empty list"):
        FinetuneConfig(target_modules=[])
    with pytest.raises(ValidationError, match='mixed_precision: must be auto, no, fp16 or bf16, got "bf32"'):
        FinetuneConfig(mixed_precision="bf32")
