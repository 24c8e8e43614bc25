"""A book request: several aligned series, their exposures, and what to simulate for them.

    JSON: a ForecastRequest whose ``options`` carry ``scenarios`` (kserve.py reads the document)
      {"horizon": 1..250, "quantiles": [levels in (0, 1)],
       "scenarios": {"paths": 10000, "seed": 0, "exposures": {"<input name>": number},
                     "risk_levels": [0.95, 0.99], "return_paths": false}}
    CSV: a wide file Date,<name1>,<name2>,... with the same options as headers (or multipart
      fields): X-Forecast-Horizon, X-Forecast-Quantiles, X-Scenario-Paths, X-Scenario-Seed,
      X-Book-Exposures: a=1e6,b=-5e5, X-Series-Kinds: b=level, X-Risk-Levels, X-Return-Paths
    -> `BookRequest` (validated options, every problem a 422 naming the option and its limit)
    -> the series must be aligned: the same start, the same days, no missing value; a book is
       forecast whole or not at all (a bad series refuses the request, naming it)
    -> the pipeline forecasts every series (steps 1..K at all the model's levels), then
       scenarios.simulate draws the paths and summarises them (risk.py)

An exposure is the book's P&L per unit of change of its series: for a price, the value held
(P&L = exposure x simple return); for a level, the P&L per unit of the series (a yield in
percent: a bond's -DV01 x 100). A series without an exposure is forecast and left out of the
book's P&L.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from alm_forecaster import json_limits
from alm_forecaster.errors import InputError, shown
from alm_forecaster.scenarios import Scenarios, Settings

DEFAULT_PATHS = 10_000
MAX_PATHS = 100_000
MAX_HORIZON = 250
#: paths x steps x series: the work of one book (the largest benchmarked: 10,000 x 250 x 50).
MAX_WORK = 125_000_000
#: paths x steps x series returned with ``return_paths`` (the answer stays under 10 MiB).
MAX_RETURNED = 250_000
DEFAULT_RISK_LEVELS = (0.95, 0.99)
MAX_LEVELS = 99
#: Rows of history a book may carry at most (JSON: json_limits.MAX_VALUES per series).
SCENARIOS = "scenarios"


@dataclass(frozen=True)
class BookRequest:
    """The validated options of a book: the engine's settings, and the exposures by name."""

    horizon: int
    levels: tuple[float, ...]
    paths: int
    seed: int
    risk_levels: tuple[float, ...]
    exposures: dict[str, float]
    return_paths: bool

    def settings(self, names: tuple[str, ...]) -> Settings:
        exposures = np.array([self.exposures.get(name, 0.0) for name in names], dtype=np.float64)
        return Settings(
            self.paths, self.horizon, self.seed, self.levels, self.risk_levels, exposures, self.return_paths
        )


def from_options(options: dict, names: list[str], model_levels: tuple[float, ...]) -> BookRequest:
    """A JSON book's options (``options`` with ``scenarios``), checked against its input names."""
    scenarios = options[SCENARIOS]
    if not isinstance(scenarios, dict):
        raise _bad(f"options.{SCENARIOS}", f"{shown(scenarios)} is not an object", "an object (paths, seed, ...)")
    exposures = scenarios.get("exposures", {})
    if not isinstance(exposures, dict):
        raise _bad("options.scenarios.exposures", f"{shown(exposures)} is not an object", "{input name: number}")
    return _request(
        options.get("horizon"),
        options.get("quantiles"),
        scenarios.get("paths"),
        scenarios.get("seed"),
        exposures,
        scenarios.get("risk_levels"),
        scenarios.get("return_paths"),
        names,
        model_levels,
    )


#: The CSV options of a book: (request field, header); the field wins.
CSV_OPTIONS = {
    "paths": "X-Scenario-Paths",
    "seed": "X-Scenario-Seed",
    "exposures": "X-Book-Exposures",
    "kinds": "X-Series-Kinds",
    "risk_levels": "X-Risk-Levels",
    "return_paths": "X-Return-Paths",
}


def from_fields(
    fields: dict[str, str], horizon: object, quantiles: object, names: list[str], model_levels
) -> BookRequest:  # noqa: ANN001
    """A CSV book's options (strings from headers or multipart fields: ``CSV_OPTIONS``)."""
    exposures = pairs(fields.get("exposures"), "exposures")
    for name, value in exposures.items():
        try:
            exposures[name] = float(value)
        except ValueError:
            raise _bad(f"exposures.{name[:64]}", f"{shown(value)} is not a number", "NAME=NUMBER,...") from None
    flag = fields.get("return_paths")
    if flag is not None:
        flag = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(
            flag.strip().lower(), flag
        )
    return _request(
        horizon,
        quantiles,
        fields.get("paths"),
        fields.get("seed"),
        exposures,
        fields.get("risk_levels"),
        flag,
        names,
        model_levels,
    )


def pairs(value: str | None, option: str) -> dict[str, str]:
    """``a=1e6,b=-5e5`` -> {"a": "1e6", "b": "-5e5"}; a 422 naming the option otherwise."""
    out: dict[str, str] = {}
    for item in [i for i in (value or "").split(",") if i.strip()]:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise _bad(option, f"{shown(item)} is not NAME=VALUE", "NAME=VALUE,NAME=VALUE,...")
        out[name.strip()] = text.strip()
    return out


