"""The archive builder (alm_ops.archive, scripts/build_archive.py), archive_configs/ and
config.properties (no server needed)."""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

from alm_forecaster import native
from alm_forecaster.testing.synthetic import TINY, write_checkpoint
from alm_ops import archive, serve_config
from tests.helpers import ROOT, build_archive_cli, built_kernels, kernel_expected


class NotAllowedInCheckpoints:
    """Pickling this needs arbitrary code: the loader must refuse it without running it."""


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", TINY, seed=1)


def serving_core(package: Path) -> set[str]:
    """The .py files of the serving core: the package without its train/ and testing/ subpackages."""
    return {
        f"alm_forecaster/{p.relative_to(package)}"
        for p in package.rglob("*.py")
        if p.relative_to(package).parts[0] not in ("train", "testing") and "__pycache__" not in p.parts
    }


def packaged(names: set[str]) -> set[str]:
    """The .py files of alm_forecaster/ inside an archive."""
    return {n for n in names if n.startswith("alm_forecaster/") and n.endswith(".py")}


def test_archive_is_self_contained(tiny_checkpoint, tmp_path, capsys):
    assert (
        archive.main([str(tiny_checkpoint), "--name", "tiny", "--version", "1.2", "--export-path", str(tmp_path)]) == 0
    )
    assert "built" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.mar"]
    with zipfile.ZipFile(tmp_path / "tiny.mar") as mar:
        names = set(mar.namelist())
        manifest = json.loads(mar.read("MAR-INF/MANIFEST.json"))
        config = yaml.safe_load(mar.read("model-config.yaml"))
    assert manifest["model"] == {
        "modelName": "tiny",
        "serializedFile": "tiny.pt",
        "handler": "xlstm_handler.py",
        "modelVersion": "1.2",
        "configFile": "model-config.yaml",
    }
    assert packaged(names) == serving_core(ROOT / "alm_forecaster")
    # The compiled kernel travels, both builds and the native one's CPU record; when the set-up
    # built it (or CI requires it), built_kernels() fails unless both builds are there.
    kernels = {str(path.relative_to(ROOT)) for path in built_kernels()}
    if kernel_expected():
        assert len(kernels) == len(native.VARIANTS), kernels
        kernels.add(str(native.library_path("native").with_name(native.CPU_FEATURES_FILE).relative_to(ROOT)))
    assert kernels <= names, kernels - names
    assert not any("__pycache__" in n or n.endswith((".pyc", ".o", ".ninja")) for n in names)
    assert {"xlstm_handler.py", "tiny.pt"} <= names
    defaults = yaml.safe_load((ROOT / "archive_configs" / "default.yaml").read_text())
    # what the checkpoint serves, read from it (for operators), beside the defaults as they are
    assert config.pop("serves") == {"series_kinds": ["price"], "steps": 5, "quantiles": []}
    assert config == defaults  # no archive_configs/tiny.yaml


def test_archive_ships_the_serving_core_only(tiny_checkpoint, tmp_path, monkeypatch):
    """Training and test helpers (alm_forecaster/train/, alm_forecaster/testing/) and bytecode
    never travel: the .mar holds exactly the core's sources, nested subpackages included."""
    package = tmp_path / "src" / "alm_forecaster"
    shutil.copytree(ROOT / "alm_forecaster", package, ignore=shutil.ignore_patterns("__pycache__", "_build"))
    for extra in ("train/__init__.py", "train/training.py", "testing/__init__.py", "testing/oracle.py"):
        (package / extra).parent.mkdir(exist_ok=True)
        (package / extra).write_text("import pandas  # not a serving dependency\n")
    (package / "native" / "train").mkdir()  # the same name deeper down is not the subpackage
    (package / "native" / "train" / "kept.py").write_text("")
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "config.cpython-311.pyc").write_bytes(b"\0")
    monkeypatch.setattr(archive, "PACKAGE", package)
    assert archive.main([str(tiny_checkpoint), "--name", "core", "--export-path", str(tmp_path / "out")]) == 0
    with zipfile.ZipFile(tmp_path / "out" / "core.mar") as mar:
        names = set(mar.namelist())
    shipped = packaged(names)
    assert "alm_forecaster/native/train/kept.py" in shipped
    assert shipped == serving_core(package), shipped ^ serving_core(package)
    assert {"alm_forecaster/__init__.py", "alm_forecaster/checkpoint.py", "alm_forecaster/forecaster.py"} <= shipped
    for left_out in ("alm_forecaster/train/", "alm_forecaster/testing/", "__pycache__", ".pyc"):
        assert not any(left_out in name for name in names), left_out


