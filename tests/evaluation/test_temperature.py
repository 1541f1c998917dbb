"""Temperature scaling: the fitted T is the NLL's stationary point; logits made 3x too
confident get T ~ 3 and a lower ECE; one member's T is Guo et al.'s (torch-uncertainty's
TemperatureScaler's) softmax(z / T), and T is scikit-learn's (`CalibratedClassifierCV(method=
"temperature")`); the suite's rows, and its error without a validation split."""
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from torch import nn

from harness.core.errors import UserError
from harness.data import Splits
from harness.data.arrays import ArrayDataset
from harness.evaluation.evaluate import EvalSet, evaluate
from harness.evaluation.metrics import ece, nll
from harness.evaluation.predictors import MemberEnsemble
from harness.evaluation.suites import temperature_scaling
from harness.evaluation.temperature import BOUNDS, fit_temperature, tempered
from harness.experiment.assemble import DataContext


def calibrated(examples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits [N, 10] and labels drawn from their own softmax: calibrated by construction."""
    generator = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(examples, 10, generator=generator, dtype=torch.float64)
    labels = torch.multinomial(logits.softmax(-1), 1, generator=generator).flatten()
    return logits, labels


def test_three_times_too_confident_logits_get_a_temperature_near_3_and_a_lower_ece():
    logits, labels = calibrated(20_000, seed=0)
    temperature = fit_temperature((3 * logits).log_softmax(-1), labels)
    assert temperature == pytest.approx(3, rel=0.05)
    test_logits, test_labels = calibrated(20_000, seed=1)
    raw = (3 * test_logits).log_softmax(-1)
    scaled = tempered(raw, temperature)
    assert ece(scaled, test_labels) < ece(raw, test_labels) / 3
    assert nll(scaled, test_labels) < nll(raw, test_labels)


class TrainedLogits(ClassifierMixin, BaseEstimator):
    """A classifier already trained, for scikit-learn: its inputs are its logits."""

    def fit(self, logits, labels):
        self.classes_ = np.unique(labels)
        return self

    def decision_function(self, logits):
        return logits

    def predict(self, logits):
        return self.classes_[logits.argmax(1)]


def test_the_temperature_is_scikit_learns():
    logits, labels = calibrated(5_000, seed=2)
    logits, labels = 2.5 * logits.numpy(), labels.numpy()
    frozen = FrozenEstimator(TrainedLogits().fit(logits, labels))
    fitted = CalibratedClassifierCV(frozen, method="temperature").fit(logits, labels)
    [scaler] = fitted.calibrated_classifiers_[0].calibrators  # scales logits by beta_ = 1 / T
    ours = fit_temperature(torch.from_numpy(logits).log_softmax(-1), torch.from_numpy(labels))
    assert ours == pytest.approx(1 / scaler.beta_, rel=1e-5)


def test_the_fit_is_where_the_nll_stops_falling():
    log_probs, labels = calibrated(2_000, seed=2)
    log_probs = (1.7 * log_probs).log_softmax(-1)
    temperature = fit_temperature(log_probs, labels)
    inverse = torch.tensor(1 / temperature, dtype=torch.float64, requires_grad=True)
    loss = nn.functional.cross_entropy(inverse * log_probs, labels)
    (gradient,) = torch.autograd.grad(loss, inverse)
    assert abs(float(gradient)) < 1e-7  # d NLL / d(1/T) = 0: convex in 1/T, so the minimum
    for nearby in (0.99 * temperature, 1.01 * temperature):
        assert nll(tempered(log_probs, nearby), labels) > nll(tempered(log_probs, temperature),
                                                              labels)


def test_one_members_temperature_is_guo_et_als_logits_over_t():
    # torch-uncertainty's TemperatureScaler scales one model's logits: softmax(z / T); the
    # ensemble's log-probabilities of one member differ from z by a constant per row
    logits, labels = calibrated(500, seed=3)
    logits = logits + torch.arange(500, dtype=torch.float64).view(-1, 1)  # any row offset
    assert torch.allclose(tempered(logits.log_softmax(-1), 2.5), (logits / 2.5).log_softmax(-1),
                          rtol=0, atol=1e-12)
    assert fit_temperature(logits.log_softmax(-1), labels) == pytest.approx(
        fit_temperature(logits, labels), rel=1e-7)


def test_a_validation_set_without_errors_gets_a_temperature_that_makes_its_nll_zero():
    log_probs = torch.eye(3, dtype=torch.float64).mul(5).log_softmax(-1)
    temperature = fit_temperature(log_probs, torch.arange(3))
    assert BOUNDS[0] <= temperature < 0.2
    assert nll(tempered(log_probs, temperature), torch.arange(3)) == 0.0


def toy_context(seed: int, validation: bool) -> tuple[DataContext, nn.Module]:
    """Images whose 4 pixels a linear network maps to the logits of a calibrated model, with
    labels drawn from those; the network returned is 3x too confident."""
    rng = np.random.default_rng(seed)
    calibrated_layer = nn.Linear(4, 3, bias=False).double()
    calibrated_layer.weight.data = torch.tensor(rng.normal(0, 1.5, (3, 4)))
    sets = []
    for examples in (3000, 3000):
        pixels = torch.from_numpy(rng.integers(0, 256, (examples, 1, 2, 2)).astype(np.uint8))
        with torch.no_grad():
            inputs = ((pixels.double() / 255 - 0.5) / 0.25).flatten(1)
            probs = calibrated_layer(inputs).softmax(-1).numpy()
        labels = torch.tensor([rng.choice(3, p=p / p.sum()) for p in probs])
        sets.append(ArrayDataset(pixels, labels, 3, (0.5,), (0.25,)))
    held_out, test = sets
    overconfident = nn.Linear(4, 3, bias=False)
    overconfident.weight.data = 3 * calibrated_layer.weight.data.float()
    context = DataContext(Splits("toy", test, test), held_out if validation else None, 500,
                          torch.device("cpu"))
    return context, nn.Sequential(nn.Flatten(), overconfident)


def test_the_suite_reports_the_temperature_and_the_scaled_test_numbers_beside_the_raw():
    context, network = toy_context(seed=0, validation=True)
    predictor = MemberEnsemble([network, network])
    (scored,) = temperature_scaling(context)
    rows = pd.DataFrame(scored.score(predictor, False))
    raw = pd.DataFrame(evaluate(predictor, EvalSet(
        "test", "clean", 0, lambda: context.splits.test.eval_batches(500)), False))
    assert (scored.suite, set(rows.corruption), set(rows.member)) == ("test", {"clean"},
                                                                       {"ensemble"})
    values = rows.set_index("metric").value
    raw = raw[raw.member == "ensemble"].set_index("metric").value
    assert values["temperature"] == pytest.approx(3, rel=0.1)
    assert values["nll_ts"] < raw["nll"]
    assert values["ece_ts"] < raw["ece"]


def test_the_suite_without_a_validation_split_names_the_setting_that_makes_one():
    context, _ = toy_context(seed=0, validation=False)
    with pytest.raises(UserError, match=r"Experiment\.validation_fraction > 0"):
        list(temperature_scaling(context))
