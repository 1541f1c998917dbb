"""`make bench`: is the harness ever the bottleneck, and do FLOPs savings become time savings?

    python -m harness.bench [--output_dir=build/bench] [--only=NAME,NAME]

Every figure is a ratio of two things measured side by side in this one process, on the same
model, data and machine, in alternating rounds (round-robin, one warm-up each), as the ratio of
their medians; the machine's load then hits both alike. It prints one line per ratio with its
target and the min and max of the same ratio taken round by round (`spread`), and writes them
all, with the raw seconds, to the JSON file. Figures live here, not in
timed tests. The benchmarks run on the CPU at the thread count torch was given
(OMP_NUM_THREADS), on a CIFAR-shaped synthetic set (3x32x32 uint8, 10 classes: time does not
depend on pixel values), with the cpu scale's WRN-10-2 at batch 128 unless said otherwise:

    train_step       harness step (Trainer.fit, its hooks and FLOPs ledger) / a bare PyTorch
                     loop of the same model, batch and augmentation                <= 1.03
    sparse_step      masked (Masking hook) / dense step: without an update in the window,
                     with one, and with exploration amortised at dT = 1000          <= 1.05
    evaluate         harness.evaluation.evaluate throughput / a bare no_grad forward loop     >= 0.95
    augmentation     torchvision's per-sample DataLoader pipeline time / the on-device
                     batched augmentation's (a speed-up)                           informational
    corrupted_memory peak resident memory while streaming a CIFAR-10-C-sized generated set
                     (50,000 images per corruption) with 1, 2 and 4 corruptions   flat, < 1.5 GB
    imagenet_loader  images/s per DataLoader worker of the ImageNet training stream
                     (decode + ResNet-50 train transform) and the workers one GPU
                     needs (harness/bench/loader.py)                              informational
    sparse_inference masked dense / sparse inference form (harness/kernels/inference.py) of
                     one WRN member at S = 0.8 and 0.9, batch 1 and 64, every form under
                     inference mode, 15 rounds (3 with --quick)
                                               >= 3.5 (S0.9 b1), 3 (S0.9 b64), 2 (S = 0.8)
                     beside it the folded dense form / sparse (batch norms folded into the
                     convs, oneDNN: harness/bench/parts.py `folded_dense`), and, per conv,
                     each kernel's speed-up over dense against its density
    sparse_kernels   the direct sparse kernels' inference and training-step speed-ups at one
                     and two threads (harness/bench/sparse_kernels.py)         >= 1.6 to 3.5

bench.json keeps the keys of `make bench-edst` (harness/bench/edst_wallclock.py: EDST's training
wall-clock against a dense run's) when this rewrites it.
"""
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from harness.bench import edst_wallclock, sparse_kernels

from harness.core import allocator
from harness.core.errors import UserError
from harness.data.arrays import ArrayDataset, Augment, train_batches
from harness.evaluation.evaluate import EvalSet, evaluate
from harness.bench.loader import bench_imagenet_loader
from harness.models.wide_resnet import wide_resnet
from harness.evaluation.predictors import MemberEnsemble
from harness.bench.parts import (CIFAR_MEAN, CIFAR_STD, IMAGE_SHAPE, Result, folded_dense,
                                 harness_epoch, masked_wrn, synthetic)
from harness.kernels.inference import KERNELS, choose_kernels, sparsify
from harness.kernels.timing import ratio_spread, side_by_side, spread
from harness.engine.train import Trainer


def small_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return wide_resnet(depth=10, width=2)


def check(value: float, target: str) -> bool:
    bound = float(target.split()[1])
    return value <= bound if target.startswith("<=") else value >= bound


# ------------------------------------------------------------------------- training steps

