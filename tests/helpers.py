"""Helpers shared by the test modules (the fixtures are in conftest.py): paths, models built and
registered for one test, answers compared with the in-process forecast or the OpenAPI
document, a scripted HTTP server standing in for TorchServe, the tools the tests run (PyPI's,
never skipped; Debian's, skipped only outside CI: `unavailable`)."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NoReturn
from unittest import mock

import pytest
import requests
from ts.context import Context, RequestProcessor

from alm_forecaster import native
from alm_forecaster.config import ModelConfig
from alm_ops import archive, serve_config
from alm_ops.api import ApiError
from alm_ops.launcher import TorchServe

ROOT = Path(__file__).resolve().parent.parent
#: Set by .ci/run: everything the project promises must be there. A test that would skip because
#: a tool, a file or a build is missing fails instead (`unavailable`). GPU-marked tests still skip
#: without CUDA, and the bf16 ones without AVX512-BF16: hardware, not something to install.
REQUIRE_TOOLS = "ALM_REQUIRE_TOOLS"
SEED = ModelConfig()  # the platform's full size: input 128, hidden 256, 3 layers, 7 blocks, 5 steps
OPENAPI = ROOT / "docs" / "openapi.yaml"


def build_archive_cli(checkpoint: Path, name: str, store: Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """scripts/build_archive.py run as a command, as an operator would: exit status and stderr."""
    command = [sys.executable, str(ROOT / "scripts" / "build_archive.py"), str(checkpoint), "--name", name]
    return subprocess.run([*command, "--export-path", str(store)], capture_output=True, text=True, timeout=300, cwd=cwd)


def register_model(
    torchserve: TorchServe, name: str, checkpoint: Path, config: str, workers: int = 1, timeout: float = 120
) -> list[dict]:
    """Build ``name`` from ``checkpoint`` with ``config`` (YAML merged over the defaults) with
    alm_ops.archive, register it on the session server and wait for READY workers."""
    yaml_path = torchserve.workdir / f"{name}.yaml"
    yaml_path.write_text(config)
    argv = [str(checkpoint), "--name", name, "--config", str(yaml_path), "--export-path", str(torchserve.model_store)]
    assert archive.main(argv) == 0
    torchserve.register(f"{name}.mar", initial_workers=workers)
    return torchserve.wait_ready(name, count=workers, timeout=timeout)


def unregister_model(torchserve: TorchServe, name: str) -> None:
    """Unregister ``name`` whatever its state, and drop its archive."""
    with contextlib.suppress(ApiError):
        torchserve.unregister(name)
    (torchserve.model_store / f"{name}.mar").unlink(missing_ok=True)


def max_request_size(torchserve: TorchServe) -> int:
    return int(serve_config.read_properties(torchserve.workdir / "config.properties")["max_request_size"])


def assert_forecast(response: requests.Response, expected: dict, label: str) -> None:
    """A 200 with exactly ``expected`` (the in-process forecast; prices to 1e-5 relative)."""
    assert response.status_code == 200, (label, response.status_code, response.text[:500])
    body = response.json()
    assert body.keys() == expected.keys(), label
    assert body["predicted_prices"] == pytest.approx(expected["predicted_prices"], rel=1e-5), label
    assert {k: v for k, v in body.items() if k != "predicted_prices"} == {
        k: v for k, v in expected.items() if k != "predicted_prices"
    }, label


@functools.cache
def openapi_schema():
    """docs/openapi.yaml as schemathesis reads it (imported here: only a few modules need it)."""
    import schemathesis

    return schemathesis.openapi.from_path(OPENAPI)


def validate(operation: str, response: requests.Response) -> None:
    """One real response checked against the document (status listed, content type, schema)."""
    openapi_schema()[operation]["POST"].validate_response(response)


class Scripted:
    """A loopback HTTP server answering each POST with the next (status, body) of ``script``
    (the last one repeats; a third element: seconds to wait before answering), recording each
    request's Authorization header."""

    def __init__(self, script: list[tuple], accept_token: str | None = None, on_refused=None) -> None:
        self.script, self.accept_token, self.on_refused = list(script), accept_token, on_refused
        self.seen: list[str | None] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                auth = self.headers.get("Authorization")
                outer.seen.append(auth)
                if outer.accept_token and auth != f"Bearer {outer.accept_token}":
                    if outer.on_refused:
                        outer.on_refused()
                    status, body = (
                        400,
                        {
                            "code": 400,
                            "type": "InvalidKeyException",
                            "message": "Token Authorization failed. Token either incorrect, expired, "
                            "or not provided correctly",
                        },
                    )
                else:
                    status, body, *delay = outer.script.pop(0) if len(outer.script) > 1 else outer.script[0]
                    time.sleep(delay[0] if delay else 0)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST  # noqa: N815

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    @contextlib.contextmanager
    def running(self) -> Iterator[Scripted]:
        thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()
            thread.join(timeout=5)


