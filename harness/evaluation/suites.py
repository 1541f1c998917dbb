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
    ood                    AUROC, AUPR-In and FPR95 of in- vs out-of-distribution (ood.sets)
    temperature_scaling    test NLL and ECE at the temperature fitted on the validation split
    fgsm                   accuracy under FGSM crafted on each member (fgsm.epsilon_255)

Rows: one per (corruption, severity) with severity 1-5 (0 where there is none); for `ood` the
corruption column names the OoD set, for `fgsm` the attacked member ('from_member_<m>').
"""
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import gin
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from harness.data import corrupt
from harness.data.arrays import ArrayDataset
from harness.data.cifar_c import open_folder, published_folder
from harness.data.imagenet import (ImageNetLoader, check_classes, class_folders,
                                   download_imagenet_a, download_imagenet_c,
                                   imagenet_a_classes)
from harness.data.facts import facts
from harness.data.ood import load_ood_set
from harness.data.sources import DEFAULT_DATA_DIR
from harness.core.errors import UserError, check_number
from harness.evaluation.cached_predictions import PredictionCollector
from harness.evaluation.evaluate import SUITES, EvalSet, clean_test, evaluate, validation
from harness.evaluation.metrics import (MetricSums, at_least_float32, aupr, auroc,
                                        ensemble_log_probs, entropy, fpr_at_95_tpr)
from harness.evaluation.predictors import Predictor
from harness.evaluation.suite_summary import ALL_CORRUPTIONS, BENCHMARK_CORRUPTIONS, SEVERITIES
from harness.evaluation.temperature import fit_temperature, tempered



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


OOD_METRICS = {"auroc": auroc, "aupr_in": aupr, "fpr95": fpr_at_95_tpr}


def ood_rows(inside: dict[str, torch.Tensor], outside: dict[str, torch.Tensor], name: str
             ) -> list[dict]:
    """AUROC, AUPR-In and FPR95 of telling the test set (positives) from OoD set `name`, per
    member, by maximum probability and by negative entropy (metrics.py's conventions)."""
    return [{"corruption": name, "member": member, "metric": f"{metric}_{score}",
             "value": measure(inside[member][i], outside[member][i])}
            for member in inside
            for i, score in enumerate(("maxprob", "entropy"))
            for metric, measure in OOD_METRICS.items()]


@SUITES.register("ood")
@gin.configurable("ood", denylist=["context"])
def ood(context, sets: Sequence[str] | None = None, data_dir: str = DEFAULT_DATA_DIR,
        download: bool = True) -> Iterator[ScoredSet]:
    """OoD detection (App. K's AUROC, with AUPR-In and FPR95) against `sets`, by default
    App. K's for CIFAR-10/100 (SVHN, the other CIFAR, Gaussian noise) and Gaussian noise for
    other datasets."""
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


# -------------------------------------------------------------- temperature scaling

@SUITES.register("temperature_scaling")
def temperature_scaling(context) -> Iterator[ScoredSet]:
    """The ensemble's test NLL and ECE at the temperature fitted on the validation split
    (harness/evaluation/temperature.py): rows nll_ts, ece_ts and `temperature` of the test
    suite's clean set, so that summary.json has test/nll_ts beside test/nll. One pass over
    the validation split to fit, one over the test set to score."""
    if context.validation is None:
        raise UserError("the 'temperature_scaling' suite fits its temperature on the validation "
                        "split: set Experiment.validation_fraction > 0 (the test set is never "
                        "used to fit)")
    fit_set, test_set = next(validation(context)), next(clean_test(context))

    def score(predictor: Predictor, progress: bool) -> list[dict]:
        held_out = PredictionCollector()
        evaluate(predictor, fit_set, progress, collect=held_out)
        temperature = fit_temperature(ensemble_log_probs(torch.cat(held_out.log_probs, dim=1)),
                                      torch.cat(held_out.labels))
        sums = MetricSums(device=context.device)

        def score_tempered(member_log_probs: torch.Tensor, labels: torch.Tensor) -> None:
            sums.update(tempered(ensemble_log_probs(member_log_probs), temperature), labels)

        evaluate(predictor, test_set, progress, collect=score_tempered)
        scaled = sums.result()
        return [{"corruption": "clean", "member": "ensemble", "metric": metric, "value": value}
                for metric, value in (("temperature", temperature), ("nll_ts", scaled["nll"]),
                                      ("ece_ts", scaled["ece"]))]

    # not ('test', 'clean'): that set is streamed by `evaluate`, this one scores itself
    yield ScoredSet("test", "temperature_scaled", 0, score)


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
