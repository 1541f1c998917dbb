"""Long-format tables (harness/tables/long.py, Tables 4 and up): diversity from cached
predictions, rows reused across tables by configuration, the reference matched on its
setting, missing numbers named with their reason, and harness.tables.diff on long tables."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from harness.experiment import assemble as experiment  # noqa: F401  experiment: its configurables

from harness.tables import long
from harness.evaluation.cached_predictions import member_diversity, pair_diversity
from harness.tables.catalogue import PAPER
from harness.data.facts import FAMILIES
from harness.tables.diversity import class_disagreement
from harness.core.errors import UserError
from harness.tables.context import TableContext
from harness.tables.rows import table_rows
from harness.store.record import write_json
from harness.store.locks import training_lock
from harness.store.runs import RunStore
from harness.tables.run_rows import run_seed
from harness.tables.sources import table_runs
from harness.tables.make import main as tables_main
from tests.fakes import fake_row, fake_run, stored_run

ROOT = Path(__file__).resolve().parents[2]
GIN = ROOT / "gin"


def log_probs_of(probs) -> torch.Tensor:
    return torch.tensor(probs, dtype=torch.float64).log()


A = [[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]]
B = [[0.6, 0.4], [0.7, 0.3], [0.7, 0.3], [0.1, 0.9]]


def kl(p, q) -> float:
    p, q = np.array(p), np.array(q)
    return float(np.mean((p * np.log(p / q)).sum(1)))


def test_identical_members_have_zero_diversity():
    members = log_probs_of([A, A, A])
    assert member_diversity(members) == {"disagreement": 0.0, "kl": 0.0}


def test_diversity_by_hand_is_the_mean_over_ordered_pairs():
    pairs = pair_diversity(log_probs_of([A, B]))
    # Top-1: A = 0, 1, 0, 1 and B = 0, 0, 0, 1: they differ on one image of four.
    assert pairs[(0, 1)]["disagreement"] == pairs[(1, 0)]["disagreement"] == pytest.approx(0.25)
    assert pairs[(0, 1)]["kl"] == pytest.approx(kl(A, B))
    assert pairs[(1, 0)]["kl"] == pytest.approx(kl(B, A))
    # The authors' 'KD' mode: both directions of the asymmetric KL, not KL(A || B) alone.
    assert kl(A, B) != pytest.approx(kl(B, A))
    two = member_diversity(log_probs_of([A, B]))
    assert two["kl"] == pytest.approx((kl(A, B) + kl(B, A)) / 2)
    three = member_diversity(log_probs_of([A, B, A]))  # six ordered pairs, two of them (A, A)
    assert three["disagreement"] == pytest.approx(4 * 0.25 / 6)
    assert three["kl"] == pytest.approx(2 * (kl(A, B) + kl(B, A)) / 6)
    with pytest.raises(ValueError, match="two members"):
        member_diversity(log_probs_of([A]))


def test_per_class_disagreement_on_a_hand_made_run(tmp_path):
    run_dir = fake_run(tmp_path / "run", members=2, classes=2, examples=4)
    labels = np.array([0, 1, 0, 1])  # class 0: images 1 and 3 (agree); class 1: 2 and 4
    np.savez(run_dir / "predictions" / "test.npz",
             log_probs=log_probs_of([A, B]).numpy().astype(np.float32), labels=labels)
    assert class_disagreement(run_dir) == {("class 0: 0", "disagreement"): 0.0,
                                           ("class 1: 1", "disagreement"): 0.5}


def in_store(runs: Path) -> TableContext:
    """The smoke-scale context of the repository's rows over the run store `runs`."""
    return TableContext("smoke", RunStore(runs), GIN)


def rows_of(table: int, scale: str = "smoke") -> dict:
    rows = table_rows(PAPER.table(table), TableContext(scale, gin_dir=GIN))
    return {row.name: row for row in rows}


def test_a_table4_row_is_the_table1_run_of_its_configuration(tmp_path):
    runs = tmp_path / "runs"
    table1 = stored_run(runs, 1, "dst_m3_s08", method="dst", members=3, sparsity=0.8)
    outcome = run_seed(rows_of(4)["dst_m3_s08_c10"], 0, in_store(runs), progress=False)
    assert outcome.startswith(f"reused {table1}")  # nothing trained, nothing copied
    assert RunStore(runs).runs() == [table1]
    found = {row.name: row for row in table_runs(PAPER.table(4), in_store(runs))}
    assert found["dst_m3_s08_c10"].finished == [table1]
    assert found["dst_m3_s08_c10"].method == "DST Ensemble"
    # At smoke scale the digits stand in for CIFAR-100 too: Table 2's row is the same run.
    assert found["dst_m3_s08_c100"].finished == [table1]
    assert found["edst_m3_s08_c10"].finished == []  # another configuration


