"""Figure 3's trajectories (paper §5.2): checkpoints every k epochs along each member's
training, assigned to members, replayed from a finished run and embedded by t-SNE."""
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.core.errors import UserError
from harness.experiment.execute import run_experiment
from harness.evaluation.feature_maps import feature_map_kl
from harness.experiment.replay import replay
from harness.paper.trajectory_tsne import member_trajectories, trajectory_embedding
from harness.store.paths import trajectory_epoch

ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "gin" / "scale" / "smoke.gin")
# 0.02: DST 5 epochs per member; EDST 9 (exploration 3, three refinement phases of 2)
FAST = ["epoch_factor.factor = 0.02", "Experiment.suites = ('test',)",
        "inference_timing.enabled = False", "SparsitySpec.update_interval = 10",
        "Experiment.device = 'cpu'"]


def smoke_run(method, tmp_path, every):
    run_dir, _ = run_experiment(
        [str(ROOT / "gin" / f"{method}.gin"), SMOKE],
        [*FAST, f"trajectory_checkpoints.every_epochs = {every}"], str(tmp_path / method),
        progress=False)
    return run_dir


def same_weights(path, member):
    saved = torch.load(path, weights_only=True)["model"]
    return all(torch.equal(saved[name], value) for name, value in member.state_dict().items())


def test_dst_members_each_have_their_own_trajectory_after_the_authors_window(tmp_path):
    run_dir = smoke_run("dst", tmp_path, every=50)  # 50 x 0.02 = every epoch of 5
    assert len(list((run_dir / "checkpoints" / "trajectory" / "member_0").iterdir())) == 5
    replayed = replay(run_dir)
    trajectories = member_trajectories(replayed, run_dir)
    # the window starts after 145 x 0.02 = 3 epochs, for DST as for EDST
    assert [[trajectory_epoch(path) for path in files] for files in trajectories] == [[4, 5]] * 3
    assert [path.parent.name for files in trajectories for path in files] == [
        "member_0", "member_0", "member_1", "member_1", "member_2", "member_2"]
    embedded = trajectory_embedding(replayed, run_dir)
    assert [epochs for epochs, _ in embedded] == [[4, 5]] * 3
    points = [part for _, part in embedded]
    assert [part.shape for part in points] == [(2, 2)] * 3 and np.isfinite(
        np.concatenate(points)).all()
    # the replayed members are the run's: their feature maps differ, a member's own do not
    members = replayed.predictor.members()
    inputs = replayed.test_inputs()
    assert all(value > 0 for value in feature_map_kl(members, inputs).values())
    assert all(value == 0 for value in feature_map_kl([members[0]] * 2, inputs).values())
    with pytest.raises(UserError, match="saved no trajectory checkpoints"):
        member_trajectories(replayed, tmp_path / "a run without them")


def test_edst_tickets_trajectories_are_their_refinement_phases(tmp_path):
    run_dir = smoke_run("edst", tmp_path, every=50)  # every epoch of 9
    replayed = replay(run_dir)
    trajectories = member_trajectories(replayed, run_dir)
    assert [[trajectory_epoch(path) for path in files] for files in trajectories] == [
        [4, 5], [6, 7], [8, 9]]
    for files, ticket in zip(trajectories, replayed.predictor.members()):
        assert same_weights(files[-1], ticket)  # a trajectory ends at its ticket
        assert not same_weights(files[0], ticket)
    assert len(list((run_dir / "checkpoints" / "trajectory" / "edst").iterdir())) == 9
