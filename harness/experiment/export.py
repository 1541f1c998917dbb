"""Exports a sparse run's members to an inference form that skips their zeros:

    python -m harness.export RUN_DIR --output_dir=DIR [--batch_sizes=1,64] [--kernels=auto]

RUN_DIR is a finished run of a sparse method (static, dst, edst, ltr, pf: members saved with
masks).
DIR (new; an existing non-empty folder is never replaced) receives

    export.json       format, version, source run, architecture, image shape, and per member:
                      file, SHA-256, density, kernel plan (conv -> kernel per batch size)
    member_<i>.pt     the member's weights: every conv weight as CSR (row pointers, column
                      indices, values), everything else as in the run's checkpoint

and is written completely or not at all (built in DIR.partial, then renamed). The kernel of
each conv at each batch size is chosen by measuring them on this machine
(harness/kernels/inference.py); `--kernels csr|gemm|dense` forces one. `load_export(DIR)`
returns a predictor whose outputs equal the masked dense members' within 1e-4; the command
prints their measured speed-up over the masked dense members at each batch size: the median
over `--rounds` alternating rounds, with the min and max (one figure on a shared machine can be
off by half).
"""
from __future__ import annotations  # torch's types name the arguments; torch loads with the work

import hashlib
import json
import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from harness.core import cli
from harness.core.errors import UserError
from harness.kernels import KERNELS
from harness.store import paths, readers
from harness.store.record import is_finished
from harness.kernels.timing import ratio_spread, side_by_side

if TYPE_CHECKING:
    from torch import nn

    from harness.evaluation.predictors import MemberEnsemble

FORMAT = "freetickets-sparse-inference"
VERSION = 1
MANIFEST = "export.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_architecture(run_dir: Path) -> dict:
    """Model name, its builder's configured arguments, classes, channels and image shape of
    a run, from its operative configuration."""
    import gin

    from harness.experiment.config import parse
    from harness.data import DATASETS, PUBLISHED_GEOMETRY

    from harness.experiment.assemble import Experiment  # registers every configurable it names

    parse([str(paths.operative_config(run_dir))])
    experiment = Experiment()
    geometry = PUBLISHED_GEOMETRY.get(experiment.dataset_name)
    if geometry is None:
        train = DATASETS.get(experiment.dataset_name)().train
        image_shape, num_classes = train.image_shape, train.num_classes
    else:
        image_shape, num_classes = geometry.image_shape, geometry.num_classes
    return {"model": experiment.model_name,
            "model_kwargs": dict(gin.get_bindings(experiment.model_name)),
            "num_classes": num_classes, "image_shape": list(image_shape)}


def build_architecture(architecture: dict) -> nn.Module:
    from harness.models import MODELS

    return MODELS.get(architecture["model"])(
        num_classes=architecture["num_classes"],
        in_channels=architecture["image_shape"][0], **architecture["model_kwargs"])


def sparse_state(model: nn.Module) -> dict:
    """State dict with every conv weight replaced by its CSR parts."""
    from harness.kernels.inference import conv_names

    state = model.state_dict()
    csr = {}
    for name in conv_names(model):
        weight = state.pop(f"{name}.weight")
        matrix = weight.reshape(weight.shape[0], -1).to_sparse_csr()
        csr[name] = {"shape": list(weight.shape), "crow_indices": matrix.crow_indices(),
                     "col_indices": matrix.col_indices(), "values": matrix.values()}
    return {"state_dict": state, "csr": csr}


def dense_state(saved: dict) -> dict:
    """The inverse of `sparse_state`."""
    import torch

    state = dict(saved["state_dict"])
    for name, parts in saved["csr"].items():
        shape = parts["shape"]
        matrix = torch.sparse_csr_tensor(parts["crow_indices"], parts["col_indices"],
                                         parts["values"], (shape[0], math.prod(shape[1:])),
                                         check_invariants=True)
        state[f"{name}.weight"] = matrix.to_dense().reshape(shape)
    return state


