"""`make bench`'s figures for the direct sparse kernels (harness/kernels/sparse_conv.py): do FLOPs
savings become wall-clock savings, in inference and in training?

    sparse_inference_speedup   masked dense WRN member / its sparse inference form
                               (harness/kernels/inference.py, kernels chosen per conv by
                               measurement, 'direct' among them), ERK at S = 0.8 and 0.9,
                               batch 1 and 64, WRN-16-4 and WRN-28-10 at 32x32:
                               >= 3.5 (S0.9_b1), >= 3 (S0.9_b64), >= 2 (S0.8_b1, S0.8_b64)
    sparse_inference_speedup_vs_folded
                               the same against the best dense form a user would deploy: the
                               masked member traced, frozen with its batch norms folded into
                               the convs before them, and optimised for inference (oneDNN;
                               harness/bench/parts.py `folded_dense`): >= 2.5 (S0.9_b1), the
                               other keys informational
    sparse_train_step_speedup  dense step / sparse step (Masking with kernels = 'auto', no mask
                               update in the window), WRN-16-4, batch 128, S = 0.8 (>= 1.6)
                               and 0.9 (>= 2.2); beside it the whole DST step amortised over
                               dT = 1000: one step in dT runs densely (RigL's dense gradient),
                               plus one prune-and-grow and the rebuild of every layer's format
    sparse_kernel_curve        per conv shape of WRN-16-4, the direct kernel's speed-up over
                               F.conv2d against density: forward at batch 1 and 64, forward
                               and backward at batch 128 (informational)

Each ratio is measured at one thread and at two (torch.set_num_threads), as min / median / max
over alternating rounds of the two sides (the inference figures: 15 rounds of all three forms,
3 with --quick); the value is the ratio of the medians. On a machine shared with other work
the rounds spread; the medians are the figure. Every inference form runs under
torch.inference_mode, as a deployed model would: no side pays for autograd's bookkeeping.
"""
import statistics
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from harness.kernels import sparse_conv
from harness.models.wide_resnet import wide_resnet
from harness.kernels.inference import choose_kernels, sparsify
from harness.kernels.timing import call_seconds, ratio_spread, round_seconds

IMAGE_SHAPE = (3, 32, 32)
INFERENCE_TARGETS = {"S0.9_b1": ">= 3.5", "S0.9_b64": ">= 3", "S0.8_b1": ">= 2",
                     "S0.8_b64": ">= 2"}
FOLDED_TARGETS = {"S0.9_b1": ">= 2.5"}
TRAIN_TARGETS = {"S0.8": ">= 1.6", "S0.9": ">= 2.2"}
INFORMATIONAL = "informational"
DST_INTERVAL = 1000


def speedup(dense: list[float], sparse: list[float]) -> dict:
    """Ratio of medians, and the min / median / max of the per-round ratios."""
    return {"value": statistics.median(dense) / statistics.median(sparse),
            **ratio_spread(dense, sparse), "dense_seconds": statistics.median(dense),
            "sparse_seconds": statistics.median(sparse), "rounds": len(dense)}


def met(value: float, target: str) -> bool | None:
    """Whether `value` meets a '>= X' target; None for an informational figure."""
    return None if target == INFORMATIONAL else value >= float(target.split()[1])


def masked_wrn(depth: int, width: int, sparsity: float, seed: int = 0) -> torch.nn.Module:
    from harness.bench.parts import masked_wrn as build

    return build(depth, width, sparsity, seed)


def with_threads(threads: int, run: Callable[[], object]):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return run()
    finally:
        torch.set_num_threads(before)


