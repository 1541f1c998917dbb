"""A finished run scored again from its saved stages (harness/experiment/rescore.py): the same predictor
as the run's own, no training, results kept in the run; the OoD sets behind Tables 11-12 (AUROC
of separable and of identical scores, a missing SVHN named with the file to put where); bad
settings as one error before anything is scored."""
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from harness.data import Splits
from harness.data.arrays import ArrayDataset
from harness.data.ood import _torchvision_test
from harness.core.errors import UserError
from harness.experiment.execute import run_experiment
from harness.experiment.assemble import DataContext
from harness.evaluation.predictors import Predictor
from harness.store import readers
from harness.store.record import foreign_entries
from harness.experiment.rescore import rescore
from harness.store.paths import RESCORED
from harness.evaluation.suites import fgsm, ood

ROOT = Path(__file__).resolve().parents[2]
STATIC = [str(ROOT / "gin" / "static.gin"), str(ROOT / "gin" / "scale" / "smoke.gin")]


@pytest.fixture(scope="module")
def static_run(tmp_path_factory):
    """A finished two-member static sparse run on digits, a few steps long."""
    run_dir, _ = run_experiment(STATIC, ["epoch_factor.factor = 0.008",
                                         "StaticSparseEnsemble.num_members = 2",
                                         "Experiment.suites = ('test',)"],
                                str(tmp_path_factory.mktemp("runs") / "static"), progress=False)
    return run_dir


def test_rescoring_rebuilds_the_runs_own_predictor_and_keeps_its_rows(static_run):
    frame = rescore(static_run, "test")
    ensemble = frame[(frame.member == "ensemble") & (frame.metric == "accuracy")]
    assert ensemble.value.item() == readers.summary(static_run)["metrics"]["test/accuracy"]
    own = pd.read_parquet(static_run / "metrics.parquet")
    own = own[(own.suite == "test") & (own.metric == "nll")].set_index("member").value
    again = frame[frame.metric == "nll"].set_index("member").value
    assert again.to_dict() == pytest.approx(own.to_dict(), abs=1e-6)

    noise = rescore(static_run, "ood", {"sets": ["gaussian_noise"]})
    assert set(noise.member) == {"ensemble", "0", "1"}
    (kept,) = (static_run / RESCORED).glob("ood-*.parquet")
    stamp = kept.stat().st_mtime_ns
    assert rescore(static_run, "ood", {"sets": ["gaussian_noise"]}).equals(noise)
    assert kept.stat().st_mtime_ns == stamp  # read back, not scored again
    assert foreign_entries(static_run) == []  # still a run directory of the harness


def test_a_stage_without_result_is_an_error_never_a_training(static_run, tmp_path):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(static_run, copy, ignore=shutil.ignore_patterns(RESCORED))
    (copy / "checkpoints" / "member_1.pt").unlink()
    with pytest.raises(UserError, match=r"member_1\.pt is missing: stage 'member_1'"):
        rescore(copy, "test")
    assert not (copy / "checkpoints" / "member_1.pt").exists()
    assert not (copy / RESCORED).exists()
    (copy / "summary.json").unlink()
    with pytest.raises(UserError, match="not a finished run"):
        rescore(copy, "test")


def test_the_rescoring_phase_says_what_it_will_do_then_does_it(static_run, tmp_path,
                                                               capsys):
    """Table 11 on the digits run: Gaussian noise fits it, SVHN and CIFAR-100 do not; the
    table reads what the phase left, the failures with their reason."""
    import shutil

    from harness.tables.catalogue import PAPER
    from harness.tables.rows import TableRow
    from harness.tables.long import build_long_table
    from harness.tables.robustness import rescore_phase
    from harness.tables.sources import RowRuns

    run = tmp_path / "static" / "seed0"
    shutil.copytree(static_run, run, ignore=shutil.ignore_patterns(RESCORED))
    rescore_phase(11, [run, run])  # a run two rows reuse is rescored once
    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"rescoring: 1 run\(s\), about \d+\.\d min \[3 rescoring\(s\); "
                        r"estimated from each run's summary.json eval_seconds\]", lines[0])
    assert lines[1].startswith(f'  [1/3] rescoring {run} ood {{"sets": ["svhn"]}} (about ')
    assert lines[2].startswith("    failed: OoD set svhn has images (3, 32, 32)")
    assert lines[5].startswith(f'  [3/3] rescoring {run} ood {{"sets": ["gaussian_noise"]}}')
    assert re.fullmatch(r"    done in \d+\.\d s", lines[6]) and len(lines) == 7

    row = RowRuns(TableRow("static", "Static Sparse Ensemble", ()), [run], [])
    frame = build_long_table(PAPER.table(11), "smoke", [row])
    ours = frame[frame.row == "static"].set_index(["M", "setting"])
    scored = rescore(run, "ood", {"sets": ["gaussian_noise"]})  # read back: the phase's rows
    for m, member in ((2, "ensemble"), (1, "0")):
        noise = ours.loc[(m, "gaussian_noise")]
        assert noise.status == "ok" and noise.value == scored.value[
            (scored.member == member) & (scored.metric == "auroc_maxprob")].item()
        assert ours.loc[(m, "svhn"), "status"] == "missing"
        assert "OoD set svhn has images (3, 32, 32)" in ours.loc[(m, "svhn"), "reason"]

    rescore_phase(11, [run])  # what failed is tried again; what was scored is not
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("rescoring: 1 run(s)") and "[2 rescoring(s)" in lines[0]
    assert "failed before: OoD set svhn has images" in lines[1]


