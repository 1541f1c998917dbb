"""The robustness metrics and summaries against hand computation, FGSM against a linear model
worked by hand, and the suites inside a real run."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from harness.data import Splits
from harness.data.arrays import ArrayDataset
from harness.core.errors import UserError
from harness.experiment.execute import run_experiment
from harness.experiment.assemble import DataContext
from harness.evaluation.metrics import auroc, entropy
from harness.evaluation.predictors import MemberEnsemble, Predictor
from harness.evaluation.suites import fgsm
from harness.evaluation.suite_summary import (ALL_CORRUPTIONS, BENCHMARK_CORRUPTIONS, EXTRA_CORRUPTIONS,
                                        corrupted_summary, fgsm_summary, ood_summary)

ROOT = Path(__file__).resolve().parents[2]


def test_auroc_is_sklearns_with_ties():
    rng = np.random.default_rng(0)
    positive = rng.integers(0, 5, 40).astype(float)  # many ties
    negative = rng.integers(0, 4, 30).astype(float)
    expected = roc_auc_score(np.r_[np.ones(40), np.zeros(30)], np.r_[positive, negative])
    assert auroc(torch.tensor(positive), torch.tensor(negative)) == pytest.approx(expected)
    assert auroc(torch.tensor([2.0, 3.0]), torch.tensor([1.0])) == 1.0
    assert auroc(torch.tensor([1.0]), torch.tensor([1.0])) == 0.5


def test_entropy_of_uniform_and_certain_predictions():
    uniform = torch.full((1, 4), 0.25).log()
    certain = torch.tensor([[0.0, -torch.inf, -torch.inf]])
    assert entropy(uniform).item() == pytest.approx(np.log(4))
    assert entropy(certain).item() == 0.0


def metric_rows(suite, corruption, severity, values, member="ensemble"):
    return [{"method": "dense", "member": member, "suite": suite, "corruption": corruption,
             "severity": severity, "metric": metric, "value": value}
            for metric, value in values.items()]


def corrupted_frame(suite="generated_c", names=ALL_CORRUPTIONS):
    """accuracy = k / 100 + s / 1000 for corruption k, severity s; nll = 2 * accuracy."""
    rows = []
    for k, name in enumerate(names):
        for s in range(1, 6):
            acc = k / 100 + s / 1000
            rows += metric_rows(suite, name, s, {"accuracy": acc, "nll": 2 * acc, "ece": 0.1})
            rows += metric_rows(suite, name, s, {"accuracy": 0.0}, member="0")
    return pd.DataFrame(rows)


def test_corrupted_summary_means_15_benchmark_corruptions_by_5_severities():
    summary = corrupted_summary(corrupted_frame())
    # mean of k / 100 over k = 0..14 is 0.07; of s / 1000 over s = 1..5 is 0.003
    assert summary["c_suite"] == "generated_c"
    assert summary["cacc"] == pytest.approx(0.073)
    assert summary["cnll"] == pytest.approx(0.146) and summary["cece"] == pytest.approx(0.1)
    assert summary["cacc_extra"] == pytest.approx(0.165 + 0.003)  # k = 15..18
    assert corrupted_summary(corrupted_frame(), member="0")["cacc"] == 0.0


def test_corrupted_summary_prefers_published_sets_and_needs_every_set():
    both = pd.concat([corrupted_frame("generated_c"),
                      corrupted_frame("cifar10_c", BENCHMARK_CORRUPTIONS)])
    summary = corrupted_summary(both)
    assert summary["c_suite"] == "cifar10_c" and "cacc_extra" not in summary
    partial = corrupted_frame()
    partial = partial[~((partial.corruption == "fog") & (partial.severity == 5))]
    assert "cacc" not in corrupted_summary(partial)
    assert "cacc_extra" not in corrupted_summary(corrupted_frame(names=EXTRA_CORRUPTIONS))


def test_natural_adversarial_ood_and_fgsm_summaries():
    frame = pd.DataFrame(
        metric_rows("imagenet_a", "restricted_200", 0, {"accuracy": 0.3, "nll": 4.0,
                                                        "ece": 0.2})
        + metric_rows("imagenet_a", "full_1000", 0, {"accuracy": 0.1, "nll": 6.0, "ece": 0.4})
        + metric_rows("ood", "svhn", 0, {"auroc_maxprob": 0.9, "auroc_entropy": 0.92})
        + metric_rows("fgsm", "from_member_0", 0, {"accuracy": 0.4})
        + metric_rows("fgsm", "from_member_1", 0, {"accuracy": 0.2})
        + metric_rows("fgsm", "from_member_2", 0, {"accuracy": 0.3}))
    summary = corrupted_summary(frame)
    assert (summary["aacc"], summary["anll"], summary["aece"]) == (0.3, 4.0, 0.2)
    assert summary["aacc_1000"] == 0.1 and "cacc" not in summary
    assert ood_summary(frame) == {"auroc_svhn": 0.9, "auroc_entropy_svhn": 0.92}
    assert fgsm_summary(frame) == pytest.approx(
        {"fgsm_acc_min": 0.2, "fgsm_acc_mean": 0.3, "fgsm_acc_max": 0.4})


class Stacked(Predictor):
    """The same members behind a predictor FGSM knows nothing about."""

    def __init__(self, networks):
        super().__init__()
        self.networks = nn.ModuleList(networks)
        self.num_members = len(networks)

    def forward(self, x):
        return torch.stack([network(x) for network in self.networks])


def test_fgsm_moves_each_pixel_by_epsilon_against_each_member():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (50, 1, 2, 2)).astype(np.uint8)
    pixels[:5] = 0  # clipped at 0 ...
    pixels[5:10] = 255  # ... and at 1
    labels = rng.integers(0, 2, 50)
    mean, std, epsilon = 0.5, 0.25, 32 / 255
    weights = [rng.normal(size=(2, 4)) for _ in range(2)]
    networks = []
    for w in weights:
        linear = nn.Linear(4, 2, bias=False)
        linear.weight.data = torch.tensor(w, dtype=torch.float32)
        networks.append(nn.Sequential(nn.Flatten(), linear))
    test = ArrayDataset(torch.from_numpy(pixels), torch.from_numpy(labels), 2, (mean,), (std,))
    context = DataContext(Splits("toy", test, test), None, 16, torch.device("cpu"))

    # by hand: for two classes the cross-entropy gradient of member m has the sign of
    # W_m[other] - W_m[label] (positive softmax weights, positive std)
    def ensemble_accuracy(images):
        inputs = (images - mean) / std
        probs = [np.exp(inputs @ w.T) / np.exp(inputs @ w.T).sum(1, keepdims=True)
                 for w in weights]
        return ((probs[0] + probs[1]).argmax(1) == labels).mean()

    x = pixels.reshape(50, 4) / 255
    expected = [ensemble_accuracy(np.clip(x + epsilon * np.sign(w[1 - labels] - w[labels]),
                                          0, 1)) for w in weights]
    assert min(expected) < ensemble_accuracy(x)  # the attacks do hurt

    for predictor in (MemberEnsemble(networks), Stacked(networks)):
        (scored,) = fgsm(context, epsilon_255=32)
        rows = pd.DataFrame(scored.score(predictor, False)).assign(suite="fgsm")
        accuracy = rows[(rows.member == "ensemble") & (rows.metric == "accuracy")]
        assert accuracy.corruption.tolist() == ["from_member_0", "from_member_1"]
        assert accuracy.value.to_numpy() == pytest.approx(expected, abs=1e-6)
        assert fgsm_summary(rows)["fgsm_acc_mean"] == pytest.approx(np.mean(expected))


SMOKE = [str(ROOT / "gin" / "dense.gin"), str(ROOT / "gin" / "scale" / "smoke.gin")]


def test_smoke_run_fills_the_generated_corrupted_columns(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the digits-C cache under data/generated, as `make demo` has it
    run_dir, _ = run_experiment(SMOKE, ["epoch_factor.factor = 0.008"],
                                str(tmp_path / "run"), progress=False)
    frame = pd.read_parquet(run_dir / "metrics.parquet")
    sets = frame[frame.suite == "generated_c"][["corruption", "severity"]].drop_duplicates()
    assert len(sets) == 19 * 5
    summary = corrupted_summary(frame)
    accuracy = frame[(frame.suite == "generated_c") & (frame.member == "ensemble")
                     & (frame.metric == "accuracy")].set_index("corruption").value
    assert summary["c_suite"] == "generated_c"
    assert summary["cacc"] == pytest.approx(accuracy[list(BENCHMARK_CORRUPTIONS)].mean())
    assert summary["cacc_extra"] == pytest.approx(accuracy[list(EXTRA_CORRUPTIONS)].mean())
    assert {"cnll", "cece"} <= set(summary)


def test_a_broken_corruption_file_fails_before_any_run_directory(tmp_path):
    broken = tmp_path / "digits-c"
    broken.mkdir()
    (broken / "GENERATED.json").write_text("{}")
    np.save(broken / "labels.npy", np.zeros(10, np.int64))
    np.save(broken / "fog.npy", np.zeros((10, 8, 8, 1), np.float32))
    out = tmp_path / "run"
    with pytest.raises(UserError) as error:
        run_experiment(SMOKE, [f"generated_c.path = '{broken}'",
                               "generated_c.corruptions = ('fog',)"], str(out), progress=False)
    assert str(error.value) == (f"{broken / 'fog.npy'}: expected uint8 images [5N, 8, 8, 1], "
                                f"got float32 (10, 8, 8, 1)")
    assert not out.exists()
