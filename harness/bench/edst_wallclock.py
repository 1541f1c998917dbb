"""`make bench-edst`: does EDST train in less wall-clock than one dense network, on a CPU?

    python -m harness.bench.edst_wallclock [--output_dir=build/bench] [--runs_dir=build/bench/edst]

Table 1 gives EDST (M = 3, S = 0.8) 0.61x the training FLOPs of a single dense network: its one
run of 450 epochs trains at a fifth of the dense weights. This command trains, one after the
other on this machine, the cpu scale's two runs (gin/scale/cpu.gin: CIFAR-10 from
data/cifar10.npz, `make cifar10-npz`):

    edst    gin/edst.gin, its masked convs on SparsitySpec.kernels = 'auto'
            (methods/sparse/kernels.py)                                  <runs_dir>/edst
    dense   gin/dense.gin                                                <runs_dir>/dense

each through `python -m harness.run`, and merges into <output_dir>/bench.json, keeping its
other keys:

    edst_cpu_wallclock_ratio   EDST's training seconds / the dense run's: each run's
                               summary.json `train_seconds` (training alone; evaluation
                               excluded), informational
    edst_cpu_wallclock         both runs' seconds and folders, their ratio of measured
                               training FLOPs (flops.json) and EDST's sparse kernels (which
                               convs ran sparse, the format rebuilds)

A finished run in its folder is reused (delete the folder to measure it again) and an
unfinished one continued, so Ctrl-C loses at most an epoch; both runs should come from the
same machine under the same load for the ratio to mean anything. Run it from the repository's
root, where the gin files and data/ are.
"""
import json
import subprocess
import sys
from pathlib import Path

from harness.core import cli
from harness.core.durable import atomic_write
from harness.core.errors import UserError
from harness.store import paths, readers

DATA = Path("data/cifar10.npz")  # gin/scale/cpu.gin's npz.path, relative to the working folder
RUNS = {
    "edst": (["gin/edst.gin", "gin/scale/cpu.gin"], ["SparsitySpec.kernels = 'auto'"]),
    "dense": (["gin/dense.gin", "gin/scale/cpu.gin"], []),
}
RATIO = "edst_cpu_wallclock_ratio"
DETAIL = "edst_cpu_wallclock"
KEYS = (RATIO, DETAIL)


def flags() -> cli.Flags:
    parser = cli.Flags("python -m harness.bench.edst_wallclock", __doc__)
    parser.path("output_dir", "build/bench", "the folder of bench.json, which the ratio is "
                                             "merged into")
    parser.path("runs_dir", "build/bench/edst", "where the two runs are trained (edst/, dense/)")
    return parser


@cli.command(interrupted="interrupted: run the command again to continue the unfinished run")
def main(argv: list[str] | None = None) -> int:
    args = flags().parse(argv)
    check_folder("--runs_dir", args.runs_dir)
    bench_json = args.output_dir / "bench.json"
    readers.bench(bench_json)  # a damaged file is refused before an hour of training
    for name in RUNS:
        train(name, args.runs_dir / name)
    figures = wallclock(args.runs_dir / "edst", args.runs_dir / "dense")
    merge(bench_json, figures)
    print(f"{RATIO} = {figures[RATIO]:.3f} (EDST {figures[DETAIL]['edst_train_seconds']:.0f} s, "
          f"dense {figures[DETAIL]['dense_train_seconds']:.0f} s); merged into {bench_json}")
    return 0


def check_folder(label: str, folder: Path) -> None:
    for path in (folder, *folder.parents):
        if path.exists() and not path.is_dir():
            where = "is" if path == folder else f"is inside {path}, which is"
            raise UserError(f"{label} {folder} {where} a file, not a folder; choose another "
                            f"{label}")


def train(name: str, run_dir: Path) -> None:
    """Trains run `name` into `run_dir` through harness.run, or continues it; a finished run
    is left as it is."""
    if paths.summary(run_dir).is_file():  # written last: the run finished
        print(f"{name}: reusing the finished run {run_dir}", flush=True)
        return
    gin_files, bindings = RUNS[name]
    missing = [path for path in (*map(Path, gin_files), DATA) if not path.is_file()]
    if missing:
        remedy = ("`make cifar10-npz` makes it (README, Data)" if missing[0] == DATA else
                  "run this from the repository's root")
        raise UserError(f"{missing[0]} is missing: {remedy}")
    command = [sys.executable, "-m", "harness.run", *(f"--gin_file={file}" for file in gin_files),
               *(f"--gin_bindings={binding}" for binding in bindings),
               f"--output_dir={run_dir}", "--resume", "--noprogress"]
    print(f"{name}: {' '.join(command)}", flush=True)
    status = subprocess.run(command).returncode
    if status != 0:
        raise UserError(f"the {name} run stopped with exit status {status} (its error above); "
                        f"run this command again to continue it")


def wallclock(edst_dir: Path, dense_dir: Path) -> dict:
    """bench.json's two keys from the finished runs in `edst_dir` and `dense_dir`."""
    edst, dense = (checked_summary(edst_dir, "edst"), checked_summary(dense_dir, "dense"))
    edst_flops, dense_flops = readers.flops(edst_dir), readers.flops(dense_dir)
    detail = {"edst_train_seconds": edst["train_seconds"],
              "dense_train_seconds": dense["train_seconds"],
              "edst_run": str(edst_dir), "dense_run": str(dense_dir),
              "train_flops_ratio": (edst_flops["train_flops"] / dense_flops["train_flops"]
                                    if edst_flops and dense_flops else None),
              "sparse_kernels": kernels_in_brief(edst.get("sparse_kernels", {}))}
    return {RATIO: edst["train_seconds"] / dense["train_seconds"], DETAIL: detail}


def checked_summary(run_dir: Path, method: str) -> dict:
    record = readers.timed_summary(run_dir)
    if record["method"] != method:
        raise UserError(f"{run_dir} holds a run of method {record['method']!r}, not "
                        f"{method!r}: delete it, or choose another --runs_dir")
    return record


def kernels_in_brief(stages: dict) -> dict:
    """Over a run's stages (summary.json `sparse_kernels`): the convs that ran sparse, of how
    many, and the rebuilds of their formats."""
    layers = [entry for stage in stages.values() for entry in stage["layers"].values()]
    return {"sparse_layers": sum(entry["kernels"] == "sparse" for entry in layers),
            "layers": len(layers),
            "rebuilds": sum(stage["rebuilds"] for stage in stages.values()),
            "rebuild_seconds": sum(stage["rebuild_seconds"] for stage in stages.values())}


def recorded(bench_json: Path) -> dict:
    """This command's keys of an existing bench.json (an hour of training each), which
    `make bench` keeps when it writes the file anew; none from a damaged file."""
    try:
        found = readers.bench(bench_json)
    except readers.DamagedRecord:
        return {}
    return {key: found[key] for key in KEYS if key in found}


def merge(bench_json: Path, figures: dict) -> None:
    """`figures` into bench.json, its other keys kept (read again now: `make bench` may have
    rewritten it while the runs trained)."""
    merged = {**readers.bench(bench_json), **figures}
    bench_json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(bench_json, lambda partial: partial.write_text(json.dumps(merged, indent=2)
                                                                + "\n"))


if __name__ == "__main__":
    sys.exit(main())
