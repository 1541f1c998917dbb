"""Checkpoint selection per training stage and per phase (harness/engine/selection.py,
`FitContext.stage`): the authors' best-validation protocol (gin/protocol/authors.gin) keeps the
weights of the best validation epoch, EDST each refinement phase's best, 'last' the final
weights; selection never falls back to the test set, and a resumed run keeps the same."""
import gin
import pytest
import torch

import methods.base
from harness.core.errors import UserError
from harness.engine.train import Hook
from harness.evaluation.history import RunHistory
from methods.base import FitContext
from methods.sparse.edst import EDSTEnsemble
from tests.training import blobs, tiny_model, trainer, weights

BEST = "checkpoint_selection.rule = 'best_validation'"


class Crash(Exception):
    pass


class CrashAtEpoch(Hook):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, state):
        if state.epoch == self.epoch:
            raise Crash


class EpochWeights(Hook):
    """The weights at every epoch's end, as the stage trained them."""

    def __init__(self):
        self.seen = []

    def on_epoch_end(self, state):
        self.seen.append(weights(state.model).clone())


def context(tmp_path, validation=True, **settings):
    (tmp_path / "run").mkdir(parents=True, exist_ok=True)
    history = RunHistory(tmp_path / "run", validation=blobs(32, seed=7) if validation else None)
    return FitContext(trainer=trainer(**settings), train_set=blobs(), model_factory=tiny_model,
                      seed=0, checkpoint_dir=tmp_path / "checkpoints", history=history)


def scripted(monkeypatch, accuracies):
    """Validation accuracies in the order the selection asks for them, and the weights it
    scored each time."""
    scored = []

    def fake(model, batch_format, validation, batch_size):
        scored.append(weights(model).clone())
        return {"val_accuracy": accuracies[len(scored) - 1], "val_nll": 0.0}

    monkeypatch.setattr(methods.base, "validation_metrics", fake)
    return scored


def test_best_validation_keeps_the_weights_of_the_epoch_where_validation_peaks(tmp_path,
                                                                             monkeypatch):
    gin.parse_config([BEST])
    scored = scripted(monkeypatch, [0.5, 0.9, 0.7, 0.6])  # peaks after epoch 2 of 4
    run = context(tmp_path)
    model, epochs = run.build_model(0), EpochWeights()
    run.stage("member_0", model, seed=1, hooks=[epochs])
    assert len(scored) == 4 and all(torch.equal(a, b) for a, b in zip(scored, epochs.seen))
    assert torch.equal(weights(model), epochs.seen[1])  # kept: epoch 2's, not the last
    loaded = run.build_model(5)
    loaded.load_state_dict(torch.load(tmp_path / "checkpoints" / "member_0.pt")["model"])
    assert torch.equal(weights(loaded), epochs.seen[1])


def test_last_keeps_the_final_weights_and_selection_does_not_change_the_trajectory(tmp_path,
                                                                                  monkeypatch):
    last, last_epochs = context(tmp_path / "last"), EpochWeights()
    final = last.build_model(0)
    last.stage("member_0", final, seed=1, hooks=[last_epochs])
    assert torch.equal(weights(final), last_epochs.seen[-1])
    gin.parse_config([BEST])
    scripted(monkeypatch, [0.9, 0.1, 0.1, 0.1])
    best, best_epochs = context(tmp_path / "best"), EpochWeights()
    best.stage("member_0", best.build_model(0), seed=1, hooks=[best_epochs])
    # The tiny model's dropout draws from the RNG: scoring runs under a forked one.
    assert all(torch.equal(a, b) for a, b in zip(last_epochs.seen, best_epochs.seen))


def test_edst_keeps_each_refinement_phases_best_ticket(tmp_path, monkeypatch):
    gin.parse_config([BEST])
    # Exploration 2 epochs, then 2 phases of 3: the candidates are epochs 3-5 and 6-8, each
    # scored before the escape at its phase's end.
    scored = scripted(monkeypatch, [0.5, 0.8, 0.6, 0.6, 0.7, 0.95])
    method = EDSTEnsemble(num_members=2, sparsity=0.5, exploration_epochs=2,
                          refinement_epochs=3, refinement_lr_factors=(0.1,),
                          refinement_lr_epochs=(3,))
    run = context(tmp_path, epochs=8)
    tickets = method.fit(run).members()
    assert len(scored) == 6
    assert torch.equal(weights(tickets[0]), scored[1])  # phase 1: its middle epoch
    assert torch.equal(weights(tickets[1]), scored[5])  # phase 2: its last epoch


def test_a_selection_without_a_validation_split_is_one_user_error_never_the_test_set(tmp_path):
    from harness.experiment.assemble import Experiment
    gin.parse_config(["Experiment.method = 'dense'", BEST])
    with pytest.raises(UserError, match=r"checkpoint_selection.rule = 'best_validation' needs "
                                        r"a validation split: set "
                                        r"Experiment.validation_fraction > 0"):
        Experiment().build()
    run = context(tmp_path, validation=False)
    with pytest.raises(UserError, match="needs a validation split"):
        run.stage("member_0", run.build_model(0), seed=1)
    assert not (tmp_path / "checkpoints" / "member_0.pt").exists()


def test_an_unknown_rule_is_one_user_error(tmp_path):
    gin.parse_config(["checkpoint_selection.rule = 'best_test'"])
    run = context(tmp_path)
    with pytest.raises(UserError, match="checkpoint_selection.rule must be one of 'last', "
                                        "'best_validation', got 'best_test'"):
        run.stage("member_0", run.build_model(0), seed=1)


def test_a_resumed_selection_finishes_bit_identical(tmp_path):
    gin.parse_config([BEST])
    whole = context(tmp_path / "whole", epochs=6)
    kept = whole.build_model(0)
    whole.stage("member_0", kept, seed=3, hooks=[Hook()])
    cut = context(tmp_path / "cut", epochs=6)
    with pytest.raises(Crash):  # after the best so far, before epoch 4's checkpoint
        cut.stage("member_0", cut.build_model(0), seed=3, hooks=[CrashAtEpoch(4)])
    resumed = context(tmp_path / "cut", epochs=6)
    again = resumed.build_model(0)
    resumed.stage("member_0", again, seed=3, hooks=[Hook()])
    assert torch.equal(weights(again), weights(kept))
    whole_saved = torch.load(tmp_path / "whole" / "checkpoints" / "member_0.pt")
    cut_saved = torch.load(tmp_path / "cut" / "checkpoints" / "member_0.pt")
    assert all(torch.equal(whole_saved["model"][key], cut_saved["model"][key])
               for key in whole_saved["model"])
