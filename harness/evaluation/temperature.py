"""Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks"): one
scalar T > 0, fitted by minimising the NLL on the run's validation split (the split held out
of the training set by `Experiment.validation_fraction`, which checkpoint selection reads
too), then applied to the test set.

T divides the ensemble's log-probabilities, p_T = softmax(log p_ens / T), p_ens the mean of
the members' probabilities (metrics.py): the ensemble is pooled, then calibrated. It does not
divide each member's logits before averaging (torch-uncertainty's TemperatureScaler put on
every member: calibrate, then pool), because
* T then acts on the very prediction that `nll` and `ece` score, for every predictor alike
  (members, MC-dropout passes, BatchEnsemble's rows), whatever the scale of its logits;
* for one member it is Guo et al.'s softmax(z / T) exactly: log_softmax(z) differs from z by
  a constant per row, which the softmax drops; so a single model's T is torch-uncertainty's;
* pooling first calibrates ensembles better (Rahaman & Thiery 2021, "Uncertainty
  Quantification and Deep Ensembles"): averaging already makes them less confident, and
  members scaled one by one compound into an under-confident mean.

The fit is a bounded Brent search (scipy.optimize.minimize_scalar) over log T in
[log 1e-2, log 1e2], in float64: the NLL is convex in 1/T (a log-sum-exp of a linear function
minus a linear one), hence unimodal in log T, and the search needs no start or step size. A
validation split the ensemble classifies without error has its NLL fall towards 0 as T -> 0,
reaching 0 in float64 at some small T: the fit returns a T of that flat stretch, as confident
a prediction as the split can ask for.
"""
import math

import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar

from harness.evaluation.metrics import at_least_float32

BOUNDS = (1e-2, 1e2)


def tempered(log_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """Log-probabilities [B, C] at temperature T: log softmax(log_probs / T)."""
    return (at_least_float32(log_probs) / temperature).log_softmax(-1)


def fit_temperature(log_probs: torch.Tensor, labels: torch.Tensor) -> float:
    """The T in `BOUNDS` minimising the mean NLL of `tempered(log_probs, T)` for `labels`."""
    log_probs = log_probs.double()

    def nll(log_temperature: float) -> float:
        return float(F.cross_entropy(log_probs / math.exp(log_temperature), labels))

    found = minimize_scalar(nll, bounds=tuple(map(math.log, BOUNDS)), method="bounded",
                            options={"xatol": 1e-9})
    return math.exp(found.x)
