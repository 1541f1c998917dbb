"""Cached member predictions (harness/evaluation/cached_predictions.py): an ensemble of M' < M members is
scored again from the cache exactly as evaluation scored it, without retraining."""
import numpy as np
import pytest
import torch
from torch import nn

from harness.evaluation.cached_predictions import (PredictionCollector, ensemble_size_curve,
                                                   load_predictions, subensemble_metrics)
from harness.core.errors import UserError
from harness.evaluation.evaluate import EvalSet, evaluate
from harness.evaluation.predictors import MemberEnsemble
from harness.store import paths


def linear_ensemble(members=3, features=5, classes=4):
    torch.manual_seed(0)
    return MemberEnsemble([nn.Linear(features, classes) for _ in range(members)])


def batches(examples=103, features=5, classes=4, size=25):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(examples, features, generator=generator)
    y = torch.randint(0, classes, (examples,), generator=generator)
    return EvalSet("test", "clean", 0, lambda: zip(x.split(size), y.split(size)))


def test_cached_predictions_rescore_like_evaluation(tmp_path):
    predictor, eval_set = linear_ensemble(), batches()
    collector = PredictionCollector()
    rows = evaluate(predictor, eval_set, progress=False, collect=collector)
    collector.write(paths.test_predictions(tmp_path))
    log_probs, labels = load_predictions(tmp_path)
    assert log_probs.shape == (3, 103, 4) and log_probs.dtype == torch.float32
    assert labels.shape == (103,)

    scored = {(row["member"], row["metric"]): row["value"] for row in rows}
    for metric, value in subensemble_metrics(log_probs, labels, range(3)).items():
        assert value == pytest.approx(scored[("ensemble", metric)], abs=1e-6)
    for member in range(3):
        for metric, value in subensemble_metrics(log_probs, labels, [member]).items():
            assert value == pytest.approx(scored[(str(member), metric)], abs=1e-6)


def test_a_smaller_ensemble_is_the_mean_of_its_members_probabilities(tmp_path):
    predictor, eval_set = linear_ensemble(), batches()
    collector = PredictionCollector()
    evaluate(predictor, eval_set, progress=False, collect=collector)
    log_probs = torch.cat(collector.log_probs, dim=1)
    labels = torch.cat(collector.labels)
    pair = log_probs[[0, 2]].double().exp().mean(0)
    expected_nll = float(-pair[torch.arange(len(labels)), labels].log().mean())
    assert subensemble_metrics(log_probs, labels, [0, 2])["nll"] == pytest.approx(
        expected_nll, abs=1e-6)

    curve = ensemble_size_curve(log_probs, labels)
    assert [point["size"] for point in curve] == [1, 2, 3]
    assert curve[1]["accuracy"] == subensemble_metrics(log_probs, labels, [0, 1])["accuracy"]
    individual = [subensemble_metrics(log_probs, labels, [m])["accuracy"] for m in range(3)]
    assert curve[2]["individual_accuracy"] == pytest.approx(np.mean(individual))


def test_a_run_without_cached_predictions_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no cached predictions"):
        load_predictions(tmp_path)
