"""A TorchServe handler that answers every request with the same small JSON forecast and does
nothing else: what TorchServe itself costs per request on this machine (bench/many_series.py
measures its throughput beside the forecaster's). No model, no parsing."""

from __future__ import annotations

import json
import os

from ts.torch_handler.base_handler import BaseHandler

# As the forecaster's handler does: TorchServe hands the body over undecoded (no json.loads of
# a 6 MB request in the worker), so this measures transport, not decoding.
os.environ["TS_DECODE_INPUT_REQUEST"] = "false"

ANSWER = json.dumps({"predicted_prices": [1.0, 1.0, 1.0, 1.0, 1.0], "prediction_horizon": 5})


class ConstantHandler(BaseHandler):
    """One constant answer per request of the batch."""

    def initialize(self, context) -> None:  # noqa: ANN001 - TorchServe's Context
        self.initialized = True

    def handle(self, data: list, context) -> list[str]:  # noqa: ANN001
        return [ANSWER] * len(data)