def tools_required() -> bool:
    """Whether this run must have every tool (CI: ``ALM_REQUIRE_TOOLS=1``)."""
    return os.environ.get(REQUIRE_TOOLS) == "1"


def unavailable(why: str) -> NoReturn:
    """What a test does when something it needs is missing: ``why`` says what and how to install
    it. Skipped on a developer's machine; under ALM_REQUIRE_TOOLS=1 (.ci/run) a failure, so CI
    never passes with the test silently skipped."""
    if tools_required():
        pytest.fail(f"{why} [{REQUIRE_TOOLS}=1: CI requires it]", pytrace=False)
    pytest.skip(why)


def kernel_expected() -> bool:
    """Whether the compiled kernel must be there: the set-up built it (it made
    alm_forecaster/native/_build/, scripts/build_native.py) or CI requires every tool."""
    return native.BUILD_DIR.is_dir() or tools_required()


def built_kernels() -> list[Path]:
    """The compiled kernel's libraries (native and portable builds). When `kernel_expected`,
    every one must exist: a build that failed (the set-up goes on with one warning line and the
    PyTorch fall-back) fails the caller instead of letting a check on "the kernels there are"
    pass on none."""
    libraries = [native.library_path(variant.name) for variant in native.VARIANTS]
    if kernel_expected():
        missing = [str(path) for path in libraries if not path.is_file()]
        assert not missing, f"the compiled kernel was not built: {missing} (python -m alm_forecaster.native --verbose)"
    return [path for path in libraries if path.is_file()]


def pypi_tool(name: str) -> str:
    """A tool that requirements-dev.txt installs into the virtual environment: never skipped."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        found = shutil.which(name)
        assert found, f"{name} is missing: run scripts/setup_env.sh --dev (requirements-dev.txt pins it)"
        return found
    return str(path)


def debian_tool(name: str, package: str) -> str:
    """A tool from a Debian package (scripts/setup_env.sh --dev installs it): its path, or
    `unavailable` with the install line."""
    found = shutil.which(name)
    if not found:
        unavailable(
            f"{name} is not installed: apt-get install -y --no-install-recommends {package} "
            "(scripts/setup_env.sh --dev does)"
        )
    return found


class CreatesFileWhenUnpickled:
    """A pickled payload whose unpickling calls ``open(marker, "w")``: the marker existing
    proves that it ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def load_handler_module():
    """handlers/xlstm_handler.py as TorchServe imports it: a module loaded from its file."""
    spec = importlib.util.spec_from_file_location("xlstm_handler", ROOT / "handlers" / "xlstm_handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


handler_module = load_handler_module()


def make_context(
    model_dir: Path,
    batch: int,
    yaml: dict | None = None,
    headers: list[dict] | None = None,
    metrics: object | None = None,
) -> Context:
    """TorchServe's own Context for a batch of ``batch`` requests of the tiny model in ``model_dir``."""
    manifest = {
        "model": {
            "modelName": "tiny",
            "modelVersion": "3.1",
            "serializedFile": "tiny.pt",
            "handler": "xlstm_handler.py",
        }
    }
    context = Context(
        "tiny",
        str(model_dir),
        manifest,
        8,
        None,
        "0.12.0",
        metrics=metrics if metrics is not None else mock.MagicMock(),
        model_yaml_config=yaml if yaml is not None else {"handler": {"threads": 1}},
    )
    context.request_processor = [RequestProcessor((headers or [{}] * batch)[i]) for i in range(batch)]
    return context


@functools.cache
def kserve_timeseries():
    """KServe 0.21.0's time-series protocol: its modules ``(types, error)``
    (``kserve/protocol/rest/timeseries/types.py``: the pydantic models, ``ErrorResponse`` among
    them; ``error.py``: ``create_error_response``), as requirements-dev-nodeps.txt installs them.

    ``import kserve`` would run ``kserve/__init__.py``, which imports KServe's whole model server
    (uvicorn, grpcio, kubernetes, ...; not installed: their pins clash with this project's). So
    the four packages above the two modules are registered with their real specs but without
    running their ``__init__.py``; the two files are then imported by their real names, with
    what they import themselves (pydantic, python-dateutil, fastapi, ``kserve.logging``).
    """
    import importlib

    spec = importlib.util.find_spec("kserve")  # finds the package without importing it
    assert spec is not None, "kserve is missing: run scripts/setup_env.sh --dev (requirements-dev-nodeps.txt)"
    directory = Path(spec.submodule_search_locations[0])
    name = "kserve"
    for part in (None, "protocol", "rest", "timeseries"):
        if part:
            name, directory = f"{name}.{part}", directory / part
        if name not in sys.modules:
            package = importlib.util.spec_from_file_location(
                name, directory / "__init__.py", submodule_search_locations=[str(directory)]
            )
            sys.modules[name] = importlib.util.module_from_spec(package)
    return (
        importlib.import_module("kserve.protocol.rest.timeseries.types"),
        importlib.import_module("kserve.protocol.rest.timeseries.error"),
    )
