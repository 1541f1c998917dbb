"""Training trajectories in function space (paper §5.2, Fig. 3): the checkpoints saved along
each member's training (`trajectory_checkpoints.every_epochs`, methods/base.py) represented by
their softmax outputs on test images, mapped to 2-D by t-SNE (van der Maaten & Hinton 2008,
scikit-learn's `TSNE`).

* A member's trajectory: the checkpoints within its span of training, as its method says
  (`Method.trajectory_spans`): for an ensemble of independent runs (DST, Static, ...) its own
  run (stage `member_<k>`); for EDST, whose tickets come from one run, ticket k's refinement
  phase (after the exploration and the earlier phases, up to the ticket).
* The window: every trajectory, DST's included, starts after the first `WINDOW_START` = 145
  paper epochs (scaled like every length), as the authors' plotting code skips them for every
  run it embeds; EDST's refinement phases begin at t_ex = 150, inside it. The figure prints the
  epochs it shows (`trajectory_figure`).
* A checkpoint's point: its softmax probabilities on one test batch
  (`replay.TEST_BATCH`, drawn at random), flattened, one vector [examples x classes] per
  checkpoint, as in the authors' code. All members' checkpoints of one run are embedded
  together, so distances between trajectories mean something; different runs are embedded
  separately.
* t-SNE: 2 components, PCA initialisation, `random_state` 0, perplexity 30 or less where
  there are few checkpoints (it must stay below their number).
"""
from pathlib import Path

import numpy as np
import torch
from sklearn.manifold import TSNE

from harness.core import safe_load

from harness.engine import scale
from harness.core.errors import UserError
from harness.experiment.replay import Replayed
from harness.store import paths


WINDOW_START = 145  # paper epochs, the authors' t-SNE window


def member_trajectories(replayed: Replayed, run_dir: Path) -> list[list[Path]]:
    """Per member, its trajectory checkpoints in epoch order (the conventions above)."""
    root = paths.trajectory_dir(paths.checkpoints(run_dir))
    if not root.is_dir():
        # The cadence only observes, so a row without it (Table 1's) shares this run
        # (harness/store/configuration.py OBSERVING) and may have trained it first.
        raise UserError(f"{run_dir} saved no trajectory checkpoints (it was trained without "
                        f"trajectory_checkpoints.every_epochs > 0): train it again with them, "
                        f"`python -m harness.run --overwrite --output_dir={run_dir}` with "
                        f"the figure's gin file (gin/figure3/) and its scale's")
    stages = {stage.name: paths.trajectory_checkpoints(stage)
              for stage in root.iterdir() if stage.is_dir()}
    trajectories = [[path for path in stages.get(stage, [])
                     if first < paths.trajectory_epoch(path)
                     and (last is None or paths.trajectory_epoch(path) <= last)]
                    for stage, first, last in replayed.method.trajectory_spans()]
    start = scale.epochs(WINDOW_START)
    trajectories = [[path for path in files if paths.trajectory_epoch(path) > start]
                    for files in trajectories]
    empty = [index for index, files in enumerate(trajectories) if not files]
    if empty:
        raise UserError(f"{run_dir}: no trajectory checkpoints of member(s) "
                        f"{', '.join(map(str, empty))} after epoch {start} (the t-SNE window "
                        f"starts after {WINDOW_START} paper epochs) under {root}")
    return trajectories


def softmax_outputs(replayed: Replayed, files: list[Path]) -> np.ndarray:
    """[checkpoints, examples x classes] softmax outputs of the checkpoints on the first test
    batch."""
    inputs = replayed.test_inputs()
    model = replayed.build_model()
    rows = []
    for path in files:
        model.load_state_dict(safe_load.load(path, "cpu")["model"])
        with torch.no_grad():
            rows.append(model(inputs).double().softmax(-1).flatten().numpy())
    return np.stack(rows)


def embed(outputs: list[np.ndarray], seed: int = 0) -> list[np.ndarray]:
    """One t-SNE of all trajectories together; per trajectory its [checkpoints, 2] points."""
    points = np.concatenate(outputs)
    if len(points) < 2:
        raise UserError("t-SNE needs at least two checkpoints")
    perplexity = min(30.0, (len(points) - 1) / 3)
    embedded = TSNE(n_components=2, perplexity=perplexity, init="pca",
                    random_state=seed).fit_transform(points)
    return np.split(embedded, np.cumsum([len(part) for part in outputs])[:-1])


def trajectory_embedding(replayed: Replayed, run_dir: Path
                         ) -> list[tuple[list[int], np.ndarray]]:
    """Per member, its checkpoints' epochs (as trained) and their 2-D t-SNE points, in epoch
    order."""
    trajectories = member_trajectories(replayed, run_dir)
    points = embed([softmax_outputs(replayed, files) for files in trajectories])
    return [([paths.trajectory_epoch(path) for path in files], member_points)
            for files, member_points in zip(trajectories, points)]
