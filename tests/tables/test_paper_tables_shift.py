"""Tables 8, 11-13 (harness/tables/sweep.py, harness/tables/robustness.py): the correlation across
a hand-made sweep, the "M = 1" cells from exactly one member, FGSM min/mean/max over the
attacks, a missing OoD set named with its reason; the sweep levels differ in sparsity only."""
import json
from pathlib import Path

import gin
import numpy as np
import pandas as pd
import pytest

from harness.experiment.config import parse
from harness.store.configuration import config_differences
from harness.tables.long import LONG_COLUMNS, MissingCell
from harness.store.record import write_metrics
from harness.experiment.rescore import failure_path, rescored_path
from harness.tables.robustness import FGSM_SETTING, fgsm_cells, ood_cells
from harness.tables.sweep import correlations, sweep_correlation

ROOT = Path(__file__).resolve().parents[2]


def test_sweep_correlation_of_a_hand_made_sweep():
    # by hand: x - 3 = (-2, -1, 0, 1, 2), y - 4 = (-2, 0, 1, 0, 1): Pearson 6 / sqrt(10 * 6);
    # ranks of y (1, 2.5, 4.5, 2.5, 4.5), minus 3: Spearman 7 / sqrt(10 * 9)
    values = sweep_correlation([1, 2, 3, 4, 5], [2, 4, 5, 4, 5])
    assert values["pearson"] == pytest.approx(6 / np.sqrt(60))
    assert values["spearman"] == pytest.approx(7 / np.sqrt(90))
    monotone = sweep_correlation([1, 2, 3, 4], [1, 4, 9, 16])
    assert monotone["spearman"] == pytest.approx(1.0) and monotone["pearson"] < 0.99


@pytest.mark.parametrize("individual, ensemble, message", [
    ([90, 91], [92, 93], "at least 3 sparsity levels, found 2"),
    ([90, 91, 92], [95, 95, 95], "the ensemble accuracy is the same (95.00) at every"),
    ([90, 91, 92], [95, 95], "3 member accuracies but 2 ensemble"),
])
def test_sweep_correlation_refuses_what_is_undefined(individual, ensemble, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        sweep_correlation(individual, ensemble)


def sweep_cells(method, dataset, points, row_suffix=""):
    return [{"table": 8, "dataset": dataset, "model": "wrn", "method": method, "M": 3,
             "sparsity": s, "setting": "", "metric": metric, "row": f"{method}_{s}{row_suffix}",
             "status": "ok", "value": value}
            for s, individual, acc in points
            for metric, value in (("individual_acc", individual), ("acc", acc), ("kl", 0.1))]


def test_table8_correlates_each_method_across_its_levels_once_per_level():
    dst = [(0.5, 1, 2), (0.7, 2, 4), (0.8, 3, 5), (0.9, 4, 4), (0.95, 5, 5)]
    cells = (sweep_cells("DST Ensemble", "cifar10", dst)
             + sweep_cells("DST Ensemble", "cifar10", dst[:2], "_again")  # a reused run
             + sweep_cells("EDST Ensemble", "cifar10", [(0.5, 1, 1), (0.8, 2, 3)]))
    out = {(cell["method"], cell["metric"]): cell
           for cell in correlations(pd.DataFrame(cells, columns=list(LONG_COLUMNS)))}
    assert out["DST Ensemble", "pearson"]["value"] == pytest.approx(6 / np.sqrt(60))
    assert out["DST Ensemble", "spearman"]["value"] == pytest.approx(7 / np.sqrt(90))
    assert np.isnan(out["DST Ensemble", "pearson"]["sparsity"])
    assert out["DST Ensemble", "pearson"]["runs"] == "5 levels: 0.5, 0.7, 0.8, 0.9, 0.95"
    # named by the rows it spans, so a status or a missing reason can say which runs
    assert out["DST Ensemble", "pearson"]["row"] == (
        "DST Ensemble_0.5,DST Ensemble_0.5_again,DST Ensemble_0.7,DST Ensemble_0.7_again,"
        "DST Ensemble_0.8,DST Ensemble_0.9,DST Ensemble_0.95")
    edst = out["EDST Ensemble", "spearman"]
    assert edst["status"] == "missing" and "found 2" in edst["reason"]


def summary(members: int) -> dict:
    """A finished run's summary.json as the readers check it (harness/store/readers.py)."""
    return {"method": "static", "dataset": "cifar10", "model": "wrn28_10",
            "num_members": members, "sparsity": 0.8, "seed": 0, "epoch_factor": 1.0,
            "metrics": {}, "git_commit": "abc", "config_hash": "def"}


def fake_run(tmp_path: Path, members: int) -> Path:
    run = tmp_path / f"m{members}"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps(summary(members)))
    return run


