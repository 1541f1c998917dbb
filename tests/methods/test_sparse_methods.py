"""Static, DST and EDST ensembles end to end at smoke scale, and their bad input."""
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from harness.experiment.config import parse
from harness.core.errors import UserError
from harness.experiment.execute import run_experiment
from methods.sparse.edst import EDSTEnsemble, Escape
from methods.sparse.masking import Masking, SparsitySpec

ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "gin" / "scale" / "smoke.gin")
# Wall-clock rows follow the machine's load, so runs compared for equal metrics leave them out.
FAST = ["epoch_factor.factor = 0.02", "Experiment.suites = ('test',)",
        "inference_timing.enabled = False", "SparsitySpec.update_interval = 10"]


def smoke_run(method, tmp_path, *bindings):
    return run_experiment([str(ROOT / "gin" / f"{method}.gin"), SMOKE], [*FAST, *bindings],
                          str(tmp_path / method), progress=False)


@pytest.fixture(scope="module")
def edst_run(tmp_path_factory):
    run_dir, summary = smoke_run("edst", tmp_path_factory.mktemp("edst"))
    return run_dir, summary, pd.read_parquet(run_dir / "metrics.parquet")


def test_edst_gives_m_distinct_exactly_sparse_tickets(edst_run):
    run_dir, summary, metrics = edst_run
    assert summary["num_members"] == 3 and summary["training_runs"] == 1
    structure = metrics[metrics.suite == "structure"]
    densities = structure[structure.metric == "density"].set_index("member").value
    assert list(densities.index) == ["0", "1", "2"]
    assert densities.tolist() == pytest.approx([0.2] * 3, abs=1e-4)
    jaccard = structure[structure.metric == "mask_jaccard"].value
    assert len(jaccard) == 3 and (jaccard < 0.9).all()
    for index in range(3):
        saved = torch.load(run_dir / "checkpoints" / f"member_{index}.pt", weights_only=True)
        for name, mask in saved["masks"].items():
            nonzero = saved["model"][f"{name}.weight"] != 0
            assert bool((nonzero <= mask).all())  # regrown weights may still be exactly 0
    assert not list((run_dir / "checkpoints").glob("*.resume.pt"))


def test_edst_measured_flops_match_the_plan(edst_run):
    flops = json.loads((edst_run[0] / "flops.json").read_text())
    assert flops["train_flops"] == pytest.approx(flops["planned_train_flops"], rel=0.01)
    assert flops["test_flops_ratio"] == pytest.approx(flops["planned_test_flops_ratio"],
                                                      rel=0.01)
    assert flops["train_flops_ratio"] < 1  # cheaper than one dense model (paper Table 1)


def test_edst_learning_rate_phases():
    parse([str(ROOT / "gin" / "edst.gin")])
    method = EDSTEnsemble()
    schedule = method.schedule()
    assert method.phase_end_epochs() == [250, 350, 450]
    at = lambda epoch: schedule(epoch / 450)
    assert [at(0), at(149.9), at(150), at(199.9), at(200), at(250), at(300), at(449)] == \
        pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.1, 0.01, 0.01])


OWNERS = {"static": "StaticSparseEnsemble", "dst": "DSTEnsemble"}


@pytest.mark.parametrize("method", ["static", "dst"])
def test_independent_sparse_members(method, tmp_path):
    run_dir, summary = smoke_run(method, tmp_path, f"{OWNERS[method]}.num_members = 2")
    metrics = pd.read_parquet(run_dir / "metrics.parquet")
    structure = metrics[metrics.suite == "structure"]
    assert structure[structure.metric == "density"].value.tolist() == pytest.approx(
        [0.2, 0.2], abs=1e-4)
    assert structure[structure.metric == "mask_jaccard"].value.iloc[0] < 0.5  # own seeds
    flops = json.loads((run_dir / "flops.json").read_text())
    assert flops["train_flops"] == pytest.approx(flops["planned_train_flops"], rel=0.01)
    assert summary["training_runs"] == 2


@pytest.mark.parametrize("bindings,message", [
    (["EDSTEnsemble.sparsity = 1.0"], "sparsity must be in (0, 1)"),
    (["EDSTEnsemble.sparsity = 0.0"], "sparsity must be in (0, 1)"),
    (["EDSTEnsemble.num_members = 0"], "num_members must be >= 1"),
    (["Trainer.epochs = 400"], "t_ex + M * t_re = epochs"),
    (["SparsitySpec.distribution = 'erdos'"], "unknown distribution 'erdos'"),
    (["SparsitySpec.growth = 'momentum'"], "unknown growth 'momentum'"),
    (["EDSTEnsemble.escape_fraction = 0.0"], "escape_fraction (q) must be in (0, 1], got 0.0"),
    (["EDSTEnsemble.escape_fraction = 1.5"], "escape_fraction (q) must be in (0, 1], got 1.5"),
    (["SparsitySpec.exploration = 'no'"], "SparsitySpec.exploration must be True or False"),
])
def test_bad_sparse_settings_fail_before_training(bindings, message, tmp_path):
    with pytest.raises(UserError) as error:
        run_experiment([str(ROOT / "gin" / "edst.gin"), SMOKE], [*FAST, *bindings],
                       str(tmp_path / "run"), progress=False)
    assert message in str(error.value)
    assert not (tmp_path / "run").exists()