def test_every_row_names_a_method_and_setting_of_the_reference():
    reference = long.load_reference_extra()
    for table in (4, 5, 7, 9, 10):
        printed = reference[reference.table == table]
        rows = table_rows(PAPER.table(table), TableContext(gin_dir=GIN))
        assert rows, table
        for row in rows:
            matches = printed[printed.method == row.method]
            if table != 7:  # Table 7's settings are its class columns
                matches = matches[matches.setting == (row.setting or "")]
            assert len(matches), (table, row.name, row.setting)
    assert {row.setting for row in rows_of(9, "paper").values()} == {"q=0.1", "q=0.5", "q=0.8"}


def long_row(runs: Path, table: int, name: str, paper_name: str, setting: str | None,
             dataset: str, seeds=(0,), **run):
    row = fake_row(runs, name, paper_name, seeds, table, setting=setting, **run)
    for run_dir in row.finished:
        summary = json.loads((run_dir / "summary.json").read_text())
        write_json(run_dir / "summary.json", {**summary, "dataset": dataset})
    return row


def build(table: int, *rows):
    return long.build_long_table(PAPER.table(table), "smoke", list(rows))


def test_reference_matched_on_setting_and_missing_numbers_named(tmp_path):
    runs = tmp_path / "runs"
    row = long_row(runs, 5, "edst_m3_s08_noexplore_c10", "EDST Ensemble",
                   "without exploration", "cifar10.npz", seeds=(0, 1), method="edst",
                   members=3, sparsity=0.8, acc=0.9)
    frame = build(5, row, long_row(runs, 5, "dst_m3_s08_c10", "DST Ensemble",
                                   "with exploration", "digits", method="dst", members=3,
                                   sparsity=0.8))
    assert list(frame.columns) == list(long.LONG_COLUMNS)
    key = ["dataset", "method", "setting", "metric"]
    cells = frame.set_index(key)
    ours = cells.loc[("cifar10", "EDST Ensemble", "without exploration", "disagreement")]
    expected = [member_diversity(torch.from_numpy(np.load(
        run / "predictions" / "test.npz")["log_probs"]))["disagreement"]
        for run in row.finished]
    assert ours.status == "ok" and ours.seeds == 2 and ours.paper == 0.017
    assert ours.value == pytest.approx(np.mean(expected))
    assert ours.value_std == pytest.approx(np.std(expected, ddof=1))
    assert ours.difference == pytest.approx(ours.value - 0.017)
    assert cells.loc[("cifar10", "EDST Ensemble", "without exploration", "acc")].value == \
        pytest.approx(90.0)
    # The same method with exploration has no run: missing, not matched to the other setting.
    other = cells.loc[("cifar10", "EDST Ensemble", "with exploration", "kl")]
    assert other.status == "missing" and "no run of ours" in other.reason
    assert np.isnan(other.value) and other.paper == 0.073
    # A row that ran on digits (smoke) stands in for no paper dataset: named, listed apart.
    dst = cells.loc[("cifar10", "DST Ensemble", "with exploration", "acc")]
    assert dst.status == "missing"
    assert dst.reason == "no run of ours on cifar10: dst_m3_s08_c10 ran on digits (scale 'smoke')"
    assert ("digits", "DST Ensemble", "with exploration", "acc") in cells.index
    assert len(frame[frame.status == "missing"]) == 24 - 3  # every printed number kept


def test_a_run_without_cached_predictions_is_missing_with_its_reason(tmp_path):
    runs = tmp_path / "runs"
    row = long_row(runs, 4, "dst_m3_s08_c10", "DST Ensemble", None, "cifar10.npz",
                   method="dst", members=3, sparsity=0.8)
    (row.finished[0] / "predictions" / "test.npz").unlink()
    frame = build(4, row)
    dst = frame[(frame.method == "DST Ensemble") & (frame.dataset == "cifar10")]
    assert len(dst) == 3 and (dst.status == "missing").all()
    assert dst.reason.str.contains("dst_m3_s08_c10: .* has no cached predictions").all()