@torch.inference_mode()
def inference_speedups(models: Sequence[tuple[int, int]], batches: Sequence[int],
                       sparsities: Sequence[float], threads: Sequence[int], rounds: int
                       ) -> dict[str, list[dict]]:
    """{'S0.9_b1': [one entry per model and thread count], ...}: masked dense / sparse (the
    entry's value) and folded dense / sparse (its `folded`), all three forms in the same
    alternating rounds, under inference mode."""
    from harness.bench.parts import folded_dense

    figures: dict[str, list[dict]] = {}
    for depth, width in models:
        for sparsity in sparsities:
            model = masked_wrn(depth, width, sparsity)
            for count in threads:
                for batch in batches:
                    key = f"S{sparsity}_b{batch}"

                    def measure():
                        plans, _ = choose_kernels(model, IMAGE_SHAPE, [batch], rounds=2)
                        sparse = sparsify(model, plans)
                        x = torch.randn(batch, *IMAGE_SHAPE)
                        folded, batch_norms = folded_dense(model, x)
                        dense_s, folded_s, sparse_s = round_seconds(
                            [lambda: model(x), lambda: folded(x), lambda: sparse(x)], rounds)
                        chosen = [plan[batch] for plan in plans.values()]
                        return (speedup(dense_s, sparse_s), speedup(folded_s, sparse_s),
                                batch_norms, {k: chosen.count(k) for k in set(chosen)})
                    ratio, folded, batch_norms, kernels = with_threads(count, measure)
                    target = INFERENCE_TARGETS.get(key, INFORMATIONAL)
                    folded_target = FOLDED_TARGETS.get(key, INFORMATIONAL)
                    figures.setdefault(key, []).append(
                        {"model": f"WRN-{depth}-{width}", "threads": count, "target": target,
                         "met": met(ratio["value"], target), "kernels": kernels, **ratio,
                         "folded_dense_seconds": folded["dense_seconds"],
                         "folded_speedup": folded["value"],
                         "folded": {"model": f"WRN-{depth}-{width}", "threads": count,
                                    "target": folded_target,
                                    "met": met(folded["value"], folded_target),
                                    "value": folded["value"],
                                    **{bound: folded[bound] for bound in ("min", "median", "max")},
                                    "folded_dense_seconds": folded["dense_seconds"],
                                    "sparse_seconds": folded["sparse_seconds"],
                                    "rounds": folded["rounds"], "batch_norms": batch_norms}})
    return figures