def test_model_yaml_is_merged_over_the_defaults(tiny_checkpoint, tmp_path):
    own = tmp_path / "own.yaml"
    own.write_text("archive:\n  version: '7.0'\nbatchSize: 2\nhandler:\n  seq_len: 30\n")
    assert (
        archive.main(
            [str(tiny_checkpoint), "--name", "m", "--config", str(own), "--export-path", str(tmp_path / "out")]
        )
        == 0
    )
    with zipfile.ZipFile(tmp_path / "out" / "m.mar") as mar:
        config = yaml.safe_load(mar.read("model-config.yaml"))
        manifest = json.loads(mar.read("MAR-INF/MANIFEST.json"))
    assert manifest["model"]["modelVersion"] == "7.0"
    defaults = yaml.safe_load((ROOT / "archive_configs" / "default.yaml").read_text())
    assert "archive" not in config and config["batchSize"] == 2
    assert config["maxBatchDelay"] == defaults["maxBatchDelay"] and config["minWorkers"] == defaults["minWorkers"]
    assert config["handler"] == {"threads": 1, "device": "auto", "precision": "fp32", "seq_len": 30}


def _garbage(path: Path) -> None:
    path.write_bytes(b"definitely not a zip file")


def _pickle(path: Path) -> None:
    torch.save({"model_state_dict": {}, "config": NotAllowedInCheckpoints()}, path)


def _wrong_shape(path: Path) -> None:
    payload = torch.load(write_checkpoint(path, TINY), weights_only=True)
    payload["config"]["hidden_size"] = 32
    torch.save(payload, path)


def _nan(path: Path) -> None:
    payload = torch.load(write_checkpoint(path, TINY), weights_only=True)
    payload["model_state_dict"]["output_head.3.bias"][0] = float("nan")
    torch.save(payload, path)


@pytest.mark.parametrize(
    ("make", "detail"),
    [
        (_garbage, "not a readable PyTorch checkpoint"),
        (_pickle, "arbitrary unpickling"),
        (_wrong_shape, "config says hidden_size=32 but the weights have hidden_size=16"),
        (_nan, "non-finite"),
        (None, "does not exist"),
    ],
    ids=["garbage", "pickle", "wrong-shape", "nan", "missing"],
)
def test_a_bad_checkpoint_never_becomes_an_archive(tmp_path, capsys, make, detail):
    checkpoint = tmp_path / "bad.pt"
    if make is not None:
        make(checkpoint)
    out = tmp_path / "store"
    assert archive.main([str(checkpoint), "--name", "bad", "--export-path", str(out)]) == 1
    error = capsys.readouterr().err
    assert "error: model 'bad'" in error and detail in error, error
    assert not out.exists() or not any(out.iterdir())


def test_cli_exit_status_and_message(tmp_path):
    checkpoint = tmp_path / "broken.pt"
    _garbage(checkpoint)
    done = build_archive_cli(checkpoint, "broken", tmp_path / "store")
    assert done.returncode == 1
    assert "checkpoint refused, no archive built" in done.stderr and str(checkpoint) in done.stderr
    assert not (tmp_path / "store" / "broken.mar").exists()


