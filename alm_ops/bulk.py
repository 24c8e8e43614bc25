"""Forecast CSV files against a running TorchServe: many at once, with retries, as JSON lines or CSV.

    python scripts/client.py FILE [FILE ...] [--url http://127.0.0.1:8080] [--model NAME[/VERSION]]
           [--concurrency 4] [--format jsonl|csv] [--output PATH] [--plot DIR]
           [--token-file key_file.json] [--retries 4] [--backoff 0.5] [--timeout 60] [--no-progress]
           [--horizon H] [--quantiles 0.05,0.95] [--one-request]

Each file is sent as the multipart field ``data`` (as ``curl -F data=@file.csv``) to
``POST {url}/predictions/{model}[/{version}]``, at most ``--concurrency`` at a time; a progress
bar goes to stderr. Results come out in the order of the files given, one per file, on stdout
(or ``--output``):

* ``--format jsonl`` (default): ``{"file": ..., "status": 200, "forecast": {...}}``, or
  ``{"file": ..., "status": 422, "error": "<the server's message>"}`` for a refused file;
* ``--format csv``: ``file,status,model,model_version,current_price,price_1..price_K,error``.

``--horizon`` and ``--quantiles`` are sent with each file (multipart fields). ``--one-request``
sends every file's prices (a Date column and one price column each) as ONE JSON request in the
shape of KServe's time-series protocol, which the server forecasts in one batched forward; a
bad file fails alone, with the server's message.

``--plot DIR`` writes ``DIR/<file stem>.png`` per forecast file: the input's price history (its
``last_price`` column, else ``close``/``adj close``) with the forecast appended.

Token (``Authorization: Bearer``), first found: ``--token-file`` (TorchServe's key_file.json,
key ``inference``), the environment variable ``ALM_INFERENCE_TOKEN``, the key_file.json of
scripts/serve.sh (.serve/key_file.json). None: requests go without (a server with token
authorisation off). TorchServe's keys expire and rotate: when the server refuses the token
(HTTP 400 InvalidKeyException) and it came from a key file, the file is read again and the
request re-sent once with the new key.

Retries, with exponential backoff (``--backoff`` x 2^attempt, +-10 % jitter, at most 30 s, or
the server's Retry-After) up to ``--retries`` times, ONLY for:

* HTTP 503 (TorchServe: no worker free, queue full, worker restarting) and 507 (out of memory);
* TorchServe's own 500 ``Worker died.`` (body ``{"code", "type", "message": "Worker died."}``):
  the worker holding the request stopped (a scale-down, a killed or crashed worker);
* connection errors (refused, reset, connect timeout): the server is restarting or not up
  yet, or stopped while the request was in flight.

* a read timeout, once: TorchServe 0.12 can lose a request whose worker it stops (a
  scale-down, a killed worker) without ever answering it. A second timeout is reported: the
  server is slow, and more copies would only add load (raise ``--timeout`` instead).

A forecast is a pure function of the file, so re-sending it is safe. Never for 4xx (the file
or the token is wrong: resending cannot help) or the handler's own 500 (``{"error": ...}``: it
failed on this file). Exit status: 0 when every file was forecast, 1 when any failed (they
are listed on stderr with the server's message), 2 for bad arguments or an unreadable token file.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests
from tqdm import tqdm

from alm_forecaster import csv_protocol, kserve, prices
from alm_forecaster.errors import InputError
from alm_forecaster.forecast import Forecast
from alm_forecaster.table import read_table
from alm_ops import book_client, serve_config
from alm_ops.api import TorchServeApi, UsageError, server_message, token_refused, worker_died
from alm_ops.keys import KeyFileError, Token

TOKEN_ENV = "ALM_INFERENCE_TOKEN"
RETRY_STATUSES = (503, 507)
MAX_DELAY_S = 30.0
PRICE_COLUMNS = ("last_price", "close", "adj close", "adj_close")


def backoff_delay(attempt: int, base: float, retry_after: str | None = None) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): the server's Retry-After when it
    gives seconds, else base x 2^attempt with +-10 % jitter; never more than MAX_DELAY_S."""
    if retry_after:
        try:
            return min(max(float(retry_after), 0.0), MAX_DELAY_S)
        except ValueError:
            pass
    delay = base * (2**attempt)
    return min(delay * random.uniform(0.9, 1.1), MAX_DELAY_S)


