"""Runs one experiment:

    python -m harness.run --gin_file=gin/dense.gin [--gin_file=gin/scale/smoke.gin]
        [--gin_bindings='Experiment.seed = 1'] [--output_dir=DIR] [--resume | --overwrite]
    python -m harness.run --resume --output_dir=DIR   # with the gin files and bindings it
                                                      # recorded (harness/store/record.py)
    python -m harness.run --list                      # methods, tables and their rows
    python -m harness.run --gin_file=... --dry_run    # the plan and an estimated time
    python -m harness.run --module=my_package.my_method --gin_file=my_method.gin
                                                      # a method of one's own package
    python -m harness.run --gin_file=... --store=runs # trained in the run store, where the
                                                      # tables find it (harness/store/runs.py)

writes the run directory described in harness/store/record.py. A configuration, data or flag
mistake is reported in one line with exit status 2, before any output directory is created;
so is a full disk (or file-size limit) met while writing, naming the file, the run kept to be
continued with --resume. Ctrl-C prints one line saying how to continue the run, exit status
130; SIGTERM (a scheduler preempting the job) the same, exit status 143 (128 + SIGTERM), on
which a job script requeues itself; `--resume` then continues from the last checkpoint to the
numbers of an uninterrupted run. `--module` is recorded with the gin bindings (as gin's `import`
statement, harness/experiment/config.py), so that `--resume` imports it again.
"""
import sys
from pathlib import Path

from harness.core import cli
from harness.core.errors import UserError


def flags() -> cli.Flags:
    parser = cli.Flags("python -m harness.run", __doc__)
    parser.repeated("gin_file", "gin files, applied in order")
    parser.repeated("gin_bindings", "gin bindings applied after the files")
    parser.modules()
    parser.path("output_dir", None, "run directory (default: runs/<method>-<time>)")
    parser.path("store", None, "instead of --output_dir: train in this run store, in the "
                               "configuration's folder, as the tables would (an unfinished run "
                               "there is continued)")
    parser.boolean("overwrite", False, "replace an existing run directory")
    parser.boolean("resume", False, "continue an unfinished run in --output_dir (with the gin "
                                    "files and bindings it recorded, unless --gin_file is "
                                    "given)")
    parser.progress()
    parser.boolean("list", False, "list the methods and the paper tables with their rows, "
                                  "then exit")
    parser.boolean("dry_run", False, "print the operative configuration, planned FLOPs, "
                                     "output directory and an estimated training time; train "
                                     "and write nothing")
    return parser


@cli.command(interrupted_outside_a_run="interrupted before the run started; nothing was "
                                       "written")
def main(argv: list[str] | None = None) -> int:
    args = flags().parse(argv)
    # torch and the methods load only now: --help and flag mistakes stay instant
    from harness.core import distributed
    from harness.experiment.config import module_imports
    from harness.experiment.dry_run import describe
    from harness.experiment.execute import plan_experiment, preemptible, run_experiment
    from harness.store.record import is_finished, recorded_configuration
    from harness.tables.listing import catalog

    if args.list:
        print(catalog())
        return 0
    output_dir = None if args.output_dir is None else str(args.output_dir)
    gin_files, bindings = args.gin_file, [*module_imports(args.module), *args.gin_bindings]
    if args.resume and output_dir and not gin_files:
        gin_files, recorded = recorded_configuration(Path(output_dir))
        bindings = [*recorded, *bindings]
    if not gin_files:
        raise UserError("give at least one --gin_file (e.g. --gin_file=gin/dense.gin)")
    resume = args.resume
    if args.store is not None:
        output_dir, resume = store_place(gin_files, bindings, args), not args.overwrite
        if resume and is_finished(Path(output_dir)):
            print(f"already in the store, finished: {output_dir} (--overwrite trains it again)")
            return 0
    if args.dry_run:
        run_dir, mode, prepared = plan_experiment(
            gin_files, bindings, output_dir, overwrite=args.overwrite,
            resume=resume, progress=args.progress)
        print(describe(prepared, run_dir, mode))
        return 0
    distributed.init_from_environment()  # under torchrun
    with preemptible():
        run_dir, summary = run_experiment(gin_files, bindings, output_dir,
                                          overwrite=args.overwrite, resume=resume,
                                          progress=args.progress)
    if summary is None:  # a torchrun process other than rank 0
        return 0
    metrics = ", ".join(f"{name} {value:.4f}" for name, value in summary["metrics"].items()
                        if not name.startswith("flops/"))
    print(f"{summary['method']} on {summary['dataset']}: {metrics}")
    print(f"run directory: {run_dir}")
    return 0


def store_place(gin_files, bindings, args) -> str:
    """`--store`: the run store's folder for the configuration (harness/store/runs.py), the
    store's format recorded first unless --dry_run, as harness/tables/run_rows.py does."""
    import gin

    from harness.experiment.config import parse
    from harness.store.record import path_error
    from harness.store.runs import RunStore

    if args.output_dir is not None:
        raise UserError("give --store or --output_dir, not both: the store names the folder")
    parse(gin_files, bindings)
    store = RunStore(args.store)
    try:
        return str((store.find if args.dry_run else store.run_dir)(gin.config_str()))
    except OSError as error:
        raise UserError(path_error("--store", args.store, error)) from error


if __name__ == "__main__":
    sys.exit(main())
