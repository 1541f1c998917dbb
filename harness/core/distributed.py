"""Data parallel training over processes started by torchrun (one machine or several):

    torchrun --nproc_per_node=N -m harness.run --gin_file=...

Every process trains the same model on its own rows of each global batch (`Trainer.batch_size`
stays the global batch, split over the processes); DistributedDataParallel averages the
gradients, so that every process holds the same weights and sees the same averaged gradient
in its hooks. Without torchrun's environment (or with one process) nothing here is active:
`world() == 1`, `rank() == 0`.
"""
import os

import torch
import torch.distributed as dist
from torch import nn


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    return rank() == 0


def init_from_environment() -> None:
    """Joins the process group torchrun describes in the environment (WORLD_SIZE > 1): NCCL
    with one GPU per local rank where CUDA is available, gloo on CPUs."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")


def local_device(device: torch.device) -> torch.device:
    """This process's own GPU under torchrun ('cuda' means the local rank's)."""
    if device.type == "cuda" and active() and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def wrap(model: nn.Module) -> nn.Module:
    """The network a training step calls: `model` itself, or under several processes a
    DistributedDataParallel around it (which starts every process from rank 0's weights)."""
    if not active():
        return model
    device = next(model.parameters()).device
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)


def broadcast_(tensor: torch.Tensor) -> torch.Tensor:
    """Rank 0's `tensor` on every process, in place."""
    if active():
        dist.broadcast(tensor, src=0)
    return tensor


def mean(value: torch.Tensor) -> torch.Tensor:
    """The mean over processes of a tensor every process holds."""
    if active():
        value = value.clone()
        dist.all_reduce(value)
        value /= world()
    return value


def from_main(compute):
    """`compute()` on rank 0, its result on every process (an error raised there is raised
    everywhere); plainly `compute()` without torchrun."""
    if not active():
        return compute()
    outcome = [None]
    if is_main():
        try:
            outcome = [("value", compute())]
        except Exception as error:  # noqa: BLE001  sent on, then raised on every process
            outcome = [("error", error)]
    dist.broadcast_object_list(outcome, src=0)
    kind, value = outcome[0]
    if kind == "error":
        raise value
    return value


def barrier() -> None:
    if active():
        dist.barrier()
