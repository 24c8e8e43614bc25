"""Safe, strict checkpoint loading: every bad file is refused with the file and fault named."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch

from alm_forecaster.checkpoint import load_checkpoint
from alm_forecaster.config import ModelConfig
from alm_forecaster.errors import CheckpointError
from alm_forecaster.testing.synthetic import TINY, seed_checkpoint
from tests.helpers import CreatesFileWhenUnpickled


def refused(tmp_path: Path, payload: object) -> str:
    path = tmp_path / "bad.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    return str(info.value)


def test_original_format_loads_strictly_and_matches_weights(tmp_path):
    payload = seed_checkpoint(TINY, seed=3)
    path = tmp_path / "seed.pt"
    torch.save(payload, path)
    loaded = load_checkpoint(path)
    assert loaded.config.block_pattern == "sms"
    assert loaded.warnings == []
    assert len(loaded.sha256) == 64
    for name, tensor in payload["model_state_dict"].items():
        assert torch.equal(loaded.model.state_dict()[name], tensor), name
    assert not loaded.model.training


def test_full_seed_size_checkpoint_loads(tmp_path):
    path = tmp_path / "full.pt"
    torch.save(seed_checkpoint(ModelConfig(), seed=0), path)
    loaded = load_checkpoint(path)
    assert loaded.config.block_pattern == "smsmsms"
    assert loaded.model.parameter_count() == sum(t.numel() for t in torch.load(path)["model_state_dict"].values())


def test_pickled_object_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "payload-ran"
    payload = seed_checkpoint(TINY, seed=0)
    payload["config"]["extra"] = CreatesFileWhenUnpickled(marker)
    message = refused(tmp_path, payload)
    assert "arbitrary unpickling" in message and "nothing in it was run" in message
    assert not marker.exists()


def test_truncated_file_is_refused(tmp_path):
    path = tmp_path / "truncated.pt"
    torch.save(seed_checkpoint(TINY, seed=0), path)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="cannot read the file"):
        load_checkpoint(tmp_path / "absent.pt")


def test_not_a_dict(tmp_path):
    assert "expected a dict, found list" in refused(tmp_path, [1, 2, 3])


@pytest.mark.parametrize("key", ["model_state_dict", "config"])
def test_missing_top_level_key(tmp_path, key):
    payload = seed_checkpoint(TINY, seed=0)
    del payload[key]
    assert f"missing '{key}'" in refused(tmp_path, payload)


def test_missing_and_unexpected_tensors_are_listed(tmp_path):
    payload = seed_checkpoint(TINY, seed=0)
    state = payload["model_state_dict"]
    state["blocks.1.lstm.layers.0.surprise"] = torch.zeros(3)
    del state["blocks.1.norm.weight"]
    message = refused(tmp_path, payload)
    assert "missing tensors 'blocks.1.norm.weight'" in message
    assert "unexpected tensors 'blocks.1.lstm.layers.0.surprise'" in message


def test_mis_shaped_tensor_is_named(tmp_path):
    payload = seed_checkpoint(TINY, seed=0)
    payload["model_state_dict"]["blocks.2.proj.weight"] = torch.zeros(16, 15)
    assert "tensor 'blocks.2.proj.weight' has shape (16, 15), expected (16, 16)" in refused(tmp_path, payload)


@pytest.mark.parametrize(("field", "value"), [("hidden_size", 32), ("num_blocks", 5), ("input_size", 9)])
def test_config_contradicting_weights(tmp_path, field, value):
    payload = seed_checkpoint(TINY, seed=0)
    actual = payload["config"][field]
    payload["config"][field] = value
    assert f"config says {field}={value} but the weights have {field}={actual}" in refused(tmp_path, payload)


def test_config_missing_shape_field(tmp_path):
    payload = seed_checkpoint(TINY, seed=0)
    del payload["config"]["num_layers"]
    assert "config is missing 'num_layers'" in refused(tmp_path, payload)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_weights(tmp_path, bad):
    payload = seed_checkpoint(TINY, seed=0)
    payload["model_state_dict"]["output_head.0.weight"][3, 4] = bad
    assert "tensor 'output_head.0.weight' has 1 non-finite values" in refused(tmp_path, payload)


def test_horizon_disagreement_serves_what_the_head_produces(tmp_path, caplog):
    path = tmp_path / "inconsistent.pt"
    torch.save(seed_checkpoint(TINY, seed=0, declared_output_size=1), path)
    with caplog.at_level(logging.WARNING):
        loaded = load_checkpoint(path)
    assert loaded.config.output_size == 5
    assert loaded.warnings == ["config says output_size=1 but the head predicts 5 steps; serving 5"]
    assert "config says output_size=1" in caplog.text
