"""The run store (harness/store/runs.py): a run's place is its configuration; runs of the
earlier table-folder layout are refused with the command that moves them, and
`python -m harness.migrate_runs` moves them without losing or overwriting anything."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

import harness.experiment.assemble  # noqa: F401  every configurable: a run's id needs them all
from harness.core.errors import UserError
from harness.store.migrate import migrate
from harness.store.record import write_json
from harness.store.configuration import configuration_id
from harness.store.runs import RunStore
from harness.tables.make import main as tables_main
from tests.fakes import fake_run, stored_run

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ("Experiment.method = 'dst'\nExperiment.seed = 0\nDSTEnsemble.sparsity = 0.8\n"
          "Experiment.suites = ['test',\n    'cifar10c']\n")


def test_the_configuration_id_ignores_the_seed_and_layout_but_no_binding(tmp_path):
    same = CONFIG.replace("Experiment.seed = 0", "Experiment.seed = 3").replace(
        ",\n    ", ", ")
    assert configuration_id(same) == configuration_id(CONFIG)
    assert configuration_id(CONFIG.replace("0.8", "0.9")) != configuration_id(CONFIG)
    store = RunStore(tmp_path / "runs")
    assert store.run_dir(CONFIG) == tmp_path / f"runs/dst-{configuration_id(CONFIG)}/seed0"
    assert store.run_dir(same).name == "seed3"
    assert store.run_dir(same).parent == store.run_dir(CONFIG).parent


def old_layout_run(runs: Path, table: int, row: str, seed: int = 0, **run) -> Path:
    """A finished run where earlier versions put it, with its row.json."""
    stored = stored_run(runs / "scratch", table, row, seed=seed, **run)
    old = runs / f"table{table}" / "smoke" / row / f"seed{seed}"
    old.parent.mkdir(parents=True, exist_ok=True)
    stored.rename(old)
    write_json(old.parent / "row.json", {"row": row, "method": "x", "gin_files": [],
                                         "bindings": [], "reused": {}})
    return old


def test_runs_in_the_old_layout_are_refused_with_the_command_that_moves_them(tmp_path):
    old_layout_run(tmp_path, 1, "dense", members=1)
    with pytest.raises(UserError, match="layout of earlier versions .* `python -m "
                                        "harness.migrate_runs --runs_dir="):
        RunStore(tmp_path).runs()


def test_migration_moves_runs_to_their_configuration_and_keeps_what_is_not_ours(tmp_path):
    runs = tmp_path / "runs"
    dense = old_layout_run(runs, 1, "dense", members=1)
    (dense.parent / "seed0.failed.json").write_text("{}")
    twin = old_layout_run(runs, 11, "dense", members=1)  # Table 1's configuration again
    (runs / "table1" / "smoke" / "notes.txt").write_text("mine")
    expected = RunStore(runs).configuration_dir((dense / "config.gin").read_text()) / "seed0"
    (runs / "scratch").rename(tmp_path / "scratch")
    result = subprocess.run([sys.executable, "-m", "harness.migrate_runs",
                             f"--runs_dir={runs}"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1, result.stderr
    assert f"{dense} -> {expected}" in result.stdout and "1 run(s) moved, 1 left" in result.stdout
    assert f"left: {twin}: the store already has this configuration" in result.stderr
    assert (expected / "summary.json").is_file() and (expected.parent /
                                                      "seed0.failed.json").is_file()
    assert (runs / "table1" / "smoke" / "notes.txt").read_text() == "mine"
    assert not (runs / "table1" / "smoke" / "dense").exists()  # row.json gone, then the folder
    assert (twin / "summary.json").is_file()  # left where it was, nothing overwritten
    assert not (twin.parent / "row.json").exists()


def test_a_migrated_run_is_reused_by_its_table(tmp_path, capsys):
    runs = tmp_path / "runs"
    old = old_layout_run(runs, 1, "dense", members=1, ratio=1.0)
    summary = json.loads((old / "summary.json").read_text())
    (runs / "scratch").rename(tmp_path / "scratch")
    assert tables_main(["--table=1", "--scale=smoke", f"--runs_dir={runs}",
                        "--rows=dense", "--noprogress"]) == 2
    assert "harness.migrate_runs" in capsys.readouterr().err
    done, left = migrate(runs)
    assert len(done) == 2 and not left  # the run, its row.json
    assert tables_main(["--table=1", "--scale=smoke", f"--runs_dir={runs}", "--rows=dense",
                        f"--output_dir={tmp_path / 'reports'}", "--noprogress"]) == 0
    log = capsys.readouterr().out
    assert "  reused " in log and "  ran" not in log
    [run] = RunStore(runs).finished()
    assert json.loads((run / "summary.json").read_text()) == summary


def test_dry_run_moves_nothing(tmp_path):
    old = old_layout_run(tmp_path, 1, "dense", members=1)
    (tmp_path / "scratch").rename(tmp_path.parent / f"{tmp_path.name}-scratch")
    done, left = migrate(tmp_path, dry_run=True)
    assert len(done) == 1 and not left and (old / "summary.json").is_file()
    assert (old.parent / "row.json").is_file()


def test_a_fake_run_elsewhere_is_no_run_of_the_store(tmp_path):
    fake_run(tmp_path / "mine" / "seed0")
    (tmp_path / "launch").mkdir()
    assert RunStore(tmp_path).runs() == []
