"""The replay corpus: every served example, the hostile corpus, the price, JSON and level cases.

``replay_requests()`` gives them as in-process requests; tests/test_replay.py answers each and
compares the answer with the one recorded in tests/replay/answers.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from alm_forecaster.testing.synthetic import embeddings_csv, price_csv, price_series
from tests.corpus import CASES

# -- the replay corpus -----------------------------------------------------------------------

#: The byte limit the replayed hostile bodies are sized for (config.properties' max_request_size).
REPLAY_LIMIT = 10 * 1024 * 1024


@dataclass(frozen=True)
class Replay:
    """One in-process request of the replay: which model, the body, its content type and options."""

    id: str
    model: str  # tiny | alm_quantiles | sp500_xlstm | seed_untrained
    body: bytes | dict
    content_type: str | None = None
    horizon: str | None = None
    quantiles: str | None = None
    kind: str | None = None
    scenario: dict | None = None  # a CSV book's options


def _price_lines(rows: int = 300, seed: int = 4) -> list[str]:
    return price_csv(rows, seed=seed).decode().splitlines()


def _joined(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def _price_cases() -> list[Replay]:
    """Single-price CSVs for the quantile model: good ones in several layouts, and each refusal."""
    lines = _price_lines()
    row = lines[100].split(",")
    mutations = {
        "too-few-rows": lines[:200],
        "negative-price": [*lines[:100], lines[100].replace(",", ",-", 1), *lines[101:]],
        "zero-price": [*lines[:100], row[0] + ",0", *lines[101:]],
        "text-price": [*lines[:100], row[0] + ",abc", *lines[101:]],
        "nan-price": [*lines[:100], row[0] + ",nan", *lines[101:]],
        "empty-price": [*lines[:100], row[0] + ",", *lines[101:]],
        "slash-date": [*lines[:100], "2021/05/03," + row[1], *lines[101:]],
        "newest-first": [lines[0], *lines[:0:-1]],
        "repeated-date": [*lines[:100], lines[99], *lines[101:]],
        "no-date-column": ["Close,Volume", *lines[1:]],
        "two-unnamed-columns": ["Date,A,B", *[line + ",1" for line in lines[1:]]],
        "constant-series": [lines[0], *[f"{r.split(',')[0]},100.0" for r in lines[1:]]],
        "adj-close-and-close": ["Date,Adj Close,Close", *[f"{r},{float(r.split(',')[1]) * 1.01!r}" for r in lines[1:]]],
        "value-column": ["observation_date,VALUE", *lines[1:]],
        "only-other-column": ["Date,DCOILWTICO", *lines[1:]],
    }
    cases = [Replay(f"prices/{name}", "alm_quantiles", _joined(body)) for name, body in mutations.items()]
    good = _joined(lines)
    for horizon, quantiles in (("3", None), (None, "0.05,0.95"), ("1", "0.5"), ("0", None), ("6", None)):
        cases.append(Replay(f"prices/options-{horizon}-{quantiles}", "alm_quantiles", good, None, horizon, quantiles))
    for horizon, quantiles in (("two", None), (None, "0.1"), (None, "0.05,x"), (None, ",")):
        cases.append(Replay(f"prices/options-{horizon}-{quantiles}", "alm_quantiles", good, None, horizon, quantiles))
    cases.append(Replay("prices/embeddings-to-a-price-model", "alm_quantiles", embeddings_csv(20, 19)))
    cases.append(Replay("prices/crlf-bom", "alm_quantiles", b"\xef\xbb\xbf" + good.replace(b"\n", b"\r\n")))
    return cases


def _series(name: str, rows: int, seed: int) -> dict:
    days, closes = price_series(rows, seed=seed)
    return {
        "type": "univariate_time_series",
        "name": name,
        "series": [float(c) for c in closes],
        "frequency": "D",
        "start_timestamp": str(days[0]) + "T00:00:00Z",
    }


def _document(*inputs: dict, **options) -> dict:
    document = {"model": "alm_quantiles", "inputs": list(inputs)}
    if options:
        document["options"] = options
    return document


def _json_cases() -> list[Replay]:
    """KServe ForecastRequests for the quantile model: whole, partial, all-error, malformed."""
    a, b, c = _series("a", 300, 20), _series("b", 290, 21), _series("c", 100, 22)
    no_start = {k: v for k, v in _series("d", 280, 23).items() if k != "start_timestamp"}
    documents = {
        "two-series": _document(a, b),
        "two-series-options": _document(a, b, horizon=3, quantiles=[0.05, 0.95]),
        "partial": _document(a, c, {**b, "series": [1.0, -2.0]}, horizon=5, quantiles=[0.05, 0.5, 0.95]),
        "all-error": _document(c, {**a, "frequency": "W"}, {**b, "type": "multivariate_time_series"}),
        "weekly": _document({**a, "frequency": "W"}),
        "no-start-timestamp": _document(no_start, quantiles=[0.5]),
        "bad-timestamp": _document({**a, "start_timestamp": "yesterday"}),
        "text-in-series": _document({**a, "series": [*a["series"][:10], "x", *a["series"][11:]]}),
        "bool-in-series": _document({**a, "series": [True, *a["series"][1:]]}),
        "nan-in-series": _document({**a, "series": [*a["series"][:-1], float("nan")]}),
        "empty-series": _document({**a, "series": []}),
        "series-not-a-list": _document({**a, "series": "1,2,3"}),
        "horizon-9": _document(a, horizon=9),
        "quantile-not-offered": _document(a, quantiles=[0.1]),
        "quantiles-not-a-list": _document(a, quantiles="0.5"),
        "no-model": {"inputs": [a]},
        "inputs-empty": {"model": "m", "inputs": []},
        "inputs-not-a-list": {"model": "m", "inputs": {}},
        "input-not-an-object": {"model": "m", "inputs": [3]},
        "no-name": {"model": "m", "inputs": [{"series": [1.0]}]},
        "duplicate-names": {"model": "m", "inputs": [a, {**b, "name": "a"}]},
        "options-not-an-object": {"model": "m", "inputs": [a], "options": []},
    }
    cases = [Replay(f"json/{name}", "alm_quantiles", doc, "application/json") for name, doc in documents.items()]
    for name, raw in (("not-json", b"{not json"), ("a-list", b"[1, 2]"), ("not-utf8", b'{"model": "\xff"}')):
        cases.append(Replay(f"json/{name}", "alm_quantiles", raw, "application/json"))
    return cases


def _example_cases(examples) -> list[Replay]:  # noqa: ANN001 - the examples/ folder (a Path)
    """The README's served examples, to every model they could be sent to."""
    nasdaq = (examples / "nasdaq_close.csv").read_bytes()
    ohlcv = (examples / "sp500_tail.csv").read_bytes()
    embeddings = (examples / "sp500_tail_embeddings.csv").read_bytes()
    portfolio = json.loads((examples / "portfolio.json").read_text())
    return [
        Replay("examples/nasdaq-close", "alm_quantiles", nasdaq),
        Replay("examples/nasdaq-close-text-csv", "alm_quantiles", nasdaq.decode(), "text/csv"),
        Replay("examples/nasdaq-close-3-steps", "alm_quantiles", nasdaq, None, "3", "0.05,0.95"),
        Replay("examples/portfolio", "alm_quantiles", portfolio, "application/json"),
        Replay("examples/portfolio-as-bytes", "alm_quantiles", json.dumps(portfolio).encode(), "application/json"),
        Replay("examples/sp500-ohlcv-to-quantiles", "alm_quantiles", ohlcv),
        Replay("examples/sp500-ohlcv", "sp500_xlstm", ohlcv),
        Replay("examples/sp500-ohlcv-2-steps", "sp500_xlstm", ohlcv, None, "2"),
        Replay("examples/sp500-ohlcv-quantiles", "sp500_xlstm", ohlcv, None, None, "0.5"),
        Replay("examples/sp500-embeddings", "sp500_xlstm", embeddings),
        Replay("examples/nasdaq-close-to-ohlcv-model", "sp500_xlstm", nasdaq),
        Replay("examples/portfolio-to-ohlcv-model", "sp500_xlstm", portfolio, "application/json"),
        Replay("examples/seed-embeddings", "seed_untrained", embeddings_csv(20, 128)),
        Replay("examples/seed-ohlcv", "seed_untrained", ohlcv),
        Replay("examples/seed-json", "seed_untrained", portfolio, "application/json"),
    ]


