"""The training curve of a run: `history.csv` in its run directory, one row per epoch of every
training stage, optionally TensorBoard scalars beside it, and one log line per epoch where no
progress bar is drawn.

Columns: stage, epoch, step (optimizer steps done in the stage), loss (mean training loss of
the epoch), lr (the learning rate of its last step), seconds (the epoch's wall time),
images_per_second (images drawn per second of it), and with a validation split
(`Experiment.validation_fraction > 0`) val_accuracy and val_nll of the stage's model at the
epoch's end: the mean of its members' probabilities, as the test metrics (harness/evaluation/metrics.py),
its validation time not counted in the stage's training seconds.

CSV, not parquet: a few hundred rows a person reads with `cat` or `column -ts,` while the run
goes on, as timm's `summary.csv`. The file is rewritten whole after every epoch from the rows
the checkpoints hold (`TrainState.history`), so a resumed run repeats no epoch in it.
"""
import sys
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
from torch import nn

from harness.core import distributed
from harness.engine.batching import BatchFormat, MimoBatch, TiledBatch
from harness.data.arrays import ArrayDataset
from harness.core.durable import atomic_write
from harness.core.errors import UserError
from harness.evaluation.metrics import MetricSums, ensemble_log_probs
from harness.evaluation.predictors import MimoPredictor, TiledPredictor
from harness.engine.train import Hook, TrainState
from harness.store import paths

COLUMNS = ("stage", "epoch", "step", "loss", "lr", "seconds", "images_per_second",
           "val_accuracy", "val_nll")


def member_logits(model: nn.Module, batch_format: BatchFormat, images: torch.Tensor
                  ) -> torch.Tensor:
    """[M, B, C] logits of a stage's model on plain images, fed as its batch format feeds it
    at test (harness/evaluation/predictors.py); a network of one output is M = 1."""
    if isinstance(batch_format, TiledBatch):
        return TiledPredictor(model, batch_format.num_members)(images)
    if isinstance(batch_format, MimoBatch):
        return MimoPredictor(model, batch_format.num_members)(images)
    logits = model(images)
    return logits if logits.dim() == 3 else logits.unsqueeze(0)


@torch.no_grad()
def validation_metrics(model: nn.Module, batch_format: BatchFormat, validation: ArrayDataset,
                       batch_size: int) -> dict:
    training = model.training
    model.eval()
    sums = MetricSums(device=validation.device)
    for images, labels in validation.eval_batches(batch_size):
        sums.update(ensemble_log_probs(member_logits(model, batch_format, images)), labels)
    model.train(training)
    metrics = sums.result()
    return {"val_accuracy": metrics["accuracy"], "val_nll": metrics["nll"]}


class RunHistory:
    """The history of one run directory; `hook` gives each training stage its recorder. Under
    torchrun every process records (every process has the same hooks, which its checkpoint
    counts), and rank 0 alone writes and logs."""

    def __init__(self, run_dir: Path, *, validation: ArrayDataset | None = None,
                 eval_batch_size: int = 500, log: bool = False, tensorboard: bool = False):
        self.path = paths.history(run_dir)
        self.validation = validation
        self.eval_batch_size = eval_batch_size
        self.writes = distributed.is_main()
        self.log = log and self.writes
        self.tensorboard_dir = paths.tensorboard(run_dir) if tensorboard and self.writes else None
        if tensorboard:
            summary_writer()  # its check, before training

    def write(self, histories: dict[str, list[dict]]) -> None:
        if not self.writes:
            return
        rows = [{"stage": stage, **row} for stage, rows in histories.items() for row in rows]
        frame = pd.DataFrame(rows, columns=[column for column in COLUMNS
                                            if any(column in row for row in rows)
                                            or column == "stage"])
        atomic_write(self.path, lambda partial: frame.to_csv(partial, index=False,
                                                            float_format="%.6g"))

    def hook(self, stage: str, batch_format: BatchFormat, finished: dict[str, list[dict]],
             pause: Callable) -> "EpochRecorder":
        """`finished`: the histories of the stages done before (in order); `pause`: a context
        manager that keeps validation out of the stage's training seconds."""
        return EpochRecorder(self, stage, batch_format, finished, pause)


class EpochRecorder(Hook):
    """At each epoch's end: validation scores into the epoch's row (kept in the checkpoint),
    the history file rewritten, a TensorBoard scalar per column, a log line."""

    def __init__(self, history: RunHistory, stage: str, batch_format: BatchFormat,
                 finished: dict[str, list[dict]], pause: Callable):
        self.history = history
        self.stage = stage
        self.batch_format = batch_format
        self.finished = finished
        self.pause = pause
        self.writer = None

    def on_train_begin(self, state: TrainState) -> None:
        if self.history.tensorboard_dir is not None:
            # purge_step: events a killed process wrote past the checkpoint are dropped
            self.writer = summary_writer()(self.history.tensorboard_dir / self.stage,
                                           purge_step=state.step)

    def on_epoch_end(self, state: TrainState) -> None:
        row = state.history[-1]
        if self.history.validation is not None:
            with self.pause():
                row.update(validation_metrics(state.model, self.batch_format,
                                              self.history.validation,
                                              self.history.eval_batch_size))
        self.history.write({**self.finished, self.stage: state.history})
        if self.writer is not None:
            for name, value in row.items():
                if name not in ("epoch", "step"):
                    self.writer.add_scalar(name, value, state.step)
            self.writer.flush()
        if self.history.log:
            shown = " ".join(f"{name} {value:.4g}" for name, value in row.items()
                             if name not in ("epoch", "step"))
            print(f"{self.stage} epoch {state.epoch}/{state.epochs} step {state.step}: {shown}",
                  file=sys.stderr, flush=True)

    def on_train_end(self, state: TrainState) -> None:
        if self.writer is not None:
            self.writer.close()


def summary_writer():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise UserError("Experiment.tensorboard = True needs the tensorboard package: pip "
                        "install 'freetickets-bench[tensorboard]'") from error
    return SummaryWriter
