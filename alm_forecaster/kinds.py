"""Series kinds: what the values of a series are, and how they change.

    values (a request's series) --check--> refused where the kind forbids a value
           --coordinates--> additive coordinates y (changes y[t+h] - y[t] are what is modelled)
    forecast changes --values(anchor, changes)--> the series' own units again

* ``price`` (the default): positive values; y = log(price), so a change is a log return and a
  forecast is ``anchor * exp(change)`` (written ``anchor * (1 + expm1(change))``, the form the
  served answers have always been computed in). Zero or a negative value is refused, and the
  refusal names the option that fixes it when the series is a level.
* ``level``: any finite value, zero and negative included (interest rates, spreads, basis,
  breakevens); y = the value itself, so a change is a difference in the series' own units
  (percentage points for a yield in percent) and a forecast is ``anchor + change``. Every
  feature of a level series is a difference, so a level shifted by a constant is forecast
  exactly as before, shifted: the model cannot read the sign of a rate as information.

Everything downstream (features, standardisation, quantiles, baselines) works on y only, so a
new kind is a new `SeriesKind` here and nothing else.
"""

from __future__ import annotations

import numpy as np

from alm_forecaster.errors import InputError

DEFAULT = "price"


class SeriesKind:
    """One kind of series: which values it allows and its additive coordinates."""

    name: str
    #: What its values are called in messages ("the last 274 prices do not move").
    noun: str

    def invalid(self, values: np.ndarray) -> np.ndarray:
        """Mask of the (finite) values this kind refuses."""
        raise NotImplementedError

    def refusal(self, where: str, value: float, param: str | None = None, hint: str = "") -> InputError:
        """The error for a refused ``value`` at ``where`` (a row and column, or a JSON path);
        ``hint`` says how to send the series as another kind."""
        raise NotImplementedError

    def check(self, values: np.ndarray, where, hint: str = "") -> None:  # noqa: ANN001 - where(i) names value i
        """Raise the refusal of the first value this kind does not allow."""
        bad = np.flatnonzero(self.invalid(values))
        if bad.size:
            raise self.refusal(where(int(bad[0])), float(values[bad[0]]), hint=hint)

    def coordinates(self, values: np.ndarray) -> np.ndarray:
        """The additive coordinates y of ``values`` (float64)."""
        raise NotImplementedError

    def values(self, anchor: np.ndarray | float, changes: np.ndarray) -> np.ndarray:
        """Values ``changes`` away from ``anchor`` in y (the caller broadcasts)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<series kind {self.name}>"


class Price(SeriesKind):
    """Positive values, modelled in log returns."""

    name = "price"
    noun = "prices"

    def invalid(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values) <= 0

    def refusal(self, where: str, value: float, param: str | None = None, hint: str = "") -> InputError:
        if hint:
            hint = f"; if this series is a rate, a spread or another level that can be zero or negative, {hint}"
        return InputError(
            f"{where}: price must be positive, got {value:g}{hint}.", reason="non_positive_price", param=param
        )

    def coordinates(self, values: np.ndarray) -> np.ndarray:
        return np.log(np.asarray(values, dtype=np.float64))

    def values(self, anchor: np.ndarray | float, changes: np.ndarray) -> np.ndarray:
        return anchor * (1.0 + np.expm1(changes))


class Level(SeriesKind):
    """Any finite value, modelled in differences."""

    name = "level"
    noun = "values"

    def invalid(self, values: np.ndarray) -> np.ndarray:
        return np.zeros(np.shape(values), dtype=bool)

    def refusal(self, where: str, value: float, param: str | None = None, hint: str = "") -> InputError:
        raise AssertionError("a level refuses no finite value")  # pragma: no cover - invalid() is all False

    def coordinates(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype=np.float64)

    def values(self, anchor: np.ndarray | float, changes: np.ndarray) -> np.ndarray:
        return anchor + changes


PRICE = Price()
LEVEL = Level()
KINDS: dict[str, SeriesKind] = {PRICE.name: PRICE, LEVEL.name: LEVEL}
