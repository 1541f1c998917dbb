"""Evaluation: each batch of an evaluation set goes once through the predictor, in inference
mode, and every member's and the ensemble's metrics (and pairwise diversity) are streamed.

A suite is a named group of evaluation sets (clean test, validation, corrupted sets, ...).
Suites register here by name; an experiment chooses its suites in gin
(`Experiment.suites = ('test', ...)`).
"""
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import torch
from tqdm.auto import tqdm

from harness.evaluation.metrics import (MetricSums, PairSums, at_least_float32, ensemble_log_probs,
                             member_pairs)
from harness.evaluation.predictors import Predictor
from harness.core.registry import Registry

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class EvalSet:
    """One set to score: `batches()` yields normalised inputs and labels on the device."""

    suite: str
    corruption: str
    severity: int
    batches: Callable[[], Batches]
    num_batches: int | None = None

    def score(self, predictor: "Predictor", progress: bool = True) -> list[dict]:
        """Rows {member, metric, value}; the same call scores robustness.ScoredSet."""
        return evaluate(predictor, self, progress=progress)


# A suite builder receives the experiment's data context and yields its evaluation sets.
SUITES: Registry[Callable[..., Iterator[EvalSet]]] = Registry("evaluation suite")


@SUITES.register("test")
def clean_test(context) -> Iterator[EvalSet]:
    test = context.splits.test
    size = context.eval_batch_size
    yield EvalSet("test", "clean", 0, lambda: test.eval_batches(size), -(-len(test) // size))


@SUITES.register("validation")
def validation(context) -> Iterator[EvalSet]:
    held_out = context.validation
    if held_out is None:
        raise ValueError("the 'validation' suite needs Experiment.validation_fraction > 0")
    size = context.eval_batch_size
    yield EvalSet("validation", "clean", 0, lambda: held_out.eval_batches(size),
                  -(-len(held_out) // size))


@torch.inference_mode()
def evaluate(predictor: Predictor, eval_set: EvalSet, progress: bool = True,
             collect: Callable[[torch.Tensor, torch.Tensor], None] | None = None
             ) -> list[dict]:
    """Rows {member, metric, value} for one set: member = 'ensemble', each member's index,
    and 'i-j' for each ordered pair i != j (disagreement, kl = KL(p_i || p_j)). Non-finite
    logits are an error naming the member and the set, never a prediction (argmax of NaN is
    class 0). `collect`, if given, receives each batch's member log-probabilities [M, B, C]
    and labels (harness/evaluation/cached_predictions.py caches them)."""
    predictor.eval()
    members = predictor.num_members
    totals: dict[str, MetricSums] = {}
    pairs: dict[tuple[int, int], PairSums] = {}
    batches = tqdm(eval_set.batches(), total=eval_set.num_batches, leave=False,
                   desc=f"eval {eval_set.suite}/{eval_set.corruption}", disable=not progress)
    for images, labels in batches:
        member_logits = predictor(images)
        if member_logits.ndim != 3 or member_logits.shape[:2] != (members, labels.shape[0]):
            raise ValueError(f"{type(predictor).__name__} returned logits of shape "
                             f"{tuple(member_logits.shape)}, expected [M={members}, "
                             f"B={labels.shape[0]}, C]")
        finite = torch.isfinite(member_logits).flatten(1).all(1)
        if not bool(finite.all()):
            member = int((~finite).nonzero()[0])
            raise FloatingPointError(
                f"member {member} of {members} gave non-finite logits (NaN or inf) on "
                f"{eval_set.suite}/{eval_set.corruption} (severity {eval_set.severity}); its "
                f"weights diverged or overflowed: lower Trainer.lr, or use "
                f"Experiment.precision = 'float32' instead of AMP")
        member_log_probs = at_least_float32(member_logits).log_softmax(-1)
        if collect is not None:
            collect(member_log_probs, labels)
        named = {"ensemble": ensemble_log_probs(member_logits)}
        if members > 1:
            named.update({str(m): member_log_probs[m] for m in range(members)})
        for name, log_probs in named.items():
            totals.setdefault(name, MetricSums(device=labels.device)).update(log_probs, labels)
        for i, j in member_pairs(members):
            pairs.setdefault((i, j), PairSums(device=labels.device)).update(
                member_log_probs[i], member_log_probs[j])
    rows = [{"member": name, "metric": metric, "value": value}
            for name, sums in totals.items() for metric, value in sums.result().items()]
    rows += [{"member": f"{i}-{j}", "metric": metric, "value": value}
             for (i, j), sums in pairs.items() for metric, value in sums.result().items()]
    return rows