def test_edst_without_exploration_keeps_one_mask_for_every_ticket(tmp_path):
    """Table 5's EDST without parameter exploration: no prune-and-grow and no escapes, so the
    tickets share the initial mask (and differ by their place on the trajectory); no dense
    gradient is counted, planned = measured."""
    run_dir, summary = smoke_run("edst", tmp_path, "SparsitySpec.exploration = False")
    masks = [torch.load(run_dir / "checkpoints" / f"member_{index}.pt",
                        weights_only=True)["masks"] for index in range(3)]
    assert all(torch.equal(masks[0][name], other[name]) for other in masks[1:]
               for name in masks[0])
    metrics = pd.read_parquet(run_dir / "metrics.parquet")
    disagreement = metrics[(metrics.suite == "test") & (metrics.metric == "disagreement")]
    assert (disagreement.value > 0).all()  # the tickets still differ in their weights
    flops = json.loads((run_dir / "flops.json").read_text())
    assert flops["train_flops"] == pytest.approx(flops["planned_train_flops"], rel=0.01)


def test_dst_without_exploration_is_static_sparse_training(tmp_path):
    """The paper prints the same numbers for both (Table 5); here they are the same run."""
    _, dst = smoke_run("dst", tmp_path, "DSTEnsemble.num_members = 2",
                       "SparsitySpec.exploration = False")
    _, static = smoke_run("static", tmp_path, "StaticSparseEnsemble.num_members = 2")
    assert dst["metrics"]["test/accuracy"] == static["metrics"]["test/accuracy"]
    assert dst["metrics"]["test/nll"] == static["metrics"]["test/nll"]


@pytest.mark.parametrize("growth,dense_gradient_steps", [("gradient", [5]), ("random", [])])
def test_edst_escapes_take_a_dense_gradient_only_to_regrow_by_it(growth, dense_gradient_steps):
    """Table 10's random regrowth: the escapes regrow at random too, with no dense gradient."""
    masking = Masking(nn.Sequential(nn.Linear(16, 8), nn.Linear(8, 4)),
                      SparsitySpec(0.8, growth=growth))
    Escape(masking, [0.5], [0.0, 0.5], 0.8).on_train_begin(SimpleNamespace(total_steps=10))
    assert [step for step in range(1, 11)
            if masking.computed_dense_gradient(step, 10)] == dense_gradient_steps


def test_edst_with_random_regrowth_measures_what_it_plans(tmp_path):
    run_dir, _ = smoke_run("edst", tmp_path, "SparsitySpec.growth = 'random'")
    flops = json.loads((run_dir / "flops.json").read_text())
    assert flops["train_flops"] == pytest.approx(flops["planned_train_flops"], rel=1e-4)


@pytest.mark.parametrize("method", ["static", "dst"])
def test_bad_sparsity_of_independent_ensembles(method, tmp_path):
    with pytest.raises(UserError, match="sparsity must be in"):
        smoke_run(method, tmp_path, f"{OWNERS[method]}.sparsity = 1.5")
    assert not (tmp_path / method).exists()


def test_float64_precision_trains_and_masks_in_float64_then_restores_the_default(tmp_path):
    run_dir, summary = smoke_run("static", tmp_path, "StaticSparseEnsemble.num_members = 1",
                                 "Experiment.precision = 'float64'")
    saved = torch.load(run_dir / "checkpoints" / "member_0.pt", weights_only=True)
    weights = {name: t for name, t in saved["model"].items() if t.is_floating_point()}
    assert {t.dtype for t in weights.values()} == {torch.float64}
    for name, mask in saved["masks"].items():
        assert not weights[f"{name}.weight"][~mask.bool()].any()
    assert torch.get_default_dtype() == torch.float32
    with np.load(run_dir / "predictions" / "test.npz") as arrays:  # the one member's
        (log_probs,), labels = arrays["log_probs"], arrays["labels"]
    assert summary["metrics"]["test/accuracy"] == pytest.approx(
        np.mean(log_probs.argmax(-1) == labels))


class Killed(Exception):
    pass


def test_edst_killed_mid_stage_resumes_to_the_same_metrics(edst_run, tmp_path, monkeypatch):
    """Killed after the first ticket was saved, with the run's stage unfinished."""
    import harness.engine.train
    save, calls = harness.engine.train._save, []

    def save_then_kill(*args):
        calls.append(args)
        if len(calls) == 6:  # epoch 6 trained, not saved; ticket 0 saved at the end of 5
            raise Killed
        save(*args)

    monkeypatch.setattr(harness.engine.train, "_save", save_then_kill)
    with pytest.raises(Killed):
        smoke_run("edst", tmp_path)
    assert (tmp_path / "edst" / "checkpoints" / "member_0.pt").is_file()
    monkeypatch.setattr(harness.engine.train, "_save", save)
    run_dir, _ = run_experiment([str(ROOT / "gin" / "edst.gin"), SMOKE], FAST,
                                str(tmp_path / "edst"), resume=True, progress=False)
    pd.testing.assert_frame_equal(pd.read_parquet(run_dir / "metrics.parquet"), edst_run[2])
