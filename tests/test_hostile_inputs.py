"""The bad-input corpus, sent through the REAL server (the session TorchServe of conftest.py).

Every case goes out in one burst of 8 concurrent requests: the case in each transport
(multipart ``data`` as bytes and as a ``text/csv`` part, multipart ``file``, raw ``text/csv``
body, raw ``application/octet-stream`` body), filled up with good requests. The model,
``hostile`` (the session's tiny checkpoint under its own name, so that no other test's
scaling or versions disturb its worker), is registered with ONE worker, ``batchSize: 8`` and
``maxBatchDelay: 200`` ms: a burst is ONE batch, so every bad request shares its forward pass
with good ones. For every case:

* each bad request gets the right 4xx and the exact message (column, row, line, counts);
* every good request of the burst gets 200 with the in-process `Forecaster`'s answer;
* the worker's PID is the same before and after (no crash, no restart).

Cases that are valid (BOM, CRLF, extra or reordered columns, a very wide and a very long
file) must give the forecast of the same data sent cleanly.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
import requests

from alm_forecaster.forecaster import Forecaster
from alm_forecaster.testing.synthetic import TINY, embeddings_csv
from alm_ops.launcher import TorchServe
from tests.helpers import assert_forecast, max_request_size, register_model, unregister_model

MODEL = "hostile"
ROWS = 24  # data rows of the base file; the model reads the last 20 (rows 5..24, lines 6..25)
BURST = 8
#: Archive YAML pinning a model to one worker (the shipped default is one per core), for tests
#: that need every request of a burst in the same batch or a known worker to kill.
ONE_WORKER = "minWorkers: 1\nmaxWorkers: 1\n"
HEADER = [f"emb_{i}" for i in range(TINY.input_size)] + ["last_price"]

#: name -> requests kwargs carrying ``body`` the way a client would send it
TRANSPORTS: dict[str, Callable[[bytes], dict]] = {
    "multipart-data": lambda body: {"files": {"data": ("prices.csv", body)}},
    "multipart-data-text": lambda body: {"files": {"data": ("prices.csv", body, "text/csv")}},
    "multipart-file": lambda body: {"files": {"file": ("prices.csv", body)}},
    "text-csv": lambda body: {"data": body, "headers": {"Content-Type": "text/csv"}},
    "octet-stream": lambda body: {"data": body, "headers": {"Content-Type": "application/octet-stream"}},
}
BIG = ("octet-stream", "multipart-file")  # bodies of megabytes: two transports are enough


# -- the registered model ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(torchserve: TorchServe):
    register_model(torchserve, MODEL, torchserve.checkpoint("tiny"), ONE_WORKER + "batchSize: 8\nmaxBatchDelay: 200\n")
    yield torchserve
    unregister_model(torchserve, MODEL)


@pytest.fixture(scope="module")
def offline(torchserve: TorchServe) -> Forecaster:
    return Forecaster.from_checkpoint(torchserve.checkpoint("tiny"), name=MODEL, device="cpu")


# -- building the bodies ---------------------------------------------------------------------


def base(rows: int = ROWS, seed: int = 1) -> bytes:
    return embeddings_csv(rows=rows, input_size=TINY.input_size, seed=seed)


def table(body: bytes) -> list[list[str]]:
    return [line.split(",") for line in body.decode().splitlines()]


def join(rows: list[list[str]], newline: str = "\n", delimiter: str = ",") -> bytes:
    return (newline.join(delimiter.join(row) for row in rows) + newline).encode()


def with_cell(row: int, column: str, value: str, body: bytes | None = None) -> bytes:
    """``body`` (default: the base file) with data row ``row`` (1 = first data row) of ``column`` set."""
    rows = table(body or base())
    rows[row][rows[0].index(column)] = value
    return join(rows)


def without_column(column: str) -> bytes:
    rows = table(base())
    index = rows[0].index(column)
    return join([r[:index] + r[index + 1 :] for r in rows])


def renamed(old: str, new: str) -> bytes:
    rows = table(base())
    rows[0][rows[0].index(old)] = new
    return join(rows)


def reordered() -> bytes:
    rows = table(base())
    return join([r[-1:] + r[:-1][::-1] for r in rows])


def with_extra_columns(count: int, rows: int = ROWS) -> bytes:
    """The base file with ``count`` extra text and number columns (ignored by the contract)."""
    extra = {f"note_{i}": ("x" if i % 2 else "1.5") for i in range(count)}
    return embeddings_csv(rows=rows, input_size=TINY.input_size, seed=1, extra=extra)


def decimal_commas(delimiter: str = ",") -> bytes:
    return join([[cell.replace(".", ",") for cell in row] for row in table(base())], delimiter=delimiter)


def ragged(row: int, drop: bool) -> bytes:
    rows = table(base())
    rows[row] = rows[row][:-1] if drop else rows[row] + ["0.5"]
    return join(rows)


def garbage(size: int = 4096, seed: int = 5) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def utf8_error_at(body: bytes) -> str:
    """The exact encoding message the parser must give for ``body``."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"The file is not valid UTF-8 (byte 0x{body[exc.start]:02x} at offset {exc.start})"
    raise AssertionError("body is valid UTF-8")


