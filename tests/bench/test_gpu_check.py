"""`make gpu-check` on a CPU: the same code at reduced sizes writes its JSON, and the compute
plan takes its throughput from it."""
import json
from pathlib import Path

import pytest
import torch

from harness.bench import gpu_check
from harness.core.errors import UserError

from harness.tables import compute_plan

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def test_the_check_runs_on_a_cpu_and_feeds_the_plan(tmp_path, monkeypatch):
    report = gpu_check.gpu_check(tmp_path, torch.device("cpu"), reduced=True, steps=2,
                                 warmup=1)
    for model in ("wide_resnet", "resnet50"):
        for variant in ("fp32", "bf16", "bf16_channels_last"):
            row = report["throughput"][f"{model}/{variant}"]
            assert row["images_per_s"] > 0 and row["train_flops_per_s"] > 0
            assert row["fraction_of_peak"] is None  # no peak is known for a CPU
        assert "skipped" in report["throughput"][f"{model}/bf16_channels_last_compile"]
        assert report["plan_flops_per_s"][model] > 0
    for method in ("dst", "edst"):
        assert report["sparse"][method]["mask_updates_timed"] >= 1
        assert report["sparse"][method]["masked_weights_exactly_zero"] is True
    tiled = report["tiled"]
    assert tiled["batch_ensemble_m4"]["rows_per_s"] == pytest.approx(
        4 * tiled["batch_ensemble_m4"]["images_per_s"])
    assert report["bf16_vs_fp32"]["within_tolerance"] is True
    assert report["ddp"] == {"skipped": "needs 2 or more GPUs"}

    path = tmp_path / "gpu_check.json"
    path.write_text(json.dumps(report))
    assert compute_plan.throughput(path)[0] == {}  # a reduced CPU run is no GPU's figure
    path.write_text(json.dumps({**report, "reduced": False,
                                "plan_flops_per_s": {"wide_resnet": 1e14}}))
    rates, source = compute_plan.throughput(path)
    assert rates == {"wide_resnet": 1e14} and "measured by the GPU check" in source
    with pytest.raises(UserError, match="--throughput .*absent.json does not exist"):
        compute_plan.throughput(tmp_path / "absent.json")  # named, so it must be there
    monkeypatch.setattr(compute_plan, "GPU_CHECK_JSON", tmp_path / "absent.json")
    assert "assumed" in compute_plan.throughput(None)[1]  # none made yet: an assumed rate
