"""Shared fixtures, above all a real TorchServe for the server tests.

``torchserve`` (session scope) starts ONE TorchServe for the whole session with
alm_ops.launcher's `start_torchserve` (free loopback ports, its own directories, where
key_file.json lands too), with its own model store holding archives built by alm_ops.archive
from

* ``tiny``: a small deterministic checkpoint (input 8, hidden 16; fast to load and run), whose
  config declares ``output_size: 1`` to exercise the known config/weights disagreement;
  loaded at start;
* ``seed_untrained``: the full-size untrained seed checkpoint (the current default model),
  with archive_configs/seed_untrained.yaml; built, registered and loaded on first
  ``torchserve.ensure_model("seed_untrained")``, so a session that does not need it does
  not pay for it.

It yields the `TorchServe` once the workers are READY and at the end stops the server and
waits for every one of its processes to be gone (a leftover is killed and reported as an
error). Other test modules can use the fixture as is, or `start_torchserve` for a server of
their own.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from alm_forecaster.forecaster import Forecaster
from alm_forecaster.testing.synthetic import TINY, write_checkpoint
from alm_ops import archive
from alm_ops.launcher import TorchServe, start_torchserve
from tests.helpers import ROOT, SEED

#: The session server's models: how to write each checkpoint. ``tiny`` is loaded at start;
#: the full-size ``seed_untrained`` (slower to build and load) only when a test asks for it.
SESSION_MODELS: dict[str, Callable[[Path], Path]] = {
    "tiny": lambda path: write_checkpoint(path, TINY, seed=7, declared_output_size=1),
    "seed_untrained": lambda path: write_checkpoint(path, SEED, seed=0),
}


@pytest.fixture(scope="session")
def torchserve(tmp_path_factory) -> Iterator[TorchServe]:
    """One real TorchServe for the session, serving ``tiny`` (input 8, hidden 16) from the
    start; ``torchserve.ensure_model("seed_untrained")`` adds the full-size seed."""
    workdir = tmp_path_factory.mktemp("torchserve")
    store = workdir / "model_store"
    (workdir / "checkpoints").mkdir()
    tiny = SESSION_MODELS["tiny"](workdir / "checkpoints" / "tiny.pt")
    if archive.main([str(tiny), "--name", "tiny", "--export-path", str(store)]) != 0:
        pytest.fail("build_archive failed for tiny")
    try:
        with start_torchserve(workdir, store, ["tiny"]) as server:
            server.checkpoints["tiny"], server.checkpoint_makers = tiny, SESSION_MODELS
            print(f"\nTorchServe ready in {server.start_to_ready_s:.1f} s ({server.inference_url})")
            yield server
    finally:
        # Keep the logs for a post-mortem; drop the bulky checkpoints, archives and unpacked models.
        for bulky in (store, workdir / "tmp", workdir / "checkpoints"):
            shutil.rmtree(bulky, ignore_errors=True)


def pytest_addoption(parser) -> None:
    parser.addoption(
        "--record-replay",
        action="store_true",
        help="record tests/replay/answers.json anew from the current code (tests/test_replay.py)",
    )


#: The default model (config.properties' load_models), which most served tests ask.
DEFAULT_MODEL = "alm_quantiles"


@pytest.fixture(scope="module")
def served(torchserve: TorchServe) -> TorchServe:
    """The session's TorchServe with the default model registered (a test module that serves
    another model defines its own ``served``)."""
    torchserve.checkpoints[DEFAULT_MODEL] = ROOT / "models" / f"{DEFAULT_MODEL}.pt"
    torchserve.ensure_model(DEFAULT_MODEL)
    return torchserve


@pytest.fixture(scope="module")
def offline() -> Forecaster:
    """The default model in-process: what the served answers must equal."""
    return Forecaster.from_checkpoint(ROOT / "models" / f"{DEFAULT_MODEL}.pt", DEFAULT_MODEL, device="cpu")
