"""Robustness and uncertainty under shift: the evaluation suites behind the paper's corrupted
and natural-adversarial columns (Tables 1-3: cAcc, cNLL, cECE, aAcc, aNLL, aECE; App. D), OoD
detection (App. K) and FGSM robustness (App. L), and the summaries tables read from a run's
metrics.parquet.

Suites (choose in gin: `Experiment.suites = ('test', 'generated_c', 'ood', 'fgsm')`):

    cifar10_c, cifar100_c  the published sets (cifar10_c.data_dir: the folder holding
                           CIFAR-10-C/; downloaded with its MD5 when absent)
    generated_c            CIFAR-10-C-style corruptions of the experiment's own test split,
                           made by harness.data.corrupt (cached under generated_c.cache_dir),
                           or a folder it wrote (generated_c.path); never the published set
    imagenet_val, imagenet_c, imagenet_a
                           ImageNet folders streamed from disk (harness/data/imagenet.py)
    ood                    AUROC of in- vs out-of-distribution (ood.sets)
    fgsm                   accuracy under FGSM crafted on each member (fgsm.epsilon_255)

Rows: one per (corruption, severity) with severity 1-5 (0 where there is none); for `ood` the
corruption column names the OoD set, for `fgsm` the attacked member ('from_member_<m>').
"""
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import gin
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from harness.data import corrupt, corruptions
from harness.data.arrays import ArrayDataset
from harness.data.cifar_c import open_folder, published_folder
from harness.data.imagenet import (ImageNetLoader, check_classes, class_folders,
                                   download_imagenet_a, download_imagenet_c,
                                   imagenet_a_classes)
from harness.data.facts import FAMILIES, facts
from harness.data.ood import load_ood_set
from harness.data.sources import DEFAULT_DATA_DIR
from harness.errors import UserError, check_number
from harness.evaluate import SUITES, EvalSet, evaluate
from harness.metrics import at_least_float32, auroc, ensemble_log_probs, entropy
from harness.predictors import Predictor

BENCHMARK_CORRUPTIONS = tuple(corruptions.BENCHMARK)  # the 15 of cAcc/cNLL/cECE
EXTRA_CORRUPTIONS = tuple(corruptions.EXTRA)  # speckle noise, Gaussian blur, spatter, saturate
ALL_CORRUPTIONS = BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS
SEVERITIES = corrupt.SEVERITIES
# Where cAcc comes from when a run has several corrupted suites: published sets first.
CORRUPTED_SUITES = (*(family.corrupted_suite for family in FAMILIES.values()
                      if family.corrupted_suite), "generated_c")


@dataclass(frozen=True)
class ScoredSet:
    """An evaluation set that scores itself: `score(predictor, progress)` returns rows
    {member, metric, value}, which may also name their own `corruption` (OoD set, attacked
    member). OoD detection needs two sets at once and FGSM needs gradients, so neither fits
    the one-set streaming of `evaluate`."""

    suite: str
    corruption: str
    severity: int
    score: Callable[[Predictor, bool], list[dict]]


# ------------------------------------------------------------------ corrupted sets

