"""Books through the real TorchServe: JSON and CSV, answered as in-process, counted in the metrics.

The default model on the session server: a book of two prices and the 10-year yield
(tests/replay_corpus.book_document) sent as KServe JSON and as a wide CSV with the book's
options as headers and as multipart fields, each answer equal to the in-process one (ids and
times aside) and valid under KServe's own models; bad books are 422s naming the option, and
the worker lives; BooksServed and ScenarioPaths count exactly what was served.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest

from alm_forecaster.forecaster import Request
from alm_ops.launcher import TorchServe
from tests.helpers import ROOT, kserve_timeseries
from tests.replay_corpus import book_document

MODEL = "alm_quantiles"
EXAMPLES = ROOT / "examples"
TYPES, _ = kserve_timeseries()
HEADERS = {
    "X-Forecast-Horizon": "10",
    "X-Forecast-Quantiles": "0.01,0.5,0.99",
    "X-Scenario-Paths": "500",
    "X-Scenario-Seed": "1",
    "X-Book-Exposures": "equity=1e6,oil=-5e5,ust10y=-8e4",
    "X-Series-Kinds": "ust10y=level",
}


def masked(body: dict) -> dict:
    body = {**body, "id": "", "created_at": 0}
    body["outputs"] = [{**output, "id": ""} for output in body["outputs"]]
    return body


def wide_csv(document: dict) -> bytes:
    """The book as a wide CSV: Date and one column per input, on the Treasury file's days."""
    columns = zip(*(item["series"] for item in document["inputs"]), strict=True)
    names = ",".join(item["name"] for item in document["inputs"])
    rows = [f"{d},{a!r},{b!r},{c!r}\n" for d, (a, b, c) in zip(_days(document), columns, strict=True)]
    return (f"Date,{names}\n" + "".join(rows)).encode()


def _days(document: dict) -> list[str]:
    """The Treasury file's days of the book (its third input is the 10-year yield)."""
    lines = (ROOT / "data" / "us_treasury_par_yields_1990_2014.csv").read_text().splitlines()
    days = [line.split(",")[0] for line in lines[1:] if line.split(",")[0] < "2015-01-01" and line.split(",")[9]]
    return days[-len(document["inputs"][0]["series"]) :]


def book_counts(served: TorchServe) -> dict[str, float]:
    text = served.metrics()
    counts = {"BooksServed": 0.0, "ScenarioPaths": 0.0}
    for line in text.splitlines():
        for name in counts:
            if line.startswith(name + "{") and f'ModelName="{MODEL}"' in line:
                counts[name] += float(line.rsplit(" ", 1)[1])
    return counts


