"""Predictive metrics, the one place their conventions live (paper App. D).

* Ensemble prediction = mean of the members' softmax probabilities (paper §3.2), computed in
  log space: log p_ens = logsumexp_m(log p_m) - log M.
* NLL = -log p_ens(y), averaged over every example of the set (no dropped remainder).
* ECE (Naeini et al. 2015), the uncertainty-baselines / robustness_metrics convention: 15
  equal-width bins on [0, 1], example i in bin floor(15 * conf_i) (confidence 1 in the last),
  confidence = max of the (ensemble) probabilities, accumulated over the whole set, then
  sum_b |acc_b - conf_b| * n_b / N. (The FreeTickets code used linspace(0, 1, 15) edges, i.e.
  14 bins; we do not.)
* Brier score = sum over classes of (p_c - onehot_c)^2, averaged over examples
  (uncertainty-baselines' convention, range [0, 2]).
* Diversity (paper §5.1): prediction disagreement = fraction of examples on which two members'
  top-1 predictions differ; KL = mean over examples of KL(p_i || p_j). A run's diversity is the
  mean over every ordered pair of members (`member_pairs`): KL is asymmetric and the authors'
  `ensemble_freetickets.py` ('KD' mode) averages both directions of each pair, six values for
  M = 3. Every diversity number we print (Tables 4, 5, 7-10, Figures 2 and 4) takes this mean.

Metrics stream: `MetricSums` accumulates additive sums batch by batch, so a 50k-image set
never needs its probabilities in memory; the whole-set functions below use the same sums.
"""
import itertools
import math

import torch

ECE_BINS = 15


def ensemble_log_probs(member_logits: torch.Tensor) -> torch.Tensor:
    """[M, B, C] member logits -> [B, C] log of the mean of member probabilities."""
    members = member_logits.shape[0]
    log_probs = at_least_float32(member_logits).log_softmax(-1)
    return torch.logsumexp(log_probs, dim=0) - math.log(members)


def at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    """Half-precision logits (AMP) are scored in float32; float64 stays float64."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


class MetricSums:
    """Additive sufficient statistics of accuracy, NLL, Brier and ECE over a stream."""

    def __init__(self, n_bins: int = ECE_BINS, device: torch.device | str = "cpu"):
        self.n_bins = n_bins
        self.count = 0
        zeros = lambda *shape: torch.zeros(*shape, dtype=torch.float64, device=device)
        self.correct, self.nll, self.brier = zeros(()), zeros(()), zeros(())
        self.bin_count, self.bin_confidence, self.bin_correct = (zeros(n_bins), zeros(n_bins),
                                                                 zeros(n_bins))

    def update(self, log_probs: torch.Tensor, labels: torch.Tensor) -> "MetricSums":
        """log_probs [B, C] (log-probabilities, rows summing to 1 in prob space), labels [B]."""
        log_probs = log_probs.double()
        probs = log_probs.exp()
        confidence, prediction = probs.max(dim=1)
        correct = (prediction == labels).double()
        self.count += labels.shape[0]
        self.correct += correct.sum()
        self.nll -= log_probs.gather(1, labels.view(-1, 1)).sum()
        onehot = torch.nn.functional.one_hot(labels, probs.shape[1]).double()
        self.brier += (probs - onehot).square().sum()
        bins = (confidence * self.n_bins).floor().long().clamp_(0, self.n_bins - 1)
        self.bin_count.index_add_(0, bins, torch.ones_like(confidence))
        self.bin_confidence.index_add_(0, bins, confidence)
        self.bin_correct.index_add_(0, bins, correct)
        return self

    def result(self) -> dict[str, float]:
        if self.count == 0:
            raise ValueError("no examples were evaluated")
        gaps = (self.bin_correct - self.bin_confidence).abs().sum() / self.count
        return {"accuracy": float(self.correct / self.count),
                "nll": float(self.nll / self.count),
                "ece": float(gaps),
                "brier": float(self.brier / self.count)}


def member_pairs(members: int) -> list[tuple[int, int]]:
    """The ordered pairs (i, j), i != j, that a mean pairwise diversity averages over (the
    convention above): both directions of the asymmetric KL."""
    return list(itertools.permutations(range(members), 2))


def kl_divergence(log_probs_i: torch.Tensor, log_probs_j: torch.Tensor) -> torch.Tensor:
    """KL(p_i || p_j) summed over every axis but the first (classes; for feature maps also the
    spatial positions) and over the rows of the first: the caller divides by the rows."""
    log_probs_i, log_probs_j = log_probs_i.double(), log_probs_j.double()
    return (log_probs_i.exp() * (log_probs_i - log_probs_j)).sum()


class PairSums:
    """Disagreement and KL divergence between two members, streamed (paper §5.1)."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.count = 0
        self.disagree = torch.zeros((), dtype=torch.float64, device=device)
        self.kl = torch.zeros((), dtype=torch.float64, device=device)

    def update(self, log_probs_i: torch.Tensor, log_probs_j: torch.Tensor) -> "PairSums":
        log_probs_i, log_probs_j = log_probs_i.double(), log_probs_j.double()
        self.count += log_probs_i.shape[0]
        self.disagree += (log_probs_i.argmax(1) != log_probs_j.argmax(1)).sum()
        self.kl += kl_divergence(log_probs_i, log_probs_j)
        return self

    def result(self) -> dict[str, float]:
        return {"disagreement": float(self.disagree / self.count),
                "kl": float(self.kl / self.count)}


def _whole_set(log_probs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    return MetricSums(device=log_probs.device).update(log_probs, labels).result()


def accuracy(log_probs: torch.Tensor, labels: torch.Tensor) -> float:
    return _whole_set(log_probs, labels)["accuracy"]


def nll(log_probs: torch.Tensor, labels: torch.Tensor) -> float:
    return _whole_set(log_probs, labels)["nll"]


def ece(log_probs: torch.Tensor, labels: torch.Tensor) -> float:
    return _whole_set(log_probs, labels)["ece"]


def brier(log_probs: torch.Tensor, labels: torch.Tensor) -> float:
    return _whole_set(log_probs, labels)["brier"]


def entropy(log_probs: torch.Tensor) -> torch.Tensor:
    """Predictive entropy -sum_c p_c log p_c of each row of log-probabilities [B, C] -> [B]."""
    return torch.special.entr(at_least_float32(log_probs).exp()).sum(-1)  # 0 log 0 = 0


def auroc(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """Area under the ROC curve of scores meant to rank `positive` above `negative` (OoD
    detection, paper App. K: in-distribution examples are the positives): the Mann-Whitney U
    statistic over n_pos * n_neg, ties counting one half (as sklearn's roc_auc_score)."""
    scores = torch.cat([positive.flatten(), negative.flatten()]).double()
    _, inverse, counts = torch.unique(scores, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    ranks = (ends - (counts.double() - 1) / 2)[inverse]  # average 1-based rank among ties
    n_pos, n_neg = positive.numel(), negative.numel()
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUROC needs positive and negative examples")
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
