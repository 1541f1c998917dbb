"""`python -m harness.tables`: one run per row of gin/table<N>/, reused when finished, several
seeds as mean and std, rows of methods not built yet shown as missing."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.core import provenance
from harness.tables import make as tables, run_rows
from harness.evaluation.cached_predictions import load_predictions, subensemble_metrics
from harness.tables.catalogue import PAPER
from harness.core.errors import UserError
from harness.tables.context import TableContext
from harness.tables.rows import table_rows
from harness.store.runs import RunStore
from tests.fakes import stored_run

ROOT = Path(__file__).resolve().parents[2]
# One epoch on 128 images, clean test set only: the runner's logic, not the numbers.
FAST = ("Experiment.train_subset = 128", "epoch_factor.factor = 0.004",
        "Experiment.suites = ('test',)", "DenseEnsemble.num_members = 2")


@pytest.fixture(autouse=True)
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # row files include 'gin/dense.gin' relative to the repository


def gin_dir_with(tmp_path: Path, rows: dict[str, str]) -> Path:
    """A gin folder with the real scales and the given table-1 rows."""
    gin_dir = tmp_path / "gin"
    (gin_dir / "table1").mkdir(parents=True)
    (gin_dir / "scale").mkdir()
    (gin_dir / "scale" / "smoke.gin").write_text((ROOT / "gin/scale/smoke.gin").read_text())
    for name, text in rows.items():
        (gin_dir / "table1" / f"{name}.gin").write_text(text)
    return gin_dir


def run(tmp_path, capsys, gin_dir, seeds=1, bindings=FAST):
    context = TableContext("smoke", RunStore(tmp_path / "runs"), gin_dir, bindings=bindings,
                           seeds=seeds)
    run_rows.run_table(1, context, output_dir=tmp_path / "reports", progress=False)
    return pd.read_parquet(tmp_path / "reports" / "table1.parquet"), capsys.readouterr().out


def test_rows_run_once_then_are_reused(tmp_path, capsys):
    gin_dir = gin_dir_with(tmp_path, {name: (ROOT / f"gin/table1/{name}.gin").read_text()
                                      for name in ("dense", "dense_ensemble")})
    frame, output = run(tmp_path, capsys, gin_dir=gin_dir)
    ours = frame[frame.status == "ok"].set_index("row")
    assert sorted(ours.index) == ["dense", "dense_ensemble"]
    assert ours.loc["dense", "method"] == "Single Dense Model"
    assert ours.loc["dense_ensemble", "M"] == 2 and ours.loc["dense", "train_flops_ratio"] == 1
    assert (ours.scale == "smoke").all() and ours.acc.between(0, 100).all()
    [ensemble_run] = [run for run in RunStore(tmp_path / "runs").finished()
                      if run.parent.name.startswith("dense_ensemble-")]
    log_probs, labels = load_predictions(ensemble_run)  # cached, re-scored as the run scored
    assert log_probs.shape[0] == 2
    rescored = subensemble_metrics(log_probs, labels, range(2))
    assert 100 * rescored["accuracy"] == pytest.approx(ours.loc["dense_ensemble", "acc"])
    assert rescored["nll"] == pytest.approx(ours.loc["dense_ensemble", "nll"], abs=1e-6)
    assert output.count("  ran") == 2

    again, output = run(tmp_path, capsys, gin_dir=gin_dir)
    assert output.count("  reused") == 2 and "  ran" not in output
    pd.testing.assert_frame_equal(frame, again)

    # Another configuration is another run: trained beside the first, which stays.
    _, output = run(tmp_path, capsys, gin_dir=gin_dir, bindings=(*FAST, "Trainer.lr = 0.05"))
    assert output.count("  ran") == 2
    assert len(RunStore(tmp_path / "runs").finished()) == 4 and ensemble_run.is_dir()


def test_seeds_give_mean_and_std(tmp_path, capsys):
    gin_dir = gin_dir_with(tmp_path, {"dense": "# row: Single Dense Model\n"
                                               "include 'gin/dense.gin'\n"})
    frame, _ = run(tmp_path, capsys, seeds=2, gin_dir=gin_dir)
    dense = frame[frame.row == "dense"].iloc[0]
    finished = RunStore(tmp_path / "runs").finished()
    assert sorted(run.name for run in finished) == ["seed0", "seed1"]
    accuracies = [100 * json.loads((run / "summary.json").read_text())["metrics"]
                  ["test/accuracy"] for run in finished]
    assert dense.seeds == 2 and len(dense.config_hash.split(",")) == 2
    assert dense.acc == pytest.approx(np.mean(accuracies))
    assert dense.acc_std == pytest.approx(np.std(accuracies, ddof=1))


def test_a_row_whose_method_is_not_built_is_missing(tmp_path, capsys):
    gin_dir = gin_dir_with(tmp_path, {
        "dense": "# row: Single Dense Model\ninclude 'gin/dense.gin'\n",
        "ltr": "# row: LTR Ensemble\ninclude 'gin/dense.gin'\nExperiment.method = 'unbuilt'\n",
        "shared": "# an include of rows: no row line\nTrainer.lr = 0.1\n"})
    frame, output = run(tmp_path, capsys, gin_dir=gin_dir)
    assert "skipped: method 'unbuilt' is not built yet" in output and "shared" not in output
    ltr = frame[frame.method == "LTR Ensemble"].iloc[0]
    assert ltr.status == "missing" and pd.isna(ltr.acc) and ltr.paper_acc == 96.2


def test_bad_tables_are_one_clear_error(tmp_path, capsys):
    unnamed = gin_dir_with(tmp_path, {"dense": "include 'gin/dense.gin'\n"})
    with pytest.raises(UserError, match="table 1 has no rows: no gin file in .* has a '# row: "):
        run(tmp_path, capsys, gin_dir=unnamed)
    with pytest.raises(UserError, match="unknown scale .huge.; known: paper, "):
        run_rows.run_table(1, TableContext("huge", RunStore(tmp_path), ROOT / "gin", seeds=1))
    with pytest.raises(UserError, match="the catalogue has no table 14"):
        run_rows.run_table(14, TableContext("smoke", RunStore(tmp_path), ROOT / "gin", seeds=1))
    assert tables.main(["--table=1", "--scale=smoke", "--gin_file=nope.gin"]) == 2
    assert capsys.readouterr().err.strip() == "error: gin file nope.gin not found"


def test_table3_at_paper_scale_needs_imagenet(tmp_path, capsys):
    """Table 3 runs ResNet-50 on ImageNet: without the data it stops with the dataset's own
    one-line error before any training."""
    code = tables.main(["--table=3", "--scale=paper", f"--runs_dir={tmp_path}/runs",
                        f"--output_dir={tmp_path}/reports", "--noprogress"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and error.count("\n") == 0 and "imagenet" in error.lower()
    assert not list((tmp_path / "runs").glob("table3/paper/*/seed0"))


def test_rows_of_table6_choose_their_own_scale_and_can_be_picked():
    rows = table_rows(PAPER.table(6), TableContext("cpu"))
    names = {row.name: row for row in rows}
    assert len(rows) == 10
    assert names["fge_m5_c100"].gin_files[-1] == "gin/table6/scale/cpu/fge_m5_c100.gin"
    assert names["fge_m5_c10"].gin_files == ("gin/table6/fge_m5_c10.gin", "gin/scale/cpu.gin")
    assert names["dst_m3_s08_c100"].gin_files == (
        "gin/table6/dst_m3_s08_c100.gin", "gin/scale/cpu.gin",
        "gin/table6/scale/cpu/dst_m3_s08_c100.gin")
    picked = run_rows.chosen_rows(rows, ["snapshot_m12_c10", "fge_m5_c10"])
    assert [row.name for row in picked] == ["fge_m5_c10", "snapshot_m12_c10"]
    with pytest.raises(UserError, match="--rows names no row of this table: fge"):
        run_rows.chosen_rows(rows, ["fge"])


def test_a_run_of_another_commit_is_named_and_retrained_with_retrain_stale(
        tmp_path, capsys, monkeypatch, checkout):
    root, first = checkout  # harness/ changed since `first`
    monkeypatch.setattr(provenance, "CHECKOUT", root)
    runs = tmp_path / "runs"
    run_dir = stored_run(runs, 1, "dense")
    summary = json.loads((run_dir / "summary.json").read_text())
    (run_dir / "summary.json").write_text(json.dumps({**summary, "git_commit": first}))
    args = ["--table=1", "--scale=smoke", "--rows=dense", f"--runs_dir={runs}",
            f"--output_dir={tmp_path / 'reports'}", "--noprogress"]
    assert tables.main(args) == 0
    assert (f"reused {run_dir} (trained at commit {first}; harness/, methods/, gin/ changed "
            f"since: 1 file changed") in capsys.readouterr().out

    retrained = []

    def train(gin_files, bindings, place, progress, overwrite=False):
        retrained.append((place, overwrite))  # as `--overwrite` leaves it: a run of HEAD
        (place / "summary.json").write_text(json.dumps(
            {**summary, "git_commit": provenance.head_commit(root)}))

    monkeypatch.setattr(run_rows, "train_here", train)
    assert tables.main([*args, "--retrain_stale"]) == 0
    assert retrained == [(run_dir, True)] and f"ran {run_dir}" in capsys.readouterr().out
    assert tables.main([*args, "--retrain_stale"]) == 0  # now of HEAD: reused as it is
    assert retrained == [(run_dir, True)]
    assert f"reused {run_dir}\n" in capsys.readouterr().out


def test_without_git_a_reused_run_says_its_provenance_cannot_be_checked(tmp_path, capsys,
                                                                        monkeypatch):
    monkeypatch.setattr(provenance, "CHECKOUT", tmp_path)  # no checkout there
    monkeypatch.setattr(run_rows, "train_here", lambda *args, **kwargs: pytest.fail("trained"))
    run_dir = stored_run(tmp_path / "runs", 1, "dense")
    assert tables.main(["--table=1", "--scale=smoke", "--rows=dense", "--retrain_stale",
                        f"--runs_dir={tmp_path / 'runs'}", "--noprogress",
                        f"--output_dir={tmp_path / 'reports'}"]) == 0
    assert (f"reused {run_dir} (provenance cannot be checked (no git checkout here))"
            in capsys.readouterr().out)
