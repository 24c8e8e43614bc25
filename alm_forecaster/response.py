"""Model outputs (simple returns) -> predicted prices -> the API's response object."""

from __future__ import annotations

import numpy as np

from alm_forecaster.errors import InputError


def returns_to_prices(returns: np.ndarray, current_price: float) -> list[float]:
    """``predicted_prices[k] = current_price * (1 + returns[k])``."""
    return [float(current_price * (1.0 + r)) for r in returns.astype(np.float64)]


def forecast_response(returns: np.ndarray, current_price: float, model: str, version: str) -> dict:
    """The response object of one forecast; a non-finite output is refused, never sent."""
    prices = returns_to_prices(returns, current_price)
    if not np.isfinite(prices).all():
        raise InputError(
            "The model produced a non-finite forecast for this window; its inputs are probably far "
            "outside the range the model was trained on.",
            reason="non_finite_output",
        )
    return {
        "predicted_prices": prices,
        "prediction_horizon": len(prices),
        "current_price": float(current_price),
        "model": model,
        "model_version": version,
    }
