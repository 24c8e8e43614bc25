"""Inputs and references shared by the tests and the benchmarks: deterministic checkpoints and
request CSVs (`synthetic`), and an independent step-by-step forward to check the model
against (`oracle`).

Not part of the serving core: nothing under ``alm_forecaster/*.py`` or ``handlers/`` imports it.
"""
