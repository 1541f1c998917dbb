"""Ensembles along one trajectory (methods/checkpoint_ensembles.py): cyclic schedules that know
where their members are, the collector that saves them there, Snapshot and FGE end to end
(distinct members, FLOPs as planned, exact resume), and Table 6's planned ratios."""
import json
from pathlib import Path

import gin
import pandas as pd
import pytest

import harness.engine.train
from harness.experiment.config import parse
from harness.core.errors import UserError
from harness.experiment.execute import run_experiment
from harness.experiment.assemble import Experiment
from harness.engine.schedules import (Constant, CosineRestarts, FastGeometric, MultiStep, Piecewise,
                               collection_steps, compose)
from harness.engine.train import Hook
from methods.base import MemberCollector
from tests.training import blobs, tiny_model, trainer

ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "gin" / "scale" / "smoke.gin")
# Wall-clock rows follow the machine's load, so runs compared for equal metrics leave them out.
EXACT = ["Experiment.suites = ('test',)", "inference_timing.enabled = False",
         "Experiment.deterministic = True", "Experiment.device = 'cpu'"]


class LearningRates(Hook):
    def __init__(self):
        self.seen = []

    def after_optimizer_step(self, state):
        self.seen.append(state.lr)


def collected_steps(schedule, epochs=4):
    """Trains the tiny model with `schedule`; returns (lr of each update, collection steps)."""
    steps, lrs = [], LearningRates()
    collector = MemberCollector(schedule.collection_points,  # lrs.seen has one lr per step
                                lambda model: model,
                                lambda index, model: steps.append((index, len(lrs.seen))))
    trainer(epochs=epochs).fit(tiny_model(), blobs(), seed=0, hooks=[lrs, collector],
                               schedule=schedule)
    assert [index for index, _ in steps] == list(range(len(schedule.collection_points)))
    return lrs.seen, [step for _, step in steps]


def test_cosine_restarts_follow_huang_et_al():
    schedule = CosineRestarts(4)
    assert schedule.collection_points == (0.25, 0.5, 0.75, 1.0)
    assert [schedule(p) for p in (0.0, 0.125, 0.25, 0.375, 0.999)] == pytest.approx(
        [1.0, 0.5, 1.0, 0.5, 0.0], abs=1e-4)


def test_snapshots_are_taken_where_the_cosine_restarts():
    lrs, steps = collected_steps(CosineRestarts(3), epochs=4)  # 24 steps, cycles of 8
    restarts = [step for step in range(1, len(lrs)) if lrs[step] > lrs[step - 1]]
    assert steps == restarts + [len(lrs)] == [8, 16, 24]
    for start, end in zip([0, *steps], steps):
        assert all(a > b for a, b in zip(lrs[start:end], lrs[start + 1:end]))


def test_fge_members_are_collected_at_each_cycles_lowest_learning_rate():
    schedule = FastGeometric(pretrain=0.5, cycles=2, high=0.5, low=0.1)
    lrs, steps = collected_steps(schedule, epochs=8)  # 48 steps: 24 pre-training, cycles of 12
    assert steps == [30, 42]
    base = 0.1  # tests.training.trainer's lr
    for step in steps:
        assert lrs[step - 2] > lrs[step - 1] and lrs[step] < lrs[step + 1]  # a minimum
        # Garipov's fge.py: the model after the last update before mid-cycle, one step's lr
        # change (2 (high - low) / 12) above lr2 at most.
        assert lrs[step - 1] <= base * (0.1 + 2 * 0.4 / 12) + 1e-12
    assert lrs[0] == pytest.approx(base) and lrs[24] == pytest.approx(base * 0.5)