def _request(horizon, quantiles, paths, seed, exposures, risk_levels, return_paths, names, model_levels) -> BookRequest:  # noqa: ANN001, PLR0913
    horizon = _integer(horizon, "options.horizon", 1, MAX_HORIZON, default=5)
    levels = _levels(quantiles, "options.quantiles", default=model_levels)
    paths = _integer(paths, "options.scenarios.paths", 1, MAX_PATHS, default=DEFAULT_PATHS)
    seed = _integer(seed, "options.scenarios.seed", 0, 2**63 - 1, default=0)
    risk_levels = _levels(risk_levels, "options.scenarios.risk_levels", default=DEFAULT_RISK_LEVELS)
    if return_paths is not None and not isinstance(return_paths, bool):
        raise _bad("options.scenarios.return_paths", f"{shown(return_paths)} is not a boolean", "true or false")
    book: dict[str, float] = {}
    for name, value in exposures.items():
        where = f"options.scenarios.exposures.{name[:64]}"
        if name not in names:
            raise _bad(where, "names no input of the request", f"one of the inputs' names ({_few(names)})")
        if isinstance(value, bool) or not isinstance(value, int | float) or not json_limits.finite_number(value):
            raise _bad(where, f"{shown(value)} is not a finite number", "a number (P&L per unit of change)")
        book[name] = float(value)
    work = paths * horizon * len(names)
    if work > MAX_WORK:
        raise _bad(
            "options.scenarios.paths",
            f"{paths} paths x {horizon} steps x {len(names)} series = {work:,} is over the limit",
            f"at most {MAX_WORK:,} (e.g. 10,000 paths x 250 steps x 50 series)",
        )
    if return_paths and work > MAX_RETURNED:
        raise _bad(
            "options.scenarios.return_paths",
            f"{work:,} values (paths x steps x series) are too many to return",
            f"at most {MAX_RETURNED:,} with return_paths; or return_paths false",
        )
    return BookRequest(horizon, levels, paths, seed, risk_levels, book, bool(return_paths))


def _integer(value: object, param: str, low: int, high: int, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(param, f"{shown(value)} is out of range or not an integer", f"an integer from {low} to {high:,}")
    return value


def _levels(value: object, param: str, default: tuple[float, ...]) -> tuple[float, ...]:
    if value is None:
        return tuple(default)
    items = [v for v in value.replace(" ", "").split(",") if v] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or len(items) > MAX_LEVELS:
        raise _bad(param, f"{shown(value)} is not a list of 1 to {MAX_LEVELS} levels", "levels in (0, 1)")
    levels = []
    for item in items:
        try:
            level = float(item) if not isinstance(item, bool) else math.nan
        except (TypeError, ValueError):
            level = math.nan
        if not 0.0 < level < 1.0:
            raise _bad(param, f"{shown(item)} is not a level", "levels strictly between 0 and 1")
        levels.append(level)
    return tuple(sorted(set(levels)))


def check_aligned(starts: list[np.datetime64 | None], lengths: np.ndarray, names: list[str]) -> None:
    """A book's series share their days: the same start and the same number of values."""
    for i in range(1, len(names)):
        if starts[i] != starts[0]:
            raise InputError(
                f"inputs[{i}].start_timestamp: a book's series must be aligned on the same days; "
                f"{names[i]!r} starts {starts[i]}, {names[0]!r} starts {starts[0]}.",
                reason="book_not_aligned",
                param=f"inputs[{i}].start_timestamp",
            )
        if lengths[i] != lengths[0]:
            raise InputError(
                f"inputs[{i}].series: a book's series must be aligned on the same days; {names[i]!r} has "
                f"{lengths[i]} values, {names[0]!r} {lengths[0]}.",
                reason="book_not_aligned",
                param=f"inputs[{i}].series",
            )


def summary(request: BookRequest, paths: Scenarios, names: tuple[str, ...]) -> dict:
    """The book's part of the answer: its exposures, P&L quantiles, VaR and ES per step (and the
    paths when asked), levels keyed as the series' quantiles are (``"0.01"``)."""
    out = {
        "exposures": {name: request.exposures.get(name, 0.0) for name in names},
        "quantiles": {f"{lv:g}": paths.book[:, j].tolist() for j, lv in enumerate(paths.levels)},
        "var": {f"{lv:g}": paths.var[:, j].tolist() for j, lv in enumerate(paths.risk_levels)},
        "es": {f"{lv:g}": paths.es[:, j].tolist() for j, lv in enumerate(paths.risk_levels)},
        "paths_simulated": request.paths,
        "seed": request.seed,
    }
    if paths.paths is not None:
        out["paths"] = paths.paths.astype(np.float64).tolist()
    return out


def _few(names: list[str], limit: int = 5) -> str:
    shown_names = ", ".join(repr(n) for n in names[:limit])
    return shown_names + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _bad(param: str, problem: str, allowed: str) -> InputError:
    return InputError(f"Option '{param}': {problem}; allowed: {allowed}.", reason="bad_option", param=param)