def _yields(examples, tenor: str, end: str, rows: int = 300) -> tuple[list[str], list[float]]:  # noqa: ANN001
    """``rows`` daily yields of a Treasury tenor up to ``end`` (data/ beside examples/)."""
    lines = (examples.parent / "data" / "us_treasury_par_yields_1990_2014.csv").read_text().splitlines()
    column = lines[0].split(",").index(tenor)
    rows_ = [(r.split(",")[0], r.split(",")[column]) for r in lines[1:] if r.split(",")[0] < end]
    rows_ = [(d, float(v)) for d, v in rows_ if v][-rows:]
    return [d for d, _ in rows_], [v for _, v in rows_]


def _level_cases(examples) -> list[Replay]:  # noqa: ANN001 - the examples/ folder (a Path)
    """Rates as level series: CSV by kind, the refusals a level can get, JSON of mixed kinds."""
    dates, bills = _yields(examples, "3M", "2009-07-01")
    _, notes = _yields(examples, "2Y", "2015-01-01")
    ust = (examples / "ust_3m.csv").read_bytes()

    def csv(values: list[float], column: str = "Yield") -> bytes:
        return (f"Date,{column}\n" + "".join(f"{d},{v!r}\n" for d, v in zip(dates, values, strict=True))).encode()

    lines = ust.decode().splitlines()
    cells = {name: value for name, value in (("nan", "NaN"), ("inf", "inf"), ("empty", ""))}
    cases = [
        Replay("levels/example-as-level", "alm_quantiles", ust, kind="level"),
        Replay("levels/example-as-level-upper-case", "alm_quantiles", ust, kind=" LEVEL"),
        Replay("levels/example-as-price", "alm_quantiles", ust),
        Replay("levels/zero-bills-as-price", "alm_quantiles", csv(bills, "3M")),
        Replay("levels/zero-bills-as-level", "alm_quantiles", csv(bills, "3M"), kind="level"),
        Replay("levels/negative-notes", "alm_quantiles", csv([v - 3.0 for v in notes]), kind="level"),
        Replay("levels/constant", "alm_quantiles", csv([0.25] * len(dates)), kind="level"),
        Replay("levels/unknown-kind", "alm_quantiles", ust, kind="rate"),
        Replay("levels/kind-on-seed", "seed_untrained", embeddings_csv(20, 128), kind="level"),
        Replay("levels/price-kind-on-seed", "seed_untrained", embeddings_csv(20, 128), kind="price"),
        Replay("levels/kind-on-ohlcv-model", "sp500_xlstm", (examples / "sp500_tail.csv").read_bytes(), kind="level"),
    ]
    for name, cell in cells.items():
        bad = [*lines[:200], lines[200].split(",")[0] + "," + cell, *lines[201:]]
        cases.append(Replay(f"levels/{name}-cell", "alm_quantiles", ("\n".join(bad) + "\n").encode(), kind="level"))
    a = _series("spx", 300, 30)
    level = {**a, "name": "bills", "series": bills, "kind": "level"}
    document = _document(
        a,
        level,
        {**level, "name": "negative", "series": [v - 3.0 for v in notes]},
        {**level, "name": "as-price", "kind": "price"},
        {**level, "name": "no-kind", "kind": None},
        {**level, "name": "odd", "kind": "rate"},
        {**level, "name": "kind-not-a-string", "kind": 3},
        quantiles=[0.05, 0.5, 0.95],
    )
    document["inputs"][4].pop("kind")
    cases.append(Replay("levels/json-mixed-kinds", "alm_quantiles", document, "application/json"))
    return cases


