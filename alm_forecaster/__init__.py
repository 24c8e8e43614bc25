"""Core of the ALM xLSTM forecasting service: model, checkpoints, data contract, responses.

This package must never import TorchServe: the same code serves the offline CLI, the
benchmarks and the TorchServe handler. Its modules import only the standard library, numpy
and torch. The subpackages `alm_forecaster.train` (training, evaluation) and
`alm_forecaster.testing` (test inputs and references) are not part of serving, and nothing in
the core imports them.
"""