@dataclass
class Result:
    """The outcome of one file."""

    file: str
    status: int | None = None  # HTTP status; None when no answer came
    answer: dict | None = None  # what the output shows of the server's answer
    forecast: Forecast | None = None  # the forecast that answer encodes (csv_protocol, kserve)
    error: str | None = None
    attempts: int = 0
    payload: bytes | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.forecast is not None

    def to_json(self) -> dict:
        out = {"file": self.file, "status": self.status}
        if self.ok:
            out["forecast"] = self.answer
        else:
            out["error"] = self.error
        return out


class Client:
    """Sends files to one model, from many threads (one HTTP connection each)."""

    def __init__(
        self,
        url: str,
        model: str,
        token: Token,
        retries: int = 4,
        backoff: float = 0.5,
        timeout: float = 60.0,
        keep_payload: bool = False,
        sleep=time.sleep,
    ) -> None:
        self.model, _, version = model.partition("/")
        if not self.model:
            raise UsageError(f"--model must be NAME or NAME/VERSION, got {model!r}")
        self.version = version or None
        self.api = TorchServeApi(inference_url=url, tokens={"inference": token}, timeout=timeout, keep_alive=True)
        self.endpoint = f"{self.api.inference_url}/predictions/{self.model}" + (f"/{version}" if version else "")
        self.retries, self.backoff, self.timeout = retries, backoff, timeout
        self.keep_payload, self.sleep = keep_payload, sleep

    def forecast(self, path: str, options: dict[str, str] | None = None) -> Result:
        """One CSV file, with its options (``horizon``, ``quantiles``) as multipart fields."""
        result = Result(path)
        try:
            payload = Path(path).read_bytes()
        except OSError as exc:
            result.error = f"cannot read the file: {exc.strerror or exc}"
            return result
        if self.keep_payload:  # for the plot
            result.payload = payload
        files = {"data": (Path(path).name, payload, "application/octet-stream")}
        return self._post(result, files=files, data=options or None)

    def forecast_series(self, paths: list[str], horizon: int | None, quantiles: list[float] | None) -> list[Result]:
        """Every file's prices in ONE JSON request (KServe's time-series protocol): one result per
        file, from its output in the answer."""
        series, results = [], {}
        for path in paths:
            try:
                table = read_table(Path(path).read_bytes())
                found = prices.from_table(table, len(table.rows))
                series.append((path, found.dates, found.prices))
            except (OSError, InputError) as exc:
                results[path] = Result(path, error=getattr(exc, "message", None) or f"cannot read the file: {exc}")
        if series:
            document = kserve.request_document(self.model, series, horizon or 5, quantiles)
            if horizon is None:
                document["options"].pop("horizon")
            answer = self._post(Result("(request)"), json=document)
            outputs = (answer.answer or {}).get("outputs") or []
            forecast = answer.forecast
            for i, ((path, *_), output) in enumerate(zip(series, outputs, strict=False)):
                result = Result(path, status=answer.status, attempts=answer.attempts)
                if output["status"] == "completed":
                    content = output["content"][0]
                    result.forecast = forecast.series(i)
                    result.answer = {
                        "predicted_prices": content["mean_forecast"],
                        "model": self.model,
                        "quantiles": content.get("quantiles"),
                        "start_timestamp": content["start_timestamp"],
                    }
                else:
                    result.error = output["error"]["message"]
                results[path] = result
            for path, *_ in series[len(outputs) :]:
                results[path] = Result(path, status=answer.status, error=answer.error or "no output for this series")
        return [results[path] for path in paths]

    def _post(self, result: Result, **body) -> Result:
        """POST to the model with retries on 503/507, ``Worker died.``, connection errors and
        one read timeout; fills ``result``."""
        attempt, timed_out = 0, False
        while True:
            result.attempts += 1
            try:
                # A key the server refuses is read again from its key file and sent once more
                # (TorchServeApi.send): a rotation, not a retry.
                response = self.api.predict(self.model, self.version, **body)
            except requests.exceptions.ReadTimeout:
                if timed_out or attempt >= self.retries:
                    times = "twice" if timed_out else "once"
                    result.error = f"no answer within {self.timeout:g} s, {times} (raise --timeout)"
                    return result
                timed_out = True
                self.sleep(backoff_delay(attempt, self.backoff))
                attempt += 1
                continue
            except requests.ConnectionError as exc:
                if attempt >= self.retries:
                    result.error = (
                        f"cannot connect to {self.endpoint} ({type(exc).__name__}) after {result.attempts} attempt(s)"
                    )
                    return result
                self.sleep(backoff_delay(attempt, self.backoff))
                attempt += 1
                continue
            result.status = response.status_code
            if response.status_code == 200:
                try:
                    result.answer = response.json()
                    protocol = kserve if "outputs" in result.answer else csv_protocol
                    result.forecast = protocol.read_answer(result.answer)
                except (ValueError, KeyError, TypeError) as exc:
                    result.answer = None
                    result.error = f"the server answered 200 without a forecast ({exc}): {response.text[:200]!r}"
                return result
            if (response.status_code in RETRY_STATUSES or worker_died(response)) and attempt < self.retries:
                self.sleep(backoff_delay(attempt, self.backoff, response.headers.get("Retry-After")))
                attempt += 1
                continue
            result.error = server_message(response)
            if token_refused(response):
                result.error += " (the inference token was refused: check --token-file or $" + TOKEN_ENV + ")"
            return result


