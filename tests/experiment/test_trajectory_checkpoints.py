"""Checkpoints along a training stage for the trajectory study (paper §5.2, Fig. 3): the
`trajectory_checkpoints.every_epochs` setting makes each stage save its model every k epochs
through the member-collection seam (methods/base.py)."""
import gin
import pytest
import torch

from harness.core.errors import UserError
from harness.engine.train import Hook
from methods.base import FitContext, trajectory_checkpoints
from tests.training import blobs, tiny_model, trainer, weights


class EpochWeights(Hook):
    """The model's weights at the end of every epoch."""

    def __init__(self):
        self.at = {}

    def on_epoch_end(self, state):
        self.at[state.epoch] = weights(state.model).clone()


def saved_weights(path, model):
    model.load_state_dict(torch.load(path, weights_only=True)["model"])
    return weights(model)


@pytest.mark.parametrize("bindings, trained_epochs, expected", [
    (["trajectory_checkpoints.every_epochs = 2"], 6, [2, 4, 6]),
    (["trajectory_checkpoints.every_epochs = 3"], 7, [3, 6]),
    # a length in paper epochs, scaled like every other: 8 x 0.25 = every 2 of 6 epochs
    (["trajectory_checkpoints.every_epochs = 8", "epoch_factor.factor = 0.25"], 6, [2, 4, 6]),
])
def test_a_stage_saves_its_model_every_k_epochs(tmp_path, bindings, trained_epochs, expected):
    gin.parse_config(bindings)
    context = FitContext(trainer=trainer(epochs=trained_epochs if len(bindings) == 1 else 24),
                         train_set=blobs(), model_factory=tiny_model, seed=0,
                         checkpoint_dir=tmp_path)
    model = context.build_model(0)
    recorder = EpochWeights()
    context.stage("member_0", model, seed=0, hooks=[recorder])
    assert sorted(recorder.at) == list(range(1, trained_epochs + 1))
    files = sorted((tmp_path / "trajectory" / "member_0").iterdir(),
                   key=lambda path: int(path.stem.split("_")[1]))
    assert [path.name for path in files] == [f"epoch_{epoch}.pt" for epoch in expected]
    probe = tiny_model()
    for path, epoch in zip(files, expected):  # each as its epoch left it, not another
        assert torch.load(path, weights_only=True)["epoch"] == epoch
        assert torch.equal(saved_weights(path, probe), recorder.at[epoch])
        assert not torch.equal(saved_weights(path, probe), recorder.at[epoch - 1])


def test_no_trajectory_unless_asked(tmp_path):
    context = FitContext(trainer=trainer(), train_set=blobs(), model_factory=tiny_model,
                         seed=0, checkpoint_dir=tmp_path)
    context.stage("member_0", context.build_model(0), seed=0)
    assert not (tmp_path / "trajectory").exists()


def test_a_negative_interval_is_refused():
    gin.parse_config(["trajectory_checkpoints.every_epochs = -1"])
    with pytest.raises(UserError, match="trajectory_checkpoints.every_epochs must be >= 0"):
        trajectory_checkpoints()
