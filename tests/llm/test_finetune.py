"""`modelshop llm train | eval` on the tiny Llama: the loss falls, the adapter changes (and improves) the
answers, the registered version has its lineage and card and serves through /v1/chat/completions, and
`llm eval` scores it beside its base. The module trains once (through the CLI, on a registered base);
resume and bad data have tests of their own (tests/llm/test_finetune_resume.py, test_sft_data.py)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from modelshop.cli import main
from modelshop.llm.registry import add_local, load_causal_lm
from modelshop.platform import build_app
from modelshop.registry import Registry
from tests.llm.finetune_support import PAIRS, one_thread, write_pairs
from tests.support import AUTH, make_settings

# the tiny model memorises 8 pairs in 16 short epochs: a high rate, a wide rank, no held-out rows
OPTIONS = {"epochs": 16, "batch_size": 4, "learning_rate": 0.01, "lora_rank": 16, "warmup_ratio": 0.0,
           "validation_fraction": 0.0, "speed_prompts": 1, "speed_tokens": 4, "answer_limit": None}

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def single_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def shop(tmp_path_factory, tiny_llama, single_thread):
    """A home with the tiny Llama registered as "tiny" and "support-bot" fine-tuned from it by `llm train`
    (evaluated on its own training pairs, so the figures measure what it learned)."""
    root = tmp_path_factory.mktemp("finetune")
    settings = make_settings(root / "home", llm_processes=False)
    add_local("tiny", str(tiny_llama), settings=settings)
    data = write_pairs(root / "faq.jsonl", PAIRS)
    config = root / "lora.yaml"
    config.write_text("".join(f"{k}: {'null' if v is None else v}\n" for k, v in OPTIONS.items()))
    mp = pytest.MonkeyPatch()
    mp.setenv("MODELSHOP_HOME", str(settings.home))
    mp.setenv("MODELSHOP_PROGRESS", "false")
    from modelshop.settings import get_settings

    get_settings.cache_clear()
    result = cli_json("llm", "train", "--data", str(data), "--eval", str(data), "--base-model", "tiny",
                      "--name", "support-bot", "--config", str(config))
    yield {"settings": settings, "result": result, "data": data, "registry": Registry.from_settings(settings)}
    mp.undo()
    get_settings.cache_clear()


def cli_text(*args: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(list(args))
    return out.getvalue()


def cli_json(*args: str) -> dict:
    return json.loads(cli_text(*args, "--json"))


def test_the_loss_falls_and_the_answers_get_better(shop):
    r = shop["result"]
    history = json.loads((Path(r["path"]) / "history.json").read_text())
    epochs = [e["train_loss"] for e in history["epochs"]]
    assert len(epochs) == 16 and epochs[-1] < epochs[0] / 4, epochs
    assert r["perplexity"] < r["base_perplexity"] / 10
    assert r["token_f1"] > r["base_token_f1"] + 0.5 and r["exact_match"] > 0.5
    assert r["paid"] is True and r["reason"].startswith("Fine-tuning paid")


def test_the_adapter_changes_the_answers(shop):
    r = shop["result"]
    answers = {(s["base"], s["fine_tuned"]) for s in r["samples"]}
    assert len(r["samples"]) == 3 and all(base != tuned for base, tuned in answers)
    references = {q: a for q, a in PAIRS}
    assert sum(s["fine_tuned"] == references[s["question"]] for s in r["samples"]) >= 2


def test_the_version_has_its_lineage_and_a_merged_model(shop, tiny_llama):
    r, registry = shop["result"], shop["registry"]
    row, base = registry.get("support-bot:1"), registry.get("tiny:1")
    assert row.family == "causal_lm" and row.stage == "production" and row.base_model == "tiny"
    assert row.parent_id == base.id and r["parent_id"] == base.id and r["base"] == "tiny:1"
    assert row.data_sha256 == r["data_sha256"] and len(row.data_sha256) == 64
    assert row.metrics["token_f1"] == r["token_f1"] and row.metrics["base_perplexity"] == r["base_perplexity"]
    meta = registry.meta(row)
    tuned = meta["finetune"]
    assert tuned["base"] == "tiny:1" and tuned["merged"] and tuned["lora"]["rank"] == 16
    assert meta["family"] == "causal_lm" and meta["has_chat_template"] and meta["context_length"] == 512
    folder = registry.path(row)
    assert (folder / "adapter" / "adapter_config.json").is_file() and (folder / "training_curves.png").is_file()
    # merged: a plain Llama, no adapter layers, with weights that differ from the base's
    model, _, _ = load_causal_lm(folder)
    base_model, _, _ = load_causal_lm(registry.path(base))
    assert not any("lora" in k for k in model.state_dict())
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, base_model.state_dict()[k])]
    assert changed and all(k.endswith("proj.weight") for k in changed)
    assert r["serving"]["merged_tokens_per_s"] > 0 and r["serving"]["adapter_tokens_per_s"] > 0
    assert r["serving"]["same_greedy_tokens"] is True
    assert not (shop["settings"].runs_dir / "llm-support-bot").exists()   # scratch checkpoints removed


def test_the_card_has_the_figures_and_sample_answers(shop):
    card = Path(shop["result"]["card"]).read_text()
    r = shop["result"]
    for text in ("# Model card: support-bot", "Did fine-tuning pay?", "**Yes.**", "## Sample answers",
                 f"| {r['perplexity']:.2f} | {r['base_perplexity']:.2f} |", "LoRA rank 16", "## Serving",
                 "merged", "![training curves](training_curves.png)", r["data_sha256"], "email 1", "redacted"):
        assert text in card, text


def test_personal_data_is_redacted_before_training(shop):
    profile = json.loads((Path(shop["result"]["path"]) / "profile.json").read_text())
    assert profile["pii"] == {"email": 1} and profile["pii_redacted"] is True
    assert any("[EMAIL] before training" in w for w in profile["warnings"])


def serving_home(shop, tmp_path) -> Path:
    """A copy of the shop's home where only the fine-tuned version is in production. Two generative models
    in production load at once, each in a thread when llm_processes is off, and transformers' loading patches
    process-wide state (torch.linspace, weight tying, the meta device) without a lock: concurrent loads can
    leave it patched, and later in-process loads of the session get meta or untied weights (reported)."""
    import shutil

    home = tmp_path / "home"
    shutil.copytree(shop["settings"].home, home)
    Registry.from_settings(make_settings(home)).promote("tiny:1", "archived")
    return home


def test_the_registered_version_serves_its_answers(shop, tmp_path):
    settings = make_settings(serving_home(shop, tmp_path), llm_processes=False)
    sample = shop["result"]["samples"][0]
    with TestClient(build_app(settings)) as client:
        r = client.post("/v1/chat/completions", headers=AUTH, json={
            "model": "support-bot", "temperature": 0, "max_tokens": 48,
            "messages": [{"role": "user", "content": sample["question"]}]})
        assert r.status_code == 200, r.text
        assert r.headers["x-model"] == "support-bot:1"
        assert r.json()["choices"][0]["message"]["content"].strip() == sample["fine_tuned"]
        assert r.json()["choices"][0]["finish_reason"] == "stop"
        card = client.get("/store/support-bot/card.md")
        assert card.status_code == 200 and "Did fine-tuning pay?" in card.text
        assert client.get("/store/support-bot/files/training_curves.png").status_code == 200


def test_llm_eval_scores_the_version_and_its_base_in_one_run(shop):
    out = cli_json("llm", "eval", "--model", "support-bot", "--data", str(shop["data"]))
    r = shop["result"]
    assert out["name"] == "support-bot" and out["version"] == 1 and out["rows"] == len(PAIRS)
    assert out["perplexity"] == pytest.approx(r["perplexity"], rel=1e-3)
    assert out["token_f1"] == r["token_f1"] and out["exact_match"] == r["exact_match"]
    assert out["base"]["model"] == "tiny:1"
    assert out["base"]["perplexity"] == pytest.approx(r["base_perplexity"], rel=1e-3)
    assert out["paid"] is True and "answers" not in out and "answers" not in out["base"]
    lines = cli_text("llm", "eval", "--model", "support-bot:1", "--data", str(shop["data"])).splitlines()
    assert lines[0] == f"support-bot:1 on {len(PAIRS)} rows"
    assert lines[1].startswith(f"this model: perplexity {r['perplexity']:.2f}  token-F1 {r['token_f1']:.4f}")
    assert lines[2].startswith(f"base tiny:1: perplexity {r['base_perplexity']:.2f}")
    assert lines[3].startswith("Fine-tuning paid")
    plain = cli_json("llm", "eval", "--model", "tiny", "--data", str(shop["data"]))
    assert plain["base"] is None and plain["paid"] is None
    assert plain["perplexity"] == pytest.approx(r["base_perplexity"], rel=1e-3)


def test_plans_price_the_fine_tuned_model_apart_from_its_base(shop, tmp_path):
    # each charge names its model: a charge naming none applies to every model, the fine-tuned one included
    # (DESIGN: `models` limits a charge to those models), so a price "for every other model" adds up with it
    from sqlalchemy import select

    from modelshop.billing.accounts import create_customer, create_plan
    from modelshop.billing.keys import create_key
    from modelshop.billing.plans import parse_plan
    from modelshop.billing.queries import token_price_list
    from modelshop.billing.tables import UsageEvent
    from modelshop.db import get_database
    from tests.support import ACTOR, bearer

    settings = make_settings(serving_home(shop, tmp_path), serve_gate="billing", llm_processes=False)
    db = get_database(settings)
    create_plan(db, parse_plan({"code": "tok", "currency": "USD", "charges": [
        {"metric": "input_tokens", "model": "unit", "unit_price": "0.000001", "models": ["support-bot"]},
        {"metric": "output_tokens", "model": "unit", "unit_price": "0.000002", "models": ["support-bot"]},
        {"metric": "input_tokens", "model": "unit", "unit_price": "0.0000002", "models": ["tiny"]},
        {"metric": "output_tokens", "model": "unit", "unit_price": "0.0000006", "models": ["tiny"]}]}), actor=ACTOR)
    customer = create_customer(db, "Acme", "tok", actor=ACTOR)["id"]
    key = create_key(db, customer, actor=ACTOR)["key"]
    with TestClient(build_app(settings)) as client:
        prices = {m["id"]: m["pricing"] for m in client.get("/v1/models", headers=bearer(key)).json()["data"]}
        r = client.post("/v1/chat/completions", headers=bearer(key), json={
            "model": "support-bot", "temperature": 0, "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]})
        assert r.status_code == 200, r.text
    assert prices["support-bot"] == {"currency": "USD", "input_per_million": "1.00", "output_per_million": "2.00"}
    listed = {r["model"]: (r["input_per_million"], r["output_per_million"]) for r in token_price_list(db)}
    assert listed == {"support-bot": ("1.00", "2.00"), "tiny": ("0.20", "0.60")}
    with db.session() as s:
        [event] = s.scalars(select(UsageEvent).where(UsageEvent.customer_id == customer)).all()
    assert event.model == "support-bot:1" and event.input_tokens == r.json()["usage"]["prompt_tokens"]
