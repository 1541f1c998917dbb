"""`make gpu-check`: what one GPU does with this harness's training steps, in at most 5 minutes,
written to `<output_dir>/gpu_check.json` (and printed):

    python -m harness.gpu_check [--output_dir=build/gpu_check] [--device=auto|cuda|cpu]
        [--[no]reduced] [--steps=30] [--warmup=10]

Every figure comes from `harness.engine.train.Trainer.fit`, the loop every method trains with, on
synthetic data already on the device (the GPU's step rate alone; the data path is `make
bench`'s), timed over `--steps` steps after `--warmup` (compilation, cuDNN's autotuning):

  throughput   dense WRN-28-10 (CIFAR, batch 128) and ResNet-50 (ImageNet 224 px, batch 256):
               images/s, the training FLOP/s this is (3 x forward FLOPs per image,
               harness/flops) and its fraction of the GPU's peak for that precision (`PEAKS`;
               fp32 convolutions run as TF32, PyTorch's default for cuDNN), peak memory; in
               fp32, bf16 autocast, bf16 + channels_last, and bf16 + channels_last +
               torch.compile
  sparse       DST (RigL prune-and-grow every few steps) and EDST (the same plus one global
               escape) steps on WRN-28-10, bf16 + channels_last, with mask updates inside
               the timed window; and whether every masked weight is still exactly zero
  tiled        BatchEnsemble (M = 4, tiled batch) and MIMO (M = 3) steps: images/s and rows/s
  bf16_vs_fp32 final training loss of a WRN-10-2 on the digits after 50 steps, bf16 autocast
               against fp32 from the same seed: within `BF16_LOSS_TOLERANCE`
  ddp          with 2 or more GPUs: a 2-process NCCL DDP DST run (torchrun) whose masks are
               identical on both ranks

`plan_flops_per_s` is what the compute plan (harness/tables/compute_plan.py) reads: per model, the
best training FLOP/s measured above. On a machine without CUDA the same code runs on the CPU
at reduced sizes (`--reduced`, the default there): the figures then only show it works.
"""
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

from harness.core.errors import UserError
from harness.engine.batching import BatchFormat, MimoBatch, PlainBatch, TiledBatch
from harness.experiment.config import parse
from harness.data.arrays import ArrayDataset, Augment
from harness.flops import dense_forward_flops, layer_forward_flops
from harness.store.record import write_json
from harness.engine.train import Hook, TrainState, Trainer, classification_loss

# Dense peak FLOP/s by device name (NVIDIA data sheets, SXM parts; fp32 = TF32 tensor cores).
PEAKS = {"H100": {"bf16": 989e12, "fp32": 494e12}, "H200": {"bf16": 989e12, "fp32": 494e12},
         "A100": {"bf16": 312e12, "fp32": 156e12}, "L40S": {"bf16": 362e12, "fp32": 183e12}}
BF16_LOSS_TOLERANCE = 0.05  # |loss_bf16 - loss_fp32| / loss_fp32 after 50 steps
FULL = {"wide_resnet": {"bindings": ["wide_resnet.depth = 28", "wide_resnet.width = 10"],
                        "image": (3, 32, 32), "classes": 10, "batch": 128},
        "resnet50": {"bindings": [], "image": (3, 224, 224), "classes": 1000, "batch": 256}}
REDUCED = {"wide_resnet": {"bindings": ["wide_resnet.depth = 10", "wide_resnet.width = 1"],
                           "image": (3, 16, 16), "classes": 10, "batch": 8},
           "resnet50": {"bindings": [], "image": (3, 32, 32), "classes": 10, "batch": 2}}
VARIANTS = {"fp32": {}, "bf16": {"amp": True},
            "bf16_channels_last": {"amp": True, "channels_last": True},
            "bf16_channels_last_compile": {"amp": True, "channels_last": True,
                                           "compile": True}}


class Stopwatch(Hook):
    """Times the steps after the first `warmup` (synchronising the device), counts the rows
    they processed and the mask updates among them."""

    def __init__(self, warmup: int, device: torch.device, masking=None):
        self.warmup, self.device, self.masking = warmup, device, masking
        self.start = self.seconds = None
        self.rows = self.mask_updates = 0

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def after_optimizer_step(self, state: TrainState) -> None:
        if state.step == self.warmup:
            self.start = self._now()
        elif state.step > self.warmup:
            self.rows += state.rows
            if self.masking is not None and self.masking.is_update_step(state.step,
                                                                        state.total_steps):
                self.mask_updates += 1
            if state.step == state.total_steps:
                self.seconds = self._now() - self.start