# -- output ---------------------------------------------------------------------------------------


def csv_rows(results: list[Result]) -> list[list]:
    horizon = max((r.forecast.steps for r in results if r.ok), default=0)
    header = ["file", "status", "model", "model_version", "current_price"]
    header += [f"price_{k}" for k in range(1, horizon + 1)] + ["error"]
    rows = [header]
    for r in results:
        f = r.forecast
        prices = [float(v) for v in f.point[0]] if f else []
        current = float(f.anchors[0]) if f and np.isfinite(f.anchors[0]) else ""
        rows.append(
            [
                r.file,
                "" if r.status is None else r.status,
                f.model if f else "",
                f.version if f else "",
                current,
                *prices,
                *[""] * (horizon - len(prices)),
                r.error or "",
            ]
        )
    return rows


def price_history(payload: bytes) -> tuple[str, list[float]] | None:
    """(column name, prices) of a CSV's last_price, else close / adj close column; None if none."""
    text = payload.decode("utf-8-sig", errors="replace")
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return None
    header = [h.strip().lower() for h in rows[0]]
    for name in PRICE_COLUMNS:
        if name in header:
            col = header.index(name)
            prices = []
            for row in rows[1:]:
                try:
                    prices.append(float(row[col]))
                except (IndexError, ValueError):
                    continue
            return rows[0][col].strip(), prices
    return None


def png_names(files: list[str]) -> list[str]:
    """``<stem>.png`` per input file; ``<stem>_2.png``... for a stem that comes again."""
    names, taken = [], set()
    for file in files:
        stem = Path(file).stem or "forecast"
        name, n = f"{stem}.png", 1
        while name in taken:  # two inputs with the same name from different directories
            n += 1
            name = f"{stem}_{n}.png"
        taken.add(name)
        names.append(name)
    return names


