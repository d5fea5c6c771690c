"""The LoRA loop itself (sft_loop) on the tiny Llama: a run stopped mid-epoch resumes at the batch after its
last checkpoint and ends exactly as the uninterrupted run; a checkpoint of another run is refused; early
stopping keeps the best epoch's adapter."""

from __future__ import annotations

import pytest
import torch

from modelshop.errors import ValidationError
from modelshop.llm.evaluate import answer_nll
from modelshop.llm.finetune import FinetuneConfig
from modelshop.llm.sft_data import encode, load_sft
from modelshop.llm.sft_loop import LAST, attach_lora, fit_lora
from tests.llm.finetune_support import PAIRS, one_thread, write_pairs

# 8 conversations in batches of 3: 3 batches an epoch, 9 in all; a checkpoint every 2 batches
OPTIONS = dict(epochs=3, batch_size=3, learning_rate=5e-3, lora_rank=4, warmup_ratio=0.2, checkpoint_steps=2)


@pytest.fixture(autouse=True)
def single_thread():
    with one_thread():
        yield


class Stop(Exception):
    """Stands for the run being killed (Ctrl-C, a lost machine) after a batch."""


def fit(tiny_llama, data_path, checkpoint_dir, *, val_pairs=None, on_step=None, **changes):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    data = load_sft(data_path)
    cfg = FinetuneConfig(base_model=str(tiny_llama), **{**OPTIONS, **changes})
    val = encode(tokenizer, load_sft(write_pairs(data_path.with_name("val.jsonl"), val_pairs))) if val_pairs else None
    return fit_lora(attach_lora(model, cfg), cfg, encode(tokenizer, data), val, pad_id=tokenizer.pad_token_id,
                    run_key=cfg.run_key(data.fingerprint(), "tiny"), checkpoint_dir=checkpoint_dir, progress=False,
                    on_step=on_step)


def adapter(result) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in result.model.state_dict().items() if "lora_" in k}


def untimed(epochs: list[dict]) -> list[dict]:
    return [{k: v for k, v in e.items() if k != "train_seconds"} for e in epochs]


def test_a_stopped_run_resumes_where_it_stopped_and_ends_as_the_uninterrupted_one(tiny_llama, tmp_path):
    data = write_pairs(tmp_path / "faq.jsonl")
    whole = fit(tiny_llama, data, tmp_path / "whole")

    def stop_at_5(step: int, loss: float) -> None:
        if step == 5:  # mid-epoch 2, one batch after the checkpoint of step 4
            raise Stop

    with pytest.raises(Stop):
        fit(tiny_llama, data, tmp_path / "run", on_step=stop_at_5)
    assert torch.load(tmp_path / "run" / LAST, weights_only=True)["state"]["step"] == 4
    resumed = fit(tiny_llama, data, tmp_path / "run", resume=True)
    assert resumed.resumed_at_step == 4 and resumed.state.step == whole.state.step == 9
    assert resumed.state.history["loss"] == whole.state.history["loss"]     # the same loss at every step
    assert untimed(resumed.state.history["epochs"]) == untimed(whole.state.history["epochs"])
    a, b = adapter(whole), adapter(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(v.abs().sum() > 0 for k, v in a.items() if "lora_B" in k)   # it did learn (B starts at zero)


def test_a_finished_run_resumes_for_more_epochs(tiny_llama, tmp_path):
    data = write_pairs(tmp_path / "faq.jsonl")
    first = fit(tiny_llama, data, tmp_path / "run", epochs=1)
    more = fit(tiny_llama, data, tmp_path / "run", epochs=2, resume=True)
    assert first.state.step == 3 and more.resumed_at_step == 3 and more.state.step == 6
    assert more.state.history["loss"][:3] == first.state.history["loss"]
    assert [e["epoch"] for e in more.state.history["epochs"]] == [1, 2]


def test_resume_refuses_another_runs_checkpoint_and_an_empty_folder(tiny_llama, tmp_path):
    data = write_pairs(tmp_path / "faq.jsonl")
    fit(tiny_llama, data, tmp_path / "run", epochs=1)
    with pytest.raises(ValidationError, match="of another run .* resume with the same ones"):
        fit(tiny_llama, data, tmp_path / "run", epochs=2, resume=True, lora_rank=8)
    with pytest.raises(ValidationError, match="nothing to resume in .*; run without --resume"):
        fit(tiny_llama, data, tmp_path / "empty", resume=True)


def test_early_stopping_keeps_the_best_epochs_adapter(tiny_llama, tmp_path):
    # validation asks the same questions with each other's answers: learning the training answers makes
    # the validation loss rise, so the loop stops and goes back to its best epoch
    data = write_pairs(tmp_path / "faq.jsonl")
    swapped = [(q, PAIRS[(i + 1) % len(PAIRS)][1]) for i, (q, _) in enumerate(PAIRS)]
    result = fit(tiny_llama, data, tmp_path / "run", val_pairs=swapped, epochs=12, learning_rate=0.05,
                 early_stopping_patience=2, checkpoint_steps=0)
    val = [e["val_loss"] for e in result.state.history["epochs"]]
    assert result.stopped_early and len(val) < 12
    assert result.state.best_epoch == val.index(min(val)) + 1 < len(val)
    assert result.state.best_val_loss == pytest.approx(min(val), abs=1e-5)
    # the adapter kept is the best epoch's: its validation loss is the best one, not the last
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    nll, tokens = answer_nll(result.model, encode(tokenizer, load_sft(tmp_path / "val.jsonl")),
                             pad_id=tokenizer.pad_token_id, batch_size=3)
    assert nll / tokens == pytest.approx(min(val), abs=1e-4) and nll / tokens < val[-1]


def test_gradient_checkpointing_takes_the_same_steps_in_less_memory(tiny_llama, tmp_path):
    data = write_pairs(tmp_path / "faq.jsonl")
    plain = fit(tiny_llama, data, tmp_path / "plain", epochs=1)
    recomputed = fit(tiny_llama, data, tmp_path / "gc", epochs=1, gradient_checkpointing=True)
    assert recomputed.model.base_model.model.is_gradient_checkpointing
    losses = [x["loss"] for x in plain.state.history["loss"]]
    assert [x["loss"] for x in recomputed.state.history["loss"]] == pytest.approx(losses, rel=1e-4)
