"""Per-request forecast options: how many steps, which quantile levels, what kind of series.

A CSV request gives them as headers (``X-Forecast-Horizon: 3``,
``X-Forecast-Quantiles: 0.05,0.95``, ``X-Series-Kind: level``) or multipart fields
(``horizon``, ``quantiles``, ``kind``); a JSON request in its ``options`` object (``horizon``,
``quantiles``) and a ``kind`` on each input (kinds.py: ``price``, the default, or ``level``). TorchServe 0.12 drops the
query string of a POST with a body before the handler sees it, so the query string is not a
place for them.

An option outside what the model can do is a 422 naming the option and the allowed range.
"""

from __future__ import annotations

from dataclasses import dataclass

from alm_forecaster.errors import InputError, shown
from alm_forecaster.kinds import DEFAULT, KINDS, SeriesKind

HORIZON = "horizon"
QUANTILES = "quantiles"
KIND = "kind"
#: Header names (any case) of the options on CSV requests.
HEADERS = {HORIZON: "X-Forecast-Horizon", QUANTILES: "X-Forecast-Quantiles", KIND: "X-Series-Kind"}


@dataclass(frozen=True)
class ForecastOptions:
    """``horizon`` steps (1..K) and ``levels`` (a subset of the model's, or none)."""

    horizon: int
    levels: tuple[float, ...]


def resolve(
    horizon: object, quantiles: object, steps: int, levels: tuple[float, ...] | None, default_levels: bool = True
) -> ForecastOptions:
    """Validate raw options against a model with ``steps`` steps and quantile ``levels`` (None: none).

    ``horizon`` and ``quantiles`` are None when not given; strings (headers, form fields) or
    JSON values otherwise. Without ``quantiles``, all the model's levels when ``default_levels``
    (CSV requests), none otherwise (the JSON protocol returns quantiles only when asked).
    """
    return ForecastOptions(_horizon(horizon, steps), _levels(quantiles, levels, default_levels))


def _horizon(value: object, steps: int) -> int:
    if value is None:
        return steps
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, bool) or not isinstance(text, int | str):
        raise _bad(HORIZON, f"{shown(value)} is not an integer", f"an integer from 1 to {steps}")
    try:
        number = int(text)
    except ValueError:
        raise _bad(HORIZON, f"{shown(value)} is not an integer", f"an integer from 1 to {steps}") from None
    if not 1 <= number <= steps:
        raise _bad(HORIZON, f"{shown(number)} is out of range", f"an integer from 1 to {steps} (this model's steps)")
    return number


def _levels(value: object, levels: tuple[float, ...] | None, default_levels: bool) -> tuple[float, ...]:
    if value is None:
        return tuple(levels or ()) if default_levels else ()
    if levels is None:
        raise _bad(QUANTILES, "this model predicts no quantiles", "no quantiles option for this model")
    allowed = ", ".join(f"{lv:g}" for lv in levels)
    if isinstance(value, str):
        items: list = [item for item in value.replace(" ", "").split(",") if item]
    elif isinstance(value, list):
        items = value
    else:
        raise _bad(QUANTILES, f"{shown(value)} is not a list of levels", f"a subset of {allowed}")
    chosen = []
    for item in items:
        try:
            level = float(item) if not isinstance(item, bool) else None
        except (TypeError, ValueError):
            level = None
        match = next((lv for lv in levels if level is not None and abs(lv - level) < 1e-9), None)
        if match is None:
            raise _bad(QUANTILES, f"{shown(item)} is not one of this model's levels", f"a subset of {allowed}")
        if match not in chosen:
            chosen.append(match)
    if not chosen:
        raise _bad(QUANTILES, "no level given", f"a subset of {allowed}")
    return tuple(sorted(chosen))


def series_kind(
    value: object, served: tuple[str, ...], option: str = f"Option '{KIND}'", param: str | None = None
) -> SeriesKind:
    """The series kind a request names (None: price), if the model serves it; else a 422 naming
    ``option`` (the JSON ``param``) and the allowed values."""
    if value is None:
        return KINDS[DEFAULT]
    name = value.strip().lower() if isinstance(value, str) else None
    if name not in KINDS:
        raise InputError(
            f"{option}: {shown(value)} is not a series kind; allowed: {', '.join(KINDS)}.",
            reason="bad_option",
            param=param,
        )
    if name not in served:
        raise InputError(
            f"{option}: this model does not forecast {name} series; allowed: {', '.join(served)}.",
            reason="bad_option",
            param=param,
        )
    return KINDS[name]


def _bad(option: str, problem: str, allowed: str) -> InputError:
    return InputError(
        f"Option '{option}': {problem}; allowed: {allowed}.", reason="bad_option", param=f"options.{option}"
    )
