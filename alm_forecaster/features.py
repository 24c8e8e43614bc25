"""Feature pipeline from raw daily OHLCV prices to embeddings (being written; see issue 4)."""

from __future__ import annotations

from alm_forecaster.contract import Window
from alm_forecaster.table import Table

OHLCV_COLUMNS = ("date", "open", "high", "low", "close", "volume")


def looks_like_ohlcv(header: list[str]) -> bool:
    """A table with Date/Open/High/Low/Close/Volume columns, in any case."""
    names = {name.strip().lower() for name in header}
    return all(column in names for column in OHLCV_COLUMNS)


class FeaturePipeline:
    """Placeholder until the pipeline lands: raw-price input is not accepted yet."""

    @classmethod
    def from_state(cls, state: dict) -> FeaturePipeline:
        raise NotImplementedError("feature pipelines are not supported yet")

    def window(self, table: Table, seq_len: int) -> Window:
        raise NotImplementedError
