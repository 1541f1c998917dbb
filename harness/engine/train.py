"""The one training loop every method uses.

Methods never write a loop of their own. They shape a run through:
  * hooks (`Hook`): called at fixed points of each optimizer step and epoch; sparse training
    masks gradients and weights there, EDST escapes and saves tickets there, the FLOPs ledger
    counts there;
  * a schedule: a multiplier of the base learning rate as a function of progress in [0, 1];
    a method's own schedule (EDST's phases, Snapshot's cycles) keeps the warm-up of
    `Trainer.lr_schedule` (`schedules.compose`);
  * an objective: the loss of one batch (MIMO and TreeNet replace the default), called with
    the run's `Trainer.label_smoothing`, which every training cross-entropy applies (evaluation
    NLL never does: harness/evaluation/metrics.py);
  * a batch format (harness/engine/batching.py): what the network is fed from each drawn batch;
  * parameter groups: per-group weight decay and learning-rate scale (BatchEnsemble's fast
    weights), see `Trainer.make_optimizer`.

Order within one optimizer step:
  zero grads -> objective(model, *batch_format(x, y), label_smoothing).backward()
  -> hooks.before_optimizer_step
  -> optimizer.step() -> state.step += 1 -> hooks.after_optimizer_step
Gradients of the step are still in `param.grad` during both step hooks.

Training data comes through one seam, `dataset.epoch_batches` (harness/data/arrays.py): arrays
held on the device, or image folders streamed by DataLoader workers (harness/data/folders.py).
Under torchrun (harness/core/distributed.py) each process draws its rows of every global batch and
the step runs through DistributedDataParallel; hooks see the plain model and the averaged
gradient, and only rank 0 writes checkpoints.
"""
import contextlib
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import gin
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from harness.core import allocator, distributed, safe_load

from harness.engine import scale
from harness.engine.batching import BatchFormat, PlainBatch
from harness.data.arrays import ArrayDataset, Augment
from harness.core.errors import UserError, check_integer, check_number
from harness.core.progress import draws_bars
from harness.core.safe_load import UnsafeFile
from harness.engine.schedules import MultiStep, compose
from harness.store import paths

# objective(model, inputs, targets, label_smoothing) -> the batch's training loss
Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor, float], torch.Tensor]
Schedule = Callable[[float], float]
# A method's split of the model's parameters: dicts with "params" and optionally
# "weight_decay" and "lr_scale" (a multiplier of the scheduled learning rate).
ParamGroups = Callable[[nn.Module], list[dict]]


@dataclass
class TrainState:
    """What hooks see of the run in progress."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    epochs: int
    steps_per_epoch: int
    batch_size: int
    rows: int = 0  # rows the network processed in the last step (harness/engine/batching.py)
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps completed
    lr: float = 0.0
    epoch_loss: float = math.nan  # mean training loss of the last completed epoch
    history: list = field(default_factory=list)  # one dict per completed epoch

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def progress(self) -> float:
        return self.step / self.total_steps


class Hook:
    """Base class of everything a method attaches to the training loop; every call is a no-op
    unless overridden. A stateful hook returns its state from `state_dict` so that a resumed
    run continues exactly where it stopped."""

    def on_train_begin(self, state: TrainState) -> None:
        """Once before the first step, and again after a resume restored the hook's state."""

    def before_optimizer_step(self, state: TrainState) -> None:
        """After backward, before the update: `param.grad` holds this step's gradient."""

    def after_optimizer_step(self, state: TrainState) -> None:
        """After the update; `state.step` already counts it."""

    def on_epoch_end(self, state: TrainState) -> None:
        """After the last step of an epoch; `state.epoch` already counts it."""

    def on_train_end(self, state: TrainState) -> None:
        """Once after the last epoch."""

    def record(self) -> dict:
        """What the run's summary.json keeps of this hook once its stage has trained (e.g.
        the sparse kernels of a Masking, methods/sparse/masking.py): plain values, merged over
        the stage's hooks. Nothing for most hooks."""
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        del state


