"""Resumable named stages (methods/base.py): a finished stage is loaded, not retrained, and its
cost counts once; an interrupted one resumes from its last epoch; seconds and examples cover
the same span."""
import json
from pathlib import Path

import pytest
import torch

import methods.base
from harness.experiment.execute import run_experiment
from harness.engine.train import Hook
from methods.base import FitContext
from tests.training import blobs, tiny_model, trainer, weights

ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "gin" / "scale" / "smoke.gin")
EXACT = ["epoch_factor.factor = 0.008", "Experiment.suites = ('test',)",
         "inference_timing.enabled = False",
         "Experiment.deterministic = True", "Experiment.device = 'cpu'"]


class Crash(Exception):
    pass


class CrashOnStep(Hook):
    def after_optimizer_step(self, state):
        raise Crash


def context(tmp_path, **trainer_settings):
    return FitContext(trainer=trainer(**trainer_settings), train_set=blobs(),
                      model_factory=tiny_model, seed=0, checkpoint_dir=tmp_path)


def test_a_finished_stage_is_loaded_and_counted_once(tmp_path):
    first = context(tmp_path)
    model = first.build_model(1)
    extras = first.stage("pretrain", model, seed=1, extra=lambda: {"note": torch.ones(2)})
    assert torch.equal(extras["note"], torch.ones(2))
    steps = 4 * (96 // 16)
    assert first.accounting.examples_seen == steps * 16
    again = context(tmp_path)
    loaded = again.build_model(2)
    extras = again.stage("pretrain", loaded, seed=1, hooks=[CrashOnStep()])  # not trained
    assert torch.equal(weights(loaded), weights(model)) and torch.equal(extras["note"],
                                                                        torch.ones(2))
    assert again.accounting.train_flops == first.accounting.train_flops
    assert again.accounting.examples_seen == first.accounting.examples_seen
    assert not (tmp_path / "pretrain.resume.pt").exists()


class FakeClock(Hook):
    """One second per optimizer step, on the clock the stage's stopwatch reads."""

    now = 0.0

    def after_optimizer_step(self, state):
        FakeClock.now += 1.0


class CrashAtEpoch(Hook):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, state):
        if state.epoch == self.epoch:
            raise Crash


def test_seconds_and_examples_span_the_same_epochs_after_a_resume(tmp_path, monkeypatch):
    monkeypatch.setattr(methods.base.time, "perf_counter", lambda: FakeClock.now)
    whole = context(tmp_path / "whole")
    whole.stage("run", whole.build_model(0), seed=3, hooks=[FakeClock(), Hook()])
    interrupted = context(tmp_path / "cut")
    with pytest.raises(Crash):  # before epoch 3's checkpoint: epoch 3 is redone
        interrupted.stage("run", interrupted.build_model(0), seed=3,
                          hooks=[FakeClock(), CrashAtEpoch(3)])
    resumed = context(tmp_path / "cut")
    model = resumed.build_model(0)
    resumed.stage("run", model, seed=3, hooks=[FakeClock(), Hook()])
    steps = 4 * (96 // 16)
    for accounting in (whole.accounting, resumed.accounting):
        assert accounting.examples_seen == steps * 16
        assert accounting.train_seconds == pytest.approx(steps)  # images/s = 16, not more
    assert resumed.accounting.train_flops == whole.accounting.train_flops


def test_a_stop_between_a_members_training_and_its_result_counts_its_cost_once(
        tmp_path, monkeypatch):
    """Issue: the accounting was saved before the member; a stop in between counted the
    member twice on resume (a dense ensemble of 2 reported 3.0x)."""
    save = torch.save
    crashed = []

    def save_then_stop(content, path, *args, **kwargs):
        # safe_load.save writes through a file object, which knows its path
        if Path(getattr(path, "name", path)).name == "member_0.pt.partial" and not crashed:
            crashed.append(path)
            raise Crash
        return save(content, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_then_stop)
    config = [str(ROOT / "gin" / "dense_ensemble.gin"), SMOKE]
    bindings = [*EXACT, "DenseEnsemble.num_members = 2"]
    with pytest.raises(Crash):
        run_experiment(config, bindings, str(tmp_path / "run"), progress=False)
    run_dir, summary = run_experiment(config, bindings, str(tmp_path / "run"), resume=True,
                                      progress=False)
    flops = json.loads((run_dir / "flops.json").read_text())
    assert crashed and flops["train_flops"] == flops["planned_train_flops"]
    assert flops["train_flops_ratio"] == pytest.approx(2.0)


def test_a_damaged_stage_result_is_one_error_naming_the_file(tmp_path):
    first = context(tmp_path)
    first.stage("pretrain", first.build_model(1), seed=1)
    (tmp_path / "pretrain.pt").write_bytes(b"not a checkpoint")
    again = context(tmp_path)
    with pytest.raises(methods.base.UserError, match=r"pretrain\.pt is damaged .*delete it"):
        again.stage("pretrain", again.build_model(1), seed=1)
