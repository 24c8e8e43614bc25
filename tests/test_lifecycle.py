"""The lifecycle CLI (alm_ops.lifecycle, scripts/lifecycle.py) against the real TorchServe of the
session: a model ``life`` (two versions built from small checkpoints) registered, made default,
scaled, listed and unregistered."""

from __future__ import annotations

import json

import pytest
import yaml

from alm_forecaster.testing.synthetic import TINY, embeddings_csv, write_checkpoint
from alm_ops import archive, lifecycle
from alm_ops.launcher import TorchServe
from tests.helpers import ROOT, Scripted


@pytest.fixture(scope="module")
def archives(torchserve: TorchServe, tmp_path_factory) -> dict[str, str]:
    """``life`` 1.0 and 2.0 in the server's model store: version -> archive file name."""
    directory = tmp_path_factory.mktemp("life")
    made = {}
    for seed, version in enumerate(("1.0", "2.0"), start=40):
        checkpoint = write_checkpoint(directory / f"life_{version}.pt", TINY, seed=seed)
        name = f"life_{version.replace('.', '_')}"
        args = [str(checkpoint), "--name", "life", "--version", version, "--archive-name", name]
        assert archive.main([*args, "--export-path", str(torchserve.model_store)]) == 0
        made[version] = f"{name}.mar"
    return made


@pytest.fixture
def cli(torchserve, capsys, monkeypatch):
    """lifecycle.main with the session server's URL and key file; returns (status, stdout, stderr)."""
    monkeypatch.delenv(lifecycle.TOKEN_ENV, raising=False)

    def run(*argv: str, token_file: bool = True) -> tuple[int, str, str]:
        extra = ["--url", torchserve.management_url]
        if token_file:
            extra += ["--token-file", str(torchserve.workdir / "key_file.json")]
        code = lifecycle.main([*argv, *extra])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_register_default_scale_list_unregister(torchserve, archives, cli):
    try:
        code, out, err = cli("register", archives["1.0"], "--wait", "--timeout", "90")
        assert code == 0, err
        shipped = yaml.safe_load((ROOT / "archive_configs" / "default.yaml").read_text())["minWorkers"]
        assert out.strip() == f"life 1.0: {shipped}/{shipped} READY"  # the archive's minWorkers
        code, out, err = cli("register", archives["2.0"], "--workers", "1", "--wait", "--timeout", "90")
        assert code == 0 and out.strip() == "life 2.0: 1/1 READY", err
        assert [w["status"] for w in torchserve.workers("life", "2.0")] == ["READY"]

        window = embeddings_csv(rows=20, input_size=TINY.input_size, seed=1)
        served = lambda: torchserve.predict("life", files={"data": ("w.csv", window)}).json()["model_version"]  # noqa: E731
        assert served() == "1.0"
        code, out, err = cli("set-default", "life", "2.0")
        assert code == 0 and out.strip() == "life: default version 1.0 -> 2.0 (1/1 READY)", err
        assert 'to "2.0"' in err  # TorchServe's own words
        assert served() == "2.0"

        code, out, err = cli("scale", "life/2.0", "--min", "2", "--timeout", "90")
        assert code == 0, err
        assert out.strip() == "life 2.0: 1 -> 2/2 READY (min 2, max 2)"  # TorchServe: max defaults to min
        code, out, err = cli("scale", "life/2.0", "--min", "1", "--max", "3", "--timeout", "90")
        assert code == 0 and out.strip() == "life 2.0: 2 -> 2/2 READY (min 1, max 3)", err  # within range: kept
        code, out, err = cli("scale", "life/2.0", "--min", "1", "--timeout", "90")
        assert code == 0 and out.strip() == "life 2.0: 2 -> 1/1 READY (min 1, max 1)", err  # down to exactly 1
        assert len(torchserve.workers("life", "2.0")) == 1

        code, out, err = cli("list")
        assert code == 0, err
        lines = {tuple(line.split()[:3]) for line in out.splitlines()}
        assert ("life", "1.0", f"{shipped}/{shipped}") in lines
        assert ("life", "2.0", "*") in lines and ("tiny", "1.0", "*") in lines
        code, out, err = cli("list", "--json")
        listed = {(d["modelName"], d["modelVersion"]): d for d in json.loads(out)}
        assert listed[("life", "2.0")]["default"] and not listed[("life", "1.0")]["default"]
        assert listed[("life", "1.0")]["customizedMetadata"]["model_version"] == "1.0"
        assert listed[("life", "2.0")]["maxWorkers"] == 1

        code, out, err = cli("describe", "life/1.0")
        assert code == 0, err
        described = json.loads(out)
        assert described["modelVersion"] == "1.0" and described["customizedMetadata"]["config"]["input_size"] == 8

        code, out, err = cli("unregister", "life")  # the default version, while 1.0 exists: refused
        assert code == 1 and "error: HTTP 403: Cannot remove default version for model life" in err
        code, out, err = cli("scale", "life/1.0", "--min", "0", "--timeout", "90")
        assert code == 0, err
        code, out, err = cli("set-default", "life", "1.0")  # no worker would answer: refused
        assert code == 1 and "error: life 1.0 has no workers (min 0): scale it first" in err
        code, out, err = cli("unregister", "life", "1.0", "--drain", "0.5")  # not the default: drained first
        assert code == 0 and 'Model "life" unregistered' in out, err
        assert "life 1.0: no queued request for 0.5 s" in err
        code, out, err = cli("unregister", "life", "--all")
        assert code == 0, err
        assert torchserve.manage("GET", "/models/life").status_code == 404
    finally:
        for version in ("1.0", "2.0"):
            torchserve.manage("PUT", f"/models/life/{version}/set-default")
            other = "2.0" if version == "1.0" else "1.0"
            torchserve.manage("DELETE", f"/models/life/{other}")
        torchserve.manage("DELETE", "/models/life")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["describe", "nope"], "error: HTTP 404: Model not found: nope"),
        (["set-default", "tiny", "9.9"], "error: HTTP 404: Model version: 9.9 does not exist for model: tiny"),
        (["register", "missing.mar", "--wait"], "error: HTTP 404: Model not found at: missing.mar"),
        (["scale", "nope", "--min", "1"], "error: HTTP 404: Model not found: nope"),
        (["unregister", "nope"], "error: HTTP 404: Model not found: nope"),
    ],
)
def test_a_bad_call_shows_the_servers_message(torchserve, cli, argv, message):
    code, out, err = cli(*argv)
    assert code == 1 and out == ""
    assert err.strip().splitlines()[-1] == message