def classification_loss(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                        label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy of a model that maps [B, ...] inputs to [B, C] logits, with the labels
    smoothed by `label_smoothing` (torch's definition, equal to the official FreeTickets
    `ImageNet/smoothing.py` LabelSmoothing: (1 - s) * NLL + s * mean over classes of -log p)."""
    return F.cross_entropy(model(images), labels, label_smoothing=label_smoothing)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_deterministic(enabled: bool) -> None:
    """Bitwise-repeatable runs on CPU (and on CUDA where kernels allow it)."""
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.benchmark = not enabled
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919) % 2**63


@gin.configurable
class Trainer:
    """SGD with momentum and weight decay on every parameter, as in the paper (App. C) and
    uncertainty-baselines. `epochs` is given at paper scale; `harness.engine.scale` shortens it.

    `label_smoothing` in [0, 1) smooths the labels of the training loss only (the paper is
    silent; the official ImageNet script trains with `--label-smoothing 0.1`, gin/table3/).
    `decay_norm_weights = False` exempts normalisation layers' weights and biases from weight
    decay (the official ImageNet code's default, `ImageNet/main.py` get_optimizer)."""

    def __init__(self, epochs: int = 250, batch_size: int = 128, lr: float = 0.1,
                 momentum: float = 0.9, nesterov: bool = False, weight_decay: float = 5e-4,
                 lr_schedule: Schedule | None = None, augment: Augment | None = None,
                 amp: bool = False, progress: bool = True, checkpoint_every: int = 0,
                 channels_last: bool = False, compile: bool = False,
                 label_smoothing: float = 0.0, decay_norm_weights: bool = True):
        """`checkpoint_every`: also checkpoint every that many steps within an epoch (0: at
        epoch ends only), for epochs of many thousand steps (ImageNet). The GPU path: `amp`
        runs the forward in bfloat16 autocast on CUDA; `channels_last` keeps images and
        convolution weights in NHWC (faster tensor-core convolutions); `compile` runs the
        step's network through `torch.compile`."""
        check_integer("Trainer.epochs", epochs, 1)
        check_integer("Trainer.batch_size", batch_size, 1)
        check_number("Trainer.lr", lr, positive=True)
        check_number("Trainer.momentum", momentum)
        if nesterov and momentum == 0:  # torch's SGD refuses it, after the run has started
            raise UserError("Trainer.nesterov = True needs Trainer.momentum > 0, got 0")
        check_number("Trainer.weight_decay", weight_decay)
        check_integer("Trainer.checkpoint_every", checkpoint_every, 0, " (0: at epoch ends)")
        check_number("Trainer.label_smoothing", label_smoothing)
        if not 0 <= label_smoothing < 1:
            raise UserError(f"Trainer.label_smoothing must be in [0, 1), got {label_smoothing}")
        if not isinstance(decay_norm_weights, bool):
            raise UserError(f"Trainer.decay_norm_weights must be True or False, got "
                            f"{decay_norm_weights!r}")
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        # Built here, not as default arguments: a default built at import would miss the gin
        # bindings of MultiStep and Augment (e.g. the smoke scale's Augment.padding).
        self.lr_schedule = MultiStep() if lr_schedule is None else lr_schedule
        self.augment = Augment() if augment is None else augment
        self.amp = amp
        self.progress = progress
        self.checkpoint_every = checkpoint_every
        self.channels_last = channels_last
        self.compile = compile
        self.label_smoothing = label_smoothing
        self.decay_norm_weights = decay_norm_weights

    @property
    def scaled_epochs(self) -> int:
        return scale.epochs(self.epochs)

    def steps_per_epoch(self, dataset_size: int) -> int:
        steps = dataset_size // self.batch_size
        if steps == 0:
            raise ValueError(f"the train set has {dataset_size} examples, fewer than one batch "
                             f"of {self.batch_size}: lower Trainer.batch_size")
        if self.batch_size % distributed.world():
            raise ValueError(f"Trainer.batch_size = {self.batch_size} (the global batch) does "
                             f"not split evenly over {distributed.world()} processes")
        return steps

    def make_optimizer(self, model: nn.Module, param_groups: ParamGroups | None = None
                       ) -> torch.optim.Optimizer:
        """SGD over every parameter, in the method's groups if it gives them. A group's
        "lr_scale" multiplies its learning rate at every step: with SGD's linear momentum this
        is exactly uncertainty-baselines' multiplier of a group's gradient (weight-decay term
        included), e.g. BatchEnsemble's fast weights at x0.5."""
        groups = ([{"params": list(model.parameters())}] if param_groups is None
                  else param_groups(model))
        grouped = [id(param) for group in groups for param in group["params"]]
        if sorted(grouped) != sorted(id(param) for param in model.parameters()):
            raise ValueError("parameter groups must hold every model parameter exactly once")
        for group in groups:
            group.setdefault("lr_scale", 1.0)
        if not self.decay_norm_weights:
            groups = _without_norm_decay(model, groups)
        return torch.optim.SGD(groups, lr=self.lr, momentum=self.momentum,
                               nesterov=self.nesterov, weight_decay=self.weight_decay)

    def fit(self, model: nn.Module, dataset: ArrayDataset, *, seed: int,
            hooks: Sequence[Hook] = (), epochs: int | None = None,
            schedule: Schedule | None = None, objective: Objective = classification_loss,
            batch_format: BatchFormat = PlainBatch(), param_groups: ParamGroups | None = None,
            checkpoint: Path | None = None, desc: str = "train") -> TrainState:
        """Trains `model` in place on `dataset` (already on its device) and returns the final
        state. `epochs` (already scaled) overrides the configured one; `schedule`, a method's
        own, replaces the configured one but for its warm-up (`schedules.compose`);
        `batch_format` turns each drawn batch into the network's rows and targets,
        `param_groups` splits the parameters for the optimizer (`make_optimizer`). With
        `checkpoint`, the run saves itself there after every epoch and resumes from it."""
        allocator.keep_freed_memory()  # a step's activations reuse the last step's pages
        epochs = self.scaled_epochs if epochs is None else epochs
        schedule = self.lr_schedule if schedule is None else compose(schedule,
                                                                     self.lr_schedule)
        model.to(dataset.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        optimizer = self.make_optimizer(model, param_groups)
        state = TrainState(model=model, optimizer=optimizer, epochs=epochs,
                           steps_per_epoch=self.steps_per_epoch(len(dataset)),
                           batch_size=self.batch_size)
        within = {}  # where a checkpoint taken mid-epoch left the epoch
        if checkpoint is not None and (checkpoint.exists()
                                       or paths.previous_checkpoint(checkpoint).exists()):
            within = _restore(checkpoint, state, hooks)
        for hook in hooks:
            hook.on_train_begin(state)
        network = distributed.wrap(model)
        if self.compile:
            network = torch.compile(network)
        shard = (distributed.rank(), distributed.world())

        autocast = (torch.autocast("cuda", dtype=torch.bfloat16)
                    if self.amp and dataset.device.type == "cuda" else contextlib.nullcontext())
        bar = tqdm(total=state.total_steps, initial=state.step, desc=desc, unit="step",
                   disable=not draws_bars(self.progress), leave=False, dynamic_ncols=True)
        while state.epoch < epochs:
            seed_everything(_epoch_seed(seed, state.epoch))
            generator = torch.Generator(device=dataset.device)
            generator.manual_seed(_epoch_seed(seed, state.epoch))
            model.train()
            loss_sum = torch.zeros((), device=dataset.device)
            if within:
                _set_rng_states(within["rng"])
                loss_sum += within["loss_sum"].to(dataset.device)
            batches = dataset.epoch_batches(
                self.batch_size, self.augment, generator, shard=shard,
                skip=state.step - state.epoch * state.steps_per_epoch,
                generator_state=within["generator"].cpu() if within else None)
            within = {}
            epoch_start, epoch_steps = time.perf_counter(), 0
            for images, labels in batches:
                if self.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                state.lr = self.lr * schedule(state.progress)
                for group in optimizer.param_groups:
                    group["lr"] = state.lr * group["lr_scale"]
                optimizer.zero_grad(set_to_none=True)
                inputs, targets = batch_format(images, labels, generator)
                state.rows = inputs.shape[0] * shard[1]  # the global batch's rows
                with autocast:
                    loss = objective(network, inputs, targets, self.label_smoothing)
                loss.backward()
                for hook in hooks:
                    hook.before_optimizer_step(state)
                optimizer.step()
                state.step += 1
                for hook in hooks:
                    hook.after_optimizer_step(state)
                loss_sum += loss.detach()
                epoch_steps += 1
                bar.update()
                if (checkpoint is not None and self.checkpoint_every
                        and state.step % self.checkpoint_every == 0
                        and state.step % state.steps_per_epoch):
                    _save(checkpoint, state, hooks, within={
                        "rng": _rng_states(), "generator": generator.get_state(),
                        "loss_sum": loss_sum.detach().cpu()})
            state.epoch += 1
            state.epoch_loss = distributed.mean(loss_sum).item() / state.steps_per_epoch
            if not math.isfinite(state.epoch_loss):
                raise FloatingPointError(f"{desc}: training loss became {state.epoch_loss} in "
                                         f"epoch {state.epoch}; lower Trainer.lr")
            seconds = time.perf_counter() - epoch_start  # since a resume, if it was resumed
            state.history.append({"epoch": state.epoch, "step": state.step,
                                  "loss": state.epoch_loss, "lr": state.lr, "seconds": seconds,
                                  "images_per_second": epoch_steps * self.batch_size / seconds})
            bar.set_postfix(epoch=state.epoch, loss=f"{state.epoch_loss:.3f}")
            for hook in hooks:
                hook.on_epoch_end(state)
            if checkpoint is not None:
                _save(checkpoint, state, hooks)
        bar.close()
        if checkpoint is not None and distributed.is_main():
            # the last one is complete
            paths.previous_checkpoint(checkpoint).unlink(missing_ok=True)
        for hook in hooks:
            hook.on_train_end(state)
        return state


NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def _without_norm_decay(model: nn.Module, groups: list[dict]) -> list[dict]:
    """Each group split in two: its normalisation-layer parameters with weight decay 0, the
    rest as they were (`Trainer.decay_norm_weights = False`)."""
    norm_ids = {id(param) for module in model.modules() if isinstance(module, NORM_LAYERS)
                for param in module.parameters(recurse=False)}
    split = []
    for group in groups:
        norm = [param for param in group["params"] if id(param) in norm_ids]
        rest = [param for param in group["params"] if id(param) not in norm_ids]
        split += [{**group, "params": params, **extra} for params, extra
                  in ((rest, {}), (norm, {"weight_decay": 0.0})) if params]
    return split


def _rng_states() -> dict:
    """The global RNGs a step draws from (dropout, random growth): saved mid-epoch, where a
    resumed run cannot re-seed them from the epoch's seed."""
    numpy_state = np.random.get_state(legacy=False)
    # numpy's key as a tensor: a checkpoint holds tensors and plain values only
    # (harness/core/safe_load.py)
    numpy_state["state"]["key"] = torch.from_numpy(numpy_state["state"]["key"].astype(np.int64))
    return {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"].cpu())  # a checkpoint may be loaded onto a GPU
    numpy_state = {**states["numpy"]}
    numpy_state["state"] = {**numpy_state["state"],
                            "key": numpy_state["state"]["key"].cpu().numpy().astype(np.uint32)}
    np.random.set_state(numpy_state)
    random.setstate(states["python"])
    if states["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([state.cpu() for state in states["cuda"]])


def _save(path: Path, state: TrainState, hooks: Sequence[Hook], within: dict | None = None
          ) -> None:
    """Durable (harness/core/durable.py: on a full disk, `DiskFull` and the last checkpoint
    intact); the checkpoint it replaces is kept (`paths.previous_checkpoint`), the fallback
    should the new one be found damaged.
    `within`: the RNG and loss state of a checkpoint taken mid-epoch. Every process holds the
    same state; rank 0 writes it."""
    if not distributed.is_main():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    saved = {"model": state.model.state_dict(), "optimizer": state.optimizer.state_dict(),
             "epoch": state.epoch, "step": state.step, "history": state.history,
             "hooks": [hook.state_dict() for hook in hooks], "within": within or {}}
    safe_load.save(path, saved, previous=paths.previous_checkpoint(path))


def _restore(path: Path, state: TrainState, hooks: Sequence[Hook]) -> dict:
    """From `path`, or from the previous checkpoint where `path` is missing or damaged;
    returns the mid-epoch state (`_save`'s `within`), empty after a whole epoch."""
    for candidate in (path, paths.previous_checkpoint(path)):
        try:
            saved = safe_load.load(candidate, next(state.model.parameters()).device)
            break
        except UnsafeFile:
            raise
        except Exception:  # noqa: BLE001  missing, or damaged bytes: whatever unpickling meets
            continue
    else:
        raise UserError(f"checkpoint {path} is damaged and no earlier one is usable; delete it "
                        f"(and {paths.previous_checkpoint(path).name}) to restart this training "
                        f"run from its first epoch")
    if len(saved["hooks"]) != len(hooks):
        raise ValueError(f"{path} was written by a run with other hooks; delete it to restart")
    state.model.load_state_dict(saved["model"])
    state.optimizer.load_state_dict(saved["optimizer"])
    state.epoch, state.step, state.history = saved["epoch"], saved["step"], saved["history"]
    for hook, hook_state in zip(hooks, saved["hooks"]):
        hook.load_state_dict(hook_state)
    return saved.get("within", {})
