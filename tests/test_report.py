"""Tables from run records (harness/report.py): seeds aggregated, the paper beside, missing rows
shown as missing, half-written runs skipped and named, bad input one line with exit 2."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness import report
from harness.errors import UserError
from harness.record import write_json, write_metrics

ROOT = Path(__file__).resolve().parents[1]


def fake_run(run_dir: Path, *, method="dense_ensemble", members=2, sparsity=0.0, seed=0,
             acc=0.9, nll=0.3, ece=0.05, train_flops=4e9, ratio=4.0, classes=3,
             examples=40, seconds_per_image=None) -> Path:
    """A finished run directory as harness/execute.py leaves it, without training anything."""
    run_dir.mkdir(parents=True)
    rows = [{"member": "ensemble", "metric": metric, "value": value}
            for metric, value in (("accuracy", acc), ("nll", nll), ("ece", ece))]
    rows += [{"member": f"{i}-{j}", "metric": metric, "value": 0.1 * (i + j)}
             for i in range(members) for j in range(i + 1, members)
             for metric in ("disagreement", "kl")]
    rows = [{"method": method, "suite": "test", "corruption": "clean", "severity": 0, **row}
            for row in rows]
    if sparsity > 0:
        rows += [{"method": method, "suite": "structure", "corruption": "clean",
                  "severity": 0, "member": str(m), "metric": f"density/{layer}",
                  "value": value} for m in range(members)
                 for layer, value in (("conv1", 0.5), ("fc", 1 - sparsity))]
    write_metrics(run_dir / "metrics.parquet", rows)
    write_json(run_dir / "flops.json", {"train_flops": train_flops,
                                        "train_flops_ratio": ratio,
                                        "test_flops_ratio": float(members),
                                        "training_runs": float(members)})
    generator = np.random.default_rng(seed)
    logits = generator.normal(size=(members, examples, classes))
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    (run_dir / "predictions").mkdir()
    np.savez(run_dir / "predictions" / "test.npz", log_probs=log_probs.astype(np.float32),
             labels=generator.integers(0, classes, examples))
    write_json(run_dir / "summary.json", {
        "method": method, "dataset": "digits", "model": "wrn10_2", "num_members": members,
        "sparsity": sparsity, "training_runs": float(members), "seed": seed,
        "epoch_factor": 0.06, "git_commit": "abc1234", "config_hash": f"hash{seed}",
        "metrics": {"test/accuracy": acc, "test/nll": nll, "test/ece": ece,
                    **({} if seconds_per_image is None else
                       {f"timing/{metric}": value
                        for metric, value in seconds_per_image.items()})}})
    return run_dir


def fake_row(runs_dir: Path, name: str, paper_name: str, seeds=(0,), table=1, scale="smoke",
             **run) -> Path:
    row_dir = runs_dir / f"table{table}" / scale / name
    for seed in seeds:
        fake_run(row_dir / f"seed{seed}", seed=seed, **run)
    write_json(row_dir / report.ROW_FILE, {"row": name, "method": paper_name,
                                           "gin_files": [f"gin/table{table}/{name}.gin",
                                                         f"gin/scale/{scale}.gin"],
                                           "bindings": []})
    return row_dir


def test_seeds_are_averaged_with_sample_std_and_flops_kept_exact(tmp_path):
    fake_row(tmp_path, "dense_ensemble", "Dense Ensemble", seeds=(0,), members=4, acc=0.90,
             nll=0.30, train_flops=1.1e9, ratio=4.0)
    fake_run(tmp_path / "table1" / "smoke" / "dense_ensemble" / "seed1", seed=1, members=4,
             acc=0.94, nll=0.34, train_flops=1.1e9, ratio=4.0)
    frame, skipped = report.build_table(1, "smoke", tmp_path)
    assert list(frame.columns) == list(report.COLUMNS) and not skipped
    row = frame[frame.row == "dense_ensemble"].iloc[0]
    assert row.seeds == 2 and row.status == "ok"
    assert row.acc == pytest.approx(92.0)  # fractions become the paper's %
    assert row.acc_std == pytest.approx(np.std([90.0, 94.0], ddof=1))
    assert row.nll == pytest.approx(0.32)
    assert row.train_flops == 1.1e9 and row.train_flops_ratio == 4.0  # exact, not a mean
    assert (row.paper_acc, row.paper_nll, row.paper_train_flops_ratio) == (96.6, 0.114, 4.0)
    assert row.config_hash == "hash0,hash1"

    one_seed, _ = report.build_table(1, "smoke", tmp_path, seeds=1)
    assert one_seed[one_seed.row == "dense_ensemble"].iloc[0].seeds == 1
    assert np.isnan(one_seed[one_seed.row == "dense_ensemble"].iloc[0].acc_std)


def test_paper_rows_without_runs_are_missing_and_never_numbered(tmp_path):
    fake_row(tmp_path, "dense", "Single Dense Model", members=1, ratio=1.0)
    fake_row(tmp_path, "mine", "Not In The Paper", members=2)
    frame, _ = report.build_table(1, "smoke", tmp_path)
    reference = pd.read_csv(report.REFERENCE)
    assert len(frame) == (reference.table == 1).sum() + 1
    assert list(frame.method[:2]) == ["Single Dense Model", "Monte Carlo Dropout"]  # paper order
    missing = frame[frame.status == "missing"]
    assert len(missing) == (reference.table == 1).sum() - 1
    assert missing[list(report.METRICS) + list(report.FLOPS)].isna().all().all()
    assert (missing.seeds == 0).all() and missing.paper_acc.notna().all()
    extra = frame.iloc[-1]
    assert extra.row == "mine" and np.isnan(extra.paper_acc)

    markdown = report.to_markdown(frame, 1, "smoke", ["gin/scale/smoke.gin"])
    assert "| MIMO | 3 | 0.0 | missing | - | 96.40 |" in markdown
    assert "scale `smoke`" in markdown and "Δ" in markdown


def test_sparse_rows_match_the_paper_on_m_and_sparsity(tmp_path):
    fake_row(tmp_path, "edst_m7", "EDST Ensemble", members=7, sparsity=0.9)
    frame, _ = report.build_table(1, "smoke", tmp_path)
    row = frame[frame.row == "edst_m7"].iloc[0]
    assert (row.paper_acc, row.paper_train_flops_ratio) == (96.1, 0.57)
    assert frame[(frame.method == "EDST Ensemble") & (frame.M == 3)].status.item() == "missing"


def run_report(*args):
    return subprocess.run([sys.executable, "-m", "harness.report", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_half_written_runs_are_skipped_and_named(tmp_path):
    fake_row(tmp_path, "dense", "Single Dense Model", members=1)
    half = tmp_path / "table1" / "smoke" / "dense" / "seed1"
    half.mkdir()
    (half / "config.gin").write_text("Experiment.seed = 1\n")  # training, no summary.json
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

    row = fake_row(tmp_path, "dense", "Single Dense Model", members=1)
    summary = json.loads((row / "seed0" / "summary.json").read_text())
    del summary["num_members"]  # a record from another schema
    (row / "seed0" / "summary.json").write_text(json.dumps(summary))
    old = run_report("--table=1", "--scale=smoke", f"--runs_dir={tmp_path}",
                     f"--output_dir={tmp_path / 'out'}")
    assert old.returncode == 2 and old.stderr.strip().count("\n") == 0
    assert "'num_members'" in old.stderr and "incompatible" in old.stderr


def test_incompatible_flops_record_is_a_user_error(tmp_path):
    row = fake_row(tmp_path, "dense", "Single Dense Model", members=1)
    write_json(row / "seed0" / "flops.json", {"train_flops": 1.0})
    with pytest.raises(UserError, match="train_flops_ratio"):
        report.build_table(1, "smoke", tmp_path)


def test_demo_table_of_single_runs(tmp_path):
    run = fake_run(tmp_path / "run", members=1, acc=0.9)
    frame = report.write_table([report.run_row(run)], tmp_path / "demo" / "table1", "Demo")
    assert list(frame.columns) == list(report.DEMO_COLUMNS)
    assert frame.acc.item() == pytest.approx(90.0) and frame.M.item() == 1
    assert (tmp_path / "demo" / "table1.md").read_text().startswith("# Demo")
    assert pd.read_parquet(tmp_path / "demo" / "table1.parquet").shape == (1, 19)


def test_rows_quoted_from_havasi_carry_their_flops_convention(tmp_path):
    fake_row(tmp_path, "batch_ensemble", "BatchEnsemble", members=4, ratio=4.0)
    frame, _ = report.build_table(1, "smoke", tmp_path)
    markdown = report.to_markdown(frame, 1, "smoke", [])
    assert "Havasi et al. 2021" in markdown and "- BatchEnsemble: the batch is tiled" in markdown
    plain = frame[frame.method == "Single Dense Model"]
    assert "Havasi" not in report.to_markdown(plain, 1, "smoke", [])



def test_wall_clock_sits_beside_flops_in_milliseconds(tmp_path):
    timing = {"inference_seconds_per_image": 0.002,
              "sparse_inference_seconds_per_image": 0.001}
    fake_row(tmp_path, "edst", "EDST Ensemble", members=3, sparsity=0.8,
             seconds_per_image=timing)
    fake_row(tmp_path, "dense", "Single Dense Model", members=1,
             seconds_per_image={"inference_seconds_per_image": 0.0005})
    frame, _ = report.build_table(1, "smoke", tmp_path)
    rows = frame.set_index("row")
    assert rows.at["edst", "infer_ms"] == pytest.approx(2.0)
    assert rows.at["edst", "sparse_infer_ms"] == pytest.approx(1.0)
    assert rows.at["dense", "infer_ms"] == pytest.approx(0.5)
    assert np.isnan(rows.at["dense", "sparse_infer_ms"])
    markdown = report.to_markdown(frame, 1, "smoke", [])
    header = next(line for line in markdown.splitlines() if line.startswith("| method"))
    assert "| test FLOPs x | ms/img | sparse ms/img |" in header
    assert "summary.json" in markdown  # says where batch size and device are recorded