def bare_loop(model: torch.nn.Module, dataset: ArrayDataset, batch_size: int, seed: int
              ) -> Callable[[], None]:
    """One epoch of the textbook loop: shuffle, augment, normalise, SGD; nothing else."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    augment = Augment()

    def run() -> None:
        generator = torch.Generator().manual_seed(seed)
        model.train()
        for images, labels in train_batches(dataset, batch_size, augment, generator):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(images), labels).backward()
            optimizer.step()
    return run


def bench_train_step(rounds: int, steps: int, batch_size: int) -> Result:
    dataset = synthetic(steps * batch_size)
    trainer = Trainer(batch_size=batch_size, lr=0.01, progress=False)
    (harness_s, bare_s), (harness_r, bare_r) = side_by_side(
        [harness_epoch(small_model(), dataset, trainer, []),
         bare_loop(small_model(), dataset, batch_size, seed=0)], rounds)
    ratio = harness_s / bare_s
    return Result("train_step", ratio, "<= 1.03", check(ratio, "<= 1.03"),
                  f"WRN-10-2, batch {batch_size}, {steps} steps a round",
                  {"harness_step_seconds": harness_s / steps, "bare_step_seconds": bare_s / steps},
                  ratio_spread(harness_r, bare_r))


def bench_sparse_step(rounds: int, steps: int, batch_size: int) -> Result:
    from methods.sparse.masking import Masking, SparsitySpec

    dataset = synthetic(steps * batch_size)
    trainer = Trainer(batch_size=batch_size, lr=0.01, progress=False)
    dense = small_model()
    quiet = small_model()
    exploring = small_model()
    # No update within a round, and one update (prune and regrow by dense gradient) mid-round.
    quiet_hooks = [Masking(quiet, SparsitySpec(0.8, update_interval=10 * steps))]
    update_hooks = [Masking(exploring, SparsitySpec(0.8, update_interval=steps // 2))]
    (dense_s, quiet_s, update_s), rounds_s = side_by_side(
        [harness_epoch(dense, dataset, trainer, []),
         harness_epoch(quiet, dataset, trainer, quiet_hooks),
         harness_epoch(exploring, dataset, trainer, update_hooks)], rounds)
    interval = 1000

    def amortised_ratio(dense_s: float, quiet_s: float, update_s: float) -> float:
        update_cost = max(update_s - quiet_s, 0.0)  # one prune-and-grow on top of the steps
        return (interval * quiet_s / steps + update_cost) / (interval * dense_s / steps)

    dense_step = dense_s / steps
    quiet_step = quiet_s / steps
    update_cost = max(update_s - quiet_s, 0.0)
    amortised = amortised_ratio(dense_s, quiet_s, update_s)
    return Result("sparse_step", amortised, "<= 1.05", check(amortised, "<= 1.05"),
                  f"S = 0.8 ERK, RigL; amortised at dT = {interval}; no update in window "
                  f"{quiet_step / dense_step:.3f}, one update in {steps} steps "
                  f"{update_s / dense_s:.3f}",
                  {"dense_step_seconds": dense_step, "masked_step_seconds": quiet_step,
                   "update_seconds": update_cost,
                   "ratio_without_update": quiet_step / dense_step,
                   "ratio_with_one_update_per_window": update_s / dense_s,
                   "window_steps": steps, "amortised_interval": interval},
                  spread([amortised_ratio(*figures) for figures in zip(*rounds_s)]))


# ----------------------------------------------------------------------------- evaluation

def bench_evaluate(rounds: int, images: int, batch_size: int) -> Result:
    dataset = synthetic(images, seed=1)
    model = small_model().eval()
    predictor = MemberEnsemble([model])
    eval_set = EvalSet("test", "clean", 0, lambda: dataset.eval_batches(batch_size))

    def harness() -> None:
        evaluate(predictor, eval_set, progress=False)

    def bare() -> None:
        with torch.no_grad():
            for inputs, _ in dataset.eval_batches(batch_size):
                model(inputs)

    (harness_s, bare_s), (harness_r, bare_r) = side_by_side([harness, bare], rounds)
    ratio = bare_s / harness_s  # throughput ratio
    return Result("evaluate", ratio, ">= 0.95", check(ratio, ">= 0.95"),
                  f"WRN-10-2, {images} images, batch {batch_size}, every metric streamed",
                  {"harness_images_per_second": images / harness_s,
                   "bare_images_per_second": images / bare_s}, ratio_spread(bare_r, harness_r))


def bench_augmentation(rounds: int, images: int, batch_size: int) -> Result:
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    dataset = synthetic(images, seed=2)
    pictures = dataset.images.permute(0, 2, 3, 1).numpy()

    class PerSample(Dataset):
        pipeline = transforms.Compose([transforms.ToPILImage(),
                                       transforms.RandomCrop(32, padding=4),
                                       transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                                       transforms.Normalize(CIFAR_MEAN, CIFAR_STD)])

        def __len__(self) -> int:
            return images

        def __getitem__(self, index: int):
            return self.pipeline(pictures[index]), int(dataset.labels[index])

    loader = DataLoader(PerSample(), batch_size=batch_size, shuffle=True, drop_last=True,
                        num_workers=0)

    def torchvision_epoch() -> None:
        for _ in loader:
            pass

    def batched_epoch() -> None:
        for _ in train_batches(dataset, batch_size, Augment(), torch.Generator().manual_seed(0)):
            pass

    (torchvision_s, batched_s), (torchvision_r, batched_r) = side_by_side(
        [torchvision_epoch, batched_epoch], rounds)
    ratio = torchvision_s / batched_s
    return Result("augmentation", ratio, "informational", None,
                  f"speed-up over torchvision per-sample transforms (DataLoader, 0 workers), "
                  f"{images} images, batch {batch_size}",
                  {"torchvision_images_per_second": images / torchvision_s,
                   "batched_images_per_second": images / batched_s},
                  ratio_spread(torchvision_r, batched_r))


# ------------------------------------------------------------------------- memory (C sets)

CIFAR_C_IMAGES = 50_000  # per corruption: 5 severities x 10,000 test images


def write_corrupted_set(folder: Path, corruptions: int) -> list[str]:
    """A CIFAR-10-C-sized set in its layout: uint8 [50000, 32, 32, 3] per corruption."""
    from harness.evaluation.suite_summary import ALL_CORRUPTIONS

    folder.mkdir(parents=True, exist_ok=True)
    names = list(ALL_CORRUPTIONS[:corruptions])
    np.save(folder / "labels.npy", np.tile(np.arange(10_000) % 10, 5).astype(np.int64))
    pattern = np.random.default_rng(0).integers(0, 256, (1000, 32, 32, 3), dtype=np.uint8)
    for name in names:
        array = np.lib.format.open_memmap(folder / f"{name}.npy", mode="w+", dtype=np.uint8,
                                          shape=(CIFAR_C_IMAGES, 32, 32, 3))
        for start in range(0, CIFAR_C_IMAGES, len(pattern)):
            array[start:start + len(pattern)] = pattern
        array.flush()
        del array
    return names


def stream_and_report_peak(folder: str, corruptions: int) -> None:
    """(Subprocess) score every (corruption, severity) of `folder` through harness.evaluation.evaluate
    with a tiny predictor, then print the process's peak resident memory in bytes."""
    from harness.data.cifar_c import open_folder
    from harness.evaluation.suite_summary import ALL_CORRUPTIONS, SEVERITIES

    names = list(ALL_CORRUPTIONS[:corruptions])
    opened = open_folder(Path(folder), names, IMAGE_SHAPE, 10)
    test = synthetic(1)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=4), torch.nn.Flatten(),
                                torch.nn.LazyLinear(10))
    predictor = MemberEnsemble([model])
    for name in names:
        for severity in SEVERITIES:
            evaluate(predictor, EvalSet("generated_c", name, severity,
                                        lambda n=name, s=severity: opened.batches(n, s, 500,
                                                                                  test)),
                     progress=False)
    print(json.dumps({"peak_bytes": peak_resident_bytes()}))


