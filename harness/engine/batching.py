"""Batch formats: what one optimizer step feeds the network, declared once.

The training loop (`Trainer.fit`) draws a batch of `Trainer.batch_size` images with their
labels and hands it to the run's format, which returns the network's inputs and the targets
that go with them. The FLOPs ledger counts the rows the format returns (`TrainState.rows`) and
probes the network with the format's per-row input shape, so that what is counted is what the
network processes:

  * `PlainBatch`: the images as drawn (every method of independently trained networks).
  * `TiledBatch`: the batch tiled M times, member-major (rows [0, B) go to member 0, rows
    [B, 2B) to member 1, ...): BatchEnsemble at train and test (Wen et al. 2020).
  * `MimoBatch`: B x R rows (R batch repetitions), each row M images stacked on a new member
    axis, each member's images an independent shuffle of the repeated batch (Havasi et al.
    2021, as uncertainty-baselines' `baselines/cifar/mimo.py` builds it).
"""
import torch

from harness.core.errors import UserError


class BatchFormat:
    """Base class: the batch as drawn; subclasses reshape it."""

    probe_rows = 1  # the fewest rows the network accepts (a tiled network needs M)

    def rows(self, batch_size: int) -> int:
        """Rows the network processes in one step on `batch_size` drawn images."""
        return batch_size

    def input_shape(self, image_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of one row of the network's input."""
        return tuple(image_shape)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return images, labels


class PlainBatch(BatchFormat):
    """The images as drawn: every method of separately trained networks."""


def tile_members(x: torch.Tensor, num_members: int) -> torch.Tensor:
    """[B, ...] -> [M * B, ...], member-major: member m owns rows [m B, (m + 1) B)."""
    return x.repeat(num_members, *([1] * (x.ndim - 1)))


class TiledBatch(BatchFormat):
    def __init__(self, num_members: int):
        if num_members < 1:
            raise UserError(f"a tiled batch needs num_members >= 1, got {num_members}")
        self.num_members = num_members
        self.probe_rows = num_members

    def rows(self, batch_size: int) -> int:
        return self.num_members * batch_size

    def __call__(self, images, labels, generator):
        return tile_members(images, self.num_members), tile_members(labels, self.num_members)


class MimoBatch(BatchFormat):
    """Rows [B R, M, C, H, W] and targets [B R, M].

    The batch is repeated R times and shuffled once (the main shuffle); then each member
    shuffles the first (1 - p) of those rows on its own and keeps the rest in the main order,
    so with probability p a row shows every member the same image (uncertainty-baselines'
    `input_repetition_probability`; 0 on CIFAR, 0.6 on ImageNet)."""

    def __init__(self, num_members: int, repetitions: int, repetition_probability: float):
        if num_members < 1:
            raise UserError(f"MIMO needs num_members >= 1, got {num_members}")
        if repetitions < 1:
            raise UserError(f"MIMO needs batch_repetitions >= 1, got {repetitions}")
        if not 0 <= repetition_probability <= 1:
            raise UserError(f"MIMO's input_repetition_probability must be in [0, 1], got "
                            f"{repetition_probability}")
        self.num_members = num_members
        self.repetitions = repetitions
        self.repetition_probability = repetition_probability

    def rows(self, batch_size: int) -> int:
        return self.repetitions * batch_size

    def input_shape(self, image_shape):
        return (self.num_members, *image_shape)

    def __call__(self, images, labels, generator):
        rows = images.shape[0] * self.repetitions
        repeated = torch.arange(images.shape[0], device=images.device).repeat(self.repetitions)
        main = repeated[torch.randperm(rows, generator=generator, device=images.device)]
        shuffled = int(rows * (1 - self.repetition_probability))
        indices = torch.stack([
            torch.cat([main[:shuffled][torch.randperm(shuffled, generator=generator,
                                                      device=images.device)],
                       main[shuffled:]])
            for _ in range(self.num_members)], dim=1)  # [rows, M]
        return images[indices], labels[indices]