def test_a_json_book_is_answered_as_in_process(served, offline):
    document = book_document(EXAMPLES)
    answer = served.predict(MODEL, data=json.dumps(document), headers={"Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    TYPES.ForecastResponse.model_validate(body)
    want = offline.predict([Request(document, "application/json")])[0].body
    assert masked(body) == masked(json.loads(json.dumps(want)))
    assert set(body["book"]) == {"exposures", "quantiles", "var", "es", "paths_simulated", "seed"}
    assert len(body["book"]["var"]["0.99"]) == 10 and body["book"]["paths_simulated"] == 500


@pytest.mark.parametrize("carrier", ["headers", "fields"])
def test_a_csv_book_by_headers_or_fields_is_the_json_book(served, offline, carrier):
    document = book_document(EXAMPLES)
    table = wide_csv(document)
    if carrier == "headers":
        answer = served.predict(MODEL, data=table, headers={"Content-Type": "text/csv", **HEADERS})
    else:
        fields = {"horizon": "10", "quantiles": "0.01,0.5,0.99", "paths": "500", "seed": "1"}
        fields |= {"exposures": HEADERS["X-Book-Exposures"], "kinds": HEADERS["X-Series-Kinds"]}
        answer = served.predict(MODEL, files={"data": ("book.csv", table)}, data=fields)
    assert answer.status_code == 200, answer.text
    want = offline.predict([Request(document, "application/json")])[0].body
    assert answer.json()["book"] == json.loads(json.dumps(want["book"]))


def test_bad_books_are_422s_and_the_worker_lives(served):
    pids = {w["pid"] for w in served.workers(MODEL)}
    for change, param in (
        ({"exposures": {"bond": 1.0}}, "options.scenarios.exposures.bond"),
        ({"paths": 0}, "options.scenarios.paths"),
        ({"risk_levels": [0.99, 2]}, "options.scenarios.risk_levels"),
    ):
        answer = served.predict(
            MODEL, data=json.dumps(book_document(EXAMPLES, **change)), headers={"Content-Type": "application/json"}
        )
        assert answer.status_code == 422, answer.text
        error = TYPES.ErrorResponse.model_validate(answer.json()).error
        assert error.param == param and error.code == "422"
    assert {w["pid"] for w in served.workers(MODEL)} == pids


def test_books_and_paths_are_counted(served):
    before = book_counts(served)
    document = book_document(EXAMPLES, paths=300)
    for _ in range(2):
        answer = served.predict(MODEL, data=json.dumps(document), headers={"Content-Type": "application/json"})
        assert answer.status_code == 200
    wanted = {"BooksServed": before["BooksServed"] + 2, "ScenarioPaths": before["ScenarioPaths"] + 600}
    deadline = time.monotonic() + 15  # the front end folds the worker's metric lines in asynchronously
    while book_counts(served) != wanted and time.monotonic() < deadline:
        time.sleep(0.2)
    assert book_counts(served) == wanted


def test_the_client_sends_a_book(served, offline, tmp_path):
    """scripts/client.py --book, as a command: the JSON answer, then the book's table as CSV."""
    document = book_document(EXAMPLES)
    path = tmp_path / "book.csv"
    path.write_bytes(wide_csv(document))
    base = [sys.executable, str(ROOT / "scripts" / "client.py"), str(path), "--book", "--model", MODEL]
    base += ["--url", served.inference_url, "--token-file", str(served.workdir / "key_file.json")]
    base += ["--exposures", HEADERS["X-Book-Exposures"], "--kinds", "ust10y=level", "--horizon", "10"]
    base += ["--quantiles", "0.01,0.5,0.99", "--paths", "500", "--seed", "1"]
    done = subprocess.run(base, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    line = json.loads(done.stdout)
    want = offline.predict([Request(document, "application/json")])[0].body
    assert line["status"] == 200 and line["forecast"]["book"] == json.loads(json.dumps(want["book"]))
    table = subprocess.run([*base, "--format", "csv"], capture_output=True, text=True, timeout=120)
    rows = [row.split(",") for row in table.stdout.splitlines()]
    assert rows[0] == ["step", "q0.01", "q0.5", "q0.99", "var0.95", "var0.99", "es0.95", "es0.99"]
    assert len(rows) == 11 and float(rows[10][5]) == pytest.approx(want["book"]["var"]["0.99"][9])
    refused = subprocess.run([*base[:-8], "--exposures", "bond=1"], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "options.scenarios.exposures.bond" in refused.stderr


def test_the_readme_book_example(served):
    """README's curl of examples/book.csv, its headers read from README.md itself."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Books: joint scenarios")
    block = readme[start : readme.index("```\n", readme.index("```bash", start) + 7)]
    headers = dict(h.split(": ", 1) for h in re.findall(r"-H '([^']+)'", block) if ": " in h)
    assert "X-Book-Exposures" in headers and headers["X-Forecast-Horizon"] == "250"
    answer = served.predict(MODEL, data=(EXAMPLES / "book.csv").read_bytes(), headers=headers)
    assert answer.status_code == 200, answer.text
    book = answer.json()["book"]
    assert len(book["var"]["0.99"]) == 250 and len(answer.json()["outputs"]) == 4
    assert all(es >= var > 0 for es, var in zip(book["es"]["0.99"], book["var"]["0.99"], strict=True))
