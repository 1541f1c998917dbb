"""Tables from run records (harness/tables/report.py, harness/tables/wide.py): seeds aggregated, the paper beside, missing rows
shown as missing, half-written runs skipped and named, bad input one line with exit 2."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from harness.tables import demo, render, run_numbers, wide
from harness.core.errors import UserError
from harness.store.record import write_json

from tests.fakes import ROOT, cells, fake_row, fake_run, stored_run


def test_seeds_are_averaged_with_sample_std_and_flops_kept_exact(tmp_path):
    ensemble = fake_row(tmp_path, "dense_ensemble", "Dense Ensemble", seeds=(0,), members=4,
                        acc=0.90, nll=0.30, train_flops=1.1e9, ratio=4.0)
    ensemble.finished.append(fake_run(tmp_path / "dense_ensemble" / "seed1", seed=1, members=4,
                                 acc=0.94, nll=0.34, train_flops=1.1e9, ratio=4.0))
    frame = wide.build_table(1, "smoke", [ensemble])
    assert list(frame.columns) == list(wide.COLUMNS)
    row = frame[frame.row == "dense_ensemble"].iloc[0]
    assert row.seeds == 2 and row.status == "ok"
    assert row.acc == pytest.approx(92.0)  # fractions become the paper's %
    assert row.acc_std == pytest.approx(np.std([90.0, 94.0], ddof=1))
    assert row.nll == pytest.approx(0.32)
    assert row.train_flops == 1.1e9 and row.train_flops_ratio == 4.0  # exact, not a mean
    assert (row.paper_acc, row.paper_nll, row.paper_train_flops_ratio) == (96.6, 0.114, 4.0)
    assert row.config_hash == "hash0,hash1"

    ensemble.finished.pop()
    one_seed = wide.build_table(1, "smoke", [ensemble])
    assert one_seed[one_seed.row == "dense_ensemble"].iloc[0].seeds == 1
    assert np.isnan(one_seed[one_seed.row == "dense_ensemble"].iloc[0].acc_std)


def test_paper_rows_without_runs_are_missing_and_never_numbered(tmp_path):
    rows = [fake_row(tmp_path, "dense", "Single Dense Model", members=1, ratio=1.0),
            fake_row(tmp_path, "mine", "Not In The Paper", members=2)]
    frame = wide.build_table(1, "smoke", rows)
    reference = pd.read_csv(wide.REFERENCE)
    assert len(frame) == (reference.table == 1).sum() + 1
    assert list(frame.method[:2]) == ["Single Dense Model", "Monte Carlo Dropout"]  # paper order
    missing = frame[frame.status == "missing"]
    assert len(missing) == (reference.table == 1).sum() - 1
    assert missing[list(run_numbers.METRICS) + list(run_numbers.FLOPS)].isna().all().all()
    assert (missing.seeds == 0).all() and missing.paper_acc.notna().all()
    extra = frame.iloc[-1]
    assert extra.row == "mine" and np.isnan(extra.paper_acc)

    markdown = render.markdown(wide.table_model(frame, 1, "smoke",
                                                       ["gin/scale/smoke.gin"]))
    mimo = cells(markdown, "MIMO")
    assert mimo[:5] == ["MIMO", "cifar10 / wrn28_10", "3", "0",
                        "missing: no finished run of this row (its method or suite is not "
                        "built, or it has not run)"]
    assert mimo[5:7] == ["-", "96.40"]
    assert cells(markdown, "Not In The Paper (mine)")[1] == "digits / wrn10_2"
    assert "scale `smoke` (layered with `gin/scale/smoke.gin`)" in markdown and "Δ" in markdown


def test_sparse_rows_match_the_paper_on_m_and_sparsity(tmp_path):
    frame = wide.build_table(1, "smoke", [
        fake_row(tmp_path, "edst_m7", "EDST Ensemble", members=7, sparsity=0.9)])
    row = frame[frame.row == "edst_m7"].iloc[0]
    assert (row.paper_acc, row.paper_train_flops_ratio) == (96.1, 0.57)
    assert frame[(frame.method == "EDST Ensemble") & (frame.M == 3)].status.item() == "missing"


def run_report(*args):
    return subprocess.run([sys.executable, "-m", "harness.report", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_half_written_runs_are_skipped_and_named(tmp_path):
    stored_run(tmp_path, 1, "dense", members=1)
    half = stored_run(tmp_path, 1, "dense", seed=1, members=1)
    (half / "summary.json").unlink()  # training, no summary.json
    result = run_report("--table=1", "--scale=smoke", f"--runs_dir={tmp_path}",
                        f"--output_dir={tmp_path / 'out'}")
    assert result.returncode == 0, result.stderr
    assert f"skipped unfinished run {half}" in result.stderr
    frame = pd.read_parquet(tmp_path / "out" / "table1.parquet")
    assert frame[frame.row == "dense"].seeds.item() == 1
    assert (tmp_path / "out" / "table1.md").read_text().startswith("# Table 1")


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    empty = run_report("--table=2", "--scale=smoke", f"--runs_dir={tmp_path}")
    assert empty.returncode == 2
    assert empty.stderr.strip().count("\n") == 0 and "no finished runs for table 2" in empty.stderr

    run = stored_run(tmp_path, 1, "dense", members=1)
    summary = json.loads((run / "summary.json").read_text())
    del summary["num_members"]  # a record from another schema
    (run / "summary.json").write_text(json.dumps(summary))
    old = run_report("--table=1", "--scale=smoke", f"--runs_dir={tmp_path}",
                     f"--output_dir={tmp_path / 'out'}")
    assert old.returncode == 2 and old.stderr.strip().count("\n") == 0
    assert f"{run / 'summary.json'} is damaged (no 'num_members')" in old.stderr


def test_damaged_flops_record_is_a_user_error(tmp_path):
    row = fake_row(tmp_path, "dense", "Single Dense Model", members=1)
    write_json(row.finished[0] / "flops.json", {"train_flops": 1.0})
    with pytest.raises(UserError, match="train_flops_ratio"):
        wide.build_table(1, "smoke", [row])


def test_demo_table_of_single_runs(tmp_path):
    run = fake_run(tmp_path / "run", members=1, acc=0.9)
    frame = demo.write_table([run_numbers.run_row(run)], tmp_path / "demo" / "table1", "Demo")
    assert list(frame.columns) == list(demo.DEMO_COLUMNS)
    assert frame.acc.item() == pytest.approx(90.0) and frame.M.item() == 1
    assert (tmp_path / "demo" / "table1.md").read_text().startswith("# Demo")
    assert pd.read_parquet(tmp_path / "demo" / "table1.parquet").shape == (1, 19)


def test_rows_quoted_from_havasi_carry_their_flops_convention(tmp_path):
    frame = wide.build_table(1, "smoke", [
        fake_row(tmp_path, "batch_ensemble", "BatchEnsemble", members=4, ratio=4.0)])
    markdown = render.markdown(wide.table_model(frame, 1, "smoke", []))
    assert "Havasi et al. 2021" in markdown and "- BatchEnsemble: the batch is tiled" in markdown
    plain = frame[frame.method == "Single Dense Model"]
    assert "Havasi" not in render.markdown(wide.table_model(plain, 1, "smoke", []))



def test_wall_clock_sits_beside_flops_in_milliseconds(tmp_path):
    timing = {"inference_seconds_per_image": 0.002,
              "sparse_inference_seconds_per_image": 0.001}
    frame = wide.build_table(1, "smoke", [
        fake_row(tmp_path, "edst", "EDST Ensemble", members=3, sparsity=0.8,
                 seconds_per_image=timing),
        fake_row(tmp_path, "dense", "Single Dense Model", members=1,
                 seconds_per_image={"inference_seconds_per_image": 0.0005})])
    rows = frame.set_index("row")
    assert rows.at["edst", "infer_ms"] == pytest.approx(2.0)
    assert rows.at["edst", "sparse_infer_ms"] == pytest.approx(1.0)
    assert rows.at["dense", "infer_ms"] == pytest.approx(0.5)
    assert np.isnan(rows.at["dense", "sparse_infer_ms"])
    markdown = render.markdown(wide.table_model(frame, 1, "smoke", []))
    header = cells(markdown, "method (row)")
    assert header[header.index("test FLOPs x"):][:3] == ["test FLOPs x", "ms/img",
                                                         "sparse ms/img"]
    assert "summary.json" in markdown  # says where batch size and device are recorded
