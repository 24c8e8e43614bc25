"""What a model reads, by the feature pipeline its checkpoint carries: a request -> model windows.

    no pipeline (the platform's checkpoints)  EmbeddingsInput  emb_0..emb_{D-1} + last_price (contract.py)
    "ohlcv_technical_v1"  (sp500_xlstm)       OhlcvInput       raw daily OHLCV bars (ohlcv_features.py),
                                                               or their embeddings
    "close_v1"            (alm_quantiles)     SeriesInput      one value a day: a CSV (prices.py) or the
                                                               series of a JSON request, as a panel
                                                               (panel.py -> close_features.py)

Each input turns a CSV body into its one window (`csv_window`, raising `InputError` naming the
problem, including a file meant for another kind of model) and the series of a panel into one
window each (`series_windows`: a model that cannot read series refuses each, naming itself).
"""

from __future__ import annotations

from dataclasses import dataclass

from alm_forecaster import close_features, prices
from alm_forecaster.close_features import ClosePipeline
from alm_forecaster.contract import Window, Windows, canonical_header, embedding_window, fast_embedding_window
from alm_forecaster.errors import InputError
from alm_forecaster.kinds import SeriesKind
from alm_forecaster.ohlcv_features import FeaturePipeline, looks_like_ohlcv
from alm_forecaster.panel import Panel
from alm_forecaster.table import Table, decode, read_table


@dataclass(frozen=True)
class EmbeddingsInput:
    """The platform's contract: ``input_size`` embedding columns and ``last_price``."""

    model: str
    input_size: int
    seq_len: int
    accepts: tuple[str, ...] = ("embeddings",)

    @property
    def rows_needed(self) -> int:
        return self.seq_len

    def csv_window(self, body: bytes | bytearray | str, kind: SeriesKind, hint: str = "") -> Window:
        """The usual request (the exact header, plain numbers) takes numpy's reader; any other, and
        every bad one, the checked path that names what is wrong."""
        text = decode(body)
        window = fast_embedding_window(text, canonical_header(self.input_size), self.seq_len)
        return window if window is not None else self._table_window(read_table(text))

    def _table_window(self, table: Table) -> Window:
        if looks_like_ohlcv(table.header):
            raise InputError(
                f"This looks like raw OHLCV prices, but model '{self.model}' has no feature pipeline: send "
                f"embeddings emb_0..emb_{self.input_size - 1} and last_price.",
                reason="ohlcv_unsupported",
            )
        return embedding_window(table, self.input_size, self.seq_len)

    def series_windows(self, panel: Panel) -> Windows:
        refusals = [
            panel.errors[i]
            or InputError(
                f"inputs[{i}]: model '{self.model}' does not forecast from one price a day.",
                reason="prices_unsupported",
                param=f"inputs[{i}]",
            )
            for i in range(len(panel))
        ]
        return [None] * len(panel), refusals


@dataclass(frozen=True)
class OhlcvInput(EmbeddingsInput):
    """Raw daily OHLCV bars through the checkpoint's fitted pipeline, or their embeddings."""

    pipeline: FeaturePipeline | None = None
    accepts: tuple[str, ...] = ("embeddings", "ohlcv")

    @property
    def rows_needed(self) -> int:
        return self.pipeline.rows_needed(self.seq_len)

    def _table_window(self, table: Table) -> Window:
        if looks_like_ohlcv(table.header):
            return self.pipeline.window(table, self.seq_len)
        embeddings = any(name.strip().startswith("emb_") for name in table.header)
        if not embeddings and prices.has_date_column(table.header):
            raise InputError(
                f"Model '{self.model}' needs daily OHLCV bars (Date, Open, High, Low, Close, Volume; any case) or "
                f"embeddings emb_0..emb_{self.input_size - 1} and last_price, not one price a day: for single-price "
                "series use a model that accepts prices (its describe lists 'prices').",
                reason="ohlcv_required",
            )
        return embedding_window(table, self.input_size, self.seq_len)


@dataclass(frozen=True)
class SeriesInput:
    """One value a day: a single-price CSV (or OHLCV read through its close), or JSON series."""

    model: str
    seq_len: int
    pipeline: ClosePipeline
    accepts: tuple[str, ...] = ("prices", "ohlcv", "timeseries_json")

    @property
    def rows_needed(self) -> int:
        return self.pipeline.rows_needed(self.seq_len)

    def csv_window(self, body: bytes | bytearray | str, kind: SeriesKind, hint: str = "") -> Window:
        """A single-price (or OHLCV) table as a series of ``kind``; ``hint`` is how a refused
        price names the option that sends it as a level."""
        text = decode(body)
        panel = prices.fast_panel(text, self.rows_needed, kind)
        if panel is not None:
            windows, errors = self.series_windows(panel)
            if errors[0] is None:
                return windows[0]
        table = read_table(text)  # anything unusual, or a refusal: the checked path names it
        if any(name.strip().startswith("emb_") for name in table.header):
            raise InputError(
                f"Model '{self.model}' forecasts from prices, not embeddings: send a Date column and one price "
                f"column (Close, Adj Close, Price or Value), at least {self.rows_needed} rows.",
                reason="prices_required",
            )
        panel = prices.panel(table, self.rows_needed, self.pipeline.why(self.seq_len, kind.noun), kind, hint)
        windows, errors = self.series_windows(panel)
        if errors[0] is not None:
            raise errors[0]
        return windows[0]

    def series_windows(self, panel: Panel) -> Windows:
        return self.pipeline.windows(panel, self.seq_len)


def model_input(state: dict | None, model: str, input_size: int, seq_len: int) -> EmbeddingsInput | SeriesInput:
    """The input of a checkpoint, by the kind of its ``feature_pipeline`` (None: embeddings)."""
    if not state:
        return EmbeddingsInput(model, input_size, seq_len)
    if state.get("kind") == close_features.KIND:
        return SeriesInput(model, seq_len, ClosePipeline.from_state(state))
    return OhlcvInput(model, input_size, seq_len, pipeline=FeaturePipeline.from_state(state))