def test_per_class_table_matches_the_paper_columns_by_class_index(tmp_path):
    runs = tmp_path / "runs"
    frame = build(7, long_row(runs, 7, "dst_m3_s08_c100", "DST Ensemble", None, "cifar100",
                              method="dst", members=3, sparsity=0.8, classes=12, examples=240))
    dst = frame[(frame.method == "DST Ensemble") & (frame.status == "ok")]
    assert list(dst.setting) == [f"class {k}: {name}" for k, name
                                 in enumerate(FAMILIES["cifar100"].class_names)]
    fish = dst[dst.setting == "class 2: baby"].iloc[0]
    assert fish.paper == 0.227 and fish.note.startswith("printed as 'Fish'")


def test_per_class_cells_of_a_run_on_another_data_set_name_that_run(tmp_path):
    runs = tmp_path / "runs"
    frame = build(7, long_row(runs, 7, "dst_m3_s08_c100", "DST Ensemble", None, "digits",
                              method="dst", members=3, sparsity=0.8, classes=10,
                              examples=200))
    apple = frame[(frame.method == "DST Ensemble") & (frame.setting == "class 0: apple")]
    assert list(apple.reason) == [
        "no run of ours on cifar100: dst_m3_s08_c100 ran on digits (scale 'smoke')"]


