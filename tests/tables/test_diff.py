"""`python -m harness.diff OLD NEW`: exit 0 when unchanged, non-zero naming each drifted cell
(FLOPs and counts exactly, metrics within printed tolerances), 2 for a file of another schema."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.tables import diff, wide
from tests.fakes import fake_row

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def table(tmp_path) -> Path:
    """A table report with two of our rows and the paper's missing ones."""
    frame = wide.build_table(1, "smoke", [
        fake_row(tmp_path / "runs", "dense", "Single Dense Model", members=1, acc=0.87,
                 ratio=1.0, train_flops=3.5e11),
        fake_row(tmp_path / "runs", "dense_ensemble", "Dense Ensemble", seeds=(0, 1),
                 members=4, acc=0.86, train_flops=1.4e12)])
    path = tmp_path / "old.parquet"
    frame.to_parquet(path, index=False)
    return path


def changed(table: Path, edit) -> Path:
    """NEW: OLD's frame as `edit` leaves it (in place) or returns it."""
    frame = pd.read_parquet(table)
    edited = edit(frame)
    path = table.with_name("new.parquet")
    (frame if edited is None else edited).to_parquet(path, index=False)
    return path


def run_diff(old, new):
    return subprocess.run([sys.executable, "-m", "harness.diff", str(old), str(new)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_an_unchanged_report_passes_and_prints_tolerances(table):
    new = changed(table, lambda frame: frame.__setitem__("git_commit", "fffffff"))
    result = run_diff(table, new)
    assert result.returncode == 0, result.stdout
    assert "tolerances" in result.stdout and "acc" in result.stdout
    assert "not compared" in result.stdout and "no drift" in result.stdout
    rows = len(pd.read_parquet(table))
    # provenance changes are one count, not a line per cell
    assert f"not compared, {rows} value(s) differ: git_commit in {rows} row(s)" \
        in result.stdout
    assert "fffffff" not in result.stdout


def test_a_moved_metric_and_a_moved_flops_cell_are_named(table):
    def edit(frame):
        frame.loc[frame.row == "dense", "nll"] += 1e-3
        ensemble = frame.row == "dense_ensemble"
        frame.loc[ensemble, "train_flops"] = np.nextafter(frame.loc[ensemble, "train_flops"],
                                                          np.inf)  # one ulp: still a drift
    result = run_diff(table, changed(table, edit))
    assert result.returncode == 1
    drifts = [line for line in result.stdout.splitlines() if line.startswith("DRIFT")]
    assert len(drifts) == 2
    assert any("[dense]: nll" in line for line in drifts)
    assert any("[dense_ensemble]: train_flops" in line and "exact" in line for line in drifts)


def test_metrics_within_tolerance_pass(table):
    def edit(frame):
        frame.loc[frame.row == "dense", "acc"] += diff.TOLERANCES["acc"] / 2
        frame.loc[frame.row == "dense", "ece"] -= diff.TOLERANCES["ece"] / 2
    assert run_diff(table, changed(table, edit)).returncode == 0


def test_counts_rows_and_missing_numbers_are_compared(table):
    def edit(frame):
        frame.loc[frame.row == "dense_ensemble", "seeds"] = 1
        frame.loc[frame.row == "dense", "cacc"] = 50.0  # a number where there was none
    lines = diff.drifted_cells(diff.read_report(table),
                               diff.read_report(changed(table, edit)))
    assert len(lines) == 2 and any("seeds 2.0 -> 1.0" in line for line in lines)

    dropped = changed(table, lambda frame: frame.drop(index=0))
    lines = diff.drifted_cells(diff.read_report(table), diff.read_report(dropped))
    assert lines == ["table1 Single Dense Model M=1 S=0 [dense]: only in OLD"]


def test_another_schema_or_not_a_report_is_one_line_and_exit_2(table, tmp_path):
    result = run_diff(table, changed(table, lambda frame: frame.drop(columns="aece")))
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0
    assert "not a table report of this schema" in result.stderr and "aece" in result.stderr
    text = tmp_path / "table1.md"
    text.write_text("# not parquet\n")
    result = run_diff(table, text)
    assert result.returncode == 2 and "cannot read" in result.stderr


def test_wall_clock_columns_are_shown_but_never_compared(table):
    def edit(frame):
        frame.loc[frame.row == "dense", "infer_ms"] = 123.0
    result = run_diff(table, changed(table, edit))
    assert result.returncode == 0, result.stdout
    assert "infer_ms" in result.stdout and "no drift" in result.stdout