def test_without_a_checkpoint_every_configured_model_is_built(tmp_path, monkeypatch, capsys, tiny_checkpoint):
    configs = tmp_path / "archive_configs"
    configs.mkdir()
    shutil.copy(ROOT / "archive_configs" / "default.yaml", configs / "default.yaml")
    bad = tmp_path / "bad.pt"
    _garbage(bad)
    (configs / "good.yaml").write_text(f"archive:\n  checkpoint: {tiny_checkpoint}\n  version: '2.5'\nbatchSize: 4\n")
    (configs / "broken.yaml").write_text(f"archive:\n  checkpoint: {bad}\n")
    (configs / "nameless.yaml").write_text("batchSize: 4\n")
    monkeypatch.setattr(archive, "CONFIG_DIR", configs)
    monkeypatch.setattr(archive, "DEFAULT_CONFIG", configs / "default.yaml")
    store = tmp_path / "store"
    assert archive.main(["--export-path", str(store)]) == 1
    captured = capsys.readouterr()
    assert sorted(p.name for p in store.iterdir()) == ["good.mar"]
    assert "model 'broken': checkpoint refused" in captured.err
    assert "model 'nameless': no checkpoint given" in captured.err
    assert "1 of 3 archive(s) built" in captured.out
    with zipfile.ZipFile(store / "good.mar") as mar:
        assert json.loads(mar.read("MAR-INF/MANIFEST.json"))["model"]["modelVersion"] == "2.5"
    assert archive.main(["--model", "good", "--export-path", str(store)]) == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("minWorkers: 3\nmaxWorkers: 2\n", "minWorkers 3 > maxWorkers 2"),
        ("batchSize: 0\n", "batchSize must be a positive integer"),
        ("maxBatchDelay: -1\n", "maxBatchDelay must be an integer >= 0"),
        ("handler:\n  threads: 0\n", "handler.threads' must be a positive integer"),
        ("deviceType: tpu\n", "deviceType must be cpu or gpu"),
        ("- a list\n", "expected a mapping"),
    ],
)
def test_config_mistakes_are_caught_before_archiving(tiny_checkpoint, tmp_path, capsys, text, message):
    own = tmp_path / "own.yaml"
    own.write_text(text)
    assert (
        archive.main(
            [str(tiny_checkpoint), "--name", "m", "--config", str(own), "--export-path", str(tmp_path / "out")]
        )
        == 1
    )
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "m.mar").exists()


def test_merge_is_recursive_and_does_not_alias():
    base = {"a": 1, "handler": {"threads": 1, "device": "auto"}}
    merged = archive.merge(base, {"handler": {"threads": 2}, "b": [1]})
    assert merged == {"a": 1, "handler": {"threads": 2, "device": "auto"}, "b": [1]}
    merged["handler"]["device"] = "cpu"
    assert base["handler"]["device"] == "auto"


def test_repository_model_configs_resolve():
    names = archive.model_config_names()
    assert names, "archive_configs/ names no model"
    for name in names:
        spec = archive.resolve_spec(name)
        assert spec.checkpoint.parent == ROOT / "models", spec
        assert spec.config["batchSize"] >= 1 and "archive" not in spec.config


# -- config.properties -------------------------------------------------------------------------


def test_config_properties_is_safe_and_names_a_configured_default():
    props = serve_config.read_properties()
    for key in ("inference_address", "management_address", "metrics_address"):
        assert props[key].startswith("http://127.0.0.1:"), props[key]
    assert [props[k].rsplit(":", 1)[1] for k in ("inference_address", "management_address", "metrics_address")] == [
        "8080",
        "8081",
        "8082",
    ]
    assert props["metrics_mode"] == "prometheus"
    assert props.get("disable_token_authorization", "false") == "false"
    assert props["enable_model_api"] == "true" and "@MODEL_STORE@" in props["allowed_urls"]
    assert "-Xmx" in props["vmargs"]
    for key in ("max_request_size", "default_response_timeout", "job_queue_size"):
        assert int(props[key]) > 0
    default = props["load_models"].split("=")[-1].removesuffix(".mar")
    assert default in archive.model_config_names()


def test_render_fills_the_model_store_and_applies_overrides(tmp_path):
    store = tmp_path / "my-store.v1"
    text = serve_config.render(store, {"inference_address": "http://127.0.0.1:9", "extra_key": "a\\b"})
    props = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            props[key] = value
    assert "@MODEL_STORE@" not in text
    assert props["model_store"] == str(store.resolve())
    assert props["inference_address"] == "http://127.0.0.1:9" and props["extra_key"] == "a\\\\b"
    # As Java reads it (one level of backslash escapes), the regex matches the store's archives only.
    regex = props["allowed_urls"].replace("\\\\", "\\")
    assert re.fullmatch(regex, f"file://{store.resolve()}/m.mar")
    assert not re.fullmatch(regex, f"file://{store.resolve()}/sub/m.mar")
    assert not re.fullmatch(regex, f"file://{tmp_path.resolve()}/my-store-v1/m.mar")
    assert not re.fullmatch(regex, "https://example.com/m.mar")