def _corrupted_sets(suite: str, folder: Path, names: Sequence[str], context
                    ) -> Iterator[EvalSet]:
    """One EvalSet per (corruption, severity) of a CIFAR-C-layout folder, checked now."""
    test: ArrayDataset = context.splits.test
    opened = open_folder(folder, names, test.image_shape, test.num_classes)
    size = context.eval_batch_size
    for name in names:
        for severity in SEVERITIES:
            yield EvalSet(suite, name, severity,
                          lambda n=name, s=severity: opened.batches(n, s, size, test),
                          -(-opened.block // size))


@SUITES.register("cifar10_c")
@gin.configurable("cifar10_c", denylist=["context"])
def cifar10_c(context, data_dir: str = DEFAULT_DATA_DIR, download: bool = True,
              corruptions: Sequence[str] = ALL_CORRUPTIONS) -> Iterator[EvalSet]:
    """The published CIFAR-10-C (Hendrycks & Dietterich 2019) in `<data_dir>/CIFAR-10-C`."""
    folder = published_folder("cifar10_c", data_dir, download)
    yield from _corrupted_sets("cifar10_c", folder, corruptions, context)


@SUITES.register("cifar100_c")
@gin.configurable("cifar100_c", denylist=["context"])
def cifar100_c(context, data_dir: str = DEFAULT_DATA_DIR, download: bool = True,
               corruptions: Sequence[str] = ALL_CORRUPTIONS) -> Iterator[EvalSet]:
    """The published CIFAR-100-C in `<data_dir>/CIFAR-100-C`."""
    folder = published_folder("cifar100_c", data_dir, download)
    yield from _corrupted_sets("cifar100_c", folder, corruptions, context)


@SUITES.register("generated_c")
@gin.configurable("generated_c", denylist=["context"])
def generated_c(context, path: str | None = None,
                cache_dir: str = f"{DEFAULT_DATA_DIR}/generated", seed: int = 0,
                corruptions: Sequence[str] = ALL_CORRUPTIONS) -> Iterator[EvalSet]:
    """Corruptions generated by harness.data.corrupt with Hendrycks' CIFAR-10-C settings:
    from `path` (a folder it wrote), or else of the experiment's test split, made on first use
    into `<cache_dir>/<dataset>-c` and reused while the test split, seed and corruptions
    match."""
    if path is not None:
        folder = Path(path)
        if corrupt.read_marker(folder) is None:
            raise UserError(f"{folder} was not written by harness.data.corrupt (no "
                            f"{corrupt.MARKER}); published sets are the cifar10_c / "
                            f"cifar100_c suites")
    else:
        folder = _cached_corruptions(context.splits.name, context.splits.test, Path(cache_dir),
                                     seed, corruptions)
    yield from _corrupted_sets("generated_c", folder, corruptions, context)


def _cached_corruptions(name: str, test: ArrayDataset, cache_dir: Path, seed: int,
                        names: Sequence[str]) -> Path:
    images = test.images.cpu().permute(0, 2, 3, 1).contiguous().numpy()
    labels = test.labels.cpu().numpy()
    fingerprint = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()[:16]
    folder = cache_dir / f"{Path(name).stem}-c"
    marker = corrupt.read_marker(folder) or {}
    if (marker.get("fingerprint") != fingerprint or marker.get("seed") != seed
            or marker.get("version") != corrupt.VERSION
            or not set(names) <= set(marker.get("corruptions", ()))):
        corrupt.generate(images, labels, folder, source=f"{name} test split", seed=seed,
                         corruptions=names, fingerprint=fingerprint)
    return folder


# ------------------------------------------------------------------------ ImageNet

def _imagenet_set(suite: str, corruption: str, severity: int, root: Path, context,
                  crop_only: bool = False) -> EvalSet:
    loader = ImageNetLoader()
    return EvalSet(suite, corruption, severity,
                   lambda: loader.batches(root, context.eval_batch_size, context.device,
                                          crop_only=crop_only))


def _require_classes(suite: str, count: int, context) -> None:
    if context.splits.test.num_classes != count:
        raise UserError(f"the {suite} suite has {count} classes but the model has "
                        f"{context.splits.test.num_classes}")


@SUITES.register("imagenet_val")
@gin.configurable("imagenet_val", denylist=["context"])
def imagenet_val(context, data_dir: str = f"{DEFAULT_DATA_DIR}/imagenet/val"
                 ) -> Iterator[EvalSet]:
    """The clean ImageNet validation set from class folders (not downloadable)."""
    root = Path(data_dir)
    classes = class_folders(root)
    check_classes(root, classes)
    _require_classes("imagenet_val", len(classes), context)
    yield _imagenet_set("imagenet_val", "clean", 0, root, context)


@SUITES.register("imagenet_c")
@gin.configurable("imagenet_c", denylist=["context"])
def imagenet_c(context, data_dir: str = DEFAULT_DATA_DIR, download: bool = True,
               corruptions: Sequence[str] = BENCHMARK_CORRUPTIONS) -> Iterator[EvalSet]:
    """ImageNet-C under `<data_dir>/ImageNet-C`: every (corruption, severity) folder must hold
    the same class folders as the model has classes."""
    folder = download_imagenet_c(data_dir, corruptions) if download else \
        Path(data_dir) / "ImageNet-C"
    roots = {(name, severity): folder / name / str(severity)
             for name in corruptions for severity in SEVERITIES}
    wnids = sorted(set().union(*(class_folders(root) for root in roots.values())))
    _require_classes("imagenet_c", len(wnids), context)
    for (name, severity), root in roots.items():
        check_classes(root, wnids)
        yield _imagenet_set("imagenet_c", name, severity, root, context, crop_only=True)


class Restricted(Predictor):
    """A predictor's member logits restricted to some classes (ImageNet-A's 200), so the
    softmax runs over those classes only: Hendrycks et al.'s ImageNet-A protocol."""

    def __init__(self, predictor: Predictor, classes: Sequence[int]):
        super().__init__()
        self.inner = predictor
        self.num_members = predictor.num_members
        self.classes = torch.tensor(classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.inner(x)
        return logits[..., self.classes.to(logits.device)]


@SUITES.register("imagenet_a")
@gin.configurable("imagenet_a", denylist=["context"])
def imagenet_a(context, data_dir: str = DEFAULT_DATA_DIR, download: bool = True,
               full_1000: bool = True) -> Iterator[ScoredSet]:
    """ImageNet-A (`<data_dir>/imagenet-a`). 'restricted_200' (aAcc/aNLL/aECE) scores each
    member's logits restricted to the 200 classes; 'full_1000' (with `full_1000`) scores the
    1000-way prediction against the 200 classes' ImageNet labels."""
    root = download_imagenet_a(data_dir) if download else Path(data_dir) / "imagenet-a"
    indices, wnids = imagenet_a_classes()
    check_classes(root, wnids)
    _require_classes("imagenet_a", 1000, context)
    to_1000 = torch.tensor(indices, device=context.device)
    loader = ImageNetLoader()

    def batches(full: bool):
        for images, labels in loader.batches(root, context.eval_batch_size, context.device):
            yield images, (to_1000[labels] if full else labels)

    def score(predictor: Predictor, progress: bool) -> list[dict]:
        views = [("restricted_200", Restricted(predictor, indices), False)]
        views += [("full_1000", predictor, True)] if full_1000 else []
        return [{"corruption": view, **row} for view, scored, full in views
                for row in evaluate(scored, EvalSet("imagenet_a", view, 0,
                                                    lambda full=full: batches(full)),
                                    progress=progress)]

    yield ScoredSet("imagenet_a", "restricted_200", 0, score)


# ----------------------------------------------------------------------------- OoD

@torch.inference_mode()
def confidence_scores(predictor: Predictor, dataset: ArrayDataset, batch_size: int,
                      progress: bool = True, desc: str = "") -> dict[str, torch.Tensor]:
    """Per member name ('ensemble', and each member when M > 1): [2, N] of maximum
    probability and negative entropy, the two in-distribution scores of App. K."""
    predictor.eval()
    scores: dict[str, list[torch.Tensor]] = {}
    batches = tqdm(dataset.eval_batches(batch_size), total=-(-len(dataset) // batch_size),
                   leave=False, desc=f"ood {desc}", disable=not progress)
    for images, _ in batches:
        logits = predictor(images)
        named = {"ensemble": ensemble_log_probs(logits)}
        if predictor.num_members > 1:
            log_probs = at_least_float32(logits).log_softmax(-1)
            named.update({str(m): log_probs[m] for m in range(predictor.num_members)})
        for name, log_probs in named.items():
            scores.setdefault(name, []).append(
                torch.stack([log_probs.max(-1).values.exp(), -entropy(log_probs)]).cpu())
    return {name: torch.cat(parts, dim=1) for name, parts in scores.items()}


def ood_rows(inside: dict[str, torch.Tensor], outside: dict[str, torch.Tensor], name: str
             ) -> list[dict]:
    """AUROC of telling the test set (positives) from OoD set `name`, per member."""
    return [{"corruption": name, "member": member, "metric": metric,
             "value": auroc(inside[member][i], outside[member][i])}
            for member in inside
            for i, metric in enumerate(("auroc_maxprob", "auroc_entropy"))]


@SUITES.register("ood")
@gin.configurable("ood", denylist=["context"])
def ood(context, sets: Sequence[str] | None = None, data_dir: str = DEFAULT_DATA_DIR,
        download: bool = True) -> Iterator[ScoredSet]:
    """OoD detection (App. K) against `sets`, by default App. K's for CIFAR-10/100 (SVHN, the
    other CIFAR, Gaussian noise) and Gaussian noise for other datasets."""
    test = context.splits.test
    names = tuple(sets) if sets is not None else facts(context.splits.name).ood_sets
    if not names or isinstance(sets, str):
        raise UserError(f"ood.sets must name one or more OoD sets (e.g. ('svhn',)), got "
                        f"{sets!r}")
    loaded = {name: load_ood_set(name, test, data_dir, download) for name in names}
    size = context.eval_batch_size

    def score(predictor: Predictor, progress: bool) -> list[dict]:
        inside = confidence_scores(predictor, test, size, progress, "in-distribution")
        return [row for name, data in loaded.items()
                for row in ood_rows(inside, confidence_scores(predictor, data, size, progress,
                                                              name), name)]

    yield ScoredSet("ood", ",".join(names), 0, score)


# ---------------------------------------------------------------------------- FGSM

def fgsm_batches(predictor: Predictor, member: int, dataset: ArrayDataset, batch_size: int,
                 epsilon: float) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The test set under FGSM (Goodfellow et al. 2015) crafted on one member: each image
    moves by `epsilon` in pixel space ([0, 1]) along the sign of the gradient of that member's
    cross-entropy, and is clipped back to [0, 1]; then it is normalised as usual."""
    for start in range(0, len(dataset), batch_size):
        # evaluate() streams under inference mode; the attack needs gradients (so every
        # tensor it uses is made here), and the generator leaves this block before yielding
        with torch.inference_mode(False), torch.enable_grad():
            labels = dataset.labels[start:start + batch_size]
            pixels = dataset.images[start:start + batch_size].to(torch.get_default_dtype()) / 255
            pixels.requires_grad_()
            inputs = dataset.standardize(pixels)
            logits = predictor.member_logits(inputs, member)
            loss = F.cross_entropy(at_least_float32(logits), labels, reduction="sum")
            (gradient,) = torch.autograd.grad(loss, pixels)
            adversarial = (pixels + epsilon * gradient.sign()).clamp(0, 1).detach()
        yield dataset.standardize(adversarial), labels


@SUITES.register("fgsm")
@gin.configurable("fgsm", denylist=["context"])
def fgsm(context, epsilon_255: float = 8.0) -> Iterator[ScoredSet]:
    """FGSM at epsilon = epsilon_255 / 255 (App. L: 8/255), crafted on each member in turn;
    the ensemble (and every member) is scored on each member's attack, so the robust accuracy
    of App. L's {min/mean/max} is over the 'from_member_<m>' rows (`fgsm_summary`)."""
    if check_number("fgsm.epsilon_255", epsilon_255, positive=True) > 255:
        raise UserError(f"fgsm.epsilon_255 is on the 0-255 pixel scale (App. L: 8) and must "
                        f"be <= 255, got {epsilon_255}")
    test, size = context.splits.test, context.eval_batch_size

    def score(predictor: Predictor, progress: bool) -> list[dict]:
        rows = []
        for member in range(predictor.num_members):
            name = f"from_member_{member}"
            attack = EvalSet("fgsm", name, 0,
                             lambda m=member: fgsm_batches(predictor, m, test, size,
                                                           epsilon_255 / 255),
                             -(-len(test) // size))
            rows += [{"corruption": name, **row}
                     for row in evaluate(predictor, attack, progress=progress)]
        return rows

    yield ScoredSet("fgsm", "all_members", 0, score)


# ------------------------------------------------------------------------ summaries

SUMMARY_METRICS = (("acc", "accuracy"), ("nll", "nll"), ("ece", "ece"))


def _ensemble(frame: pd.DataFrame, suite: str, member: str) -> pd.DataFrame:
    return frame[(frame["suite"] == suite) & (frame["member"] == member)]


def _mean_over(rows: pd.DataFrame, names: Sequence[str]) -> dict[str, float] | None:
    """Mean accuracy/NLL/ECE over every (corruption, severity) of `names`; None unless all
    5 x len(names) sets are present (a partial mean is not the benchmark's number)."""
    rows = rows[rows["corruption"].isin(names)]
    sets = set(zip(rows["corruption"], rows["severity"]))
    if sets != {(name, severity) for name in names for severity in SEVERITIES}:
        return None
    means = rows.groupby("metric")["value"].mean()
    return {key: float(means[metric]) for key, metric in SUMMARY_METRICS if metric in means}


def corrupted_summary(frame: pd.DataFrame, member: str = "ensemble") -> dict:
    """From a run's metrics frame: cacc/cnll/cece = the mean of the per-set metrics over the
    15 benchmark corruptions x 5 severities (uncertainty-baselines), the `_extra` variants
    over the 4 extra corruptions, `c_suite` naming the suite they come from (published before
    generated); aacc/anll/aece on ImageNet-A restricted to its 200 classes and `_1000` on the
    1000-way prediction. Keys are absent where the run lacks the sets."""
    out: dict = {}
    for suite in CORRUPTED_SUITES:
        rows = _ensemble(frame, suite, member)
        benchmark = _mean_over(rows, BENCHMARK_CORRUPTIONS)
        if benchmark is None:
            continue
        out["c_suite"] = suite
        out.update({f"c{key}": value for key, value in benchmark.items()})
        extra = _mean_over(rows, EXTRA_CORRUPTIONS)
        out.update({f"c{key}_extra": value for key, value in (extra or {}).items()})
        break
    rows = _ensemble(frame, "imagenet_a", member)
    for view, suffix in (("restricted_200", ""), ("full_1000", "_1000")):
        values = rows[rows["corruption"] == view].set_index("metric")["value"]
        out.update({f"a{key}{suffix}": float(values[metric]) for key, metric in SUMMARY_METRICS
                    if metric in values})
    return out


def ood_summary(frame: pd.DataFrame, member: str = "ensemble") -> dict[str, float]:
    """{'auroc_<set>': AUROC with maximum probability, 'auroc_entropy_<set>': with entropy}."""
    rows = _ensemble(frame, "ood", member)
    return {f"{metric.replace('_maxprob', '')}_{name}": float(value) for name, metric, value
            in zip(rows["corruption"], rows["metric"], rows["value"])}


def fgsm_summary(frame: pd.DataFrame, member: str = "ensemble") -> dict[str, float]:
    """App. L's robust accuracy: {min, mean, max} over the attacks crafted on each member."""
    rows = _ensemble(frame, "fgsm", member)
    accuracy = rows.loc[rows["metric"] == "accuracy", "value"].to_numpy()
    if accuracy.size == 0:
        return {}
    return {"fgsm_acc_min": float(np.min(accuracy)), "fgsm_acc_mean": float(np.mean(accuracy)),
            "fgsm_acc_max": float(np.max(accuracy))}
