"""Model outputs (simple returns) -> predicted prices -> the API's response object."""

from __future__ import annotations

import numpy as np

from alm_forecaster.errors import InputError


def returns_to_prices(returns: np.ndarray, current_price: float) -> list[float]:
    """``predicted_prices[k] = current_price * (1 + returns[k])``."""
    return [float(current_price * (1.0 + r)) for r in np.asarray(returns, dtype=np.float64)]


def forecast_response(
    returns: np.ndarray,
    current_price: float,
    model: str,
    version: str,
    horizon: int | None = None,
    quantiles: dict[float, np.ndarray] | None = None,
) -> dict:
    """The response object of one forecast; a non-finite output is refused, never sent.

    ``horizon`` keeps the first steps only; ``quantiles`` maps levels to their returns per step
    and adds ``"quantiles": {"0.05": [prices], ...}`` (keys are the levels as decimal strings).
    """
    steps = len(returns) if horizon is None else horizon
    prices = returns_to_prices(returns[:steps], current_price)
    by_level = {f"{level:g}": returns_to_prices(r[:steps], current_price) for level, r in (quantiles or {}).items()}
    if not (np.isfinite(prices).all() and all(np.isfinite(v).all() for v in by_level.values())):
        raise InputError(
            "The model produced a non-finite forecast for this window; its inputs are probably far "
            "outside the range the model was trained on.",
            reason="non_finite_output",
        )
    body = {
        "predicted_prices": prices,
        "prediction_horizon": len(prices),
        "current_price": float(current_price),
        "model": model,
        "model_version": version,
    }
    if by_level:
        body["quantiles"] = by_level
    return body
