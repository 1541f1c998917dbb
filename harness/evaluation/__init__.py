"""Scoring predictors: the metrics (pure functions, one place per convention), the
predictor interface between methods and evaluation, the evaluation suites (clean, corrupted,
ImageNet-A, OoD, FGSM), the training curve, cached predictions, inference timing and what the
members are made of."""