def peak(device: torch.device, precision: str) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peaks[precision] for key, peaks in PEAKS.items() if key in name), None)


def synthetic(size: dict, count: int, device: torch.device) -> ArrayDataset:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, *size["image"]), dtype=torch.uint8,
                           generator=generator)
    labels = torch.randint(0, size["classes"], (count,), generator=generator)
    channels = size["image"][0]
    return ArrayDataset(images=images, labels=labels, num_classes=size["classes"],
                        mean=(0.5,) * channels, std=(0.25,) * channels).to(device)


def build(name: str, size: dict, **options) -> torch.nn.Module:
    from harness.models import build_model

    parse([], size["bindings"])
    torch.manual_seed(0)
    return build_model(name, size["classes"], size["image"][0], **options)


def timed_fit(model, size: dict, device: torch.device, steps: int, warmup: int, *,
              hooks=(), masking=None, batch_format: BatchFormat = PlainBatch(),
              objective=classification_loss, **trainer_options) -> dict:
    """One `Trainer.fit` of warmup + steps steps; its timed steps' rate and peak memory."""
    trainer = Trainer(epochs=1, batch_size=size["batch"], lr=0.01, progress=False,
                      augment=Augment(padding=0, hflip=False), **trainer_options)
    data = synthetic(size, size["batch"] * (warmup + steps), device)
    watch = Stopwatch(warmup, device, masking)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer.fit(model, data, seed=0, hooks=[*hooks, watch], batch_format=batch_format,
                objective=objective)
    result = {"images_per_s": size["batch"] * steps / watch.seconds,
              "rows_per_s": watch.rows / watch.seconds, "step_ms": 1e3 * watch.seconds / steps}
    if device.type == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    if masking is not None:
        result["mask_updates_timed"] = watch.mask_updates
    return result


def throughput(sizes: dict, device: torch.device, steps: int, warmup: int) -> dict:
    out = {}
    for name, size in sizes.items():
        with torch.device("meta"):  # shapes only
            forward = dense_forward_flops(layer_forward_flops(build(name, size),
                                                              size["image"]))
        for variant, options in VARIANTS.items():
            if options.get("compile") and device.type != "cuda":
                # Inductor on a CPU needs a C++ compiler, and says nothing of a GPU.
                out[f"{name}/{variant}"] = {"skipped": "torch.compile is timed on CUDA only"}
                continue
            rate = timed_fit(build(name, size), size, device, steps, warmup, **options)
            flops = 3 * forward * rate["images_per_s"]
            top = peak(device, "bf16" if options.get("amp") else "fp32")
            out[f"{name}/{variant}"] = {**rate, "train_flops_per_s": flops,
                                        "fraction_of_peak": flops / top if top else None}
    return out


def masked_weights_zero(masking) -> bool:
    return all(bool((layer.weight[~masking.masks[name]] == 0).all())
               for name, layer in masking.layers.items())


def sparse_steps(size: dict, device: torch.device, steps: int, warmup: int) -> dict:
    """DST and EDST steps, bf16 + channels_last, with prune-and-grow inside the window."""
    from methods.sparse.edst import Escape
    from methods.sparse.masking import Masking, SparsitySpec

    out = {}
    interval = max(1, steps // 3)
    for method in ("dst", "edst"):
        model = build("wide_resnet", size)
        masking = Masking(model, SparsitySpec(0.8, update_interval=interval), seed=0)
        escape = ([Escape(masking, [(warmup + steps / 2) / (warmup + steps)], [0.0], 0.5)]
                  if method == "edst" else [])
        rate = timed_fit(model, size, device, steps, warmup, hooks=[*escape, masking],
                         masking=masking, amp=True, channels_last=True)
        out[method] = {**rate, "masked_weights_exactly_zero": masked_weights_zero(masking)}
    return out


def tiled_steps(size: dict, device: torch.device, steps: int, warmup: int) -> dict:
    from methods.one_network import mimo_loss

    batch_ensemble = timed_fit(build("wide_resnet", size, batch_ensemble=4), size, device,
                               steps, warmup, batch_format=TiledBatch(4), amp=True,
                               channels_last=True)
    mimo = timed_fit(build("wide_resnet", size, mimo=3), size, device, steps, warmup,
                     batch_format=MimoBatch(3, 4, 0.0), objective=mimo_loss, amp=True)
    return {"batch_ensemble_m4": batch_ensemble, "mimo_m3": mimo}


def bf16_against_fp32(device: torch.device) -> dict:
    """50 steps of a WRN-10-2 on the digits from one seed, fp32 then bf16 autocast."""
    from harness.data import DATASETS

    parse([], ["wide_resnet.depth = 10", "wide_resnet.width = 2"])
    data = DATASETS.get("digits")().train.to(device)
    losses = {}
    for precision, amp in (("fp32", False), ("bf16", True)):
        torch.manual_seed(0)
        from harness.models import build_model

        model = build_model("wide_resnet", data.num_classes, data.image_shape[0])
        trainer = Trainer(epochs=1, batch_size=len(data) // 50, lr=0.05, amp=amp,
                          progress=False, augment=Augment(padding=0, hflip=False))
        state = trainer.fit(model, data, seed=0)
        losses[precision] = state.epoch_loss
    gap = abs(losses["bf16"] - losses["fp32"]) / losses["fp32"]
    return {**{f"loss_{key}": value for key, value in losses.items()}, "relative_gap": gap,
            "tolerance": BF16_LOSS_TOLERANCE, "within_tolerance": gap <= BF16_LOSS_TOLERANCE,
            "autocast": "bf16 on CUDA" if device.type == "cuda" else
            "none: the harness autocasts on CUDA only, so both runs are fp32 on a CPU"}


def ddp_check(output_dir: Path) -> dict:
    if not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        return {"skipped": "needs 2 or more GPUs"}
    result = output_dir / "ddp_masks.json"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node=2", "-m", "harness.gpu_check", "--ddp_probe",
                           f"--output_dir={output_dir}"], capture_output=True, text=True)
    if done.returncode != 0 or not result.is_file():
        return {"error": (done.stderr or done.stdout).strip().splitlines()[-1:]}
    return json.loads(result.read_text())


