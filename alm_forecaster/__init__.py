"""Core of the ALM xLSTM forecasting service: model, checkpoints, data contract, responses.

This package must never import TorchServe: the same code serves the offline CLI, the
benchmarks and the TorchServe handler.
"""
