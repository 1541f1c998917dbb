"""`python -m harness.compare`: any finished runs in one wide table, seeds of one configuration
averaged, in the paper tables' keys and units."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.tables.compare import compare, load_runs, markdown
from harness.store.record import write_json
from tests.fakes import fake_run

ROOT = Path(__file__).resolve().parents[2]


def my_run(run_dir: Path, method: str, seed: int, acc: float, display_name: str,
           **run) -> Path:
    """A finished run of a user's own, as `python -m harness.run` leaves it."""
    fake_run(run_dir, method=method, seed=seed, acc=acc, **run)
    (run_dir / "config.gin").write_text(f"Experiment.method = '{method}'\n"
                                        f"Experiment.seed = {seed}\n"
                                        f"wide_resnet.depth = 10\n")
    summary = run_dir / "summary.json"
    record = json.loads(summary.read_text())
    write_json(summary, {**record, "display_name": display_name,
                         "corrupted": {"cacc": acc - 0.2, "cnll": 1.0, "cece": 0.1}})
    return run_dir


@pytest.fixture
def mine(tmp_path) -> Path:
    root = tmp_path / "mine"
    my_run(root / "dense_a", "dense", 0, 0.90, "Single Dense Model", members=1, ratio=1.0)
    my_run(root / "dense_b", "dense", 1, 0.94, "Single Dense Model", members=1, ratio=1.0)
    my_run(root / "edst", "edst", 0, 0.95, "EDST Ensemble", members=3, sparsity=0.8, ratio=0.6)
    return root


def test_seeds_of_one_configuration_are_one_row_with_mean_and_std(mine):
    runs = load_runs([str(mine / "dense_a"), str(mine / "dense_b"), str(mine / "edst")])
    assert len(runs) == 3 and runs.configuration.nunique() == 2
    table = compare(runs)
    assert list(table.method) == ["Single Dense Model", "EDST Ensemble"]  # the tables' keys
    dense, edst = table.iloc[0], table.iloc[1]
    assert dense.seeds == 2 and dense.acc == pytest.approx(92.0)  # % as in the tables
    assert dense.acc_std == pytest.approx(np.std([90.0, 94.0], ddof=1))
    assert dense.cacc == pytest.approx(72.0)  # the corrupted summary of summary.json
    assert edst.seeds == 1 and np.isnan(edst.acc_std)
    assert (edst.M, edst.sparsity, edst.train_flops_ratio) == (3, 0.8, 0.6)
    lines = {line.split("|")[1].strip(): line for line in markdown(table).splitlines()}
    assert "92.00 ± 2.83" in lines["Single Dense Model"]
    assert "95.00 " in lines["EDST Ensemble"] and "±" not in lines["EDST Ensemble"]


def test_globs_and_folders_find_the_same_runs(mine):
    (mine / "dense_a.lock").write_text("")  # a run's lock beside it (harness/store/locks.py)
    by_glob = load_runs([str(mine / "*")])
    by_folder = load_runs([str(mine)])
    assert sorted(by_glob.run_dir) == sorted(by_folder.run_dir) and len(by_glob) == 3


def test_the_command_prints_markdown_and_writes_parquet(mine, tmp_path):
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "harness.compare", str(mine / "*"),
                           f"--output_dir={out}"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "92.00 ± 2.83" in done.stdout
    frame = pd.read_parquet(out / "compare.parquet")
    assert list(frame.seeds) == [2, 1]


@pytest.mark.parametrize("make, message", [
    (lambda root: root / "nowhere", "matches no file or folder"),
    (lambda root: root, "holds no finished run"),
])
def test_a_path_without_runs_is_one_line_and_exit_2(tmp_path, make, message):
    done = subprocess.run([sys.executable, "-m", "harness.compare", str(make(tmp_path))],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and message in done.stderr