def book_document(examples, rows: int = 320, **scenarios) -> dict:  # noqa: ANN001
    """A book of two synthetic prices and the 10-year yield on the same ``rows`` days."""
    dates, notes = _yields(examples, "10Y", "2015-01-01", rows)
    start = dates[0] + "T00:00:00Z"
    inputs = [{**_series(name, rows, seed), "start_timestamp": start} for name, seed in (("equity", 41), ("oil", 42))]
    inputs.append({**inputs[0], "name": "ust10y", "series": notes, "kind": "level"})
    options = {"horizon": 10, "quantiles": [0.01, 0.5, 0.99]}
    options["scenarios"] = {"paths": 500, "seed": 1, "exposures": {"equity": 1e6, "oil": -5e5, "ust10y": -8e4}}
    options["scenarios"].update(scenarios)
    return {"model": "alm_quantiles", "inputs": inputs, "options": options}


def _book_cases(examples) -> list[Replay]:  # noqa: ANN001 - the examples/ folder (a Path)
    """Books: answered (JSON and CSV), paths returned, and the refusals of a book."""
    good = book_document(examples)
    misaligned = book_document(examples)
    misaligned["inputs"][2]["series"] = misaligned["inputs"][2]["series"][1:]
    heavy = book_document(examples, paths=100_000)
    heavy["options"]["horizon"] = 250
    heavy["inputs"] += [{**item, "name": item["name"] + "-2"} for item in heavy["inputs"]]  # 6 series
    documents = {
        "json": good,
        "return-paths": book_document(examples, paths=20, return_paths=True),
        "misaligned": misaligned,
        "exposure-of-no-input": book_document(examples, exposures={"bond": 1.0}),
        "over-the-work-limit": heavy,
        "horizon-251": {**good, "options": {**good["options"], "horizon": 251}},
        "scenarios-not-an-object": {**good, "options": {**good["options"], "scenarios": [1]}},
    }  # fmt: skip
    cases = [Replay(f"books/{name}", "alm_quantiles", doc, "application/json") for name, doc in documents.items()]
    cases.append(Replay("books/on-a-point-model", "sp500_xlstm", good, "application/json"))
    columns = zip(*(item["series"] for item in good["inputs"]), strict=True)
    dates, _ = _yields(examples, "10Y", "2015-01-01", 320)
    table = "Date,equity,oil,ust10y\n" + "".join(
        f"{d},{a!r},{b!r},{c!r}\n" for d, (a, b, c) in zip(dates, columns, strict=True)
    )
    scenario = {"paths": "500", "seed": "1", "exposures": "equity=1e6,oil=-5e5,ust10y=-8e4", "kinds": "ust10y=level"}
    cases.append(
        Replay("books/csv", "alm_quantiles", table.encode(), "text/csv", "10", "0.01,0.5,0.99", None, scenario)
    )
    cases.append(
        Replay(
            "books/csv-bad-exposures",
            "alm_quantiles",
            table.encode(),
            "text/csv",
            scenario={**scenario, "exposures": "equity"},
        )
    )
    return cases


def replay_requests(examples) -> list[Replay]:  # noqa: ANN001 - the examples/ folder (a Path)
    """Every request of the replay, ids unique."""
    hostile = []
    for case in CASES:
        for transport, content_type in (("bytes", None), ("text", "text/csv")):
            body = case.body(REPLAY_LIMIT)
            if transport == "text":
                try:
                    body = body.decode("utf-8")
                except UnicodeDecodeError:
                    continue  # TorchServe hands undecodable text/csv bodies over as bytes
            hostile.append(Replay(f"hostile/{case.id}/{transport}", "tiny", body, content_type))
    cases = _example_cases(examples) + hostile + _price_cases() + _json_cases() + _level_cases(examples)
    cases += _book_cases(examples)
    assert len({case.id for case in cases}) == len(cases)
    return cases