def load_run_members(run_dir: Path) -> list[nn.Module]:
    """The run's members as masked dense networks on the CPU, as its method assembles them
    from its saved stages (harness/experiment/replay.py: LTR's retrained members, PF's fine-tuned ones,
    EDST's tickets); a run whose members carry no masks (a dense run) is refused."""
    from harness.experiment.replay import replay

    members = list(getattr(replay(run_dir).predictor, "networks", []))
    if not members or any(getattr(member, "masks", None) is None for member in members):
        raise UserError(f"{run_dir} is a dense run (method {readers.summary(run_dir)['method']!r}"
                        f"): its members have no masks, so there are no zeros to skip; "
                        f"export a sparse run (static, dst, edst, ltr, pf)")
    return [member.eval() for member in members]


def export(run_dir: Path, out: Path, batch_sizes: tuple[int, ...] = (1, 64),
           kernels: str = "auto", rounds: int = 3) -> dict:
    """Writes the export of `run_dir` to `out`; returns its manifest."""
    import torch
    from torch import nn

    from harness.core import safe_load
    from harness.kernels.inference import choose_kernels, density

    if kernels != "auto" and kernels not in KERNELS:
        raise UserError(f"--kernels must be auto or one of {', '.join(KERNELS)}, got "
                        f"{kernels!r}")
    if not batch_sizes or min(batch_sizes) < 1:
        raise UserError(f"--batch_sizes must be positive integers, got {batch_sizes}")
    if not is_finished(run_dir):
        raise UserError(f"{run_dir} is not a finished run (no {paths.SUMMARY})")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--output_dir {out} exists and is not empty; choose a new folder")
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        raise UserError(f"{partial} exists (left by an interrupted export?); remove it or "
                        f"choose another --output_dir")
    architecture = run_architecture(run_dir)
    members = load_run_members(run_dir)
    image_shape = architecture["image_shape"]
    partial.mkdir(parents=True)
    try:
        entries = []
        for index, member in enumerate(members):
            plans, _ = choose_kernels(member, image_shape, batch_sizes, rounds,
                                      None if kernels == "auto" else kernels)
            file = partial / f"member_{index}.pt"
            safe_load.save(file, sparse_state(member))
            weights = [module.weight for module in member.modules()
                       if isinstance(module, (nn.Conv2d, nn.Linear))]
            entries.append({"file": file.name, "sha256": _sha256(file),
                            "density": sum(float(w.count_nonzero()) for w in weights)
                            / sum(w.numel() for w in weights),
                            "conv_densities": {name: density(member.get_submodule(name).weight)
                                               for name in plans},
                            "plan": {name: {str(b): k for b, k in plan.items()}
                                     for name, plan in plans.items()}})
        summary = readers.summary(run_dir)
        manifest = {"format": FORMAT, "version": VERSION, "source_run": str(run_dir),
                    "method": summary["method"], "sparsity": summary["sparsity"],
                    "architecture": architecture, "batch_sizes": list(batch_sizes),
                    "torch": torch.__version__, "members": entries}
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            _move_into(partial, out)
        else:
            partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return manifest


def _move_into(partial: Path, out: Path) -> None:
    """`out` exists but is empty (checked before): move the files, then drop `partial`."""
    for path in partial.iterdir():
        path.rename(out / path.name)
    partial.rmdir()


def corrupted(directory: Path, what: str) -> UserError:
    return UserError(f"{directory} is not a usable sparse export: {what}; export the run again "
                     f"(python -m harness.export RUN_DIR --output_dir=NEW_DIR)")


def read_manifest(directory: Path) -> dict:
    path = directory / MANIFEST
    if not path.is_file():
        raise corrupted(directory, f"no {MANIFEST}")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise corrupted(directory, f"{MANIFEST} is unreadable ({error})") from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise corrupted(directory, f"{MANIFEST} is not a {FORMAT} manifest")
    if manifest.get("version") != VERSION:
        raise corrupted(directory, f"format version {manifest.get('version')!r}, this harness "
                                   f"reads {VERSION}")
    for key in ("architecture", "members"):
        if key not in manifest:
            raise corrupted(directory, f"{MANIFEST} lacks {key!r}")
    return manifest


