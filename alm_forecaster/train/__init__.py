"""Training and evaluation of xLSTM forecasters: data sources, the trainer, the evaluator and
the forecast scores they share.

Not part of the serving core: it needs pandas, tqdm, matplotlib and the `arch` datasets, which
a server does not install, so nothing under ``alm_forecaster/*.py`` or ``handlers/`` imports it.
"""