def peak_resident_bytes() -> int:
    """This process's peak resident set: VmHWM where Linux has it (ru_maxrss would carry
    over the parent's peak across fork and exec), else ru_maxrss."""
    status = Path("/proc/self/status")
    if status.is_file():
        for entry in status.read_text().splitlines():
            if entry.startswith("VmHWM:"):
                return int(entry.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def bench_corrupted_memory(counts: tuple[int, ...] = (1, 2, 4)) -> Result:
    with tempfile.TemporaryDirectory(prefix="bench-c-", dir=_scratch()) as scratch:
        folder = Path(scratch) / "CIFAR-10-C"
        write_corrupted_set(folder, max(counts))
        peaks = {}
        for count in counts:
            output = subprocess.run(
                [sys.executable, "-m", "harness.bench", f"--stream_peak={folder},{count}"],
                capture_output=True, text=True, check=True).stdout
            peaks[count] = json.loads(output.splitlines()[-1])["peak_bytes"]
    growth = (peaks[max(counts)] - peaks[min(counts)]) / (max(counts) - min(counts))
    highest = max(peaks.values())
    flat = growth < 0.05 * CIFAR_C_IMAGES * 3072  # under 5% of one corruption file per file
    met = flat and highest < 1.5e9
    return Result("corrupted_memory", highest / 1e9, "< 1.5 GB, flat", met,
                  "peak GB over " + ", ".join(f"{c}: {peaks[c] / 1e9:.2f}" for c in counts)
                  + f" corruption(s); {growth / 1e6:+.0f} MB per extra corruption",
                  {"peak_bytes": peaks, "growth_bytes_per_corruption": growth,
                   "bytes_per_corruption_file": CIFAR_C_IMAGES * 3072})


def _scratch() -> str:
    path = Path("build/bench")
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


# ------------------------------------------------------------------------ sparse inference

def layer_kind(name: str, shape: list[int]) -> str:
    if shape[2] == 1:
        return "1x1 shortcut"
    if name == "conv1":
        return "first conv"
    return f"3x3 conv, {shape[1]}->{shape[0]}"


@torch.inference_mode()
def bench_sparse_inference(depth: int, width: int, batch_sizes: tuple[int, ...],
                           sparsities: tuple[float, ...], rounds: int) -> list[Result]:
    """Masked dense / sparse inference form of one WRN member, and beside it the folded dense
    form / sparse (harness/bench/parts.py `folded_dense`), the three in the same alternating
    rounds, all under inference mode; targets as sparse_kernels.INFERENCE_TARGETS."""
    results = []
    for sparsity in sparsities:
        model = masked_wrn(depth, width, sparsity)
        plans, timings = choose_kernels(model, IMAGE_SHAPE, batch_sizes, rounds=2)
        sparse = sparsify(model, plans)
        for batch in batch_sizes:
            x = torch.randn(batch, *IMAGE_SHAPE)
            folded, batch_norms = folded_dense(model, x)
            (dense_s, folded_s, sparse_s), (dense_r, folded_r, sparse_r) = side_by_side(
                [lambda: model(x), lambda: folded(x), lambda: sparse(x)], rounds)
            profile = where_time_goes(sparse, x)
            ratio = dense_s / sparse_s
            chosen = [plan[batch] for plan in plans.values()]
            target = sparse_kernels.INFERENCE_TARGETS.get(f"S{sparsity}_b{batch}",
                                                          sparse_kernels.INFORMATIONAL)
            curve = {}
            for name, timing in timings[batch].items():
                seconds = timing["seconds"]
                curve.setdefault(layer_kind(name, timing["shape"]), []).append(
                    {"layer": name, "density": round(timing["density"], 4),
                     **{f"{kernel}_speedup": seconds["dense"] / value
                        for kernel, value in seconds.items() if kernel != "dense"},
                     "dense_ms": seconds["dense"] * 1e3})
            results.append(Result(
                f"sparse_inference S={sparsity} batch={batch}", ratio, target,
                sparse_kernels.met(ratio, target),
                f"WRN-{depth}-{width}; {dense_s * 1e3:.1f} ms masked dense, "
                f"{folded_s * 1e3:.1f} ms folded dense ({folded_s / sparse_s:.2f}x), "
                f"{sparse_s * 1e3:.1f} ms sparse; convs: "
                + ", ".join(f"{chosen.count(k)} {k}" for k in KERNELS
                            if k in chosen)
                + "; sparse form's time: " + ", ".join(f"{share:.0%} {op}"
                                                       for op, share in profile[:4]),
                {"dense_seconds": dense_s, "sparse_seconds": sparse_s,
                 "folded_dense_seconds": folded_s, "folded_speedup": folded_s / sparse_s,
                 "folded_spread": ratio_spread(folded_r, sparse_r),
                 "batch_norms": batch_norms, "layers": curve,
                 "sparse_form_profile": dict(profile)}, ratio_spread(dense_r, sparse_r)))
    return results


def where_time_goes(model: torch.nn.Module, x: torch.Tensor) -> list[tuple[str, float]]:
    """Share of the forward's CPU time per operator (self time, torch.profiler), largest
    first: which ops the sparse form spends its time in."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        model(x)
    events = [event for event in profiler.key_averages() if event.self_cpu_time_total > 0]
    total = sum(event.self_cpu_time_total for event in events)
    return sorted(((event.key, event.self_cpu_time_total / total) for event in events),
                  key=lambda item: -item[1])


# ------------------------------------------------------------------------------ the table

def run_all(only: list[str] | None, sparse_model: tuple[int, int],
            sparse_batches: tuple[int, ...], quick: bool) -> list[Result]:
    rounds = 3 if quick else 5
    inference_rounds = 3 if quick else 15
    steps = 4 if quick else 6
    benches: dict[str, Callable[[], list[Result]]] = {
        "train_step": lambda: [bench_train_step(rounds, steps, 128)],
        "sparse_step": lambda: [bench_sparse_step(rounds, steps, 128)],
        "evaluate": lambda: [bench_evaluate(rounds, 1000, 500)],
        "augmentation": lambda: [bench_augmentation(rounds, 2048 if quick else 4096, 128)],
        "corrupted_memory": lambda: [bench_corrupted_memory()],
        "imagenet_loader": lambda: [bench_imagenet_loader(rounds)],
        "sparse_inference": lambda: bench_sparse_inference(*sparse_model, sparse_batches,
                                                           (0.8, 0.9), inference_rounds),
        "sparse_kernels": lambda: sparse_kernels.results(quick),
    }
    unknown = set(only or ()) - set(benches)
    if unknown:
        raise UserError(f"unknown benchmark(s) {', '.join(sorted(unknown))}; known: "
                        f"{', '.join(benches)}")
    results = []
    for name, bench in benches.items():
        if only and name not in only:
            continue
        start = time.perf_counter()
        for result in bench():
            result.detail["bench_seconds"] = round(time.perf_counter() - start, 1)
            print(line(result), flush=True)
            results.append(result)
    return results


def line(result: Result) -> str:
    value = "-" if result.value is None else f"{result.value:.3f}"
    verdict = {True: "met", False: "MISSED", None: ""}[result.met]
    rounds = ("" if result.spread is None else
              f" (rounds {result.spread['min']:.3f} to {result.spread['max']:.3f})")
    return (f"{result.name:<34} {value:>8}  target {result.target:<15} {verdict:<7} "
            f"{result.note}{rounds}")


def run(args) -> int:
    """What `python -m harness.bench` does with its flags (harness/bench/__main__.py)."""
    args.out = args.output_dir / "bench.json"
    if args.stream_peak:
        if (len(args.stream_peak) != 2 or not args.stream_peak[0]
                or not args.stream_peak[1].isdigit() or int(args.stream_peak[1]) < 1):
            raise UserError(f"--stream_peak takes FOLDER,COUNT (COUNT an integer >= 1), got "
                            f"{','.join(args.stream_peak)!r}")
        folder, count = args.stream_peak
        stream_and_report_peak(folder, int(count))
        return 0
    # As in every training process (Trainer.fit): both sides of each ratio reuse freed pages.
    allocator.keep_freed_memory()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"{os.cpu_count()} CPU(s); ratios of medians over alternating rounds")
    start = time.perf_counter()
    results = run_all(args.only, tuple(args.sparse_model), tuple(args.sparse_batches),
                      args.quick)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        **edst_wallclock.recorded(args.out),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(), "seconds": round(time.perf_counter() - start, 1),
        "results": [asdict(result) for result in results],
        **sparse_kernels.summary(results)}, indent=2) + "\n")
    print(f"wrote {args.out} ({time.perf_counter() - start:.0f} s)")
    return 0