def metric_rows(suite, corruption, member, metric, value):
    return {"method": "static", "member": member, "suite": suite, "corruption": corruption,
            "severity": 0, "metric": metric, "value": value}


def record_failure(run: Path, suite: str, settings: dict, reason: str) -> None:
    """What the rescoring phase leaves for a set it could not load."""
    path = failure_path(run, suite, settings)
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"error": reason}))


def test_m1_cells_score_member_0_alone_and_missing_sets_keep_their_reason(tmp_path):
    run = fake_run(tmp_path, 3)
    auroc = {"ensemble": 0.9, "0": 0.7, "1": 0.8, "2": 0.6}
    path = rescored_path(run, "ood", {"sets": ["gaussian_noise"]})
    path.parent.mkdir()
    write_metrics(path, [metric_rows("ood", "gaussian_noise", member, metric, value)
                         for member, value in auroc.items()
                         for metric, value in (("auroc_maxprob", value),
                                               ("auroc_entropy", value / 2))])
    record_failure(run, "ood", {"sets": ["svhn"]},
                   "OoD set svhn not found or corrupt (...): put test_32x32.mat ...")
    cells = ood_cells(run, 11)
    assert cells[("gaussian_noise", "auroc", 3)] == 0.9
    assert cells[("gaussian_noise", "auroc", 1)] == 0.7  # member 0, not the ensemble
    assert set(cells) == {(name, "auroc", m) for name in ("svhn", "cifar100", "gaussian_noise")
                          for m in (1, 3)}
    assert isinstance(cells[("svhn", "auroc", 1)], MissingCell)
    assert "test_32x32.mat" in cells[("svhn", "auroc", 3)]
    # never rescored: missing, naming the command that rescores it
    assert cells[("cifar100", "auroc", 3)] == (
        'not rescored yet (ood {"sets": ["cifar100"]}): `python -m harness.tables --table=11` '
        "(at the table's --scale) rescores it")


def test_fgsm_cells_are_min_mean_max_over_the_attacks_of_each_member(tmp_path):
    run = fake_run(tmp_path, 3)
    accuracy = {("ensemble", 0): 0.40, ("ensemble", 1): 0.30, ("ensemble", 2): 0.35,
                ("0", 0): 0.10, ("0", 1): 0.50, ("0", 2): 0.45,
                ("1", 0): 0.9, ("1", 1): 0.9, ("1", 2): 0.9}
    path = rescored_path(run, "fgsm", {"epsilon_255": 8.0})
    path.parent.mkdir()
    write_metrics(path, [metric_rows("fgsm", f"from_member_{attack}", member, "accuracy", value)
                         for (member, attack), value in accuracy.items()]
                  + [metric_rows("fgsm", "from_member_0", "ensemble", "nll", 3.0)])
    cells = fgsm_cells(run)
    assert cells[(FGSM_SETTING, "robust_acc_min", 3)] == pytest.approx(30)
    assert cells[(FGSM_SETTING, "robust_acc_mean", 3)] == pytest.approx(35)
    assert cells[(FGSM_SETTING, "robust_acc_max", 3)] == pytest.approx(40)
    assert cells[(FGSM_SETTING, "robust_acc_min", 1)] == pytest.approx(10)  # member 0 only
    assert cells[(FGSM_SETTING, "robust_acc_mean", 1)] == pytest.approx(35)
    assert cells[(FGSM_SETTING, "robust_acc_max", 1)] == pytest.approx(50)
    assert len(cells) == 6

    single = fake_run(tmp_path, 1)
    path = rescored_path(single, "fgsm", {"epsilon_255": 8.0})
    path.parent.mkdir()
    write_metrics(path, [metric_rows("fgsm", "from_member_0", "ensemble", "accuracy", 0.44)])
    assert fgsm_cells(single) == {(FGSM_SETTING, "robust_acc", 1): pytest.approx(44)}