def load_member(directory: Path, entry: dict, architecture: dict) -> nn.Module:
    import torch

    from harness.kernels.inference import sparsify

    path = directory / entry["file"]
    if not path.is_file():
        raise corrupted(directory, f"{entry['file']} is missing")
    if _sha256(path) != entry["sha256"]:
        raise corrupted(directory, f"{entry['file']} does not match its checksum")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        model = build_architecture(architecture)
        model.load_state_dict(dense_state(saved))
    except UserError:
        raise
    except Exception as error:  # a file that passes its checksum but not its schema
        raise corrupted(directory, f"{entry['file']} does not load ({error})") from error
    plans = {name: {int(batch): kernel for batch, kernel in plan.items()}
             for name, plan in entry["plan"].items()}
    return sparsify(model, plans)


def load_export(directory: Path) -> MemberEnsemble:
    """The exported members as a predictor (per-member logits [M, B, C]) on the CPU."""
    from harness.evaluation.predictors import MemberEnsemble

    directory = Path(directory)
    manifest = read_manifest(directory)
    return MemberEnsemble([load_member(directory, entry, manifest["architecture"])
                           for entry in manifest["members"]]).eval()


def speedups(dense: nn.Module, sparse: nn.Module, image_shape, batch_sizes, rounds: int = 5
             ) -> dict[int, dict]:
    """Seconds of the masked dense and the sparse form side by side, per batch size: medians,
    and the speed-up's median, min and max over the rounds (each round's own ratio)."""
    import torch

    result = {}
    with torch.inference_mode():
        for batch in batch_sizes:
            x = torch.randn(batch, *image_shape)
            (dense_median, sparse_median), (dense_s, sparse_s) = side_by_side(
                [lambda: dense(x), lambda: sparse(x)], rounds)
            ratios = ratio_spread(dense_s, sparse_s)
            result[batch] = {"dense_seconds": dense_median, "sparse_seconds": sparse_median,
                             "speedup": ratios["median"], "speedup_min": ratios["min"],
                             "speedup_max": ratios["max"]}
    return result


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = cli.Flags("python -m harness.export", __doc__, positionals=("run_dir",))
    parser.path("output_dir", None, "the export folder (new)", required=True)
    parser.integers("batch_sizes", [1, 64], "batch sizes to choose kernels and time at")
    parser.string("kernels", "auto", f"auto or one of {', '.join(KERNELS)}")
    parser.integer("rounds", 3, "timing rounds per kernel and per speed-up")
    args = parser.parse(argv)
    manifest = export(args.run_dir, args.output_dir, tuple(args.batch_sizes), args.kernels,
                      args.rounds)
    architecture = manifest["architecture"]
    exported = load_export(args.output_dir)
    dense = load_run_members(args.run_dir)
    print(f"exported {len(manifest['members'])} member(s) of {args.run_dir} to {args.output_dir}")
    for index, (entry, network) in enumerate(zip(manifest["members"], exported.networks)):
        kernels = {}
        for plan in entry["plan"].values():
            for batch, kernel in plan.items():
                kernels.setdefault(batch, []).append(kernel)
        times = speedups(dense[index], network, architecture["image_shape"],
                         args.batch_sizes, args.rounds)
        for batch, figures in times.items():
            chosen = kernels[str(batch)]
            counts = ", ".join(f"{chosen.count(k)} {k}" for k in KERNELS if k in chosen)
            print(f"member {index}: density {entry['density']:.3f}, batch {batch}: "
                  f"{figures['dense_seconds'] * 1e3:.1f} ms masked dense, "
                  f"{figures['sparse_seconds'] * 1e3:.1f} ms sparse, speed-up "
                  f"{figures['speedup']:.2f}x (min {figures['speedup_min']:.2f}x, max "
                  f"{figures['speedup_max']:.2f}x over {args.rounds} rounds; convs: {counts})")
    return 0