def test_unknown_table_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="the catalogue has no table 14; tables: 1, 2, 3"):
        PAPER.table(14)
    result = subprocess.run([sys.executable, "-m", "harness.tables", "--table=14",
                             "--scale=smoke", f"--runs_dir={tmp_path}"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "no table 14" in result.stderr and not any(tmp_path.iterdir())


def run_diff(old: Path, new: Path):
    return subprocess.run([sys.executable, "-m", "harness.diff", str(old), str(new)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.fixture
def long_table_file(tmp_path) -> Path:
    runs = tmp_path / "runs"
    frame = build(4, long_row(runs, 4, "dst_m3_s08_c10", "DST Ensemble", None, "cifar10.npz",
                              method="dst", members=3, sparsity=0.8))
    path = tmp_path / "old.parquet"
    frame.to_parquet(path, index=False)
    return path


def edited(path: Path, metric: str, shift: float) -> Path:
    frame = pd.read_parquet(path)
    cell = (frame.metric == metric) & (frame.status == "ok")
    frame.loc[cell, "value"] += shift
    frame.loc[cell, "difference"] += shift
    frame["git_commit"] = "fffffff"
    new = path.with_name("new.parquet")
    frame.to_parquet(new, index=False)
    return new


def test_diff_names_a_drifted_long_table_cell(long_table_file):
    result = run_diff(long_table_file, edited(long_table_file, "disagreement", 2e-5))
    assert result.returncode == 1, result.stdout
    drifted = [line for line in result.stdout.splitlines() if line.startswith("DRIFT")]
    assert len(drifted) == 2 and all("DST Ensemble" in line and "(cifar10) disagreement"
                                     in line for line in drifted)  # value and difference


def test_diff_passes_within_the_metric_tolerance(long_table_file):
    assert run_diff(long_table_file, edited(long_table_file, "kl", 5e-6)).returncode == 0
    result = run_diff(long_table_file, edited(long_table_file, "acc", 5e-5))  # % units
    assert result.returncode == 0, result.stdout
    assert "no drift" in result.stdout


TABLE4_C10 = ("ltr_m3_s08", "static_m3_s08", "edst_m3_s08", "pf_m3_s08", "dst_m3_s08",
              "dense_ensemble")


def test_table4_at_cpu_scale_with_an_extra_gin_file_is_table1s_runs(tmp_path, capsys):
    """`--table=4 --scale=cpu --gin_file=X --runs_dir=R --rows=<CIFAR-10 rows>` after
    `--table=1 --scale=cpu --gin_file=X --runs_dir=R`: every row reused, nothing trained."""
    note = tmp_path / "note.gin"
    note.write_text("wide_resnet.width = 1\nepoch_factor.factor = 0.04\n")
    runs = tmp_path / "runs"
    for name in TABLE4_C10:
        members = 4 if name == "dense_ensemble" else 3
        run_dir = stored_run(runs, 1, name, scale="cpu", extra_files=(str(note),),
                             members=members, sparsity=0.0 if members == 4 else 0.8)
        summary = json.loads((run_dir / "summary.json").read_text())
        write_json(run_dir / "summary.json", {**summary, "dataset": "cifar10.npz"})
    code = tables_main(["--table=4", "--scale=cpu", f"--gin_file={note}", f"--runs_dir={runs}",
                        f"--output_dir={tmp_path / 'reports'}", "--noprogress",
                        "--rows=" + ",".join(f"{name}_c10" for name in TABLE4_C10)])
    log = capsys.readouterr().out.split("# Table")[0]
    assert code == 0
    assert log.count("  reused ") == len(TABLE4_C10) and "  ran" not in log
    frame = pd.read_parquet(tmp_path / "reports" / "table4.parquet")
    assert set(frame[frame.dataset == "cifar10"].status) == {"ok"}
    assert len(frame[frame.dataset == "cifar10"]) == 18
    assert (frame[frame.dataset == "cifar100"].reason.str.match(
        "no run of ours on cifar100: .*_c10 ran on cifar10")).all()


def test_a_row_that_cannot_run_is_missing_with_its_error_and_the_rest_still_reported(
        tmp_path):
    """A bad setting (q outside (0, 1]) is one clear error before training; in a long table
    the other rows still report, and the table names the row and the error."""
    gin_dir = tmp_path / "gin"
    (gin_dir / "table9").mkdir(parents=True)
    (gin_dir / "scale").mkdir()
    (gin_dir / "scale" / "smoke.gin").write_text((GIN / "scale" / "smoke.gin").read_text())
    for name in ("edst_m3_s08_q08_c10", "edst_m3_s08_q01_c10"):
        (gin_dir / "table9" / f"{name}.gin").write_text((GIN / "table9" / f"{name}.gin")
                                                        .read_text())
    (gin_dir / "table9" / "edst_m3_s08_q01_c10.gin").write_text(
        (GIN / "table9" / "edst_m3_s08_q01_c10.gin").read_text().replace(
            "escape_fraction = 0.1", "escape_fraction = 1.5"))
    runs = tmp_path / "runs"
    run_dir = stored_run(runs, 1, "edst_m3_s08", method="edst", members=3, sparsity=0.8)
    summary = json.loads((run_dir / "summary.json").read_text())
    write_json(run_dir / "summary.json", {**summary, "dataset": "cifar10.npz"})
    with pytest.raises(UserError) as error:
        from harness.tables.run_rows import run_table
        run_table(9, TableContext("smoke", RunStore(runs), gin_dir, seeds=1),
                  output_dir=tmp_path, progress=False)
    message = str(error.value)
    assert "1 row(s) could not run" in message and "edst_m3_s08_q01_c10 (EDSTEnsemble." \
        "escape_fraction (q) must be in (0, 1], got 1.5)" in message
    assert RunStore(runs).runs() == [run_dir]  # nothing of the failing row was written
    frame = pd.read_parquet(tmp_path / "table9.parquet")
    q01 = frame[(frame.setting == "q=0.1") & (frame.dataset == "cifar10")]
    assert (q01.status == "missing").all() and q01.reason.str.contains(
        "could not run: edst_m3_s08_q01_c10: EDSTEnsemble.escape_fraction").all()
    q08 = frame[(frame.setting == "q=0.8") & (frame.dataset == "cifar10")]
    assert (q08.status == "ok").all() and len(q08) == 3


def test_diff_refuses_a_long_table_against_a_wide_one(long_table_file, tmp_path):
    wide = ROOT / "reports" / "golden" / "table1.parquet"
    result = run_diff(wide, long_table_file)
    assert result.returncode == 2 and "different schemas" in result.stderr
    assert result.stderr.count("\n") == 1


def test_a_row_skips_a_run_of_its_configuration_that_another_process_trains(tmp_path):
    runs = tmp_path / "runs"
    training = stored_run(runs, 1, "dst_m3_s08", method="dst", members=3, sparsity=0.8)
    (training / "summary.json").unlink()  # Table 1 is still training it
    with training_lock(training):
        outcome = run_seed(rows_of(4)["dst_m3_s08_c10"], 0, in_store(runs), progress=False)
    assert outcome.startswith(f"skipped: running: {training} is being trained by pid")
    assert RunStore(runs).runs() == [training] and RunStore(runs).finished() == []
    [row] = [row for row in table_runs(PAPER.table(4), in_store(runs), require_finished=False)
             if row.name == "dst_m3_s08_c10"]
    assert row.finished == [] and row.unfinished == [training]
