"""The soak's uploads: good ones of every kind a model accepts, bad ones with the 4xx each must get.

* `good_payloads`: for a model of daily prices (the default), slices of the shipped NASDAQ closes
  and random walks; for an embeddings model, real OHLCV and embeddings windows;
* `bad_price_payloads`, `bad_payloads`, `malformed_payloads`: empty, wrong delimiter, missing
  column, NaN, too few rows, UTF-16, binary, JSON, a bad date, ... each with its expected status;
* `send_kwargs`: a body in one of the transports (multipart ``data``/``file``, raw text/csv,
  octet-stream).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Payload:
    name: str
    body: bytes
    status: int  # what it must get: 200, or the 4xx of a bad upload
    expected: dict | None = None  # the in-process forecast, for good ones when the checkpoint is here


def good_payloads(input_size: int, seq_len: int, accepts: list[str], rng: np.random.Generator) -> list[Payload]:
    """Distinct valid uploads: slices of the shipped OHLCV example (when the model takes raw
    prices) and embeddings windows (the shipped example's when it fits, random otherwise)."""
    out = []
    ohlcv = ROOT / "examples" / "sp500_tail.csv"
    if "ohlcv" in accepts and ohlcv.exists():
        lines = ohlcv.read_text().splitlines()
        for drop in range(0, len(lines) - 1 - 80 + 1, 2):  # >= 80 rows each (60 lookback + 20)
            out.append(Payload(f"ohlcv-{drop}", ("\n".join(lines[:1] + lines[1 + drop :]) + "\n").encode(), 200))
    shipped = ROOT / "examples" / "sp500_tail_embeddings.csv"
    header = [f"emb_{i}" for i in range(input_size)] + ["last_price"]
    if shipped.exists() and set(header) <= set(shipped.read_text().splitlines()[0].split(",")):
        lines = shipped.read_text().splitlines()
        for drop in range(0, len(lines) - 1 - seq_len + 1, 2):
            out.append(Payload(f"emb-file-{drop}", ("\n".join(lines[:1] + lines[1 + drop :]) + "\n").encode(), 200))
    for k in range(8):
        rows = [",".join(header)]
        price = 100.0 + 10 * k
        for _ in range(seq_len + k):
            price *= 1 + 0.01 * rng.standard_normal()
            rows.append(",".join(f"{v:.6f}" for v in rng.standard_normal(input_size)) + f",{price:.4f}")
        out.append(Payload(f"emb-random-{k}", ("\n".join(rows) + "\n").encode(), 200))
    return out


def price_payloads(rows_needed: int, rng: np.random.Generator) -> list[Payload]:
    """Distinct valid single-price uploads for a model that takes daily prices: slices of the
    shipped NASDAQ closes and seeded random walks, each at least ``rows_needed`` rows long."""
    lines = (ROOT / "examples" / "nasdaq_close.csv").read_text().splitlines()
    out = [
        Payload(f"prices-file-{drop}", ("\n".join(lines[:1] + lines[1 + drop :]) + "\n").encode(), 200)
        for drop in range(0, len(lines) - 1 - rows_needed + 1, 2)
    ]
    for k in range(8):
        days = np.datetime64("2015-01-02") + np.arange(rows_needed + 3 * k)
        prices = 50.0 * (k + 1) * np.exp(np.cumsum(0.01 * rng.standard_normal(len(days))))
        rows = ["Date,Close"] + [f"{day},{price:.4f}" for day, price in zip(days, prices, strict=True)]
        out.append(Payload(f"prices-random-{k}", ("\n".join(rows) + "\n").encode(), 200))
    return out


def bad_price_payloads(good: bytes, rows_needed: int) -> list[Payload]:
    """Bad single-price uploads derived from one good one, with the status each must get."""
    lines = good.decode().splitlines()
    return [
        *malformed_payloads(good.decode()),
        Payload("json-as-csv", b'{"Close": [1.0]}', 400),
        Payload("unbalanced-quote", with_cell(lines, '"0.5', 1), 400),
        Payload("too-few-rows", ("\n".join(lines[: rows_needed // 2]) + "\n").encode(), 422),
        Payload("nan", with_cell(lines, "NaN", 1), 422),
        Payload("text-in-number", with_cell(lines, "n/a", 1), 422),
        Payload("zero-price", with_cell(lines, "0", 1), 422),
        Payload("bad-date", with_cell(lines, "2020-13-45", 0), 422),
        Payload("repeated-date", with_cell(lines, lines[-3].split(",")[0], 0), 422),
    ]


def bad_payloads(good: bytes, seq_len: int) -> list[Payload]:
    """Bad uploads derived from one good embeddings file, with the status each must get."""
    lines = good.decode().splitlines()
    last = lines[0].split(",").index("last_price")
    return [
        *malformed_payloads(good.decode()),
        Payload("json", b'{"emb_0": [1.0]}', 400),
        Payload("unbalanced-quote", with_cell(lines, '"0.5', 1), 400),
        Payload("missing-column", ("\n".join(",".join(line.split(",")[:last]) for line in lines) + "\n").encode(), 422),
        Payload("too-few-rows", ("\n".join(lines[: seq_len // 2]) + "\n").encode(), 422),
        Payload("nan", with_cell(lines, "NaN", 1), 422),
        Payload("text-in-number", with_cell(lines, "n/a", 1), 422),
        Payload("zero-price", with_cell(lines, "0", last), 422),
    ]


def malformed_payloads(text: str) -> list[Payload]:
    """Uploads that are not a usable CSV at all (400 whatever the model)."""
    return [
        Payload("empty", b"", 400),
        Payload("semicolons", text.replace(",", ";").encode(), 400),
        Payload("ragged", (text + "1,2,3\n").encode(), 400),
        Payload("utf16", text.encode("utf-16"), 400),
        Payload("binary", bytes(range(256)) * 8, 400),
    ]


def with_cell(lines: list[str], value: str, column: int) -> bytes:
    """The CSV ``lines`` with ``value`` in ``column`` of the second-to-last row."""
    rows = [line.split(",") for line in lines]
    rows[-2][column] = value
    return ("\n".join(",".join(r) for r in rows) + "\n").encode()


def send_kwargs(transport: str, body: bytes) -> dict:
    if transport == "multipart-data":
        return {"files": {"data": ("prices.csv", body)}}
    if transport == "multipart-file":
        return {"files": {"file": ("prices.csv", body)}}
    if transport == "text-csv":
        return {"data": body, "headers": {"Content-Type": "text/csv"}}
    return {"data": body, "headers": {"Content-Type": "application/octet-stream"}}