@pytest.mark.parametrize("suite, settings, message", [
    ("fgsm", {"epsilon_255": -8}, "fgsm.epsilon_255 must be a finite number > 0"),
    ("fgsm", {"epsilon_255": 2040}, "fgsm.epsilon_255 is on the 0-255 pixel scale"),
    ("ood", {"sets": []}, "ood.sets must name one or more OoD sets"),
    ("ood", {"sets": ["mnist"]}, "unknown OoD set 'mnist'"),
])
def test_bad_settings_are_one_error_before_anything_is_scored(static_run, suite, settings,
                                                              message):
    before = sorted((static_run / RESCORED).glob("*")) if (static_run / RESCORED).is_dir() \
        else []
    with pytest.raises(UserError, match=message):
        rescore(static_run, suite, settings)
    after = sorted((static_run / RESCORED).glob("*")) if (static_run / RESCORED).is_dir() \
        else []
    assert after == before


def grey_context(images: torch.Tensor) -> DataContext:
    test = ArrayDataset(images, torch.zeros(len(images), dtype=torch.int64), 2, (0.5,), (0.25,))
    return DataContext(Splits("toy", test, test), None, 7, torch.device("cpu"))


class Brightness(Predictor):
    """Confident on bright images, unsure on dark ones: the maximum probability grows with the
    mean input (>= -2 for these images)."""

    num_members = 1

    def forward(self, x):
        return torch.stack([x.mean((1, 2, 3)) + 2, torch.zeros(len(x))], dim=1)[None]


def test_ood_auroc_is_one_for_separable_scores_and_a_half_for_identical_ones(tmp_path):
    bright = torch.full((30, 1, 4, 4), 250, dtype=torch.uint8)
    bright[:, 0, 0, 0] = torch.arange(200, 230, dtype=torch.uint8)  # scores differ within
    np.savez(tmp_path / "dark.npz", x_test=np.full((20, 4, 4, 1), 3, np.uint8),
             y_test=np.zeros(20, np.int64))
    np.savez(tmp_path / "same.npz", x_test=bright.permute(0, 2, 3, 1).numpy(),
             y_test=np.zeros(30, np.int64))
    sets = (f"npz:{tmp_path / 'dark.npz'}", f"npz:{tmp_path / 'same.npz'}")
    (scored,) = ood(grey_context(bright), sets=sets)
    rows = {(r["corruption"], r["metric"]): r["value"]
            for r in scored.score(Brightness(), False)}
    assert rows[sets[0], "auroc_maxprob"] == 1.0  # every test image above every dark one
    assert rows[sets[1], "auroc_maxprob"] == 0.5  # the test set against itself: all ties


def test_a_missing_svhn_names_the_file_to_put_where(tmp_path):
    with pytest.raises(UserError) as error:
        _torchvision_test("svhn", str(tmp_path), download=False)
    message = str(error.value)
    assert f"put test_32x32.mat (md5 eb5a983be6a315427106f1b164d9cef3) in {tmp_path}/" in message
    assert "torchvision's SVHN" in message and "\n" not in message


def test_a_32x32_colour_set_does_not_fit_an_8x8_grey_model():
    context = grey_context(torch.zeros((3, 1, 8, 8), dtype=torch.uint8))
    with pytest.raises(UserError, match=r"OoD set cifar100 has images \(3, 32, 32\) but the "
                                        r"model takes \(1, 8, 8\)"):
        list(ood(context, sets=("cifar100",), download=False))


def test_fgsm_settings_are_checked_when_the_suite_is_built():
    context = grey_context(torch.zeros((3, 1, 8, 8), dtype=torch.uint8))
    with pytest.raises(UserError, match="fgsm.epsilon_255"):
        list(fgsm(context, epsilon_255=float("nan")))
