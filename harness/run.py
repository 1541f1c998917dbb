"""Runs one experiment:

    python -m harness.run --gin_file=gin/dense.gin [--gin_file=gin/scale/smoke.gin]
        [--gin_bindings='Experiment.seed = 1'] [--output_dir=DIR] [--resume | --overwrite]
    python -m harness.run --resume --output_dir=DIR   # with the gin files and bindings it
                                                      # recorded (harness/record.py)
    python -m harness.run --list                      # methods, tables and their rows
    python -m harness.run --gin_file=... --dry_run    # the plan and an estimated time

writes the run directory described in harness/record.py. A configuration, data or flag
mistake is reported in one line with exit status 2, before any output directory is created;
Ctrl-C prints one line saying how to continue the run, exit status 130.
"""
import sys
from pathlib import Path

from absl import app, flags

from harness import distributed
from harness.config import first_line
from harness.errors import Interrupted, UserError
from harness.catalog import catalog
from harness.dry_run import describe
from harness.experiment import plan_experiment, run_experiment
from harness.record import recorded_configuration

flags.DEFINE_multi_string("gin_file", [], "gin files, applied in order")
flags.DEFINE_multi_string("gin_bindings", [], "gin bindings applied after the files")
flags.DEFINE_string("output_dir", None, "run directory (default: runs/<method>-<time>)")
flags.DEFINE_bool("overwrite", False, "replace an existing run directory")
flags.DEFINE_bool("resume", False, "continue an unfinished run in --output_dir (with the gin "
                  "files and bindings it recorded, unless --gin_file is given)")
flags.DEFINE_bool("progress", True, "progress bars on a terminal (else one log line per "
                  "epoch)")
flags.DEFINE_bool("list", False, "list the methods and the paper tables with their rows, then "
                  "exit")
flags.DEFINE_bool("dry_run", False, "print the operative configuration, planned FLOPs, output "
                  "directory and an estimated training time; train and write nothing")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    if FLAGS.list:
        print(catalog())
        return
    gin_files, bindings = FLAGS.gin_file, FLAGS.gin_bindings
    if FLAGS.resume and FLAGS.output_dir and not gin_files:
        try:
            gin_files, recorded = recorded_configuration(Path(FLAGS.output_dir))
        except UserError as error:
            fail(first_line(error))
        bindings = [*recorded, *bindings]
    if not gin_files:
        fail("give at least one --gin_file (e.g. --gin_file=gin/dense.gin)")
    if FLAGS.dry_run:
        try:
            run_dir, mode, prepared = plan_experiment(
                gin_files, bindings, FLAGS.output_dir, overwrite=FLAGS.overwrite,
                resume=FLAGS.resume, progress=FLAGS.progress)
        except UserError as error:
            fail(first_line(error))
        print(describe(prepared, run_dir, mode))
        return
    distributed.init_from_environment()  # under torchrun
    try:
        run_dir, summary = run_experiment(gin_files, bindings, FLAGS.output_dir,
                                          overwrite=FLAGS.overwrite, resume=FLAGS.resume,
                                          progress=FLAGS.progress)
    except UserError as error:
        fail(first_line(error))
    except KeyboardInterrupt as interrupt:
        print(interrupt if isinstance(interrupt, Interrupted) else
              "interrupted before the run started; nothing was written", file=sys.stderr)
        sys.exit(130)
    if summary is None:  # a torchrun process other than rank 0
        return
    metrics = ", ".join(f"{name} {value:.4f}" for name, value in summary["metrics"].items()
                        if not name.startswith("flops/"))
    print(f"{summary['method']} on {summary['dataset']}: {metrics}")
    print(f"run directory: {run_dir}")


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def parse_flags(argv: list[str]) -> list[str]:
    """absl's parsing, with a flag mistake reported like every other input mistake."""
    try:
        return FLAGS(argv)
    except flags.Error as error:
        fail(first_line(error))


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
