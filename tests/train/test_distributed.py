"""Training under a multi-process launch: the processes train together, the main one alone registers."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from modelshop.db import Database
from modelshop.registry import Registry
from modelshop.settings import Settings
from tests.support import free_port


@pytest.mark.slow
def test_a_two_process_launch_trains_together_and_registers_one_version(tmp_path, tiny_bert, toy_data):
    if _has_gpu():
        pytest.skip("checks the CPU (gloo) launch; on a GPU machine both processes would share its GPUs")
    home, scratch = tmp_path / "home", tmp_path / "tmp"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELSHOP_", "ACCELERATE_"))}
    env.update(MODELSHOP_HOME=str(home), MODELSHOP_PROGRESS="false", HF_HUB_OFFLINE="1", TMPDIR=str(scratch),
               TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    train, evaluation = toy_data
    # `--cpu` would start one process (accelerate spreads CPU processes only through mpirun); the
    # torchrun launcher starts two, and on a machine without GPUs they train together over gloo.
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(free_port())]
    cmd = [*launch, "-m", "modelshop", "train", "--data", str(train), "--eval", str(evaluation),
           "--base-model", str(tiny_bert), "--name", "toy", "--epochs", "1", "--batch-size", "4", "--json"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout)  # one document: only the main process prints
    assert (result["name"], result["version"], result["stage"]) == ("toy", 1, "production")

    registry = Registry(Database(f"sqlite:///{home / 'modelshop.db'}"), Settings(home=home).models_dir)
    assert [r.ref for r in registry.list()] == ["toy:1"]
    folder = registry.path(registry.get("toy:1"))
    stored = json.loads((folder / "metrics.json").read_text())
    history = json.loads((folder / "history.json").read_text())
    batches = math.ceil(stored["data"]["train_rows"] / 4)
    assert len(history["loss"]) == math.ceil(batches / 2)  # each process took half the batches: they trained as one
    assert not list((home / "models" / ".incoming").iterdir())
    assert not list(home.glob("runs/*"))  # the scratch checkpoints of both processes are gone
    assert not [p.name for p in scratch.iterdir() if p.name.startswith("modelshop-train-")]  # the other's scratch


def _has_gpu() -> bool:
    import torch

    return torch.accelerator.is_available()


def test_sharding_the_batches_over_two_processes_covers_every_example():
    """What `accelerator.prepare` does to the loader under a 2-process launch, without the launch."""
    from accelerate.data_loader import BatchSamplerShard

    from modelshop.train.loop import LengthGroupedBatches

    lengths = [(i * 7) % 23 + 1 for i in range(53)]  # 13 batches of 4 and one of 1
    sampler = LengthGroupedBatches(lengths, batch_size=4, seed=3)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        shards = [list(BatchSamplerShard(sampler, num_processes=2, process_index=i)) for i in (0, 1)]
        assert len(shards[0]) == len(shards[1]) == 7  # the same number of steps in each process
        seen = {i for shard in shards for batch in shard for i in batch}
        assert seen == set(range(53)), f"epoch {epoch}: examples never trained on: {sorted(set(range(53)) - seen)}"
