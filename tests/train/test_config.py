"""Training options: bad values and combinations are refused, naming the option."""

from __future__ import annotations

import pytest

from modelshop.errors import ValidationError
from modelshop.train import TrainConfig


@pytest.mark.parametrize(("changes", "match"), [
    ({"epochs": 0}, "epochs: must be ≥ 1"),
    ({"learning_rate": 3}, "learning_rate"),
    ({"class_weights": "balance"}, 'did you mean "balanced"'),
    ({"mixed_precision": "fp8"}, "mixed_precision"),
    ({"resume": True}, "resume: needs checkpoint_dir"),
    ({"max_length": 4}, "max_length"),
    ({"validation_fraction": 0.7}, "validation_fraction"),
])
def test_bad_options_name_the_option(changes, match):
    with pytest.raises(ValidationError, match=match):
        TrainConfig(**changes)


def test_yaml_options_with_command_line_overrides(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("epochs: 5\nlearning_rate: 0.0001\nbatch_size: 8\n")
    cfg = TrainConfig.from_yaml(path, epochs=2, batch_size=None)
    assert (cfg.epochs, cfg.learning_rate, cfg.batch_size) == (2, 1e-4, 8)


def test_unknown_yaml_option_suggests_the_right_one(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("epoch: 5\n")
    with pytest.raises(ValidationError, match='unknown training option "epoch" \\(did you mean "epochs"\\?\\)'):
        TrainConfig.from_yaml(path)


def test_yaml_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ValidationError, match="must be a mapping"):
        TrainConfig.from_yaml(path)
