"""`python -m harness.tables --plan`: one line per distinct configuration, FLOPs as the paper
counts them and as dense GPU kernels execute them, status from the run directories."""
from dataclasses import replace
from pathlib import Path

import pytest

from harness.tables import compute_plan, make as tables
from harness.tables.catalogue import PAPER, Catalogue
from harness.tables.context import TableContext
from harness.store.record import write_json
from harness.store import paths
from harness.store.runs import RunStore
from tests.fakes import fake_run

# Table 4 with a row of its own (Table 1's DST configuration again) instead of its reuses.
TABLES_1_4 = Catalogue((PAPER.table(1), replace(PAPER.table(4), reuses=())))

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


@pytest.fixture
def gin_dir(tmp_path):
    folder = tmp_path / "gin"
    for table in ("table1", "table4"):
        (folder / table).mkdir(parents=True)
    (folder / "scale").mkdir()
    (folder / "scale" / "smoke.gin").write_text((ROOT / "gin/scale/smoke.gin").read_text())
    (folder / "table1" / "dense.gin").write_text("# row: Single Dense Model\n"
                                                  "include 'gin/dense.gin'\n")
    (folder / "table1" / "dst.gin").write_text("# row: DST Ensemble\ninclude 'gin/dst.gin'\n")
    # Table 4's row is Table 1's DST run again: the same bindings.
    (folder / "table4" / "dst.gin").write_text("# row: DST Ensemble\ninclude 'gin/dst.gin'\n")
    return folder


def smoke(gin_dir: Path, runs_dir: Path) -> TableContext:
    return TableContext("smoke", RunStore(runs_dir), gin_dir, seeds=1)


def test_rows_of_one_configuration_are_one_run_with_both_flops(tmp_path, gin_dir):
    runs = compute_plan.plan([1, 4], smoke(gin_dir, tmp_path / "runs"), TABLES_1_4)
    assert [run.name for run in runs] == ["table1/dense", "table1/dst"]
    dense, dst = runs
    assert dst.same_as == ["table4/dst"]
    assert dense.executed_flops == dense.paper_flops  # nothing masked
    # S = 0.8: the paper counts about a fifth of the dense multiply-adds, a GPU does them all.
    assert 2.5 < dst.executed_flops / dst.paper_flops < 4
    assert {run.status for run in runs} == {"missing"}


def test_status_finished_failed_and_the_totals(tmp_path, gin_dir, monkeypatch):
    runs_dir = tmp_path / "runs"
    dense, dst = compute_plan.plan([1], smoke(gin_dir, runs_dir))
    fake_run(dst.run_dir)  # finished, by whichever table asked for it first
    (dst.run_dir / "config.gin").write_text(dst.config)
    dense.run_dir.parent.mkdir(parents=True)
    write_json(paths.failure_record(dense.run_dir),
               {"error": "training diverged", "log": "/logs/7_0_log.out"})
    runs = compute_plan.plan([1], smoke(gin_dir, runs_dir))
    assert [run.status for run in runs] == ["failed", "finished"]
    monkeypatch.setattr(compute_plan, "GPU_CHECK_JSON", tmp_path / "no_check.json")
    text = compute_plan.plan_text(runs, 2, None, "smoke")
    assert "2 distinct runs" in text and "Still to run: 1 runs" in text
    assert "training diverged (log /logs/7_0_log.out)" in text
    assert "assumed: 40% of an H100" in text


def test_plan_from_the_command_line_runs_nothing(tmp_path, gin_dir, capsys):
    code = tables.main(["--plan", "--table=1", "--scale=smoke", f"--gin_dir={gin_dir}",
                        f"--runs_dir={tmp_path / 'runs'}"])
    assert code == 0 and "Compute plan, scale smoke: 2 distinct runs" in capsys.readouterr().out
    assert not (tmp_path / "runs").exists()


def test_dst_without_exploration_is_the_static_rows_run(tmp_path):
    # Table 5's DST without prune-and-grow is the Static Sparse Ensemble's training step for
    # step: its row reuses the Static row's run instead of training a copy.
    context = TableContext("paper", RunStore(tmp_path / "runs"), ROOT / "gin", seeds=1)
    runs = {run.name: run for run in compute_plan.plan([1, 5], context)}
    assert "table5/dst_m3_s08_noexplore_c10" in runs["table1/static_m3_s08"].same_as
    assert "table5/dst_m3_s08_noexplore_c10" not in runs
