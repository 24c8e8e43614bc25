"""The README's promises, served for real by the session TorchServe (conftest.py).

* Its own examples (the "Inference API" section's curl commands, as requests): examples/
  nasdaq_close.csv (multipart, and raw with the horizon and quantiles headers) and
  examples/portfolio.json to the default model ``alm_quantiles``; examples/sp500_tail.csv
  (multipart ``data``, and ``file`` to version 1.0) and examples/sp500_tail_embeddings.csv
  (raw text/csv) to ``sp500_xlstm``. Each answer is the in-process `Forecaster.predict` answer
  for the same request, exactly (ids and created_at aside).
* ``scripts/client.py --one-request`` run as a command against the live server.
* JSON requests: a ``frequency`` other than "D" fails its series alone, naming it; a request
  whose every series fails is a 200 whose status is "error", every output naming its fault.
* The compiled kernel serves: each served model's describe (``customizedMetadata``) reports
  ``native_kernel`` "native" or "portable" whenever the set-up built the kernel (or CI requires
  it), never the PyTorch fall-back (None).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from alm_forecaster.forecaster import Forecaster, Request
from alm_forecaster.kserve import request_document
from alm_forecaster.testing.synthetic import price_series
from alm_ops import archive
from alm_ops.api import custom_metadata
from alm_ops.launcher import TorchServe
from tests.helpers import ROOT, built_kernels, kernel_expected

EXAMPLES = ROOT / "examples"
QUANTILES, OHLCV = "alm_quantiles", "sp500_xlstm"
#: What the ids and times of a JSON response are replaced with before comparing.
VOLATILE = {"id": "<id>", "created_at": 0}


def masked(value: object) -> object:
    if isinstance(value, dict):
        return {k: VOLATILE[k] if k in VOLATILE else masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    return value


@pytest.fixture(scope="module")
def served(torchserve: TorchServe) -> TorchServe:
    """The two shipped models, registered from their archive configs (archive_configs/)."""
    for model in (QUANTILES, OHLCV):
        if not torchserve.manage("GET", f"/models/{model}").ok:
            assert archive.main(["--model", model, "--export-path", str(torchserve.model_store)]) == 0
        torchserve.checkpoints[model] = ROOT / "models" / f"{model}.pt"
        torchserve.ensure_model(model)
    return torchserve


@pytest.fixture(scope="module")
def offline() -> dict[str, Forecaster]:
    models = (QUANTILES, OHLCV)
    return {model: Forecaster.from_checkpoint(ROOT / "models" / f"{model}.pt", model, device="cpu") for model in models}


def in_process(forecaster: Forecaster, body: bytes, **options) -> tuple[int, dict]:
    [outcome] = forecaster.predict([Request(body, **options)])
    return outcome.status, masked(outcome.body)


def answer(response) -> tuple[int, dict]:
    return response.status_code, masked(response.json())


# -- the README's examples ----------------------------------------------------------------------


def test_readme_nasdaq_example_multipart_and_with_options(served, offline):
    body = (EXAMPLES / "nasdaq_close.csv").read_bytes()
    # curl -F data=@examples/nasdaq_close.csv .../predictions/alm_quantiles
    multipart = served.predict(QUANTILES, files={"data": ("nasdaq_close.csv", body)})
    assert answer(multipart) == in_process(offline[QUANTILES], body)
    assert list(multipart.json()["quantiles"]) == ["0.05", "0.25", "0.5", "0.75", "0.95"]
    # -H 'Content-Type: text/csv' -H 'X-Forecast-Horizon: 3' -H 'X-Forecast-Quantiles: 0.05,0.95'
    headers = {"Content-Type": "text/csv", "X-Forecast-Horizon": "3", "X-Forecast-Quantiles": "0.05,0.95"}
    with_options = served.predict(QUANTILES, data=body, headers=headers)
    assert answer(with_options) == in_process(offline[QUANTILES], body, horizon="3", quantiles="0.05,0.95")
    assert with_options.json()["prediction_horizon"] == 3 and list(with_options.json()["quantiles"]) == ["0.05", "0.95"]


def test_readme_portfolio_json_example(served, offline):
    body = (EXAMPLES / "portfolio.json").read_bytes()
    response = served.predict(QUANTILES, data=body, headers={"Content-Type": "application/json"})
    assert answer(response) == in_process(offline[QUANTILES], body, content_type="application/json")
    document = response.json()
    assert document["status"] == "completed" and document["id"].startswith("resp_")
    assert [o["content"][0]["name"] for o in document["outputs"]] == [i["name"] for i in json.loads(body)["inputs"]]


def test_readme_sp500_examples_ohlcv_embeddings_and_version(served, offline):
    ohlcv = (EXAMPLES / "sp500_tail.csv").read_bytes()
    embeddings = (EXAMPLES / "sp500_tail_embeddings.csv").read_bytes()
    want = in_process(offline[OHLCV], ohlcv)
    # curl -F data=@examples/sp500_tail.csv .../predictions/sp500_xlstm
    assert answer(served.predict(OHLCV, files={"data": ("sp500_tail.csv", ohlcv)})) == want
    # -H 'Content-Type: text/csv' --data-binary @examples/sp500_tail_embeddings.csv
    raw = served.predict(OHLCV, data=embeddings, headers={"Content-Type": "text/csv"})
    assert answer(raw) == in_process(offline[OHLCV], embeddings)
    # curl -F file=@examples/sp500_tail.csv .../predictions/sp500_xlstm/1.0
    assert answer(served.predict(OHLCV, "1.0", files={"file": ("sp500_tail.csv", ohlcv)})) == want


def test_readme_client_one_request_against_the_live_server(served, offline, tmp_path):
    """``scripts/client.py FILES --one-request --quantiles 0.05,0.95`` as a command: one JSON
    request; each file's forecast is the in-process answer to the same document, and a file too
    short for the model (the OHLCV example: 100 rows, 274 needed) fails alone (exit status 1)."""
    files = [EXAMPLES / "nasdaq_close.csv", EXAMPLES / "sp500_tail.csv"]
    command = [sys.executable, str(ROOT / "scripts" / "client.py"), *map(str, files), "--one-request"]
    command += ["--quantiles", "0.05,0.95", "--url", served.inference_url, "--model", QUANTILES]
    command += ["--token-file", str(served.workdir / "key_file.json")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["file"] for line in lines] == [str(f) for f in files]
    assert [line["status"] for line in lines] == [200, 200]  # one request: both its outputs came in it
    # The same request, built here from the files (README: "Adj Close", else "Close"), no horizon.
    inputs = []
    for path in files:
        rows = list(csv.DictReader(path.read_text().splitlines()))
        column = "Adj Close" if "Adj Close" in rows[0] else "Close"
        inputs.append(
            {
                "type": "univariate_time_series",
                "name": str(path),
                "series": [float(row[column]) for row in rows],
                "frequency": "D",
                "start_timestamp": rows[0]["Date"] + "T00:00:00Z",
            }
        )
    document = {"model": QUANTILES, "inputs": inputs, "options": {"quantiles": [0.05, 0.95]}}
    status, want = in_process(offline[QUANTILES], json.dumps(document).encode(), content_type="application/json")
    assert status == 200 and want["status"] == "partial"
    good, short = want["outputs"]
    assert lines[0]["forecast"] == {
        "predicted_prices": good["content"][0]["mean_forecast"],
        "model": QUANTILES,
        "quantiles": good["content"][0]["quantiles"],
        "start_timestamp": good["content"][0]["start_timestamp"],
    }
    assert lines[1]["error"] == short["error"]["message"] and "Need at least 274, got 100" in lines[1]["error"]
    assert f"1 of 2 file(s) failed:\n  {files[1]}: HTTP 200: {short['error']['message']}" in done.stderr


# -- JSON requests: frequencies and an all-error answer -----------------------------------------


def test_json_frequency_other_than_daily_fails_that_series_alone(served, offline):
    series = [(f"s{k}", *price_series(280, seed=70 + k)) for k in range(3)]
    document = request_document(QUANTILES, series, quantiles=[0.05, 0.95])
    document["inputs"][1]["frequency"] = "W"
    document["inputs"][2]["frequency"] = "H"
    body = json.dumps(document).encode()
    response = served.predict(QUANTILES, data=body, headers={"Content-Type": "application/json"})
    assert answer(response) == in_process(offline[QUANTILES], body, content_type="application/json")
    got = response.json()
    assert response.status_code == 200 and got["status"] == "partial"
    assert [o["status"] for o in got["outputs"]] == ["completed", "error", "error"]
    for k, frequency in ((1, "W"), (2, "H")):
        assert got["outputs"][k]["error"] == {
            "code": "422",
            "message": f"inputs[{k}].frequency: {frequency!r} is not supported: "
            "this model forecasts daily series ('D').",
            "param": f"inputs[{k}].frequency",
            "type": "bad_frequency",
        }
        assert got["outputs"][k]["content"] == []


def test_json_request_whose_every_series_fails_is_an_error_response(served, offline):
    series = [(f"s{k}", *price_series(280, seed=80 + k)) for k in range(3)]
    document = request_document(QUANTILES, series)
    document["inputs"][0]["frequency"] = "M"
    document["inputs"][1]["series"] = document["inputs"][1]["series"][:100]
    document["inputs"][2]["series"][5] = -1.0
    body = json.dumps(document).encode()
    response = served.predict(QUANTILES, data=body, headers={"Content-Type": "application/json"})
    assert answer(response) == in_process(offline[QUANTILES], body, content_type="application/json")
    got = response.json()
    assert response.status_code == 200 and got["status"] == "error" and got["model"] == QUANTILES
    assert [o["status"] for o in got["outputs"]] == ["error"] * 3
    assert [(o["error"]["param"], o["error"]["type"]) for o in got["outputs"]] == [
        ("inputs[0].frequency", "bad_frequency"),
        ("inputs[1]", "too_few_rows"),
        ("inputs[2].series[5]", "non_positive_price"),
    ]
    # The worker lives on: the next request is served.
    ok = served.predict(QUANTILES, files={"data": ("n.csv", (EXAMPLES / "nasdaq_close.csv").read_bytes())})
    assert ok.status_code == 200, ok.text


# -- the compiled kernel serves -----------------------------------------------------------------


@pytest.mark.parametrize("model", ["tiny", QUANTILES, OHLCV])
def test_served_workers_run_the_compiled_kernel(served, model):
    """Every worker reports the build it loaded; with the kernel built (or required by CI), a
    worker on the PyTorch fall-back (``native_kernel`` None, which TorchServe leaves out of the
    answer: the library missing from the archive or refused at load) fails here instead of only
    being slower."""
    built_kernels()  # with the kernel expected, both builds must exist (else this fails)
    workers = served.workers(model)
    assert workers and all(w["status"] == "READY" for w in workers), workers
    kernels = set()
    for _ in range(4 * len(workers)):  # describe goes to one worker at a time
        meta = custom_metadata(served.describe(model, customized=True))
        assert meta["device"] == "cpu", meta
        kernels.add(meta.get("native_kernel"))  # None goes missing: TorchServe's JSON drops nulls
    if kernel_expected():
        assert kernels <= {"native", "portable"} and kernels, f"{model}: workers without the compiled kernel: {kernels}"
    else:
        assert kernels <= {"native", "portable", None}, kernels