def configuration(*files: str) -> str:
    import harness.experiment.assemble  # noqa: F401  registers Experiment and the methods with gin
    parse([str(ROOT / file) for file in files])
    return gin.config_str()


def test_sweep_levels_differ_only_in_sparsity():
    base = configuration("gin/table1/dst_m3_s08.gin")  # Table 8's S = 0.8 point
    for level in ("05", "07", "09", "095"):
        differences = config_differences(base, configuration(
            f"gin/table8/dst_m3_s{level}_c10.gin"))
        assert [d.split(" ")[0] for d in differences] == ["DSTEnsemble.sparsity"]


def test_table11_names_a_missing_ood_set_with_its_reason_and_matches_the_rest(tmp_path):
    from harness.tables.catalogue import PAPER
    from harness.tables.rows import TableRow
    from harness.tables.long import build_long_table
    from harness.tables.sources import RowRuns

    run = tmp_path / "static_m3_s08" / "seed0"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps(summary(3)))
    for name, value in (("cifar100", 0.91), ("gaussian_noise", 0.99)):
        path = rescored_path(run, "ood", {"sets": [name]})
        path.parent.mkdir(exist_ok=True)
        write_metrics(path, [metric_rows("ood", name, member, "auroc_maxprob", value - k / 10)
                             for k, member in enumerate(("ensemble", "0", "1", "2"))])
    reason = "OoD set svhn not found or corrupt: put test_32x32.mat (md5 eb5a98...) in data/"

    record_failure(run, "ood", {"sets": ["svhn"]}, reason)
    row = RowRuns(TableRow("static_m3_s08", "Static Sparse Ensemble", ()), [run], [])
    frame = build_long_table(PAPER.table(11), "smoke", [row])
    static = frame[frame.method == "Static Sparse Ensemble"].set_index(["M", "setting"])
    assert static.loc[(3, "gaussian_noise"), "value"] == pytest.approx(0.99)
    assert static.loc[(1, "gaussian_noise"), "value"] == pytest.approx(0.89)  # member 0
    assert static.loc[(1, "gaussian_noise"), "paper"] == pytest.approx(0.9559)
    for m in (1, 3):
        svhn = static.loc[(m, "svhn")]
        assert svhn.status == "missing" and svhn.reason == f"static_m3_s08: {reason}"
    dst = frame[(frame.method == "DST Ensemble") & (frame.setting == "svhn")]
    assert set(dst.status) == {"missing"} and all("no run of ours" in r for r in dst.reason)


def test_building_a_table_never_rescores_a_run_that_lacks_it(tmp_path, monkeypatch):
    from harness.experiment import replay, rescore
    from harness.tables.catalogue import PAPER
    from harness.tables.rows import TableRow
    from harness.tables.long import build_long_table
    from harness.tables.sources import RowRuns

    def forbidden(*args, **kwargs):
        raise AssertionError("building a table rescored a run")

    monkeypatch.setattr(replay, "refit", forbidden)
    monkeypatch.setattr(rescore, "rescore", forbidden)
    for table, row in ((11, "static_m3_s08"), (13, "static_m3_s08_c10")):
        run = tmp_path / row / "seed0"
        run.mkdir(parents=True)
        (run / "summary.json").write_text(json.dumps(summary(3)))
        runs = RowRuns(TableRow(row, "Static Sparse Ensemble", ()), [run], [])
        frame = build_long_table(PAPER.table(table), "smoke", [runs])
        static = frame[(frame.method == "Static Sparse Ensemble") & (frame.M == 3)
                       & (frame.dataset == "cifar10")]
        assert len(static) and set(static.status) == {"missing"}
        command = f"`python -m harness.tables --table={table}` (at the table's --scale)"
        assert all(reason.startswith(f"{row}: not rescored yet (")
                   and reason.endswith(f"{command} rescores it") for reason in static.reason)
