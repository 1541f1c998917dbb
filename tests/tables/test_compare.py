"""`python -m harness.compare`: any finished runs in one wide table, seeds of one configuration
averaged, in the paper tables' keys and units."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from harness.tables import significance
from harness.tables.compare import compare, load_runs, markdown
from harness.store.record import write_json
from tests.fakes import cells, fake_run

ROOT = Path(__file__).resolve().parents[2]


def my_run(run_dir: Path, method: str, seed: int, acc: float, display_name: str,
           *, bindings: str = "", train_seconds: float = 60.0, **run) -> Path:
    """A finished run of a user's own, as `python -m harness.run` leaves it; `bindings`: more
    lines of its config.gin."""
    fake_run(run_dir, method=method, seed=seed, acc=acc, **run)
    (run_dir / "config.gin").write_text(f"Experiment.method = '{method}'\n"
                                        f"Experiment.seed = {seed}\n"
                                        f"wide_resnet.depth = 10\n{bindings}")
    summary = run_dir / "summary.json"
    record = json.loads(summary.read_text())
    write_json(summary, {**record, "display_name": display_name, "train_seconds": train_seconds,
                         "corrupted": {"cacc": acc - 0.2, "cnll": 1.0, "cece": 0.1}})
    return run_dir


@pytest.fixture
def mine(tmp_path) -> Path:
    root = tmp_path / "mine"
    my_run(root / "dense_a", "dense", 0, 0.90, "Single Dense Model", members=1, ratio=1.0,
           train_seconds=60.0, seconds_per_image={"inference_seconds_per_image": 0.001})
    my_run(root / "dense_b", "dense", 1, 0.94, "Single Dense Model", members=1, ratio=1.0,
           train_seconds=64.0, seconds_per_image={"inference_seconds_per_image": 0.002})
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
    # every timing with its spread too
    assert (dense.train_seconds, dense.infer_ms) == (pytest.approx(62.0), pytest.approx(1.5))
    assert dense.train_seconds_std == pytest.approx(np.std([60.0, 64.0], ddof=1))
    assert dense.infer_ms_std == pytest.approx(np.std([1.0, 2.0], ddof=1))
    text = markdown(table)
    assert "92.00 ± 2.83" in cells(text, "Single Dense Model")
    assert "62.0 ± 2.8" in cells(text, "Single Dense Model")
    assert "95.00" in cells(text, "EDST Ensemble")
    assert not any("±" in cell for cell in cells(text, "EDST Ensemble"))


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


def compare_command(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.compare", *argv],
                          capture_output=True, text=True, cwd=ROOT)


def test_the_bindings_that_differ_are_columns_and_each_row_names_its_runs(mine):
    my_run(mine / "dense_lr", "dense", 0, 0.93, "Single Dense Model", members=1,
           bindings="Trainer.lr = 0.05\n")
    (mine / "dense_a" / "operative_config.gin").write_text("Trainer.lr = 0.1\n")  # as it ran
    table = compare(load_runs([str(mine)]))
    assert table.attrs["bindings"] == ["Experiment.method", "Trainer.lr"]  # not the seed
    by_runs = dict(zip(table.run_dirs, table["Trainer.lr"]))
    # not given: the value the run used where its operative_config.gin says, else blank
    assert by_runs == {f"{mine / 'dense_a'},{mine / 'dense_b'}": "0.1",
                       str(mine / "dense_lr"): "0.05", str(mine / "edst"): ""}
    text = markdown(table)
    assert cells(text, "Single Dense Model")[-1] == "dense_a, dense_b"  # relative to ...
    assert f"runs: in {mine}" in text
    header = cells(text, "method")
    assert "Trainer.lr" in header and "Experiment.seed" not in header


def test_labels_name_the_run_arguments(mine):
    done = compare_command(str(mine / "dense_*"), str(mine / "edst"), "--labels=dense,tickets")
    assert done.returncode == 0, done.stderr
    assert cells(done.stdout, "dense")[1:2] == ["Single Dense Model"]
    assert cells(done.stdout, "tickets")[1:2] == ["EDST Ensemble"]
    wrong = compare_command(str(mine / "edst"), "--labels=a,b")
    assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1
    assert "--labels gives 2 label(s) for 1 RUN argument(s)" in wrong.stderr


@pytest.mark.parametrize("given", [
    lambda root: [str(root / "*")],
    lambda root: [str(root)],
    lambda root: [str(root / "dense_a"), str(root / "dense_b"), str(root / "edst"),
                  str(root / "started")],
])
def test_an_unfinished_run_is_skipped_with_one_line_however_it_is_given(mine, given, capsys):
    (mine / "started").mkdir()
    (mine / "started" / "config.gin").write_text("Experiment.method = 'dense'\n")
    # a run --overwrite is building beside a finished one: neither a run nor a notice
    (mine / ".dense_a.new").mkdir()
    (mine / ".dense_a.new" / "config.gin").write_text("Experiment.method = 'dense'\n")
    runs = load_runs(given(mine))
    assert len(runs) == 3
    notice = f"skipped unfinished run {mine / 'started'} (no summary.json)\n"
    assert capsys.readouterr().err == notice


def test_unfinished_runs_alone_are_one_line_and_exit_2(tmp_path):
    (tmp_path / "started").mkdir()
    (tmp_path / "started" / "config.gin").write_text("Experiment.method = 'dense'\n")
    done = compare_command(str(tmp_path / "started"))
    assert done.returncode == 2 and done.stderr == (
        f"error: no finished run to compare: {tmp_path / 'started'} is unfinished "
        f"(no summary.json)\n")


def test_a_run_given_twice_is_one_seed(mine, monkeypatch):
    monkeypatch.chdir(mine)
    runs = load_runs([str(mine / "dense_a"), "dense_a", "./dense_a/", str(mine / "dense_a" /
                                                                      ".." / "dense_a")])
    assert len(runs) == 1
    assert compare(runs).seeds.tolist() == [1]


def predicted(run_dir: Path, probabilities: np.ndarray, labels: np.ndarray) -> Path:
    """Replaces the run's saved test predictions: one member's probabilities [N, C]."""
    np.savez(run_dir / "predictions" / "test.npz",
             log_probs=np.log(probabilities)[None].astype(np.float32), labels=labels)
    return run_dir


def test_the_baseline_difference_over_seeds_is_welchs_interval(tmp_path):
    root = tmp_path / "mine"
    for seed, acc in enumerate((0.90, 0.94, 0.91)):
        my_run(root / f"base{seed}", "dense", seed, acc, "Single Dense Model", members=1)
    for seed, acc in enumerate((0.95, 0.96)):
        my_run(root / f"lr{seed}", "dense", seed, acc, "Single Dense Model", members=1,
               bindings="Trainer.lr = 0.05\n")
    out = tmp_path / "out"
    done = compare_command(str(root / "lr*"), f"--baseline={root / 'base*'}",
                           f"--output_dir={out}")
    assert done.returncode == 0, done.stderr
    row = pd.read_parquet(out / "compare.parquet").set_index("baseline").loc[False]
    # Welch by hand: the Welch-Satterthwaite degrees of freedom and scipy's t quantile
    ours, base = np.array([95.0, 96.0]), np.array([90.0, 94.0, 91.0])
    terms = ours.var(ddof=1) / len(ours), base.var(ddof=1) / len(base)
    df = sum(terms) ** 2 / (terms[0] ** 2 / (len(ours) - 1) + terms[1] ** 2 / (len(base) - 1))
    half = stats.t.ppf(0.975, df) * np.sqrt(sum(terms))
    difference = ours.mean() - base.mean()
    assert row.acc_diff == pytest.approx(difference)
    assert (row.acc_diff_low, row.acc_diff_high) == (pytest.approx(difference - half),
                                                     pytest.approx(difference + half))
    assert row.acc_diff_method == "welch" and row.cacc_diff_method == "welch"
    mark = " *" if difference - half > 0 else ""
    assert (f"{difference:+.2f} [{difference - half:+.2f}, {difference + half:+.2f}]{mark}"
            in cells(done.stdout, "lr0, lr1"))
    assert "welch (2 vs 3 seeds)" in cells(done.stdout, "lr0, lr1")


@pytest.fixture
def right_and_half_wrong(tmp_path) -> Path:
    """Three single-seed runs on one test set of 40 examples of 3 classes: `right` puts 0.9
    on the label of every example, `same` predicts exactly as it, `half` as it on the first
    half and 0.9 on a wrong class on the second."""
    root = tmp_path / "mine"
    labels = np.arange(40) % 3
    right = np.full((40, 3), 0.05)
    right[np.arange(40), labels] = 0.9
    half = right.copy()
    half[20:] = np.roll(right[20:], 1, axis=1)
    for name, probabilities in (("right", right), ("same", right), ("half", half)):
        predicted(my_run(root / name, "dense", 0, 0.9, "Single Dense Model", members=1,
                         bindings=f"Trainer.note = '{name}'\n"), probabilities, labels)
    return root


def test_the_baseline_difference_of_single_seeds_is_a_paired_bootstrap(right_and_half_wrong,
                                                                        tmp_path):
    root, out = right_and_half_wrong, tmp_path / "out"
    done = compare_command(str(root / "same"), str(root / "half"),
                           f"--baseline={root / 'right'}", f"--output_dir={out}")
    assert done.returncode == 0, done.stderr
    table = pd.read_parquet(out / "compare.parquet").set_index("run_dirs")
    same, half = table.loc[str(root / "same")], table.loc[str(root / "half")]
    # identical predictions: no difference on any resample
    for metric in ("acc", "nll", "ece"):
        assert (same[f"{metric}_diff"], same[f"{metric}_diff_low"],
                same[f"{metric}_diff_high"]) == (0, 0, 0)
        assert same[f"{metric}_diff_method"] == "bootstrap"
    assert same.cacc_diff_method == ""  # no corrupted predictions: no interval
    # by hand: on a resample, `right` is right everywhere, `half` on the share k of the
    # resampled examples that fall in the first half, at confidence 0.9 throughout
    share = (significance.resample_indices(40) < 20).mean(axis=1)
    expected = {"acc": (100 * (0.5 - 1), 100 * (share - 1)),
                "nll": (0.5 * (np.log(0.9) - np.log(0.05)),
                        (1 - share) * (np.log(0.9) - np.log(0.05))),
                "ece": (abs(0.5 - 0.9) - 0.1, np.abs(share - 0.9) - 0.1)}
    for metric, (difference, resampled) in expected.items():
        low, high = np.percentile(resampled, [2.5, 97.5])
        assert half[f"{metric}_diff"] == pytest.approx(difference, abs=1e-6)
        assert (half[f"{metric}_diff_low"], half[f"{metric}_diff_high"]) == (
            pytest.approx(low, abs=1e-6), pytest.approx(high, abs=1e-6))
    assert half.acc_diff_high < 0  # it excludes 0: marked
    assert cells(done.stdout, "half")[1].endswith(" *")
    assert cells(done.stdout, "same")[1] == "+0.00 [+0.00, +0.00]"
    assert cells(done.stdout, "half")[-1] == "bootstrap"


def test_a_baseline_of_several_configurations_is_one_line_and_exit_2(mine):
    done = compare_command(str(mine / "edst"), f"--baseline={mine}")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "names runs of 2 configurations" in done.stderr


def test_a_row_without_saved_predictions_has_its_differences_without_interval(
        right_and_half_wrong, tmp_path):
    root, out = right_and_half_wrong, tmp_path / "out"
    (root / "half" / "predictions" / "test.npz").unlink()
    done = compare_command(str(root / "half"), f"--baseline={root / 'right'}",
                           f"--output_dir={out}")
    assert done.returncode == 0, done.stderr
    assert f"no interval for {root / 'half'} against the baseline: {root / 'half'} has no " \
           f"cached predictions" in done.stderr
    half = pd.read_parquet(out / "compare.parquet").set_index("run_dirs").loc[str(root / "half")]
    assert half.acc_diff == 0 and np.isnan(half.acc_diff_low) and half.acc_diff_method == ""
    assert cells(done.stdout, "half")[1:2] == ["+0.00"] and cells(done.stdout, "half")[-1] == "none"