def test_token_from_the_environment(torchserve, cli, monkeypatch):
    monkeypatch.setenv(lifecycle.TOKEN_ENV, torchserve.keys["management"])
    code, out, err = cli("describe", "tiny", token_file=False)
    assert code == 0 and json.loads(out)["modelName"] == "tiny", err
    monkeypatch.setenv(lifecycle.TOKEN_ENV, torchserve.keys["inference"])  # the wrong kind of key
    code, out, err = cli("describe", "tiny", token_file=False)
    assert code == 1 and "HTTP 400: Token Authorization failed" in err and lifecycle.TOKEN_ENV in err


def test_a_rotated_management_key_is_read_again(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(lifecycle.TOKEN_ENV, raising=False)
    keys = tmp_path / "key_file.json"
    keys.write_text(json.dumps({"management": {"key": "old"}}))

    def rotate():
        keys.write_text(json.dumps({"management": {"key": "new"}}))

    description = [{"modelName": "m", "modelVersion": "1.0", "workers": []}]
    with Scripted([(200, description)], accept_token="new", on_refused=rotate).running() as server:
        code = lifecycle.main(["describe", "m", "--url", server.url, "--token-file", str(keys)])
    assert code == 0, capsys.readouterr().err
    assert server.seen == ["Bearer old", "Bearer new"]
    assert json.loads(capsys.readouterr().out)["modelName"] == "m"