def test_collection_steps_agree_with_the_schedules_float_comparison():
    for total in (7, 88, 390 * 200, 1437 // 64 * 4):
        for cycles in (3, 5, 7, 12):
            for point in CosineRestarts(cycles).collection_points:
                step = collection_steps([point], total)[0]
                assert all(i / total < point for i in range(step))
                assert step == total or step / total >= point


def test_a_methods_schedule_keeps_the_trainers_warm_up():
    """Issue: EDST replaced Trainer.lr_schedule, so the ImageNet warm-up was silently lost."""
    lrs = LearningRates()
    trainer(epochs=4, lr_schedule=MultiStep((0.9,), warmup=0.5)).fit(
        tiny_model(), blobs(), seed=0, hooks=[lrs], schedule=Piecewise((0.75,), (1.0, 0.1)))
    assert lrs.seen[0] == pytest.approx(0.1 * 1e-3)  # 24 steps, warm-up over the first 12
    assert lrs.seen[6] == pytest.approx(0.1 * 0.5) and lrs.seen[12] == pytest.approx(0.1)
    assert lrs.seen[20] == pytest.approx(0.01)  # the method's shape, not MultiStep's


def test_schedules_that_cannot_combine_are_refused():
    with pytest.raises(ValueError, match="keep one of the two warm-ups"):
        compose(Constant(warmup=0.1), MultiStep(warmup=0.1))
    with pytest.raises(ValueError, match="has no `warmup`"):
        compose(CosineRestarts(2), Piecewise((0.5,), (1.0, 0.1)))
    assert compose(CosineRestarts(2), MultiStep()).__class__ is CosineRestarts


def test_edst_on_imagenet_warms_up_and_refines_as_the_official_code():
    parse([str(ROOT / "gin" / "table3" / "edst_m2_s08.gin")])
    from methods.sparse.edst import EDSTEnsemble
    method = EDSTEnsemble()
    schedule = compose(method.schedule(), harness.engine.train.Trainer().lr_schedule)
    at = lambda epoch: schedule(epoch / 170)
    assert at(0) < 0.01 and at(2.5) == pytest.approx(0.5, abs=0.01) and at(5.1) == 1.0
    assert [at(29.9), at(30), at(59.9), at(60), at(89.9), at(90), at(99.9), at(100),
            at(130), at(160)] == pytest.approx([1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001, 0.1,
                                                0.01, 0.001])


# 4 epochs of 22 steps: Snapshot's cycles of ~7 steps, FGE's 5 cycles of ~3.5 in the last
# epoch. On digits, FGE's neighbours at Garipov's lr1 = 0.05 can agree on all 360 test images
# (so do their predictions, not their weights); cycles that swing to lr 0.2 keep them apart.
MEMBERS = {"snapshot": 12, "fge": 5}
SETTINGS = {"snapshot": [], "fge": ["FastGeometricEnsemble.high_factor = 2.0"]}
KILLED_AT = {"snapshot": 3, "fge": 4}  # epoch checkpoints: the kill falls after some members


def smoke_run(method, path, *bindings, resume=False):
    return run_experiment([str(ROOT / "gin" / f"{method}.gin"), SMOKE],
                          [*EXACT, "epoch_factor.factor = 0.02", *SETTINGS[method], *bindings],
                          str(path), resume=resume, progress=False)


@pytest.fixture(scope="module", params=["snapshot", "fge"])
def uninterrupted(request, tmp_path_factory):
    run_dir, summary = smoke_run(request.param, tmp_path_factory.mktemp(request.param) / "run")
    return request.param, run_dir, summary



def test_members_are_distinct_dense_and_cost_as_planned(uninterrupted):
    method, run_dir, summary = uninterrupted
    members = MEMBERS[method]
    assert summary["num_members"] == members and summary["training_runs"] == 1
    metrics = pd.read_parquet(run_dir / "metrics.parquet")
    test = metrics[metrics.suite == "test"]
    disagreement = test[test.metric == "disagreement"].value
    # a row per ordered pair (harness/evaluation/metrics.py member_pairs)
    assert len(disagreement) == members * (members - 1) and (disagreement > 0).all()
    flops = json.loads((run_dir / "flops.json").read_text())
    assert flops["train_flops"] == flops["planned_train_flops"]
    assert flops["test_flops_ratio"] == pytest.approx(members)
    assert flops["train_flops_ratio"] == pytest.approx(0.8)  # 200 of the reference's 250
    checkpoints = {path.name for path in (run_dir / "checkpoints").iterdir()}
    assert checkpoints == {f"member_{k}.pt" for k in range(members)} | {f"{method}.pt"}


class Killed(Exception):
    pass


def test_a_run_killed_mid_stage_resumes_to_the_same_metrics(uninterrupted, tmp_path,
                                                            monkeypatch):
    method, run_dir, _ = uninterrupted
    killed = tmp_path / "run" / "checkpoints"
    save, calls = harness.engine.train._save, []

    def save_then_kill(*args):
        calls.append(args)
        if len(calls) == KILLED_AT[method]:  # an epoch trained (members collected), not saved
            raise Killed
        save(*args)

    monkeypatch.setattr(harness.engine.train, "_save", save_then_kill)
    with pytest.raises(Killed):
        smoke_run(method, tmp_path / "run")
    assert (killed / f"{method}.resume.pt").is_file() and (killed / "member_0.pt").is_file()
    monkeypatch.setattr(harness.engine.train, "_save", save)
    resumed_dir, _ = smoke_run(method, tmp_path / "run", resume=True)
    ours = pd.read_parquet(resumed_dir / "metrics.parquet")
    theirs = pd.read_parquet(run_dir / "metrics.parquet")
    pd.testing.assert_frame_equal(ours, theirs)
    assert json.loads((resumed_dir / "flops.json").read_text())["train_flops"] == \
        json.loads((run_dir / "flops.json").read_text())["train_flops"]


def table6_rows():
    reference = pd.read_csv(ROOT / "reports" / "reference" / "freetickets_tables.csv")
    return reference[reference.table == 6]


@pytest.mark.parametrize("row", sorted((ROOT / "gin" / "table6").glob("*.gin")),
                         ids=lambda path: path.stem)
def test_table6_planned_ratios_are_the_papers(row):
    parse([str(row)])
    report = Experiment().plan_flops()
    dataset = gin.query_parameter("Experiment.dataset")
    paper = table6_rows()
    names = {"snapshot": "Snapshot", "fge": "FGE", "edst": "EDST Ensemble",
             "dst": "DST Ensemble"}
    match = paper[(paper.dataset == dataset) & (paper.method == names[report["method"]])
                  & (paper.M == report["M"])]
    assert len(match) == 1
    assert report["train_flops_ratio"] == pytest.approx(match.train_flops_ratio.iloc[0],
                                                        abs=0.015)
    assert report["test_flops_ratio"] == pytest.approx(match.test_flops_ratio.iloc[0],
                                                       abs=0.015)


@pytest.mark.parametrize("bindings,message", [
    (["SnapshotEnsemble.num_members = 0"], "num_members must be >= 1"),
    (["SnapshotEnsemble.num_members = 500"], "too few for 500 members"),
    (["FastGeometricEnsemble.pretrain_fraction = 1.0"], "0 < pretrain_fraction < 1"),
])
def test_bad_trajectory_settings_fail_before_training(bindings, message, tmp_path):
    method = bindings[0].split(".")[0]
    with pytest.raises(UserError, match=message):
        smoke_run({"SnapshotEnsemble": "snapshot"}.get(method, "fge"), tmp_path / "run",
                   *bindings)
    assert not (tmp_path / "run").exists()
