"""`python -m harness.run ... --dry_run`: what a run would do, without training or writing a
run directory. The configuration is parsed, checked and prepared (data loaded, evaluation sets
built) as for a real run; then it prints the operative configuration, the planned FLOPs, the
output directory and what would become of it, and an estimate of the training time.

The estimate: a few optimizer steps of the dense network at the configured batch size, timed
on this machine (after `WARMUP` steps, min/median/max of `ROUNDS`), times the run's steps in
dense-step equivalents. A method that trains several networks counts `training_runs` dense
runs; one whose planned FLOPs exceed that (MIMO's and BatchEnsemble's tiled rows) counts its
FLOPs over a dense step's. Sparse networks train as masked dense ones here, so a sparse
method's lower FLOPs do not shorten it. Evaluation is not included.
"""
import time
from pathlib import Path

import gin
import torch

from harness.experiment.assemble import Prepared

ROUNDS = 5
WARMUP = 3
_MODES = {"create": "created", "resume": "resumed", "replace": "replaced"}


def measure_step_seconds(prepared: Prepared) -> list[float]:
    """Seconds of `ROUNDS` dense optimizer steps on the first training batch, after `WARMUP`
    untimed ones."""
    train = prepared.data.splits.train
    batch = min(prepared.trainer.batch_size, len(train))
    images, labels = next(train.eval_batches(batch))
    torch.manual_seed(0)
    model = prepared.model_factory().to(train.device).train()
    optimizer = prepared.trainer.make_optimizer(model)
    seconds = []
    for _ in range(WARMUP + ROUNDS):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
        if train.device.type == "cuda":
            torch.cuda.synchronize(train.device)
        seconds.append(time.perf_counter() - start)
    return seconds[WARMUP:]


def describe(prepared: Prepared, run_dir: Path, mode: str) -> str:
    flops = prepared.planned_flops
    steps_per_run = flops["epochs"] * (flops["train_examples"] // flops["batch_size"])
    dense_step = 3 * flops["dense_forward_flops"] * flops["batch_size"]
    dense_steps = max(flops["training_runs"] * steps_per_run, flops["train_flops"] / dense_step)
    seconds = sorted(measure_step_seconds(prepared))
    median = seconds[len(seconds) // 2]
    estimate = dense_steps * median
    return "\n".join([
        "operative configuration:",
        *(f"  {line}" for line in gin.operative_config_str().strip().splitlines()), "",
        f"output directory: {run_dir} (would be {_MODES[mode]})",
        f"planned FLOPs: training {flops['train_flops']:.4g} "
        f"({flops['train_flops_ratio']:.3g}x the dense reference), test {flops['test_flops']:.4g}"
        f" per image ({flops['test_flops_ratio']:.3g}x one dense network)",
        f"training: {flops['epochs']} epochs x {steps_per_run // flops['epochs']} steps of batch "
        f"{flops['batch_size']}, {flops['training_runs']:g} training run(s); "
        f"{dense_steps:.0f} dense-step equivalents",
        f"dense step on {prepared.data.device}: {median:.4f} s median (min {seconds[0]:.4f}, "
        f"max {seconds[-1]:.4f}, {ROUNDS} rounds)",
        f"estimated training time: {format_seconds(estimate)} (evaluation not included)"])


def format_seconds(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