def train_step_speedups(depth: int, width: int, batch: int, sparsities: Sequence[float],
                        threads: Sequence[int], rounds: int, steps: int
                        ) -> dict[str, list[dict]]:
    """{'S0.8': [one entry per thread count], ...}: dense / sparse step, and the DST step
    amortised over dT = 1000."""
    from harness.bench.parts import harness_epoch, synthetic
    from harness.engine.train import Trainer
    from methods.sparse.kernels import AUTO_BATCHES
    from methods.sparse.masking import Masking, SparsitySpec

    dataset = synthetic(steps * batch)
    trainer = Trainer(batch_size=batch, lr=0.01, progress=False)
    figures: dict[str, list[dict]] = {}
    for sparsity in sparsities:
        for count in threads:
            def measure():
                torch.manual_seed(0)
                dense = wide_resnet(depth, width)
                torch.manual_seed(0)
                sparse = wide_resnet(depth, width)
                masking = Masking(sparse, SparsitySpec(sparsity, update_interval=10 ** 9,
                                                       kernels="auto"))
                sparse_epoch = harness_epoch(sparse, dataset, trainer, [masking])
                for _ in range(-(-AUTO_BATCHES // steps)):  # 'auto' measures, untimed
                    sparse_epoch()
                dense_s, sparse_s = round_seconds(
                    [harness_epoch(dense, dataset, trainer, []), sparse_epoch], rounds)
                update = update_seconds(masking)
                return speedup([s / steps for s in dense_s], [s / steps for s in sparse_s]), \
                    update, masking
            ratio, update, masking = with_threads(count, measure)
            dense_step, sparse_step = ratio["dense_seconds"], ratio["sparse_seconds"]
            # Per dT steps: dT - 1 sparse steps, one dense-gradient step (dense arithmetic
            # plus Masking's bookkeeping, taken as the dense step), one prune-and-grow, and
            # the rebuild of every layer's format.
            whole = ((DST_INTERVAL - 1) * sparse_step + dense_step + update["prune_and_grow"]
                     + update["rebuild"])
            key = f"S{sparsity}"
            sparse_layers = sum(masking.kernels.sparse_layers.values())
            figures.setdefault(key, []).append(
                {"model": f"WRN-{depth}-{width}", "batch": batch, "threads": count,
                 "target": TRAIN_TARGETS[key], "met": met(ratio["value"], TRAIN_TARGETS[key]),
                 **ratio, "amortised_dst_speedup": DST_INTERVAL * dense_step / whole,
                 "dst_interval": DST_INTERVAL, "update_seconds": update,
                 "sparse_layers": f"{sparse_layers} of {len(masking.kernels.layers)}",
                 "layer_choice": masking.kernels.timings})
    return figures


def update_seconds(masking) -> dict[str, float]:
    """One prune-and-grow by (random stand-in) dense gradient, and rebuilding every layer's
    sparse format afterwards, in seconds."""
    grads = {name: torch.randn(layer.weight.shape) for name, layer in masking.layers.items()}
    pruned = call_seconds(lambda: masking.prune_and_grow(masking.prune_rate, "gradient", grads))
    rebuilt = call_seconds(lambda: [sparse_conv.Pattern(masking.masks[name])
                                    for name in masking.kernels.layers])
    return {"prune_and_grow": pruned, "rebuild": rebuilt}


def kernel_curve(densities: Sequence[float], rounds: int) -> list[dict]:
    """Direct kernel / F.conv2d speed-up per WRN-16-4 conv shape and density: inference
    forward at batch 1 and 64 (a frozen pattern: its tile and read timed per input size, as
    deployed), and forward + backward at batch 128 at the faster tile (as 'auto' trains), with
    that tile (one thread)."""
    shapes = [(64, 64, 32), (128, 128, 16), (256, 256, 8)]
    points = []
    generator = torch.Generator().manual_seed(0)
    for in_channels, out_channels, side in shapes:
        for density in densities:
            mask = torch.rand(out_channels, in_channels, 3, 3, generator=generator) < density
            weight = (torch.randn(mask.shape, generator=generator) * mask).requires_grad_()
            frozen = sparse_conv.Pattern(mask, frozen=weight.detach())
            point = {"layer": f"3x3 conv {in_channels}->{out_channels} at {side}x{side}",
                     "density": round(frozen.nonzeros / mask.numel(), 4)}
            with torch.inference_mode():
                for batch, repeats in ((1, 16), (64, 1)):  # batch 1 repeated: timer resolution
                    x = torch.randn(batch, in_channels, side, side)
                    dense_s, sparse_s = round_seconds(
                        [lambda: [F.conv2d(x, weight, None, 1, 1) for _ in range(repeats)],
                         lambda: [sparse_conv.sparse_conv2d(x, weight, None, frozen, 1, 1)
                                  for _ in range(repeats)]], rounds)
                    point[f"forward_b{batch}"] = speedup(dense_s, sparse_s)["value"]
            x = torch.randn(128, in_channels, side, side, requires_grad=True)
            upstream = torch.randn(128, out_channels, side, side)

            def train(pattern: sparse_conv.Pattern) -> Callable[[], object]:
                return lambda: torch.autograd.grad(
                    sparse_conv.sparse_conv2d(x, weight, None, pattern, 1, 1), (x, weight),
                    upstream)

            dense_s, *tiles_s = round_seconds(
                [lambda: torch.autograd.grad(F.conv2d(x, weight, None, 1, 1), (x, weight),
                                             upstream),
                 *(train(sparse_conv.Pattern(mask, vectors=vectors))
                   for vectors in sparse_conv.TILE_VECTORS)], max(1, rounds // 2))
            speedups = [speedup(dense_s, tile_s)["value"] for tile_s in tiles_s]
            point["train_b128"] = max(speedups)
            point["train_b128_tile"] = sparse_conv.TILE_VECTORS[speedups.index(max(speedups))]
            points.append(point)
    return points


def results(quick: bool):
    """The figures as harness.bench.suite Results, one per ratio, model and thread count, yielded as
    they are measured (the whole takes tens of minutes on a shared 2-core machine)."""
    from harness.bench.parts import Result

    if not sparse_conv.available():
        for name in FIGURES:
            yield Result(name, None, "see docstring", None,
                         "skipped: sparse kernels unavailable (no C++ compiler; see the log)")
        return
    inference_rounds = 3 if quick else 15
    threads = (1, 2)
    models = ((16, 4),) if quick else ((16, 4), (28, 10))
    for model in models:
        yield from inference_results(inference_speedups([model], (1, 64), (0.8, 0.9), threads,
                                                        inference_rounds))
    for key, entries in train_step_speedups(16, 4, 128, (0.8, 0.9), threads, 3,
                                            2 if quick else 3).items():
        for entry in entries:
            yield _result(Result, "sparse_train_step_speedup", key, entry,
                          extra=f"; DST step at dT = {DST_INTERVAL}: "
                                f"{entry['amortised_dst_speedup']:.2f}x; sparse kernels in "
                                f"{entry['sparse_layers']} convs")
    curve = kernel_curve((0.05, 0.1, 0.2, 0.35, 0.5), 3)
    yield Result("sparse_kernel_curve", None, "informational", None,
                        "direct / F.conv2d per WRN-16-4 conv shape and density: "
                        + "; ".join(f"{p['layer'].split(' at ')[1]} d={p['density']:.2f} "
                                    f"fwd b1 {p['forward_b1']:.2f}x b64 {p['forward_b64']:.2f}x "
                                    f"train {p['train_b128']:.2f}x "
                                    f"(tile {p['train_b128_tile']})"
                                    for p in curve[::2]),
                        {"points": curve})


def inference_results(figures: dict[str, list[dict]]):
    """Two Results per entry of `inference_speedups`: against the masked dense form and
    against the folded one."""
    from harness.bench.parts import Result

    for key, entries in figures.items():
        for entry in entries:
            folded = entry.pop("folded")
            yield _result(Result, "sparse_inference_speedup", key, entry,
                          extra=f"; folded dense {entry['folded_dense_seconds'] * 1e3:.1f} ms "
                                f"({entry['folded_speedup']:.2f}x)")
            yield _result(Result, "sparse_inference_speedup_vs_folded", key, folded,
                          baseline="folded_dense",
                          extra=f"; {folded['batch_norms']['folded']} of "
                                f"{folded['batch_norms']['batch_norms']} batch norms folded")


def _result(result_type, name: str, key: str, entry: dict, baseline: str = "dense",
            extra: str = ""):
    """One Result of a figure's entry; `baseline` names the entry's seconds the sparse form
    is compared with (`<baseline>_seconds`)."""
    return result_type(
        f"{name} {key} {entry['model']} {entry['threads']}t", entry["value"], entry["target"],
        entry["met"], f"rounds min {entry['min']:.2f} / median {entry['median']:.2f} / max "
                      f"{entry['max']:.2f}; {baseline.replace('_', ' ')} "
                      f"{entry[f'{baseline}_seconds'] * 1e3:.1f} ms, sparse "
                      f"{entry['sparse_seconds'] * 1e3:.1f} ms" + extra,
        {"figure": name, "key": key, **entry})


FIGURES = ("sparse_inference_speedup", "sparse_inference_speedup_vs_folded",
           "sparse_train_step_speedup")


def summary(found: list) -> dict:
    """bench.json's top-level tables `sparse_inference_speedup`,
    `sparse_inference_speedup_vs_folded` and `sparse_train_step_speedup`: key (e.g. S0.9_b1)
    -> one entry per model and thread count."""
    tables: dict[str, dict[str, list]] = {name: {} for name in FIGURES}
    for result in found:
        figure = result.detail.get("figure")
        if figure in tables:
            entry = {k: v for k, v in result.detail.items()
                     if k not in ("figure", "key", "layer_choice", "bench_seconds")}
            tables[figure].setdefault(result.detail["key"], []).append(entry)
    return {name: table for name, table in tables.items() if table}
