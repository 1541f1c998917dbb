"""The sparse inference figures of `make bench` (harness/bench/sparse_kernels.py, suite.py): the
folded dense baseline, every form timed under inference mode, the targets and bench.json's
tables; the timings themselves faked (figures live in `make bench`, not in tests)."""
import pytest
import torch

from harness.bench import sparse_kernels, suite
from harness.bench.parts import folded_dense, masked_wrn


def test_the_folded_baseline_folds_the_batch_norms_after_a_conv_and_computes_the_same():
    """WRN-10-2 has 7 batch norms; each block's bn2 follows its conv1 alone, and the first
    block's bn1 the first conv: 4 fold, the 3 after residual sums stay."""
    model = masked_wrn(10, 2, 0.9)
    x = torch.randn(2, 3, 32, 32)
    folded, batch_norms = folded_dense(model, x)
    assert batch_norms == {"batch_norms": 7, "folded": 4}
    with torch.inference_mode():
        torch.testing.assert_close(folded(x), model(x), atol=1e-4, rtol=1e-4)


def fake_rounds(modes: list, seconds: tuple[float, ...]):
    """round_seconds that records whether inference mode is on where the forms are timed and
    returns `seconds` (one per form) for every round."""
    def rounds(functions, count):
        modes.append(torch.is_inference_mode_enabled())
        assert len(functions) == len(seconds)
        return [[value] * count for value in seconds]
    return rounds


def test_inference_speedups_time_every_form_under_inference_mode_against_both_baselines(
        monkeypatch):
    modes = []
    monkeypatch.setattr(sparse_kernels, "round_seconds", fake_rounds(modes, (4.0, 2.0, 1.0)))
    figures = sparse_kernels.inference_speedups([(10, 2)], [1], [0.9], [1], rounds=15)
    assert modes == [True]
    [entry] = figures["S0.9_b1"]
    assert entry["value"] == 4.0 and entry["target"] == ">= 3.5" and entry["met"] is True
    assert entry["folded_dense_seconds"] == 2.0 and entry["folded_speedup"] == 2.0
    assert entry["rounds"] == 15
    results = list(sparse_kernels.inference_results(figures))
    tables = sparse_kernels.summary(results)
    assert set(tables) == {"sparse_inference_speedup", "sparse_inference_speedup_vs_folded"}
    [folded] = tables["sparse_inference_speedup_vs_folded"]["S0.9_b1"]
    assert folded["value"] == 2.0 and folded["target"] == ">= 2.5" and folded["met"] is False
    assert folded["batch_norms"] == {"batch_norms": 7, "folded": 4}
    [masked] = tables["sparse_inference_speedup"]["S0.9_b1"]
    assert "folded" not in masked and masked["folded_speedup"] == 2.0
    assert "folded dense 2000.0 ms" in results[1].note


@pytest.mark.parametrize("key, target, folded_target", [
    ("S0.9_b1", ">= 3.5", ">= 2.5"), ("S0.9_b64", ">= 3", "informational"),
    ("S0.8_b1", ">= 2", "informational"), ("S0.8_b64", ">= 2", "informational")])
def test_the_issues_targets(key, target, folded_target):
    assert sparse_kernels.INFERENCE_TARGETS[key] == target
    assert sparse_kernels.FOLDED_TARGETS.get(key, sparse_kernels.INFORMATIONAL) == folded_target
    assert sparse_kernels.met(1.0, "informational") is None
    assert sparse_kernels.TRAIN_TARGETS == {"S0.8": ">= 1.6", "S0.9": ">= 2.2"}


def test_the_suites_sparse_inference_times_three_forms_under_inference_mode(monkeypatch):
    modes = []
    monkeypatch.setattr(suite, "side_by_side", lambda functions, count: (
        modes.append(torch.is_inference_mode_enabled()) or
        ([3.0, 1.5, 1.0], [[3.0] * count, [1.5] * count, [1.0] * count])))
    monkeypatch.setattr(suite, "where_time_goes", lambda model, x: [("aten::conv", 1.0)])
    [result] = suite.bench_sparse_inference(10, 2, (64,), (0.8,), rounds=15)
    assert modes == [True]
    assert result.value == 3.0 and result.target == ">= 2" and result.met is True
    assert result.detail["folded_dense_seconds"] == 1.5
    assert result.detail["folded_speedup"] == 1.5
    assert result.detail["batch_norms"] == {"batch_norms": 7, "folded": 4}
    assert "1500.0 ms folded dense (1.50x)" in result.note
