"""`python -m harness.gpu_check`: the command of harness/bench/gpu_check.py (its docstring is the
usage), kept here so that --help and a flag mistake answer before torch loads."""
import json
import sys

from harness.core import cli

WORK = "harness.bench.gpu_check"


def flags() -> cli.Flags:
    parser = cli.Flags("python -m harness.gpu_check", cli.module_doc(WORK))
    parser.path("output_dir", "build/gpu_check", "where gpu_check.json is written")
    parser.string("device", "auto", "auto (CUDA when present), cuda or cpu")
    parser.boolean("reduced", None, "small models and batches (default: on a CPU)")
    parser.integer("steps", None, "timed steps per configuration (default 30; reduced 3)")
    parser.integer("warmup", None, "untimed steps first (default 10; reduced 1)")
    parser.boolean("ddp_probe", False, "internal: one rank of the 2-process DDP check")
    return parser


@cli.command
def main(argv: list[str] | None = None) -> int:
    args = flags().parse(argv)
    from harness.bench import gpu_check
    from harness.store.record import write_json

    if args.ddp_probe:
        gpu_check.ddp_probe(args.output_dir)
        return 0
    device = gpu_check.chosen_device(args.device)
    reduced = device.type == "cpu" if args.reduced is None else args.reduced
    steps = args.steps or (3 if reduced else 30)
    warmup = args.warmup or (1 if reduced else 10)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    report = gpu_check.gpu_check(args.output_dir, device, reduced, steps, warmup)
    write_json(args.output_dir / "gpu_check.json", report)
    print(json.dumps(report, indent=2))
    print(f"written to {args.output_dir / 'gpu_check.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