def ddp_probe(output_dir: Path) -> None:
    """One rank of a DST run under DDP (NCCL); rank 0 writes whether every rank's masks
    equal its own."""
    import torch.distributed as dist

    from harness.core import distributed
    from methods.sparse.masking import Masking, SparsitySpec

    distributed.init_from_environment()
    device = distributed.local_device(torch.device("cuda"))
    size = FULL["wide_resnet"]
    model = build("wide_resnet", size)
    masking = Masking(model, SparsitySpec(0.8, update_interval=5), seed=distributed.rank())
    timed_fit(model, size, device, 20, 5, hooks=[masking], masking=masking, amp=True)
    flat = torch.cat([mask.flatten().float() for mask in masking.masks.values()])
    gathered = [torch.empty_like(flat) for _ in range(distributed.world())]
    dist.all_gather(gathered, flat)
    if distributed.is_main():
        write_json(output_dir / "ddp_masks.json", {
            "ranks": distributed.world(), "backend": dist.get_backend(),
            "masks_identical": all(bool(torch.equal(other, flat)) for other in gathered),
            "masked_weights_exactly_zero": masked_weights_zero(masking)})
    dist.destroy_process_group()


def gpu_check(output_dir: Path, device: torch.device, reduced: bool, steps: int,
              warmup: int) -> dict:
    start = time.perf_counter()
    sizes = REDUCED if reduced else FULL
    report = {"device": (torch.cuda.get_device_name(device) if device.type == "cuda"
                         else "cpu"),
              "autocast": ("bf16 variants under bf16 autocast" if device.type == "cuda" else
                           "none: the harness autocasts on CUDA only, so the bf16 variants run "
                           "in fp32 here"),
              "torch": torch.__version__, "reduced": reduced, "steps": steps,
              "warmup": warmup, "sizes": {name: {key: value for key, value in size.items()}
                                          for name, size in sizes.items()}}
    report["throughput"] = throughput(sizes, device, steps, warmup)
    report["sparse"] = sparse_steps(sizes["wide_resnet"], device, steps, warmup)
    report["tiled"] = tiled_steps(sizes["wide_resnet"], device, steps, warmup)
    report["bf16_vs_fp32"] = bf16_against_fp32(device)
    report["ddp"] = ddp_check(output_dir)
    report["plan_flops_per_s"] = {
        name: max(row.get("train_flops_per_s", 0.0) for key, row
                  in report["throughput"].items() if key.startswith(f"{name}/"))
        for name in sizes}
    report["seconds"] = time.perf_counter() - start
    return report



def chosen_device(name: str) -> torch.device:
    """`--device`; asking for CUDA where there is none is the user's mistake, not a crash."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if not re.fullmatch(r"cpu|cuda(:\d+)?", name):
        raise UserError(f"--device must be auto, cpu, cuda or cuda:<index>, got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device=cuda but no CUDA device is available; use --device=cpu")
    return torch.device(name)