def long_file(limit: int) -> bytes:
    """A valid file of ~85% of ``limit`` bytes (tens of thousands of rows)."""
    probe = base(rows=100)
    rows = int(0.85 * limit * 100 / len(probe))
    return base(rows=rows, seed=2)


def wide_file(limit: int) -> bytes:
    """A valid 30-row file with so many extra columns that it is ~60% of ``limit`` bytes."""
    per_column = 4 * 31  # "1.5," or "x," + header name, 31 lines: rough bytes per extra column
    return with_extra_columns(int(0.6 * limit / per_column), rows=30)


# -- the corpus ------------------------------------------------------------------------------


@dataclass
class Case:
    """One hostile body; ``status`` 200 means: accepted, with the forecast of ``same_as``."""

    id: str
    body: Callable[[int], bytes]  # max_request_size -> body
    status: int
    fragment: str | Callable[[bytes], str] = ""
    same_as: Callable[[], bytes] | None = None
    transports: tuple[str, ...] = tuple(TRANSPORTS)
    extra: dict = field(default_factory=dict)


def _(body: bytes) -> Callable[[int], bytes]:
    return lambda _limit: body


W = "Row 10 (line 11)"  # a row inside the model's window
CASES = [
    # --- nothing, or not enough, to forecast
    Case("empty-body", _(b""), 400, "The body is empty: expected a CSV file with a header row."),
    Case("blank-lines-only", _(b"\n  \n\t\r\n"), 400, "The body is empty: expected a CSV file with a header row."),
    Case("header-only", _((",".join(HEADER) + "\n").encode()), 422, "Not enough data points. Need at least 20, got 0"),
    Case("too-few-rows", _(base(rows=15)), 422, "Not enough data points. Need at least 20, got 15"),
    # --- columns
    Case("missing-one-embedding", _(without_column("emb_3")), 422, "Missing required columns: emb_3."),
    Case(
        "no-embedding-columns",
        _(b"date,last_price\n" + b"2024-01-02,100.5\n" * 25),
        422,
        "Missing required columns: emb_0, emb_1, emb_2, emb_3, emb_4, emb_5, emb_6, emb_7.",
    ),
    Case("missing-last-price", _(without_column("last_price")), 422, "Missing required columns: last_price."),
    Case("duplicated-column", _(renamed("emb_5", "emb_2")), 400, "Duplicated column names in the header: emb_2."),
    Case(
        "duplicated-after-trimming",
        _(renamed("emb_5", " emb_2 ")),
        400,
        "Duplicated column names in the header: emb_2.",
    ),
    Case("extra-columns", _(with_extra_columns(3)), 200, same_as=base),
    Case("reordered-columns", _(reordered()), 200, same_as=base),
    # --- cells
    Case("nan-cell", _(with_cell(10, "emb_2", "NaN")), 422, f"{W}, column 'emb_2': 'NaN' is not a finite number."),
    Case("inf-cell", _(with_cell(10, "emb_6", "inf")), 422, f"{W}, column 'emb_6': 'inf' is not a finite number."),
    Case(
        "minus-infinity-price",
        _(with_cell(10, "last_price", "-Infinity")),
        422,
        f"{W}, column 'last_price': '-Infinity' is not a finite number.",
    ),
    Case("empty-cell", _(with_cell(10, "emb_4", "")), 422, f"{W}, column 'emb_4': empty value."),
    Case("blank-cell", _(with_cell(10, "emb_4", "   ")), 422, f"{W}, column 'emb_4': empty value."),
    Case(
        "overflows-float32",
        _(with_cell(10, "emb_1", "1e39")),
        422,
        f"{W}, column 'emb_1': '1e39' overflows float32.",
    ),
    Case(
        "overflows-float64",
        _(with_cell(10, "emb_1", "1e400")),
        422,
        f"{W}, column 'emb_1': '1e400' is not a finite number.",
    ),
    Case("text-in-number", _(with_cell(10, "emb_0", "n/a")), 422, f"{W}, column 'emb_0': 'n/a' is not a number."),
    Case(
        "fullwidth-digit",
        _(with_cell(10, "emb_0", "\uff11.5")),
        422,
        f"{W}, column 'emb_0': '\uff11.5' is not a number.",
    ),
    Case(
        "no-break-space-padding",
        _(with_cell(10, "emb_0", "\u00a00.5")),
        422,
        f"{W}, column 'emb_0': '\\xa00.5' is not a number.",
    ),
    Case("bad-value-before-the-window", _(with_cell(2, "emb_0", "NaN")), 200, same_as=lambda: base()),
    Case(
        "zero-price",
        _(with_cell(ROWS, "last_price", "0")),
        422,
        "Row 24 (line 25), column 'last_price': price must be positive, got 0.",
    ),
    Case(
        "negative-price",
        _(with_cell(10, "last_price", "-12.5")),
        422,
        f"{W}, column 'last_price': price must be positive, got -12.5.",
    ),
    # --- locales, delimiters, quoting
    Case(
        "decimal-comma-quoted",
        _(with_cell(10, "emb_3", '"0,5"')),
        422,
        f"{W}, column 'emb_3': '0,5' is not a number (a decimal comma or a thousands separator?).",
    ),
    Case(
        "decimal-commas-unquoted",
        _(decimal_commas()),
        400,
        "Row 1 (line 2) has 18 fields but the header has 9 (a decimal comma, a thousands separator or a stray "
        "delimiter?).",
    ),
    Case(
        "thousands-separator-quoted",
        _(with_cell(10, "last_price", '"1,234.50"')),
        422,
        f"{W}, column 'last_price': '1,234.50' is not a number (a decimal comma or a thousands separator?).",
    ),
    Case(
        "thousands-separator-unquoted",
        _(with_cell(10, "last_price", "1,234.50")),
        400,
        f"{W} has 10 fields but the header has 9",
    ),
    Case(
        "semicolon-delimiter",
        _(base().replace(b",", b";")),
        400,
        "The header on line 1 is separated by semicolons; the contract is a comma-separated file.",
    ),
    Case(
        "tab-delimiter",
        _(base().replace(b",", b"\t")),
        400,
        "The header on line 1 is separated by tabs; the contract is a comma-separated file.",
    ),
    Case(
        "european-spreadsheet",
        _(decimal_commas(delimiter=";")),
        400,
        "The header on line 1 is separated by semicolons; the contract is a comma-separated file.",
    ),
    Case("ragged-short-row", _(ragged(3, drop=True)), 400, "Row 3 (line 4) has 8 fields but the header has 9"),
    Case("ragged-long-row", _(ragged(7, drop=False)), 400, "Row 7 (line 8) has 10 fields but the header has 9"),
    Case(
        "unbalanced-quote",
        _(with_cell(6, "emb_2", '"0.25')),
        400,
        "Malformed CSV at line 7: unexpected end of data (a quote in the record starting there is never closed).",
    ),
    Case(
        "text-after-quote",
        _(with_cell(6, "emb_2", '"0.25"x')),
        400,
        "Malformed CSV at line 7: ',' expected after '\"'.",
    ),
    # --- encodings and bytes
    Case("utf16-with-bom", _(base().decode().encode("utf-16")), 400, "The file is UTF-16 encoded; send it as UTF-8."),
    Case(
        "utf16-without-bom",
        _(base().decode().encode("utf-16-le")),
        400,
        "The file looks UTF-16 encoded without a byte-order mark (every other byte is NUL); send it as UTF-8.",
    ),
    Case(
        "latin1-bytes",
        _(renamed("last_price", "prix_\u00e9").decode().encode("latin-1")),
        400,
        lambda body: utf8_error_at(body) + "; save it as UTF-8 (it may be Latin-1 or Windows-1252).",
    ),
    Case("utf8-bom", _(b"\xef\xbb\xbf" + base()), 200, same_as=base),
    Case("crlf", _(base().replace(b"\n", b"\r\n")), 200, same_as=base),
    Case("bom-and-crlf", _(b"\xef\xbb\xbf" + base().replace(b"\n", b"\r\n")), 200, same_as=base),
    Case("binary-garbage", _(garbage()), 400, utf8_error_at),
    Case("gzip-compressed-csv", _(gzip.compress(base(), mtime=0)), 400, utf8_error_at),
    Case(
        "nul-bytes",
        _(base()[:40] + b"\x00\x00\x00\x00" + base()[40:]),
        400,
        "The body contains NUL bytes: it is binary data, not a CSV file.",
    ),
    Case(
        "json-as-csv",
        _(b'{"emb_0": [0.1], "last_price": [1.0]}'),
        400,
        "The body looks like JSON; this endpoint expects a CSV file.",
    ),
    Case(
        "json-content-type",
        _(json.dumps({"emb_0": [0.1], "last_price": [1.0]}).encode()),
        400,
        "Not a ForecastRequest: 'model' must be a non-empty string. A JSON body must be KServe's time-series",
        transports=("application-json",),
    ),
    Case(
        "form-urlencoded",  # what `curl --data-binary @f.csv` sends without -H 'Content-Type: ...'
        _(base()),
        400,
        "No CSV found in the request (form fields received: none); send the CSV as a multipart form field",
        transports=("form-urlencoded",),
    ),
    Case("no-content-type-at-all", _(base()), 200, same_as=base, transports=("no-content-type",)),
    # --- size
    Case("very-wide-file", lambda limit: wide_file(limit), 200, transports=BIG),
    Case("very-long-file", lambda limit: long_file(limit), 200, transports=BIG),
]
CASES_BY_ID = {case.id: case for case in CASES}
EXTRA_TRANSPORTS: dict[str, Callable[[bytes], dict]] = {
    "application-json": lambda body: {"data": body, "headers": {"Content-Type": "application/json"}},
    # curl's default for --data-binary: TorchServe form-decodes the body into nothing.
    "form-urlencoded": lambda body: {"data": body, "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
    # No Content-Type header at all (requests sends none for bytes): the raw body arrives as bytes.
    "no-content-type": lambda body: {"data": body},
}


def test_the_corpus_is_big_enough():
    assert len(CASES) >= 30 and len(CASES_BY_ID) == len(CASES)
    assert sum(case.status in (400, 422) for case in CASES) >= 30


# -- sending a burst ---------------------------------------------------------------------------


def burst(
    torchserve: TorchServe, calls: list[dict], model: str = MODEL, delays: list[float] | None = None
) -> list[requests.Response]:
    """Send every call (requests kwargs) at once, from its own thread (call ``i`` waits
    ``delays[i]`` seconds after the common start); responses in order."""
    results: list = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def send(i: int) -> None:
        barrier.wait()
        if delays and delays[i]:
            time.sleep(delays[i])
        try:
            results[i] = torchserve.predict(model, **calls[i])
        except requests.RequestException as exc:  # reported below, not swallowed
            results[i] = exc

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    for i, result in enumerate(results):
        assert isinstance(result, requests.Response), f"request {i}: {result!r}"
    return results


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_input(served, offline, case):
    limit = max_request_size(served)
    body = case.body(limit)
    assert len(body) < limit
    senders = {**TRANSPORTS, **EXTRA_TRANSPORTS}
    bad = [(name, senders[name](body)) for name in case.transports]
    goods = [base(rows=20 + i, seed=40 + i) for i in range(max(BURST - len(bad), 2))]
    pids = [w["pid"] for w in served.workers(MODEL)]

    responses = burst(served, [kwargs for _, kwargs in bad] + [TRANSPORTS["multipart-data"](g) for g in goods])

    expected = offline.predict([body])[0].body if case.status == 200 else None
    clean = offline.predict([case.same_as()])[0].body if case.same_as is not None else None
    for (name, _kwargs), response in zip(bad, responses, strict=False):
        label = f"{case.id} via {name}"
        if expected is not None:
            assert_forecast(response, expected, label)
            if clean is not None:
                assert_forecast(response, clean, label + " (same as the clean file)")
            continue
        assert response.status_code == case.status, (label, response.status_code, response.text[:500])
        assert response.headers["content-type"].startswith("application/json"), label
        error = response.json()
        fragment = case.fragment(body) if callable(case.fragment) else case.fragment
        assert error["code"] == case.status and fragment in error["error"], (label, error)
    for good, response in zip(goods, responses[len(bad) :], strict=True):
        assert_forecast(response, offline.predict([good])[0].body, f"good batch mate of {case.id}")
    assert [w["pid"] for w in served.workers(MODEL)] == pids, f"worker restarted after {case.id}"


def test_body_above_max_request_size_is_refused_by_torchserve(served, offline):
    """One byte over max_request_size: TorchServe's own 413, before any worker sees it; the
    concurrent good request is answered, the worker is untouched."""
    limit = max_request_size(served)
    too_big = b"emb_0,last_price\n" + b"0.5,1.0\n" * (limit // 8)
    too_big = too_big[: limit + 1]
    good = base(seed=77)
    pids = [w["pid"] for w in served.workers(MODEL)]
    at_limit = served.predict(MODEL, data=too_big[:limit], headers={"Content-Type": "application/octet-stream"})
    assert at_limit.status_code != 413, "a body of exactly max_request_size must reach the handler"
    responses = burst(
        served,
        [
            {"data": too_big, "headers": {"Content-Type": "application/octet-stream"}},
            {"files": {"data": ("big.csv", too_big)}},
            TRANSPORTS["text-csv"](good),
        ],
    )
    for response in responses[:2]:
        # TorchServe 0.12 answers this one with an empty body (no JSON error object).
        assert response.status_code == 413, (response.status_code, response.text[:300])
        assert response.content == b"", response.content[:300]
    assert_forecast(responses[2], offline.predict([good])[0].body, "good batch mate of the 413s")
    assert [w["pid"] for w in served.workers(MODEL)] == pids


def test_bad_requests_really_share_a_batch_with_good_ones(served, offline):
    """Proof that the bursts above are batched: the handler logs a refused request with its
    index in the batch; a bad request sent just after 7 good ones has an index > 0."""
    log = served.log_dir / "model_log.log"
    start = log.stat().st_size
    goods = [base(rows=20, seed=90 + i) for i in range(BURST - 1)]
    marker = "n/a-batched-marker"
    bad = with_cell(10, "emb_0", marker)
    calls = [TRANSPORTS["text-csv"](g) for g in goods] + [TRANSPORTS["text-csv"](bad)]
    responses = burst(served, calls, delays=[0.0] * len(goods) + [0.03])  # within maxBatchDelay (200 ms)
    assert responses[-1].status_code == 422 and marker in responses[-1].json()["error"]
    for good, response in zip(goods, responses, strict=False):
        assert_forecast(response, offline.predict([good])[0].body, "batch mate")
    with open(log, "rb") as handle:
        handle.seek(start)
        new = handle.read().decode(errors="replace")
    lines = [line for line in new.splitlines() if MODEL in line and marker in line]
    assert lines, "the handler did not log the refused request"
    indexes = [int(m.group(1)) for line in lines if (m := re.search(r"request (\d+) refused", line))]
    assert indexes and max(indexes) > 0, lines
