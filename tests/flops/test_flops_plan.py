"""Planned FLOPs of whole configurations against the paper's columns (Tables 1-3, 6)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.experiment.config import parse
from harness.experiment.assemble import Experiment

ROOT = Path(__file__).resolve().parents[2]


def plan(*gin_files, bindings=()):
    parse([str(ROOT / file) for file in gin_files], bindings)
    return Experiment().plan_flops()


def test_dense_reference_matches_the_papers_absolute_figure():
    report = plan("gin/dense.gin")
    assert report["dense_forward_flops"] == pytest.approx(2 * 5.24e9, rel=0.01)
    assert report["train_flops_ratio"] == pytest.approx(1.0)
    assert report["train_flops"] == pytest.approx(3.6e17, rel=0.10)  # paper Table 1


def test_dense_ensemble_costs_four_dense_runs():
    report = plan("gin/dense_ensemble.gin")
    assert report["train_flops_ratio"] == pytest.approx(4.00, abs=0.015)
    assert report["test_flops_ratio"] == pytest.approx(4.00, abs=0.015)
    assert report["training_runs"] == 4


def test_ratios_do_not_depend_on_the_scale():
    report = plan("gin/dense_ensemble.gin", "gin/scale/smoke.gin")
    assert report["train_flops_ratio"] == pytest.approx(4.0)
    assert report["epochs"] == 15 and report["dataset"] == "digits"


def test_cli_prints_one_json_object_and_refuses_bad_config():
    result = subprocess.run([sys.executable, "-m", "harness.flops", "--gin_file=gin/dense.gin"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for key in ("method", "dataset", "model", "M", "sparsity", "dense_forward_flops",
                "forward_flops", "forward_ratio", "train_flops", "train_flops_ratio",
                "test_flops_ratio", "training_runs"):
        assert key in report
    bad = subprocess.run([sys.executable, "-m", "harness.flops", "--gin_file=gin/dense.gin",
                          "--gin_bindings=Trainer.batch_size = 0"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")
