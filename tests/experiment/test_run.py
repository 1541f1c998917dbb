"""`python -m harness.run` as a user runs it: the run directory, and each kind of bad input."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--gin_bindings=epoch_factor.factor = 0.008", "--noprogress"]


def run_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "harness.run", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def smoke(method="dense"):
    return [f"--gin_file={ROOT / 'gin' / (method + '.gin')}",
            f"--gin_file={ROOT / 'gin' / 'scale' / 'smoke.gin'}"]


def test_dense_ensemble_run_directory(tmp_path):
    out = tmp_path / "run"
    result = run_cli(*smoke("dense_ensemble"), *FAST, "--gin_bindings=DenseEnsemble.num_members=2",
                     f"--output_dir={out}")
    assert result.returncode == 0, result.stderr
    assert {"operative_config.gin", "config.gin", "metrics.parquet", "flops.json",
            "summary.json"} <= {p.name for p in out.iterdir()}
    assert {"member_0.pt", "member_1.pt"} <= {p.name for p in (out / "checkpoints").iterdir()}
    flops = json.loads((out / "flops.json").read_text())
    assert flops["train_flops"] == flops["planned_train_flops"]  # measured by the ledgers
    assert flops["train_flops_ratio"] == pytest.approx(2.0)
    metrics = pd.read_parquet(out / "metrics.parquet")
    assert list(metrics.columns) == ["method", "member", "suite", "corruption", "severity",
                                     "metric", "value"]
    test = metrics[metrics.suite == "test"]
    assert set(test.member) == {"ensemble", "0", "1", "0-1", "1-0"}  # both KL directions
    assert set(test[test.member == "0-1"].metric) == {"disagreement", "kl"}
    pairs = test[test.metric.isin(["disagreement", "kl"])].set_index(["member", "metric"]).value
    assert pairs["0-1", "disagreement"] == pairs["1-0", "disagreement"]
    assert pairs["0-1", "kl"] != pairs["1-0", "kl"]
    structure = metrics[metrics.suite == "structure"]
    assert structure[structure.metric == "density"].value.tolist() == [1.0, 1.0]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_members"] == 2 and summary["training_runs"] == 2
    assert summary["display_name"] == "Dense Ensemble"
    assert {"cacc", "cnll", "cece"} <= set(summary["corrupted"])  # smoke scores digits-C
    # the ensemble's accuracy is its members' mean softmax scored on the saved predictions
    with np.load(out / "predictions" / "test.npz") as arrays:
        probs, labels = np.exp(arrays["log_probs"].astype(np.float64)), arrays["labels"]
    assert probs.shape[0] == 2
    assert summary["metrics"]["test/accuracy"] == pytest.approx(
        np.mean(probs.mean(0).argmax(-1) == labels))
    assert "DenseEnsemble.num_members = 2" in (out / "operative_config.gin").read_text()

    again = run_cli(*smoke("dense_ensemble"), *FAST, f"--output_dir={out}")
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert json.loads((out / "summary.json").read_text()) == summary  # untouched


def bad_input_cases(tmp_path):
    malformed = tmp_path / "malformed.gin"
    malformed.write_text("Trainer.epochs = = 3\n")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder would have to be")
    return {
        "malformed gin": ([f"--gin_file={malformed}"], "invalid gin configuration"),
        "missing gin": (["--gin_file=gin/nonexistent.gin"], "gin file gin/nonexistent.gin"),
        "unknown method": (smoke() + ["--gin_bindings=Experiment.method = 'densest'"],
                           "unknown method 'densest'"),
        "unknown dataset": (smoke() + ["--gin_bindings=Experiment.dataset = 'mnist'"],
                            "unknown dataset 'mnist'"),
        "missing dataset": (smoke() + ["--gin_bindings=Experiment.dataset = 'npz'",
                                       f"--gin_bindings=npz.path = '{tmp_path}/x.npz'"],
                            "x.npz not found"),
        "unknown parameter": (smoke() + ["--gin_bindings=Trainer.epoch = 3"], "epoch"),
        "unknown precision": (smoke() + ["--gin_bindings=Experiment.precision = 'float16'"],
                              "Experiment.precision must be one of float32, float64"),
        "unwritable output": (smoke() + [f"--output_dir={blocker}/run"],
                              "which is a file, not a folder"),
    }


@pytest.mark.parametrize("case", ["malformed gin", "missing gin", "unknown method",
                                  "unknown dataset", "missing dataset", "unknown parameter",
                                  "unknown precision", "unwritable output"])
def test_bad_input_is_one_clear_line_and_leaves_nothing(tmp_path, case):
    args, message = bad_input_cases(tmp_path)[case]
    out = tmp_path / "out"
    if case != "unwritable output":
        args = args + [f"--output_dir={out}"]
    result = run_cli(*args, *FAST)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not out.exists()


def test_output_dir_that_is_a_file_is_refused(tmp_path):
    target = tmp_path / "taken"
    target.write_text("precious")
    result = run_cli(*smoke(), *FAST, f"--output_dir={target}")
    assert result.returncode == 2 and "is a file, not a folder" in result.stderr
    assert target.read_text() == "precious"