def plot(result: Result, out: Path) -> Path:
    """Write the PNG of one forecast file: its price history, then the forecast appended."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = price_history(result.payload or b"")
    column, prices = history if history else ("price", [])
    forecast = [float(v) for v in result.forecast.point[0]]
    anchor = float(result.forecast.anchors[0])
    current = anchor if np.isfinite(anchor) else (prices[-1] if prices else None)
    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    if prices:
        ax.plot(range(len(prices)), prices, color="tab:blue", label=f"history ({column})")
    start = len(prices) - 1 if prices else 0
    xs = [start, *range(start + 1, start + 1 + len(forecast))]
    ys = [current, *forecast] if current is not None else [forecast[0], *forecast]
    ax.plot(xs, ys, color="tab:orange", marker="o", linestyle="--", label="forecast")
    ax.axvline(start, color="grey", linewidth=0.8, linestyle=":")
    model = f"{result.forecast.model} {result.forecast.version}".strip()
    ax.set_title(f"{Path(result.file).name}: {model}")
    ax.set_xlabel("row (days)")
    ax.set_ylabel("price")
    ax.legend(loc="best")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    plt.close(fig)
    return out


# -- command line ---------------------------------------------------------------------------------


def default_model() -> str | None:
    """The first model that config.properties' load_models starts (the served default)."""
    try:
        models = serve_config.load_models()
    except OSError:
        return None
    return models[0] if models else None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", metavar="FILE", help="CSV files to forecast")
    parser.add_argument(
        "--url",
        default=os.environ.get("ALM_INFERENCE_URL", "http://127.0.0.1:8080"),
        help="inference API (default: $ALM_INFERENCE_URL or http://127.0.0.1:8080)",
    )
    parser.add_argument("--model", default=None, help="NAME or NAME/VERSION (default: the first of load_models)")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight at most (default 4)")
    parser.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    parser.add_argument("--output", type=Path, help="write the results here instead of stdout")
    parser.add_argument("--plot", type=Path, metavar="DIR", help="write a PNG per forecast file into DIR")
    parser.add_argument("--token-file", type=Path, help="TorchServe key_file.json (key 'inference')")
    parser.add_argument(
        "--retries", type=int, default=4, help="retries on 503/507, 'Worker died.' and connection errors (default 4)"
    )
    parser.add_argument("--backoff", type=float, default=0.5, help="first retry delay, s, doubled each time")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for one answer (default 60)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--horizon", type=int, default=None, help="steps to return (default: all the model's)")
    parser.add_argument("--quantiles", default=None, help="comma-separated quantile levels, e.g. 0.05,0.95")
    parser.add_argument(
        "--one-request",
        action="store_true",
        help="send every file's prices as ONE JSON request (KServe time-series protocol; one forward)",
    )
    book_client.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.concurrency < 1 or args.retries < 0 or args.backoff < 0 or args.timeout <= 0:
        parser.error("--concurrency >= 1, --retries >= 0, --backoff >= 0 and --timeout > 0")
    args.model = args.model or default_model()
    if not args.model:
        parser.error("--model is required (no load_models in config.properties)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        client = Client(
            args.url,
            args.model,
            Token.resolve(args.token_file, env_var=TOKEN_ENV),
            args.retries,
            args.backoff,
            args.timeout,
            keep_payload=args.plot is not None,
        )
    except (UsageError, KeyFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    if args.book:
        return book_client.run(client, args)
    options = {k: str(v) for k, v in (("horizon", args.horizon), ("quantiles", args.quantiles)) if v is not None}
    if args.one_request:
        levels = [float(q) for q in args.quantiles.split(",")] if args.quantiles else None
        return report(client.forecast_series(args.files, args.horizon, levels), args)
    results: list[Result | None] = [None] * len(args.files)
    out = open(args.output, "w", newline="") if args.output else sys.stdout  # noqa: SIM115
    written = 0
    plot_names = png_names(args.files)
    try:
        with (
            ThreadPoolExecutor(max_workers=args.concurrency) as pool,
            tqdm(total=len(args.files), file=sys.stderr, unit="file", disable=args.no_progress, desc="forecast") as bar,
        ):
            futures = {pool.submit(client.forecast, path, options): i for i, path in enumerate(args.files)}
            for future in as_completed(futures):
                i = futures[future]
                results[i] = future.result()
                bar.update(1)
                # Stream JSON lines in input order as soon as each prefix is complete.
                if args.format == "jsonl":
                    while written < len(results) and results[written] is not None:
                        out.write(json.dumps(results[written].to_json()) + "\n")
                        out.flush()
                        written += 1
                if args.plot and results[i].ok:
                    try:
                        plot(results[i], args.plot / plot_names[i])
                    except Exception as exc:  # a plot never hides the forecast
                        print(f"warning: no plot for {results[i].file}: {exc}", file=sys.stderr)
                results[i].payload = None
        if args.format == "csv":
            csv.writer(out, lineterminator="\n").writerows(csv_rows(results))
    finally:
        if out is not sys.stdout:
            out.close()
        else:
            out.flush()

    return summary(results)


def report(results: list[Result], args: argparse.Namespace) -> int:
    """The results of a one-request run, written at once in file order."""
    out = open(args.output, "w", newline="") if args.output else sys.stdout  # noqa: SIM115
    try:
        if args.format == "csv":
            csv.writer(out, lineterminator="\n").writerows(csv_rows(results))
        else:
            out.writelines(json.dumps(r.to_json()) + "\n" for r in results)
    finally:
        if out is not sys.stdout:
            out.close()
    return summary(results)


def summary(results: list[Result]) -> int:
    """Exit status 1 and the failed files on stderr when any failed."""
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"{len(failed)} of {len(results)} file(s) failed:", file=sys.stderr)
        for r in failed:
            status = f"HTTP {r.status}" if r.status is not None else "no answer"
            print(f"  {r.file}: {status}: {r.error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
